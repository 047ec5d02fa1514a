//! What the process tests share: a node that joins, a series read from
//! `/metrics`, a wait for the server to close a raw connection.

#![allow(dead_code)] // Each test file uses its own part of this module.

use e2e::{Client, ServerProcess, PATIENCE};
use flproto::announce::AnnounceAuth;
use flproto::identity::NodeKey;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

pub const FLEDGER: AnnounceAuth = AnnounceAuth::Fledger;

pub async fn join(server: &ServerProcess) -> Client {
    Client::join(&server.url(), &NodeKey::generate(), &FLEDGER)
        .await
        .unwrap()
        .0
}

/// The value of one series in `/metrics` text, e.g. `flsignal_connections`
/// or `flsignal_rejected_connections_total{reason="per_ip"}`.
pub fn series(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix(' ')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Reads until the server closes the connection; fails if it does not.
pub async fn expect_closed_by_server(stream: &mut TcpStream) {
    let mut buffer = [0u8; 1024];
    loop {
        match tokio::time::timeout(PATIENCE, stream.read(&mut buffer)).await {
            Err(_) => panic!("the server kept the connection open"),
            Ok(Ok(0)) | Ok(Err(_)) => return,
            // Perhaps a 408 or 400 answer before the close.
            Ok(Ok(_)) => continue,
        }
    }
}
