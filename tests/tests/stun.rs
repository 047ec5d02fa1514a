//! flsignal's STUN service from another process: a real UDP client asks
//! for its mapped address, hostile datagrams get silence and do not stop
//! the service, and `/metrics` counts both.

use std::net::SocketAddr;
use std::time::Duration;

use e2e::stun_client::{binding_request, mapped_address};
use e2e::{binary, http_get, ServerProcess, PATIENCE};
use tokio::net::UdpSocket;

/// How long silence must last to count as "no answer".
const SILENCE: Duration = Duration::from_millis(300);

fn series(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.trim().parse().ok()))
        .unwrap_or(0.0)
}

async fn client() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

/// Fails if anything arrives on `socket` within [`SILENCE`].
async fn expect_silence(socket: &UdpSocket, what: &str) {
    let mut buffer = [0u8; 1500];
    let received = tokio::time::timeout(SILENCE, socket.recv_from(&mut buffer)).await;
    assert!(received.is_err(), "{what} was answered: {received:?}");
}

#[tokio::test]
async fn binding_requests_get_the_clients_address_and_garbage_gets_nothing() {
    let server = ServerProcess::start(&[], &[]).await.unwrap();
    let stun = server.stun_addr.expect("flsignal reports its STUN address");
    let socket = client().await;
    let mine = socket.local_addr().unwrap();
    assert_eq!(mapped_address(&socket, stun, PATIENCE).await.unwrap(), Some(mine));

    let (_, request) = binding_request().unwrap();
    let mut oversized = request.clone();
    oversized.resize(4000, 0);
    oversized[2..4].copy_from_slice(&((4000 - 20) as u16).to_be_bytes());
    let mut response = request.clone();
    response[0..2].copy_from_slice(&0x0101u16.to_be_bytes());
    let garbage: Vec<(&str, Vec<u8>)> = vec![
        ("an empty datagram", Vec::new()),
        ("HTTP", b"GET / HTTP/1.1\r\n\r\n".to_vec()),
        ("a truncated request", request[..12].to_vec()),
        ("a request with trailing bytes", [&request[..], &[1, 2, 3, 4]].concat()),
        ("an oversized request", oversized),
        ("a Binding success response", response),
        ("random bytes", (0..200u32).map(|i| (i * 37 + 11) as u8).collect()),
    ];
    for (what, bytes) in &garbage {
        socket.send_to(bytes, stun).await.unwrap();
        expect_silence(&socket, what).await;
    }
    // Still serving, for this client and another.
    assert_eq!(mapped_address(&socket, stun, PATIENCE).await.unwrap(), Some(mine));
    let other = client().await;
    let other_addr = other.local_addr().unwrap();
    assert_eq!(mapped_address(&other, stun, PATIENCE).await.unwrap(), Some(other_addr));

    let (_, metrics) = http_get(server.addr, "/metrics").await.unwrap();
    assert_eq!(series(&metrics, "flsignal_stun_answered_total"), 3.0, "{metrics}");
    let ignored: f64 = ["not_stun", "malformed", "too_large", "not_binding_request"]
        .iter()
        .map(|reason| series(&metrics, &format!("flsignal_stun_ignored_total{{reason=\"{reason}\"}}")))
        .sum();
    assert_eq!(ignored, garbage.len() as f64, "{metrics}");
}

#[tokio::test]
async fn one_source_is_rate_limited() {
    let server = ServerProcess::start(&["--stun-rate-burst", "3", "--stun-rate-per-second", "1"], &[])
        .await
        .unwrap();
    let stun = server.stun_addr.unwrap();
    let socket = client().await;
    let mut answered = 0;
    for _ in 0..5 {
        if mapped_address(&socket, stun, SILENCE).await.unwrap().is_some() {
            answered += 1;
        }
    }
    assert_eq!(answered, 3);
    let (_, metrics) = http_get(server.addr, "/metrics").await.unwrap();
    assert_eq!(
        series(&metrics, "flsignal_stun_ignored_total{reason=\"rate_limited\"}"),
        2.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn the_global_budget_caps_replies_to_all_sources_together() {
    // Each source has budget to spare; together they have three replies
    // (and a slow refill), as under a flood with spoofed sources.
    let args = ["--stun-global-burst", "3", "--stun-global-rate-per-second", "1"];
    let server = ServerProcess::start(&args, &[]).await.unwrap();
    let stun = server.stun_addr.unwrap();
    let mut answered = 0;
    let sources = 8;
    for last in 1..=sources {
        // 127.0.0.1 to 127.0.0.8: eight loopback sources.
        let socket = UdpSocket::bind(format!("127.0.0.{last}:0")).await.unwrap();
        if mapped_address(&socket, stun, SILENCE).await.unwrap().is_some() {
            answered += 1;
        }
    }
    let (_, metrics) = http_get(server.addr, "/metrics").await.unwrap();
    let refused = series(&metrics, "flsignal_stun_ignored_total{reason=\"global_rate_limited\"}");
    assert!(answered >= 3, "the burst is answered: {answered}");
    assert!(refused >= 1.0, "{metrics}");
    assert_eq!(f64::from(answered) + refused, f64::from(sources), "{metrics}");
    assert_eq!(
        series(&metrics, "flsignal_stun_ignored_total{reason=\"rate_limited\"}"),
        0.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn stun_can_be_turned_off() {
    let server = ServerProcess::start(&["--stun-listen", "off"], &[]).await.unwrap();
    assert_eq!(server.stun_addr, None);
}

#[tokio::test]
async fn a_stun_port_in_use_is_a_one_line_error() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = taken.local_addr().unwrap();
    let output = tokio::process::Command::new(binary("flsignal").unwrap())
        .args(["--listen", "127.0.0.1:0", "--stun-listen", &addr.to_string()])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    // Log lines may come first; the error is the last line, and one line.
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.trim().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("flsignal: cannot listen for STUN") && last.contains("--stun-listen"),
        "{stderr}"
    );
}
