//! flnode in managed mode on a test host: `flnode init` and `flnode up
//! --peer ID …`, nothing else; the WireGuard interface is flnode's. The
//! helpers here only observe (`wg show`, `ip link`, ping) or drive flnode's
//! own commands. Shared by `tests/flnode_managed.rs` and `flbench_wg`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use flproto::overlay::OverlayAddresses;
use flproto::NodeId;
use tokio::process::Child;

use crate::netns::{run_in, Testbed};
use crate::{binary, PATIENCE};

/// One managed node: its config directory, ID, interface name, process.
pub struct ManagedNode {
    pub ns: String,
    pub id: NodeId,
    /// The WireGuard interface it manages (unique per test).
    pub interface: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// A program (and its arguments) that runs flnode, such as setpriv.
    wrapper: Vec<String>,
}

/// setpriv as systemd runs flnode with scripts/systemd/flnode.service: of
/// root's powers only CAP_NET_ADMIN, for flnode and what it starts.
pub const ONLY_NET_ADMIN: &[&str] = &[
    "setpriv",
    "--bounding-set",
    "-all,+net_admin",
    "--inh-caps",
    "-all,+net_admin",
    "--ambient-caps",
    "-all,+net_admin",
    "--securebits",
    "+noroot,+noroot_locked,+no_setuid_fixup,+no_setuid_fixup_locked",
    "--",
];

impl ManagedNode {
    /// `flnode init` for a node that will run in namespace `ns` with
    /// interface `interface`.
    pub fn init(ns: &str, interface: &str) -> anyhow::Result<ManagedNode> {
        let dir = tempfile::tempdir()?;
        let out = crate::flnode::cli(&["init", "--config", path_str(dir.path())?])?;
        let id = out.trim().lines().last().context("no node ID")?.parse()?;
        Ok(ManagedNode {
            ns: ns.to_owned(),
            id,
            interface: interface.to_owned(),
            dir,
            child: None,
            wrapper: Vec::new(),
        })
    }

    /// Runs flnode under `wrapper` from now on.
    pub fn wrapped(mut self, wrapper: &[&str]) -> ManagedNode {
        self.wrapper = wrapper.iter().map(|arg| arg.to_string()).collect();
        self
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("flnode.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Its derived overlay addresses.
    pub fn overlay(&self) -> OverlayAddresses {
        OverlayAddresses::of(&self.id)
    }

    /// Its WireGuard public key as `wg` shows it (from `flnode id`).
    pub fn wireguard_key(&self) -> anyhow::Result<String> {
        let out = crate::flnode::cli(&["id", "--config", path_str(self.dir())?])?;
        let line = out.lines().find_map(|line| line.strip_prefix("wireguard-key "));
        Ok(line.context("no wireguard-key line in `flnode id`")?.to_owned())
    }

    /// `flnode up` with the given peers' IDs and `extra` arguments; logs
    /// go to its config directory (`FLNODE_TEST_LOG` sets the filter).
    pub fn start(&mut self, signal: &str, peers: &[NodeId], extra: &[&str]) -> anyhow::Result<()> {
        let dir = path_str(self.dir())?.to_owned();
        let mut command = Testbed::command(&self.ns, &binary("flnode")?);
        command.args([
            "up",
            "--config",
            &dir,
            "--signal",
            signal,
            "--wg-interface",
            &self.interface,
        ]);
        for peer in peers {
            command.args(["--peer", &peer.to_string()]);
        }
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let child = command
            .args(extra)
            .env("RUST_LOG", std::env::var("FLNODE_TEST_LOG").unwrap_or("info".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        Ok(())
    }

    /// Waits until its control socket answers (the interface is set up).
    pub async fn wait_up(&self) -> anyhow::Result<()> {
        crate::flnode::wait_for(self.dir(), "up", |report| report.contains("\nwireguard "))
            .await
            .with_context(|| format!("log: {}", self.log()))
    }

    /// Waits until every one of `peers` shows as connected with a
    /// WireGuard handshake in `flnode status`.
    pub async fn wait_connected(&self, peers: &[NodeId]) -> anyhow::Result<()> {
        crate::flnode::wait_for(self.dir(), "connected with handshakes", |report| {
            peers
                .iter()
                .all(|peer| peer_block(report, peer).is_some_and(connected_with_handshake))
        })
        .await
        .with_context(|| format!("log: {}", self.log()))
    }

    pub fn status(&self) -> anyhow::Result<String> {
        crate::flnode::status(self.dir())
    }

    /// Runs `flnode peers ARGS` against this node's directory.
    pub fn peers(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec!["peers", "--config", path_str(self.dir())?];
        all.extend_from_slice(args);
        crate::flnode::cli(&all)
    }

    /// Sends SIGTERM and waits for the exit (up to three patiences).
    pub async fn terminate(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        let mut child = self.child.take().context("not running")?;
        let pid = child.id().context("no pid")?;
        // SAFETY: a plain kill(2) of our own child.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        Ok(tokio::time::timeout(PATIENCE * 3, child.wait()).await??)
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| child.try_wait().ok().flatten().is_none())
    }

    /// Whether its interface exists in its namespace.
    pub fn interface_exists(&self) -> bool {
        run_in(&self.ns, &["ip", "link", "show", &self.interface]).is_ok()
    }

    /// The public keys `wg show` lists as the interface's peers.
    pub fn wireguard_peers(&self) -> anyhow::Result<Vec<String>> {
        let out = run_in(&self.ns, &["wg", "show", &self.interface, "peers"])?;
        Ok(out.split_whitespace().map(str::to_owned).collect())
    }
}

impl Drop for ManagedNode {
    fn drop(&mut self) {
        // The child is killed on drop; its wireguard-go follows it (flnode
        // starts it with a parent-death signal). A killed wireguard-go
        // leaves its control socket.
        drop(self.child.take());
        let _ = std::fs::remove_file(format!("/var/run/wireguard/{}.sock", self.interface));
    }
}

fn path_str(path: &Path) -> anyhow::Result<&str> {
    path.to_str().context("non-UTF-8 path")
}

/// The lines of `flnode status` about `peer`: its `peer` line and the
/// indented lines under it.
pub fn peer_block<'a>(report: &'a str, peer: &NodeId) -> Option<&'a str> {
    let start = report.find(&format!("peer {peer} "))?;
    let rest = &report[start..];
    let end = rest[1..].find("\npeer ").map_or(rest.len(), |at| at + 1);
    Some(&rest[..end])
}

/// A peer block that shows the data path up and a WireGuard handshake.
pub fn connected_with_handshake(block: &str) -> bool {
    block.split_whitespace().nth(2) == Some("connected")
        && block.contains("wireguard handshake ")
        && !block.contains("wireguard handshake never")
}

/// Pings `address` from `ns` until three pings in a row answer, for up to
/// 30 s (the first may wait for the WireGuard handshake).
pub async fn ping_until(ns: &str, address: &str) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match run_in(ns, &["ping", "-c", "3", "-i", "0.2", "-W", "1", address]) {
            Ok(_) => return Ok(()),
            Err(error) if tokio::time::Instant::now() > deadline => return Err(error),
            Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
}

/// Whether one ping from `ns` to `address` answers within a second.
pub fn ping_once(ns: &str, address: &str) -> bool {
    run_in(ns, &["ping", "-c", "1", "-W", "1", address]).is_ok()
}

/// An iperf3 TCP run from `client` to `server_address` (on `server`) for
/// `seconds`: the receiver's throughput in Mbit/s.
pub async fn iperf3_mbits(client: &str, server: &str, server_address: &str, seconds: u32) -> anyhow::Result<f64> {
    let _server = tokio::process::Command::new("ip")
        .args(["netns", "exec", server, "iperf3", "-s", "-1", "-B", server_address])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let out = run_in(
        client,
        &["iperf3", "-c", server_address, "-t", &seconds.to_string(), "-f", "m"],
    )?;
    let line = out.lines().rfind(|line| line.contains("receiver")).unwrap_or_default();
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| *w == "Mbits/sec")
        .context("no Mbits/sec in iperf3's output")?;
    if at == 0 {
        bail!("no number before Mbits/sec: {line}");
    }
    Ok(words[at - 1].parse()?)
}
