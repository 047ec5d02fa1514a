//! A real `flsignal` process, started from this workspace's build.

use std::path::PathBuf;
use std::process::Stdio;

use anyhow::{anyhow, bail, Context};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::{netns, PATIENCE};

/// A running `flsignal` process, killed when dropped.
pub struct ServerProcess {
    pub child: tokio::process::Child,
    pub addr: std::net::SocketAddr,
    /// Its STUN service's UDP address, unless `--stun-listen off`.
    pub stun_addr: Option<std::net::SocketAddr>,
}

impl ServerProcess {
    /// Starts the binary with `args` (plus `--listen 127.0.0.1:0` and
    /// `--stun-listen 127.0.0.1:0` unless given, so that several run at
    /// once) and waits for it to report its addresses.
    pub async fn start(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<ServerProcess> {
        Self::start_in(None, args, env).await
    }

    /// Like [`ServerProcess::start`], inside network namespace `netns`.
    pub async fn start_in(netns: Option<&str>, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<ServerProcess> {
        let mut command = match netns {
            Some(ns) => netns::Testbed::command(ns, &binary("flsignal")?),
            None => tokio::process::Command::new(binary("flsignal")?),
        };
        if !args.contains(&"--listen") && !env.iter().any(|(k, _)| *k == "FLSIGNAL_LISTEN") {
            command.args(["--listen", "127.0.0.1:0"]);
        }
        if !args.contains(&"--stun-listen") && !env.iter().any(|(k, _)| *k == "FLSIGNAL_STUN_LISTEN") {
            command.args(["--stun-listen", "127.0.0.1:0"]);
        }
        command
            .args(args)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().context("cannot start flsignal")?;
        let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
        let mut lines = BufReader::new(stderr).lines();
        let (addr, stun_addr) = tokio::time::timeout(PATIENCE, async {
            while let Some(line) = lines.next_line().await? {
                let field = |name: &str| {
                    let rest = line.split(name).nth(1)?;
                    Some(rest.split_whitespace().next().unwrap_or_default().to_owned())
                };
                if let Some(addr) = field(" listen=") {
                    let stun_addr = field(" stun=").and_then(|stun| stun.parse().ok());
                    return Ok((addr.parse()?, stun_addr));
                }
            }
            bail!("flsignal exited before listening")
        })
        .await
        .context("flsignal did not report its address")??;
        // Keep draining stderr so the server never blocks on logging.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(ServerProcess { child, addr, stun_addr })
    }

    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// Sends a signal to the process (SIGTERM = 15).
    pub fn signal(&self, signal: i32) -> anyhow::Result<()> {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()?;
        anyhow::ensure!(status.success(), "kill failed");
        Ok(())
    }

    /// Open file descriptors of the process (Linux).
    pub fn open_fds(&self) -> anyhow::Result<usize> {
        Ok(std::fs::read_dir(format!("/proc/{}/fd", self.pid()))?.count())
    }
}

/// Path of a binary built from this workspace, next to the running one:
/// `target/<profile>/NAME` for test binaries (in `deps/`) and for binaries.
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .ok_or_else(|| anyhow!("unexpected binary location {exe:?}"))?;
    let profile_dir = if dir.ends_with("deps") {
        dir.parent().unwrap_or(dir)
    } else {
        dir
    };
    let path = profile_dir.join(name);
    anyhow::ensure!(
        path.exists(),
        "{path:?} is missing: build it first with `cargo build -p {name}` (scripts/test.sh does)"
    );
    Ok(path)
}
