//! The flsignal binary with TLS on its own listener: its files given by
//! flags or environment, checked at startup, and read again on SIGHUP.

use std::path::Path;
use std::time::Duration;

use e2e::tls::{connect_wss, presented_certificate, trusting, SelfSigned};
use e2e::{binary, Client, ServerProcess, PATIENCE};
use flproto::identity::NodeKey;
use flproto::message::NodeMessage;

const SIGHUP: i32 = 1;

/// Replaces the files at once, as a certificate renewal tool does.
fn install(certificate: &SelfSigned, dir: &Path) {
    let (cert, key) = certificate.write(dir, "incoming");
    std::fs::rename(key, dir.join("server.key")).unwrap();
    std::fs::rename(cert, dir.join("server.crt")).unwrap();
}

#[tokio::test]
async fn sighup_reloads_the_certificate_for_new_connections_and_open_ones_stay() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (SelfSigned::new(), SelfSigned::new());
    install(&old, dir.path());
    let cert = dir.path().join("server.crt");
    let key = dir.path().join("server.key");
    let env = [
        ("FLSIGNAL_TLS_CERT", cert.to_str().unwrap()),
        ("FLSIGNAL_TLS_KEY", key.to_str().unwrap()),
    ];
    let server = ServerProcess::start(&[], &env).await.unwrap();
    let port = server.addr.port();
    // A fresh client configuration per connection: a shared one would
    // resume the earlier TLS session, which presents no certificate anew.
    let both = || trusting(&[&old, &new]);
    let node = NodeKey::generate();
    let mut open = connect_wss(port, both()).await.unwrap();
    open.announce(&node, &Client::bound_auth(&open.url)).await.unwrap();
    open.expect_registered().await.unwrap();
    assert_eq!(presented_certificate(&open).unwrap(), old.der);

    install(&new, dir.path());
    server.signal(SIGHUP).unwrap();
    // The signal is handled in the background: new connections switch soon.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let fresh = connect_wss(port, both()).await.unwrap();
        if presented_certificate(&fresh).unwrap() == new.der {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still the old certificate after SIGHUP"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    open.send(&NodeMessage::ListIDsRequest).await.unwrap();
    assert_eq!(open.expect_list().await.unwrap(), vec![]);

    // A broken file: the server goes on with the certificate it has.
    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nbroken\n").unwrap();
    server.signal(SIGHUP).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = connect_wss(port, trusting(&[&new])).await.unwrap();
    assert_eq!(presented_certificate(&after).unwrap(), new.der);
    open.send(&NodeMessage::ListIDsRequest).await.unwrap();
    assert_eq!(open.expect_list().await.unwrap(), vec![]);
}

#[tokio::test]
async fn sighup_without_tls_leaves_the_server_running() {
    let server = ServerProcess::start(&[], &[]).await.unwrap();
    server.signal(SIGHUP).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    Client::connect(&server.url()).await.unwrap();
}

#[tokio::test]
async fn unusable_tls_files_are_a_one_line_error_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = SelfSigned::new().write(dir.path(), "a");
    let (_, other_key) = SelfSigned::new().write(dir.path(), "b");
    let missing = dir.path().join("missing.pem");
    let text = |path: &Path| path.to_str().unwrap().to_owned();
    let cases = [
        (text(&missing), text(&key), "--tls-cert"),
        (text(&cert), text(&missing), "--tls-key"),
        (text(&cert), text(&cert), "no private key"),
        (text(&cert), text(&other_key), "does not fit"),
    ];
    for (cert, key, expected) in cases {
        let args = [
            "--listen",
            "127.0.0.1:0",
            "--stun-listen",
            "off",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ];
        let output = tokio::process::Command::new(binary("flsignal").unwrap())
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null())
            .output();
        let output = tokio::time::timeout(PATIENCE, output).await.unwrap().unwrap();
        assert!(!output.status.success(), "{args:?} started");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let errors: Vec<&str> = stderr.lines().filter(|line| line.starts_with("flsignal: ")).collect();
        assert_eq!(errors.len(), 1, "{stderr}");
        assert!(errors[0].contains(expected), "{expected:?} missing: {stderr}");
    }
}
