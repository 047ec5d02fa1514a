//! A TURN client for tests, one message at a time, so that a test can send
//! exactly the request it means (an expired credential, a forbidden peer)
//! and see exactly the answer: [`Requests`] builds messages and [`Reply`]
//! reads them (no I/O, usable from unit tests of the server's state);
//! [`TurnClient`] drives them over a real UDP socket.
//!
//! Built on `stun-types`/`turn-types` (through `turn-server-proto`). The
//! independent clients are flnode's (webrtc-rs) in the NAT tests and
//! coturn's `turnutils_uclient`.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::net::UdpSocket;
use turn_server_proto::types::attribute::{
    ChannelNumber, Data, Lifetime, RequestedTransport, XorPeerAddress, XorRelayedAddress,
};
use turn_server_proto::types::channel::ChannelData;
use turn_server_proto::types::message::{ALLOCATE, CHANNEL_BIND, CREATE_PERMISSION, DATA, REFRESH, SEND};
use turn_server_proto::types::stun::attribute::{ErrorCode, Nonce, Realm, Username};
use turn_server_proto::types::stun::message::{
    IntegrityAlgorithm, LongTermKeyCredentials, Message, MessageClass, MessageIntegrityCredentials, MessageWrite,
    MessageWriteExt, MessageWriteVec, Method,
};

/// What a client knows: its credential, and the realm and nonce the
/// server gave it.
#[derive(Debug, Clone, Default)]
pub struct Requests {
    pub username: String,
    pub password: String,
    pub realm: Option<String>,
    pub nonce: Option<String>,
}

impl Requests {
    pub fn new(username: &str, password: &str) -> Requests {
        Requests {
            username: username.to_owned(),
            password: password.to_owned(),
            ..Requests::default()
        }
    }

    /// An Allocate with no credentials: the server answers with its realm
    /// and nonce.
    pub fn first_allocate(&self) -> Vec<u8> {
        let mut message = Message::builder_request(ALLOCATE, MessageWriteVec::new());
        let transport = RequestedTransport::new(RequestedTransport::UDP);
        message.add_attribute(&transport).expect("fits");
        message.finish()
    }

    /// An Allocate for a UDP relay, signed.
    pub fn allocate(&self) -> Vec<u8> {
        self.signed(ALLOCATE, |message| {
            let transport = RequestedTransport::new(RequestedTransport::UDP);
            message.add_attribute(&transport).expect("fits");
        })
    }

    /// A Refresh asking for `lifetime` seconds (0 deletes the allocation).
    pub fn refresh(&self, lifetime: u32) -> Vec<u8> {
        self.signed(REFRESH, |message| {
            message.add_attribute(&Lifetime::new(lifetime)).expect("fits");
        })
    }

    pub fn create_permission(&self, peer: SocketAddr) -> Vec<u8> {
        self.signed(CREATE_PERMISSION, |message| {
            let transaction = message.transaction_id();
            message
                .add_attribute(&XorPeerAddress::new(peer, transaction))
                .expect("fits");
        })
    }

    pub fn channel_bind(&self, channel: u16, peer: SocketAddr) -> Vec<u8> {
        self.signed(CHANNEL_BIND, |message| {
            let transaction = message.transaction_id();
            message.add_attribute(&ChannelNumber::new(channel)).expect("fits");
            message
                .add_attribute(&XorPeerAddress::new(peer, transaction))
                .expect("fits");
        })
    }

    /// A Send indication (unsigned, as RFC 8656 has them).
    pub fn send(&self, peer: SocketAddr, data: &[u8]) -> Vec<u8> {
        let mut message = Message::builder_indication(SEND, MessageWriteVec::new());
        let transaction = message.transaction_id();
        message
            .add_attribute(&XorPeerAddress::new(peer, transaction))
            .expect("fits");
        message.add_attribute(&Data::new(data)).expect("fits");
        message.finish()
    }

    pub fn channel_data(channel: u16, data: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0u8; 4 + data.len()];
        ChannelData::new(channel, data).write_into_unchecked(&mut bytes);
        bytes
    }

    fn signed(&self, method: Method, attributes: impl FnOnce(&mut MessageWriteVec)) -> Vec<u8> {
        let mut message = Message::builder_request(method, MessageWriteVec::new());
        attributes(&mut message);
        let realm = self.realm.clone().unwrap_or_default();
        message
            .add_attribute(&Username::new(&self.username).expect("short"))
            .expect("fits");
        message
            .add_attribute(&Realm::new(&realm).expect("short"))
            .expect("fits");
        let nonce = self.nonce.clone().unwrap_or_default();
        message
            .add_attribute(&Nonce::new(&nonce).expect("short"))
            .expect("fits");
        let credentials = LongTermKeyCredentials::new(self.username.clone(), self.password.clone(), realm);
        message
            .add_message_integrity(
                &MessageIntegrityCredentials::from(credentials),
                IntegrityAlgorithm::Sha1,
            )
            .expect("fits");
        message.add_fingerprint().expect("fits");
        message.finish()
    }
}

/// What the server sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A success response; the relayed address of an Allocate.
    Success {
        relayed: Option<SocketAddr>,
    },
    /// An error response, with the realm and nonce if it carried them.
    Error {
        code: u16,
        realm: Option<String>,
        nonce: Option<String>,
    },
    /// Data from a peer (a Data indication or ChannelData).
    Data {
        from: Option<SocketAddr>,
        data: Vec<u8>,
    },
    Other,
}

impl Reply {
    pub fn parse(bytes: &[u8]) -> Reply {
        if let Ok(channel) = ChannelData::parse(bytes) {
            return Reply::Data {
                from: None,
                data: channel.data().to_vec(),
            };
        }
        let Ok(message) = Message::from_bytes(bytes) else {
            return Reply::Other;
        };
        let transaction = message.transaction_id();
        if message.has_class(MessageClass::Success) {
            let relayed = message
                .attribute::<XorRelayedAddress>()
                .ok()
                .map(|address| address.addr(transaction));
            return Reply::Success { relayed };
        }
        if message.has_class(MessageClass::Error) {
            return Reply::Error {
                code: message.attribute::<ErrorCode>().map_or(0, |error| error.code()),
                realm: message.attribute::<Realm>().ok().map(|realm| realm.realm().to_owned()),
                nonce: message.attribute::<Nonce>().ok().map(|nonce| nonce.nonce().to_owned()),
            };
        }
        if message.has_class(MessageClass::Indication) && message.method() == DATA {
            return Reply::Data {
                from: message
                    .attribute::<XorPeerAddress>()
                    .ok()
                    .map(|peer| peer.addr(transaction)),
                data: message
                    .attribute::<Data>()
                    .map(|data| data.data().to_vec())
                    .unwrap_or_default(),
            };
        }
        Reply::Other
    }

    /// The error code, if this is an error response.
    pub fn error_code(&self) -> Option<u16> {
        match self {
            Reply::Error { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// How long a test waits for one answer.
pub const ANSWER_WAIT: Duration = Duration::from_secs(5);

/// A client over a real UDP socket.
pub struct TurnClient {
    pub socket: UdpSocket,
    pub server: SocketAddr,
    pub requests: Requests,
}

impl TurnClient {
    pub fn new(socket: UdpSocket, server: SocketAddr, username: &str, password: &str) -> TurnClient {
        TurnClient {
            socket,
            server,
            requests: Requests::new(username, password),
        }
    }

    /// Sends `request` and returns the answer (skipping data from peers).
    pub async fn ask(&self, request: &[u8]) -> anyhow::Result<Reply> {
        self.socket.send_to(request, self.server).await?;
        loop {
            let reply = self.receive().await?;
            if !matches!(reply, Reply::Data { .. }) {
                return Ok(reply);
            }
        }
    }

    /// The next datagram from the server.
    pub async fn receive(&self) -> anyhow::Result<Reply> {
        let mut buffer = vec![0u8; 65_536];
        let (len, from) = tokio::time::timeout(ANSWER_WAIT, self.socket.recv_from(&mut buffer))
            .await
            .context("no answer from the TURN server")??;
        anyhow::ensure!(from == self.server, "datagram from {from}, not the server");
        Ok(Reply::parse(&buffer[..len]))
    }

    /// Allocates as a client does: a first request for the realm and
    /// nonce, then the signed one. `Ok(Err(code))` is a refusal.
    pub async fn allocate(&mut self) -> anyhow::Result<Result<SocketAddr, u16>> {
        match self.ask(&self.requests.first_allocate()).await? {
            Reply::Error {
                code: 401,
                realm: Some(realm),
                nonce: Some(nonce),
            } => {
                self.requests.realm = Some(realm);
                self.requests.nonce = Some(nonce);
            }
            other => bail!("expected 401 with realm and nonce, got {other:?}"),
        }
        match self.ask(&self.requests.allocate()).await? {
            Reply::Success { relayed: Some(relayed) } => Ok(Ok(relayed)),
            Reply::Error { code, .. } => Ok(Err(code)),
            other => bail!("unexpected answer to Allocate: {other:?}"),
        }
    }
}
