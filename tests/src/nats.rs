//! A real `nats-server` (Debian's package) on a free loopback port, for
//! cluster tests. Killed when dropped; restartable on the same port.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::PATIENCE;

/// Where Debian's `nats-server` package puts the binary, and `PATH`.
fn find_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").into_iter().flat_map(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nats-server"))
            .collect::<Vec<_>>()
    });
    [
        PathBuf::from("/usr/sbin/nats-server"),
        PathBuf::from("/usr/bin/nats-server"),
    ]
    .into_iter()
    .chain(on_path)
    .find(|path| path.is_file())
}

/// The `nats-server` binary, or `None` with a message when it is missing
/// (the test then skips). Under `CI=true` a missing server is a failure.
pub fn binary_or_skip(test: &str) -> Option<PathBuf> {
    if let Some(path) = find_binary() {
        return Some(path);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: needs nats-server (apt-get install nats-server), and CI=true forbids skipping");
    }
    eprintln!("{test}: SKIPPED: nats-server not found (apt-get install nats-server; scripts/test.sh does)");
    None
}

/// A running `nats-server`.
pub struct NatsServer {
    binary: PathBuf,
    pub addr: SocketAddr,
    child: Option<tokio::process::Child>,
    /// Its configuration file, if it has one (kept for restarts).
    config: Option<tempfile::TempPath>,
    /// The network namespace it runs in, if not this one.
    netns: Option<String>,
}

impl NatsServer {
    /// Starts `binary` on a free port of 127.0.0.1 and waits until it accepts.
    pub async fn start(binary: PathBuf) -> anyhow::Result<NatsServer> {
        Self::start_configured(binary, None).await
    }

    /// Like [`NatsServer::start`], with `config` as its configuration file
    /// (the address and port flags override any `listen` in it).
    pub async fn start_with_config(binary: PathBuf, config: &str) -> anyhow::Result<NatsServer> {
        let mut file = tempfile::Builder::new().suffix(".conf").tempfile()?;
        std::io::Write::write_all(&mut file, config.as_bytes())?;
        Self::start_configured(binary, Some(file.into_temp_path())).await
    }

    async fn start_configured(binary: PathBuf, config: Option<tempfile::TempPath>) -> anyhow::Result<NatsServer> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut server = NatsServer {
            binary,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child: None,
            config,
            netns: None,
        };
        server.spawn().await?;
        Ok(server)
    }

    /// Like [`NatsServer::start_with_config`], on the loopback address of
    /// network namespace `netns` (port 4222: the namespace is the test's
    /// own), for servers in that namespace.
    pub async fn start_in(binary: PathBuf, config: &str, netns: &str) -> anyhow::Result<NatsServer> {
        let mut file = tempfile::Builder::new().suffix(".conf").tempfile()?;
        std::io::Write::write_all(&mut file, config.as_bytes())?;
        let mut server = NatsServer {
            binary,
            addr: SocketAddr::from(([127, 0, 0, 1], 4222)),
            child: None,
            config: Some(file.into_temp_path()),
            netns: Some(netns.to_owned()),
        };
        server.spawn().await?;
        Ok(server)
    }

    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// Kills the server (SIGKILL) and waits for it to be gone.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Starts it again on the same port.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill().await;
        self.spawn().await
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let mut command = match &self.netns {
            Some(ns) => crate::netns::Testbed::command(ns, &self.binary),
            None => tokio::process::Command::new(&self.binary),
        };
        if let Some(config) = &self.config {
            command.arg("-c").arg(config);
        }
        command
            .args(["-a", "127.0.0.1", "-p", &self.addr.port().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let child = command.spawn().context("cannot start nats-server")?;
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + PATIENCE;
        // The port was free a moment ago; right after a kill it may take a
        // few tries for the new server to bind it.
        loop {
            let listening = match &self.netns {
                Some(ns) => crate::netns::Testbed::tcp_connect(ns, self.addr).is_ok(),
                None => tokio::net::TcpStream::connect(self.addr).await.is_ok(),
            };
            if listening {
                return Ok(());
            }
            if let Some(child) = &mut self.child {
                if let Some(status) = child.try_wait()? {
                    bail!("nats-server exited: {status}");
                }
            }
            if tokio::time::Instant::now() > deadline {
                bail!("nats-server did not listen on {} within {PATIENCE:?}", self.addr);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.start_kill();
        }
    }
}
