//! Sealed setups between two flnodes, through a recording relay in front
//! of flsignal (`e2e::hostile_relay`): the signalling server handles only
//! ciphertext, the tunnel works, and a tampered, re-addressed or replayed
//! sealed message is refused with a clear log line. And the other side:
//! a fledger-style node (version-3 announce, plain signed setups) still
//! connects, unless the flnode requires sealed setups.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use e2e::flnode::{peer_connected, status, wait_for, NodePair, PEER_PORT, WIREGUARD};
use e2e::hostile_relay::{misbehave_towards, Direction, HostileRelay};
use e2e::leaks::{check_sealed_recording, secrets_in, setup_messages};
use e2e::nat::{self, NatTopology, HOST_A, HOST_B, ROUTER_A_PUBLIC, ROUTER_B_PUBLIC, SERVERS};
use e2e::netns::{namespaces_available, Testbed, ADDR_A};
use e2e::wireguard::{self, Overlay};
use e2e::ServerProcess;
use flproto::identity::NodeKey;
use flproto::ids::parse_hex32;
use flproto::message::{NodeMessage, SetupMessage};

/// The key of the node whose config directory is `dir`.
fn node_key(dir: &std::path::Path) -> NodeKey {
    let text = std::fs::read_to_string(dir.join("node.key")).unwrap();
    NodeKey::from_seed(parse_hex32(text.trim()).unwrap())
}

/// Both nodes show their peer as connected with sealed setups.
async fn wait_sealed(pair: &NodePair) {
    for host in 0..2 {
        let waited = wait_for(pair.dir(host), "connected with sealed setups", |report| {
            peer_connected(report) && report.contains("setups sealed")
        })
        .await;
        if let Err(error) = waited {
            panic!(
                "host {host}: {error:#}\n--- a log:\n{}\n--- b log:\n{}",
                pair.log(0),
                pair.log(1)
            );
        }
    }
}

/// flsignal and the relay on the public network between two NATs, the
/// nodes behind them: server-reflexive candidates (the routers' public
/// addresses and ports, with the hosts' private ones as related
/// addresses) are among what the server must not see.
#[tokio::test]
async fn two_flnodes_seal_everything_the_signalling_server_handles() {
    let test = "two_flnodes_seal_everything_the_signalling_server_handles";
    if !namespaces_available(test) || !wireguard::tools_available(test) || !nat::tools_available(test, false) {
        return;
    }
    let topology = NatTopology::new().unwrap();
    let listener = Testbed::tcp_listener(&topology.public, format!("{SERVERS}:0").parse().unwrap()).unwrap();
    let relay_addr = listener.local_addr().unwrap();
    let server = ServerProcess::start_in(
        Some(&topology.public),
        &[
            "--listen",
            "0.0.0.0:0",
            "--stun-listen",
            &format!("{SERVERS}:3478"),
            "--public-host",
            &relay_addr.to_string(),
        ],
        &[],
    )
    .await
    .unwrap();
    let upstream = format!("{SERVERS}:{}", server.addr.port()).parse().unwrap();
    let recipient = Arc::new(OnceLock::new());
    let relay = HostileRelay::start(
        &topology.public,
        listener,
        upstream,
        misbehave_towards(recipient.clone()),
    )
    .unwrap();
    let url = format!("ws://{relay_addr}");
    let pair = NodePair::start_between([&topology.host_a, &topology.host_b], server, [url.clone(), url], &[])
        .await
        .unwrap();
    let keys = [node_key(pair.dir(0)), node_key(pair.dir(1))];
    recipient.set(keys[1].id()).unwrap();

    // The tunnel works.
    let overlay = Overlay::between(
        [&topology.host_a, &topology.host_b],
        &topology.tag,
        WIREGUARD,
        PEER_PORT,
    )
    .await
    .unwrap();
    wait_sealed(&pair).await;
    overlay.ping_from_a().await.unwrap();

    // Node b refuses the relay's altered copies, each with its reason.
    let log_has = |needle: &'static str, count: usize| {
        let dir = pair.log_path(1);
        async move {
            for _ in 0..100 {
                let log = std::fs::read_to_string(&dir).unwrap_or_default();
                if log.matches(needle).count() >= count {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            false
        }
    };
    assert!(
        log_has("does not verify (forged or altered in transit)", 2).await,
        "the tampered and the re-addressed copy were not both refused: {}",
        pair.log(1)
    );
    assert!(
        log_has("replayed setup message", 1).await || log_has("stale setup message", 1).await,
        "the replayed copy was not refused: {}",
        pair.log(1)
    );
    let report = status(pair.dir(1)).unwrap();
    assert!(peer_connected(&report), "{report}");
    overlay.ping_from_a().await.unwrap();

    // Everything the server handled: the setups are all sealed, and none
    // of the secrets they carry shows anywhere, in any encoding. The
    // relay's tampered and re-addressed copies, as it sent them and as the
    // server relayed them, are all that does not verify.
    assert!(!relay.truncated());
    let frames = relay.frames();
    let opened = setup_messages(&frames, &keys);
    for kind in ["Offer", "Answer", "IceCandidate"] {
        assert!(
            opened
                .iter()
                .any(|setup| format!("{:?}", setup.message).starts_with(&format!("Some({kind}"))),
            "no {kind} was relayed"
        );
    }
    let addresses = secrets_in(&opened);
    assert!(
        addresses
            .iter()
            .any(|secret| secret.value == ROUTER_A_PUBLIC || secret.value == ROUTER_B_PUBLIC),
        "no server-reflexive candidate: {addresses:?}"
    );
    let summary =
        check_sealed_recording(&frames, &keys, &[HOST_A, HOST_B, ROUTER_A_PUBLIC, ROUTER_B_PUBLIC], 4).unwrap();
    eprintln!("{summary}");
}

/// A fledger-style node (`--fledger-compat`: version-3 announce, no
/// sealed-setup advertisement) and a current flnode connect with plain,
/// signed setups; restarted with `--require-sealed`, the flnode refuses
/// the other's plain setups and says why.
#[tokio::test]
async fn a_fledger_style_node_gets_plain_signed_setups_unless_sealed_ones_are_required() {
    let test = "a_fledger_style_node_gets_plain_signed_setups_unless_sealed_ones_are_required";
    if !namespaces_available(test) {
        return;
    }
    let testbed = Testbed::new().unwrap();
    let listener = Testbed::tcp_listener(&testbed.a, format!("{ADDR_A}:0").parse().unwrap()).unwrap();
    let relay_addr = listener.local_addr().unwrap();
    let server = ServerProcess::start_in(
        Some(&testbed.a),
        &["--listen", "0.0.0.0:0", "--public-host", &relay_addr.to_string()],
        &[],
    )
    .await
    .unwrap();
    let upstream = format!("{ADDR_A}:{}", server.addr.port()).parse().unwrap();
    let relay = HostileRelay::recording(&testbed.a, listener, upstream).unwrap();
    let url = format!("ws://{relay_addr}");
    // Node 1 is the fledger-style one; node 0 starts like it and is then
    // restarted as a current flnode.
    let mut pair = NodePair::start_between(
        [&testbed.a, &testbed.b],
        server,
        [url.clone(), url],
        &["--fledger-compat"],
    )
    .await
    .unwrap();
    pair.wait_started().await.unwrap();
    pair.kill_node(0).await.unwrap();
    pair.set_extra_args(&[]);
    pair.start_node(0).unwrap();
    for host in 0..2 {
        wait_for(pair.dir(host), "connected with plain setups", |report| {
            peer_connected(report) && report.contains("setups plain")
        })
        .await
        .unwrap();
    }
    let keys = [node_key(pair.dir(0)), node_key(pair.dir(1))];
    let opened = setup_messages(&relay.frames(), &keys);
    assert!(!opened.is_empty() && opened.iter().all(|setup| setup.message.is_some()));
    assert!(
        opened
            .iter()
            .all(|setup| !setup.sealed && setup.frame.contains(r#""auth":{"session""#)),
        "plain and signed"
    );
    assert!(opened
        .iter()
        .any(|setup| matches!(setup.message, Some(SetupMessage::Offer(_)))));
    let announces: Vec<String> = relay
        .frames()
        .into_iter()
        .filter(|frame| frame.text.starts_with(r#"{"Announce""#))
        .map(|frame| frame.text)
        .collect();
    assert!(announces
        .iter()
        .any(|announce| announce.contains(r#""version":3"#) && !announce.contains("sealed_setup")));
    assert!(announces
        .iter()
        .any(|announce| announce.contains(r#""sealed_setup":1"#)));

    // Now the flnode requires sealed setups.
    let before = relay.frames().len();
    pair.kill_node(0).await.unwrap();
    pair.set_extra_args(&["--require-sealed"]);
    pair.start_node(0).unwrap();
    let refused = "refused a setup message: plain setup message refused: this node requires sealed setups";
    let mut logged = false;
    for _ in 0..150 {
        if pair.log(0).contains(refused) {
            logged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(logged, "no clear refusal in the log: {}", pair.log(0));
    let report = status(pair.dir(0)).unwrap();
    assert!(!peer_connected(&report), "connected with plain setups: {report}");
    assert!(report.contains("setups sealed"), "{report}");
    // What the node sent since it was restarted is sealed.
    let sent: Vec<SetupMessage> = relay.frames()[before..]
        .iter()
        .filter(|frame| frame.direction == Direction::FromNode)
        .filter_map(|frame| match serde_json::from_str(&frame.text) {
            Ok(NodeMessage::PeerSetup(info)) if flproto::setup_auth::verify(&info, &keys[1].id()).is_ok() => {
                Some(info.message)
            }
            _ => None,
        })
        .collect();
    assert!(
        !sent.is_empty() && sent.iter().all(|message| matches!(message, SetupMessage::Sealed(_))),
        "{sent:?}"
    );
}
