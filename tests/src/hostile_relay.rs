//! A signalling server that is really a man in the middle: it accepts the
//! nodes' connections, forwards each to flsignal, records every WebSocket
//! frame both ways, and passes every frame a node sends through a tamper
//! function that may rewrite it, drop it, send it more than once or later.
//! A test can also inject frames, as if a node had sent them. The nodes'
//! setup signatures (and sealing) must make it harmless, and what it
//! recorded is what a signalling server learns.
//!
//! Requests that are not WebSocket upgrades (a browser loading the page)
//! are passed to flsignal unchanged, so a page served "by the relay"
//! signals through it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::netns::Testbed;

/// What the relay does with one text frame from a node: the frames it
/// forwards instead.
pub type Tamper = Arc<dyn Fn(&str) -> Vec<Forward> + Send + Sync>;

/// A frame the relay sends to the server on a node's connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// How long after the node's frame (which is not held up meanwhile).
    pub after: std::time::Duration,
    pub text: String,
}

impl Forward {
    pub fn now(text: impl Into<String>) -> Forward {
        Forward {
            after: std::time::Duration::ZERO,
            text: text.into(),
        }
    }

    pub fn after(after: std::time::Duration, text: impl Into<String>) -> Forward {
        Forward {
            after,
            text: text.into(),
        }
    }
}

/// Frames kept, in bytes; past this the recording stops and says so.
pub const MAX_RECORDED_BYTES: usize = 64 * 1024 * 1024;

/// The longest HTTP request head read to tell an upgrade from a page load.
const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// Which way a recorded frame went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From a node to the server: as the node sent it (before tampering),
    /// or as the relay sent it in the node's name.
    FromNode,
    /// From the server to a node.
    ToNode,
}

/// One text frame the relay handled.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The relay's number for the connection, in the order they came.
    pub connection: usize,
    pub direction: Direction,
    pub text: String,
}

#[derive(Default)]
struct Recording {
    frames: Vec<Recorded>,
    bytes: usize,
    truncated: bool,
}

/// What every connection task shares with the test.
#[derive(Default, Clone)]
struct Shared {
    recording: Arc<Mutex<Recording>>,
    /// Per connection: frames to send to the server as if the node had.
    injectors: Arc<Mutex<Vec<mpsc::UnboundedSender<String>>>>,
}

impl Shared {
    fn record(&self, connection: usize, direction: Direction, text: &str) {
        let Ok(mut recording) = self.recording.lock() else {
            return;
        };
        if recording.bytes + text.len() > MAX_RECORDED_BYTES {
            recording.truncated = true;
            return;
        }
        recording.bytes += text.len();
        recording.frames.push(Recorded {
            connection,
            direction,
            text: text.to_owned(),
        });
    }
}

/// The relay, on a thread with its own runtime so that a test blocking
/// its own runtime (waiting on `flnode status`, say) cannot stall it.
/// Stopped, with every connection, when dropped.
pub struct HostileRelay {
    /// Where nodes connect.
    pub addr: SocketAddr,
    shared: Shared,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HostileRelay {
    /// Relays each connection accepted on `listener` (made in namespace
    /// `ns` by [`Testbed::tcp_listener`]) to flsignal at `upstream`, reached
    /// from the same namespace.
    pub fn start(
        ns: &str,
        listener: std::net::TcpListener,
        upstream: SocketAddr,
        tamper: Tamper,
    ) -> anyhow::Result<HostileRelay> {
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let ns = ns.to_owned();
        let shared = Shared::default();
        let tasks_shared = shared.clone();
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = TcpListener::from_std(listener) else {
                    return;
                };
                let mut connections = tokio::task::JoinSet::new();
                let accept = async {
                    while let Ok((client, _)) = listener.accept().await {
                        let (ns, tamper, shared) = (ns.clone(), tamper.clone(), tasks_shared.clone());
                        connections.spawn(async move {
                            let _ = serve(&ns, client, upstream, tamper, shared).await;
                        });
                    }
                };
                tokio::select! {
                    () = accept => {}
                    _ = stopped => {}
                }
            });
        });
        Ok(HostileRelay {
            addr,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// A relay that forwards every frame as it is (and records it).
    pub fn recording(ns: &str, listener: std::net::TcpListener, upstream: SocketAddr) -> anyhow::Result<HostileRelay> {
        Self::start(
            ns,
            listener,
            upstream,
            Arc::new(|frame: &str| vec![Forward::now(frame)]),
        )
    }

    /// Every frame recorded so far, in the order the relay handled them.
    pub fn frames(&self) -> Vec<Recorded> {
        self.shared
            .recording
            .lock()
            .map(|recording| recording.frames.clone())
            .unwrap_or_default()
    }

    /// Whether frames were left out for [`MAX_RECORDED_BYTES`].
    pub fn truncated(&self) -> bool {
        self.shared
            .recording
            .lock()
            .map_or(true, |recording| recording.truncated)
    }

    /// Sends `frame` to the server on WebSocket connection `connection`
    /// (numbered in the order the relay accepted upgrades), as if its node
    /// had sent it.
    pub fn inject(&self, connection: usize, frame: String) -> anyhow::Result<()> {
        let injectors = self
            .shared
            .injectors
            .lock()
            .map_err(|_| anyhow::anyhow!("relay poisoned"))?;
        let injector = injectors
            .get(connection)
            .ok_or_else(|| anyhow::anyhow!("no connection {connection}"))?;
        injector
            .send(frame)
            .map_err(|_| anyhow::anyhow!("connection {connection} is closed"))
    }
}

impl Drop for HostileRelay {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One accepted connection: a WebSocket relayed frame by frame, or any
/// other HTTP request passed through byte for byte.
async fn serve(
    ns: &str,
    client: TcpStream,
    upstream: SocketAddr,
    tamper: Tamper,
    shared: Shared,
) -> anyhow::Result<()> {
    let ns_owned = ns.to_owned();
    let server = tokio::task::spawn_blocking(move || Testbed::tcp_connect(&ns_owned, upstream)).await??;
    if !is_upgrade(&client).await? {
        let (mut client, mut server) = (client, server);
        tokio::io::copy_bidirectional(&mut client, &mut server).await?;
        return Ok(());
    }
    let client = tokio_tungstenite::accept_async(client).await?;
    let (server, _) = tokio_tungstenite::client_async(format!("ws://{upstream}/"), server).await?;
    let (injector, mut injected) = mpsc::unbounded_channel::<String>();
    let connection = {
        let mut injectors = shared.injectors.lock().map_err(|_| anyhow::anyhow!("relay poisoned"))?;
        injectors.push(injector.clone());
        injectors.len() - 1
    };
    let (mut client_tx, mut client_rx) = client.split();
    let (mut server_tx, mut server_rx) = server.split();
    let down = async {
        while let Some(Ok(message)) = server_rx.next().await {
            if let Message::Text(text) = &message {
                shared.record(connection, Direction::ToNode, text.as_str());
            }
            client_tx.send(message).await?;
        }
        anyhow::Ok(())
    };
    let up = async {
        loop {
            tokio::select! {
                message = client_rx.next() => match message {
                    Some(Ok(Message::Text(text))) => {
                        shared.record(connection, Direction::FromNode, text.as_str());
                        for forward in tamper(text.as_str()) {
                            if forward.after.is_zero() {
                                server_tx.send(Message::text(forward.text)).await?;
                            } else {
                                let injector = injector.clone();
                                tokio::spawn(async move {
                                    tokio::time::sleep(forward.after).await;
                                    let _ = injector.send(forward.text);
                                });
                            }
                        }
                    }
                    Some(Ok(other)) => server_tx.send(other).await?,
                    _ => break,
                },
                Some(frame) = injected.recv() => {
                    shared.record(connection, Direction::FromNode, &frame);
                    server_tx.send(Message::text(frame)).await?;
                }
            }
        }
        anyhow::Ok(())
    };
    tokio::select! {
        _ = down => {}
        _ = up => {}
    }
    Ok(())
}

/// Whether the request waiting on `client` asks for a WebSocket upgrade
/// (read without consuming it).
async fn is_upgrade(client: &TcpStream) -> anyhow::Result<bool> {
    let mut buffer = vec![0u8; MAX_REQUEST_HEAD];
    loop {
        let read = client.peek(&mut buffer).await?;
        anyhow::ensure!(read > 0, "closed before a request");
        let head = String::from_utf8_lossy(&buffer[..read]).to_ascii_lowercase();
        if head.contains("\r\n\r\n") || read == buffer.len() {
            return Ok(head.contains("upgrade: websocket"));
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Replaces the first byte of every DTLS fingerprint in an Offer with
/// another value: the answerer would then accept a certificate that is not
/// the offerer's.
pub fn rewrite_offer_fingerprint(frame: &str) -> Vec<Forward> {
    const MARK: &str = "a=fingerprint:sha-256 ";
    if !frame.contains(r#""Offer""#) {
        return vec![Forward::now(frame)];
    }
    let mut out = String::with_capacity(frame.len());
    let mut rest = frame;
    while let Some(at) = rest.find(MARK) {
        let start = at + MARK.len();
        out.push_str(&rest[..start]);
        let original = rest.get(start..start + 2).unwrap_or("");
        out.push_str(if original == "00" { "11" } else { "00" });
        rest = rest.get(start + 2..).unwrap_or("");
    }
    out.push_str(rest);
    vec![Forward::now(out)]
}

/// A sealed setup frame with one character of its ciphertext changed.
pub fn tampered(frame: &str) -> Option<String> {
    let start = frame.find(r#""Sealed":""#)? + r#""Sealed":""#.len();
    let middle = start + 200;
    let original = frame.get(middle..middle + 1)?;
    let replacement = if original == "A" { "B" } else { "A" };
    Some(format!("{}{replacement}{}", &frame[..middle], &frame[middle + 1..]))
}

/// The frame with `id_init` and `id_follow` swapped: still between the
/// same two nodes (so the server relays it), addressed the other way.
pub fn readdressed(frame: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(frame).ok()?;
    let setup = value.get("PeerSetup")?;
    let (init, follow) = (setup.get("id_init")?.as_str()?, setup.get("id_follow")?.as_str()?);
    let swapped = frame
        .replacen(init, "\u{0}", 1)
        .replacen(follow, init, 1)
        .replacen('\u{0}', follow, 1);
    Some(swapped)
}

/// A tamper that forwards everything, and after the first sealed setup
/// for `recipient` (once it is set) also sends that frame's altered
/// copies: 1.5 s later with a changed ciphertext byte, 3 s later
/// re-addressed, 4.5 s later replayed as it was. The recipient must
/// refuse each (and can log each: its refusals are logged once a second).
pub fn misbehave_towards(recipient: Arc<std::sync::OnceLock<flproto::NodeId>>) -> Tamper {
    misbehave_after_first_matching(move |info| {
        recipient
            .get()
            .is_some_and(|id| flproto::setup_auth::verify(info, id).is_ok())
    })
}

/// The same after the first sealed setup the relay sees, whoever it is for.
pub fn misbehave_after_the_first_sealed_setup() -> Tamper {
    misbehave_after_first_matching(|_| true)
}

/// The same after the first sealed setup that `chosen` picks.
pub fn misbehave_after_first_matching(
    chosen: impl Fn(&flproto::message::PeerInfo) -> bool + Send + Sync + 'static,
) -> Tamper {
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    Arc::new(move |frame: &str| {
        let mut forwards = vec![Forward::now(frame)];
        let sealed = match serde_json::from_str(frame) {
            Ok(flproto::message::NodeMessage::PeerSetup(info)) => {
                matches!(info.message, flproto::message::SetupMessage::Sealed(_)) && chosen(&info)
            }
            _ => false,
        };
        if sealed && !done.swap(true, std::sync::atomic::Ordering::Relaxed) {
            let second = std::time::Duration::from_millis(1500);
            forwards.extend(tampered(frame).map(|text| Forward::after(second, text)));
            forwards.extend(readdressed(frame).map(|text| Forward::after(second * 2, text)));
            forwards.push(Forward::after(second * 3, frame));
        }
        forwards
    })
}
