//! flsignal's TURN service with another implementation's client: coturn's
//! `turnutils_uclient`, which computes TURN REST API credentials from the
//! shared secret itself (`-W`), relays to coturn's echoing
//! `turnutils_peer` over loopback, through channels and through Send
//! indications, over UDP, TCP and TLS. Needs the Debian package coturn
//! (under `CI=true` its absence is a failure).

use std::process::Stdio;
use std::time::Duration;

use e2e::{http_get, ServerProcess};

const SECRET: &str = "interop secret, long enough to be one";
/// A node ID: the username coturn's client makes is `EXPIRY:<this>`.
const NODE: &str = "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c";
const MESSAGES: usize = 20;

fn available(test: &str) -> bool {
    let missing = ["turnutils_uclient", "turnutils_peer"].into_iter().any(|tool| {
        !std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !missing {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: needs coturn's turnutils_uclient and turnutils_peer, and CI=true forbids skipping");
    }
    eprintln!("SKIPPED {test}: needs coturn's turnutils_uclient and turnutils_peer (Debian package coturn)");
    false
}

/// A free UDP port on loopback (free a moment ago).
fn free_port() -> u16 {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap().port()
}

/// Starts coturn's echoing peer on loopback; it is killed when dropped.
fn echo_peer() -> (tokio::process::Child, u16) {
    let port = free_port();
    let child = tokio::process::Command::new("turnutils_peer")
        .args(["-L", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("turnutils_peer starts");
    (child, port)
}

/// A free TCP port on loopback (free a moment ago).
fn free_tcp_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Whether coturn's client got every message echoed.
fn all_echoed(output: &str) -> bool {
    let echoed = format!("tot_send_msgs={MESSAGES}, tot_recv_msgs={MESSAGES}");
    output.contains(&echoed) && output.contains("Total lost packets 0 ")
}

/// Runs coturn's client against `turn_port` with `secret`, relaying to
/// the echo peer at `peer_port`; its output.
async fn uclient(turn_port: u16, peer_port: u16, secret: &str, extra: &[&str]) -> String {
    let (turn_port, peer_port) = (turn_port.to_string(), peer_port.to_string());
    let messages = MESSAGES.to_string();
    let child = tokio::process::Command::new("turnutils_uclient")
        .args(["-c", "-W", secret, "-u", NODE, "-e", "127.0.0.1", "-r", &peer_port])
        .args(["-p", &turn_port, "-n", &messages, "-m", "1"])
        .args(extra)
        .arg("127.0.0.1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("turnutils_uclient starts");
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("turnutils_uclient finishes")
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test]
async fn coturns_client_relays_through_flsignal_with_the_shared_secret() {
    let test = "coturns_client_relays_through_flsignal_with_the_shared_secret";
    if !available(test) {
        return;
    }
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), SECRET).unwrap();
    let server = ServerProcess::start(
        &[
            "--turn-secret-file",
            file.path().to_str().unwrap(),
            "--turn-allow-peer",
            "127.0.0.1/32",
        ],
        &[],
    )
    .await
    .unwrap();
    let turn_port = server.stun_addr.unwrap().port();
    let (_peer, peer_port) = echo_peer();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Channels (coturn's client numbers them above RFC 8656's 0x4fff), then
    // Send and Data indications.
    for extra in [&[][..], &["-s"]] {
        let output = uclient(turn_port, peer_port, SECRET, extra).await;
        assert!(all_echoed(&output), "{extra:?}:\n{output}");
    }

    let output = uclient(turn_port, peer_port, "another secret, as long as the other", &[]).await;
    assert!(output.contains("Cannot complete Allocation"), "{output}");
    let (_, metrics) = http_get(server.addr, "/metrics").await.unwrap();
    let refused = metrics
        .lines()
        .find_map(|line| line.strip_prefix(r#"flsignal_turn_refusals_total{reason="bad_password"} "#))
        .and_then(|value| value.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(refused >= 1.0, "{metrics}");
}

/// The same over TCP (`--turn-tcp-listen`) and TLS (`--turn-tls-listen`,
/// flsignal's `--tls-cert`): what a browser on a network without UDP
/// uses. The relays themselves are UDP.
#[tokio::test]
async fn coturns_client_relays_over_tcp_and_tls() {
    let test = "coturns_client_relays_over_tcp_and_tls";
    if !available(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    let (cert, key) = e2e::tls::SelfSigned::new().write(dir.path(), "server");
    let (tcp, tls) = (
        format!("127.0.0.1:{}", free_tcp_port()),
        format!("127.0.0.1:{}", free_tcp_port()),
    );
    let server = ServerProcess::start(
        &[
            "--turn-secret-file",
            secret.to_str().unwrap(),
            "--turn-allow-peer",
            "127.0.0.1/32",
            "--turn-tcp-listen",
            &tcp,
            "--turn-tls-listen",
            &tls,
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        &[],
    )
    .await
    .unwrap();
    let (_peer, peer_port) = echo_peer();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let port = |addr: &str| addr.rsplit(':').next().unwrap().parse::<u16>().unwrap();

    let output = uclient(port(&tcp), peer_port, SECRET, &["-t"]).await;
    assert!(all_echoed(&output), "TCP:\n{output}");
    let output = uclient(port(&tls), peer_port, SECRET, &["-t", "-S"]).await;
    assert!(all_echoed(&output), "TLS:\n{output}");
    drop(server);
}
