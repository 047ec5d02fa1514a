//! A signalling server that is really a man in the middle: it accepts the
//! nodes' WebSocket connections, forwards each to flsignal, and passes every
//! frame a node sends through a tamper function that may rewrite it, drop
//! it or send it more than once. The nodes' setup signatures must make it
//! harmless.

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

use crate::netns::Testbed;

/// What the relay does with one text frame from a node: the frames it
/// forwards instead.
pub type Tamper = Arc<dyn Fn(&str) -> Vec<String> + Send + Sync>;

/// The relay, on a thread with its own runtime so that a test blocking
/// its own runtime (waiting on `flnode status`, say) cannot stall it.
/// Stopped, with every connection, when dropped.
pub struct HostileRelay {
    /// Where nodes connect.
    pub addr: SocketAddr,
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
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = TcpListener::from_std(listener) else {
                    return;
                };
                let mut connections = tokio::task::JoinSet::new();
                let accept = async {
                    while let Ok((client, _)) = listener.accept().await {
                        let (ns, tamper) = (ns.clone(), tamper.clone());
                        connections.spawn(async move {
                            let _ = relay(&ns, client, upstream, tamper).await;
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
            stop: Some(stop),
            thread: Some(thread),
        })
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

async fn relay(ns: &str, client: tokio::net::TcpStream, upstream: SocketAddr, tamper: Tamper) -> anyhow::Result<()> {
    let client = tokio_tungstenite::accept_async(client).await?;
    let ns = ns.to_owned();
    let server = tokio::task::spawn_blocking(move || Testbed::tcp_connect(&ns, upstream)).await??;
    let (server, _) = tokio_tungstenite::client_async(format!("ws://{upstream}/"), server).await?;
    let (mut client_tx, mut client_rx) = client.split();
    let (mut server_tx, mut server_rx) = server.split();
    let down = async {
        while let Some(Ok(message)) = server_rx.next().await {
            client_tx.send(message).await?;
        }
        anyhow::Ok(())
    };
    let up = async {
        while let Some(Ok(message)) = client_rx.next().await {
            match message {
                Message::Text(text) => {
                    for frame in tamper(text.as_str()) {
                        server_tx.send(Message::text(frame)).await?;
                    }
                }
                other => server_tx.send(other).await?,
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

/// Replaces the first byte of every DTLS fingerprint in an Offer with
/// another value: the answerer would then accept a certificate that is not
/// the offerer's.
pub fn rewrite_offer_fingerprint(frame: &str) -> Vec<String> {
    const MARK: &str = "a=fingerprint:sha-256 ";
    if !frame.contains(r#""Offer""#) {
        return vec![frame.to_owned()];
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
    vec![out]
}
