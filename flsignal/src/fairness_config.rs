//! The flags that keep one node from taking more than its share of the
//! server or of another node: relay shares of a receiver's queue and what
//! happens to a sender over them, request and announce rates, the
//! fragment timeout and the interval of full-list pushes. Part of
//! [`Config`](crate::Config), split out to keep each file to one job.

use crate::error::{check, InvalidSetting};
use std::time::Duration;

use clap::Args;
use flproto::rate::RateLimit;
use flproto::relay_share::{
    AbuseLimits, RelayShare, DEFAULT_RELAY_DISCONNECT_AFTER, DEFAULT_RELAY_FORGIVE_PER_SECOND,
    DEFAULT_RELAY_SHARE_BYTES, DEFAULT_RELAY_SHARE_FRAMES, DEFAULT_RELAY_THROTTLE_AFTER,
};
use flproto::session::DEFAULT_LIST_RATE_LIMIT;
use flproto::source_rate::{DEFAULT_ANNOUNCE_RATE, DEFAULT_ANNOUNCE_SOURCES};

use crate::config::parse_duration;

#[derive(Debug, Clone, Args)]
pub struct FairnessConfig {
    /// Frames one sender may have queued for one receiver; more are dropped.
    #[arg(long, env = "FLSIGNAL_RELAY_SHARE_FRAMES", default_value_t = DEFAULT_RELAY_SHARE_FRAMES)]
    pub relay_share_frames: usize,

    /// Bytes one sender may have queued for one receiver (at least --max-message-size).
    #[arg(long, env = "FLSIGNAL_RELAY_SHARE_BYTES", default_value_t = DEFAULT_RELAY_SHARE_BYTES)]
    pub relay_share_bytes: usize,

    /// PeerSetups dropped over a share (net of forgiven ones) before a sender's are refused.
    #[arg(long, env = "FLSIGNAL_RELAY_THROTTLE_AFTER", default_value_t = DEFAULT_RELAY_THROTTLE_AFTER)]
    pub relay_throttle_after: u32,

    /// Strikes (drops over a share, PeerSetups sent while throttled) before a sender is closed with 4007.
    #[arg(long, env = "FLSIGNAL_RELAY_DISCONNECT_AFTER", default_value_t = DEFAULT_RELAY_DISCONNECT_AFTER)]
    pub relay_disconnect_after: u32,

    /// Strikes forgiven per second.
    #[arg(long, env = "FLSIGNAL_RELAY_FORGIVE_PER_SECOND", default_value_t = DEFAULT_RELAY_FORGIVE_PER_SECOND)]
    pub relay_forgive_per_second: u32,

    /// ListIDsRequests per second one connection may make on average.
    #[arg(long, env = "FLSIGNAL_LIST_RATE_PER_SECOND", default_value_t = DEFAULT_LIST_RATE_LIMIT.per_second)]
    pub list_rate_per_second: u32,

    /// ListIDsRequests one connection may make in a burst.
    #[arg(long, env = "FLSIGNAL_LIST_RATE_BURST", default_value_t = DEFAULT_LIST_RATE_LIMIT.burst)]
    pub list_rate_burst: u32,

    /// Announces per second one source address (IPv6: prefix) may make on average.
    #[arg(long, env = "FLSIGNAL_ANNOUNCE_RATE_PER_SECOND", default_value_t = DEFAULT_ANNOUNCE_RATE.per_second)]
    pub announce_rate_per_second: u32,

    /// Announces one source address may make in a burst.
    #[arg(long, env = "FLSIGNAL_ANNOUNCE_RATE_BURST", default_value_t = DEFAULT_ANNOUNCE_RATE.burst)]
    pub announce_rate_burst: u32,

    /// Source addresses the announce rate remembers (least recently seen forgotten first).
    #[arg(long, env = "FLSIGNAL_ANNOUNCE_SOURCES", default_value_t = DEFAULT_ANNOUNCE_SOURCES)]
    pub announce_sources: usize,

    /// Time a fragmented message may take to complete (pings do not extend it).
    #[arg(long, env = "FLSIGNAL_FRAGMENT_TIMEOUT", value_parser = parse_duration, default_value = "10s")]
    pub fragment_timeout: Duration,

    /// Shortest time between two full node lists pushed to one fledger
    /// node; a ListIDsRequest within it of the node's last sample gets that
    /// view as it stands instead of a new sample.
    #[arg(long, env = "FLSIGNAL_MIN_LIST_PUSH_INTERVAL", value_parser = parse_duration, default_value = "1s")]
    pub min_list_push_interval: Duration,
}

impl FairnessConfig {
    /// What one sender may have queued for one receiver.
    pub fn relay_share(&self) -> RelayShare {
        RelayShare {
            frames: self.relay_share_frames,
            bytes: self.relay_share_bytes,
        }
    }

    pub fn announce_rate(&self) -> RateLimit {
        RateLimit {
            per_second: self.announce_rate_per_second,
            burst: self.announce_rate_burst,
        }
    }

    pub fn list_rate(&self) -> RateLimit {
        RateLimit {
            per_second: self.list_rate_per_second,
            burst: self.list_rate_burst,
        }
    }

    pub fn relay_abuse(&self) -> AbuseLimits {
        AbuseLimits {
            throttle_after: self.relay_throttle_after,
            disconnect_after: self.relay_disconnect_after,
            forgive_per_second: self.relay_forgive_per_second,
        }
    }

    /// Checks the limits; `max_message_size` is the largest frame a share must hold.
    pub fn validate(&self, max_message_size: usize) -> Result<(), InvalidSetting> {
        check(self.relay_share_frames >= 1, "--relay-share-frames must be at least 1")?;
        check(
            self.relay_share_bytes >= max_message_size,
            "--relay-share-bytes must be at least --max-message-size, or the largest message could never be relayed",
        )?;
        check(
            self.relay_throttle_after >= 1 && self.relay_disconnect_after > self.relay_throttle_after,
            "--relay-disconnect-after must be above --relay-throttle-after, which must be at least 1",
        )?;
        check(
            self.relay_forgive_per_second >= 1,
            "--relay-forgive-per-second must be at least 1",
        )?;
        check(
            self.list_rate_per_second >= 1 && self.list_rate_burst >= 1,
            "--list-rate-per-second and --list-rate-burst must be at least 1",
        )?;
        check(
            self.announce_rate_per_second >= 1 && self.announce_rate_burst >= 1 && self.announce_sources >= 1,
            "--announce-rate-per-second, --announce-rate-burst and --announce-sources must be at least 1",
        )?;
        check(!self.fragment_timeout.is_zero(), "--fragment-timeout must be positive")?;
        Ok(())
    }
}
