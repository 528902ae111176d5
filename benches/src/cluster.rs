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
    nodes: Vec<Node>,
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
    /// Starts `n` nodes with their logs in `dir/node-<id>`, syncing each write when `sync`
    /// (else `--unsafe-no-fsync`), and waits (bounded) for a leader.
    ///
    /// # Errors
    /// If a node cannot start or no leader is elected within 10 s.
    pub fn start(n: usize, dir: &Path, sync: bool) -> Result<LocalCluster, String> {
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
        let mut nodes = Vec::with_capacity(n);
        for &(id, _) in &members {
            let mut config = NodeConfig::new(id, members.clone(), dir.join(format!("node-{id}")));
            config.sync = sync;
            nodes.push(
                Node::start(config, KvStore::new())
                    .map_err(|error| format!("starting node {id}: {error}"))?,
            );
        }
        let cluster = LocalCluster { nodes, members };
        cluster.leadership()?;
        Ok(cluster)
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
        let leader = self.nodes[0]
            .wait_for_leader(Duration::from_secs(10))
            .map_err(|error| format!("waiting for a leader: {error}"))?;
        for node in &self.nodes {
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
        for node in self.nodes {
            if let Err(error) = node.shutdown()
                && first.is_ok()
            {
                first = Err(error.to_string());
            }
        }
        first
    }
}
