//! Who the TURN service's clients are and where each stands: between its
//! first request and an allocation (a bounded table, the least recently
//! heard pushed out first), or holding one (found by its relay address
//! too). A client is in exactly one of the two.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use flproto::NodeId;
use lru::LruCache;
use turn_server_proto::server::TurnServer;

use super::gate::User;
use super::shaper::Lane;
use super::sink::ClientAddr;

/// One client: its own `turn-server-proto` state machine and what
/// flsignal knows of it.
pub struct Client {
    pub machine: TurnServer,
    /// Last datagram from the client (handshakes time out from it).
    pub last_heard: Instant,
    /// The credential it authenticated with, once an Allocate passed.
    pub user: Option<User>,
    /// Its relay, once it has one.
    pub relay: Option<Allocation>,
}

/// A client's relay.
pub struct Allocation {
    pub relay: SocketAddr,
    pub made: Instant,
    /// Its byte budget and what waits for it.
    pub lane: Lane,
}

pub struct Clients {
    handshakes: LruCache<ClientAddr, Client>,
    allocated: HashMap<ClientAddr, Client>,
    /// Which client each relay address belongs to (an index of `allocated`).
    relays: HashMap<SocketAddr, ClientAddr>,
}

impl Clients {
    pub fn new(max_handshakes: usize) -> Clients {
        let max = NonZeroUsize::new(max_handshakes).unwrap_or(NonZeroUsize::MIN);
        Clients {
            handshakes: LruCache::new(max),
            allocated: HashMap::new(),
            relays: HashMap::new(),
        }
    }

    pub fn is_allocated(&self, client: &ClientAddr) -> bool {
        self.allocated.contains_key(client)
    }

    /// Allocations held.
    pub fn allocations(&self) -> usize {
        self.allocated.len()
    }

    /// Clients between their first request and an allocation.
    pub fn handshakes(&self) -> usize {
        self.handshakes.len()
    }

    pub fn get(&self, client: &ClientAddr) -> Option<&Client> {
        self.allocated.get(client).or_else(|| self.handshakes.peek(client))
    }

    pub fn get_mut(&mut self, client: &ClientAddr) -> Option<&mut Client> {
        match self.allocated.get_mut(client) {
            Some(held) => Some(held),
            None => self.handshakes.peek_mut(client),
        }
    }

    /// The client, if it holds an allocation.
    pub fn allocated_mut(&mut self, client: &ClientAddr) -> Option<&mut Client> {
        self.allocated.get_mut(client)
    }

    /// Notes that `client` was heard from at `now`; whether it is one.
    pub fn heard(&mut self, client: &ClientAddr, now: Instant) -> bool {
        let held = match self.allocated.get_mut(client) {
            Some(held) => Some(held),
            None => self.handshakes.get_mut(client),
        };
        held.map(|held| held.last_heard = now).is_some()
    }

    /// Starts `client`'s handshake; true if another was pushed out of the
    /// full table for it.
    pub fn start(&mut self, addr: ClientAddr, client: Client) -> bool {
        self.handshakes.push(addr, client).is_some()
    }

    /// Whose relay `relay` is.
    pub fn owner_of(&self, relay: &SocketAddr) -> Option<ClientAddr> {
        self.relays.get(relay).copied()
    }

    /// Moves a client in its handshake, which has authenticated, to the
    /// allocated, holding `allocation`; its node. `None` (the allocation
    /// dropped, for the caller to close its socket) if it is not such a
    /// client.
    pub fn promote(&mut self, addr: ClientAddr, allocation: Allocation) -> Option<NodeId> {
        let node = self.handshakes.peek(&addr)?.user.as_ref()?.node;
        let mut client = self.handshakes.pop(&addr)?;
        self.relays.insert(allocation.relay, addr);
        client.relay = Some(allocation);
        self.allocated.insert(addr, client);
        Some(node)
    }

    /// Takes out `addr`, whose relay is `relay`, with its allocation.
    pub fn remove_allocated(&mut self, addr: &ClientAddr, relay: &SocketAddr) -> Option<Client> {
        if self.relays.get(relay) != Some(addr) {
            return None;
        }
        self.relays.remove(relay);
        self.allocated.remove(addr)
    }

    /// Forgets a client in its handshake.
    pub fn forget_handshake(&mut self, addr: &ClientAddr) {
        self.handshakes.pop(addr);
    }

    /// Forgets the handshakes not heard from for `timeout`.
    pub fn expire_handshakes(&mut self, now: Instant, timeout: Duration) {
        while let Some((_, client)) = self.handshakes.peek_lru() {
            if now.saturating_duration_since(client.last_heard) < timeout {
                break;
            }
            self.handshakes.pop_lru();
        }
    }

    /// The allocations (client, relay) made at least `max_age` ago.
    pub fn aged(&self, now: Instant, max_age: Duration) -> Vec<(ClientAddr, SocketAddr)> {
        self.allocated
            .iter()
            .filter_map(|(addr, client)| client.relay.as_ref().map(|a| (*addr, a)))
            .filter(|(_, allocation)| now.saturating_duration_since(allocation.made) >= max_age)
            .map(|(addr, allocation)| (addr, allocation.relay))
            .collect()
    }

    /// Every client that holds an allocation.
    pub fn allocated_clients(&self) -> Vec<ClientAddr> {
        self.allocated.keys().copied().collect()
    }
}
