//! The nodes of a torture run: `balsa serve` child processes (this same executable), each with
//! its addresses from the [`Network`], its data directory under the run's directory and its
//! log file, and the harness's view of the configuration (which ids are members).
//!
//! Every node runs with the run's keys ([`LocalKeys`], in the run's directory: the fresh, wiped
//! and added nodes too), and the harness's clients seal under its client key, which the
//! [`Directory`] hands them.
//!
//! Node ids are never reused: a node that is replaced (membership, wipe) gets the next id, as
//! `balsa members replace` requires. A killed node restarts under its id on its data
//! directory; a wiped one does not come back.
//!
//! Invariants: every process started is owned by a [`ServeProcess`], which kills and reaps it
//! when dropped, and [`Nodes::stop_all`] continues paused processes before killing them, so no
//! exit path leaves a node running; [`Directory`] always lists exactly the members the harness
//! believes are in the configuration, with the address its clients reach them at.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};

use balsa::keyfile::Key;
use rustix::process::{Pid, Signal, kill_process};

use super::net::{Network, NodeAddresses};
use crate::cluster::{Launch, ServeProcess, os_args};
use crate::keys::LocalKeys;

/// Flags every node of a run gets besides its id, members, data directory and addresses:
/// snapshots every few thousand entries (so that compaction and snapshot transfers happen in a
/// minute's run) and small WAL segments (a run starts up to a dozen nodes).
const NODE_FLAGS: [&str; 4] = ["--snapshot-entries", "3000", "--segment-bytes", "8388608"];

/// What a node is doing.
pub enum NodeState {
    /// Its process runs.
    Running(ServeProcess),
    /// Its process is stopped by SIGSTOP.
    Paused(ServeProcess),
    /// Killed; it restarts on its data directory.
    Down,
    /// Out of the configuration, its process gone; it never comes back.
    Gone,
}

/// One node of the run.
pub struct Node {
    /// Its id.
    pub id: u64,
    /// Where it binds and what the others are told.
    pub addresses: NodeAddresses,
    /// Where the harness's clients reach it.
    pub client_address: SocketAddr,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// What it is doing.
    pub state: NodeState,
}

/// The members the harness's clients talk to: `(id, client address)`, shared with the workload
/// and the observer threads; and the client key they speak with.
#[derive(Clone, Default)]
pub struct Directory {
    members: Arc<Mutex<Vec<(u64, SocketAddr)>>>,
    key: Option<Key>,
}

impl Directory {
    /// A directory of no members yet, whose clients seal under `key`.
    pub fn new(key: Option<Key>) -> Directory {
        Directory {
            members: Arc::default(),
            key,
        }
    }

    /// The client key of the run, for [`balsa::client::ClientOptions::key`].
    pub fn key(&self) -> Option<Key> {
        self.key.clone()
    }

    /// The members now.
    pub fn members(&self) -> Vec<(u64, SocketAddr)> {
        self.members
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The client addresses of the members now.
    pub fn endpoints(&self) -> Vec<SocketAddr> {
        self.members()
            .into_iter()
            .map(|(_, address)| address)
            .collect()
    }

    fn set(&self, members: Vec<(u64, SocketAddr)>) {
        *self.members.lock().unwrap_or_else(PoisonError::into_inner) = members;
    }
}

/// A node process that ended without being told to.
#[derive(Clone, Debug)]
pub struct UnexpectedExit {
    /// The node.
    pub id: u64,
    /// How it ended.
    pub status: String,
}

/// The run's nodes.
pub struct Nodes {
    network: Box<dyn Network>,
    dir: PathBuf,
    token: String,
    /// The `serve` arguments that give a node the run's keys.
    key_args: Vec<OsString>,
    nodes: BTreeMap<u64, Node>,
    /// The configuration's members, as the harness believes (ids).
    members: Vec<u64>,
    next_id: u64,
    max_ids: u64,
    directory: Directory,
    /// Nodes that exited on their own, and how.
    pub unexpected_exits: Vec<UnexpectedExit>,
}

/// Why a node could not be started or changed.
#[derive(Debug)]
pub struct NodeError(pub String);

impl std::fmt::Display for NodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NodeError {}

impl Nodes {
    /// Nodes in `dir` over `network`, none started yet, running with `keys`; at most
    /// `max_ids` ids over the run.
    pub fn new(
        network: Box<dyn Network>,
        dir: PathBuf,
        token: String,
        keys: &LocalKeys,
        max_ids: u64,
    ) -> Nodes {
        Nodes {
            network,
            dir,
            token,
            key_args: keys.serve_args(),
            nodes: BTreeMap::new(),
            members: Vec::new(),
            next_id: 1,
            max_ids,
            directory: Directory::new(keys.client_key()),
            unexpected_exits: Vec::new(),
        }
    }

    /// The network's mode, for reports.
    pub fn network_mode(&self) -> &'static str {
        self.network.mode()
    }

    /// The shared member list.
    pub fn directory(&self) -> Directory {
        self.directory.clone()
    }

    /// The members (ids), as the harness believes.
    pub fn members(&self) -> &[u64] {
        &self.members
    }

    /// The node `id`.
    pub fn node(&self, id: u64) -> Option<&Node> {
        self.nodes.get(&id)
    }

    /// Members whose process runs (not paused, not down).
    pub fn running_members(&self) -> Vec<u64> {
        self.members
            .iter()
            .copied()
            .filter(|id| {
                matches!(
                    self.nodes.get(id).map(|n| &n.state),
                    Some(NodeState::Running(_))
                )
            })
            .collect()
    }

    /// True when another node id can still be used.
    pub fn can_add(&self) -> bool {
        self.next_id <= self.max_ids
    }

    /// Starts a new cluster of `count` nodes, ids 1..=count.
    pub fn bootstrap(&mut self, count: u64) -> Result<(), NodeError> {
        let ids: Vec<u64> = (0..count)
            .map(|_| self.allocate())
            .collect::<Result<_, _>>()?;
        self.members = ids.clone();
        for id in ids {
            self.start(id, false)?;
        }
        self.publish();
        Ok(())
    }

    /// Starts a fresh node under a new id with `--join`; it is not a member until a membership
    /// change adds it ([`Nodes::set_members`]). Returns its id and advertised address.
    pub fn start_fresh(&mut self) -> Result<(u64, SocketAddr), NodeError> {
        let id = self.allocate()?;
        self.start(id, true)?;
        let advertised = self.nodes[&id].addresses.advertised;
        Ok((id, advertised))
    }

    /// The configuration is now `members` (as the leader reported it).
    pub fn set_members(&mut self, members: Vec<u64>) {
        self.members = members;
        self.publish();
    }

    /// SIGKILLs node `id` (a crash); it stays down until [`Nodes::restart`].
    pub fn kill(&mut self, id: u64) {
        if let Some(node) = self.nodes.get_mut(&id)
            && let NodeState::Running(mut process) | NodeState::Paused(mut process) =
                std::mem::replace(&mut node.state, NodeState::Down)
        {
            continue_process(&process);
            process.kill();
        }
    }

    /// Restarts a killed node on its data directory.
    pub fn restart(&mut self, id: u64) -> Result<(), NodeError> {
        match self.nodes.get(&id).map(|node| &node.state) {
            Some(NodeState::Down) => self.start(id, false),
            _ => Ok(()),
        }
    }

    /// SIGSTOPs node `id`.
    pub fn pause(&mut self, id: u64) {
        if let Some(node) = self.nodes.get_mut(&id)
            && let NodeState::Running(process) = std::mem::replace(&mut node.state, NodeState::Down)
        {
            signal(&process, Signal::STOP);
            node.state = NodeState::Paused(process);
        }
    }

    /// SIGCONTs node `id` if it is paused.
    pub fn resume(&mut self, id: u64) {
        if let Some(node) = self.nodes.get_mut(&id) {
            match std::mem::replace(&mut node.state, NodeState::Down) {
                NodeState::Paused(process) => {
                    continue_process(&process);
                    node.state = NodeState::Running(process);
                }
                other => node.state = other,
            }
        }
    }

    /// Kills node `id` and deletes its data directory: it never comes back.
    pub fn wipe(&mut self, id: u64) {
        self.kill(id);
        if let Some(node) = self.nodes.get_mut(&id) {
            node.state = NodeState::Gone;
            let _ = fs::remove_dir_all(&node.data_dir);
        }
    }

    /// Heals every node: continues the paused ones and restarts the killed members.
    pub fn heal(&mut self) -> Result<(), NodeError> {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            self.resume(id);
            if self.members.contains(&id) {
                self.restart(id)?;
            }
        }
        Ok(())
    }

    /// Notes the processes that have exited: a node removed from the configuration exits by
    /// itself with status 0 and is gone (and no longer a member, if the harness had not heard
    /// yet); any other exit is unexpected and recorded, and the node is down.
    pub fn reap(&mut self) {
        let mut removed = Vec::new();
        for node in self.nodes.values_mut() {
            let NodeState::Running(process) = &mut node.state else {
                continue;
            };
            let status = match process.try_wait() {
                Ok(Some(status)) => status,
                Ok(None) | Err(_) => continue,
            };
            if status.success() {
                removed.push(node.id);
                node.state = NodeState::Gone;
            } else {
                self.unexpected_exits.push(UnexpectedExit {
                    id: node.id,
                    status: status.to_string(),
                });
                node.state = NodeState::Down;
            }
        }
        if !removed.is_empty() {
            self.members.retain(|id| !removed.contains(id));
            self.publish();
        }
    }

    /// Blocks the directed member links in `blocked` and restores the others.
    pub fn set_blocked(
        &mut self,
        blocked: &std::collections::BTreeSet<(u64, u64)>,
    ) -> Result<(), NodeError> {
        self.network
            .set_blocked(blocked)
            .map_err(|error| NodeError(format!("changing the network: {error}")))
    }

    /// Kills every node and removes what the network made. Idempotent.
    pub fn stop_all(&mut self) {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            self.kill(id);
        }
        self.network.teardown();
    }

    fn allocate(&mut self) -> Result<u64, NodeError> {
        if !self.can_add() {
            return Err(NodeError(format!(
                "all {} node ids of the run are used",
                self.max_ids
            )));
        }
        let id = self.next_id;
        self.next_id += 1;
        let addresses = self
            .network
            .add_node(id)
            .map_err(|error| NodeError(format!("making room for node {id}: {error}")))?;
        let node = Node {
            id,
            addresses,
            client_address: self.network.client_address(id),
            data_dir: self.dir.join(format!("node-{id}")),
            state: NodeState::Down,
        };
        self.nodes.insert(id, node);
        Ok(id)
    }

    /// Starts node `id`'s process: with `join`, as a new node learning the cluster from the
    /// members; else on its data directory (bootstrapping it the first time).
    fn start(&mut self, id: u64, join: bool) -> Result<(), NodeError> {
        let mut cluster: Vec<(u64, SocketAddr)> = self
            .members
            .iter()
            .filter_map(|member| self.nodes.get(member))
            .map(|node| (node.id, node.addresses.advertised))
            .collect();
        let node = &self.nodes[&id];
        if !cluster.iter().any(|(member, _)| *member == id) {
            cluster.push((id, node.addresses.advertised));
        }
        let log = open_log(&self.dir, id)?;
        let listen = node.addresses.listen.to_string();
        let mut extra = os_args(&["--cluster-token", &self.token]);
        if node.addresses.listen != node.addresses.advertised {
            extra.extend(os_args(&["--listen", &listen]));
        }
        extra.extend(os_args(&NODE_FLAGS));
        extra.extend(self.key_args.iter().cloned());
        if join {
            extra.push("--join".into());
        }
        let launch = Launch {
            wrap: self.network.wrap_command(id),
            own_process_group: true,
            // Nodes are started and restarted from the run's main thread only (the nemesis
            // runs there), so the kernel's signal comes only when the run itself dies.
            stop_with_parent: true,
        };
        let process = ServeProcess::launch(
            &launch,
            id,
            &cluster,
            &node.data_dir,
            &extra,
            Stdio::from(log),
        )
        .map_err(|error| NodeError(error.message))?;
        if let Some(node) = self.nodes.get_mut(&id) {
            node.state = NodeState::Running(process);
        }
        Ok(())
    }

    fn publish(&self) {
        let members = self
            .members
            .iter()
            .filter_map(|id| self.nodes.get(id))
            .map(|node| (node.id, node.client_address))
            .collect();
        self.directory.set(members);
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        self.stop_all();
    }
}

fn open_log(dir: &Path, id: u64) -> Result<File, NodeError> {
    let path = dir.join(format!("node-{id}.log"));
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|error| NodeError(format!("opening {}: {error}", path.display())))
}

fn signal(process: &ServeProcess, signal: Signal) {
    // A child's id is a positive pid_t; an error means it has exited, which reaping notes.
    if let Some(pid) = i32::try_from(process.pid()).ok().and_then(Pid::from_raw) {
        let _ = kill_process(pid, signal);
    }
}

fn continue_process(process: &ServeProcess) {
    signal(process, Signal::CONT);
}
