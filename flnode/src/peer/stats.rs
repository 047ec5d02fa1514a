//! What `flnode status` shows of a peer: counters, the path, the state word.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

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
    /// Setup messages refused: unsigned, badly signed, replayed or stale.
    pub setup_refused: AtomicU64,
    /// Connections rebuilt because the network changed or the path died.
    pub handovers: AtomicU64,
    /// Round trip of the last answered `ctl` keepalive, in microseconds
    /// (0 until one is answered): the whole data path, end to end.
    pub ctl_rtt_micros: AtomicU64,
    /// The selected candidate pair and its RTT, refreshed every second.
    pub path: std::sync::Mutex<Option<crate::path_stats::PathInfo>>,
}

/// The connection state word shown by `flnode status`.
#[derive(Debug, Default)]
pub struct StateCell(AtomicU8);

/// The words [`StateCell`] can hold; `connected` means the data path is up.
/// `handover` means data still flows over the old connection while a new
/// one is set up.
pub const STATE_NAMES: [&str; 6] = ["offline", "waiting", "connecting", "connected", "failed", "handover"];

impl StateCell {
    pub fn set(&self, name: &str) {
        let index = STATE_NAMES.iter().position(|n| *n == name).unwrap_or(0);
        self.0.store(index as u8, Ordering::Relaxed);
    }

    pub fn get(&self) -> &'static str {
        STATE_NAMES[usize::from(self.0.load(Ordering::Relaxed)).min(STATE_NAMES.len() - 1)]
    }
}
