//! A replicated counter, embedded: three Balsa nodes in one process, on loopback.
//!
//! Each node runs the same `Counter` state machine; a command adds its first byte to the total.
//! The example starts the nodes, waits for a leader, proposes ten increments to it (each
//! answered once durable on a majority and applied), then reads the total linearizably through
//! a follower, which asks the leader (ReadIndex) before it answers. Every node applied the same
//! commands in the same order, so every node holds the same total.
//!
//! Run it with `cargo run --release -p balsa-examples --example counter`.

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

use balsa::state_machine::RestoreError;
use balsa::{Node, NodeConfig, StateMachine};

/// The replicated state: a total.
#[derive(Default)]
struct Counter(u64);

impl StateMachine for Counter {
    fn apply(&mut self, _index: u64, command: &[u8]) -> Vec<u8> {
        self.0 += u64::from(command.first().copied().unwrap_or(0));
        self.0.to_le_bytes().to_vec()
    }

    fn query(&self, _query: &[u8]) -> Vec<u8> {
        self.0.to_le_bytes().to_vec()
    }

    fn snapshot(&self) -> Vec<u8> {
        self.0.to_le_bytes().to_vec()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        let bytes = snapshot
            .try_into()
            .map_err(|_| RestoreError::new("a counter's snapshot is 8 bytes"))?;
        self.0 = u64::from_le_bytes(bytes);
        Ok(())
    }
}

fn total(answer: &[u8]) -> u64 {
    let mut bytes = [0; 8];
    bytes.copy_from_slice(&answer[..8]);
    u64::from_le_bytes(bytes)
}

/// A loopback address whose port was free a moment ago.
fn free_address() -> std::io::Result<SocketAddr> {
    UdpSocket::bind("127.0.0.1:0")?.local_addr()
}

#[allow(clippy::print_stdout, reason = "an example says what it does")]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    const TIMEOUT: Duration = Duration::from_secs(10);
    let root: PathBuf = std::env::temp_dir().join(format!("balsa-counter-{}", std::process::id()));
    let members: Vec<(u64, SocketAddr)> = vec![
        (1, free_address()?),
        (2, free_address()?),
        (3, free_address()?),
    ];
    let mut nodes = Vec::new();
    for (id, _) in &members {
        // Keys are left out (`Keys::insecure`): loopback in one process trusts itself. A real
        // deployment gives `config.keys` a peer and a client key.
        let config = NodeConfig::new(*id, members.clone(), root.join(format!("node-{id}")));
        nodes.push(Node::start(config, Counter::default())?);
    }
    let leader_id = nodes[0].wait_for_leader(TIMEOUT)?;
    println!("node {leader_id} leads");
    let leader = nodes
        .iter()
        .find(|node| node.id() == leader_id)
        .ok_or("the leader is one of the three")?;
    for step in 1..=10u8 {
        // A leader change in between fails this (`Error::NotLeader`, `Error::Lost`): a real
        // program proposes again to the new leader.
        let answer = leader.propose(vec![step], TIMEOUT)?;
        println!("added {step}: total {}", total(&answer));
    }
    let follower = nodes
        .iter()
        .find(|node| node.id() != leader_id)
        .ok_or("two of the three follow")?;
    let read = total(&follower.read(Vec::new(), TIMEOUT)?);
    println!(
        "node {} reads the total linearizably: {read}",
        follower.id()
    );
    assert_eq!(read, 55, "1 + 2 + ... + 10");
    for node in nodes {
        node.shutdown()?;
    }
    std::fs::remove_dir_all(&root)?;
    Ok(())
}
