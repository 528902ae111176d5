//! Which identity a starting node runs with: the decision between the data directory's
//! `IDENTITY` file, its write-ahead log and the node's configuration, and the asking of the
//! other members for the cluster's id when the node joins.
//!
//! ```text
//! IDENTITY            log state  joining  what happens
//! names another node  any        any      refused: NodeConfigError::WrongNode
//! present             any        no       the file wins (a bootstrap list unlike `members`
//!                                         is logged while in force: see `membership`)
//! present             any        yes      the members are asked: another id is refused
//!                                         (NodeConfigError::WrongCluster); silence until the
//!                                         join timeout, the file wins (logged)
//! absent              none       no       bootstrap: the id derived from `members` and the
//!                                         token, recorded with the members
//! absent              none       yes      join: the members' id, recorded without a
//!                                         bootstrap list
//! absent              some       no       a directory of an earlier version, adopted: the id
//!                                         derived as at bootstrap (logged)
//! absent              some       yes      adopted by joining: the members' id, without a
//!                                         bootstrap list (logged)
//! ```
//!
//! *Joining* is [`NodeConfig::join`]: the node enters a cluster that exists (a new member, or a
//! node that lost its disk coming back under a new id), whose id is whatever the cluster was
//! born with, not what this node's token would derive.
//!
//! The identity also says how the core starts ([`joining`]): a node whose directory records
//! that it joined, and whose log holds no state yet, starts with no configuration
//! (`raft::Config::joining`) and waits for a leader to send one; any other node starts with
//! bootstrap voters ([`membership`]: the recorded ones if it bootstrapped its cluster), in
//! force until its log or snapshot holds a configuration, which wins over both.
//!
//! Asking: every other member of `members` at once, a status request over the client protocol
//! with the clients' "any cluster" id, in rounds of at most [`ASK_ROUND`] until one answers or
//! [`NodeConfig::join_timeout`] has passed in all. The answers of one round must agree
//! ([`NodeConfigError::MembersDisagree`] otherwise).
//!
//! Invariants: once `IDENTITY` exists the cluster id is never derived again; the file is
//! written, durably, before the node's transport starts, so no datagram leaves carrying an id
//! that a restart would not find on disk.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use balsa_net::ANY_CLUSTER;

use super::identity::{Identity, cluster_id_text};
use super::{Error, NodeConfig, NodeConfigError, StartError};
use crate::client::{Client, ClientError, ClientOptions};
use crate::raft::NodeId;

/// The longest one round of asking the members waits for an answer.
pub const ASK_ROUND: Duration = Duration::from_millis(500);

/// What the members said the cluster's id is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Learned {
    /// The cluster's id.
    pub cluster_id: u64,
    /// A member that said so.
    pub from: SocketAddr,
}

/// The identity node `config.id` runs with, from its data directory's `IDENTITY` (`recorded`)
/// and whether its log holds any state (`fresh`: none); writes `IDENTITY` when it was absent.
/// `ask` asks the other members for the cluster's id ([`ask_members`] in a running node; it
/// fails with [`Error::NoMemberAnswered`] when none answered).
pub fn resolve(
    config: &NodeConfig,
    recorded: Option<Identity>,
    fresh: bool,
    ask: impl FnOnce(&NodeConfig) -> Result<Learned, Error>,
) -> Result<Identity, Error> {
    let dir = &config.data_dir;
    let joining = config.join;
    let others = config.members.iter().any(|(id, _)| *id != config.id);
    if let Some(identity) = recorded {
        if identity.node_id != config.id {
            return Err(NodeConfigError::WrongNode {
                dir: dir.clone(),
                recorded: identity.node_id,
                configured: config.id,
            }
            .into());
        }
        if config.join && others {
            match ask(config) {
                Ok(learned) if learned.cluster_id != identity.cluster_id => {
                    return Err(NodeConfigError::WrongCluster {
                        dir: dir.clone(),
                        recorded: identity.cluster_id,
                        learned: learned.cluster_id,
                        from: learned.from,
                    }
                    .into());
                }
                Ok(_) => {}
                Err(Error::NoMemberAnswered { waited, .. }) => log::warn!(
                    "no member answered within {} ms; node {} goes on as a member of cluster {}, \
                     as its data directory says",
                    waited.as_millis(),
                    config.id,
                    cluster_id_text(identity.cluster_id)
                ),
                Err(other) => return Err(other),
            }
        }
        return Ok(identity);
    }
    let identity = if joining {
        if !others {
            return Err(NodeConfigError::NoMemberToAsk { id: config.id }.into());
        }
        let learned = ask(config)?;
        Identity {
            cluster_id: learned.cluster_id,
            node_id: config.id,
            bootstrap: None,
        }
    } else {
        Identity::bootstrap(config.id, &config.members, &config.cluster_token)
    };
    identity.store(dir)?;
    let cluster = cluster_id_text(identity.cluster_id);
    match (fresh, joining) {
        (true, false) => log::info!(
            "node {} bootstraps cluster {cluster} with members {:?}",
            config.id,
            identity.bootstrap.as_deref().unwrap_or_default()
        ),
        (true, true) => log::info!("node {} joins cluster {cluster}", config.id),
        (false, _) => log::warn!(
            "data directory {} has no identity file (an earlier version wrote it): adopting it \
             as node {} of cluster {cluster}, {}",
            dir.display(),
            config.id,
            if joining {
                "the id its members report"
            } else {
                "derived from the members and the cluster token"
            }
        ),
    }
    Ok(identity)
}

/// The bootstrap members node `config.id`'s core starts with (in force until its log or a
/// snapshot holds a configuration): a node that bootstrapped its cluster, the members recorded
/// then, whatever `config.members` says now; a node that joined, `config.members`.
pub fn membership(config: &NodeConfig, identity: &Identity) -> Vec<(NodeId, SocketAddr)> {
    identity
        .bootstrap
        .clone()
        .unwrap_or_else(|| config.members.clone())
}

/// Logs a warning when the members given (`given`, `--cluster`) differ, order aside, from
/// those the cluster was bootstrapped with: called when the bootstrap configuration is the one
/// in force, so the recorded one wins.
pub fn warn_if_bootstrap_differs(
    given: &[(NodeId, SocketAddr)],
    config: &NodeConfig,
    identity: &Identity,
) {
    let Some(recorded) = &identity.bootstrap else {
        return;
    };
    let mut given_sorted = given.to_vec();
    given_sorted.sort_unstable();
    let mut recorded_sorted = recorded.clone();
    recorded_sorted.sort_unstable();
    if given_sorted != recorded_sorted {
        log::warn!(
            "the members given ({given:?}) differ from those the cluster was bootstrapped with \
             ({recorded:?}), recorded in {}: the log holds no configuration yet, so the recorded \
             membership wins",
            config.data_dir.display()
        );
    }
}

/// Whether node `config.id`'s core starts joining (knowing no configuration until a leader sends
/// one): its log holds no state (`fresh`) and its identity records no bootstrap, so it joined
/// (now or at an earlier start that ended before any state was written). A node with log state
/// finds its configuration there (or, for a directory of an earlier version, in the bootstrap
/// voters); a node that bootstrapped its cluster is one of the bootstrap voters even if `join`
/// is asked for on a later start (that is logged).
pub fn joining(config: &NodeConfig, identity: &Identity, fresh: bool) -> bool {
    let joining = fresh && identity.bootstrap.is_none();
    if config.join && !joining {
        let (why, from) = if fresh {
            (
                "records that it bootstrapped its cluster",
                "the members recorded then",
            )
        } else {
            ("holds state", "the log")
        };
        log::info!(
            "node {}'s data directory {why}: the configuration comes from {from}, not from the \
             join",
            config.id
        );
    }
    joining
}

/// Asks the other members of `config.members` for the cluster's id (see the module
/// documentation).
///
/// # Errors
/// [`Error::NoMemberAnswered`] once [`NodeConfig::join_timeout`] passed without an answer;
/// [`NodeConfigError::MembersDisagree`]; [`Error::Start`] ([`StartError::AskMembers`]) when no
/// client socket can be made.
#[allow(
    clippy::disallowed_methods,
    reason = "the runtime may read the clock: the join's wait is bounded in wall-clock time"
)]
pub fn ask_members(config: &NodeConfig) -> Result<Learned, Error> {
    let others: Vec<SocketAddr> = config
        .members
        .iter()
        .filter(|(id, _)| *id != config.id)
        .map(|(_, address)| *address)
        .collect();
    let started = Instant::now();
    let deadline = started + config.join_timeout;
    log::info!(
        "node {} asks {others:?} for the cluster's id (for at most {} ms)",
        config.id,
        config.join_timeout.as_millis()
    );
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::NoMemberAnswered {
                asked: others,
                waited: started.elapsed(),
            });
        }
        let round = left.min(ASK_ROUND);
        let options = ClientOptions {
            timeout: round,
            attempt_timeout: round / 2,
            cluster_id: ANY_CLUSTER,
            // Asked as a client: under the client key, which every member opens.
            key: config.keys.client.as_ref().map(|ring| ring.current.clone()),
            ..ClientOptions::default()
        };
        let mut client =
            Client::new(others.clone(), options).map_err(|error| StartError::AskMembers {
                source: error.into(),
            })?;
        let mut answers: Vec<(SocketAddr, u64)> = Vec::new();
        for (from, report) in others.iter().zip(client.status_all(&others)) {
            match report {
                Ok(report) => answers.push((*from, report.cluster_id)),
                Err(error @ ClientError::Unauthenticated { .. }) => {
                    log::warn!("asking {from} for the cluster's id: {error}");
                }
                Err(_) => {}
            }
        }
        if let Some(&(from, cluster_id)) = answers.first() {
            if answers.iter().any(|(_, id)| *id != cluster_id) {
                return Err(NodeConfigError::MembersDisagree { answers }.into());
            }
            log::info!(
                "the member at {from} reports cluster {}",
                cluster_id_text(cluster_id)
            );
            return Ok(Learned { cluster_id, from });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::identity::derive_cluster_id;
    use super::*;

    fn members() -> Vec<(NodeId, SocketAddr)> {
        (1..=3_u16)
            .map(|id| (u64::from(id), SocketAddr::from(([127, 0, 0, 1], 7000 + id))))
            .collect()
    }

    fn config(dir: &tempfile::TempDir, id: NodeId) -> NodeConfig {
        let mut config = NodeConfig::new(id, members(), dir.path().to_path_buf());
        config.cluster_token = "token".into();
        config
    }

    fn learned(cluster_id: u64) -> Learned {
        Learned {
            cluster_id,
            from: "127.0.0.1:7001".parse().expect("literal"),
        }
    }

    fn silence(config: &NodeConfig) -> Result<Learned, Error> {
        Err(Error::NoMemberAnswered {
            asked: Vec::new(),
            waited: config.join_timeout,
        })
    }

    fn never_asked(_: &NodeConfig) -> Result<Learned, Error> {
        panic!("the members were asked, though nothing needed them")
    }

    fn on_disk(dir: &tempfile::TempDir) -> Option<Identity> {
        Identity::load(dir.path()).expect("a readable identity")
    }

    #[test]
    fn a_fresh_node_bootstraps_with_the_derived_id_and_records_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = config(&dir, 2);
        let identity = resolve(&config, None, true, never_asked).expect("bootstraps");
        assert_eq!(identity.cluster_id, derive_cluster_id(&members(), "token"));
        assert_eq!(identity.node_id, 2);
        assert_eq!(identity.bootstrap, Some(members()));
        assert_eq!(on_disk(&dir), Some(identity));
    }

    #[test]
    fn the_recorded_identity_wins_over_a_new_token() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = resolve(&config(&dir, 1), None, true, never_asked).expect("bootstraps");
        let mut again = config(&dir, 1);
        again.cluster_token = "another".into();
        let restarted = resolve(&again, on_disk(&dir), false, never_asked).expect("restarts");
        assert_eq!(restarted, first);
    }

    #[test]
    fn a_directory_of_another_node_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        resolve(&config(&dir, 1), None, true, never_asked).expect("bootstraps");
        let refused = resolve(&config(&dir, 2), on_disk(&dir), false, never_asked)
            .expect_err("node 1's directory");
        assert_eq!(
            refused,
            Error::Config(NodeConfigError::WrongNode {
                dir: dir.path().to_path_buf(),
                recorded: 1,
                configured: 2
            })
        );
    }

    #[test]
    fn a_joining_node_takes_the_members_id_and_records_no_bootstrap_list() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = config(&dir, 3);
        config.join = true;
        let identity = resolve(&config, None, true, |_| Ok(learned(77))).expect("joins");
        assert_eq!(
            identity,
            Identity {
                cluster_id: 77,
                node_id: 3,
                bootstrap: None
            }
        );
        assert_eq!(on_disk(&dir), Some(identity.clone()));
        // Its restart needs nobody: silence leaves the recorded identity.
        assert_eq!(
            resolve(&config, on_disk(&dir), false, silence).expect("restarts"),
            identity
        );
    }

    #[test]
    fn joining_with_a_directory_of_another_cluster_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = config(&dir, 3);
        config.join = true;
        resolve(&config, None, true, |_| Ok(learned(77))).expect("joins");
        let refused = resolve(&config, on_disk(&dir), false, |_| Ok(learned(78)))
            .expect_err("another cluster");
        assert_eq!(
            refused,
            Error::Config(NodeConfigError::WrongCluster {
                dir: dir.path().to_path_buf(),
                recorded: 77,
                learned: 78,
                from: learned(78).from,
            })
        );
        // The same cluster is fine.
        assert!(resolve(&config, on_disk(&dir), false, |_| Ok(learned(77))).is_ok());
    }

    #[test]
    fn a_node_alone_in_its_members_cannot_join() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = config(&dir, 1);
        config.members.truncate(1);
        config.join = true;
        let refused = resolve(&config, None, true, never_asked).expect_err("nobody to ask");
        assert_eq!(
            refused,
            Error::Config(NodeConfigError::NoMemberToAsk { id: 1 })
        );
    }

    #[test]
    fn a_join_nobody_answers_fails_and_records_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = config(&dir, 3);
        config.join = true;
        let refused = resolve(&config, None, true, silence).expect_err("nobody answered");
        assert!(matches!(refused, Error::NoMemberAnswered { .. }));
        assert_eq!(on_disk(&dir), None);
    }

    #[test]
    fn only_a_node_that_joined_and_holds_no_state_starts_its_core_joining() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = config(&dir, 3);
        let bootstrapped = Identity::bootstrap(3, &members(), "token");
        let joined = Identity {
            bootstrap: None,
            ..bootstrapped.clone()
        };
        for join in [false, true] {
            config.join = join;
            // A node that joined, restarted before any state was written: still joining.
            assert!(joining(&config, &joined, true), "join {join}");
            // With state, the log says the configuration.
            assert!(!joining(&config, &joined, false), "join {join}");
            // A bootstrap voter stays one.
            assert!(!joining(&config, &bootstrapped, true), "join {join}");
            assert!(!joining(&config, &bootstrapped, false), "join {join}");
        }
    }

    #[test]
    fn a_directory_of_an_earlier_version_is_adopted_with_the_derived_id() {
        let dir = tempfile::tempdir().expect("temp dir");
        let adopted = resolve(&config(&dir, 1), None, false, never_asked).expect("adopts");
        assert_eq!(
            adopted,
            Identity::bootstrap(1, &members(), "token"),
            "as a bootstrap would have derived it"
        );
        assert_eq!(on_disk(&dir), Some(adopted));
    }

    #[test]
    fn a_bootstrapped_node_runs_with_the_recorded_members() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = config(&dir, 1);
        let identity = resolve(&config, None, true, never_asked).expect("bootstraps");
        assert_eq!(membership(&config, &identity), members());
        let mut moved = config.clone();
        moved.members[2].1 = "127.0.0.1:9003".parse().expect("literal");
        assert_eq!(membership(&moved, &identity), members());
        // A joined node has no record: its configuration's members stand.
        let joined = Identity {
            bootstrap: None,
            ..identity
        };
        assert_eq!(membership(&moved, &joined), moved.members);
    }
}
