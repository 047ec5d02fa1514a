//! The TURN service's state: one `turn-server-proto` state machine per
//! client, the gate in front of it ([`super::gate`]), the caps and
//! byte budgets around it. No sockets and no clock: datagrams and the time
//! come in, and what must be sent, bound or closed goes to a [`Sink`].
//!
//! Why one state machine per client: the crate keeps a nonce for every
//! source address it ever answered and every user it was told of, and
//! never forgets either. Held per client, that state goes when the client
//! does — at the end of its allocation, or when a client that never got
//! one is pushed out of a bounded table of handshakes (a flood of spoofed
//! first requests costs that table, not memory). It also keeps each
//! machine's own lists (of clients, of allocations) one entry long.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use flproto::turn_credentials::TurnSecret;
use turn_server_proto::api::{SocketAllocateError, TurnServerApi, TurnServerPollRet};
use turn_server_proto::server::TurnServer;
use turn_server_proto::stun::agent::Transmit;
use turn_server_proto::types::stun::message::Message;
use turn_server_proto::types::{AddressFamily, TransportType};

use super::bandwidth::ByteRate;
use super::clients::{Allocation, Client, Clients};
use super::gate::{Caps, Gate, Held, Verdict};
use super::metrics::TurnMetrics;
use super::outgoing::{at, build_into, deliver};
use super::peer_policy::PeerPolicy;
use super::shaper::{Dest, Lane, Offer, Shaper};
pub use super::sink::{ClientAddr, Sink, Transport};

/// The limits of [`TurnState`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub caps: Caps,
    pub node_rate: ByteRate,
    pub allocation_rate: ByteRate,
    pub max_allocation_age: Duration,
    pub max_handshakes: usize,
    pub handshake_timeout: Duration,
}

/// What the service is configured with.
pub struct Setup {
    pub secret: TurnSecret,
    pub realm: String,
    pub policy: PeerPolicy,
    pub limits: Limits,
}

pub struct TurnState {
    setup: Setup,
    /// Maps `Instant`s to the crate's clock (nanoseconds since this).
    epoch: Instant,
    clients: Clients,
    /// The nodes' budgets and allocation counts.
    shaper: Shaper,
    /// Allocations with datagrams waiting for their budgets.
    backlog: HashSet<ClientAddr>,
    metrics: TurnMetrics,
    /// Where outgoing datagrams are built.
    scratch: Vec<u8>,
}

impl TurnState {
    pub fn new(setup: Setup, metrics: TurnMetrics, now: Instant) -> TurnState {
        let shaper = Shaper::new(setup.limits.node_rate);
        let clients = Clients::new(setup.limits.max_handshakes);
        TurnState {
            setup,
            epoch: now,
            clients,
            shaper,
            backlog: HashSet::new(),
            metrics,
            scratch: Vec::new(),
        }
    }

    /// Whether `client` holds an allocation (its datagrams need no reply
    /// budget: they are authenticated or relayed within byte budgets).
    pub fn is_allocated(&self, client: &ClientAddr) -> bool {
        self.clients.is_allocated(client)
    }

    /// A datagram (or, over TCP, one framed message) from a client.
    pub fn on_client(&mut self, from: ClientAddr, data: &[u8], now: Instant, unix: u64, sink: &mut impl Sink) {
        let message = Message::from_bytes(data).ok();
        if !self.admit(from, message.is_some(), now) {
            return;
        }
        if let Some(message) = &message {
            match self.verdict(&from, message, unix) {
                Verdict::Pass => {}
                Verdict::Admit(user) => {
                    if let Some(client) = self.clients.get_mut(&from) {
                        client
                            .machine
                            .add_user(user.username().to_owned(), user.password().to_owned());
                        client.user = Some(user);
                    }
                }
                Verdict::PassToRefuse(reason) => self.metrics.refused(reason),
                Verdict::Refuse { reason, reply } => {
                    self.metrics.refused(reason);
                    sink.to_client(from, &reply);
                    return;
                }
            }
        }
        self.feed(from, data, now, sink);
        if message.is_some() {
            self.progress(from, now, sink);
        }
    }

    /// Whether `from` is a client, making it one if it may become one:
    /// only a STUN message (a request, in practice) starts a handshake.
    fn admit(&mut self, from: ClientAddr, is_message: bool, now: Instant) -> bool {
        if self.clients.heard(&from, now) {
            return true;
        }
        if !is_message {
            return false;
        }
        let client = Client {
            machine: TurnServer::new(from.transport.proto(), from.local, self.setup.realm.clone()),
            last_heard: now,
            user: None,
            relay: None,
        };
        if self.clients.start(from, client) {
            self.metrics.refused("handshake_evicted");
        }
        self.update_gauges();
        true
    }

    /// The gate's verdict on a message from client `from`.
    fn verdict(&self, from: &ClientAddr, message: &Message<'_>, unix: u64) -> Verdict {
        let user = self.clients.get(from).and_then(|client| client.user.as_ref());
        let gate = Gate {
            secret: &self.setup.secret,
            realm: &self.setup.realm,
            policy: &self.setup.policy,
            caps: self.setup.limits.caps,
        };
        let allocated = self.clients.is_allocated(from);
        gate.check(message, user, allocated, unix, |node| Held {
            by_node: self.shaper.allocations_of(node),
            total: self.clients.allocations(),
        })
    }

    /// Hands `data` to the client's machine and carries out its answer.
    fn feed(&mut self, from: ClientAddr, data: &[u8], now: Instant, sink: &mut impl Sink) {
        let epoch = self.epoch;
        let listen = from.local;
        let Some(client) = self.clients.get_mut(&from) else {
            return;
        };
        let Some(transmit) = client.machine.recv(
            Transmit::new(data, from.transport.proto(), from.addr, listen),
            at(epoch, now),
        ) else {
            return;
        };
        let (to, source) = (transmit.to, transmit.from);
        let written = build_into(transmit.data, &mut self.scratch);
        if source == listen {
            sink.to_client(from, &self.scratch[..written]);
            return;
        }
        // From the client's relay to a peer.
        if let Err(denied) = self.setup.policy.check(to.ip()) {
            tracing::trace!(%denied, "relayed datagram dropped");
            self.metrics.dropped("denied_peer");
            return;
        }
        let dest = Dest::Peer {
            relay: source,
            peer: to,
        };
        self.relay(from, dest, written, now, sink);
    }

    /// Relays the `len` bytes in `scratch` for `owner`'s allocation: now,
    /// later (when its budgets allow), or not at all.
    fn relay(&mut self, owner: ClientAddr, dest: Dest, len: usize, now: Instant, sink: &mut impl Sink) {
        let Some(Client {
            user: Some(user),
            relay: Some(allocation),
            ..
        }) = self.clients.allocated_mut(&owner)
        else {
            return;
        };
        let data = &self.scratch[..len];
        match self.shaper.offer(&user.node, &mut allocation.lane, dest, data, now) {
            Offer::Send => deliver(&self.metrics, dest, data, sink),
            Offer::Held => {
                self.backlog.insert(owner);
            }
            Offer::Dropped(reason) => self.metrics.dropped(reason),
        }
    }

    /// Whether datagrams wait for their budgets (then
    /// [`TurnState::release_held`] is due within a few milliseconds).
    pub fn has_backlog(&self) -> bool {
        !self.backlog.is_empty()
    }

    /// Sends what waited for its budgets as far as they now allow.
    pub fn release_held(&mut self, now: Instant, sink: &mut impl Sink) {
        let metrics = &self.metrics;
        let shaper = &mut self.shaper;
        let clients = &mut self.clients;
        self.backlog.retain(|owner| {
            let Some(Client {
                user: Some(user),
                relay: Some(allocation),
                ..
            }) = clients.allocated_mut(owner)
            else {
                return false;
            };
            shaper.release(&user.node, &mut allocation.lane, now, |dest, data| {
                deliver(metrics, dest, data, sink)
            });
            !allocation.lane.is_idle()
        });
    }

    /// A datagram from `peer` to relay socket `relay`.
    pub fn on_peer(&mut self, relay: SocketAddr, peer: SocketAddr, data: &[u8], now: Instant, sink: &mut impl Sink) {
        let Some(owner) = self.clients.owner_of(&relay) else {
            return;
        };
        let epoch = self.epoch;
        let Some(client) = self.clients.allocated_mut(&owner) else {
            return;
        };
        let Some(transmit) = client
            .machine
            .recv(Transmit::new(data, TransportType::Udp, peer, relay), at(epoch, now))
        else {
            // No permission for this peer: dropped, as RFC 8656 says.
            return;
        };
        let written = build_into(transmit.data, &mut self.scratch);
        self.relay(owner, Dest::Client(owner), written, now, sink);
    }

    /// Lets the client's machine act on what it decided: bind a relay,
    /// close one, send queued answers.
    fn progress(&mut self, from: ClientAddr, now: Instant, sink: &mut impl Sink) {
        let epoch = self.epoch;
        loop {
            let Some(client) = self.clients.get_mut(&from) else {
                return;
            };
            match client.machine.poll(at(epoch, now)) {
                TurnServerPollRet::AllocateSocket {
                    transport,
                    listen_addr,
                    client_addr,
                    allocation_transport,
                    family,
                } => {
                    let bound = self.bind_relay(&from, allocation_transport, family, sink);
                    let Some(client) = self.clients.get_mut(&from) else {
                        if let Ok(relay) = bound {
                            sink.close_relay(relay);
                        }
                        return;
                    };
                    client.machine.allocated_socket(
                        transport,
                        listen_addr,
                        client_addr,
                        allocation_transport,
                        family,
                        bound,
                        at(epoch, now),
                    );
                    if let Ok(relay) = bound {
                        self.allocated_to(from, relay, now, sink);
                    }
                }
                TurnServerPollRet::SocketClose { listen_addr, .. } => {
                    self.release(from, listen_addr, "released", sink);
                    return;
                }
                // A TCP allocation (RFC 6062) is never made (see bind_relay).
                TurnServerPollRet::TcpConnect { .. } | TurnServerPollRet::TcpClose { .. } => {}
                TurnServerPollRet::WaitUntil(_) => break,
            }
        }
        while let Some(transmit) = self
            .clients
            .get_mut(&from)
            .and_then(|client| client.machine.poll_transmit(at(epoch, now)))
        {
            sink.to_client(from, &transmit.data);
        }
    }

    /// Binds a relay for `client` if the caps still allow (two clients of
    /// one node may have passed the gate together).
    fn bind_relay(
        &mut self,
        client: &ClientAddr,
        allocation_transport: TransportType,
        family: AddressFamily,
        sink: &mut impl Sink,
    ) -> Result<SocketAddr, SocketAllocateError> {
        if allocation_transport != TransportType::Udp {
            self.metrics.refused("tcp_allocation");
            return Err(SocketAllocateError::InsufficientCapacity);
        }
        let node = self
            .clients
            .get_mut(client)
            .and_then(|c| c.user.as_ref())
            .map(|user| user.node);
        let Some(node) = node else {
            return Err(SocketAllocateError::InsufficientCapacity);
        };
        let caps = self.setup.limits.caps;
        let by_node = self.shaper.allocations_of(&node);
        if by_node >= caps.per_node || self.clients.allocations() >= caps.total {
            self.metrics.refused("allocation_cap_race");
            return Err(SocketAllocateError::InsufficientCapacity);
        }
        sink.bind_relay(family)
            .inspect_err(|_| self.metrics.refused("no_relay_port"))
    }

    /// The client now holds relay `relay`: it moves out of the handshakes.
    fn allocated_to(&mut self, from: ClientAddr, relay: SocketAddr, now: Instant, sink: &mut impl Sink) {
        let allocation = Allocation {
            relay,
            made: now,
            lane: Lane::new(self.setup.limits.allocation_rate, now),
        };
        let Some(node) = self.clients.promote(from, allocation) else {
            // A second family for a client that already has a relay: one
            // relay per client is all this service hands out.
            sink.close_relay(relay);
            return;
        };
        self.shaper.add_allocation(node, now);
        self.metrics.allocations_made.inc();
        self.update_gauges();
    }

    /// Ends `client`'s allocation at `relay` (`reason` for the metrics).
    fn release(&mut self, client: ClientAddr, relay: SocketAddr, reason: &'static str, sink: &mut impl Sink) {
        let Some(removed) = self.clients.remove_allocated(&client, &relay) else {
            return;
        };
        sink.close_relay(relay);
        if let Client {
            user: Some(user),
            relay: Some(allocation),
            ..
        } = removed
        {
            self.shaper.remove_allocation(&user.node, allocation.lane);
        }
        self.backlog.remove(&client);
        self.metrics.ended(reason);
        self.update_gauges();
    }

    /// `client` is gone (its connection closed): so is its allocation.
    pub fn on_client_gone(&mut self, client: ClientAddr, sink: &mut impl Sink) {
        let relay = self
            .clients
            .get(&client)
            .and_then(|held| held.relay.as_ref())
            .map(|allocation| allocation.relay);
        if let Some(relay) = relay {
            self.release(client, relay, "released", sink);
        }
        self.clients.forget_handshake(&client);
        self.update_gauges();
    }

    /// Lets time pass: allocations expire (or reach their maximum age),
    /// handshakes time out.
    pub fn on_tick(&mut self, now: Instant, sink: &mut impl Sink) {
        for (client, relay) in self.clients.aged(now, self.setup.limits.max_allocation_age) {
            self.release(client, relay, "max_age", sink);
        }
        for client in self.clients.allocated_clients() {
            self.progress(client, now, sink);
        }
        self.clients.expire_handshakes(now, self.setup.limits.handshake_timeout);
        self.update_gauges();
    }

    fn update_gauges(&self) {
        self.metrics.allocations.set(self.clients.allocations() as i64);
        self.metrics.handshakes.set(self.clients.handshakes() as i64);
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "state_budget_tests.rs"]
mod budget_tests;
