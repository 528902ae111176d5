//! An in-process cluster of real nodes for the benchmarks: each node has its own threads, UDP
//! socket on loopback and write-ahead log on disk, exactly as `balsa serve` runs them; only the
//! process is shared. Clients reach it over UDP like any other client.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::Duration;

use balsa::client::{Client, ClientOptions};
use balsa::kv::KvStore;
use balsa::raft::Role;
use balsa::runtime::wire::StatusReport;
use balsa::{Node, NodeConfig};

/// A running cluster.
pub struct LocalCluster {
    /// Node `id` at position `id - 1`; `None` while stopped.
    nodes: Vec<Option<Node>>,
    configs: Vec<NodeConfig>,
    members: Vec<(u64, SocketAddr)>,
}

/// Who led, in which term: compared before and after a run to tell that no leader was lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leadership {
    /// The leader's id.
    pub leader: u64,
    /// Its term.
    pub term: u64,
}

impl LocalCluster {
    /// Starts `n` nodes with their logs in `dir/node-<id>`, every node's configuration passed
    /// through `configure`, and waits (bounded) for a leader.
    ///
    /// # Errors
    /// If a node cannot start or no leader is elected within 10 s.
    pub fn start_configured(
        n: usize,
        dir: &Path,
        configure: &mut dyn FnMut(&mut NodeConfig),
    ) -> Result<LocalCluster, String> {
        // Bind, read the port, release: the ports are free when the nodes bind them moments later.
        let sockets = (0..n)
            .map(|_| UdpSocket::bind("127.0.0.1:0"))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| format!("finding free ports: {error}"))?;
        let members = sockets
            .iter()
            .enumerate()
            .map(|(i, socket)| Ok((i as u64 + 1, socket.local_addr()?)))
            .collect::<Result<Vec<_>, std::io::Error>>()
            .map_err(|error| format!("finding free ports: {error}"))?;
        drop(sockets);
        let configs = members
            .iter()
            .map(|&(id, _)| {
                let mut config =
                    NodeConfig::new(id, members.clone(), dir.join(format!("node-{id}")));
                configure(&mut config);
                config
            })
            .collect();
        let mut cluster = LocalCluster {
            nodes: (0..n).map(|_| None).collect(),
            configs,
            members,
        };
        for id in 1..=n as u64 {
            cluster.start_node(id)?;
        }
        cluster.leadership()?;
        Ok(cluster)
    }

    /// Starts node `id` (again) from its data directory.
    ///
    /// # Errors
    /// If it does not start.
    pub fn start_node(&mut self, id: u64) -> Result<(), String> {
        let at = position(id);
        let node = Node::start(self.configs[at].clone(), KvStore::new())
            .map_err(|error| format!("starting node {id}: {error}"))?;
        self.nodes[at] = Some(node);
        Ok(())
    }

    /// Stops node `id` cleanly.
    ///
    /// # Errors
    /// If it failed while running.
    pub fn stop_node(&mut self, id: u64) -> Result<(), String> {
        match self.nodes[position(id)].take() {
            Some(node) => node.shutdown().map_err(|error| error.to_string()),
            None => Ok(()),
        }
    }

    /// Stops node `id`, deletes its data directory and starts it again empty, rejoining
    /// (`NodeConfig::rejoin`).
    ///
    /// # Errors
    /// If it cannot be stopped, wiped or started.
    pub fn wipe_and_rejoin(&mut self, id: u64) -> Result<(), String> {
        self.stop_node(id)?;
        let dir = self.configs[position(id)].data_dir.clone();
        std::fs::remove_dir_all(&dir)
            .map_err(|error| format!("wiping {}: {error}", dir.display()))?;
        self.configs[position(id)].rejoin = true;
        self.start_node(id)
    }

    /// Node `id`, if running.
    #[must_use]
    pub fn node(&self, id: u64) -> Option<&Node> {
        self.nodes[position(id)].as_ref()
    }

    /// The client endpoints.
    #[must_use]
    pub fn endpoints(&self) -> Vec<SocketAddr> {
        self.members.iter().map(|&(_, address)| address).collect()
    }

    /// The current leader and term, waiting (bounded, 10 s) for one.
    ///
    /// # Errors
    /// If no node leads within 10 s.
    pub fn leadership(&self) -> Result<Leadership, String> {
        let leader = self
            .nodes
            .iter()
            .flatten()
            .next()
            .ok_or("no node runs")?
            .wait_for_leader(Duration::from_secs(10))
            .map_err(|error| format!("waiting for a leader: {error}"))?;
        for node in self.nodes.iter().flatten() {
            let status = node.status().map_err(|error| error.to_string())?;
            if status.id == leader && status.role == Role::Leader {
                return Ok(Leadership {
                    leader,
                    term: status.term,
                });
            }
        }
        Err(format!("node {leader} was named leader but does not lead"))
    }

    /// Every node's status report (counters included), as a client asks for it, in id order.
    ///
    /// # Errors
    /// If some node does not answer.
    pub fn reports(&self) -> Result<Vec<StatusReport>, String> {
        let mut client = Client::new(self.endpoints(), ClientOptions::default())
            .map_err(|error| error.to_string())?;
        client
            .status_all(&self.endpoints())
            .into_iter()
            .map(|report| report.map_err(|error| format!("status: {error}")))
            .collect()
    }

    /// Stops every node.
    ///
    /// # Errors
    /// The first node that failed while running.
    pub fn shutdown(self) -> Result<(), String> {
        let mut first = Ok(());
        for node in self.nodes.into_iter().flatten() {
            if let Err(error) = node.shutdown()
                && first.is_ok()
            {
                first = Err(error.to_string());
            }
        }
        first
    }
}

fn position(id: u64) -> usize {
    usize::try_from(id - 1).expect("node ids are small")
}
