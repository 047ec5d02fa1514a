//! What goes into a [`super::ServerSession`] (frames as they arrived) and
//! what comes out (actions for the driver, refusals it tells the node).

use crate::announce::{AnnounceError, VerifiedNode};
use crate::close::CloseReason;
use crate::ids::NodeId;
use crate::message::ServerMessage;

/// What arrived on the connection.
#[derive(Debug, Clone, Copy)]
pub enum Inbound<'a> {
    Text(&'a str),
    Binary,
    /// A WebSocket ping or pong: proof of life, nothing else.
    Control,
    /// The transport refused a frame over the size limit.
    TooLarge,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this frame to the connection.
    Send(ServerMessage),
    /// Send this node list, as the registry rendered it
    /// ([`crate::message::ListingFrame`]).
    SendListing(String),
    /// The node proved its identity: enter it into the registry (another
    /// connection holding the same ID loses it) and answer with
    /// [`super::ServerSession::on_registered`], or with
    /// [`super::ServerSession::refuse_registration`] if the server will not.
    Register(VerifiedNode),
    /// Send the node a fresh node list from the registry.
    SendNodeList,
    /// Send the node a fresh credential for the server's TURN service
    /// (`ServerMessage::TurnCredentials`): after its registration, and
    /// again every `SessionConfig::turn_renewal`. Only version-4 nodes get
    /// it; fledger's decoder would fail on the unknown variant.
    SendTurnCredentials,
    /// Forward the text that was just handed in, unchanged, to `to`. When
    /// `to` is not connected and `notify` is set, tell the sender.
    Relay { to: NodeId, notify: bool },
    /// Tell the node why its message was refused (as an `Error` frame).
    Refuse(Refusal),
    /// Send a WebSocket ping.
    Ping,
    /// Close the connection with this reason; nothing follows.
    Close(CloseReason),
}

/// Why one message was refused without closing the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("announce first")]
    NotAnnounced,
    #[error("already announced on this connection")]
    AlreadyAnnounced,
    #[error("announce refused: {0}")]
    Announce(#[from] AnnounceError),
    #[error("you are neither id_init nor id_follow of this PeerSetup")]
    SpoofedSender,
    #[error("PeerSetup addressed to yourself")]
    SelfAddressed,
    #[error("too many announces from your address; try again later")]
    SourceRateLimited,
    #[error("ListIDsRequest too often; slow down")]
    ListRateLimited,
    #[error("PeerSetup refused: too many of yours were dropped over your share of the receiver's queue; slow down")]
    RelayThrottled,
}

impl Refusal {
    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::Malformed(_) => "malformed",
            Refusal::NotAnnounced => "not_announced",
            Refusal::AlreadyAnnounced => "already_announced",
            Refusal::Announce(AnnounceError::NodeInfo(_)) => "bad_node_info",
            Refusal::Announce(AnnounceError::Signature(_)) => "bad_signature",
            Refusal::Announce(AnnounceError::BoundRequired) => "bound_required",
            Refusal::Announce(AnnounceError::WrongServer { .. } | AnnounceError::MissingServer) => "wrong_server",
            Refusal::Announce(AnnounceError::UnknownVersion(_)) => "unknown_version",
            Refusal::SpoofedSender => "spoofed_sender",
            Refusal::SelfAddressed => "self_addressed",
            Refusal::SourceRateLimited => "source_rate_limited",
            Refusal::ListRateLimited => "list_rate_limited",
            Refusal::RelayThrottled => "relay_throttled",
        }
    }
}

/// The `Error` a connection gets when its node announced on a newer one.
pub const REPLACED_ERROR: &str = "New Connection with same ID";
