//! A signalling client over a real WebSocket (tokio-tungstenite over
//! TCP, or TLS), speaking the protocol as a node does.

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use flproto::announce::{sign_announce, AnnounceAuth};
use flproto::datagram_relay::RelayAnswer;
use flproto::identity::NodeKey;
use flproto::message::{NodeMessage, PeerInfo, ServerMessage, SetupMessage, TurnCredentials};
use flproto::{ChallengeNonce, NodeId, NodeInfo};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::{tungstenite, PATIENCE};

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What a client observed next on its socket.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Frame(ServerMessage),
    /// A text frame that is not a server message we know.
    Unparsed(String),
    /// A binary frame (the datagram relay's).
    Binary(Vec<u8>),
    Closed(Option<u16>),
}

/// A signalling client over a real WebSocket.
pub struct Client {
    pub socket: Socket,
    pub challenge: ChallengeNonce,
    pub url: String,
    /// The last TURN credential the server sent: kept aside, not returned
    /// as an event, so that tests of other things need not expect them.
    pub turn_credentials: Option<TurnCredentials>,
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
            turn_credentials: None,
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
        self.announce_asking(key, auth, false).await
    }

    /// Announces, asking for the datagram relay if `relay`.
    pub async fn announce_asking(&mut self, key: &NodeKey, auth: &AnnounceAuth, relay: bool) -> anyhow::Result<()> {
        let info = NodeInfo::v3("test-node", "e2e", key.id(), "STAT | PING");
        let mut announce = sign_announce(key, self.challenge, info, auth);
        announce.relay = relay;
        self.send(&NodeMessage::Announce(announce)).await
    }

    /// Connects with a bound announce that asks for the datagram relay;
    /// returns the client and the server's answer (the node list after it
    /// is read and dropped).
    pub async fn join_relay(url: &str, key: &NodeKey) -> anyhow::Result<(Client, RelayAnswer)> {
        let mut client = Client::connect(url).await?;
        client.announce_asking(key, &Client::bound_auth(url), true).await?;
        match client.next().await? {
            Event::Frame(ServerMessage::SystemConfig(_)) => {}
            other => bail!("expected SystemConfig, got {other:?}"),
        }
        let answer = match client.next().await? {
            Event::Frame(ServerMessage::Relay(answer)) => answer,
            other => bail!("expected the relay answer, got {other:?}"),
        };
        client.expect_list().await?;
        Ok((client, answer))
    }

    /// Sends one binary frame.
    pub async fn send_binary(&mut self, bytes: Vec<u8>) -> anyhow::Result<()> {
        self.socket.send(Message::Binary(bytes.into())).await?;
        Ok(())
    }

    /// Reads until the next binary frame, skipping text frames; fails on a
    /// close or after [`PATIENCE`].
    pub async fn next_binary(&mut self) -> anyhow::Result<Vec<u8>> {
        loop {
            match self.next().await? {
                Event::Binary(bytes) => return Ok(bytes),
                Event::Closed(code) => bail!("closed ({code:?}) while waiting for a binary frame"),
                _ => continue,
            }
        }
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
                    Ok(ServerMessage::TurnCredentials(credentials)) => {
                        self.turn_credentials = Some(credentials);
                        continue;
                    }
                    Ok(frame) => Event::Frame(frame),
                    Err(_) => Event::Unparsed(text.to_string()),
                },
                Some(Ok(Message::Close(frame))) => Event::Closed(frame.map(|f| u16::from(f.code))),
                Some(Ok(Message::Binary(bytes))) => Event::Binary(bytes.to_vec()),
                Some(Ok(_)) => continue,
            };
            return Ok(Some(event));
        }
    }

    /// The TURN credential the server sent (waiting up to `wait` for one),
    /// taken: the next call waits for the next one. Other frames that
    /// arrive meanwhile are dropped.
    pub async fn expect_turn_credentials(&mut self, wait: Duration) -> anyhow::Result<Option<TurnCredentials>> {
        let deadline = tokio::time::Instant::now() + wait;
        while self.turn_credentials.is_none() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_within(left).await? {
                None => break,
                Some(Event::Closed(code)) => bail!("closed ({code:?}) while waiting for TURN credentials"),
                Some(_) => continue,
            }
        }
        Ok(self.turn_credentials.take())
    }

    /// Raw next text frame, for checking verbatim relay.
    pub async fn next_text(&mut self) -> anyhow::Result<String> {
        loop {
            let message = tokio::time::timeout(PATIENCE, self.socket.next())
                .await
                .context("no frame")?
                .ok_or_else(|| anyhow!("closed"))??;
            match message {
                Message::Text(text) if text.as_str().starts_with(r#"{"TurnCredentials""#) => {
                    if let Ok(ServerMessage::TurnCredentials(credentials)) = serde_json::from_str(text.as_str()) {
                        self.turn_credentials = Some(credentials);
                    }
                }
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
