//! Sealed setups from the browser page, in real chromium (driven by
//! `tests/browser/sealed.mjs`) through a recording relay in front of a real
//! flsignal: between two pages, and between a page and an flnode, the
//! server handles only ciphertext and altered copies are refused; and
//! Node's WebCrypto reproduces flproto's sealed vector. Without chromium,
//! node or the npm packages these skip with a message, except under
//! `CI=true`.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use e2e::browser::{browser_available, run_script};
use e2e::flnode::NodePair;
use e2e::hostile_relay::{misbehave_after_first_matching, misbehave_after_the_first_sealed_setup, HostileRelay};
use e2e::leaks::check_sealed_recording;
use e2e::netns::{namespaces_available, Testbed, ADDR_A, ADDR_B};
use e2e::ServerProcess;
use flproto::identity::NodeKey;

/// flsignal on host a with a recording relay in front of it, on `listen`
/// (an address of host a), which the nodes' bound announces name as
/// `names`; the relay does what `tamper` says.
async fn relayed_server(
    testbed: &Testbed,
    listen: &str,
    names: impl Fn(u16) -> String,
    tamper: e2e::hostile_relay::Tamper,
) -> (ServerProcess, HostileRelay) {
    let listener = Testbed::tcp_listener(&testbed.a, listen.parse().unwrap()).unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = ServerProcess::start_in(
        Some(&testbed.a),
        &["--listen", "0.0.0.0:0", "--public-host", &names(port)],
        &[],
    )
    .await
    .unwrap();
    let upstream = format!("127.0.0.1:{}", server.addr.port()).parse().unwrap();
    let relay = HostileRelay::start(&testbed.a, listener, upstream, tamper).unwrap();
    (server, relay)
}

/// The page keys the script printed (`SEEDS {"name": hex}`).
fn page_keys(out: &str) -> Vec<NodeKey> {
    let line = out
        .lines()
        .find_map(|line| line.strip_prefix("SEEDS "))
        .expect("seeds printed");
    let seeds: std::collections::HashMap<String, String> = serde_json::from_str(line).unwrap();
    seeds
        .values()
        .map(|seed| NodeKey::from_seed(flproto::ids::parse_hex32(seed).unwrap()))
        .collect()
}

/// Two pages in chromium (on host a, served through a recording relay)
/// connect with sealed setups; page b refuses the relay's tampered,
/// re-addressed and replayed copies of the first sealed setup, each with
/// its reason; and no frame the server handled shows an address, port,
/// ICE credential or fingerprint of either page.
#[tokio::test]
async fn two_browser_pages_seal_everything_the_server_relays() {
    let test = "two_browser_pages_seal_everything_the_server_relays";
    if !browser_available(test) || !namespaces_available(test) {
        return;
    }
    let testbed = Testbed::new().unwrap();
    // Chromium gathers host candidates only where a default route is; two
    // pages on host a find each other over its link to b.
    e2e::netns::run_in(&testbed.a, &["ip", "route", "add", "default", "via", ADDR_B]).unwrap();
    let tamper = misbehave_after_the_first_sealed_setup();
    let (_server, relay) = relayed_server(&testbed, "127.0.0.1:0", |port| format!("127.0.0.1:{port}"), tamper).await;
    let url = format!("http://127.0.0.1:{}/", relay.addr.port());
    let (status, out, err) = run_script(
        "sealed.mjs",
        &[("FLSIGNAL_URL", url), ("MODE", "pages".into())],
        Some(&testbed.a),
    )
    .await;
    assert!(status.success(), "browser run failed:\n{out}\n{err}");
    assert!(out.contains("refused the tampered, re-addressed and replayed"), "{out}");
    assert!(!relay.truncated());
    let summary = check_sealed_recording(&relay.frames(), &page_keys(&out), &[ADDR_A], 4).unwrap();
    eprintln!("{summary}");
}

/// A page (chromium on host a, served through a recording relay) and an
/// flnode on host b that takes it as a test peer connect with sealed
/// setups both ways; the node refuses the relay's tampered, re-addressed
/// and replayed copies of the page's first sealed setup with a log line
/// each; and no frame the server handled shows an address, port, ICE
/// credential or fingerprint of either.
#[tokio::test]
async fn a_browser_page_and_an_flnode_seal_everything_the_server_relays() {
    let test = "a_browser_page_and_an_flnode_seal_everything_the_server_relays";
    if !browser_available(test) || !namespaces_available(test) {
        return;
    }
    let testbed = Testbed::new().unwrap();
    // The node's peer on host a is node a; the page is anyone else.
    let pair_ids: Arc<OnceLock<(flproto::NodeId, flproto::NodeId)>> = Arc::new(OnceLock::new());
    let chosen = pair_ids.clone();
    let tamper = misbehave_after_first_matching(move |info| {
        chosen.get().is_some_and(|(node_a, node_b)| {
            flproto::setup_auth::verify(info, node_b).is_ok_and(|(sender, _)| sender != *node_a)
        })
    });
    let names = |port| format!("127.0.0.1:{port},{ADDR_A}:{port}");
    let (server, relay) = relayed_server(&testbed, "0.0.0.0:0", names, tamper).await;
    let port = relay.addr.port();
    let signal = [format!("ws://127.0.0.1:{port}"), format!("ws://{ADDR_A}:{port}")];
    let pair = NodePair::start_between([&testbed.a, &testbed.b], server, signal, &["--test-peers", "1"])
        .await
        .unwrap();
    let node_keys = [0, 1].map(|host| {
        let text = std::fs::read_to_string(pair.dir(host).join("node.key")).unwrap();
        NodeKey::from_seed(flproto::ids::parse_hex32(text.trim()).unwrap())
    });
    pair_ids.set((node_keys[0].id(), node_keys[1].id())).unwrap();
    pair.wait_registered(1).await.unwrap();

    let hold = tempfile::tempdir().unwrap();
    let done = hold.path().join("done");
    let env = [
        ("FLSIGNAL_URL", format!("http://127.0.0.1:{port}/")),
        ("MODE", "flnode".into()),
        ("FLNODE_ID", pair.ids[1].clone()),
        ("HOLD_UNTIL", done.to_string_lossy().into_owned()),
    ];
    let script = run_script("sealed.mjs", &env, Some(&testbed.a));
    // While the page holds its connection: the node refuses each altered
    // copy, and seals what it sends the page.
    let checks = async {
        let refused = |log: &str| {
            log.matches("does not verify (forged or altered in transit)").count() >= 2
                && (log.contains("replayed setup message") || log.contains("stale setup message"))
        };
        let mut report = String::new();
        for _ in 0..600 {
            report = e2e::flnode::status(pair.dir(1)).unwrap_or_default();
            if refused(&pair.log(1)) && report.contains("test-peer ") && report.contains("setups sealed  (ctl only)") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        std::fs::write(&done, "done").unwrap();
        (refused(&pair.log(1)), report)
    };
    let ((status, out, err), (refused, report)) = tokio::join!(script, checks);
    assert!(status.success(), "browser run failed:\n{out}\n{err}");
    assert!(refused, "the node did not refuse every altered copy: {}", pair.log(1));
    assert!(report.contains("setups sealed  (ctl only)"), "{report}");
    assert!(!relay.truncated());
    let mut keys = page_keys(&out);
    keys.extend(node_keys);
    let summary = check_sealed_recording(&relay.frames(), &keys, &[ADDR_A, ADDR_B], 4).unwrap();
    eprintln!("{summary}");
}

/// Node's WebCrypto checks the page's modules against flproto's vectors
/// (signed and sealed setups), without a browser.
#[tokio::test]
async fn node_webcrypto_reproduces_and_opens_the_sealed_vector() {
    if !browser_available("node_webcrypto_reproduces_and_opens_the_sealed_vector") {
        return;
    }
    let (status, out, err) = run_script("vector.mjs", &[], None).await;
    assert!(status.success(), "{out}\n{err}");
    let result: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(result["ok"], true, "{out}");
    assert_eq!(result["sealed"]["ok"], true, "{out}");
}
