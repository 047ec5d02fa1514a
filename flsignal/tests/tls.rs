//! TLS on flsignal's own listener (`--tls-cert`, `--tls-key`), with real
//! `wss://` clients that trust a certificate made for the test.

mod common;

use std::time::Duration;

use common::TestServer;
use e2e::tls::{connect_wss, presented_certificate, trusting, SelfSigned};
use e2e::{Client, PATIENCE};
use flproto::identity::NodeKey;
use flproto::message::NodeMessage;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A server with `certificate` written into `dir` as its TLS files.
async fn tls_server(dir: &std::path::Path, certificate: &SelfSigned, extra: &[&str]) -> TestServer {
    let (cert, key) = certificate.write(dir, "server");
    let mut args = vec!["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()];
    args.extend_from_slice(extra);
    TestServer::start(&args).await
}

#[tokio::test]
async fn a_wss_client_that_trusts_the_certificate_completes_a_bound_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let certificate = SelfSigned::new();
    let server = tls_server(dir.path(), &certificate, &[]).await;
    let mut client = connect_wss(server.addr.port(), trusting(&[&certificate]))
        .await
        .unwrap();
    let key = NodeKey::generate();
    let auth = Client::bound_auth(&client.url);
    client.announce(&key, &auth).await.unwrap();
    assert_eq!(client.expect_registered().await.unwrap(), vec![]);
    assert_eq!(presented_certificate(&client).unwrap(), certificate.der);
    assert_eq!(server.metric("flsignal_handshakes_total{reason=\"ok\"}"), 1.0);
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = tls_server(dir.path(), &SelfSigned::new(), &[]).await;
    let stranger = SelfSigned::new();
    assert!(connect_wss(server.addr.port(), trusting(&[&stranger])).await.is_err());
}

#[tokio::test]
async fn a_reloaded_certificate_serves_new_connections_while_open_ones_stay() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (SelfSigned::new(), SelfSigned::new());
    let server = tls_server(dir.path(), &old, &[]).await;
    let port = server.addr.port();
    let key = NodeKey::generate();
    let mut open = connect_wss(port, trusting(&[&old])).await.unwrap();
    open.announce(&key, &Client::bound_auth(&open.url)).await.unwrap();
    open.expect_registered().await.unwrap();

    new.write(dir.path(), "server");
    server.tls.as_ref().unwrap().reload().unwrap();
    let fresh = connect_wss(port, trusting(&[&old, &new])).await.unwrap();
    assert_eq!(presented_certificate(&fresh).unwrap(), new.der);

    // The open connection keeps its session and is still served (a list
    // without itself).
    open.send(&NodeMessage::ListIDsRequest).await.unwrap();
    assert_eq!(open.expect_list().await.unwrap(), vec![]);
    assert_eq!(presented_certificate(&open).unwrap(), old.der);

    // A broken file on reload: the new certificate stays in use.
    std::fs::write(dir.path().join("server.crt"), "not a certificate").unwrap();
    assert!(server.tls.as_ref().unwrap().reload().is_err());
    let after = connect_wss(port, trusting(&[&new])).await.unwrap();
    assert_eq!(presented_certificate(&after).unwrap(), new.der);
}

#[tokio::test]
async fn the_page_is_served_over_https_on_the_same_port() {
    let dir = tempfile::tempdir().unwrap();
    let certificate = SelfSigned::new();
    let server = tls_server(dir.path(), &certificate, &[]).await;
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(trusting(&[&certificate]))
        .connect(name, tcp)
        .await
        .unwrap();
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    // The server closes without close_notify once answered: read until then.
    let _ = tokio::time::timeout(PATIENCE, tls.read_to_end(&mut response))
        .await
        .unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("/web/app.js"), "{response}");
}

#[tokio::test]
async fn a_stalled_handshake_blocks_nobody_and_ends_at_the_http_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let certificate = SelfSigned::new();
    let server = tls_server(dir.path(), &certificate, &["--http-timeout", "1s"]).await;
    // Connected, but never says a word of TLS.
    let mut stalled = TcpStream::connect(server.addr).await.unwrap();
    let client = connect_wss(server.addr.port(), trusting(&[&certificate])).await;
    assert!(client.is_ok(), "a stalled handshake held up another client");
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(PATIENCE, stalled.read(&mut byte)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    assert_eq!(server.metric("flsignal_closes_total{reason=\"http_timeout\"}"), 1.0);
}

#[tokio::test]
async fn plain_http_on_a_tls_port_fails_the_handshake_and_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let server = tls_server(dir.path(), &SelfSigned::new(), &[]).await;
    assert!(Client::connect(&server.url).await.is_err());
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while server.metric("flsignal_closes_total{reason=\"tls_handshake\"}") < 1.0 {
        assert!(tokio::time::Instant::now() < deadline, "{}", server.metrics());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
