//! Which allowed peers get a WireGuard entry right now, and which of their
//! overlay addresses are routed to them. Pure: the allow-list, what each
//! peer's task reports (online or not, the addresses it announced over
//! `ctl`) and the time in; the wanted entries and the collisions out.
//!
//! * A peer gets its entry while it is online (being connected, connected,
//!   or in a handover) and keeps it for a grace period after it went
//!   offline, so that a restart or a signalling outage does not churn the
//!   table; after that it is removed, and added again when the peer is back.
//! * One side of each pair starts WireGuard's handshake, the other cannot
//!   ([`Handshake`]): two handshakes that cross are both dropped by
//!   WireGuard, which retries only after 5 s, and flnode's data path,
//!   which holds datagrams while a channel opens, would release both at
//!   the same moment. The side that offers the WebRTC connection (the
//!   smaller ID) starts: it gets its entry, with an endpoint and a
//!   persistent keepalive, once the data path is connected, and a fresh
//!   entry each time the data path comes back, so that its handshake goes
//!   out at once (rather than after WireGuard's own timeouts when the peer
//!   restarted). The other side's entry has no endpoint, so that its own
//!   traffic waits for that handshake instead of starting one.
//! * An address two parties claim is routed to neither: IPv4 overlay
//!   addresses have only 22 bits, and a shared one must never carry one
//!   peer's traffic to the other. An address announced by a peer (its
//!   `--address`) never displaces one derived from another peer's ID or
//!   this node's own, so a peer cannot take another's address away by
//!   announcing it.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use flproto::overlay::OverlayAddresses;
use flproto::NodeId;
use ipnet::IpNet;

use super::device::{Handshake, PeerConfig};
use super::key::WgKey;

/// Persistent keepalive on the side that starts the handshake (see the
/// module's doc): it keeps the tunnel's state fresh on both ends between
/// bursts of traffic.
pub const PERSISTENT_KEEPALIVE_SECS: u16 = 25;

/// How far a peer's connection is, as its WireGuard entry cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    Offline,
    /// Online: being connected (or waiting to be).
    Online,
    /// The data path is up (or in a handover).
    Connected,
}

/// What the peer's task and the allow-list say about one peer.
#[derive(Debug, Clone)]
pub struct PeerFacts {
    pub id: NodeId,
    /// flnode's local port for the peer: its WireGuard endpoint.
    pub local: SocketAddr,
    pub reach: Reach,
    /// The addresses it announced over `ctl`, if it did.
    pub announced: Option<OverlayAddresses>,
}

/// When each peer was last seen online and connected.
#[derive(Debug, Default)]
pub struct Presence {
    peers: HashMap<NodeId, Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    online: Option<Instant>,
    connected: Option<Instant>,
    /// Connected at the last update.
    connected_last: bool,
    /// Connected at the last update and not at the one before.
    just_connected: bool,
}

impl Presence {
    /// Notes what the peers' tasks say at `now`, and forgets peers no
    /// longer on the list.
    pub fn update(&mut self, peers: &[PeerFacts], now: Instant) {
        self.peers.retain(|id, _| peers.iter().any(|peer| peer.id == *id));
        for peer in peers {
            let seen = self.peers.entry(peer.id).or_default();
            let connected = peer.reach == Reach::Connected;
            seen.just_connected = connected && !seen.connected_last;
            seen.connected_last = connected;
            if peer.reach != Reach::Offline {
                seen.online = Some(now);
            }
            if connected {
                seen.connected = Some(now);
            }
        }
    }

    /// Whether `id` was online within `grace` of `now`.
    pub fn recent(&self, id: &NodeId, now: Instant, grace: Duration) -> bool {
        within(self.peers.get(id).and_then(|seen| seen.online), now, grace)
    }

    /// Whether `id` was connected within `grace` of `now`.
    pub fn recently_connected(&self, id: &NodeId, now: Instant, grace: Duration) -> bool {
        within(self.peers.get(id).and_then(|seen| seen.connected), now, grace)
    }

    /// Whether `id` became connected at the last update.
    pub fn just_connected(&self, id: &NodeId) -> bool {
        self.peers.get(id).is_some_and(|seen| seen.just_connected)
    }
}

fn within(seen: Option<Instant>, now: Instant, grace: Duration) -> bool {
    seen.is_some_and(|seen| now.saturating_duration_since(seen) <= grace)
}

/// Who else claims an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clash {
    ThisNode,
    Peer(NodeId),
}

/// What became of one of a peer's addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate<A> {
    Routed(A),
    /// Claimed by someone else too: routed to no one.
    Clashes(A, Clash),
}

impl<A: Copy> Fate<A> {
    pub fn routed(&self) -> Option<A> {
        match self {
            Fate::Routed(address) => Some(*address),
            Fate::Clashes(..) => None,
        }
    }

    #[cfg(test)]
    pub fn address(&self) -> A {
        match self {
            Fate::Routed(address) | Fate::Clashes(address, _) => *address,
        }
    }
}

/// One peer's share of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerPlan {
    pub id: NodeId,
    pub v4: Fate<Ipv4Addr>,
    pub v6: Fate<Ipv6Addr>,
    /// Its entry, if it should have one now.
    pub entry: Option<PeerConfig>,
    /// The entry is to be made afresh (removed, then set): this side
    /// starts the handshake and the data path just came (back) up.
    pub renew: bool,
}

/// The plan for every allowed peer, in the order given.
pub fn plan(
    me: &NodeId,
    own: OverlayAddresses,
    peers: &[PeerFacts],
    presence: &Presence,
    now: Instant,
    grace: Duration,
) -> Vec<PeerPlan> {
    let v4 = fates(own.v4, &claims(peers, |addresses| addresses.v4));
    let v6 = fates(own.v6, &claims(peers, |addresses| addresses.v6));
    peers
        .iter()
        .zip(v4.into_iter().zip(v6))
        .map(|(peer, (v4, v6))| {
            let starts = *me < peer.id;
            let present = if starts {
                presence.recently_connected(&peer.id, now, grace)
            } else {
                presence.recent(&peer.id, now, grace)
            };
            let entry = present.then(|| WgKey::of(&peer.id)).flatten().map(|key| {
                let mut allowed_ips: Vec<IpNet> = v4
                    .routed()
                    .map(|ip| IpNet::from(IpAddr::V4(ip)))
                    .into_iter()
                    .chain(v6.routed().map(|ip| IpNet::from(IpAddr::V6(ip))))
                    .collect();
                allowed_ips.sort();
                PeerConfig {
                    key,
                    endpoint: peer.local,
                    allowed_ips,
                    handshake: if starts {
                        Handshake::Starts {
                            keepalive: PERSISTENT_KEEPALIVE_SECS,
                        }
                    } else {
                        Handshake::Answers
                    },
                }
            });
            PeerPlan {
                id: peer.id,
                v4,
                v6,
                renew: entry.is_some() && starts && presence.just_connected(&peer.id),
                entry,
            }
        })
        .collect()
}

/// A peer's claim to an address.
struct Claim<A> {
    id: NodeId,
    address: A,
    /// Announced over `ctl` rather than derived from its ID.
    announced: bool,
}

/// Every peer's claim to its address of one family: the one it announced,
/// if that differs from the one derived from its ID.
fn claims<A: Copy + Eq>(peers: &[PeerFacts], pick: impl Fn(&OverlayAddresses) -> A) -> Vec<Claim<A>> {
    peers
        .iter()
        .map(|peer| {
            let derived = pick(&OverlayAddresses::of(&peer.id));
            let announced = peer
                .announced
                .as_ref()
                .map(&pick)
                .filter(|announced| *announced != derived);
            Claim {
                id: peer.id,
                address: announced.unwrap_or(derived),
                announced: announced.is_some(),
            }
        })
        .collect()
}

/// Each claim's fate: one that this node's own address or another claim
/// shares clashes, except that a derived claim beats announced ones.
fn fates<A: Copy + Eq + Hash>(own: A, claims: &[Claim<A>]) -> Vec<Fate<A>> {
    claims
        .iter()
        .enumerate()
        .map(|(index, claim)| {
            if claim.address == own {
                return Fate::Clashes(claim.address, Clash::ThisNode);
            }
            let mut others = claims
                .iter()
                .enumerate()
                .filter(|(other, rival)| *other != index && rival.address == claim.address)
                .map(|(_, rival)| rival);
            let derived_rival = others.clone().find(|rival| !rival.announced);
            match (claim.announced, derived_rival, others.next()) {
                (_, _, None) => Fate::Routed(claim.address),
                (false, None, Some(_)) => Fate::Routed(claim.address),
                (_, Some(rival), _) => Fate::Clashes(claim.address, Clash::Peer(rival.id)),
                (true, None, Some(rival)) => Fate::Clashes(claim.address, Clash::Peer(rival.id)),
            }
        })
        .collect()
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
