//! One peer connection as the peer's state machine sees it: its state, its
//! channels, and whether the peer's description of it has been applied.

use std::time::Instant;

/// A connection this node built, numbered in the order they were built, so
/// that events of a replaced one are told apart from the current one's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// What the WebRTC stack says of a connection (a closed one counts as
/// failed: either way it carries nothing any more).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    Connecting,
    Connected,
    Failed,
}

/// Where the peer's side of the connection stands.
#[derive(Debug)]
enum Remote {
    /// No description applied yet: its candidates wait, with the
    /// generation they were signed under.
    Undescribed { pending: Vec<(u64, String)> },
    /// The description of the peer's attempt `generation` is applied: its
    /// candidates belong to this connection, any others to one we no
    /// longer have.
    Described { generation: u64 },
}

/// What becomes of a remote candidate.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum CandidateFate {
    Apply(String),
    Kept,
    /// The buffer is full, or the candidate is of another attempt.
    Dropped,
}

#[derive(Debug)]
pub(super) struct Link {
    pub(super) id: ConnId,
    pub(super) state: LinkState,
    pub(super) wg_open: bool,
    pub(super) ctl_open: bool,
    /// When the connection last answered a keepalive.
    pub(super) last_pong: Option<Instant>,
    remote: Remote,
}

impl Link {
    pub(super) fn new(id: ConnId) -> Self {
        Self {
            id,
            state: LinkState::Connecting,
            wg_open: false,
            ctl_open: false,
            last_pong: None,
            remote: Remote::Undescribed { pending: Vec::new() },
        }
    }

    pub(super) fn is_described(&self) -> bool {
        matches!(self.remote, Remote::Described { .. })
    }

    /// Records that the peer's attempt `generation` describes this
    /// connection; returns the waiting candidates of that attempt.
    pub(super) fn describe(&mut self, generation: u64) -> Vec<String> {
        let previous = std::mem::replace(&mut self.remote, Remote::Described { generation });
        match previous {
            Remote::Undescribed { pending } => pending
                .into_iter()
                .filter(|(of, _)| *of == generation)
                .map(|(_, candidate)| candidate)
                .collect(),
            Remote::Described { .. } => Vec::new(),
        }
    }

    /// Decides about a remote candidate of the peer's attempt `generation`.
    pub(super) fn candidate(&mut self, generation: u64, candidate: String, max_pending: usize) -> CandidateFate {
        match &mut self.remote {
            Remote::Undescribed { pending } if pending.len() < max_pending => {
                pending.push((generation, candidate));
                CandidateFate::Kept
            }
            Remote::Undescribed { .. } => CandidateFate::Dropped,
            Remote::Described { generation: described } if *described == generation => CandidateFate::Apply(candidate),
            Remote::Described { .. } => CandidateFate::Dropped,
        }
    }
}
