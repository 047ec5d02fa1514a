//! Test helpers: a real WebSocket client that speaks the signalling
//! protocol, and a handle on a real `flsignal` process.
//!
//! Used by the cross-process tests in `tests/tests/` and by flsignal's own
//! in-process tests. Nothing here is a mock: the client is
//! tokio-tungstenite over TCP, the server is the real one.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use flproto::announce::{sign_announce, AnnounceAuth};
use flproto::identity::NodeKey;
use flproto::message::{NodeMessage, PeerInfo, ServerMessage, SetupMessage};
use flproto::{ChallengeNonce, NodeId, NodeInfo};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub mod browser;
pub mod cluster;
pub mod flnode;
pub mod hostile_relay;
pub mod leaks;
pub mod nat;
pub mod nats;
pub mod netns;
pub mod spread;
pub mod stun_client;
pub mod tls;
pub mod wireguard;

pub use tokio_tungstenite::tungstenite;

/// How long a test waits for something that should happen promptly.
pub const PATIENCE: Duration = Duration::from_secs(10);

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What a client observed next on its socket.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Frame(ServerMessage),
    /// A text frame that is not a server message we know.
    Unparsed(String),
    Closed(Option<u16>),
}

/// A signalling client over a real WebSocket.
pub struct Client {
    pub socket: Socket,
    pub challenge: ChallengeNonce,
    pub url: String,
}

impl Client {
    /// Connects and reads the challenge.
    pub async fn connect(url: &str) -> anyhow::Result<Client> {
        Self::connect_with_host(url, None).await
    }

    /// Like [`Client::connect`], presenting `host` in the Host header
    /// instead of the URL's authority (as a relaying server would).
    pub async fn connect_with_host(url: &str, host: Option<&str>) -> anyhow::Result<Client> {
        use tungstenite::client::IntoClientRequest;
        let mut request = url.into_client_request()?;
        if let Some(host) = host {
            request
                .headers_mut()
                .insert(tungstenite::http::header::HOST, host.parse()?);
        }
        let (socket, _) = tokio::time::timeout(PATIENCE, tokio_tungstenite::connect_async(request))
            .await
            .context("connect timed out")??;
        Client::from_socket(socket, url).await
    }

    /// Connects from the local address `source` (e.g. another 127.0.0.x,
    /// to look like another client) and reads the challenge. Plain `ws://`
    /// only.
    pub async fn connect_from(url: &str, source: std::net::IpAddr) -> anyhow::Result<Client> {
        let authority = flproto::announce::authority_of_url(url).context("no host in url")?;
        let server = tokio::net::lookup_host(authority.as_str())
            .await?
            .find(|addr| addr.is_ipv4() == source.is_ipv4())
            .context("no server address of the source's family")?;
        let socket = if source.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.bind(std::net::SocketAddr::new(source, 0))?;
        let upgrade = async {
            let stream = socket.connect(server).await?;
            anyhow::Ok(tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream)).await?)
        };
        let (socket, _) = tokio::time::timeout(PATIENCE, upgrade)
            .await
            .context("connect timed out")??;
        Self::from_socket(socket, url).await
    }

    /// Connects over `stream`, a TCP connection already made to the
    /// server of `url` (say, from inside a network namespace).
    pub async fn connect_over(stream: TcpStream, url: &str) -> anyhow::Result<Client> {
        let handshake = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream));
        let (socket, _) = tokio::time::timeout(PATIENCE, handshake)
            .await
            .context("handshake timed out")??;
        Self::from_socket(socket, url).await
    }

    /// A client on a WebSocket that is already open: reads the challenge.
    pub async fn from_socket(mut socket: Socket, url: &str) -> anyhow::Result<Client> {
        let first = tokio::time::timeout(PATIENCE, socket.next())
            .await
            .context("no challenge")?
            .ok_or_else(|| anyhow!("closed before challenge"))??;
        let text = first.into_text()?;
        let ServerMessage::Challenge(version, challenge) = serde_json::from_str(text.as_str())? else {
            bail!("first frame is not a challenge: {text}");
        };
        anyhow::ensure!(version == 3, "challenge version {version}");
        Ok(Client {
            socket,
            challenge,
            url: url.to_owned(),
        })
    }

    /// Connects and announces with `auth`; returns the node list received.
    pub async fn join(url: &str, key: &NodeKey, auth: &AnnounceAuth) -> anyhow::Result<(Client, Vec<NodeId>)> {
        let mut client = Client::connect(url).await?;
        client.announce(key, auth).await?;
        let list = client.expect_registered().await?;
        Ok((client, list))
    }

    /// A bound announce for the server this client dialled.
    pub fn bound_auth(url: &str) -> AnnounceAuth {
        AnnounceAuth::Bound {
            server: flproto::announce::authority_of_url(url).unwrap_or_default(),
        }
    }

    pub async fn announce(&mut self, key: &NodeKey, auth: &AnnounceAuth) -> anyhow::Result<()> {
        let info = NodeInfo::v3("test-node", "e2e", key.id(), "STAT | PING");
        let announce = sign_announce(key, self.challenge, info, auth);
        self.send(&NodeMessage::Announce(announce)).await
    }

    /// Reads `SystemConfig` then `ListIDsReply`.
    pub async fn expect_registered(&mut self) -> anyhow::Result<Vec<NodeId>> {
        match self.next().await? {
            Event::Frame(ServerMessage::SystemConfig(_)) => {}
            other => bail!("expected SystemConfig, got {other:?}"),
        }
        self.expect_list().await
    }

    pub async fn expect_list(&mut self) -> anyhow::Result<Vec<NodeId>> {
        match self.next().await? {
            Event::Frame(ServerMessage::ListIDsReply(list)) => Ok(ids_of(&list)),
            other => bail!("expected ListIDsReply, got {other:?}"),
        }
    }

    pub async fn expect_error(&mut self) -> anyhow::Result<String> {
        match self.next().await? {
            Event::Frame(ServerMessage::Error(text)) => Ok(text),
            other => bail!("expected Error, got {other:?}"),
        }
    }

    /// Reads until the next relayed `PeerSetup`, skipping presence news.
    pub async fn expect_setup(&mut self) -> anyhow::Result<PeerInfo> {
        loop {
            match self.next().await? {
                Event::Frame(ServerMessage::PeerSetup(setup)) => return Ok(setup),
                Event::Closed(code) => bail!("closed ({code:?}) while waiting for a PeerSetup"),
                _ => continue,
            }
        }
    }

    /// Reads until the close frame and returns its code.
    pub async fn expect_close(&mut self) -> anyhow::Result<Option<u16>> {
        loop {
            if let Event::Closed(code) = self.next().await? {
                return Ok(code);
            }
        }
    }

    pub async fn send(&mut self, message: &NodeMessage) -> anyhow::Result<()> {
        self.send_text(&message.to_json()).await
    }

    pub async fn send_text(&mut self, text: &str) -> anyhow::Result<()> {
        self.socket.send(Message::text(text)).await?;
        Ok(())
    }

    pub async fn setup(&mut self, id_init: NodeId, id_follow: NodeId, message: SetupMessage) -> anyhow::Result<()> {
        self.send(&NodeMessage::PeerSetup(PeerInfo {
            id_init,
            id_follow,
            message,
            auth: None,
        }))
        .await
    }

    /// The next event, skipping pings; fails after [`PATIENCE`].
    pub async fn next(&mut self) -> anyhow::Result<Event> {
        self.next_within(PATIENCE)
            .await?
            .ok_or_else(|| anyhow!("nothing received within {PATIENCE:?}"))
    }

    /// The next event within `wait`, or `None` if nothing came.
    pub async fn next_within(&mut self, wait: Duration) -> anyhow::Result<Option<Event>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let Ok(message) = tokio::time::timeout_at(deadline, self.socket.next()).await else {
                return Ok(None);
            };
            let event = match message {
                None => Event::Closed(None),
                Some(Err(error)) => match error {
                    tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => Event::Closed(None),
                    tungstenite::Error::Protocol(_) | tungstenite::Error::Io(_) => Event::Closed(None),
                    other => return Err(other.into()),
                },
                Some(Ok(Message::Text(text))) => match serde_json::from_str(text.as_str()) {
                    Ok(frame) => Event::Frame(frame),
                    Err(_) => Event::Unparsed(text.to_string()),
                },
                Some(Ok(Message::Close(frame))) => Event::Closed(frame.map(|f| u16::from(f.code))),
                Some(Ok(_)) => continue,
            };
            return Ok(Some(event));
        }
    }

    /// Raw next text frame, for checking verbatim relay.
    pub async fn next_text(&mut self) -> anyhow::Result<String> {
        loop {
            let message = tokio::time::timeout(PATIENCE, self.socket.next())
                .await
                .context("no frame")?
                .ok_or_else(|| anyhow!("closed"))??;
            match message {
                Message::Text(text) => return Ok(text.to_string()),
                Message::Close(frame) => bail!("closed: {frame:?}"),
                _ => continue,
            }
        }
    }

    /// Fails if anything but pings arrives within `wait`.
    pub async fn expect_silence(&mut self, wait: Duration) -> anyhow::Result<()> {
        match self.next_within(wait).await? {
            None => Ok(()),
            Some(event) => bail!("expected silence, got {event:?}"),
        }
    }

    pub async fn close(mut self) {
        let _ = self
            .socket
            .close(Some(tungstenite::protocol::CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            }))
            .await;
    }
}

pub fn ids_of(list: &[NodeInfo]) -> Vec<NodeId> {
    list.iter()
        .filter_map(|info| match info {
            NodeInfo::NodeInfoV3(v3) => Some(v3.pubkey),
            _ => None,
        })
        .collect()
}

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

/// Plain HTTP GET over a raw TCP stream; returns the status line and body.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> anyhow::Result<(String, String)> {
    let (head, body) = http_get_head(addr, path).await?;
    Ok((head.lines().next().unwrap_or_default().to_owned(), body))
}

/// Plain HTTP GET over a raw TCP stream; returns the whole response head
/// (status line and headers) and the body.
pub async fn http_get_head(addr: std::net::SocketAddr, path: &str) -> anyhow::Result<(String, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    tokio::time::timeout(PATIENCE, stream.read_to_string(&mut response)).await??;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    Ok((head.to_owned(), body.to_owned()))
}
