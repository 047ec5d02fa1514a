//! wireguard-go, for kernels without WireGuard: flnode starts it for the
//! interface, configures it over its control socket (`uapi`), and stops it
//! when it removes the interface.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::device::{Backend, Device, DeviceError, DeviceView, PeerOp};
use super::key::WgSecret;
use super::names::InterfaceName;
use super::uapi;

/// The program flnode runs, looked up in `PATH`.
pub const WIREGUARD_GO: &str = "wireguard-go";
/// How long wireguard-go may take to create its interface and control
/// socket.
pub const START_TIMEOUT: Duration = Duration::from_secs(5);
/// How long wireguard-go may take to exit after SIGTERM before it is
/// killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a starting wireguard-go is checked on.
const START_POLL: Duration = Duration::from_millis(20);

/// Why wireguard-go could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("wireguard-go is not installed (not in PATH)")]
    NotInstalled,
    #[error("cannot start wireguard-go: {0}")]
    Spawn(std::io::Error),
    #[error("wireguard-go exited at once ({0}); its log lines above say why")]
    Exited(std::process::ExitStatus),
    #[error("wireguard-go did not create its control socket within {START_TIMEOUT:?}")]
    Timeout,
}

/// Whether wireguard-go is in `PATH`.
pub fn installed() -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(WIREGUARD_GO)).is_ok_and(|meta| meta.is_file() && meta.mode() & 0o111 != 0)
        })
    })
}

/// A wireguard-go process flnode started.
pub struct Daemon {
    child: Child,
    socket: PathBuf,
}

impl Daemon {
    /// Starts wireguard-go for `name` and waits for its control socket.
    /// Unless `keep`, it dies with flnode (even if flnode is killed) and
    /// its log lines become flnode's; with `keep`, it outlives flnode and
    /// logs nowhere (a log line to a closed pipe would kill it).
    pub async fn start(name: &InterfaceName, keep: bool) -> Result<Daemon, StartError> {
        if !installed() {
            return Err(StartError::NotInstalled);
        }
        let mut command = Command::new(WIREGUARD_GO);
        command
            .args(["-f", name.as_str()])
            // wireguard-go refuses to start where the kernel has WireGuard
            // unless told that this is wanted (--wg-backend userspace).
            .env("WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD", "1")
            .stdin(Stdio::null())
            // Its own process group: a Ctrl-C in flnode's terminal is
            // flnode's to handle, and flnode stops wireguard-go after it.
            .process_group(0)
            .kill_on_drop(!keep);
        if keep {
            command.stdout(Stdio::null()).stderr(Stdio::null());
        } else {
            command.stdout(Stdio::piped()).stderr(Stdio::piped());
            // SAFETY: prctl is async-signal-safe; nothing else runs between
            // fork and exec.
            unsafe {
                command.pre_exec(|| {
                    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM).map_err(std::io::Error::from)
                });
            }
        }
        let mut child = command.spawn().map_err(StartError::Spawn)?;
        for output in [
            child
                .stdout
                .take()
                .map(|out| Box::new(out) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            child
                .stderr
                .take()
                .map(|err| Box::new(err) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        ]
        .into_iter()
        .flatten()
        {
            tokio::spawn(forward_log(output));
        }
        let socket = uapi::socket_path(name.as_str());
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().map_err(StartError::Spawn)? {
                return Err(StartError::Exited(status));
            }
            if uapi::exchange(&socket, &uapi::get_request()).await.is_ok() {
                return Ok(Daemon { child, socket });
            }
            if tokio::time::Instant::now() > deadline {
                let _ = child.start_kill();
                return Err(StartError::Timeout);
            }
            tokio::time::sleep(START_POLL).await;
        }
    }

    pub fn device(&self) -> UserspaceDevice {
        UserspaceDevice {
            socket: self.socket.clone(),
        }
    }

    /// Stops wireguard-go (SIGTERM, then SIGKILL after [`STOP_TIMEOUT`]);
    /// it removes its interface and control socket as it goes.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        if tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
        // A killed wireguard-go leaves its socket behind.
        let _ = std::fs::remove_file(&self.socket);
    }

    /// Leaves wireguard-go running after flnode exits (`--keep-interface`).
    pub fn detach(self) {
        // Started with kill_on_drop(false) and without a death signal.
        drop(self.child);
    }
}

/// wireguard-go's log lines as flnode's: it logs only errors by default,
/// apart from a boxed banner on kernels that could run WireGuard
/// themselves (debug).
async fn forward_log(output: Box<dyn tokio::io::AsyncRead + Send + Unpin>) {
    let mut lines = BufReader::new(output).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let line: String = line.chars().take(300).collect();
        if line.starts_with(['┌', '│', '└']) {
            tracing::debug!(target: "wireguard-go", "{line}");
        } else {
            tracing::warn!(target: "wireguard-go", "{line}");
        }
    }
}

/// Whether the wireguard-go answering on `name`'s control socket serves
/// this network namespace: the socket's directory is shared by all
/// namespaces, so a wireguard-go for a same-named interface elsewhere
/// could answer.
pub fn serves_this_namespace(name: &InterfaceName) -> bool {
    let Ok(stream) = std::os::unix::net::UnixStream::connect(uapi::socket_path(name.as_str())) else {
        return false;
    };
    let Ok(credentials) = nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials) else {
        return false;
    };
    let namespace = |pid: &str| std::fs::metadata(format!("/proc/{pid}/ns/net")).map(|meta| meta.ino());
    matches!(
        (namespace(&credentials.pid().to_string()), namespace("self")),
        (Ok(theirs), Ok(ours)) if theirs == ours
    )
}

/// A wireguard-go device, by its control socket.
pub struct UserspaceDevice {
    socket: PathBuf,
}

impl UserspaceDevice {
    /// The device of a wireguard-go flnode did not start.
    pub fn adopt(name: &InterfaceName) -> UserspaceDevice {
        UserspaceDevice {
            socket: uapi::socket_path(name.as_str()),
        }
    }
}

#[async_trait::async_trait]
impl Device for UserspaceDevice {
    fn backend(&self) -> Backend {
        Backend::Userspace
    }

    async fn view(&self) -> Result<DeviceView, DeviceError> {
        uapi::parse_get_answer(&uapi::exchange(&self.socket, &uapi::get_request()).await?)
    }

    async fn set_identity(&self, secret: &WgSecret, listen_port: u16) -> Result<(), DeviceError> {
        let request = uapi::identity_request(secret, listen_port);
        uapi::parse_set_answer(&uapi::exchange(&self.socket, &request).await?)
    }

    async fn apply(&self, ops: &[PeerOp]) -> Result<(), DeviceError> {
        if ops.is_empty() {
            return Ok(());
        }
        let request = uapi::peers_request(ops);
        uapi::parse_set_answer(&uapi::exchange(&self.socket, &request).await?)
    }
}
