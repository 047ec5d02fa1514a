//! What goes into the peer's state machine and what comes out.

use super::{Carrier, ConnId, LinkState, Refusal};
use crate::message::PeerInfo;
use crate::seal::SealError;
use crate::setup_message::Opens;

/// Why a handover started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandoverCause {
    NetworkChanged,
    PeerAsked,
    KeepalivesUnanswered,
}

impl std::fmt::Display for HandoverCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HandoverCause::NetworkChanged => "the network changed",
            HandoverCause::PeerAsked => "the peer asked for a new connection",
            HandoverCause::KeepalivesUnanswered => "keepalives went unanswered",
        })
    }
}

/// What happened, as the driver saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The peer may be online (it is in the node list, or the node just
    /// registered): try to connect. What its node info says it opens, if
    /// the list had it.
    Online(Option<Opens>),
    /// The peer left the node list.
    Offline,
    /// The machine's addresses changed.
    NetworkChanged,
    /// A setup message naming this peer, as it arrived (not yet verified).
    Setup(PeerInfo),
    /// The initiator's connection `conn` has its data channels and its local
    /// offer, as asked by [`Action::Connect`].
    OfferReady(ConnId, String),
    /// The follower's connection `conn` applied the offer and has its local
    /// answer.
    AnswerReady(ConnId, String),
    /// Building `conn` or applying a description to it failed.
    BuildFailed(ConnId),
    /// `conn` gathered a local candidate.
    LocalCandidate(ConnId, String),
    /// `conn`'s peer connection changed state.
    Link(ConnId, LinkState),
    WgOpen(ConnId),
    CtlOpen(ConnId),
    /// A keepalive came back on `conn`'s `ctl`.
    Pong(ConnId),
    /// A test peer used up what it may move over `conn`: its connection
    /// goes, and it gets no other for as long as this peer lives.
    Exhausted(ConnId),
    /// The signalling server granted this node the datagram relay
    /// (`true`), or refused it, or the signalling connection is gone.
    RelayGranted(bool),
    /// The peer answered a relay ping.
    RelayPong,
}

/// What the driver must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this signed (and, to a peer that opens them, sealed) setup
    /// message through signalling.
    Send(PeerInfo),
    /// A setup message could not be sealed and was not sent (log it).
    Unsent(SealError),
    /// Build peer connection `conn`. Without `offer` (the initiator), give it
    /// its data channels and a local offer, then report
    /// [`Event::OfferReady`]; with one (the follower), apply it, create the
    /// answer and report [`Event::AnswerReady`]. Report
    /// [`Event::BuildFailed`] if any step fails.
    Connect { conn: ConnId, offer: Option<String> },
    /// Apply the peer's answer to `conn`.
    ApplyAnswer { conn: ConnId, sdp: String },
    /// Give `conn` a remote candidate.
    ApplyCandidate { conn: ConnId, candidate: String },
    /// Close `conn` and forget its channels.
    Close(ConnId),
    /// WireGuard datagrams go this way from now on (datagrams held while
    /// there was none go first); `None`: hold them.
    CarryData(Option<Carrier>),
    /// Send a keepalive ping on `conn`'s `ctl`.
    Ping(ConnId),
    /// The path to the signalling server may have died with the data path:
    /// have it checked now.
    ProbeSignalling,
    /// A handover started (count it, log it).
    Handover(HandoverCause),
    /// A setup message was refused; `log` says whether this one should be
    /// logged (see [`super::REFUSAL_LOG_INTERVAL`]), `total` counts all so far.
    Refused { error: Refusal, total: u64, log: bool },
    /// A test peer has been gone for [`super::TEST_PEER_IDLE`]: end its task.
    Finished,
    /// Send the peer a ping through the signalling server's relay.
    RelayPing,
}
