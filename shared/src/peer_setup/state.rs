//! The word `flnode status` shows for a peer, and how the peer's state
//! machine arrives at it.

use super::{LinkState, PeerSetup};

/// The word `flnode status` shows for a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    Offline,
    /// Online, but no connection is being set up: the follower asked for
    /// an offer, or the next attempt is due after the back-off.
    Waiting,
    Connecting,
    Connected,
    Failed,
    /// Data still flows over the old connection while a new one is set up.
    Handover,
}

impl PeerState {
    /// Every state, in a fixed order (an index into it fits a byte).
    pub const ALL: [PeerState; 6] = [
        PeerState::Offline,
        PeerState::Waiting,
        PeerState::Connecting,
        PeerState::Connected,
        PeerState::Failed,
        PeerState::Handover,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PeerState::Offline => "offline",
            PeerState::Waiting => "waiting",
            PeerState::Connecting => "connecting",
            PeerState::Connected => "connected",
            PeerState::Failed => "failed",
            PeerState::Handover => "handover",
        }
    }
}

impl PeerSetup {
    pub fn state(&self) -> PeerState {
        let current = self.current.as_ref();
        if self.exhausted {
            PeerState::Failed
        } else if current.is_some_and(|link| link.state == LinkState::Connected) {
            PeerState::Connected
        } else if self.previous.is_some() {
            PeerState::Handover
        } else if !self.online {
            PeerState::Offline
        } else if current.is_some_and(|link| link.state == LinkState::Failed) {
            PeerState::Failed
        } else if current.is_some() {
            PeerState::Connecting
        } else {
            PeerState::Waiting
        }
    }
}
