//! `--net netns`: each node in a network namespace of its own, on a Linux bridge, with
//! partitions made by blackhole routes. Needs root and the `ip` command (iproute2), and runs
//! nothing else.
//!
//! What one [`NetnsNetwork`] owns, named `bl<pid>i<instance>…` (so at most 15 characters, the
//! kernel's limit for link names): the bridge `…br` in the harness's namespace, holding the
//! address `.1` of a private /24; per node `k`, the namespace `…n<k>` and a veth pair whose
//! harness-side end `…v<k>` is a port of the bridge and whose other end is `eth0` in the
//! namespace, with the address `.(10 + k)`. Node `k` listens on that address, port
//! [`NODE_PORT`], which is also its advertised and client address: the harness reaches every
//! node through the bridge's address. `lo` is up in every namespace.
//!
//! A blocked directed link `(i, j)` is the route `blackhole <address of j>/32` in `i`'s
//! namespace: `i`'s datagrams to `j` are refused at `i` (its `send_to` fails), while `j` still
//! reaches `i`, and the bridge's address (the harness's clients) is never blackholed. (A node
//! logs a warning for each refused send, so a long partition makes its log grow.)
//!
//! Bridged traffic passes through the host firewall when `br_netfilter` is loaded with
//! `net.bridge.bridge-nf-call-iptables = 1`: a FORWARD chain that drops (as Docker's does) then
//! cuts nodes apart, which this module cannot see without a firewall tool.
//!
//! Invariants:
//! - The /24 overlaps no route of the harness's namespace (all tables) when it is chosen, nor
//!   the subnet of another `NetnsNetwork` of this process; the search starts at a subnet derived
//!   from the process id, so concurrent runs start apart.
//! - Names carry the process id and an instance number unique among the live networks of this
//!   process, so neither concurrent runs nor concurrent networks of one process collide.
//! - Before making anything, [`NetnsNetwork::open`] removes what earlier runs left behind (a
//!   harness killed with SIGKILL cannot clean up): names of this scheme whose process id is no
//!   longer alive, and those of this very process and instance (a slot is only free once its
//!   previous holder tore down). Processes still running in such a namespace (the nodes of a
//!   dead harness) are killed first; so are those in this network's own namespaces at teardown.
//! - Every `ip` invocation is checked: a failure is [`NetError::Command`] with the command line
//!   and its stderr.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Mutex, PoisonError};

use super::{NetError, Network, NodeAddresses, check_links, check_new_node};

/// The UDP port every node listens on, in its own namespace.
pub const NODE_PORT: u16 = 7000;

const MODE: &str = "netns";
/// The longest name the kernel takes for a link (IFNAMSIZ less the terminating NUL).
const MAX_LINK_NAME: usize = 15;
/// Instance numbers stay below this, so a name keeps to two digits for them.
const MAX_INSTANCES: u32 = 100;
/// Node `k`'s address in the /24 is `.(NODE_HOST_BASE + k)`; the bridge's is `.1`.
const NODE_HOST_BASE: u32 = 10;

/// The instances of this process that are alive, with their subnets once chosen.
static INSTANCES: Mutex<BTreeMap<u32, Option<Subnet>>> = Mutex::new(BTreeMap::new());

/// The network of one run in netns mode. See the module documentation.
#[derive(Debug)]
pub struct NetnsNetwork {
    names: Names,
    subnet: Subnet,
    /// This process's claim on `names.instance`; `None` once torn down.
    slot: Option<Slot>,
    /// Whether the bridge exists (made and not yet removed).
    bridge: bool,
    /// What exists of each node added and not yet torn down.
    nodes: BTreeMap<u64, NodeState>,
    /// Every id ever added (ids are used once per network).
    added: BTreeSet<u64>,
    /// The blackholes in place, as directed links.
    blocked: BTreeSet<(u64, u64)>,
}

#[derive(Debug, Default)]
struct NodeState {
    namespace: bool,
    veth: bool,
}

impl NetnsNetwork {
    /// Checks that this machine can run netns mode ([`NetError::Unsupported`] if not), removes
    /// the leftovers of dead runs, chooses a /24 and makes the bridge.
    pub fn open() -> Result<NetnsNetwork, NetError> {
        preflight()?;
        let slot = Slot::claim()?;
        let names = Names {
            pid: std::process::id(),
            instance: slot.instance,
        };
        names.check_lengths()?;
        remove_leftovers(&names);
        probe(&names)?;
        let subnet = slot.choose_subnet(names.pid)?;
        let mut network = NetnsNetwork {
            names,
            subnet,
            slot: Some(slot),
            bridge: false,
            nodes: BTreeMap::new(),
            added: BTreeSet::new(),
            blocked: BTreeSet::new(),
        };
        // On an error the network is dropped, which removes whatever part of the bridge exists.
        network.make_bridge().map_err(|error| {
            unsupported(format!(
                "cannot make the bridge {} with the address {}/24 ({error}); use --net proxy",
                network.names.bridge(),
                network.subnet.bridge_ip()
            ))
        })?;
        log::info!(
            "netns network: bridge {} at {}/24",
            network.names.bridge(),
            network.subnet.bridge_ip()
        );
        Ok(network)
    }

    fn make_bridge(&mut self) -> Result<(), NetError> {
        let bridge = self.names.bridge();
        run_ip(&["link", "add", &bridge, "type", "bridge"])?;
        self.bridge = true;
        let address = format!("{}/24", self.subnet.bridge_ip());
        run_ip(&["addr", "add", &address, "dev", &bridge])?;
        run_ip(&["link", "set", "dev", &bridge, "up"])?;
        Ok(())
    }

    /// Applies `lines` (changes to the blackholes of node `from`) in `from`'s namespace. On a
    /// failure, records the blackholes `from` is left with (the caller records them on success).
    fn apply_routes(&mut self, from: u64, lines: &str) -> Result<(), NetError> {
        let namespace = self.names.namespace(from);
        let applied = run_ip_input(&["-n", &namespace, "-batch", "-"], lines);
        if applied.is_err() {
            // The batch stops at its first failure: read back what is in force.
            let now = self.blackholes_in(from)?;
            self.blocked.retain(|&(sender, _)| sender != from);
            self.blocked.extend(now.into_iter().map(|to| (from, to)));
        }
        applied.map(|_| ())
    }

    /// The nodes `from`'s namespace has a blackhole route for.
    fn blackholes_in(&self, from: u64) -> Result<BTreeSet<u64>, NetError> {
        let namespace = self.names.namespace(from);
        let output = run_ip(&["-n", &namespace, "-j", "route", "show", "type", "blackhole"])?;
        let destinations = json_strings(&output, "dst").map_err(|problem| NetError::Command {
            command: format!("ip -n {namespace} -j route show type blackhole"),
            status: format!("unreadable output: {problem}"),
            stderr: String::new(),
        })?;
        Ok(destinations
            .iter()
            .filter_map(|destination| parse_prefix(destination))
            .filter(|&(_, length)| length == 32)
            .filter_map(|(address, _)| self.subnet.node_of(address))
            .collect())
    }
}

impl Network for NetnsNetwork {
    fn mode(&self) -> &'static str {
        MODE
    }

    fn add_node(&mut self, id: u64) -> Result<NodeAddresses, NetError> {
        check_new_node(id, self.added.iter().copied())?;
        if self.slot.is_none() {
            return Err(NetError::BadNode {
                id,
                problem: "the network was torn down",
            });
        }
        self.added.insert(id);
        let namespace = self.names.namespace(id);
        let veth = self.names.veth(id);
        let bridge = self.names.bridge();
        let state = self.nodes.entry(id).or_default();
        run_ip(&["netns", "add", &namespace])?;
        state.namespace = true;
        run_ip(&[
            "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &namespace,
        ])?;
        state.veth = true;
        run_ip(&["link", "set", "dev", &veth, "master", &bridge, "up"])?;
        let inside = format!(
            "addr add {}/24 dev eth0\nlink set dev eth0 up\nlink set dev lo up\n",
            self.subnet.node_ip(id)
        );
        run_ip_input(&["-n", &namespace, "-batch", "-"], &inside)?;
        let address = self.client_address(id);
        Ok(NodeAddresses {
            listen: address,
            advertised: address,
        })
    }

    fn wrap_command(&self, id: u64) -> Vec<OsString> {
        ["ip", "netns", "exec"]
            .into_iter()
            .map(OsString::from)
            .chain([OsString::from(self.names.namespace(id))])
            .collect()
    }

    fn client_address(&self, id: u64) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(self.subnet.node_ip(id), NODE_PORT))
    }

    fn set_blocked(&mut self, blocked: &BTreeSet<(u64, u64)>) -> Result<(), NetError> {
        let live: BTreeSet<u64> = self.nodes.keys().copied().collect();
        check_links(blocked, &live)?;
        let mut lines: BTreeMap<u64, String> = BTreeMap::new();
        for &(from, to) in self.blocked.difference(blocked) {
            let line = format!("route del blackhole {}/32\n", self.subnet.node_ip(to));
            lines.entry(from).or_default().push_str(&line);
        }
        for &(from, to) in blocked.difference(&self.blocked) {
            // `replace` rather than `add`: in force afterwards whether or not it was before.
            let line = format!("route replace blackhole {}/32\n", self.subnet.node_ip(to));
            lines.entry(from).or_default().push_str(&line);
        }
        for (from, lines) in lines {
            self.apply_routes(from, &lines)?;
            self.blocked.retain(|&(sender, _)| sender != from);
            self.blocked
                .extend(blocked.iter().filter(|&&(sender, _)| sender == from));
        }
        Ok(())
    }

    fn teardown(&mut self) {
        let nodes = std::mem::take(&mut self.nodes);
        for (id, state) in nodes {
            if state.namespace {
                match kill_processes_in(&self.names.namespace(id)) {
                    Ok(0) => {}
                    Ok(killed) => log::warn!(
                        "netns teardown: killed {killed} process(es) still running as node {id}"
                    ),
                    Err(error) => log::warn!("netns teardown: {error}"),
                }
            }
            if state.veth {
                warn_on_error("netns teardown", remove_link(&self.names.veth(id)));
            }
            if state.namespace {
                warn_on_error(
                    "netns teardown",
                    remove_namespace(&self.names.namespace(id)),
                );
            }
        }
        if self.bridge {
            warn_on_error("netns teardown", remove_link(&self.names.bridge()));
            self.bridge = false;
        }
        self.blocked.clear();
        // Releases the instance number and subnet for later networks of this process.
        self.slot = None;
    }
}

impl Drop for NetnsNetwork {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Logs a failure to remove something: what stays behind is removed by the next run, or makes
/// a later `ip` command fail with its reason.
fn warn_on_error(context: &str, result: Result<(), NetError>) {
    if let Err(error) = result {
        log::warn!("{context}: {error}");
    }
}

fn unsupported(reason: String) -> NetError {
    NetError::Unsupported { mode: MODE, reason }
}

/// Root and `ip`, or [`NetError::Unsupported`].
fn preflight() -> Result<(), NetError> {
    if let Some(uid) = effective_uid().filter(|&uid| uid != 0) {
        return Err(unsupported(format!(
            "netns mode needs root and the `ip` command: run as root or use --net proxy \
             (this process runs as uid {uid})"
        )));
    }
    run_ip(&["-V"]).map_err(|error| {
        unsupported(format!(
            "netns mode needs root and the `ip` command (iproute2): install iproute2 or use \
             --net proxy ({error})"
        ))
    })?;
    Ok(())
}

/// This process's effective user id, from `/proc/self/status`; `None` if it cannot be read.
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("Uid:"))?;
    // "Uid:" real effective saved filesystem
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Makes a throwaway namespace with a veth into it, runs a command inside, and removes both:
/// [`NetError::Unsupported`] if any of it fails.
fn probe(names: &Names) -> Result<(), NetError> {
    let namespace = names.probe_namespace();
    let veth = names.probe_veth();
    let made = run_ip(&["netns", "add", &namespace])
        .and_then(|_| {
            run_ip(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &namespace,
            ])
        })
        .and_then(|_| run_ip(&["netns", "exec", &namespace, "ip", "link", "set", "lo", "up"]));
    warn_on_error("netns probe", remove_link(&veth));
    warn_on_error("netns probe", remove_namespace(&namespace));
    made.map(|_| ()).map_err(|error| {
        unsupported(format!(
            "a throwaway network namespace with a veth could not be made and entered ({error}); \
             use --net proxy"
        ))
    })
}

/// Removes the links and namespaces of this naming scheme that belong to a process that is no
/// longer alive, or to this process and `ours.instance` (whose slot is free). Failures are only
/// logged: a leftover that stays in the way makes a later `ip` command fail, with its reason.
fn remove_leftovers(ours: &Names) {
    let stale = |name: &str| match parse_name(name) {
        Some((pid, instance)) if pid == ours.pid => instance == ours.instance,
        Some((pid, _)) => !process_alive(pid),
        None => false,
    };
    match list_links() {
        Ok(links) => {
            let mut links: Vec<String> = links.into_iter().filter(|name| stale(name)).collect();
            // Veths before bridges: a bridge goes once its ports are gone.
            links.sort_by_key(|name| name.ends_with("br"));
            for link in links {
                log::info!("removing the link {link}, left by an earlier run");
                warn_on_error("removing leftovers", remove_link(&link));
            }
        }
        Err(error) => log::warn!("cannot look for leftover links: {error}"),
    }
    match list_namespaces() {
        Ok(namespaces) => {
            for namespace in namespaces.into_iter().filter(|name| stale(name)) {
                log::info!("removing the namespace {namespace}, left by an earlier run");
                match kill_processes_in(&namespace) {
                    Ok(0) => {}
                    Ok(killed) => log::info!("killed {killed} process(es) left in {namespace}"),
                    Err(error) => log::warn!("{error}"),
                }
                warn_on_error("removing leftovers", remove_namespace(&namespace));
            }
        }
        Err(error) => log::warn!("cannot look for leftover namespaces: {error}"),
    }
}

fn process_alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// The processes running in `namespace` (none if it does not exist).
fn processes_in(namespace: &str) -> Result<Vec<rustix::process::Pid>, NetError> {
    let output = match run_ip(&["netns", "pids", namespace]) {
        Err(NetError::Command { stderr, .. }) if stderr.contains("No such file") => {
            return Ok(Vec::new());
        }
        other => other?,
    };
    Ok(output
        .split_whitespace()
        .filter_map(|pid| pid.parse().ok().and_then(rustix::process::Pid::from_raw))
        .collect())
}

/// Sends SIGKILL to every process in `namespace` (a node a dead harness left running, which
/// would otherwise keep the namespace alive, detached); how many there were.
fn kill_processes_in(namespace: &str) -> Result<usize, NetError> {
    let mut killed = 0;
    for pid in processes_in(namespace)? {
        match rustix::process::kill_process(pid, rustix::process::Signal::KILL) {
            Ok(()) => killed += 1,
            // It ended in the meantime.
            Err(rustix::io::Errno::SRCH) => {}
            Err(error) => {
                return Err(NetError::Io {
                    action: format!(
                        "killing process {} in the namespace {namespace}",
                        pid.as_raw_pid()
                    ),
                    source: error.into(),
                });
            }
        }
    }
    Ok(killed)
}

/// Deletes a link; one that is already gone is not an error.
fn remove_link(name: &str) -> Result<(), NetError> {
    match run_ip(&["link", "del", "dev", name]) {
        Err(NetError::Command { stderr, .. }) if stderr.contains("Cannot find device") => Ok(()),
        other => other.map(|_| ()),
    }
}

/// Deletes a namespace; one that is already gone is not an error.
fn remove_namespace(name: &str) -> Result<(), NetError> {
    match run_ip(&["netns", "del", name]) {
        Err(NetError::Command { stderr, .. }) if stderr.contains("No such file") => Ok(()),
        other => other.map(|_| ()),
    }
}

fn list_links() -> Result<Vec<String>, NetError> {
    let output = run_ip(&["-j", "link", "show"])?;
    json_strings(&output, "ifname").map_err(|problem| unreadable("ip -j link show", problem))
}

fn list_namespaces() -> Result<Vec<String>, NetError> {
    let output = run_ip(&["-j", "netns", "list"])?;
    json_strings(&output, "name").map_err(|problem| unreadable("ip -j netns list", problem))
}

/// The destination prefixes of every IPv4 route of this namespace, all tables, but the
/// default routes.
fn list_route_prefixes() -> Result<Vec<(u32, u8)>, NetError> {
    let output = run_ip(&["-j", "-4", "route", "show", "table", "all"])?;
    let destinations = json_strings(&output, "dst")
        .map_err(|problem| unreadable("ip -j -4 route show table all", problem))?;
    Ok(destinations
        .iter()
        .filter_map(|destination| parse_prefix(destination))
        .collect())
}

fn unreadable(command: &str, problem: String) -> NetError {
    NetError::Command {
        command: command.into(),
        status: format!("unreadable output: {problem}"),
        stderr: String::new(),
    }
}

/// The string values of `key` in the objects of `ip -j`'s output: a JSON array of objects
/// (nothing at all from some versions when there are none).
fn json_strings(output: &str, key: &str) -> Result<Vec<String>, String> {
    if output.trim().is_empty() {
        return Ok(Vec::new());
    }
    let value: serde_json::Value =
        serde_json::from_str(output).map_err(|error| error.to_string())?;
    let array = value
        .as_array()
        .ok_or_else(|| "not a JSON array".to_string())?;
    Ok(array
        .iter()
        .filter_map(|object| object.get(key)?.as_str())
        .map(str::to_string)
        .collect())
}

/// `a.b.c.d/len` or `a.b.c.d` (a /32) as (address, length); `None` for anything else
/// (`default`, IPv6).
fn parse_prefix(text: &str) -> Option<(u32, u8)> {
    let (address, length) = match text.split_once('/') {
        Some((address, length)) => (address, length.parse().ok()?),
        None => (text, 32),
    };
    let address: Ipv4Addr = address.parse().ok()?;
    (length <= 32).then_some((u32::from(address), length))
}

/// Runs `ip` with `args`; its stdout, or [`NetError::Command`].
fn run_ip<S: AsRef<OsStr>>(args: &[S]) -> Result<String, NetError> {
    run_ip_with(args, None)
}

/// Runs `ip` with `args` and `input` on its stdin (for `-batch -`).
fn run_ip_input<S: AsRef<OsStr>>(args: &[S], input: &str) -> Result<String, NetError> {
    run_ip_with(args, Some(input))
}

fn run_ip_with<S: AsRef<OsStr>>(args: &[S], input: Option<&str>) -> Result<String, NetError> {
    let mut command_line = String::from("ip");
    for arg in args {
        command_line.push(' ');
        command_line.push_str(&arg.as_ref().to_string_lossy());
    }
    if let Some(input) = input {
        command_line.push_str(" <<< \"");
        command_line.push_str(&input.trim_end().replace('\n', "; "));
        command_line.push('"');
    }
    let failed = |status: String, stderr: String| NetError::Command {
        command: command_line.clone(),
        status,
        stderr,
    };
    let mut child = Command::new("ip")
        .args(args)
        .env("LC_ALL", "C")
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| failed(format!("not started: {error}"), String::new()))?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        // Dropping `stdin` afterwards closes it, which ends the batch.
        if let Err(error) = stdin.write_all(input.as_bytes()) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(failed(format!("writing its input: {error}"), String::new()));
        }
    }
    let output = child
        .wait_with_output()
        .map_err(|error| failed(format!("not awaited: {error}"), String::new()))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(failed(
            output.status.to_string(),
            String::from_utf8_lossy(&output.stderr).trim().to_string(),
        ))
    }
}

/// A private /24, as its network address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Subnet(u32);

impl Subnet {
    fn bridge_ip(self) -> Ipv4Addr {
        Ipv4Addr::from(self.0 + 1)
    }

    /// Node `id`'s address. Ids are at most [`super::MAX_NODE_ID`], so the host part stays
    /// below 255 for any id the network accepts; a larger one wraps within the /24.
    fn node_ip(self, id: u64) -> Ipv4Addr {
        let host = (u64::from(NODE_HOST_BASE) + id) % 256;
        Ipv4Addr::from(self.0 | u32::try_from(host).unwrap_or(0))
    }

    /// The node whose address `address` is, if any.
    fn node_of(self, address: u32) -> Option<u64> {
        let host = address.checked_sub(self.0).filter(|&host| host < 256)?;
        let id = u64::from(host.checked_sub(NODE_HOST_BASE)?);
        (1..=super::MAX_NODE_ID).contains(&id).then_some(id)
    }

    fn overlaps(self, (address, length): (u32, u8)) -> bool {
        let length = length.min(24);
        let mask = if length == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(length))
        };
        self.0 & mask == address & mask
    }
}

/// The private ranges searched for a /24, as (first address, number of /24s in it).
const POOLS: [(Ipv4Addr, u32); 3] = [
    (Ipv4Addr::new(10, 0, 0, 0), 1 << 16),
    (Ipv4Addr::new(172, 16, 0, 0), 1 << 12),
    (Ipv4Addr::new(192, 168, 0, 0), 1 << 8),
];

/// The first /24 that overlaps neither a route in `routes` (default routes excluded) nor a
/// subnet in `taken`, searching each pool from the /24 at `pid` modulo its size.
fn pick_subnet(pid: u32, routes: &[(u32, u8)], taken: &[Subnet]) -> Option<Subnet> {
    let routes: Vec<(u32, u8)> = routes
        .iter()
        .copied()
        .filter(|&(_, length)| length > 0)
        .collect();
    POOLS.iter().find_map(|&(first, count)| {
        (0..count)
            .map(|step| {
                let index = pid.wrapping_add(step) % count;
                Subnet(u32::from(first) + (index << 8))
            })
            .find(|candidate| {
                !taken.contains(candidate) && !routes.iter().any(|&route| candidate.overlaps(route))
            })
    })
}

/// The names of one network's links and namespaces: `bl<pid>i<instance>` then `br` (the
/// bridge), `v<k>` (node `k`'s veth), `n<k>` (its namespace), `p`/`pv` (the probe's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Names {
    pid: u32,
    instance: u32,
}

impl Names {
    fn prefix(self) -> String {
        format!("bl{}i{}", self.pid, self.instance)
    }

    fn bridge(self) -> String {
        format!("{}br", self.prefix())
    }

    fn veth(self, id: u64) -> String {
        format!("{}v{id}", self.prefix())
    }

    fn namespace(self, id: u64) -> String {
        format!("{}n{id}", self.prefix())
    }

    fn probe_namespace(self) -> String {
        format!("{}p", self.prefix())
    }

    fn probe_veth(self) -> String {
        format!("{}pv", self.prefix())
    }

    fn check_lengths(self) -> Result<(), NetError> {
        let longest = self.veth(super::MAX_NODE_ID);
        if longest.len() > MAX_LINK_NAME {
            return Err(NetError::Exhausted {
                what: format!(
                    "link name: `{longest}` is longer than {MAX_LINK_NAME} characters \
                     (process id {} is too large)",
                    self.pid
                ),
            });
        }
        Ok(())
    }
}

/// The (process id, instance) of a name of this scheme, else `None`.
fn parse_name(name: &str) -> Option<(u32, u32)> {
    fn split_number(text: &str) -> Option<(u32, &str)> {
        let end = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        Some((text[..end].parse().ok()?, &text[end..]))
    }
    let (pid, rest) = split_number(name.strip_prefix("bl")?)?;
    let (instance, rest) = split_number(rest.strip_prefix('i')?)?;
    let known = match rest {
        "br" | "p" | "pv" => true,
        _ => rest.strip_prefix(['v', 'n']).is_some_and(|id| {
            !id.is_empty() && id.len() <= 2 && id.bytes().all(|b| b.is_ascii_digit())
        }),
    };
    known.then_some((pid, instance))
}

/// This process's claim on an instance number, released on drop.
#[derive(Debug)]
struct Slot {
    instance: u32,
}

impl Slot {
    fn claim() -> Result<Slot, NetError> {
        let mut instances = INSTANCES.lock().unwrap_or_else(PoisonError::into_inner);
        let instance = (0..MAX_INSTANCES)
            .find(|instance| !instances.contains_key(instance))
            .ok_or_else(|| NetError::Exhausted {
                what: format!(
                    "netns instance: this process already has {MAX_INSTANCES} networks open"
                ),
            })?;
        instances.insert(instance, None);
        Ok(Slot { instance })
    }

    /// Chooses this instance's /24 and records it, so later networks of this process avoid it.
    fn choose_subnet(&self, pid: u32) -> Result<Subnet, NetError> {
        let routes = list_route_prefixes()?;
        let mut instances = INSTANCES.lock().unwrap_or_else(PoisonError::into_inner);
        let taken: Vec<Subnet> = instances.values().flatten().copied().collect();
        let subnet = pick_subnet(pid, &routes, &taken).ok_or_else(|| NetError::Exhausted {
            what: "private /24 for netns mode: every one in 10.0.0.0/8, 172.16.0.0/12 and \
                   192.168.0.0/16 overlaps a route (see `ip -4 route show table all`); use \
                   --net proxy"
                .into(),
        })?;
        instances.insert(self.instance, Some(subnet));
        Ok(subnet)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        INSTANCES
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.instance);
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    use std::net::UdpSocket;
    use std::process::Child;
    use std::time::{Duration, Instant};

    /// Serialises the tests that make namespaces: one test's removal of dead runs' leftovers
    /// must not race another's making of fake ones.
    pub(in super::super) static NETNS_TESTS: Mutex<()> = Mutex::new(());

    /// Set in the environment of a re-executed test binary: the address its agent binds.
    const AGENT_ENV: &str = "BALSA_TORTURE_NET_AGENT";
    /// An agent exits after this long without a datagram (if its test died without killing it).
    const AGENT_IDLE: Duration = Duration::from_secs(30);
    /// How long a check waits for an answer before it counts as lost.
    const PATIENCE: Duration = Duration::from_secs(5);

    /// Whether this machine can run netns mode; prints why not when it cannot.
    #[allow(clippy::print_stderr, reason = "a skipped test says why")]
    pub(in super::super) fn can_run_netns() -> bool {
        let checked = preflight().and_then(|()| {
            let slot = Slot::claim()?;
            probe(&Names {
                pid: std::process::id(),
                instance: slot.instance,
            })
        });
        match checked {
            Ok(()) => true,
            Err(error) => {
                eprintln!("netns test skipped: {error}");
                false
            }
        }
    }

    #[allow(
        clippy::disallowed_methods,
        reason = "tests bound their waits on the wall clock"
    )]
    fn now() -> Instant {
        Instant::now()
    }

    fn lock_netns_tests() -> std::sync::MutexGuard<'static, ()> {
        NETNS_TESTS.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[test]
    fn names_fit_the_kernel_limit_and_parse_back() {
        let names = Names {
            pid: 4_194_304,
            instance: MAX_INSTANCES - 1,
        };
        assert!(names.check_lengths().is_ok());
        assert_eq!(names.veth(12), "bl4194304i99v12");
        for name in [
            names.bridge(),
            names.veth(12),
            names.namespace(3),
            names.probe_namespace(),
            names.probe_veth(),
        ] {
            assert!(name.len() <= MAX_LINK_NAME, "{name}");
            assert_eq!(parse_name(&name), Some((4_194_304, 99)), "{name}");
        }
        for other in [
            "eth0",
            "bl12",
            "bl12i3",
            "bl12i3x",
            "bl12i3v",
            "bl12i3v123",
            "blai1br",
        ] {
            assert_eq!(parse_name(other), None, "{other}");
        }
        let too_long = Names {
            pid: 123_456_789,
            instance: 10,
        };
        assert!(matches!(
            too_long.check_lengths(),
            Err(NetError::Exhausted { .. })
        ));
    }

    #[test]
    fn subnet_addresses_and_their_nodes() {
        let subnet = Subnet(u32::from(Ipv4Addr::new(10, 1, 2, 0)));
        assert_eq!(subnet.bridge_ip(), Ipv4Addr::new(10, 1, 2, 1));
        assert_eq!(subnet.node_ip(1), Ipv4Addr::new(10, 1, 2, 11));
        assert_eq!(subnet.node_ip(12), Ipv4Addr::new(10, 1, 2, 22));
        assert_eq!(
            subnet.node_of(u32::from(Ipv4Addr::new(10, 1, 2, 12))),
            Some(2)
        );
        assert_eq!(subnet.node_of(u32::from(Ipv4Addr::new(10, 1, 2, 1))), None);
        assert_eq!(subnet.node_of(u32::from(Ipv4Addr::new(10, 1, 3, 12))), None);
    }

    #[test]
    fn the_subnet_avoids_routes_and_other_networks() {
        let at = |a, b, c| Subnet(u32::from(Ipv4Addr::new(a, b, c, 0)));
        // The pid picks the start: 0x0102_0304 % 65536 = 0x0304, so 10.3.4.0/24.
        let pid = 0x0102_0304;
        let default_route = (0, 0);
        assert_eq!(pick_subnet(pid, &[default_route], &[]), Some(at(10, 3, 4)));
        let route = |text: &str| parse_prefix(text).expect("a valid prefix");
        // A /24 route on it, and another network of this process on the next one.
        assert_eq!(
            pick_subnet(pid, &[route("10.3.4.0/24")], &[at(10, 3, 5)]),
            Some(at(10, 3, 6))
        );
        // A host route (a /32) inside it is an overlap too.
        assert_eq!(
            pick_subnet(pid, &[route("10.3.4.200")], &[]),
            Some(at(10, 3, 5))
        );
        // All of 10/8 in use: the next pool.
        assert_eq!(
            pick_subnet(pid, &[route("10.0.0.0/8")], &[]),
            Some(at(172, 16 + 3, 4))
        );
        assert_eq!(
            pick_subnet(
                pid,
                &[
                    route("10.0.0.0/8"),
                    route("172.16.0.0/12"),
                    route("192.168.0.0/16")
                ],
                &[]
            ),
            None
        );
    }

    #[test]
    fn ip_json_is_read_leniently() {
        let routes = r#"[{"dst":"default","gateway":"192.0.2.1","dev":"eth0"},
            {"dst":"192.0.2.0/24","dev":"eth0"},{"type":"local","dst":"127.0.0.1","dev":"lo"}]"#;
        let destinations = json_strings(routes, "dst").expect("valid JSON");
        let prefixes: Vec<(u32, u8)> = destinations
            .iter()
            .filter_map(|destination| parse_prefix(destination))
            .collect();
        assert_eq!(
            prefixes,
            vec![
                (u32::from(Ipv4Addr::new(192, 0, 2, 0)), 24),
                (u32::from(Ipv4Addr::new(127, 0, 0, 1)), 32)
            ]
        );
        assert_eq!(json_strings("", "name"), Ok(vec![]));
        assert_eq!(json_strings("[]\n", "name"), Ok(vec![]));
        assert!(json_strings("{}", "name").is_err());
    }

    /// Not a test on its own: the body of an agent when the test binary is re-executed inside a
    /// namespace with [`AGENT_ENV`] set (otherwise it returns at once).
    ///
    /// The agent binds that address and answers datagrams of text: `HELLO` makes the sender
    /// its controller and is answered `HELLO-OK`; `SEND <address> <token>` sends
    /// `PING <token>` to the address and tells the controller `SENT <token> ok` or
    /// `SENT <token> failed <error>`; `PING <token>` is answered `PONG <token>` and reported to
    /// the controller as `HEARD <token> FROM <sender>`; `BYE` ends it.
    #[test]
    fn agent() {
        let Ok(address) = std::env::var(AGENT_ENV) else {
            return;
        };
        let address: SocketAddr = address.parse().expect("the test passes a socket address");
        let socket = UdpSocket::bind(address).expect("the agent's address is free");
        socket
            .set_read_timeout(Some(AGENT_IDLE))
            .expect("a non-zero timeout");
        let mut controller: Option<SocketAddr> = None;
        let mut buffer = [0u8; 1500];
        let reply = |to: SocketAddr, text: String| {
            // A lost answer shows as a timeout in the test.
            let _ = socket.send_to(text.as_bytes(), to);
        };
        loop {
            let (length, from) = match socket.recv_from(&mut buffer) {
                Ok(received) => received,
                // A stop and continue of the process interrupts a receive with a timeout.
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                // Idle for too long: its test is gone.
                Err(_) => return,
            };
            let text = String::from_utf8_lossy(&buffer[..length]).into_owned();
            let words: Vec<&str> = text.split_whitespace().collect();
            match words.as_slice() {
                ["HELLO"] => {
                    controller = Some(from);
                    reply(from, "HELLO-OK".into());
                }
                ["SEND", to, token] => {
                    let outcome = match to.parse::<SocketAddr>() {
                        Ok(to) => match socket.send_to(format!("PING {token}").as_bytes(), to) {
                            Ok(_) => "ok".to_string(),
                            Err(error) => format!("failed {error}"),
                        },
                        Err(error) => format!("failed {error}"),
                    };
                    reply(from, format!("SENT {token} {outcome}"));
                }
                ["PING", token] => {
                    reply(from, format!("PONG {token}"));
                    if let Some(controller) = controller {
                        reply(controller, format!("HEARD {token} FROM {from}"));
                    }
                }
                ["BYE"] => return,
                _ => {}
            }
        }
    }

    /// An agent process in a node's namespace; killed and reaped on drop.
    struct Agent(Child);

    impl Drop for Agent {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// The agent's name for libtest's filter: its module path less the crate's name.
    fn agent_test_name() -> String {
        module_path!()
            .split_once("::")
            .map(|(_crate, path)| format!("{path}::agent"))
            .expect("a test module is inside a crate")
    }

    fn spawn_agent(network: &NetnsNetwork, id: u64) -> Agent {
        let mut command = network.wrap_command(id).into_iter();
        let program = command.next().expect("netns wraps with `ip netns exec NS`");
        let agent_test = agent_test_name();
        let child = Command::new(program)
            .args(command)
            .arg(std::env::current_exe().expect("the test binary's path"))
            .args([agent_test.as_str(), "--exact", "--test-threads=1", "-q"])
            .env(AGENT_ENV, network.client_address(id).to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("`ip netns exec` starts");
        Agent(child)
    }

    /// What became of a datagram one agent was told to send another.
    #[derive(Debug, PartialEq, Eq)]
    enum Outcome {
        Delivered,
        /// The sender's `send_to` failed (a blackhole route refuses at once).
        Refused,
        /// Sent, and not heard within [`PATIENCE`].
        Lost,
    }

    /// The harness side: one socket in the harness's namespace, and every message it received.
    struct Controller {
        socket: UdpSocket,
        received: Vec<(SocketAddr, String)>,
        tokens: u64,
    }

    impl Controller {
        fn new() -> Controller {
            let socket = UdpSocket::bind("0.0.0.0:0").expect("an ephemeral port");
            Controller {
                socket,
                received: Vec::new(),
                tokens: 0,
            }
        }

        /// Sends `text` to `to` every half second until a message from `to` satisfies `wanted`,
        /// for at most [`PATIENCE`].
        fn ask(&mut self, to: SocketAddr, text: &str, wanted: impl Fn(&str) -> bool) -> bool {
            let deadline = now() + PATIENCE;
            let mut buffer = [0u8; 1500];
            while now() < deadline {
                self.socket.send_to(text.as_bytes(), to).expect("send");
                let resend = now() + Duration::from_millis(500);
                while let Some(left) = resend.min(deadline).checked_duration_since(now()) {
                    if left.is_zero() {
                        break;
                    }
                    self.socket.set_read_timeout(Some(left)).expect("timeout");
                    let Ok((length, from)) = self.socket.recv_from(&mut buffer) else {
                        break;
                    };
                    let message = String::from_utf8_lossy(&buffer[..length]).into_owned();
                    let found = from == to && wanted(&message);
                    self.received.push((from, message));
                    if found {
                        return true;
                    }
                }
            }
            false
        }

        /// Whether `address` answers the harness (and makes the harness its controller).
        fn hello(&mut self, address: SocketAddr) -> bool {
            self.ask(address, "HELLO", |message| message == "HELLO-OK")
        }

        /// Has node `from` send to node `to`, and tells what became of it.
        fn probe(&mut self, network: &NetnsNetwork, from: u64, to: u64) -> Outcome {
            self.tokens += 1;
            let token = format!("t{}", self.tokens);
            let (sender, receiver) = (network.client_address(from), network.client_address(to));
            let request = format!("SEND {receiver} {token}");
            let sent = format!("SENT {token} ");
            assert!(
                self.ask(sender, &request, |message| message.starts_with(&sent)),
                "node {from} does not answer the harness"
            );
            if self
                .received
                .iter()
                .rev()
                .any(|(_, message)| message.starts_with(&format!("{sent}failed")))
            {
                return Outcome::Refused;
            }
            let heard = format!("HEARD {token} FROM {sender}");
            let deadline = now() + PATIENCE;
            let mut buffer = [0u8; 1500];
            loop {
                if self
                    .received
                    .iter()
                    .any(|(source, message)| *source == receiver && *message == heard)
                {
                    return Outcome::Delivered;
                }
                let Some(left) = deadline.checked_duration_since(now()) else {
                    return Outcome::Lost;
                };
                if left.is_zero() {
                    return Outcome::Lost;
                }
                self.socket.set_read_timeout(Some(left)).expect("timeout");
                if let Ok((length, source)) = self.socket.recv_from(&mut buffer) {
                    let message = String::from_utf8_lossy(&buffer[..length]).into_owned();
                    self.received.push((source, message));
                }
            }
        }
    }

    fn names_with_prefix(prefix: &str) -> Vec<String> {
        let mut names = list_links().expect("ip link lists");
        names.extend(list_namespaces().expect("ip netns lists"));
        names.retain(|name| name.starts_with(prefix));
        names
    }

    #[test]
    fn partitions_block_one_direction_and_teardown_leaves_nothing() {
        let _serial = lock_netns_tests();
        if !can_run_netns() {
            return;
        }
        let mut network = NetnsNetwork::open().expect("netns opens as root");
        assert_eq!(network.mode(), "netns");
        let prefix = network.names.prefix();
        let ids = [1, 2, 3];
        for id in ids {
            let addresses = network.add_node(id).expect("a node's namespace");
            assert_eq!(addresses.listen, addresses.advertised);
            assert_eq!(addresses.listen, network.client_address(id));
            assert_eq!(addresses.listen.port(), NODE_PORT);
        }
        assert!(matches!(
            network.add_node(2),
            Err(NetError::BadNode { id: 2, .. })
        ));
        let agents: Vec<Agent> = ids.iter().map(|&id| spawn_agent(&network, id)).collect();
        let mut controller = Controller::new();
        for id in ids {
            assert!(
                controller.hello(network.client_address(id)),
                "the harness reaches node {id}"
            );
        }
        let every_link: Vec<(u64, u64)> = ids
            .iter()
            .flat_map(|&from| ids.iter().map(move |&to| (from, to)))
            .filter(|(from, to)| from != to)
            .collect();
        let mut expect = |network: &NetnsNetwork, blocked: &[(u64, u64)]| {
            for &(from, to) in &every_link {
                let outcome = controller.probe(network, from, to);
                if blocked.contains(&(from, to)) {
                    // A blackhole route refuses at the sender, at once.
                    assert_eq!(outcome, Outcome::Refused, "{from} -> {to} is blocked");
                } else {
                    assert_eq!(outcome, Outcome::Delivered, "{from} -> {to} is open");
                }
            }
            // The harness's clients reach every node whatever is blocked.
            for id in ids {
                assert!(controller.hello(network.client_address(id)), "node {id}");
            }
        };
        expect(&network, &[]);
        network
            .set_blocked(&[(1, 2)].into())
            .expect("blackhole routes");
        expect(&network, &[(1, 2)]);
        // The set replaces the previous one.
        network
            .set_blocked(&[(2, 1), (3, 1), (3, 2)].into())
            .expect("blackhole routes");
        expect(&network, &[(2, 1), (3, 1), (3, 2)]);
        assert_eq!(
            network.blackholes_in(3).expect("ip route lists"),
            [1, 2].into()
        );
        network.set_blocked(&BTreeSet::new()).expect("no routes");
        expect(&network, &[]);
        assert!(network.blackholes_in(3).expect("ip route lists").is_empty());
        assert!(matches!(
            network.set_blocked(&[(1, 4)].into()),
            Err(NetError::BadNode { id: 4, .. })
        ));

        // Teardown kills what still runs in the namespaces: leave node 3's agent to it.
        let mut agents = agents;
        let mut survivor = agents.pop().expect("three agents");
        drop(agents);
        network.teardown();
        network.teardown();
        let status = survivor.0.wait().expect("the agent is reaped");
        assert!(
            !status.success(),
            "teardown killed node 3's agent: {status}"
        );
        assert_eq!(names_with_prefix(&prefix), Vec::<String>::new());
    }

    #[test]
    fn leftovers_of_dead_runs_are_removed() {
        let _serial = lock_netns_tests();
        if !can_run_netns() {
            return;
        }
        // No process can have an id above the kernel's maximum: a run that is surely dead.
        let pid_max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
            .expect("Linux has pid_max")
            .trim()
            .parse()
            .expect("a number");
        let dead = Names {
            pid: pid_max + 1,
            instance: 0,
        };
        run_ip(&["netns", "add", &dead.namespace(1)]).expect("a namespace");
        run_ip(&["link", "add", &dead.bridge(), "type", "bridge"]).expect("a bridge");
        run_ip(&[
            "link",
            "add",
            &dead.veth(1),
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &dead.namespace(1),
        ])
        .expect("a veth");
        run_ip(&[
            "link",
            "set",
            "dev",
            &dead.veth(1),
            "master",
            &dead.bridge(),
        ])
        .expect("a bridge port");
        assert_eq!(names_with_prefix(&dead.prefix()).len(), 3);
        // A node of the dead run, still running in its namespace.
        let mut orphan = Command::new("ip")
            .args(["netns", "exec", &dead.namespace(1)])
            .arg(std::env::current_exe().expect("the test binary's path"))
            .args([
                agent_test_name().as_str(),
                "--exact",
                "--test-threads=1",
                "-q",
            ])
            .env(AGENT_ENV, "0.0.0.0:7000")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("`ip netns exec` starts");
        let entered = now() + PATIENCE;
        while processes_in(&dead.namespace(1))
            .expect("ip netns pids")
            .is_empty()
        {
            assert!(now() < entered, "the orphan never showed in its namespace");
            // `ip netns pids` of a process that is still exec-ing into the namespace: ask again.
            std::thread::yield_now();
        }

        let network = NetnsNetwork::open().expect("netns opens as root");
        assert_eq!(names_with_prefix(&dead.prefix()), Vec::<String>::new());
        let status = orphan.wait().expect("the orphan is reaped");
        assert!(!status.success(), "the orphan was killed: {status}");
        // This run's own names are not leftovers.
        assert_eq!(
            names_with_prefix(&network.names.prefix()),
            vec![network.names.bridge()]
        );
        drop(network);
    }

    #[test]
    fn a_failing_ip_command_names_itself_and_its_stderr() {
        let error =
            run_ip(&["link", "del", "dev", "bl0i0nonexistent"]).expect_err("there is no such link");
        let text = error.to_string();
        assert!(text.contains("ip link del dev bl0i0nonexistent"), "{text}");
        assert!(matches!(error, NetError::Command { .. }));
    }
}
