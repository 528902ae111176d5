//! An in-process cluster of real nodes for the benchmarks: each node has its own threads, UDP
//! socket on loopback and write-ahead log on disk, exactly as `balsa serve` runs them; only the
//! process is shared. Clients reach it over UDP like any other client.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::Duration;

use balsa::client::{Client, ClientOptions};
use balsa::kv::KvStore;
use balsa::raft::Role;
use balsa::raft::membership::Step;
use balsa::runtime::wire::StatusReport;
use balsa::{MembershipChange, Node, NodeConfig};

/// A running cluster.
pub struct LocalCluster {
    /// Node `id` at position `id - 1`; `None` while stopped.
    nodes: Vec<Option<Node>>,
    configs: Vec<NodeConfig>,
    members: Vec<(u64, SocketAddr)>,
    /// Nodes removed by [`LocalCluster::wipe_and_replace`].
    replaced: Vec<u64>,
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
            replaced: Vec::new(),
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

    /// Stops node `id` and deletes its data directory (its disk is lost), then replaces it
    /// under a new id, as an operator would: a fresh node with `join` on a new port and
    /// directory, and one membership change at the leader (add it as a voter, remove `id`),
    /// started and not waited for: it completes once the new node caught up (by snapshot, if
    /// the log was compacted). Returns the new id and the change.
    ///
    /// # Errors
    /// If the node cannot be stopped, wiped or started, or the change cannot start.
    pub fn wipe_and_replace(&mut self, id: u64) -> Result<(u64, MembershipChange), String> {
        self.stop_node(id)?;
        let dir = self.configs[position(id)].data_dir.clone();
        std::fs::remove_dir_all(&dir)
            .map_err(|error| format!("wiping {}: {error}", dir.display()))?;
        let (new, address) = self.start_joining(id)?;
        let leader = self.leadership()?.leader;
        let steps = vec![
            Step::AddVoter {
                id: new,
                address: address.to_string().into_bytes(),
            },
            Step::Remove { id },
        ];
        let change = self
            .node(leader)
            .ok_or("the leader stopped")?
            .change_membership_async(steps)
            .map_err(|error| format!("replacing node {id} by node {new}: {error}"))?;
        self.replaced.push(id);
        Ok((new, change))
    }

    /// Starts a fresh node that joins the cluster (`join` on): the next unused id, a new port on
    /// loopback and a new directory beside node `like`'s, otherwise configured as node `like`
    /// is. It is a member only once a change adds it. Returns its id and address.
    ///
    /// # Errors
    /// If no port is free or the node does not start.
    pub fn start_joining(&mut self, like: u64) -> Result<(u64, SocketAddr), String> {
        let new = self.members.len() as u64 + 1;
        let address = UdpSocket::bind("127.0.0.1:0")
            .and_then(|socket| socket.local_addr())
            .map_err(|error| format!("finding a free port: {error}"))?;
        self.members.push((new, address));
        let mut config = self.configs[position(like)].clone();
        config.id = new;
        config.members.clone_from(&self.members);
        config.data_dir = config.data_dir.with_file_name(format!("node-{new}"));
        config.join = true;
        self.configs.push(config);
        self.nodes.push(None);
        self.start_node(new)?;
        Ok((new, address))
    }

    /// Takes node `id` out of the cluster after a membership change removed it: waits up to
    /// `within` for it to stop by itself (a removed node does, once it learned of its removal);
    /// its address leaves [`LocalCluster::endpoints`].
    ///
    /// It waits on [`Node::join`] in a thread of its own rather than polling [`Node::status`]:
    /// a status call that reaches the node's inbox just as it stops by itself is never answered
    /// (the call waits forever), so it must not be polled across that moment.
    ///
    /// # Errors
    /// If it failed while running, or did not stop within `within` (it is then left running,
    /// detached, until the process ends).
    pub fn retire(&mut self, id: u64, within: Duration) -> Result<(), String> {
        let Some(node) = self.nodes[position(id)].take() else {
            return Ok(());
        };
        self.replaced.push(id);
        let (done, joined) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            let _ = done.send(node.join());
        });
        match joined.recv_timeout(within) {
            Ok(result) => result.map_err(|error| format!("node {id}: {error}")),
            Err(_) => Err(format!(
                "node {id} did not stop by itself within {} ms of its removal",
                within.as_millis()
            )),
        }
    }

    /// Node `id`'s configuration (as started).
    #[must_use]
    pub fn config(&self, id: u64) -> &NodeConfig {
        &self.configs[position(id)]
    }

    /// Node `id`, if running.
    #[must_use]
    pub fn node(&self, id: u64) -> Option<&Node> {
        self.nodes[position(id)].as_ref()
    }

    /// The client endpoints: every member's address but those of nodes replaced.
    #[must_use]
    pub fn endpoints(&self) -> Vec<SocketAddr> {
        self.members
            .iter()
            .filter(|&&(id, _)| !self.replaced.contains(&id))
            .map(|&(_, address)| address)
            .collect()
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

    /// The options a client of this cluster needs: the defaults, with the cluster's client key
    /// (the current one of node 1's client ring) when its nodes run with keys.
    #[must_use]
    pub fn client_options(&self) -> ClientOptions {
        ClientOptions {
            key: self.configs[0]
                .keys
                .client
                .as_ref()
                .map(|ring| ring.current.clone()),
            ..ClientOptions::default()
        }
    }

    /// Every node's status report (counters included), as a client asks for it, in id order.
    ///
    /// # Errors
    /// If some node does not answer.
    pub fn reports(&self) -> Result<Vec<StatusReport>, String> {
        let mut client = Client::new(self.endpoints(), self.client_options())
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
