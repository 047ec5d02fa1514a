//! Who may have a WireGuard peer entry on a managed interface: node IDs,
//! each with an optional name, as `--peer ID` flags, `peers = [...]` in
//! flnode.toml, or `flnode peers add`. Pure: text in, checked entries or a
//! one-line error out.
//!
//! An entry is a node ID and nothing else: its WireGuard key
//! (`flproto::x25519`) and overlay addresses (`flproto::overlay`) follow
//! from it. So an ID that is not the encoding of a usable Ed25519 key is
//! refused here, where the user typed it, not later in the data path.

use std::net::SocketAddr;

use flproto::overlay::OverlayAddresses;
use flproto::NodeId;

/// Longest peer name: it is shown in `flnode status` lines.
pub const MAX_PEER_NAME: usize = 32;

/// Why an allow-list entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("{0:?} is not a node ID (64 hex characters, from `flnode id` on the other machine)")]
    NotAnId(String),
    #[error("{0} is not a usable node key (not a curve point, or of small order)")]
    BadKey(NodeId),
    #[error("{0} is this node's own ID")]
    OwnId(NodeId),
    #[error("peer name {0:?}: use 1 to {MAX_PEER_NAME} letters, digits, '-', '_' or '.'")]
    BadName(String),
    #[error("{0:?}: expected ID=IP:PORT, e.g. <64 hex>=127.0.0.1:51900")]
    BadManual(String),
}

/// A name a user gave a peer, checked: short, and nothing that could break
/// a status line or a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerName(String);

impl PeerName {
    pub fn parse(text: &str) -> Result<PeerName, EntryError> {
        let fine = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if text.is_empty() || text.len() > MAX_PEER_NAME || !text.chars().all(fine) {
            return Err(EntryError::BadName(text.chars().take(MAX_PEER_NAME + 8).collect()));
        }
        Ok(PeerName(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for PeerName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A node ID checked to be usable as a managed peer: its WireGuard key
/// exists.
pub fn parse_peer_id(text: &str) -> Result<NodeId, EntryError> {
    let id: NodeId = text
        .trim()
        .parse()
        .map_err(|_| EntryError::NotAnId(text.chars().take(80).collect()))?;
    flproto::x25519::public_of(&id).map_err(|_| EntryError::BadKey(id))?;
    Ok(id)
}

/// One `--peer` value or `peers` string: a bare ID (managed mode) or
/// `ID=ADDR` (manual mode, the local port the user's WireGuard sends to).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerArg {
    Managed(NodeId),
    Manual(NodeId, SocketAddr),
}

impl PeerArg {
    pub fn parse(text: &str) -> Result<PeerArg, EntryError> {
        let Some((id, addr)) = text.split_once('=') else {
            return parse_peer_id(text).map(PeerArg::Managed);
        };
        let id = id
            .trim()
            .parse()
            .map_err(|_| EntryError::NotAnId(id.chars().take(80).collect()))?;
        let addr = addr
            .trim()
            .parse()
            .map_err(|_| EntryError::BadManual(text.chars().take(160).collect()))?;
        Ok(PeerArg::Manual(id, addr))
    }
}

/// One allowed peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedPeer {
    pub id: NodeId,
    pub name: Option<PeerName>,
}

impl AllowedPeer {
    /// The peer's derived overlay addresses.
    pub fn addresses(&self) -> OverlayAddresses {
        OverlayAddresses::of(&self.id)
    }

    /// The name if there is one, else the first 8 characters of the ID.
    pub fn label(&self) -> String {
        match &self.name {
            Some(name) => name.to_string(),
            None => self.id.to_string()[..8].to_owned(),
        }
    }
}

/// What [`AllowList::add`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    New,
    /// The ID was on the list; its name is now the one given.
    Renamed,
    Unchanged,
}

/// The allow-list in order of entry, each node at most once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    peers: Vec<AllowedPeer>,
}

impl AllowList {
    /// A list from entries in order; a node named twice keeps the later
    /// name. Refuses this node's own ID.
    pub fn new(entries: impl IntoIterator<Item = AllowedPeer>, me: &NodeId) -> Result<AllowList, EntryError> {
        let mut list = AllowList::default();
        for entry in entries {
            list.add(entry, me)?;
        }
        Ok(list)
    }

    pub fn add(&mut self, peer: AllowedPeer, me: &NodeId) -> Result<Added, EntryError> {
        if peer.id == *me {
            return Err(EntryError::OwnId(peer.id));
        }
        match self.peers.iter_mut().find(|known| known.id == peer.id) {
            Some(known) if known.name == peer.name => Ok(Added::Unchanged),
            Some(known) => {
                known.name = peer.name;
                Ok(Added::Renamed)
            }
            None => {
                self.peers.push(peer);
                Ok(Added::New)
            }
        }
    }

    /// Takes `id` off the list; whether it was on it.
    pub fn remove(&mut self, id: &NodeId) -> bool {
        let before = self.peers.len();
        self.peers.retain(|peer| peer.id != *id);
        self.peers.len() != before
    }

    pub fn get(&self, id: &NodeId) -> Option<&AllowedPeer> {
        self.peers.iter().find(|peer| peer.id == *id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &AllowedPeer> {
        self.peers.iter()
    }
}

#[cfg(test)]
mod tests {
    use flproto::identity::NodeKey;

    use super::*;

    fn id(seed: u8) -> NodeId {
        NodeKey::from_seed([seed; 32]).id()
    }

    #[test]
    fn bare_ids_are_managed_and_id_equals_addr_is_manual() {
        let text = id(2).to_string();
        assert_eq!(PeerArg::parse(&text), Ok(PeerArg::Managed(id(2))));
        assert_eq!(
            PeerArg::parse(&format!("{text}=127.0.0.1:51900")),
            Ok(PeerArg::Manual(id(2), "127.0.0.1:51900".parse().unwrap()))
        );
        assert!(matches!(PeerArg::parse("laptop"), Err(EntryError::NotAnId(_))));
        assert!(matches!(
            PeerArg::parse(&format!("{text}=nowhere")),
            Err(EntryError::BadManual(_))
        ));
    }

    #[test]
    fn ids_without_a_wireguard_key_are_refused_where_they_are_typed() {
        let mut small_order = [0u8; 32];
        small_order[0] = 1;
        let text = hex::encode(small_order);
        assert!(matches!(parse_peer_id(&text), Err(EntryError::BadKey(_))));
        let error = parse_peer_id("0123").unwrap_err().to_string();
        assert!(error.contains("64 hex characters"), "{error}");
        // A long input is not repeated in full.
        let error = parse_peer_id(&"x".repeat(10_000)).unwrap_err().to_string();
        assert!(error.len() < 200, "{error}");
    }

    #[test]
    fn names_are_short_and_plain() {
        assert_eq!(PeerName::parse("laptop-anna.2").unwrap().as_str(), "laptop-anna.2");
        for bad in [
            "",
            "two words",
            "tab\there",
            "new\nline",
            &"n".repeat(MAX_PEER_NAME + 1),
            "ünï",
        ] {
            assert!(PeerName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_list_keeps_each_node_once_and_never_this_node() {
        let me = id(1);
        let peer = |seed, name: Option<&str>| AllowedPeer {
            id: id(seed),
            name: name.map(|n| PeerName::parse(n).unwrap()),
        };
        let mut list = AllowList::new([peer(2, None), peer(3, Some("b"))], &me).unwrap();
        assert_eq!(list.add(peer(2, None), &me), Ok(Added::Unchanged));
        assert_eq!(list.add(peer(2, Some("a")), &me), Ok(Added::Renamed));
        assert_eq!(list.add(peer(4, None), &me), Ok(Added::New));
        assert_eq!(list.add(peer(1, None), &me), Err(EntryError::OwnId(me)));
        assert_eq!(list.iter().count(), 3);
        assert_eq!(list.get(&id(2)).unwrap().label(), "a");
        assert_eq!(list.get(&id(4)).unwrap().label(), &id(4).to_string()[..8]);
        assert!(list.remove(&id(3)));
        assert!(!list.remove(&id(3)));
        assert_eq!(list.iter().map(|p| p.id).collect::<Vec<_>>(), [id(2), id(4)]);
    }
}
