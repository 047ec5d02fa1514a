//! What `flnode status` shows of a peer: counters, the path, the state word.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use flproto::overlay::OverlayAddresses;
use flproto::peer_setup::PeerState;
use tokio::sync::Notify;

/// Counters for `flnode status`.
#[derive(Debug, Default)]
pub struct PeerStats {
    pub state: StateCell,
    pub tx_packets: AtomicU64,
    pub tx_bytes: AtomicU64,
    pub rx_packets: AtomicU64,
    pub rx_bytes: AtomicU64,
    /// Datagrams from WireGuard dropped because the channel was not open.
    pub drops_not_open: AtomicU64,
    /// Datagrams dropped because the channel's send buffer was full.
    pub drops_full: AtomicU64,
    /// Datagrams on the WireGuard-facing port from anything but the local
    /// WireGuard (another local process): dropped, never forwarded.
    pub drops_foreign: AtomicU64,
    /// Datagrams from WireGuard that filled a whole receive slot and may
    /// have been cut short: dropped (see `crate::udp_batch::RECV_SLOT_BYTES`).
    pub drops_oversize: AtomicU64,
    /// Halves of datagrams (`flproto::halves`) dropped: malformed, never
    /// joined by their partner in time, or pushed out of a full table.
    pub drops_halves: AtomicU64,
    /// Setup messages refused: unsigned, badly signed, replayed, stale,
    /// sealed but not opening, or plain where sealed ones were due.
    pub setup_refused: AtomicU64,
    /// Whether what this node sends the peer now goes sealed.
    pub sealing: AtomicBool,
    /// Connections rebuilt because the network changed or the path died.
    pub handovers: AtomicU64,
    /// Round trip of the last answered `ctl` keepalive, in microseconds
    /// (0 until one is answered): the whole data path, end to end.
    pub ctl_rtt_micros: AtomicU64,
    /// Round trip of the last relay pong, in microseconds (0 until one
    /// came): the path through the signalling server, end to end.
    pub relay_rtt_micros: AtomicU64,
    /// Whether the signalling server's relay carries the datagrams.
    pub relayed: AtomicBool,
    /// The selected candidate pair and its RTT, refreshed every second.
    pub path: std::sync::Mutex<Option<crate::path_stats::PathInfo>>,
    /// The overlay addresses the peer announced over `ctl` (managed mode).
    pub announced: std::sync::Mutex<Option<OverlayAddresses>>,
    /// Told when the state or the announced addresses change (managed
    /// mode: the WireGuard manager waits on it).
    pub changes: ChangeSignal,
}

/// Wakes whoever follows a peer's changes, if anyone does.
#[derive(Debug, Default, Clone)]
pub struct ChangeSignal(Option<Arc<Notify>>);

impl ChangeSignal {
    pub fn to(notify: Arc<Notify>) -> Self {
        ChangeSignal(Some(notify))
    }

    pub fn notify(&self) {
        if let Some(notify) = &self.0 {
            notify.notify_one();
        }
    }
}

/// The peer's state as `flnode status` shows it, written by the peer task
/// and read by the status report.
#[derive(Debug, Default)]
pub struct StateCell(AtomicU8);

impl StateCell {
    /// Stores `state`; whether it differs from the one before.
    pub fn set(&self, state: PeerState) -> bool {
        let index = PeerState::ALL.iter().position(|s| *s == state).unwrap_or(0);
        self.0.swap(index as u8, Ordering::Relaxed) != index as u8
    }

    pub fn state(&self) -> PeerState {
        let index = usize::from(self.0.load(Ordering::Relaxed));
        PeerState::ALL.get(index).copied().unwrap_or(PeerState::Offline)
    }

    pub fn get(&self) -> &'static str {
        self.state().name()
    }
}

/// What `flnode status` says of a peer's path: its state word, the path
/// and its round trip.
pub fn path_words(stats: &PeerStats) -> (&'static str, String, String) {
    let micros = |cell: &AtomicU64| match cell.load(Ordering::Relaxed) {
        0 => "-".to_owned(),
        micros => format!("{:.2} ms", micros as f64 / 1000.0),
    };
    let state = stats.state.get();
    if stats.relayed.load(Ordering::Relaxed) {
        // The state machine still attempts a data channel meanwhile.
        let rtt = format!("{} (relay ping)", micros(&stats.relay_rtt_micros));
        return ("relayed", "relayed through flsignal".to_owned(), rtt);
    }
    let path = stats.path.lock().ok().and_then(|p| p.clone());
    let (path, ice_rtt) = match path {
        Some(info) => (info.path, format!("{:.2} ms", info.rtt_ms)),
        None => ("-".to_owned(), "-".to_owned()),
    };
    // Our own keepalive's round trip is the one a user feels; ICE's
    // consent checks measure only the UDP path (and over TURN, webrtc
    // reports them hundreds of milliseconds high).
    let rtt = format!("{} (ctl ping; ICE check {ice_rtt})", micros(&stats.ctl_rtt_micros));
    (state, path, rtt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relayed_peer_says_so_with_the_relay_round_trip() {
        let stats = PeerStats::default();
        stats.state.set(PeerState::Connecting);
        stats.relay_rtt_micros.store(1_234, Ordering::Relaxed);
        assert_eq!(path_words(&stats).0, "connecting");
        stats.relayed.store(true, Ordering::Relaxed);
        assert_eq!(
            path_words(&stats),
            (
                "relayed",
                "relayed through flsignal".to_owned(),
                "1.23 ms (relay ping)".to_owned()
            )
        );
    }

    #[test]
    fn every_state_is_shown_by_its_own_name() {
        let cell = StateCell::default();
        assert_eq!(cell.get(), "offline");
        for state in PeerState::ALL {
            cell.set(state);
            assert_eq!(cell.get(), state.name());
            assert_eq!(cell.state(), state);
        }
        assert!(!cell.set(PeerState::Handover), "no change");
        assert!(cell.set(PeerState::Offline));
    }
}
