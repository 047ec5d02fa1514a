//! The browser page in a real browser: Debian's chromium, headless, driven
//! by `tests/browser/run.mjs` (playwright-core) against a real flsignal.
//!
//! Two pages with different keys join, connect to each other over WebRTC
//! and exchange messages both ways; the page's setup signatures must equal
//! the ones flproto makes; a screenshot of each page is left in
//! `tests/browser/artifacts/`. Without chromium, node or the npm packages
//! the test skips with a message, except under `CI=true`, where it fails.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use e2e::{ServerProcess, PATIENCE};
use flproto::identity::NodeKey;
use flproto::message::{PeerInfo, SetupMessage};
use flproto::setup_auth::{SessionId, SetupSigner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The whole browser run: launching chromium, two pages, connection,
/// messages and an 8 MiB throughput test.
const BROWSER_RUN_LIMIT: Duration = Duration::from_secs(180);

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// Whether chromium, node and `npm ci --prefix tests/browser` are there.
fn browser_available(test: &str) -> bool {
    let node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let playwright = browser_dir().join("node_modules/playwright-core").exists();
    let missing: Vec<&str> = [
        (!chromium().exists()).then_some("chromium"),
        (!node).then_some("node"),
        (!playwright).then_some("playwright-core (npm ci --prefix tests/browser)"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: needs {}, and CI=true forbids skipping", missing.join(", "));
    }
    eprintln!(
        "{test}: SKIPPED, missing {} (scripts/test.sh installs them)",
        missing.join(", ")
    );
    false
}

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
    let mut child = tokio::process::Command::new("node")
        .arg(browser_dir().join("run.mjs"))
        .env("FLSIGNAL_URL", &url)
        .env("EXPECTED_SETUP_SIGNATURE", setup_vector_signature())
        .env("CHROMIUM", chromium())
        .env("ARTIFACTS", browser_dir().join("artifacts"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so chromium goes with it on a timeout.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .expect("start node");
    let pgid = child.id().expect("pid") as i32;
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let run = async {
        let (mut out, mut err) = (String::new(), String::new());
        let _ = tokio::join!(stdout.read_to_string(&mut out), stderr.read_to_string(&mut err));
        (child.wait().await, out, err)
    };
    let Ok((status, out, err)) = tokio::time::timeout(BROWSER_RUN_LIMIT, run).await else {
        // SAFETY: kill(2) on the group this test created.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        panic!("the browser run took longer than {BROWSER_RUN_LIMIT:?}");
    };
    println!("{out}");
    eprintln!("{err}");
    assert!(status.unwrap().success(), "browser run failed:\n{out}\n{err}");
    assert!(out.contains("messages went both ways"), "{out}");
    assert!(out.contains("reproduces flproto's setup signature"), "{out}");
    assert!(browser_dir().join("artifacts/browser-peer-a.png").exists());
}

/// Raw `GET path`: the response head (lower case) and the body.
async fn get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(PATIENCE, stream.read_to_string(&mut response))
        .await
        .unwrap()
        .unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (head.to_ascii_lowercase(), body.to_owned())
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
