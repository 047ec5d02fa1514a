//! The flags of the datagram relay (`flproto::datagram_relay`): whether
//! the server relays at all, the bandwidth of one node and of the whole
//! server, the largest datagram and the queues. Part of
//! [`Config`](crate::Config), split out to keep each file to one job.

use clap::{Args, ValueEnum};
use flproto::datagram_relay::frame::HEADER_LEN;
use flproto::datagram_relay::{
    DatagramRelayLimits, DEFAULT_MAX_DATAGRAM, DEFAULT_NODE_RATE, DEFAULT_SERVER_RATE, FRAME_COST_BYTES,
};
use flproto::rate::RateLimit;

use crate::error::{check, InvalidSetting};

/// Relay frames waiting for one node: about 0.15 s of a node's default
/// bandwidth in full-size WireGuard packets. More are dropped (WireGuard is
/// UDP; TCP inside the tunnel slows down), so a slow receiver costs at most
/// this many frames of memory.
pub const DEFAULT_RELAY_QUEUE: usize = 128;
/// Relay frames waiting to be published to other instances of a cluster,
/// in a queue of their own so that relaying never delays presence.
pub const DEFAULT_RELAY_NATS_QUEUE: usize = 4096;

/// `on` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    On,
    Off,
}

#[derive(Debug, Clone, Args)]
pub struct RelayConfig {
    /// Relay WireGuard datagrams over the WebSockets of nodes that ask for
    /// it (their last resort when no UDP path exists): `on` or `off`.
    #[arg(long = "relay", env = "FLSIGNAL_RELAY", value_enum, default_value = "on")]
    pub relay: Switch,

    /// Bytes per second one node may send through the relay on average.
    #[arg(long, env = "FLSIGNAL_RELAY_NODE_BYTES_PER_SECOND", default_value_t = DEFAULT_NODE_RATE.per_second)]
    pub relay_node_bytes_per_second: u32,

    /// Bytes one node may send through the relay at once.
    #[arg(long, env = "FLSIGNAL_RELAY_NODE_BURST", default_value_t = DEFAULT_NODE_RATE.burst)]
    pub relay_node_burst: u32,

    /// Bytes per second the server relays for all nodes together on average.
    #[arg(long, env = "FLSIGNAL_RELAY_SERVER_BYTES_PER_SECOND", default_value_t = DEFAULT_SERVER_RATE.per_second)]
    pub relay_server_bytes_per_second: u32,

    /// Bytes the server relays for all nodes together at once.
    #[arg(long, env = "FLSIGNAL_RELAY_SERVER_BURST", default_value_t = DEFAULT_SERVER_RATE.burst)]
    pub relay_server_burst: u32,

    /// Largest datagram relayed, in bytes (the frame's payload); larger
    /// ones are dropped. At most --max-message-size less the 33-byte header.
    #[arg(long, env = "FLSIGNAL_RELAY_MAX_DATAGRAM", default_value_t = DEFAULT_MAX_DATAGRAM)]
    pub relay_max_datagram: usize,

    /// Relay frames queued for one node; more are dropped.
    #[arg(long, env = "FLSIGNAL_RELAY_QUEUE", default_value_t = DEFAULT_RELAY_QUEUE)]
    pub relay_queue: usize,

    /// Relay frames waiting to be published to other instances; more are dropped.
    #[arg(long, env = "FLSIGNAL_RELAY_NATS_QUEUE", default_value_t = DEFAULT_RELAY_NATS_QUEUE)]
    pub relay_nats_queue: usize,

    /// Bytes written to a connection that the kernel may hold unsent
    /// (TCP_NOTSENT_LOWAT); beyond them frames wait in flsignal's queues,
    /// where setups go before relay frames. 0: the kernel's default.
    #[arg(long, env = "FLSIGNAL_UNSENT_LIMIT", default_value_t = crate::unsent_limit::DEFAULT_UNSENT_LIMIT)]
    pub unsent_limit: usize,
}

impl RelayConfig {
    /// The per-node limits a session grants, `None` with `--relay off`.
    pub fn limits(&self, max_message_size: usize) -> Option<DatagramRelayLimits> {
        (self.relay == Switch::On).then(|| DatagramRelayLimits {
            node_rate: RateLimit {
                per_second: self.relay_node_bytes_per_second,
                burst: self.relay_node_burst,
            },
            max_datagram: self.max_datagram(max_message_size),
        })
    }

    /// The largest datagram relayed: `--relay-max-datagram`, unless a
    /// frame that size would not fit `--max-message-size` (a lowered
    /// message size lowers it, rather than making the server refuse to
    /// start).
    pub fn max_datagram(&self, max_message_size: usize) -> usize {
        self.relay_max_datagram.min(max_message_size.saturating_sub(HEADER_LEN))
    }

    /// What the server relays for all nodes together.
    pub fn server_rate(&self) -> RateLimit {
        RateLimit {
            per_second: self.relay_server_bytes_per_second,
            burst: self.relay_server_burst,
        }
    }

    /// Checks the limits; a frame must fit `max_message_size`, and the
    /// largest one must fit every burst, or it could never pass.
    pub fn validate(&self, max_message_size: usize) -> Result<(), InvalidSetting> {
        check(
            self.relay_node_bytes_per_second >= 1 && self.relay_server_bytes_per_second >= 1,
            "--relay-node-bytes-per-second and --relay-server-bytes-per-second must be at least 1",
        )?;
        check(self.relay_max_datagram >= 1, "--relay-max-datagram must be at least 1")?;
        let largest = DatagramRelayLimits::cost(HEADER_LEN + self.max_datagram(max_message_size));
        check(
            self.relay_node_burst >= largest && self.relay_server_burst >= largest,
            format!(
                "--relay-node-burst and --relay-server-burst must hold the largest frame \
                 (--relay-max-datagram + {} bytes)",
                HEADER_LEN as u32 + FRAME_COST_BYTES
            ),
        )?;
        check(
            self.relay_queue >= 1 && self.relay_nats_queue >= 1,
            "--relay-queue and --relay-nats-queue must be at least 1",
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_MAX_MESSAGE_SIZE;
    use crate::Config;
    use clap::Parser;

    #[test]
    fn the_relay_is_on_by_default_with_the_documented_limits() {
        let config = Config::default();
        assert_eq!(
            config.relay.limits(DEFAULT_MAX_MESSAGE_SIZE),
            Some(DatagramRelayLimits {
                node_rate: DEFAULT_NODE_RATE,
                max_datagram: DEFAULT_MAX_DATAGRAM,
            })
        );
        assert_eq!(config.relay.server_rate(), DEFAULT_SERVER_RATE);
        assert_eq!(config.relay.relay_queue, DEFAULT_RELAY_QUEUE);
        assert!(config.relay.validate(DEFAULT_MAX_MESSAGE_SIZE).is_ok());
        assert_eq!(
            config.session().datagram_relay,
            config.relay.limits(DEFAULT_MAX_MESSAGE_SIZE)
        );
    }

    #[test]
    fn relay_off_grants_nothing() {
        let off = Config::parse_from(["flsignal", "--relay", "off"]);
        assert_eq!(off.relay.limits(DEFAULT_MAX_MESSAGE_SIZE), None);
        assert_eq!(off.session().datagram_relay, None);
        assert!(Config::try_parse_from(["flsignal", "--relay", "maybe"]).is_err());
    }

    #[test]
    fn limits_that_could_never_pass_a_frame_are_refused() {
        for bad in [
            &["flsignal", "--relay-node-bytes-per-second", "0"][..],
            &["flsignal", "--relay-server-bytes-per-second", "0"],
            &["flsignal", "--relay-max-datagram", "0"],
            &["flsignal", "--relay-node-burst", "2000"],
            &["flsignal", "--relay-server-burst", "100"],
            &["flsignal", "--relay-queue", "0"],
            &["flsignal", "--relay-nats-queue", "0"],
        ] {
            assert!(Config::parse_from(bad).validate().is_err(), "{bad:?}");
        }
        let small = Config::parse_from(["flsignal", "--relay-max-datagram", "1000", "--relay-node-burst", "1097"]);
        assert!(small.validate().is_ok(), "exactly the largest frame's cost fits");
    }

    #[test]
    fn a_lower_message_size_lowers_the_largest_datagram() {
        let config = Config::parse_from(["flsignal", "--max-message-size", "1024"]);
        assert!(config.validate().is_ok());
        assert_eq!(config.relay.max_datagram(1024), 1024 - HEADER_LEN);
        let huge = Config::parse_from(["flsignal", "--relay-max-datagram", "70000"]);
        assert_eq!(
            huge.relay.max_datagram(DEFAULT_MAX_MESSAGE_SIZE),
            DEFAULT_MAX_MESSAGE_SIZE - HEADER_LEN
        );
    }
}
