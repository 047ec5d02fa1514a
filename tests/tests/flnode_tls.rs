//! flnode reaches a signalling server through `wss://`: flsignal behind a
//! TLS terminator (as public servers run), or serving TLS itself
//! (`--tls-cert`), whose self-signed certificate flnode is told to trust
//! with `--signal-ca`. Without it, flnode refuses the certificate and says
//! so in one line. Loopback only: signalling needs no second host.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use e2e::flnode::{cli, status};
use e2e::{binary, ServerProcess, PATIENCE};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

/// Accepts TLS on `listener` and forwards the plain bytes to `upstream`;
/// the task ends with the test.
async fn tls_terminator(listener: TcpListener, upstream: SocketAddr) -> (String, tokio::task::JoinHandle<()>) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()));
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![certified.cert.der().clone()], key)
    .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let task = tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut client) = acceptor.accept(client).await else {
                    return;
                };
                let Ok(mut server) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    });
    (certified.cert.pem(), task)
}

#[tokio::test]
async fn flnode_registers_over_wss_and_refuses_an_unknown_certificate() {
    // Behind a TLS terminator the name nodes dial is the terminator's, so
    // the server is told it with --public-host (as a public one would be).
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tls_addr = listener.local_addr().unwrap();
    let public_host = format!("localhost:{}", tls_addr.port());
    let server = ServerProcess::start(&["--public-host", &public_host], &[])
        .await
        .unwrap();
    let (certificate, _terminator) = tls_terminator(listener, server.addr).await;
    registers_over_wss_only_with_the_ca(tls_addr.port(), certificate).await;
}

#[tokio::test]
async fn flnode_registers_over_wss_with_flsignals_own_tls() {
    let files = tempfile::tempdir().unwrap();
    let certificate = e2e::tls::SelfSigned::new();
    let (cert, key) = certificate.write(files.path(), "server");
    let args = ["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()];
    let server = ServerProcess::start(&args, &[]).await.unwrap();
    registers_over_wss_only_with_the_ca(server.addr.port(), certificate.cert_pem).await;
}

/// flnode against `wss://localhost:PORT`, whose certificate is
/// `certificate` (PEM): refused without `--signal-ca`, registered with it.
async fn registers_over_wss_only_with_the_ca(port: u16, certificate: String) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().to_str().unwrap().to_owned();
    cli(&["init", "--config", &config]).unwrap();
    let ca = dir.path().join("signal-ca.pem");
    std::fs::write(&ca, certificate).unwrap();
    let url = format!("wss://localhost:{port}");
    // A peer that never comes online: this test is about signalling.
    let peer = format!("{}=127.0.0.1:0", "ab".repeat(32));
    let up = |extra: &[&str]| {
        let mut command = tokio::process::Command::new(binary("flnode").unwrap());
        command
            .args(["up", "--config", &config, "--signal", &url, "--peer", &peer])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    };

    // Without the CA: a one-line error about the certificate, exit 1.
    let refused = tokio::time::timeout(PATIENCE, up(&[]).output()).await.unwrap().unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.to_lowercase().contains("certificate"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");

    // With it: registered.
    let mut node = up(&["--signal-ca", ca.to_str().unwrap()]).spawn().unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let report = status(dir.path()).unwrap_or_default();
        if report.contains("signal registered") {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            let _ = node.start_kill();
            let output = node.wait_with_output().await.unwrap();
            panic!(
                "never registered over wss: {report}\nflnode said: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
