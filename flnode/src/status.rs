//! What `flnode status` and `flnode peers` print: one block per peer, the
//! first line of each `peer <ID> <state>` as scripts and tests read it.

use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use flproto::overlay::OverlayAddresses;
use flproto::NodeId;

use crate::peer::{path_words, PeerStats};
use crate::peers::{PeerEntry, Peers};
use crate::test_peers::TestPeers;
use crate::wireguard::device::PeerView;
use crate::wireguard::manager::WgStatus;
use crate::wireguard::plan::{Clash, Fate, PeerPlan};

/// Everything the report is made from.
pub struct Inputs<'a> {
    pub me: &'a NodeId,
    pub registered: bool,
    /// What the server said about relaying datagrams for this node.
    pub relay: &'a str,
    pub peers: &'a Peers,
    pub test_peers: &'a TestPeers,
    /// Managed mode: the WireGuard manager's latest view.
    pub wireguard: Option<&'a WgStatus>,
}

pub fn report(inputs: &Inputs<'_>) -> String {
    let signal = if inputs.registered { "registered" } else { "connecting" };
    let (taken, slots) = inputs.test_peers.slots();
    let mut report = format!(
        "node {} signal {signal}  relay {}  test-peer slots {taken}/{slots}  strangers refused {}\n",
        inputs.me,
        inputs.relay,
        inputs.test_peers.refused()
    );
    if let Some(wg) = inputs.wireguard {
        let _ = writeln!(
            report,
            "wireguard {} backend {} port {}  overlay {}",
            wg.interface,
            wg.backend.name(),
            wg.listen_port,
            wg.own
        );
        if let Some(error) = &wg.error {
            let _ = writeln!(report, "  error: {error}");
        }
    }
    for (id, peer) in inputs.peers.entries() {
        let _ = write!(report, "peer {id} {}", path_words(&peer.stats).0);
        if let Some(allowed) = inputs.peers.allow_list().and_then(|list| list.get(id)) {
            let _ = write!(report, "  name {}", allowed.label());
        }
        report.push('\n');
        if let Some(wg) = inputs.wireguard {
            report.push_str(&wireguard_lines(id, wg));
        }
        report.push_str(&path_lines(peer));
    }
    for (id, peer) in inputs.test_peers.live() {
        let s = &peer.stats;
        let path = s.path.lock().ok().and_then(|p| p.clone());
        let path = path.map(|info| info.path).unwrap_or_else(|| "-".to_owned());
        let _ = writeln!(
            report,
            "test-peer {id} {}  path {path}  setups {}  (ctl only)",
            s.state.get(),
            setups_word(s)
        );
    }
    report
}

/// The allow-list as `flnode peers` prints it: name, ID, addresses and
/// state, one line each.
pub fn peer_list(peers: &Peers, wireguard: Option<&WgStatus>) -> String {
    let Some(allow) = peers.allow_list() else {
        return "manual mode: the peers are the --peer ID=ADDR entries, fixed at start\n".into();
    };
    let mut list = String::new();
    for allowed in allow.iter() {
        let state = peers
            .entries()
            .into_iter()
            .find(|(id, _)| **id == allowed.id)
            .map_or("-", |(_, entry)| entry.stats.state.get());
        let addresses = wireguard
            .and_then(|wg| wg.peer(&allowed.id))
            .map_or_else(|| allowed.addresses().to_string(), |(plan, _)| addresses(plan));
        let _ = writeln!(list, "{} {} {addresses} {state}", allowed.label(), allowed.id);
    }
    list
}

/// The addresses as planned, each with what became of it.
fn addresses(plan: &PeerPlan) -> String {
    fn one<A: std::fmt::Display + Copy>(fate: &Fate<A>) -> String {
        match fate {
            Fate::Routed(address) => address.to_string(),
            Fate::Clashes(address, Clash::ThisNode) => format!("{address} (clashes with this node: not routed)"),
            Fate::Clashes(address, Clash::Peer(other)) => {
                format!("{address} (clashes with peer {}: not routed)", &other.to_string()[..8])
            }
        }
    }
    format!("{} {}", one(&plan.v4), one(&plan.v6))
}

fn wireguard_lines(id: &NodeId, wg: &WgStatus) -> String {
    let Some((plan, view)) = wg.peer(id) else {
        return format!("  overlay {}\n", OverlayAddresses::of(id));
    };
    let entry = match (&plan.entry, view) {
        (None, _) => "no entry (offline)".to_owned(),
        (Some(_), None) => "entry pending".to_owned(),
        (Some(_), Some(view)) => entry_line(view),
    };
    format!("  overlay {}\n  wireguard {entry}\n", addresses(plan))
}

fn entry_line(view: &PeerView) -> String {
    let handshake = match view.last_handshake {
        None => "never".to_owned(),
        Some(at) => match SystemTime::now().duration_since(at) {
            Ok(age) => format!("{}s ago", age.as_secs()),
            Err(_) => "just now".to_owned(),
        },
    };
    format!(
        "handshake {handshake}  rx {} bytes  tx {} bytes",
        view.rx_bytes, view.tx_bytes
    )
}

fn path_lines(peer: &PeerEntry) -> String {
    let s = &peer.stats;
    let (_, path, rtt) = path_words(s);
    format!(
        "  local {}  path {path}  rtt {rtt}\n  tx {} packets {} bytes  rx {} packets {} bytes  drops {} not-open {} full {} foreign {} oversize {} halves  setup refused {}  handovers {}  setups {}\n",
        peer.local.map(|local| local.to_string()).unwrap_or_default(),
        s.tx_packets.load(Ordering::Relaxed),
        s.tx_bytes.load(Ordering::Relaxed),
        s.rx_packets.load(Ordering::Relaxed),
        s.rx_bytes.load(Ordering::Relaxed),
        s.drops_not_open.load(Ordering::Relaxed),
        s.drops_full.load(Ordering::Relaxed),
        s.drops_foreign.load(Ordering::Relaxed),
        s.drops_oversize.load(Ordering::Relaxed),
        s.drops_halves.load(Ordering::Relaxed),
        s.setup_refused.load(Ordering::Relaxed),
        s.handovers.load(Ordering::Relaxed),
        setups_word(s),
    )
}

/// Whether this peer's setup messages go sealed or plain.
fn setups_word(stats: &PeerStats) -> &'static str {
    if stats.sealing.load(Ordering::Relaxed) {
        "sealed"
    } else {
        "plain"
    }
}
