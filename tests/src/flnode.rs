//! flnode processes on a [`Testbed`]: flsignal on host a, one flnode on
//! each host, each peered with the other. Shared by the namespace tests and
//! the `flbench_wg` benchmark.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::process::Child;

use crate::netns::{Testbed, ADDR_A};
use crate::{binary, ServerProcess, PATIENCE};

/// The local WireGuard's address on each host.
pub const WIREGUARD: &str = "127.0.0.1:51820";
/// flnode's port for the other host: the local WireGuard's peer endpoint.
pub const PEER_PORT: &str = "127.0.0.1:51900";

/// Runs an flnode command to completion and returns its output.
pub fn cli(args: &[&str]) -> anyhow::Result<String> {
    let output = std::process::Command::new(binary("flnode")?).args(args).output()?;
    if !output.status.success() {
        bail!("flnode {args:?}: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8(output.stdout)?)
}

/// `flnode status` for the node in `dir`.
pub fn status(dir: &Path) -> anyhow::Result<String> {
    cli(&["status", "--config", dir.to_str().context("path")?])
}

/// True if a `flnode status` report shows the peer's data path up.
pub fn peer_connected(report: &str) -> bool {
    report
        .lines()
        .any(|line| line.starts_with("peer ") && line.split_whitespace().nth(2) == Some("connected"))
}

/// Polls `flnode status` until `ready` holds, for up to three patiences.
pub async fn wait_for(dir: &Path, what: &str, ready: impl Fn(&str) -> bool) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + PATIENCE * 3;
    loop {
        let report = status(dir).unwrap_or_default();
        if ready(&report) {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("never {what}: {report}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Signalling server and two peered nodes, killed when dropped.
pub struct NodePair {
    pub server: Option<ServerProcess>,
    /// flsignal's port on host a.
    pub port: u16,
    /// The URL each node dials (flsignal, or a relay in front of it).
    pub signal: [String; 2],
    pub nodes: [Option<Child>; 2],
    pub ids: [String; 2],
    dirs: [tempfile::TempDir; 2],
    namespaces: [String; 2],
    /// More `flnode up` arguments, the same for both nodes.
    extra_args: Vec<String>,
}

impl NodePair {
    pub async fn start(testbed: &Testbed) -> anyhow::Result<NodePair> {
        Self::start_with_args(testbed, &[]).await
    }

    /// [`NodePair::start`] with `extra_args` for both nodes.
    pub async fn start_with_args(testbed: &Testbed, extra_args: &[&str]) -> anyhow::Result<NodePair> {
        let server = ServerProcess::start_in(Some(&testbed.a), &["--listen", "0.0.0.0:0"], &[]).await?;
        // Host a reaches flsignal on its own loopback, host b over the link.
        let port = server.addr.port();
        let signal = [format!("ws://127.0.0.1:{port}"), format!("ws://{ADDR_A}:{port}")];
        Self::start_between([&testbed.a, &testbed.b], server, signal, extra_args).await
    }

    /// Two nodes dialling `signal` (host a's URL, host b's URL), with
    /// `server` (running on host a) behind it.
    pub async fn start_with(testbed: &Testbed, server: ServerProcess, signal: [String; 2]) -> anyhow::Result<NodePair> {
        Self::start_between([&testbed.a, &testbed.b], server, signal, &[]).await
    }

    /// Two nodes in namespaces `[a, b]` dialling `signal` (a's URL, b's
    /// URL), each started with `extra_args` too; `server` runs wherever.
    pub async fn start_between(
        namespaces: [&str; 2],
        server: ServerProcess,
        signal: [String; 2],
        extra_args: &[&str],
    ) -> anyhow::Result<NodePair> {
        let dirs = [tempfile::tempdir()?, tempfile::tempdir()?];
        let mut ids = Vec::new();
        for dir in &dirs {
            let out = cli(&["init", "--config", dir.path().to_str().context("path")?])?;
            ids.push(out.trim().lines().last().context("no node ID")?.to_owned());
        }
        let mut pair = NodePair {
            port: server.addr.port(),
            signal,
            server: Some(server),
            nodes: [None, None],
            ids: [ids[0].clone(), ids[1].clone()],
            dirs,
            namespaces: namespaces.map(str::to_owned),
            extra_args: extra_args.iter().map(|arg| arg.to_string()).collect(),
        };
        pair.start_node(0)?;
        pair.start_node(1)?;
        Ok(pair)
    }

    pub fn dir(&self, host: usize) -> &Path {
        self.dirs[host].path()
    }

    /// Where the node on `host` logs (warnings and errors).
    pub fn log_path(&self, host: usize) -> std::path::PathBuf {
        self.dirs[host].path().join("flnode.log")
    }

    pub fn log(&self, host: usize) -> String {
        std::fs::read_to_string(self.log_path(host)).unwrap_or_default()
    }

    /// Replaces the extra `flnode up` arguments for nodes started from now.
    pub fn set_extra_args(&mut self, extra_args: &[&str]) {
        self.extra_args = extra_args.iter().map(|arg| arg.to_string()).collect();
    }

    /// (Re)starts the node on host 0 (a) or 1 (b).
    pub fn start_node(&mut self, host: usize) -> anyhow::Result<()> {
        let signal = self.signal[host].clone();
        let peer = format!("{}={PEER_PORT}", self.ids[1 - host]);
        let dir = self.dirs[host].path().to_str().context("path")?.to_owned();
        let child = Testbed::command(&self.namespaces[host], &binary("flnode")?)
            .args([
                "up",
                "--config",
                &dir,
                "--signal",
                &signal,
                "--wireguard",
                WIREGUARD,
                "--peer",
                &peer,
            ])
            .args(&self.extra_args)
            // FLNODE_TEST_LOG=info (say) makes the nodes' logs in their
            // config directories more talkative when a test needs a look.
            .env("RUST_LOG", std::env::var("FLNODE_TEST_LOG").unwrap_or("warn".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::options()
                    .create(true)
                    .append(true)
                    .open(self.log_path(host))?,
            )
            .spawn()?;
        self.nodes[host] = Some(child);
        Ok(())
    }

    /// Kills the node on `host` and waits for it to be gone.
    pub async fn kill_node(&mut self, host: usize) -> anyhow::Result<()> {
        if let Some(mut child) = self.nodes[host].take() {
            child.kill().await?;
        }
        Ok(())
    }

    /// Waits until both nodes have bound their ports (their control
    /// sockets exist once the WireGuard-facing sockets are bound).
    pub async fn wait_started(&self) -> anyhow::Result<()> {
        for host in 0..2 {
            let deadline = tokio::time::Instant::now() + PATIENCE;
            while !self.dir(host).join("flnode.sock").exists() {
                if tokio::time::Instant::now() > deadline {
                    bail!("flnode on host {host} did not start");
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        Ok(())
    }

    pub async fn wait_connected(&self, host: usize) -> anyhow::Result<()> {
        wait_for(self.dir(host), "connected", peer_connected).await
    }

    pub async fn wait_registered(&self, host: usize) -> anyhow::Result<()> {
        wait_for(self.dir(host), "registered", |report| {
            report.contains("signal registered")
        })
        .await
    }
}
