//! The browser page in a real browser: Debian's chromium, headless, driven
//! by `tests/browser/run.mjs` (playwright-core) against a real flsignal.
//!
//! Two pages with different keys join, connect to each other over WebRTC
//! and exchange messages both ways; the page's setup signatures must equal
//! the ones flproto makes; a screenshot of each page is left in
//! `tests/browser/artifacts/`. Without chromium, node or the npm packages
//! the test skips with a message, except under `CI=true`, where it fails.

use e2e::browser::{browser_available, browser_dir, run_script};
use e2e::flnode::NodePair;
use e2e::netns::{namespaces_available, Testbed};
use e2e::ServerProcess;
use flproto::identity::NodeKey;
use flproto::message::{PeerInfo, SetupMessage};
use flproto::setup_auth::{SessionId, SetupSigner};

/// The signature of `test_vector` in `shared/src/setup_auth_tests.rs`,
/// computed here by flproto: the page must produce the same one.
fn setup_vector_signature() -> String {
    let (a, b) = (NodeKey::from_seed([1; 32]), NodeKey::from_seed([2; 32]));
    let (id_init, id_follow) = if a.id() < b.id() {
        (a.id(), b.id())
    } else {
        (b.id(), a.id())
    };
    let mut signer = SetupSigner::new(SessionId([0x11; 8]));
    let mut attempt = signer.next_generation(1_763_800_000_000);
    let info = PeerInfo {
        id_init,
        id_follow,
        message: SetupMessage::IceCandidate("candidate:1 1 udp 2130706431 10.0.0.1 5000 typ host".into()),
        auth: None,
    };
    // The vector is the third message (seq 2) of its attempt.
    let mut signed = info.clone();
    for _ in 0..3 {
        signed = signer.sign(&a, &mut attempt, info.clone());
    }
    let auth = signed.auth.expect("signed");
    assert_eq!(auth.seq, 2);
    serde_json::to_value(auth.signature)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .expect("hex signature")
}

#[tokio::test]
async fn two_browser_pages_connect_and_talk() {
    if !browser_available("two_browser_pages_connect_and_talk") {
        return;
    }
    let server = ServerProcess::start(&[], &[]).await.unwrap();
    let url = format!("http://{}/", server.addr);
    let (status, out, err) = run_script(
        "run.mjs",
        &[
            ("FLSIGNAL_URL", url),
            ("EXPECTED_SETUP_SIGNATURE", setup_vector_signature()),
        ],
        None,
    )
    .await;
    assert!(status.success(), "browser run failed:\n{out}\n{err}");
    assert!(out.contains("messages went both ways"), "{out}");
    assert!(out.contains("reproduces flproto's setup signature"), "{out}");
    assert!(browser_dir().join("artifacts/browser-peer-a.png").exists());
}

/// flsignal serving TLS itself: the page loads over https and registers
/// over wss:// on the same port (its certificate is self-signed, so
/// chromium is told to accept it).
#[tokio::test]
async fn the_page_registers_over_wss_when_served_over_https() {
    if !browser_available("the_page_registers_over_wss_when_served_over_https") {
        return;
    }
    let files = tempfile::tempdir().unwrap();
    let (cert, key) = e2e::tls::SelfSigned::new().write(files.path(), "server");
    let args = ["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()];
    let server = ServerProcess::start(&args, &[]).await.unwrap();
    let url = format!("https://{}/", server.addr);
    let (status, out, err) = run_script("https.mjs", &[("FLSIGNAL_URL", url)], None).await;
    assert!(status.success(), "browser run failed:\n{out}\n{err}");
    assert!(out.contains("registered over wss://"), "{out}");
}

/// A browser page connects to an flnode in another network namespace. The
/// node is configured for WireGuard with another node only and started
/// with `--test-peers 1`, so it takes the page as a test peer: its messages come back as echoes, pings are
/// answered on `ctl`, the throughput test's data on the page's `wg` channel
/// is counted and its `bulkend` answered, and `flnode status` lists it as
/// a test peer, apart from the WireGuard peers.
#[tokio::test]
async fn a_browser_page_gets_echo_replies_from_an_flnode() {
    let test = "a_browser_page_gets_echo_replies_from_an_flnode";
    if !browser_available(test) || !namespaces_available(test) {
        return;
    }
    let testbed = Testbed::new().unwrap();
    // Test peers are off by default: one slot, and a budget that fits one
    // throughput test of the page (4 MiB warm-up and 24 MiB, over its `wg`
    // channel) but not two.
    let budget = (36 * 1024 * 1024).to_string();
    let pair = NodePair::start_with_args(&testbed, &["--test-peers", "1", "--test-peer-budget", &budget])
        .await
        .unwrap();
    pair.wait_registered(1).await.unwrap();
    // Chromium runs on host a, beside flsignal: the page is at 127.0.0.1
    // there (WebCrypto needs a secure context, which localhost is), and
    // its host candidate is a's address on the link to b.
    let url = format!("http://127.0.0.1:{}/", pair.port);
    let (status, out, err) = run_script(
        "flnode.mjs",
        &[("FLSIGNAL_URL", url), ("FLNODE_ID", pair.ids[1].clone())],
        Some(&testbed.a),
    )
    .await;
    assert!(status.success(), "browser run failed:\n{out}\n{err}");
    assert!(out.contains("the flnode echoed the message"), "{out}");
    assert!(out.contains("ran out the node's budget"), "{out}");
    let report = e2e::flnode::status(pair.dir(1)).unwrap();
    assert!(
        report.contains("test-peer ") && report.contains("test-peer slots 1/1"),
        "the node does not list the page: {report}"
    );
    // The WireGuard peer line still names node a, not the page.
    assert!(report.contains(&format!("peer {} ", pair.ids[0])), "{report}");
    assert!(browser_dir().join("artifacts/browser-flnode.png").exists());
}

/// `GET path`: the response head (lower case) and the body.
async fn get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    let (head, body) = e2e::http_get_head(addr, path).await.unwrap();
    (head.to_ascii_lowercase(), body)
}

#[tokio::test]
async fn the_page_and_its_modules_are_served_with_a_strict_policy() {
    let server = ServerProcess::start(&[], &[]).await.unwrap();
    let (head, body) = get(server.addr, "/").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-type: text/html; charset=utf-8"), "{head}");
    assert!(
        head.contains("content-security-policy: default-src 'none'; script-src 'self'"),
        "{head}"
    );
    assert!(head.contains("connect-src 'self' ws: wss:"), "{head}");
    assert!(body.contains("/web/app.js"), "{body}");

    for (path, content_type) in [
        ("/web/app.js", "text/javascript"),
        ("/web/wire.js", "text/javascript"),
        ("/web/style.css", "text/css"),
        ("/web/icon.svg", "image/svg+xml"),
    ] {
        let (head, _) = get(server.addr, path).await;
        assert!(head.starts_with("http/1.1 200"), "{path}: {head}");
        assert!(
            head.contains(&format!("content-type: {content_type}")),
            "{path}: {head}"
        );
        assert!(head.contains("x-content-type-options: nosniff"), "{path}: {head}");
    }
    for path in ["/web/missing.js", "/web/../Cargo.toml", "/web/"] {
        let (head, _) = get(server.addr, path).await;
        assert!(head.starts_with("http/1.1 404"), "{path}: {head}");
    }
}
