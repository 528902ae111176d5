//! `serve --metrics-addr IP:PORT`: the node's metrics over HTTP, for Prometheus and load
//! balancers.
//!
//! - `GET /metrics`: [`balsa::Metrics`] and this process's own figures in Prometheus' text
//!   exposition format (version 0.0.4), named as etcd names its own (`_total` for counters,
//!   base units: seconds and bytes).
//! - `GET /health`: `200 {"health":"true","reason":""}` when the node runs (its storage works:
//!   a failed WAL stops it) and knows a leader; otherwise `503` with the reason, as etcd's
//!   `/health` does.
//!
//! One thread serves the requests one at a time (a scrape is a few kilobytes, made every few
//! seconds); it never touches the node but through its [`MetricsReader`]. The listening socket
//! is bound before the node starts, so a taken port is a configuration error that leaves the
//! data directory alone.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use balsa::metrics::Histogram;
use balsa::net::DropReason;
use balsa::{Metrics, MetricsReader};

/// The exposition format's content type.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A bound, not yet serving, metrics endpoint.
pub struct Endpoint {
    server: Arc<tiny_http::Server>,
}

impl Endpoint {
    /// Binds `address`.
    ///
    /// # Errors
    /// Why the address cannot be bound, for the user.
    pub fn bind(address: SocketAddr) -> Result<Endpoint, String> {
        let server = tiny_http::Server::http(address)
            .map_err(|error| format!("--metrics-addr {address}: {error}"))?;
        Ok(Endpoint {
            server: Arc::new(server),
        })
    }

    /// The address bound (with the port the OS chose for port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.server.server_addr().to_ip()
    }

    /// Serves requests on a thread of its own until the process ends.
    ///
    /// # Errors
    /// If the thread cannot be started.
    #[allow(
        clippy::disallowed_methods,
        reason = "the binary's metrics endpoint is a thread of its own"
    )]
    pub fn serve(self, reader: MetricsReader) -> std::io::Result<()> {
        std::thread::Builder::new()
            .name("balsa-metrics".into())
            .spawn(move || {
                for request in self.server.incoming_requests() {
                    answer(request, &reader);
                }
            })
            .map(drop)
    }
}

fn answer(request: tiny_http::Request, reader: &MetricsReader) {
    let path = request.url().split('?').next().unwrap_or_default();
    let (status, content_type, body) = match (request.method(), path) {
        (tiny_http::Method::Get, "/metrics") => match reader.read() {
            Ok(metrics) => (200, TEXT_FORMAT, exposition(&metrics, &process::read())),
            Err(error) => (503, "text/plain", format!("{error}\n")),
        },
        (tiny_http::Method::Get, "/health") => health(reader.read()),
        (tiny_http::Method::Get, _) => (404, "text/plain", "try /metrics or /health\n".into()),
        _ => (405, "text/plain", "only GET\n".into()),
    };
    let header = tiny_http::Header::from_bytes(&b"Content-Type"[..], content_type.as_bytes())
        .expect("a constant, valid header");
    let response = tiny_http::Response::from_string(body)
        .with_status_code(status)
        .with_header(header);
    if let Err(error) = request.respond(response) {
        log::debug!("answering a metrics request: {error}");
    }
}

/// `/health`'s status and body.
fn health(metrics: Result<Metrics, balsa::Error>) -> (u16, &'static str, String) {
    let (status, reason) = match metrics {
        Ok(metrics) if metrics.has_leader() => (200, String::new()),
        Ok(_) => (503, "no leader".to_owned()),
        Err(error) => (503, format!("the node is not running: {error}")),
    };
    let body = serde_json::json!({
        "health": if status == 200 { "true" } else { "false" },
        "reason": reason,
    });
    (status, "application/json", format!("{body}\n"))
}

/// Writes the exposition of `metrics` and `process`.
pub fn exposition(metrics: &Metrics, process: &process::Figures) -> String {
    let mut out = Exposition::default();
    let counts = &metrics.counts;
    out.histogram(
        "balsa_wal_fsync_duration_seconds",
        "Latency of each fdatasync of the write-ahead log.",
        &[(String::new(), metrics.wal_fsync)],
    );
    out.counter(
        "balsa_wal_bytes_written_total",
        "Bytes of records written to the write-ahead log.",
        metrics.wal_bytes_written,
    );
    out.counter(
        "balsa_proposals_committed_total",
        "Entries this node learned are committed.",
        counts.proposals_committed,
    );
    out.counter(
        "balsa_proposals_applied_total",
        "Entries applied to the state machine.",
        counts.proposals_applied,
    );
    out.gauge(
        "balsa_proposals_pending",
        "Proposals waiting to commit (on a leader: entries appended, not yet committed).",
        metrics.proposals_pending,
    );
    out.counter(
        "balsa_proposals_failed_total",
        "Proposals refused or lost (not the leader, too large, overwritten by another leader).",
        counts.proposals_failed,
    );
    out.counter(
        "balsa_leader_changes_seen_total",
        "Times this node saw a new leader.",
        counts.leader_changes_seen,
    );
    out.gauge(
        "balsa_has_leader",
        "1 if this node knows a leader, else 0.",
        u64::from(metrics.has_leader()),
    );
    out.gauge(
        "balsa_is_leader",
        "1 if this node leads, else 0.",
        u64::from(metrics.is_leader()),
    );
    out.gauge("balsa_term", "The current term.", metrics.term);
    out.gauge(
        "balsa_commit_index",
        "The commit index.",
        metrics.commit_index,
    );
    out.gauge(
        "balsa_applied_index",
        "The highest index applied to the state machine.",
        metrics.applied_index,
    );
    out.gauge(
        "balsa_last_index",
        "The last log index.",
        metrics.last_index,
    );
    out.gauge(
        "balsa_snapshot_index",
        "The last index of the newest snapshot (0: none).",
        metrics.snapshot_index,
    );
    out.histogram(
        "balsa_snapshot_save_duration_seconds",
        "Time to save a snapshot, from its start to its last byte synced.",
        &[(String::new(), metrics.snapshot_save)],
    );
    out.counter(
        "balsa_ticks_total",
        "Ticks the core was given since start (one per tick of wall time).",
        metrics.ticks,
    );
    out.counter(
        "balsa_timer_wakeups_total",
        "Times the timer woke the node since start: only when something was due.",
        metrics.timer_wakeups,
    );
    out.counter(
        "balsa_snapshots_sent_total",
        "Snapshots this node started sending to a follower too far behind for its log.",
        counts.snapshots_sent,
    );
    out.counter(
        "balsa_read_index_total",
        "Linearizable reads served through ReadIndex.",
        counts.read_index,
    );
    out.counter(
        "balsa_read_index_failed_total",
        "Linearizable reads refused (not the leader, or leadership lost first).",
        counts.read_index_failed,
    );
    if let Some(sessions) = metrics.client_sessions {
        out.gauge(
            "balsa_client_sessions",
            "Client sessions the state machine keeps to apply retries once.",
            sessions,
        );
    }
    let net = &metrics.net;
    out.counter(
        "balsa_net_datagrams_received_total",
        "Datagrams received, good or bad.",
        net.datagrams_in,
    );
    out.counter(
        "balsa_net_datagrams_sent_total",
        "Datagrams sent.",
        net.datagrams_out,
    );
    out.counter(
        "balsa_net_bytes_received_total",
        "Bytes of datagrams received.",
        net.bytes_in,
    );
    out.counter(
        "balsa_net_bytes_sent_total",
        "Bytes of datagrams sent.",
        net.bytes_out,
    );
    out.counter(
        "balsa_net_send_errors_total",
        "Datagrams the operating system refused to send.",
        net.send_errors,
    );
    let drops: Vec<(String, u64)> = DropReason::ALL
        .iter()
        .map(|reason| {
            (
                format!("reason=\"{}\"", reason.name()),
                net.dropped(*reason),
            )
        })
        .collect();
    out.labelled(
        "balsa_net_datagrams_dropped_total",
        "Datagrams dropped, by reason.",
        "counter",
        &drops,
    );
    let round_trips: Vec<(String, Histogram)> = metrics
        .peer_round_trip
        .iter()
        .map(|(peer, histogram)| (format!("peer=\"{peer}\""), *histogram))
        .collect();
    out.histogram(
        "balsa_peer_round_trip_seconds",
        "Round trip to each peer this node leads, from a heartbeat to the peer's next answer.",
        &round_trips,
    );
    out.gauge("balsa_node_id", "This node's id.", metrics.id);
    process.write(&mut out);
    out.text
}

/// The text being written, one family at a time.
#[derive(Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, help: &str, kind: &str) {
        // `fmt::Write` for a `String` cannot fail.
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &str, value: impl std::fmt::Display) {
        let _ = if labels.is_empty() {
            writeln!(self.text, "{name} {value}")
        } else {
            writeln!(self.text, "{name}{{{labels}}} {value}")
        };
    }

    fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, help, "counter");
        self.sample(name, "", value);
    }

    fn gauge(&mut self, name: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, help, "gauge");
        self.sample(name, "", value);
    }

    fn labelled(&mut self, name: &str, help: &str, kind: &str, samples: &[(String, u64)]) {
        self.family(name, help, kind);
        for (labels, value) in samples {
            self.sample(name, labels, value);
        }
    }

    /// A histogram family, one histogram per label set (`""`: none).
    fn histogram(&mut self, name: &str, help: &str, histograms: &[(String, Histogram)]) {
        self.family(name, help, "histogram");
        for (labels, histogram) in histograms {
            let with = |extra: &str| match (labels.is_empty(), extra.is_empty()) {
                (true, _) => extra.to_owned(),
                (false, true) => labels.clone(),
                (false, false) => format!("{labels},{extra}"),
            };
            for (bound, count) in histogram.cumulative() {
                let le = if bound.is_infinite() {
                    "+Inf".to_owned()
                } else {
                    bound.to_string()
                };
                self.sample(
                    &format!("{name}_bucket"),
                    &with(&format!("le=\"{le}\"")),
                    count,
                );
            }
            self.sample(&format!("{name}_sum"), &with(""), histogram.sum_seconds());
            self.sample(&format!("{name}_count"), &with(""), histogram.count());
        }
    }
}

/// The standard `process_*` metrics, read from `/proc/self` (Linux); elsewhere none.
pub mod process {
    use super::Exposition;

    /// This process's figures; `None` where they could not be read.
    #[derive(Clone, Copy, Debug, Default)]
    pub struct Figures {
        /// Resident set size, bytes.
        pub resident_bytes: Option<u64>,
        /// Virtual memory size, bytes.
        pub virtual_bytes: Option<u64>,
        /// User and system CPU time, seconds.
        pub cpu_seconds: Option<f64>,
        /// Open file descriptors.
        pub open_fds: Option<u64>,
        /// The limit on open file descriptors.
        pub max_fds: Option<u64>,
        /// Start time, seconds since the Unix epoch.
        pub start_time_seconds: Option<f64>,
        /// Threads.
        pub threads: Option<u64>,
    }

    /// This process's figures now.
    pub fn read() -> Figures {
        let Ok(me) = procfs::process::Process::myself() else {
            return Figures::default();
        };
        let stat = me.stat().ok();
        let page_size = procfs::page_size();
        let ticks = procfs::ticks_per_second();
        let boot_time = procfs::boot_time_secs().ok();
        let max_fds = me
            .limits()
            .ok()
            .and_then(|limits| match limits.max_open_files.soft_limit {
                procfs::process::LimitValue::Value(value) => Some(value),
                procfs::process::LimitValue::Unlimited => None,
            });
        #[allow(
            clippy::cast_precision_loss,
            reason = "clock ticks and seconds since boot stay far below 2^52"
        )]
        let seconds = |ticks_count: u64| ticks_count as f64 / ticks as f64;
        Figures {
            resident_bytes: stat.as_ref().map(|stat| stat.rss * page_size),
            virtual_bytes: stat.as_ref().map(|stat| stat.vsize),
            cpu_seconds: stat.as_ref().map(|stat| seconds(stat.utime + stat.stime)),
            open_fds: me.fd_count().ok().map(|count| count as u64),
            max_fds,
            #[allow(
                clippy::cast_precision_loss,
                reason = "seconds since the epoch stay far below 2^52"
            )]
            start_time_seconds: stat
                .as_ref()
                .zip(boot_time)
                .map(|(stat, boot)| boot as f64 + seconds(stat.starttime)),
            threads: stat
                .as_ref()
                .and_then(|stat| u64::try_from(stat.num_threads).ok()),
        }
    }

    impl Figures {
        pub(super) fn write(&self, out: &mut Exposition) {
            if let Some(bytes) = self.resident_bytes {
                out.gauge(
                    "process_resident_memory_bytes",
                    "Resident memory size in bytes.",
                    bytes,
                );
            }
            if let Some(bytes) = self.virtual_bytes {
                out.gauge(
                    "process_virtual_memory_bytes",
                    "Virtual memory size in bytes.",
                    bytes,
                );
            }
            if let Some(seconds) = self.cpu_seconds {
                out.family(
                    "process_cpu_seconds_total",
                    "Total user and system CPU time spent in seconds.",
                    "counter",
                );
                out.sample("process_cpu_seconds_total", "", seconds);
            }
            if let Some(fds) = self.open_fds {
                out.gauge("process_open_fds", "Number of open file descriptors.", fds);
            }
            if let Some(fds) = self.max_fds {
                out.gauge(
                    "process_max_fds",
                    "Maximum number of open file descriptors.",
                    fds,
                );
            }
            if let Some(seconds) = self.start_time_seconds {
                out.gauge(
                    "process_start_time_seconds",
                    "Start time of the process since unix epoch in seconds.",
                    seconds,
                );
            }
            if let Some(threads) = self.threads {
                out.gauge(
                    "process_threads",
                    "Number of OS threads in the process.",
                    threads,
                );
            }
        }
    }
}
