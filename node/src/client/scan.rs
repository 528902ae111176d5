//! Range and prefix reads for the blocking [`Client`]: one page at a time ([`Client::scan_page`])
//! or every page in turn ([`Client::scan`], an iterator), and the checks a page must pass before
//! the client trusts its continuation.
//!
//! A page is one [`Query::Scan`]: its byte budget is the client's datagram limit less
//! [`PAGE_ENVELOPE`], so the answer fits one datagram; the next page starts just after the last
//! key returned (`KeyRange::after`, see `kv/range.rs`). Each page is read as the client reads
//! any key (linearizable through the leader, or stale from one node), so each page is a
//! consistent view of its keys, but a scan of several pages is not one snapshot: a write
//! between two pages shows in the later one only.
//!
//! Rules kept: a page is taken only if its pairs lie in the range asked, in strictly
//! increasing order, at most the limit asked, and non-empty when it says more remain, so a
//! misbehaving node cannot make a scan loop forever or go backwards. A node whose datagram
//! limit is below the client's answers that the page is too large; the page is asked again once
//! with the node's limit.

use super::{Client, ClientError, protocol};
use crate::client::session::{Operation, Reply};
use crate::kv::{Answer, KeyRange, Pair, Query};

/// Bytes of a datagram that are not the page: the envelope's header, the seal, the response's
/// framing (a generous bound: about 95 bytes in fact).
pub const PAGE_ENVELOPE: usize = 128;

/// One page of a range read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    /// The pairs, in strictly increasing key order.
    pub pairs: Vec<Pair>,
    /// The range holds keys after the last pair.
    pub more: bool,
}

/// Every page of a range read, in key order: see [`Client::scan`]. After an error it ends.
pub struct Scan<'c> {
    client: &'c mut Client,
    /// What is left to read; `None` once done (or failed).
    rest: Option<KeyRange>,
    /// Pairs still wanted (`None`: all).
    left: Option<u64>,
    stale: bool,
}

impl Iterator for Scan<'_> {
    type Item = Result<Vec<Pair>, ClientError>;

    fn next(&mut self) -> Option<Self::Item> {
        let range = self.rest.take()?;
        let limit = match self.left {
            Some(0) => return None,
            Some(left) => left,
            None => u64::MAX,
        };
        let page = match self.client.scan_page(&range, limit, self.stale) {
            Ok(page) => page,
            Err(error) => return Some(Err(error)),
        };
        if let Some(left) = &mut self.left {
            *left = left.saturating_sub(page.pairs.len() as u64);
        }
        let (last, _) = page.pairs.last()?;
        if page.more {
            self.rest = Some(range.after(last));
        }
        Some(Ok(page.pairs))
    }
}

impl Client {
    /// One page of `range`: at most `limit` pairs, as many as fit one datagram (at least one
    /// when the range holds one), and whether the range holds more after them (ask for
    /// `range.after(last key)` next). Linearizable unless `stale`.
    ///
    /// # Errors
    /// As [`Client::get`]; [`ClientError::Rejected`] saying the node may be older than this
    /// client when it does not know range reads; [`ClientError::Protocol`] for a page that
    /// breaks the rules above.
    pub fn scan_page(
        &mut self,
        range: &KeyRange,
        limit: u64,
        stale: bool,
    ) -> Result<Page, ClientError> {
        let mut budget = self.options.datagram_limit.saturating_sub(PAGE_ENVELOPE);
        let mut asked_smaller = false;
        loop {
            let query = Query::Scan {
                range: range.clone(),
                limit,
                max_bytes: budget as u64,
            };
            match self.run(Operation::Read { query, stale }) {
                Ok(Reply::Read(Answer::Page { pairs, more })) => {
                    let page = Page { pairs, more };
                    check_page(range, limit, &page)?;
                    return Ok(page);
                }
                Ok(other) => {
                    return Err(protocol(format!(
                        "a range read was answered with {other:?}"
                    )));
                }
                // The node's datagrams are smaller than ours: once more, within its limit.
                Err(ClientError::TooLarge { max, .. })
                    if !asked_smaller
                        && usize::try_from(max).is_ok_and(|max| max < budget + PAGE_ENVELOPE) =>
                {
                    asked_smaller = true;
                    budget = usize::try_from(max)
                        .unwrap_or(0)
                        .saturating_sub(PAGE_ENVELOPE)
                        .max(1);
                }
                Err(error) => return Err(too_old(error)),
            }
        }
    }

    /// Every pair of `range` in key order, a page at a time (at most `limit` pairs in all;
    /// `None`: all of them). Each page is linearizable unless `stale`; the scan as a whole is
    /// not one snapshot (see the module doc). The iterator yields each non-empty page, ends
    /// after the last or after an error.
    pub fn scan(&mut self, range: KeyRange, limit: Option<u64>, stale: bool) -> Scan<'_> {
        Scan {
            client: self,
            rest: Some(range),
            left: limit,
            stale,
        }
    }
}

/// Refuses a page that breaks the rules in the module doc.
fn check_page(range: &KeyRange, limit: u64, page: &Page) -> Result<(), ClientError> {
    let bad = |what: &str| Err(protocol(format!("a range read's page {what}")));
    if page.pairs.len() as u64 > limit {
        return bad("holds more pairs than asked");
    }
    if page.pairs.iter().any(|(key, _)| !range.contains(key)) {
        return bad("holds a key outside the range asked");
    }
    if page
        .pairs
        .windows(2)
        .any(|pair| pair[0].0.as_slice() >= pair[1].0.as_slice())
    {
        return bad("is not in strictly increasing key order");
    }
    if page.more && page.pairs.is_empty() && limit > 0 {
        return bad("is empty but says more keys remain");
    }
    Ok(())
}

/// `error`, saying that the node may be older than this client when it refused the request as
/// an unknown kind (a node predating a command or query refuses its tag as unknown).
pub(crate) fn too_old(error: ClientError) -> ClientError {
    match error {
        ClientError::Rejected { reason }
            if reason.starts_with("unknown operation tag")
                || reason.starts_with("unknown query tag") =>
        {
            ClientError::Rejected {
                reason: format!(
                    "{reason}: the node may run an older Balsa that does not know this request; \
                     upgrade every node first"
                ),
            }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::{Command, DecodeErrorKind, Op};

    fn page(keys: &[&str], more: bool) -> Page {
        Page {
            pairs: keys
                .iter()
                .map(|key| (key.as_bytes().to_vec(), Vec::new()))
                .collect(),
            more,
        }
    }

    #[test]
    fn a_page_outside_its_range_out_of_order_over_its_limit_or_empty_with_more_is_refused() {
        let range = KeyRange::prefix(b"a/");
        assert!(check_page(&range, 10, &page(&["a/1", "a/2"], true)).is_ok());
        assert!(check_page(&range, 10, &page(&[], false)).is_ok());
        for (bad, limit) in [
            (page(&["a/1", "b"], false), 10),
            (page(&["a/2", "a/1"], false), 10),
            (page(&["a/1", "a/1"], false), 10),
            (page(&["a/1", "a/2"], false), 1),
            (page(&[], true), 10),
        ] {
            let error = check_page(&range, limit, &bad).unwrap_err();
            assert!(matches!(error, ClientError::Protocol { .. }), "{bad:?}");
        }
    }

    #[test]
    fn a_request_a_node_does_not_know_says_the_node_may_be_older() {
        // What a node that predates a tag answers: its decoder's unknown-tag error.
        let mut bytes = Command {
            client_id: 1,
            seq: 1,
            op: Op::DeleteCounted { key: b"k".to_vec() },
        }
        .encode();
        bytes[1] = 0x7f;
        let error = Command::decode(&bytes).unwrap_err();
        assert!(matches!(error.kind, DecodeErrorKind::UnknownTag { .. }));
        let refused = ClientError::Rejected {
            reason: error.to_string(),
        };
        let said = too_old(refused).to_string();
        assert!(
            said.starts_with("rejected: unknown operation tag 0x7f"),
            "{said}"
        );
        assert!(said.contains("older Balsa"), "{said}");
        let other = too_old(ClientError::Rejected {
            reason: "key of 2000 bytes is too large".into(),
        });
        assert!(!other.to_string().contains("older"), "{other}");
    }
}
