//! The TURN state against a client that sends real TURN messages
//! (`e2e::turn_client`) and a sink that records what would be sent.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use e2e::turn_client::{Reply, Requests};
use flproto::turn_credentials::TurnSecret;
use flproto::NodeId;
use prometheus_client::registry::Registry;

use super::*;
use crate::metrics::Reason;
use crate::turn::gate::Caps;

pub(super) const UNIX: u64 = 1_000_000;
const RELAY_IP: &str = "203.0.113.10";

pub(super) fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

pub(super) fn udp(text: &str) -> ClientAddr {
    ClientAddr {
        transport: Transport::Udp,
        local: addr(LISTEN),
        addr: addr(text),
    }
}

const LISTEN: &str = "203.0.113.10:3478";

/// What the state asked of its sockets.
#[derive(Default)]
pub(super) struct Recorder {
    pub(super) to_client: Vec<(ClientAddr, Vec<u8>)>,
    pub(super) to_peer: Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
    pub(super) closed: Vec<SocketAddr>,
    pub(super) next_port: u16,
}

impl Sink for Recorder {
    fn to_client(&mut self, client: ClientAddr, data: &[u8]) {
        self.to_client.push((client, data.to_vec()));
    }
    fn to_peer(&mut self, relay: SocketAddr, peer: SocketAddr, data: &[u8]) {
        self.to_peer.push((relay, peer, data.to_vec()));
    }
    fn bind_relay(&mut self, _family: AddressFamily) -> Result<SocketAddr, SocketAllocateError> {
        self.next_port += 1;
        Ok(SocketAddr::new(RELAY_IP.parse().unwrap(), 50_000 + self.next_port))
    }
    fn close_relay(&mut self, relay: SocketAddr) {
        self.closed.push(relay);
    }
}

pub(super) struct Harness {
    pub(super) state: TurnState,
    pub(super) sink: Recorder,
    pub(super) metrics: TurnMetrics,
    pub(super) secret: TurnSecret,
    pub(super) now: Instant,
}

pub(super) fn limits() -> Limits {
    Limits {
        caps: Caps { per_node: 2, total: 3 },
        node_rate: ByteRate {
            per_second: 100_000,
            burst: 20_000,
        },
        allocation_rate: ByteRate {
            per_second: 100_000,
            burst: 10_000,
        },
        max_allocation_age: Duration::from_secs(3600),
        max_handshakes: 4,
        handshake_timeout: Duration::from_secs(30),
    }
}

impl Harness {
    pub(super) fn new(limits: Limits) -> Harness {
        let secret = TurnSecret::from_file_contents(b"state tests secret, 32 bytes....").unwrap();
        let metrics = TurnMetrics::register(&mut Registry::default());
        let now = Instant::now();
        let setup = Setup {
            secret: secret.clone(),
            realm: "flsignal".into(),
            policy: PeerPolicy::new(
                vec!["198.51.100.0/24".parse().unwrap()],
                vec![RELAY_IP.parse().unwrap()],
            ),
            limits,
        };
        Harness {
            state: TurnState::new(setup, metrics.clone(), now),
            sink: Recorder::default(),
            metrics,
            secret,
            now,
        }
    }

    /// A client holding `node`'s credential that expires at `expires`.
    pub(super) fn requests(&self, node: u8, expires: u64) -> Requests {
        let credential = self.secret.issue(&NodeId([node; 32]), expires);
        Requests::new(&credential.username, &credential.password)
    }

    /// Hands `data` from `client` to the state; the one answer it gives.
    pub(super) fn ask(&mut self, client: ClientAddr, data: &[u8]) -> Reply {
        let before = self.sink.to_client.len();
        self.state.on_client(client, data, self.now, UNIX, &mut self.sink);
        let answers: Vec<_> = self.sink.to_client[before..].to_vec();
        assert_eq!(answers.len(), 1, "expected one answer");
        assert_eq!(answers[0].0, client);
        Reply::parse(&answers[0].1)
    }

    /// The 401 dance, then the signed Allocate.
    pub(super) fn allocate(&mut self, client: ClientAddr, requests: &mut Requests) -> Reply {
        match self.ask(client, &requests.first_allocate()) {
            Reply::Error {
                code: 401,
                realm,
                nonce,
            } => {
                requests.realm = realm;
                requests.nonce = nonce;
            }
            other => panic!("no challenge: {other:?}"),
        }
        self.ask(client, &requests.allocate())
    }

    /// A Refresh, retried once with the new nonce if the old one went
    /// stale (as clients do).
    pub(super) fn refresh(&mut self, client: ClientAddr, requests: &mut Requests, lifetime: u32) -> Reply {
        match self.ask(client, &requests.refresh(lifetime)) {
            Reply::Error { code: 438, nonce, .. } => {
                requests.nonce = nonce;
                self.ask(client, &requests.refresh(lifetime))
            }
            reply => reply,
        }
    }

    pub(super) fn refusals(&self, reason: &'static str) -> u64 {
        self.metrics.refusals.get_or_create(&Reason { reason }).get()
    }

    pub(super) fn dropped(&self, reason: &'static str) -> u64 {
        self.metrics.dropped.get_or_create(&Reason { reason }).get()
    }

    pub(super) fn tick(&mut self, by: Duration) {
        self.now += by;
        self.state.on_tick(self.now, &mut self.sink);
    }
}

pub(super) fn relayed(reply: Reply) -> SocketAddr {
    match reply {
        Reply::Success { relayed: Some(relayed) } => relayed,
        other => panic!("no allocation: {other:?}"),
    }
}

pub(super) const PEER: &str = "198.51.100.20:6000";

#[test]
fn a_good_credential_gets_a_relay_that_carries_both_ways() {
    let mut harness = Harness::new(limits());
    let client = udp("192.0.2.10:5000");
    let mut requests = harness.requests(1, UNIX + 3600);
    let relay = relayed(harness.allocate(client, &mut requests));
    assert_eq!(relay.ip().to_string(), RELAY_IP);
    assert!(harness.state.is_allocated(&client));
    assert_eq!(harness.metrics.allocations.get(), 1);

    let peer = addr(PEER);
    assert_eq!(
        harness.ask(client, &requests.create_permission(peer)),
        Reply::Success { relayed: None }
    );
    harness.state.on_client(
        client,
        &requests.send(peer, b"to the peer"),
        harness.now,
        UNIX,
        &mut harness.sink,
    );
    assert_eq!(harness.sink.to_peer, vec![(relay, peer, b"to the peer".to_vec())]);

    harness
        .state
        .on_peer(relay, peer, b"to the client", harness.now, &mut harness.sink);
    let (to, data) = harness.sink.to_client.last().unwrap().clone();
    assert_eq!(to, client);
    assert_eq!(
        Reply::parse(&data),
        Reply::Data {
            from: Some(peer),
            data: b"to the client".to_vec()
        }
    );
    // A peer without a permission is not heard.
    let sent = harness.sink.to_client.len();
    harness.state.on_peer(
        relay,
        addr("198.51.100.21:6000"),
        b"stranger",
        harness.now,
        &mut harness.sink,
    );
    assert_eq!(harness.sink.to_client.len(), sent);

    let relayed_bytes = |direction| {
        harness
            .metrics
            .relayed_bytes
            .get_or_create(&crate::metrics::Direction { direction })
            .get()
    };
    // As sent: towards the client, a Data indication around the 13 bytes.
    assert_eq!((relayed_bytes("to_peer"), relayed_bytes("to_client")), (11, 52));
}

#[test]
fn channels_carry_data_with_a_four_byte_header() {
    let mut harness = Harness::new(limits());
    let client = udp("192.0.2.10:5000");
    let mut requests = harness.requests(1, UNIX + 3600);
    let relay = relayed(harness.allocate(client, &mut requests));
    let peer = addr(PEER);
    assert_eq!(
        harness.ask(client, &requests.channel_bind(0x4001, peer)),
        Reply::Success { relayed: None }
    );
    harness.state.on_client(
        client,
        &Requests::channel_data(0x4001, b"wg"),
        harness.now,
        UNIX,
        &mut harness.sink,
    );
    assert_eq!(harness.sink.to_peer, vec![(relay, peer, b"wg".to_vec())]);
    harness
        .state
        .on_peer(relay, peer, b"back", harness.now, &mut harness.sink);
    let (_, data) = harness.sink.to_client.last().unwrap();
    assert_eq!(data.as_slice(), [0x40, 0x01, 0x00, 0x04, b'b', b'a', b'c', b'k']);
}

#[test]
fn an_expired_credential_is_refused() {
    let mut harness = Harness::new(limits());
    let client = udp("192.0.2.10:5000");
    let mut requests = harness.requests(1, UNIX - 1);
    assert_eq!(harness.allocate(client, &mut requests).error_code(), Some(401));
    assert_eq!(harness.refusals("expired"), 1);
    assert!(!harness.state.is_allocated(&client));
    assert_eq!(harness.metrics.allocations.get(), 0);
}

#[test]
fn a_wrong_hmac_or_a_foreign_username_is_refused() {
    let mut harness = Harness::new(limits());
    let mut requests = harness.requests(1, UNIX + 3600);
    requests.password = TurnSecret::from_file_contents(b"someone else's secret, 32 bytes.")
        .unwrap()
        .password_for(&requests.username);
    assert_eq!(
        harness.allocate(udp("192.0.2.10:5000"), &mut requests).error_code(),
        Some(401)
    );
    assert_eq!(harness.refusals("bad_password"), 1);

    let mut requests = Requests::new("alice", "secret");
    assert_eq!(
        harness.allocate(udp("192.0.2.11:5000"), &mut requests).error_code(),
        Some(401)
    );
    assert_eq!(harness.refusals("bad_username"), 1);
    assert_eq!(harness.metrics.allocations.get(), 0);
}

#[test]
fn a_node_over_its_cap_is_refused_and_so_is_anyone_over_the_servers() {
    let mut harness = Harness::new(limits());
    for port in [5000, 5001] {
        let mut requests = harness.requests(1, UNIX + 3600);
        relayed(harness.allocate(udp(&format!("192.0.2.10:{port}")), &mut requests));
    }
    let mut third = harness.requests(1, UNIX + 3600);
    assert_eq!(
        harness.allocate(udp("192.0.2.10:5002"), &mut third).error_code(),
        Some(486)
    );
    assert_eq!(harness.refusals("node_allocation_cap"), 1);
    // Another node still gets the server's last one, then nobody does.
    let mut other = harness.requests(2, UNIX + 3600);
    relayed(harness.allocate(udp("192.0.2.20:5000"), &mut other));
    let mut late = harness.requests(3, UNIX + 3600);
    assert_eq!(
        harness.allocate(udp("192.0.2.30:5000"), &mut late).error_code(),
        Some(508)
    );
    assert_eq!(harness.refusals("server_allocation_cap"), 1);
    assert_eq!(harness.metrics.allocations.get(), 3);
}

#[test]
fn an_allocate_from_a_client_that_holds_one_is_not_counted_against_the_cap() {
    let mut harness = Harness::new(limits());
    let mut first = harness.requests(1, UNIX + 3600);
    let client = udp("192.0.2.10:5000");
    relayed(harness.allocate(client, &mut first));
    let mut second = harness.requests(1, UNIX + 3600);
    relayed(harness.allocate(udp("192.0.2.10:5001"), &mut second));
    // The node is at its cap; its first client asks again (a lost
    // answer): the state machine answers, not the cap.
    let again = harness.ask(client, &first.allocate());
    assert_ne!(again.error_code(), Some(486), "{again:?}");
    assert_eq!(harness.refusals("node_allocation_cap"), 0);
    assert_eq!(harness.metrics.allocations.get(), 2);
}

#[test]
fn a_released_allocation_frees_the_nodes_share() {
    let mut harness = Harness::new(limits());
    let mut clients = Vec::new();
    for port in [5000, 5001] {
        let client = udp(&format!("192.0.2.10:{port}"));
        let mut requests = harness.requests(1, UNIX + 3600);
        let relay = relayed(harness.allocate(client, &mut requests));
        clients.push((client, requests, relay));
    }
    let (client, requests, relay) = &clients[0];
    assert_eq!(
        harness.ask(*client, &requests.refresh(0)),
        Reply::Success { relayed: None }
    );
    assert_eq!(harness.sink.closed, vec![*relay]);
    assert!(!harness.state.is_allocated(client));
    let ended = harness
        .metrics
        .allocations_ended
        .get_or_create(&Reason { reason: "released" })
        .get();
    assert_eq!(ended, 1);
    let mut again = harness.requests(1, UNIX + 3600);
    relayed(harness.allocate(udp("192.0.2.10:5002"), &mut again));
}

#[test]
fn peers_in_denied_ranges_are_refused_with_403() {
    let mut harness = Harness::new(limits());
    let client = udp("192.0.2.10:5000");
    let mut requests = harness.requests(1, UNIX + 3600);
    relayed(harness.allocate(client, &mut requests));
    for peer in [
        "127.0.0.1:8765",
        "10.0.0.1:22",
        "169.254.169.254:80",
        "203.0.113.10:8765",
        "[::1]:80",
    ] {
        let reply = harness.ask(client, &requests.create_permission(addr(peer)));
        assert_eq!(reply.error_code(), Some(403), "{peer}");
    }
    assert_eq!(
        harness
            .ask(client, &requests.channel_bind(0x4002, addr("192.168.1.1:9")))
            .error_code(),
        Some(403)
    );
    assert_eq!(harness.refusals("denied_peer"), 6);
    // Nothing ever reaches them, by indication either.
    harness.state.on_client(
        client,
        &requests.send(addr("127.0.0.1:8765"), b"x"),
        harness.now,
        UNIX,
        &mut harness.sink,
    );
    assert!(harness.sink.to_peer.is_empty());
}
