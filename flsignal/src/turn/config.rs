//! The flags of the TURN service, part of [`crate::Config`] (flattened),
//! with every limit's default and why it is what it is.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use flproto::turn_credentials::CredentialSchedule;

use crate::config::parse_duration;
use crate::error::{check, InvalidSetting};

use super::bandwidth::ByteRate;

/// Realm named in the TURN service's challenges.
pub const DEFAULT_REALM: &str = "flsignal";
/// Ports relay sockets are bound in (IANA's dynamic range).
pub const DEFAULT_RELAY_PORTS: RelayPorts = RelayPorts {
    first: 49152,
    last: 65535,
};
/// Allocations one node may hold at once on one instance: one per
/// connection that needs the relay, two per peer during a handover, for
/// a laptop with a handful of peers.
pub const DEFAULT_MAX_ALLOCATIONS_PER_NODE: usize = 16;
/// Allocations the whole instance holds at once; each is a UDP socket.
pub const DEFAULT_MAX_ALLOCATIONS: usize = 4096;
/// Bytes per second one node may have relayed, all its allocations and
/// both directions together: 10 Mbit/s, a usable tunnel that does not let
/// one node take a public server's uplink. The burst is small on purpose:
/// what exceeds the rate waits a little ([`super::shaper`]), and a sender
/// that meets that wait early slows down smoothly; a large burst let a
/// tunnel's TCP speed up far past the rate and then lose most of a window
/// at once (measured in BENCHMARKS.md).
pub const DEFAULT_NODE_RATE: ByteRate = ByteRate {
    per_second: 1_250_000,
    burst: 32 * 1024,
};
/// Bytes per second one allocation may have relayed (both directions).
pub const DEFAULT_ALLOCATION_RATE: ByteRate = ByteRate {
    per_second: 1_250_000,
    burst: 16 * 1024,
};
/// Longest an allocation lives, refreshes included. A credential is
/// checked when an allocation is made; this bounds how long one made with
/// a credential that has since expired keeps relaying.
pub const DEFAULT_MAX_ALLOCATION_AGE: Duration = Duration::from_secs(24 * 3600);
/// Clients between their first request and their allocation held at once
/// (each has its own nonce); the one heard from least recently goes first,
/// so a flood of spoofed requests costs a bounded table, not memory.
pub const DEFAULT_MAX_HANDSHAKES: usize = 4096;
/// Time a client has from its first request to its allocation (a TCP or
/// TLS connection without one is closed after it).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// TURN connections over TCP and TLS held at once; each is a socket and a
/// task.
pub const DEFAULT_MAX_STREAMS: usize = 1024;

/// Where a TURN stream listener (TCP, TLS) listens: an address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamListen(pub Option<SocketAddr>);

impl std::str::FromStr for StreamListen {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.eq_ignore_ascii_case("off") {
            return Ok(StreamListen(None));
        }
        text.parse()
            .map(|addr| StreamListen(Some(addr)))
            .map_err(|_| format!("{text:?} is neither IP:PORT nor `off`"))
    }
}

/// Where the TURN service listens for UDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnListen {
    /// On the STUN service's socket (`--stun-listen`): one port for both.
    WithStun,
    /// On a socket of its own.
    At(SocketAddr),
    Off,
}

impl std::str::FromStr for TurnListen {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "off" => Ok(TurnListen::Off),
            "stun" => Ok(TurnListen::WithStun),
            _ => text
                .parse()
                .map(TurnListen::At)
                .map_err(|_| format!("{text:?} is neither `stun`, IP:PORT nor `off`")),
        }
    }
}

/// An inclusive range of UDP ports, written `FIRST-LAST`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayPorts {
    pub first: u16,
    pub last: u16,
}

impl std::str::FromStr for RelayPorts {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{text:?} is not a port range FIRST-LAST (1 to 65535)");
        let (first, last) = text.split_once('-').ok_or_else(bad)?;
        let (first, last): (u16, u16) = (
            first.trim().parse().map_err(|_| bad())?,
            last.trim().parse().map_err(|_| bad())?,
        );
        if first == 0 || first > last {
            return Err(bad());
        }
        Ok(RelayPorts { first, last })
    }
}

impl std::fmt::Display for RelayPorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

#[derive(Debug, Clone, Args)]
pub struct TurnConfig {
    /// UDP address of the TURN service (RFC 8656): `stun` (on the STUN
    /// service's socket, one port for both), IP:PORT, or `off`.
    #[arg(long, env = "FLSIGNAL_TURN_LISTEN", default_value = "stun")]
    pub turn_listen: TurnListen,

    /// TCP address of the TURN service (TURN over TCP, for clients on
    /// networks without UDP: browsers, not flnode), or `off`.
    #[arg(long, env = "FLSIGNAL_TURN_TCP_LISTEN", default_value = "off")]
    pub turn_tcp_listen: StreamListen,

    /// TCP address of TURN over TLS (`turns:`, with --tls-cert's
    /// certificate; 443 gets through most firewalls), or `off`.
    #[arg(long, env = "FLSIGNAL_TURN_TLS_LISTEN", default_value = "off")]
    pub turn_tls_listen: StreamListen,

    /// TURN connections over TCP and TLS held at once.
    #[arg(long, env = "FLSIGNAL_TURN_MAX_STREAMS", default_value_t = DEFAULT_MAX_STREAMS)]
    pub turn_max_streams: usize,

    /// Address relay sockets are bound to. Default: the TURN socket's
    /// address, or this machine's first public interface address if that
    /// is 0.0.0.0.
    #[arg(long, env = "FLSIGNAL_TURN_RELAY_IP")]
    pub turn_relay_ip: Option<IpAddr>,

    /// Address peers reach relay sockets at, when a 1:1 NAT (a cloud
    /// provider's public IP) stands in front of --turn-relay-ip.
    #[arg(long, env = "FLSIGNAL_TURN_EXTERNAL_IP")]
    pub turn_external_ip: Option<IpAddr>,

    /// UDP ports relay sockets are bound in, FIRST-LAST.
    #[arg(long, env = "FLSIGNAL_TURN_RELAY_PORTS", default_value_t = DEFAULT_RELAY_PORTS)]
    pub turn_relay_ports: RelayPorts,

    /// File with the secret TURN credentials are made with (at least 16
    /// bytes). Unset: a random one per start, so credentials from before a
    /// restart, or from another instance of a cluster, are refused.
    #[arg(long, env = "FLSIGNAL_TURN_SECRET_FILE")]
    pub turn_secret_file: Option<PathBuf>,

    /// How long a TURN credential makes new allocations; nodes get a fresh
    /// one every half of it.
    #[arg(long, env = "FLSIGNAL_TURN_CREDENTIAL_LIFETIME", value_parser = parse_duration, default_value = "1h")]
    pub turn_credential_lifetime: Duration,

    /// Realm of the TURN service's challenges.
    #[arg(long, env = "FLSIGNAL_TURN_REALM", default_value = DEFAULT_REALM)]
    pub turn_realm: String,

    /// A network peers may be relayed to although it is private, loopback,
    /// link-local, reserved or this server's own (repeatable, comma
    /// separated).
    #[arg(long, env = "FLSIGNAL_TURN_ALLOW_PEER", value_delimiter = ',', value_parser = crate::trusted_proxy::parse_network)]
    pub turn_allow_peer: Vec<ipnet::IpNet>,

    /// Allocations one node may hold at once.
    #[arg(long, env = "FLSIGNAL_TURN_MAX_ALLOCATIONS_PER_NODE", default_value_t = DEFAULT_MAX_ALLOCATIONS_PER_NODE)]
    pub turn_max_allocations_per_node: usize,

    /// Allocations this instance holds at once.
    #[arg(long, env = "FLSIGNAL_TURN_MAX_ALLOCATIONS", default_value_t = DEFAULT_MAX_ALLOCATIONS)]
    pub turn_max_allocations: usize,

    /// Bytes per second relayed for one node on average (all its
    /// allocations, both directions).
    #[arg(long, env = "FLSIGNAL_TURN_NODE_RATE", default_value_t = DEFAULT_NODE_RATE.per_second)]
    pub turn_node_rate: u64,

    /// Bytes relayed for one node in a burst.
    #[arg(long, env = "FLSIGNAL_TURN_NODE_BURST", default_value_t = DEFAULT_NODE_RATE.burst)]
    pub turn_node_burst: u64,

    /// Bytes per second relayed for one allocation on average.
    #[arg(long, env = "FLSIGNAL_TURN_ALLOCATION_RATE", default_value_t = DEFAULT_ALLOCATION_RATE.per_second)]
    pub turn_allocation_rate: u64,

    /// Bytes relayed for one allocation in a burst.
    #[arg(long, env = "FLSIGNAL_TURN_ALLOCATION_BURST", default_value_t = DEFAULT_ALLOCATION_RATE.burst)]
    pub turn_allocation_burst: u64,

    /// Longest an allocation lives, refreshes included.
    #[arg(long, env = "FLSIGNAL_TURN_MAX_ALLOCATION_AGE", value_parser = parse_duration, default_value = "24h")]
    pub turn_max_allocation_age: Duration,

    /// Clients in the middle of authenticating held at once (least
    /// recently heard forgotten first).
    #[arg(long, env = "FLSIGNAL_TURN_MAX_HANDSHAKES", default_value_t = DEFAULT_MAX_HANDSHAKES)]
    pub turn_max_handshakes: usize,
}

impl TurnConfig {
    pub fn schedule(&self) -> CredentialSchedule {
        CredentialSchedule {
            lifetime: self.turn_credential_lifetime,
        }
    }

    pub fn node_rate(&self) -> ByteRate {
        ByteRate {
            per_second: self.turn_node_rate,
            burst: self.turn_node_burst,
        }
    }

    pub fn allocation_rate(&self) -> ByteRate {
        ByteRate {
            per_second: self.turn_allocation_rate,
            burst: self.turn_allocation_burst,
        }
    }

    /// Checks combinations clap cannot check.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        check(
            self.turn_credential_lifetime >= Duration::from_secs(60),
            "--turn-credential-lifetime must be at least 60s",
        )?;
        check(
            !self.turn_realm.is_empty() && self.turn_realm.len() <= 127 && self.turn_realm.is_ascii(),
            "--turn-realm must be 1 to 127 ASCII characters",
        )?;
        check(
            self.turn_max_allocations >= 1 && self.turn_max_allocations_per_node >= 1,
            "--turn-max-allocations and --turn-max-allocations-per-node must be at least 1",
        )?;
        // A relayed datagram is up to ~1500 bytes; a burst smaller than
        // that would drop every one.
        check(
            self.turn_node_rate >= 1
                && self.turn_allocation_rate >= 1
                && self.turn_node_burst >= 2048
                && self.turn_allocation_burst >= 2048,
            "--turn-*-rate must be at least 1 and --turn-*-burst at least 2048 bytes",
        )?;
        check(
            self.turn_max_allocation_age >= Duration::from_secs(60),
            "--turn-max-allocation-age must be at least 60s",
        )?;
        check(
            self.turn_max_handshakes >= 1,
            "--turn-max-handshakes must be at least 1",
        )?;
        check(self.turn_max_streams >= 1, "--turn-max-streams must be at least 1")?;
        Ok(())
    }
}

impl Default for TurnConfig {
    fn default() -> Self {
        crate::Config::default().turn
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;
    use clap::Parser;
    use flproto::turn_credentials::DEFAULT_CREDENTIAL_LIFETIME;

    #[test]
    fn defaults_are_the_documented_constants() {
        let turn = Config::default().turn;
        assert_eq!(turn.turn_listen, TurnListen::WithStun);
        assert_eq!(turn.turn_relay_ports, DEFAULT_RELAY_PORTS);
        assert_eq!(turn.turn_credential_lifetime, DEFAULT_CREDENTIAL_LIFETIME);
        assert_eq!(turn.turn_max_allocations_per_node, DEFAULT_MAX_ALLOCATIONS_PER_NODE);
        assert_eq!(turn.turn_max_allocations, DEFAULT_MAX_ALLOCATIONS);
        assert_eq!(turn.node_rate(), DEFAULT_NODE_RATE);
        assert_eq!(turn.allocation_rate(), DEFAULT_ALLOCATION_RATE);
        assert_eq!(turn.turn_max_allocation_age, DEFAULT_MAX_ALLOCATION_AGE);
        assert_eq!(turn.turn_max_handshakes, DEFAULT_MAX_HANDSHAKES);
        assert_eq!(turn.turn_max_streams, DEFAULT_MAX_STREAMS);
        assert_eq!(
            (turn.turn_tcp_listen, turn.turn_tls_listen),
            (StreamListen(None), StreamListen(None))
        );
        assert_eq!(turn.turn_realm, DEFAULT_REALM);
        assert!(turn.turn_allow_peer.is_empty() && turn.turn_secret_file.is_none());
        assert!(turn.validate().is_ok());
    }

    #[test]
    fn listen_and_port_range_parse() {
        assert_eq!("off".parse(), Ok(TurnListen::Off));
        assert_eq!("STUN".parse(), Ok(TurnListen::WithStun));
        assert_eq!(
            "127.0.0.1:3479".parse(),
            Ok(TurnListen::At("127.0.0.1:3479".parse().unwrap()))
        );
        assert!("3479".parse::<TurnListen>().is_err());
        assert_eq!(
            "1000-2000".parse(),
            Ok(RelayPorts {
                first: 1000,
                last: 2000
            })
        );
        for bad in ["0-10", "20-10", "10", "a-b", "1-70000"] {
            assert!(bad.parse::<RelayPorts>().is_err(), "{bad}");
        }
    }

    #[test]
    fn limits_are_checked() {
        for bad in [
            &["flsignal", "--turn-credential-lifetime", "10s"][..],
            &["flsignal", "--turn-max-allocations", "0"],
            &["flsignal", "--turn-max-allocations-per-node", "0"],
            &["flsignal", "--turn-node-burst", "100"],
            &["flsignal", "--turn-allocation-rate", "0"],
            &["flsignal", "--turn-max-allocation-age", "1s"],
            &["flsignal", "--turn-max-handshakes", "0"],
            &["flsignal", "--turn-realm", ""],
            &["flsignal", "--turn-max-streams", "0"],
            &["flsignal", "--turn-tls-listen", "127.0.0.1:5349"],
        ] {
            assert!(Config::parse_from(bad).validate().is_err(), "{bad:?}");
        }
        let allowed = Config::parse_from(["flsignal", "--turn-allow-peer", "10.0.0.0/8,192.168.1.7"]);
        assert!(allowed.validate().is_ok());
        assert_eq!(allowed.turn.turn_allow_peer.len(), 2);
    }
}
