//! A real server on a loopback port, run inside the test process.

// Each test file uses a part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use clap::Parser;
use flsignal::tls::ServerCertificate;
use flsignal::{Config, Server, Shared};
use tokio_util::sync::CancellationToken;

pub struct TestServer {
    pub url: String,
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
    /// With `--tls-cert`: the certificate, to reload.
    pub tls: Option<Arc<ServerCertificate>>,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    /// Starts a server with default limits changed by `args` (flags), on
    /// 127.0.0.1 unless `args` has a `--listen` of its own.
    pub async fn start(args: &[&str]) -> TestServer {
        let mut argv = vec!["flsignal"];
        if !args.contains(&"--listen") {
            argv.extend(["--listen", "127.0.0.1:0"]);
        }
        // Many servers run at once: STUN on a port of its own too.
        if !args.contains(&"--stun-listen") {
            argv.extend(["--stun-listen", "127.0.0.1:0"]);
        }
        argv.extend_from_slice(args);
        let server = Server::bind(Config::parse_from(argv)).await.expect("bind");
        let addr = server.local_addr();
        let shared = server.shared();
        let tls = server.tls_certificate();
        let shutdown = server.shutdown_token();
        let task = tokio::spawn(server.run());
        TestServer {
            url: format!("ws://{addr}/"),
            addr,
            shared,
            tls,
            shutdown,
            task: Some(task),
        }
    }

    pub fn metrics(&self) -> String {
        self.shared.hub.metrics.render()
    }

    /// The value of one metric line, e.g. `flsignal_drops_total{reason="slow_reader"}`.
    pub fn metric(&self, series: &str) -> f64 {
        self.metrics()
            .lines()
            .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
            .unwrap_or(0.0)
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
