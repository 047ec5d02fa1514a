//! The TURN service's sockets: the listening socket's datagrams go to the
//! state ([`super::state`]), relay sockets are bound, read and closed as
//! it asks, and a tick lets its timers run. Everything the state decides
//! is carried out here without waiting: a send that would block is a
//! dropped datagram, as UDP would have it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use rand::Rng;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use turn_server_proto::api::SocketAllocateError;
use turn_server_proto::types::AddressFamily;

use super::config::RelayPorts;
use super::demux::Kind;
use super::metrics::TurnMetrics;
use super::state::{ClientAddr, Setup, Sink, Transport, TurnState};

/// How often the state's timers run: allocations, permissions and
/// channels expire in whole seconds.
pub const TICK: Duration = Duration::from_secs(1);
/// How often datagrams waiting for their byte budgets are let go, while
/// any wait: a 1 400-byte datagram at 10 Mbit/s is 1.1 ms of budget.
pub const SHAPING_TICK: Duration = Duration::from_millis(1);
/// Random ports tried for one relay socket before the allocation is
/// refused (508): the range may be nearly full.
pub const RELAY_BIND_ATTEMPTS: usize = 32;
/// Kernel buffers of the TURN sockets, each way: the default 208 KiB
/// overflows in the bursts a relayed TCP stream sends, and every datagram
/// the kernel drops there is a loss TCP inside the tunnel backs off from.
/// (The kernel caps it at net.core.rmem_max / wmem_max.)
pub const SOCKET_BUFFER_BYTES: usize = 4 * 1024 * 1024;
/// Largest datagram read from a relay socket; a longer one is cut, and
/// no relayed WireGuard datagram comes near it.
pub const MAX_RELAYED_DATAGRAM: usize = 65_536;

/// Where relay sockets are bound and what address peers are told.
#[derive(Debug, Clone, Copy)]
pub struct RelayAddresses {
    pub bind: IpAddr,
    pub external: IpAddr,
    pub ports: RelayPorts,
}

struct RelaySocket {
    /// A second handle on the socket its reader reads, for sending: a send
    /// through tokio's handle fails until the reactor has seen the socket
    /// writable once, so the first datagrams of a new relay were lost.
    sender: std::net::UdpSocket,
    /// Stops its reader.
    stop: CancellationToken,
}

/// What the state sends through: relay sockets, and the queues of the
/// stream (TCP, TLS) connections' writers.
#[derive(Default)]
struct Sockets {
    relays: HashMap<SocketAddr, RelaySocket>,
    streams: HashMap<ClientAddr, mpsc::Sender<Vec<u8>>>,
}

/// The state and the sockets it owns, behind one lock.
struct Inner {
    state: TurnState,
    sockets: Sockets,
}

pub struct TurnService {
    inner: Mutex<Inner>,
    /// A handle on the UDP socket clients reach the service on, for
    /// sending without the reactor (see [`RelaySocket::sender`]).
    listen: std::net::UdpSocket,
    /// Its address.
    listen_addr: SocketAddr,
    addresses: RelayAddresses,
    metrics: TurnMetrics,
    shutdown: CancellationToken,
    /// Woken when datagrams start waiting for their budgets.
    held: tokio::sync::Notify,
}

/// The sockets, as the state sees them.
struct Io<'a> {
    service: &'a Arc<TurnService>,
    sockets: &'a mut Sockets,
}

impl Sink for Io<'_> {
    fn to_client(&mut self, client: ClientAddr, data: &[u8]) {
        let sent = match client.transport {
            Transport::Udp => self.service.listen.send_to(data, client.addr).is_ok(),
            Transport::Tcp => self
                .sockets
                .streams
                .get(&client)
                .is_some_and(|writer| writer.try_send(super::framing::padded(data)).is_ok()),
        };
        if !sent {
            self.service.metrics.dropped("send_failed");
        }
    }

    fn to_peer(&mut self, relay: SocketAddr, peer: SocketAddr, data: &[u8]) {
        let sent = self
            .sockets
            .relays
            .get(&relay)
            .is_some_and(|relay| relay.sender.send_to(data, peer).is_ok());
        if !sent {
            self.service.metrics.dropped("send_failed");
        }
    }

    fn bind_relay(&mut self, family: AddressFamily) -> Result<SocketAddr, SocketAllocateError> {
        let addresses = self.service.addresses;
        let matches = match family {
            AddressFamily::IPV4 => addresses.bind.is_ipv4(),
            _ => addresses.bind.is_ipv6(),
        };
        if !matches {
            return Err(SocketAllocateError::AddressFamilyNotSupported);
        }
        let (socket, sender) =
            bind_in_range(addresses.bind, addresses.ports).ok_or(SocketAllocateError::InsufficientCapacity)?;
        let port = socket
            .local_addr()
            .map_err(|_| SocketAllocateError::InsufficientCapacity)?
            .port();
        let advertised = SocketAddr::new(addresses.external, port);
        let stop = self.service.shutdown.child_token();
        tokio::spawn(read_relay(self.service.clone(), socket, advertised, stop.clone()));
        self.sockets.relays.insert(advertised, RelaySocket { sender, stop });
        Ok(advertised)
    }

    fn close_relay(&mut self, relay: SocketAddr) {
        if let Some(relay) = self.sockets.relays.remove(&relay) {
            relay.stop.cancel();
        }
    }
}

/// A UDP socket on a random port of `ports` at `ip` (to read with tokio)
/// and a second handle on it (to send without waiting), or `None` after
/// [`RELAY_BIND_ATTEMPTS`] ports in use.
fn bind_in_range(ip: IpAddr, ports: RelayPorts) -> Option<(UdpSocket, std::net::UdpSocket)> {
    let mut rng = rand::thread_rng();
    for _ in 0..RELAY_BIND_ATTEMPTS {
        let port = rng.gen_range(ports.first..=ports.last);
        let Ok(socket) = std::net::UdpSocket::bind(SocketAddr::new(ip, port)) else {
            continue;
        };
        enlarge_buffers(&socket);
        let Ok(sender) = socket.try_clone() else {
            continue;
        };
        if socket.set_nonblocking(true).is_err() {
            continue;
        }
        if let Ok(socket) = UdpSocket::from_std(socket) {
            return Some((socket, sender));
        }
    }
    None
}

/// Asks for [`SOCKET_BUFFER_BYTES`] of kernel buffers each way; a kernel
/// that gives less still relays, with more loss in bursts.
pub fn enlarge_buffers(socket: &impl std::os::fd::AsFd) {
    let socket = socket2::SockRef::from(socket);
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER_BYTES);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER_BYTES);
}

/// A second handle on `socket`, for sends that do not wait for the
/// reactor (non-blocking, as the socket is).
pub fn sending_handle(socket: &UdpSocket) -> std::io::Result<std::net::UdpSocket> {
    use std::os::fd::AsFd;
    Ok(std::net::UdpSocket::from(socket.as_fd().try_clone_to_owned()?))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

impl TurnService {
    pub fn new(
        setup: Setup,
        listen: std::net::UdpSocket,
        addresses: RelayAddresses,
        metrics: TurnMetrics,
        shutdown: CancellationToken,
    ) -> Arc<TurnService> {
        let state = TurnState::new(setup, metrics.clone(), Instant::now());
        let listen_addr = listen
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        Arc::new(TurnService {
            inner: Mutex::new(Inner {
                state,
                sockets: Sockets::default(),
            }),
            listen,
            listen_addr,
            addresses,
            metrics,
            shutdown,
            held: tokio::sync::Notify::new(),
        })
    }

    pub fn metrics(&self) -> &TurnMetrics {
        &self.metrics
    }

    /// Cancelled when the server shuts down.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Whether `client` holds an allocation.
    pub fn is_allocated(&self, client: &ClientAddr) -> bool {
        self.inner.lock().state.is_allocated(client)
    }

    /// A stream connection opened: what the state sends its client goes
    /// to `writer`.
    pub fn tcp_opened(&self, client: ClientAddr, writer: mpsc::Sender<Vec<u8>>) {
        self.inner.lock().sockets.streams.insert(client, writer);
    }

    /// A stream connection ended: so does its client's allocation.
    pub fn tcp_closed(self: &Arc<Self>, client: ClientAddr) {
        let mut guard = self.inner.lock();
        let Inner { state, sockets } = &mut *guard;
        sockets.streams.remove(&client);
        let mut io = Io { service: self, sockets };
        state.on_client_gone(client, &mut io);
    }

    /// One frame from a stream connection. A stream's source cannot be
    /// spoofed, so no reply budget applies; the connection limit and
    /// TCP's own flow control bound what one costs.
    pub fn on_stream_frame(self: &Arc<Self>, client: ClientAddr, frame: &[u8]) {
        let mut guard = self.inner.lock();
        let Inner { state, sockets } = &mut *guard;
        let mut io = Io { service: self, sockets };
        state.on_client(client, frame, Instant::now(), unix_now(), &mut io);
        if state.has_backlog() {
            self.held.notify_one();
        }
    }

    /// A datagram of `kind` from a client on the listening socket;
    /// whether TURN took it (ChannelData from a source without an
    /// allocation it leaves to the STUN service to count). One from a
    /// client without an allocation may be answered, so it needs
    /// `reply_allowed` (the socket's reply budget, which STUN shares): a
    /// flood with spoofed sources is reflected no more than STUN would be.
    pub fn on_datagram(
        self: &Arc<Self>,
        source: SocketAddr,
        data: &[u8],
        kind: Kind,
        reply_allowed: impl FnOnce() -> bool,
    ) -> bool {
        let client = ClientAddr {
            transport: Transport::Udp,
            local: self.listen_addr,
            addr: source,
        };
        let mut guard = self.inner.lock();
        let Inner { state, sockets } = &mut *guard;
        let allocated = state.is_allocated(&client);
        if kind == Kind::ChannelData && !allocated {
            return false;
        }
        if !allocated && !reply_allowed() {
            self.metrics.refused("rate_limited");
            return true;
        }
        let mut io = Io { service: self, sockets };
        state.on_client(client, data, Instant::now(), unix_now(), &mut io);
        if state.has_backlog() {
            self.held.notify_one();
        }
        true
    }

    /// Lets datagrams that wait for their byte budgets go as the budgets
    /// refill, every [`SHAPING_TICK`] while any wait, until shutdown.
    pub async fn shape(self: Arc<Self>) {
        loop {
            tokio::select! {
                () = self.held.notified() => {}
                () = self.shutdown.cancelled() => return,
            }
            loop {
                tokio::time::sleep(SHAPING_TICK).await;
                let mut guard = self.inner.lock();
                let Inner { state, sockets } = &mut *guard;
                let mut io = Io {
                    service: &self,
                    sockets,
                };
                state.release_held(Instant::now(), &mut io);
                if !state.has_backlog() {
                    break;
                }
            }
        }
    }

    /// Lets the state's timers run every [`TICK`] until shutdown; then
    /// closes every relay socket.
    pub async fn tick(self: Arc<Self>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = self.shutdown.cancelled() => break,
            }
            let mut guard = self.inner.lock();
            let Inner { state, sockets } = &mut *guard;
            let mut io = Io {
                service: &self,
                sockets,
            };
            state.on_tick(Instant::now(), &mut io);
        }
        let mut guard = self.inner.lock();
        for (_, relay) in guard.sockets.relays.drain() {
            relay.stop.cancel();
        }
    }
}

/// Reads one relay socket until its allocation ends.
async fn read_relay(service: Arc<TurnService>, socket: UdpSocket, relay: SocketAddr, stop: CancellationToken) {
    let mut buffer = vec![0u8; MAX_RELAYED_DATAGRAM];
    loop {
        let received = tokio::select! {
            received = socket.recv_from(&mut buffer) => received,
            () = stop.cancelled() => return,
        };
        // Errors on an unconnected UDP socket are transient (an ICMP
        // error reported late); the next read is new.
        let Ok((len, peer)) = received else {
            continue;
        };
        let mut guard = service.inner.lock();
        let Inner { state, sockets } = &mut *guard;
        let mut io = Io {
            service: &service,
            sockets,
        };
        state.on_peer(relay, peer, &buffer[..len], Instant::now(), &mut io);
        if state.has_backlog() {
            service.held.notify_one();
        }
    }
}
