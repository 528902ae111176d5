//! A small service on a running Balsa cluster: it counts page visits with
//! [`balsa::client::Client`].
//!
//! Each visit increments the page's counter with compare-and-swap (read the count, write the
//! next one only if the count is still what was read, else read again), so that visits counted by several
//! processes at once are never lost. The client finds the leader itself, retries a write under
//! the same `(client, seq)` (the cluster applies it once), and seals its datagrams with the
//! cluster's client key.
//!
//! Start a cluster (`balsa cluster` writes its keys in `./balsa-data`), then:
//!
//! ```sh
//! BALSA_ENDPOINTS=127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003 \
//! BALSA_KEY_FILE=balsa-data/client.key \
//!     cargo run --release -p balsa-examples --example visits -- /home /about /home
//! ```
//!
//! Without `BALSA_KEY_FILE` it talks in plaintext, to a cluster started with `--insecure`.

use std::net::SocketAddr;
use std::path::Path;

use balsa::client::{CasOutcome, Client, ClientOptions};
use balsa::keyfile::read_key_file;

/// Counts one visit of `page`; returns the page's count after it.
fn visit(client: &mut Client, page: &str) -> Result<u64, Box<dyn std::error::Error>> {
    let key = format!("visits:{page}");
    loop {
        let current = client.get(key.as_bytes(), false)?;
        let count = match &current {
            Some(bytes) => std::str::from_utf8(bytes)?.parse::<u64>()?,
            None => 0,
        };
        let next = (count + 1).to_string();
        match client.cas(key.as_bytes(), current.as_deref(), next.as_bytes())? {
            CasOutcome::Swapped => return Ok(count + 1),
            // Someone else counted a visit in between: count again from theirs.
            CasOutcome::Mismatch { .. } => {}
        }
    }
}

#[allow(clippy::print_stdout, reason = "an example says what it does")]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let endpoints: Vec<SocketAddr> = std::env::var("BALSA_ENDPOINTS")
        .unwrap_or_else(|_| "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003".to_owned())
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let mut options = ClientOptions::default();
    if let Ok(path) = std::env::var("BALSA_KEY_FILE") {
        options.key = Some(read_key_file(Path::new(&path))?);
    }
    let mut client = Client::new(endpoints, options)?;
    let pages: Vec<String> = std::env::args().skip(1).collect();
    let pages = if pages.is_empty() {
        vec!["/".to_owned()]
    } else {
        pages
    };
    for page in &pages {
        let count = visit(&mut client, page)?;
        println!("{page}: {count} visit(s)");
    }
    Ok(())
}
