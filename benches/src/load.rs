//! Closed-loop load against a running cluster: what `balsa bench` and the `commit_latency` bench
//! both drive.
//!
//! Each client is a thread with its own [`Client`] (its own session and socket) that sends one
//! write, waits for its answer, records the time and sends the next: the classic closed loop, so
//! the load adapts to the cluster and the latency of one write is what a user would see. Every
//! client first runs its share of the warm-up writes; all of them then start the measured phase
//! together, and throughput is the measured writes over the time from that start until the last
//! client finished.
//!
//! Latencies are recorded in microseconds into an HDR histogram (1 µs to 60 s, 3 significant
//! figures). A write that fails (no leader within the client's timeout, outcome unknown) is
//! counted, not recorded; a client stops after [`GIVE_UP_AFTER`] failures in a row.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use balsa::client::{Client, ClientOptions};
use hdrhistogram::Histogram;

/// Consecutive failed writes after which a client stops (the cluster is down, not slow).
pub const GIVE_UP_AFTER: u32 = 20;

/// Distinct keys per client: writes cycle over them, so the state stays small.
const KEYS_PER_CLIENT: u64 = 1024;

/// What load to run.
#[derive(Clone, Debug)]
pub struct Load {
    /// The nodes to talk to (any of them; clients find the leader).
    pub endpoints: Vec<SocketAddr>,
    /// Concurrent closed-loop clients (≥ 1).
    pub clients: usize,
    /// Measured writes, over all clients.
    pub ops: u64,
    /// Bytes per value.
    pub value_size: usize,
    /// Untimed writes before the measured ones, over all clients.
    pub warmup: u64,
    /// How each client waits and retries.
    pub options: ClientOptions,
}

/// What a load run measured.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Writes measured (answered).
    pub ops: u64,
    /// Clients that ran.
    pub clients: usize,
    /// From the start of the measured phase until the last client finished.
    pub elapsed: Duration,
    /// Latency of each measured write, in microseconds.
    pub latency_us: Histogram<u64>,
    /// Writes that failed (warm-up included).
    pub errors: u64,
    /// The first failure, for the user.
    pub first_error: Option<String>,
}

impl Outcome {
    /// Measured writes per second.
    #[must_use]
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The latency at `quantile` (0.0–1.0), in microseconds.
    #[must_use]
    pub fn us_at(&self, quantile: f64) -> u64 {
        self.latency_us.value_at_quantile(quantile)
    }

    /// One JSON object: `ops`, `clients`, `ops_per_sec`, `p50_us`, `p90_us`, `p99_us`,
    /// `p999_us`, `max_us`, `errors`.
    #[must_use]
    pub fn to_json(&self) -> String {
        format!(
            "{{\"ops\":{},\"clients\":{},\"ops_per_sec\":{:.1},\"p50_us\":{},\"p90_us\":{},\
             \"p99_us\":{},\"p999_us\":{},\"max_us\":{},\"errors\":{}}}",
            self.ops,
            self.clients,
            self.ops_per_sec(),
            self.us_at(0.50),
            self.us_at(0.90),
            self.us_at(0.99),
            self.us_at(0.999),
            self.latency_us.max(),
            self.errors,
        )
    }
}

/// An empty histogram of microseconds, 1 µs to 60 s, three significant figures.
#[must_use]
pub fn new_us_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant bounds are valid")
}

/// Runs `load`; calls `progress(measured_done, measured_total)` about once a second while the
/// measured phase runs.
///
/// # Errors
/// If no client can be set up (bad endpoints), or `load` asks for no clients.
pub fn run(load: &Load, progress: &mut dyn FnMut(u64, u64)) -> Result<Outcome, String> {
    if load.clients == 0 {
        return Err("at least one client is needed".into());
    }
    let clients = (0..load.clients)
        .map(|_| Client::new(load.endpoints.clone(), load.options.clone()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| error.to_string())?;
    let value = vec![b'v'; load.value_size];
    let done = AtomicU64::new(0);
    let running = AtomicU64::new(load.clients as u64);
    let start_line = Barrier::new(load.clients + 1);
    let merged = Mutex::new((new_us_histogram(), 0_u64, None::<String>));
    let share = |total: u64, k: usize| {
        let clients = load.clients as u64;
        total / clients + u64::from((k as u64) < total % clients)
    };
    let elapsed = std::thread::scope(|scope| {
        for (k, mut client) in clients.into_iter().enumerate() {
            let (warmup, ops) = (share(load.warmup, k), share(load.ops, k));
            let (value, done, running) = (&value, &done, &running);
            let (start_line, merged) = (&start_line, &merged);
            scope.spawn(move || {
                let mut session = Session::new(&mut client, k, value);
                session.run(warmup, None);
                start_line.wait();
                session.run(ops, Some(done));
                let mut merged = merged.lock().expect("no client panics holding the lock");
                merged.0.add(&session.latency_us).expect("same bounds");
                merged.1 += session.errors;
                if merged.2.is_none() {
                    merged.2 = session.first_error.take();
                }
                running.fetch_sub(1, Ordering::Release);
            });
        }
        start_line.wait();
        let start = Instant::now();
        let mut last_report = start;
        while running.load(Ordering::Acquire) > 0 {
            std::thread::sleep(Duration::from_millis(20));
            if last_report.elapsed() >= Duration::from_secs(1) {
                last_report = Instant::now();
                progress(done.load(Ordering::Relaxed), load.ops);
            }
        }
        start.elapsed()
    });
    let (latency_us, errors, first_error) = merged.into_inner().expect("every client finished");
    Ok(Outcome {
        ops: latency_us.len(),
        clients: load.clients,
        elapsed,
        latency_us,
        errors,
        first_error,
    })
}

/// One client's closed loop.
struct Session<'a> {
    client: &'a mut Client,
    index: usize,
    value: &'a [u8],
    sent: u64,
    latency_us: Histogram<u64>,
    errors: u64,
    first_error: Option<String>,
    failures_in_a_row: u32,
}

impl<'a> Session<'a> {
    fn new(client: &'a mut Client, index: usize, value: &'a [u8]) -> Self {
        Session {
            client,
            index,
            value,
            sent: 0,
            latency_us: new_us_histogram(),
            errors: 0,
            first_error: None,
            failures_in_a_row: 0,
        }
    }

    /// Runs `ops` writes; records them when `done` is given (the measured phase).
    fn run(&mut self, ops: u64, done: Option<&AtomicU64>) {
        for _ in 0..ops {
            if self.failures_in_a_row >= GIVE_UP_AFTER {
                return;
            }
            let key = format!("bench-{}-{}", self.index, self.sent % KEYS_PER_CLIENT);
            self.sent += 1;
            let start = Instant::now();
            match self.client.put(key.as_bytes(), self.value) {
                Ok(()) => {
                    self.failures_in_a_row = 0;
                    if let Some(done) = done {
                        let us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
                        self.latency_us.saturating_record(us.max(1));
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(error) => {
                    self.errors += 1;
                    self.failures_in_a_row += 1;
                    self.first_error.get_or_insert_with(|| error.to_string());
                }
            }
        }
    }
}

/// Writes `hist` (microseconds) as HdrHistogram's percentile distribution text (the `.hgrm`
/// format of `outputPercentileDistribution`, five ticks per half distance, values in µs), which
/// the HdrHistogram plotter reads.
///
/// # Errors
/// Any write error.
pub fn write_hgrm(hist: &Histogram<u64>, out: &mut dyn Write) -> io::Result<()> {
    writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    )?;
    let mut total = 0_u64;
    for step in hist.iter_quantiles(5) {
        total += step.count_since_last_iteration();
        let quantile = step.quantile_iterated_to();
        let value = step.value_iterated_to() as f64;
        if quantile < 1.0 {
            writeln!(
                out,
                "{value:>12.3} {quantile:>2.12} {total:>10} {:>14.2}",
                1.0 / (1.0 - quantile)
            )?;
        } else {
            writeln!(out, "{value:>12.3} {quantile:>2.12} {total:>10}")?;
        }
    }
    writeln!(
        out,
        "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]",
        hist.mean(),
        hist.stdev()
    )?;
    writeln!(
        out,
        "#[Max     = {:>12.3}, Total count    = {:>12}]",
        hist.max() as f64,
        hist.len()
    )?;
    // As HdrHistogram computes it: the smallest power of two holding 2 × 10^significant figures.
    let sub_buckets = (2 * 10_u64.pow(u32::from(hist.sigfig()))).next_power_of_two();
    writeln!(
        out,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        hist.buckets(),
        sub_buckets
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hgrm_lists_percentiles_up_to_the_max_and_the_totals() {
        let mut hist = new_us_histogram();
        for us in 1..=1000 {
            hist.record(us).expect("in range");
        }
        let mut text = Vec::new();
        write_hgrm(&hist, &mut text).expect("writing to memory");
        let text = String::from_utf8(text).expect("ascii");
        let rows: Vec<&str> = text
            .lines()
            .filter(|line| line.starts_with(' ') && !line.contains("Value"))
            .collect();
        let last = rows.last().expect("rows");
        assert!(last.contains("1.000000000000"), "{last}");
        assert!(last.trim_end().ends_with("1000"), "{last}");
        assert!(text.contains("Total count    =         1000]"), "{text}");
        assert!(text.contains("SubBuckets     =         2048]"), "{text}");
        assert!(rows.len() > 20, "{} rows", rows.len());
    }

    #[test]
    fn json_names_every_key_the_issue_lists() {
        let mut latency_us = new_us_histogram();
        latency_us.record(250).expect("in range");
        let outcome = Outcome {
            ops: 1,
            clients: 1,
            elapsed: Duration::from_millis(500),
            latency_us,
            errors: 0,
            first_error: None,
        };
        let json = outcome.to_json();
        for key in [
            "ops",
            "clients",
            "ops_per_sec",
            "p50_us",
            "p90_us",
            "p99_us",
            "p999_us",
            "max_us",
        ] {
            assert!(json.contains(&format!("\"{key}\":")), "{key} in {json}");
        }
        assert!(json.contains("\"ops_per_sec\":2.0"), "{json}");
    }
}
