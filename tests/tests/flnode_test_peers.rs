//! Who an flnode answers besides its configured peers, against a real
//! flsignal and two flnodes in network namespaces: a stranger's setup is
//! dropped with test peers off (nothing comes back through the server, so
//! no candidate of the machine either); with `--test-peers 1
//! --test-peer-allow X` only X gets a slot, and a setup forged in X's name
//! reserves nothing. The WireGuard-facing port takes datagrams only from
//! the local WireGuard.

use std::net::SocketAddr;
use std::time::Duration;

use e2e::flnode::{status, NodePair, PEER_PORT, WIREGUARD};
use e2e::netns::{namespaces_available, Testbed};
use e2e::{Client, Event};
use flproto::identity::NodeKey;
use flproto::message::{PeerInfo, ServerMessage, SetupMessage};
use flproto::setup_auth::{SessionId, SetupSigner};
use flproto::NodeId;

/// How long a stranger listens for anything the node might send back.
const LISTEN: Duration = Duration::from_secs(4);

/// A node `key` joined to the pair's flsignal from inside host a.
async fn join(testbed: &Testbed, pair: &NodePair, key: &NodeKey) -> Client {
    let addr: SocketAddr = format!("127.0.0.1:{}", pair.port).parse().unwrap();
    let url = format!("ws://{addr}");
    let stream = Testbed::tcp_connect(&testbed.a, addr).unwrap();
    let mut client = Client::connect_over(stream, &url).await.unwrap();
    client.announce(key, &Client::bound_auth(&url)).await.unwrap();
    client.expect_registered().await.unwrap();
    client
}

/// The setups that open a connection whichever role `from` has towards
/// `to`, signed by `signer` (not necessarily `from`).
fn openers(from: &NodeId, to: &NodeId, signer: &NodeKey) -> Vec<PeerInfo> {
    let (id_init, id_follow) = if from < to { (*from, *to) } else { (*to, *from) };
    let mut setup_signer = SetupSigner::new(SessionId::random(flproto::setup_message::Opens::Plain));
    let mut attempt = setup_signer.next_generation(1);
    [SetupMessage::Init, SetupMessage::Offer("v=0\r\n".into())]
        .into_iter()
        .map(|message| {
            let info = PeerInfo {
                id_init,
                id_follow,
                message,
                auth: None,
            };
            setup_signer.sign(signer, &mut attempt, info)
        })
        .collect()
}

/// Every setup the client receives within [`LISTEN`].
async fn setups_received(client: &mut Client) -> Vec<PeerInfo> {
    let deadline = tokio::time::Instant::now() + LISTEN;
    let mut setups = Vec::new();
    while let Some(event) = client
        .next_within(deadline.saturating_duration_since(tokio::time::Instant::now()))
        .await
        .unwrap()
    {
        if let Event::Frame(ServerMessage::PeerSetup(setup)) = event {
            setups.push(setup);
        }
    }
    setups
}

/// The number after `label` in a status report.
fn count_after(report: &str, label: &str) -> u64 {
    report
        .split(label)
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_stranger_gets_no_slot_and_no_candidate_from_a_node_with_default_settings() {
    if !namespaces_available("a_stranger_gets_no_slot_and_no_candidate_from_a_node_with_default_settings") {
        return;
    }
    let testbed = Testbed::new().unwrap();
    let pair = NodePair::start(&testbed).await.unwrap();
    pair.wait_registered(1).await.unwrap();
    let node: NodeId = pair.ids[1].parse().unwrap();
    let stranger = NodeKey::generate();
    let mut client = join(&testbed, &pair, &stranger).await;
    for setup in openers(&stranger.id(), &node, &stranger) {
        client
            .send(&flproto::message::NodeMessage::PeerSetup(setup))
            .await
            .unwrap();
    }
    let answers = setups_received(&mut client).await;
    assert!(answers.is_empty(), "the node answered a stranger: {answers:?}");
    let report = status(pair.dir(1)).unwrap();
    assert!(report.contains("test-peer slots 0/0"), "{report}");
    assert_eq!(count_after(&report, "strangers refused "), 2, "{report}");
    assert!(!report.contains("\ntest-peer "), "a task was started: {report}");
}

#[tokio::test]
async fn with_an_allow_list_only_that_node_gets_a_slot_and_a_forged_setup_reserves_nothing() {
    let test = "with_an_allow_list_only_that_node_gets_a_slot_and_a_forged_setup_reserves_nothing";
    if !namespaces_available(test) {
        return;
    }
    let testbed = Testbed::new().unwrap();
    let mut pair = NodePair::start(&testbed).await.unwrap();
    pair.wait_registered(1).await.unwrap();
    let node: NodeId = pair.ids[1].parse().unwrap();
    // The allowed node asks with Init, so it must be the follower (the
    // larger key): the node then offers at once.
    let allowed = std::iter::repeat_with(NodeKey::generate)
        .find(|key| key.id() > node)
        .unwrap();
    pair.kill_node(1).await.unwrap();
    let allowed_id = allowed.id().to_string();
    pair.set_extra_args(&["--test-peers", "1", "--test-peer-allow", &allowed_id]);
    pair.start_node(1).unwrap();
    pair.wait_registered(1).await.unwrap();

    let stranger = NodeKey::generate();
    let mut stranger_client = join(&testbed, &pair, &stranger).await;
    for setup in openers(&stranger.id(), &node, &stranger) {
        stranger_client
            .send(&flproto::message::NodeMessage::PeerSetup(setup))
            .await
            .unwrap();
    }
    let answers = setups_received(&mut stranger_client).await;
    assert!(answers.is_empty(), "the node answered a stranger: {answers:?}");
    let report = status(pair.dir(1)).unwrap();
    assert!(report.contains("test-peer slots 0/1"), "{report}");
    assert_eq!(count_after(&report, "strangers refused "), 2, "{report}");

    // From the allowed node's connection (the server relays only a
    // party's own setups), but signed by another key: a forgery, as a
    // hostile server could make. Refused, nothing reserved.
    let mut allowed_client = join(&testbed, &pair, &allowed).await;
    for setup in openers(&allowed.id(), &node, &stranger) {
        allowed_client
            .send(&flproto::message::NodeMessage::PeerSetup(setup))
            .await
            .unwrap();
    }
    let answers = setups_received(&mut allowed_client).await;
    assert!(answers.is_empty(), "the node answered a forged setup: {answers:?}");
    let report = status(pair.dir(1)).unwrap();
    assert!(report.contains("test-peer slots 0/1"), "{report}");
    assert_eq!(count_after(&report, "strangers refused "), 4, "{report}");

    // The allowed node itself.
    let init = openers(&allowed.id(), &node, &allowed).remove(0);
    allowed_client
        .send(&flproto::message::NodeMessage::PeerSetup(init))
        .await
        .unwrap();
    let answer = allowed_client.expect_setup().await.unwrap();
    assert!(
        matches!(answer.message, SetupMessage::Offer(_)),
        "the allowed node should get an offer: {answer:?}"
    );
    let report = status(pair.dir(1)).unwrap();
    assert!(
        report.contains("test-peer slots 1/1") && report.contains(&format!("test-peer {allowed_id} ")),
        "{report}"
    );
}

#[tokio::test]
async fn a_datagram_from_another_local_process_is_dropped_and_counted() {
    if !namespaces_available("a_datagram_from_another_local_process_is_dropped_and_counted") {
        return;
    }
    let testbed = Testbed::new().unwrap();
    let pair = NodePair::start(&testbed).await.unwrap();
    pair.wait_connected(0).await.unwrap();
    pair.wait_connected(1).await.unwrap();
    let intruder = Testbed::udp_socket(&testbed.a, "127.0.0.1:0".parse().unwrap()).unwrap();
    let wg_a = Testbed::udp_socket(&testbed.a, WIREGUARD.parse().unwrap()).unwrap();
    let wg_b = Testbed::udp_socket(&testbed.b, WIREGUARD.parse().unwrap()).unwrap();
    let target: SocketAddr = PEER_PORT.parse().unwrap();
    let mut buffer = [0u8; 64];
    for _ in 0..5 {
        intruder.send_to(b"not from wireguard", target).await.unwrap();
    }
    e2e::flnode::wait_for(pair.dir(0), "counting foreign datagrams", |report| {
        report.contains("5 foreign")
    })
    .await
    .unwrap();
    // The real WireGuard's datagrams still cross; the intruder's never do.
    let mut crossed = false;
    for _ in 0..20 {
        wg_a.send_to(b"from wireguard", target).await.unwrap();
        if let Ok(Ok((len, _))) = tokio::time::timeout(Duration::from_millis(500), wg_b.recv_from(&mut buffer)).await {
            assert_eq!(&buffer[..len], b"from wireguard", "a foreign datagram crossed");
            crossed = true;
            break;
        }
    }
    assert!(crossed, "no datagram from the local WireGuard crossed");
    let report = status(pair.dir(0)).unwrap();
    assert!(report.contains("5 foreign"), "{report}");
}
