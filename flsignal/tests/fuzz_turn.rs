//! Fuzz targets for the TURN service: whatever arrives, from clients,
//! strangers or peers, it never relays to a refused peer, never holds
//! more clients or allocations than its limits, never answers a stranger
//! with much more than it sent, and cuts any TCP stream into bounded
//! frames. Credential usernames parse or are refused, never panic.
//!
//! Under `cargo test` each target replays its corpus
//! (`tests/__fuzz__/<target>/corpus`, if any) and then random inputs for
//! [`CARGO_TEST_TIME`]; `scripts/fuzz.sh` runs them under a real fuzzer.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use e2e::turn_client::{Reply, Requests};
use flproto::turn_credentials::{CredentialUser, TurnSecret};
use flproto::NodeId;
use flsignal::turn::bandwidth::ByteRate;
use flsignal::turn::framing::Framer;
use flsignal::turn::gate::Caps;
use flsignal::turn::metrics::TurnMetrics;
use flsignal::turn::peer_policy::PeerPolicy;
use flsignal::turn::state::{ClientAddr, Limits, Setup, Sink, Transport, TurnState};
use prometheus_client::registry::Registry;
use turn_server_proto::api::SocketAllocateError;
use turn_server_proto::types::AddressFamily;

/// Random inputs per target and `cargo test` run.
const CARGO_TEST_TIME: Duration = Duration::from_secs(2);
const UNIX: u64 = 1_000_000;
const MAX_HANDSHAKES: usize = 3;
const CAPS: Caps = Caps { per_node: 1, total: 2 };
/// Most bytes sent to a client without an allocation for one datagram:
/// a 401 with realm and nonce, or a signed refusal, is about 100.
const MAX_STRANGER_REPLY: usize = 200;
/// The largest frame on a stream: a STUN header and the most its 16-bit
/// length can say.
const MAX_FRAME: usize = 20 + 65_535;

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

/// One of four clients, chosen by `index`.
fn client(index: u8) -> ClientAddr {
    ClientAddr {
        transport: Transport::Udp,
        local: addr("203.0.113.10:3478"),
        addr: SocketAddr::new(addr("192.0.2.1:1").ip(), 5000 + u16::from(index % 4)),
    }
}

fn policy() -> PeerPolicy {
    PeerPolicy::new(
        vec!["198.51.100.0/24".parse().unwrap()],
        vec![addr("203.0.113.10:1").ip()],
    )
}

/// What the state sent, checked as it goes.
#[derive(Default)]
struct Checked {
    relays: Vec<SocketAddr>,
    /// Every answer to a client: to whom, and its bytes.
    replies: Vec<(ClientAddr, Vec<u8>)>,
}

impl Sink for Checked {
    fn to_client(&mut self, client: ClientAddr, data: &[u8]) {
        self.replies.push((client, data.to_vec()));
    }
    fn to_peer(&mut self, relay: SocketAddr, peer: SocketAddr, _data: &[u8]) {
        assert!(policy().check(peer.ip()).is_ok(), "relayed to {peer}");
        assert!(self.relays.contains(&relay), "sent from unknown relay {relay}");
    }
    fn bind_relay(&mut self, _family: AddressFamily) -> Result<SocketAddr, SocketAllocateError> {
        let relay = SocketAddr::new(addr("203.0.113.10:1").ip(), 50_000 + self.relays.len() as u16);
        self.relays.push(relay);
        Ok(relay)
    }
    fn close_relay(&mut self, relay: SocketAddr) {
        assert!(self.relays.contains(&relay), "closed unknown relay {relay}");
    }
}

/// A state in which client 0 holds an allocation made with a real
/// credential (so that random input reaches the allocated paths too), and
/// its relay address.
fn state_with_an_allocation(sink: &mut Checked, now: Instant) -> (TurnState, TurnMetrics, SocketAddr) {
    let secret = TurnSecret::from_file_contents(b"fuzz secret of enough bytes").unwrap();
    let metrics = TurnMetrics::register(&mut Registry::default());
    let rate = ByteRate {
        per_second: 100_000,
        burst: 20_000,
    };
    let setup = Setup {
        secret: secret.clone(),
        realm: "flsignal".into(),
        policy: policy(),
        limits: Limits {
            caps: CAPS,
            node_rate: rate,
            allocation_rate: rate,
            max_allocation_age: Duration::from_secs(3600),
            max_handshakes: MAX_HANDSHAKES,
            handshake_timeout: Duration::from_secs(30),
        },
    };
    let mut state = TurnState::new(setup, metrics.clone(), now);
    let credential = secret.issue(&NodeId([1; 32]), UNIX + 3600);
    let mut requests = Requests::new(&credential.username, &credential.password);
    state.on_client(client(0), &requests.first_allocate(), now, UNIX, sink);
    let Some(Reply::Error { realm, nonce, .. }) = sink.replies.last().map(|(_, data)| Reply::parse(data)) else {
        panic!("no challenge");
    };
    (requests.realm, requests.nonce) = (realm, nonce);
    state.on_client(client(0), &requests.allocate(), now, UNIX, sink);
    let relay = *sink.relays.last().expect("an allocation");
    state.on_client(
        client(0),
        &requests.create_permission(addr("198.51.100.20:6000")),
        now,
        UNIX,
        sink,
    );
    sink.replies.clear();
    (state, metrics, relay)
}

#[test]
fn turn_never_relays_to_refused_peers_nor_outgrows_its_limits() {
    bolero::check!()
        .with_test_time(CARGO_TEST_TIME)
        .with_type::<Vec<(u8, u16, Vec<u8>)>>()
        .for_each(|events| {
            let start = Instant::now();
            let mut sink = Checked::default();
            let (mut state, metrics, relay) = state_with_an_allocation(&mut sink, start);
            for (at, (who, pause, data)) in events.iter().enumerate() {
                let now = start + Duration::from_millis(u64::from(*pause) * at as u64);
                match who % 6 {
                    // A peer, allowed or not, at the relay.
                    4 => state.on_peer(relay, addr("198.51.100.20:6000"), data, now, &mut sink),
                    5 => state.on_peer(relay, addr("10.0.0.1:6000"), data, now, &mut sink),
                    index => {
                        let from = client(index);
                        let known = state.is_allocated(&from);
                        let before = sink.replies.len();
                        state.on_client(from, data, now, UNIX, &mut sink);
                        if !known {
                            let sent: usize = sink.replies[before..].iter().map(|(_, reply)| reply.len()).sum();
                            assert!(sent <= MAX_STRANGER_REPLY, "{sent} bytes for {} in", data.len());
                        }
                    }
                }
                if *pause > 1000 {
                    state.on_tick(now, &mut sink);
                }
                state.release_held(now, &mut sink);
                assert!(metrics.handshakes.get() <= MAX_HANDSHAKES as i64);
                assert!(metrics.allocations.get() <= CAPS.total as i64);
            }
        });
}

#[test]
fn turn_streams_are_cut_into_bounded_frames() {
    bolero::check!()
        .with_test_time(CARGO_TEST_TIME)
        .with_type::<(u8, Vec<u8>)>()
        .for_each(|(cut, stream)| {
            let cut = usize::from(*cut).max(1);
            let mut framer = Framer::default();
            for piece in stream.chunks(cut) {
                framer.push(piece);
                loop {
                    match framer.next_frame() {
                        Ok(Some(frame)) => {
                            assert!(frame.len() >= 4 && frame.len() <= MAX_FRAME);
                            let length = usize::from(u16::from_be_bytes([frame[2], frame[3]]));
                            match frame[0] {
                                0x00..=0x3f => assert_eq!(frame.len(), 20 + length),
                                0x40..=0x7f => assert_eq!(frame.len(), 4 + length),
                                other => panic!("frame starting with {other:#x}"),
                            }
                        }
                        Ok(None) => break,
                        // The connection ends here.
                        Err(_) => return,
                    }
                }
                assert!(
                    framer.pending() < MAX_FRAME + 4 + cut,
                    "{} bytes held",
                    framer.pending()
                );
            }
        });
}

#[test]
fn credential_usernames_parse_or_are_refused() {
    bolero::check!()
        .with_test_time(CARGO_TEST_TIME)
        .with_type::<String>()
        .for_each(|username| {
            if let Ok(user) = CredentialUser::parse(username) {
                let secret = TurnSecret::from_file_contents(b"fuzz secret of enough bytes").unwrap();
                let issued = secret.issue(&user.node, user.expires);
                assert_eq!(CredentialUser::parse(&issued.username), Ok(user));
                assert!(username.len() <= flproto::turn_credentials::MAX_USERNAME_BYTES);
            }
        });
}
