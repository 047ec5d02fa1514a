//! The `ctl` channel's small text protocol, the same as the browser page's
//! (flsignal/web/peer.js):
//!
//! * `ping<anything>` is answered `pong<the same>`: keepalives and RTT
//!   (flnode's own pings carry their send time, [`ping`]);
//! * `msg:<text>` is answered `msg:echo: <text>`, so a browser that
//!   connects to a node sees its messages come back;
//! * `bulkend <id>` ends a throughput test whose data went over the
//!   test peer's other channel (the page's `wg`); the answer is
//!   `bulkack <id> <bytes received there since the last bulkend>`;
//! * `bulk <id> <i> <n> <filler>` chunks of an older page's throughput
//!   test (on `ctl` itself) are counted; after chunk `n - 1` the answer is
//!   `bulkack <id> <bytes received>`;
//! * `addr <IPv4> <IPv6>` (flnode only, managed mode) tells the peer this
//!   node's overlay addresses (its `--address`, or the derived ones); it
//!   is not answered. `ctl` runs over DTLS whose fingerprints are in the
//!   signed setup messages, so only the node itself can say it.
//! * `halves` (flnode only) says that this node joins WireGuard datagrams
//!   sent in two halves on `wg` (`flproto::halves`), so the peer may send
//!   those too large for one SCTP packet that way; it is not answered.
//!   A node that never gets it (an older flnode) is sent whole datagrams.
//!
//! Pure: bytes in, what to do out, so every case is tested without a
//! connection.

use flproto::overlay::{is_overlay_v4, is_overlay_v6, OverlayAddresses};

/// Throughput tests counted at once per channel; more are not answered.
pub const MAX_BULK_TESTS: usize = 4;
/// Longest test id kept (the page uses 8 characters).
pub const MAX_BULK_ID: usize = 32;
/// Longest `addr` message: `addr `, an IPv4 and an IPv6 address in full.
pub const MAX_ADDR_MESSAGE: usize = 5 + 15 + 1 + 39;

/// The `halves` message (see the module's documentation).
pub const JOINS_HALVES: &str = "halves";

/// What a `ctl` message asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum CtlAction {
    /// Send this back.
    Reply(Vec<u8>),
    /// The peer answered one of our pings; `sent_micros` is the time the
    /// ping carried, if it was one of ours ([`ping`]).
    Pong { sent_micros: Option<u64> },
    /// The peer's overlay addresses, each inside its overlay range.
    Addresses(OverlayAddresses),
    /// A throughput test over the other channel ended: answer
    /// [`bulk_ack`] with what that channel received.
    BulkEnd(String),
    /// The peer joins datagrams sent in halves.
    JoinsHalves,
    /// Nothing to do (unknown, malformed, or a chunk in the middle).
    Nothing,
}

/// The `addr` message announcing `own`.
pub fn addresses(own: &OverlayAddresses) -> String {
    format!("addr {} {}", own.v4, own.v6)
}

/// `addr <IPv4> <IPv6>`, if well formed and inside the overlay ranges.
fn parse_addresses(data: &[u8]) -> Option<OverlayAddresses> {
    if data.len() > MAX_ADDR_MESSAGE {
        return None;
    }
    let mut words = std::str::from_utf8(data).ok()?.strip_prefix("addr ")?.split(' ');
    let v4 = words.next()?.parse().ok().filter(|ip| is_overlay_v4(*ip))?;
    let v6 = words.next()?.parse().ok().filter(|ip| is_overlay_v6(*ip))?;
    words.next().is_none().then_some(OverlayAddresses { v4, v6 })
}

/// The answer to `bulkend <id>` or to an old test's last chunk.
pub fn bulk_ack(id: &str, bytes: u64) -> String {
    format!("bulkack {id} {bytes}")
}

/// `bulkend <id>` → id, if well formed.
fn parse_bulk_end(data: &[u8]) -> Option<String> {
    let id = std::str::from_utf8(data).ok()?.strip_prefix("bulkend ")?;
    let well_formed = !id.is_empty() && id.len() <= MAX_BULK_ID && id.bytes().all(|b| b.is_ascii_alphanumeric());
    well_formed.then(|| id.to_owned())
}

/// A keepalive ping that carries its send time (microseconds on the
/// sender's own clock), so that the pong gives the round-trip time through
/// the whole data path: ICE, DTLS and SCTP both ways.
pub fn ping(sent_micros: u64) -> String {
    format!("ping {sent_micros}")
}

/// One channel's answering side; holds the running throughput tests.
#[derive(Debug, Default)]
pub struct CtlResponder {
    /// (test id, bytes received so far).
    bulk: Vec<(String, u64)>,
}

impl CtlResponder {
    pub fn on_message(&mut self, data: &[u8]) -> CtlAction {
        if let Some(rest) = data.strip_prefix(b"ping") {
            return CtlAction::Reply([b"pong", rest].concat());
        }
        if let Some(rest) = data.strip_prefix(b"pong") {
            let sent_micros = std::str::from_utf8(rest)
                .ok()
                .and_then(|text| text.strip_prefix(' ')?.parse().ok());
            return CtlAction::Pong { sent_micros };
        }
        if let Some(text) = data.strip_prefix(b"msg:") {
            return CtlAction::Reply([b"msg:echo: ", text].concat());
        }
        if data.starts_with(b"bulkend ") {
            return parse_bulk_end(data).map_or(CtlAction::Nothing, CtlAction::BulkEnd);
        }
        if data.starts_with(b"bulk ") {
            return self.on_bulk(data);
        }
        if data == JOINS_HALVES.as_bytes() {
            return CtlAction::JoinsHalves;
        }
        if data.starts_with(b"addr ") {
            return parse_addresses(data).map_or(CtlAction::Nothing, CtlAction::Addresses);
        }
        CtlAction::Nothing
    }

    fn on_bulk(&mut self, data: &[u8]) -> CtlAction {
        let Some((id, index, count)) = parse_bulk_head(data) else {
            return CtlAction::Nothing;
        };
        let at = match self.bulk.iter().position(|(known, _)| *known == id) {
            Some(at) => at,
            None if self.bulk.len() < MAX_BULK_TESTS => {
                self.bulk.push((id.to_owned(), 0));
                self.bulk.len() - 1
            }
            None => return CtlAction::Nothing,
        };
        self.bulk[at].1 += data.len() as u64;
        if index + 1 < count {
            return CtlAction::Nothing;
        }
        let (id, bytes) = self.bulk.swap_remove(at);
        CtlAction::Reply(bulk_ack(&id, bytes).into_bytes())
    }
}

/// `bulk <id> <i> <n> ` → (id, i, n), if well formed.
fn parse_bulk_head(data: &[u8]) -> Option<(&str, u64, u64)> {
    // The head is short; the filler after it need not be UTF-8.
    let head = &data[..data.len().min(5 + MAX_BULK_ID + 2 * 21)];
    let head = match std::str::from_utf8(head) {
        Ok(text) => text,
        Err(error) => std::str::from_utf8(&head[..error.valid_up_to()]).ok()?,
    };
    let mut words = head.strip_prefix("bulk ")?.split(' ');
    let id = words.next().filter(|id| !id.is_empty() && id.len() <= MAX_BULK_ID)?;
    let index = words.next()?.parse().ok()?;
    let count = words.next()?.parse().ok()?;
    Some((id, index, count))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_come_back_as_pongs_and_pongs_are_reported() {
        let mut ctl = CtlResponder::default();
        assert_eq!(ctl.on_message(b"ping123.5"), CtlAction::Reply(b"pong123.5".to_vec()));
        assert_eq!(ctl.on_message(b"ping"), CtlAction::Reply(b"pong".to_vec()));
        assert_eq!(ctl.on_message(b"pong42"), CtlAction::Pong { sent_micros: None });
    }

    #[test]
    fn our_pings_carry_their_send_time_back() {
        let mut ctl = CtlResponder::default();
        let CtlAction::Reply(pong) = ctl.on_message(ping(1_234_567).as_bytes()) else {
            panic!("a ping is answered");
        };
        assert_eq!(
            ctl.on_message(&pong),
            CtlAction::Pong {
                sent_micros: Some(1_234_567)
            }
        );
        for other in [&b"pong"[..], b"pong x", b"pong 12x", b"pong -1", b"pong \xff"] {
            assert_eq!(ctl.on_message(other), CtlAction::Pong { sent_micros: None });
        }
    }

    #[test]
    fn messages_are_echoed() {
        let mut ctl = CtlResponder::default();
        assert_eq!(
            ctl.on_message(b"msg:hello"),
            CtlAction::Reply(b"msg:echo: hello".to_vec())
        );
    }

    #[test]
    fn a_throughput_test_is_acknowledged_after_its_last_chunk() {
        let mut ctl = CtlResponder::default();
        let chunk = |i: u32| format!("bulk abc {i} 3 xxxxxxxx").into_bytes();
        let total: usize = (0..3).map(|i| chunk(i).len()).sum();
        assert_eq!(ctl.on_message(&chunk(0)), CtlAction::Nothing);
        assert_eq!(ctl.on_message(&chunk(1)), CtlAction::Nothing);
        assert_eq!(
            ctl.on_message(&chunk(2)),
            CtlAction::Reply(format!("bulkack abc {total}").into_bytes())
        );
        assert!(ctl.bulk.is_empty());
    }

    #[test]
    fn a_test_over_the_other_channel_ends_with_bulkend() {
        let mut ctl = CtlResponder::default();
        assert_eq!(ctl.on_message(b"bulkend k3x9"), CtlAction::BulkEnd("k3x9".into()));
        let long = format!("bulkend {}", "i".repeat(MAX_BULK_ID + 1));
        for bad in [&b"bulkend "[..], b"bulkend a b", b"bulkend \xff", long.as_bytes()] {
            assert_eq!(ctl.on_message(bad), CtlAction::Nothing, "{bad:?}");
        }
        assert_eq!(bulk_ack("k3x9", 25_165_824), "bulkack k3x9 25165824");
    }

    #[test]
    fn tests_beyond_the_limit_and_malformed_chunks_are_ignored() {
        let mut ctl = CtlResponder::default();
        for id in 0..MAX_BULK_TESTS {
            assert_eq!(
                ctl.on_message(format!("bulk t{id} 0 9 x").as_bytes()),
                CtlAction::Nothing
            );
        }
        assert_eq!(ctl.on_message(b"bulk extra 0 1 x"), CtlAction::Nothing);
        assert_eq!(ctl.bulk.len(), MAX_BULK_TESTS);
        for bad in [
            &b"bulk "[..],
            b"bulk  1 2",
            b"bulk id x 2",
            b"bulk id 1",
            b"bulk \xff\xfe 0 1",
        ] {
            assert_eq!(ctl.on_message(bad), CtlAction::Nothing, "{bad:?}");
        }
        let long_id = format!("bulk {} 0 1 x", "i".repeat(MAX_BULK_ID + 1));
        assert_eq!(ctl.on_message(long_id.as_bytes()), CtlAction::Nothing);
        assert_eq!(ctl.on_message(b"something else"), CtlAction::Nothing);
    }

    #[test]
    fn overlay_addresses_are_read_only_inside_their_ranges() {
        let mut ctl = CtlResponder::default();
        let own = OverlayAddresses {
            v4: "100.64.1.2".parse().unwrap(),
            v6: "fd50:e038:65e7::9".parse().unwrap(),
        };
        assert_eq!(ctl.on_message(addresses(&own).as_bytes()), CtlAction::Addresses(own));
        for bad in [
            "addr 10.0.0.1 fd50:e038:65e7::9",
            "addr 100.64.1.2 fd00::9",
            "addr 100.64.1.2",
            "addr 100.64.1.2 fd50:e038:65e7::9 extra",
            "addr fd50:e038:65e7::9 100.64.1.2",
            "addr  100.64.1.2 fd50:e038:65e7::9",
        ] {
            assert_eq!(ctl.on_message(bad.as_bytes()), CtlAction::Nothing, "{bad}");
        }
        let long = format!("addr 100.64.1.2 fd50:e038:65e7::9{}", " ".repeat(MAX_ADDR_MESSAGE));
        assert_eq!(ctl.on_message(long.as_bytes()), CtlAction::Nothing);
        let widest = OverlayAddresses {
            v4: "100.127.255.254".parse().unwrap(),
            v6: "fd50:e038:65e7:ffff:ffff:ffff:ffff:ffff".parse().unwrap(),
        };
        assert_eq!(addresses(&widest).len(), MAX_ADDR_MESSAGE);
        assert_eq!(
            ctl.on_message(addresses(&widest).as_bytes()),
            CtlAction::Addresses(widest)
        );
    }

    #[test]
    fn non_utf8_filler_is_fine() {
        let mut ctl = CtlResponder::default();
        let mut chunk = b"bulk z 0 1 ".to_vec();
        chunk.extend_from_slice(&[0xff; 100]);
        assert!(matches!(ctl.on_message(&chunk), CtlAction::Reply(_)));
    }

    #[test]
    fn halves_is_understood_only_as_the_whole_word() {
        let mut ctl = CtlResponder::default();
        assert_eq!(ctl.on_message(JOINS_HALVES.as_bytes()), CtlAction::JoinsHalves);
        for other in ["halves ", "halve", "halves1", "HALVES"] {
            assert_eq!(ctl.on_message(other.as_bytes()), CtlAction::Nothing, "{other}");
        }
    }
}

#[cfg(test)]
#[path = "ctl_fuzz.rs"]
mod fuzz;
