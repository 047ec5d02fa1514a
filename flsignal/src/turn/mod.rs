//! flsignal's TURN service (RFC 8656, over UDP): a relay for nodes that
//! find no direct path, with credentials only this server's nodes get.
//!
//! The protocol is `turn-server-proto`'s sans-I/O state machine; around it:
//!
//! * [`config`] — the flags and their defaults;
//! * [`demux`] — which datagrams on a socket shared with STUN are TURN's;
//! * [`gate`] — credentials (`flproto::turn_credentials`), allocation caps
//!   and the [`peer_policy`] checked before a request reaches the state
//!   machine, with [`refusal`] for the answers it gives itself;
//! * [`bandwidth`] — byte budgets, and [`shaper`] which holds datagrams
//!   over them a little while instead of dropping them at once;
//! * [`state`] — one state machine per client, and the limits around
//!   them, without sockets ([`sink`] is what it asks of them);
//! * [`service`] — the sockets: the listening one, relay sockets, the tick;
//!   [`tcp`] the TCP and TLS listeners, with [`framing`] for their streams;
//! * [`issuer`] — the credentials nodes are sent over signalling;
//! * [`metrics`] — `flsignal_turn_*`.

pub mod bandwidth;
pub mod clients;
pub mod config;
pub mod demux;
pub mod framing;
pub mod gate;
pub mod issuer;
pub mod metrics;
pub mod outgoing;
pub mod peer_policy;
pub mod refusal;
pub mod service;
pub mod shaper;
pub mod sink;
pub mod state;
pub mod tcp;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use flproto::turn_credentials::TurnSecret;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use crate::error::TurnError;
use crate::metrics::Metrics;
use crate::server_names::OwnIdentity;
use crate::Config;
use config::{TurnConfig, HANDSHAKE_TIMEOUT};
use gate::Caps;
use issuer::CredentialIssuer;
use peer_policy::PeerPolicy;
use service::{RelayAddresses, TurnService};
use state::{Limits, Setup};

pub use config::TurnListen;

/// A running TURN service and what signalling needs of it.
pub struct Turn {
    pub service: Arc<TurnService>,
    pub issuer: CredentialIssuer,
    /// Its own socket, when it does not share the STUN service's.
    pub own_socket: Option<Arc<UdpSocket>>,
}

/// Starts the TURN service as `config` says, on `stun_socket` with
/// `--turn-listen stun`; `None` when it is off (or shares a STUN
/// service that is off).
pub async fn start(
    config: &Config,
    stun_socket: Option<&Arc<UdpSocket>>,
    tls: Option<&tokio_rustls::TlsAcceptor>,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> Result<Option<Turn>, TurnError> {
    let turn = &config.turn;
    let (socket, own_socket) = match turn.turn_listen {
        TurnListen::Off => return Ok(None),
        TurnListen::WithStun => match stun_socket {
            Some(socket) => (socket.clone(), None),
            None => return Ok(None),
        },
        TurnListen::At(addr) => {
            let socket = UdpSocket::bind(addr)
                .await
                .map_err(|source| TurnError::Listen { addr, source })?;
            let socket = Arc::new(socket);
            (socket.clone(), Some(socket))
        }
    };
    let listen = socket.local_addr().map_err(|source| TurnError::Listen {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })?;
    let secret = read_secret(turn)?;
    if turn.turn_secret_file.is_none() && !config.nats.is_empty() {
        tracing::warn!("no --turn-secret-file: TURN credentials this instance hands out are refused by the rest of the cluster, and theirs here");
    }
    let own = OwnIdentity::read();
    let addresses = match relay_addresses(turn, listen.ip(), &own) {
        Ok(addresses) => addresses,
        // Only the defaults lead here (no --turn-relay-ip): a machine
        // without a public address serves signalling and STUN as before.
        Err(error) => {
            tracing::warn!("TURN service off: {error}");
            return Ok(None);
        }
    };
    let mut own_addresses = own.interfaces.clone();
    own_addresses.extend([listen.ip(), addresses.bind, addresses.external]);
    own_addresses.retain(|ip| !ip.is_unspecified());
    let setup = Setup {
        secret: secret.clone(),
        realm: turn.turn_realm.clone(),
        policy: PeerPolicy::new(turn.turn_allow_peer.clone(), own_addresses),
        limits: limits(turn),
    };
    service::enlarge_buffers(socket.as_ref());
    let sender = service::sending_handle(&socket).map_err(|source| TurnError::Listen { addr: listen, source })?;
    let service = TurnService::new(setup, sender, addresses, metrics.turn.clone(), shutdown.clone());
    tokio::spawn(service.clone().tick());
    tokio::spawn(service.clone().shape());
    let streams = Arc::new(tokio::sync::Semaphore::new(turn.turn_max_streams));
    let mut stream_addrs = Vec::new();
    let mut stream_ports = [None, None];
    let listeners = [(turn.turn_tcp_listen.0, None), (turn.turn_tls_listen.0, tls)];
    for (at, (listen, acceptor)) in listeners.into_iter().enumerate() {
        let Some(addr) = listen else {
            continue;
        };
        let listener = tcp::bind(addr)
            .await
            .map_err(|source| TurnError::StreamListen { addr, source })?;
        let bound = listener.local_addr().unwrap_or(addr);
        stream_addrs.push(bound.to_string());
        stream_ports[at] = Some(bound.port());
        tokio::spawn(tcp::serve(
            listener,
            service.clone(),
            acceptor.cloned(),
            streams.clone(),
        ));
    }
    let ports = issuer::Ports {
        udp: listen.port(),
        tcp: stream_ports[0],
        tls: stream_ports[1],
    };
    tracing::info!(
        udp = %listen,
        streams = %stream_addrs.join(","),
        relay = %addresses.external,
        ports = %addresses.ports,
        "TURN service ready"
    );
    Ok(Some(Turn {
        service,
        issuer: CredentialIssuer::new(secret, turn.schedule(), ports),
        own_socket,
    }))
}

fn limits(turn: &TurnConfig) -> Limits {
    Limits {
        caps: Caps {
            per_node: turn.turn_max_allocations_per_node,
            total: turn.turn_max_allocations,
        },
        node_rate: turn.node_rate(),
        allocation_rate: turn.allocation_rate(),
        max_allocation_age: turn.turn_max_allocation_age,
        max_handshakes: turn.turn_max_handshakes,
        handshake_timeout: HANDSHAKE_TIMEOUT,
    }
}

fn read_secret(turn: &TurnConfig) -> Result<TurnSecret, TurnError> {
    let Some(path) = &turn.turn_secret_file else {
        return Ok(TurnSecret::random());
    };
    let contents = std::fs::read(path).map_err(|source| TurnError::SecretUnreadable {
        path: path.clone(),
        source,
    })?;
    TurnSecret::from_file_contents(&contents).map_err(|source| TurnError::BadSecret {
        path: path.clone(),
        source,
    })
}

/// Where relay sockets go: `--turn-relay-ip`, else the listening address,
/// else (listening on every address) the first interface address that
/// is neither loopback nor link-local, IPv4 first.
fn relay_addresses(turn: &TurnConfig, listen: IpAddr, own: &OwnIdentity) -> Result<RelayAddresses, TurnError> {
    let bind = match turn.turn_relay_ip {
        Some(ip) => ip,
        None if !listen.is_unspecified() => listen,
        None => first_public(&own.interfaces).ok_or(TurnError::NoRelayIp)?,
    };
    Ok(RelayAddresses {
        bind,
        external: turn.turn_external_ip.unwrap_or(bind),
        ports: turn.turn_relay_ports,
    })
}

fn first_public(interfaces: &[IpAddr]) -> Option<IpAddr> {
    let usable = |ip: &&IpAddr| match ip {
        IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_link_local() && !v4.is_unspecified(),
        IpAddr::V6(v6) => !v6.is_loopback() && !v6.is_unicast_link_local() && !v6.is_unspecified(),
    };
    let mut candidates: Vec<&IpAddr> = interfaces.iter().filter(usable).collect();
    candidates.sort_by_key(|ip| ip.is_ipv6());
    candidates.first().map(|ip| **ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn relays_go_to_the_flag_the_listening_address_or_the_first_public_interface() {
        let own = OwnIdentity {
            interfaces: vec![ip("127.0.0.1"), ip("fe80::1"), ip("2001:db8::7"), ip("192.0.2.5")],
            hostname: None,
        };
        let mut turn = TurnConfig::default();
        assert_eq!(
            relay_addresses(&turn, ip("0.0.0.0"), &own).unwrap().bind,
            ip("192.0.2.5")
        );
        assert_eq!(
            relay_addresses(&turn, ip("203.0.113.10"), &own).unwrap().bind,
            ip("203.0.113.10")
        );
        turn.turn_relay_ip = Some(ip("198.51.100.9"));
        turn.turn_external_ip = Some(ip("203.0.113.99"));
        let addresses = relay_addresses(&turn, ip("0.0.0.0"), &own).unwrap();
        assert_eq!(
            (addresses.bind, addresses.external),
            (ip("198.51.100.9"), ip("203.0.113.99"))
        );
        let loopback_only = OwnIdentity {
            interfaces: vec![ip("127.0.0.1")],
            hostname: None,
        };
        assert!(relay_addresses(&TurnConfig::default(), ip("0.0.0.0"), &loopback_only).is_err());
    }
}
