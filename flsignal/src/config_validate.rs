//! The checks of flsignal's settings that clap cannot make: combinations
//! of flags, and values inside the ranges their types allow.

use crate::config::Config;
use crate::error::{check, InvalidSetting};

impl Config {
    /// Checks combinations clap cannot check.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        check(
            self.max_message_size >= 1024,
            "--max-message-size must be at least 1024 bytes",
        )?;
        check(self.outbound_queue >= 1, "--outbound-queue must be at least 1")?;
        check(
            self.rate_per_second >= 1 && self.rate_burst >= 1,
            "--rate-per-second and --rate-burst must be at least 1",
        )?;
        self.fairness.validate(self.max_message_size)?;
        check(
            self.max_connections >= 1 && self.max_connections_per_ip >= 1,
            "connection limits must be at least 1",
        )?;
        check(
            self.max_list_len >= 1 && self.join_fanout >= 1,
            "--max-list-len and --join-fanout must be at least 1",
        )?;
        check(
            !self.presence_interval.is_zero(),
            "--presence-interval must be positive",
        )?;
        check(
            self.ws_read_buffer >= 256,
            "--ws-read-buffer must be at least 256 bytes",
        )?;
        check(
            (64..=65_507).contains(&self.stun_max_request),
            "--stun-max-request must be between 64 and 65507 bytes",
        )?;
        check(
            self.stun_rate_per_second >= 1 && self.stun_rate_burst >= 1,
            "--stun-rate-per-second and --stun-rate-burst must be at least 1",
        )?;
        check(
            self.stun_global_rate_per_second >= 1 && self.stun_global_burst >= 1,
            "--stun-global-rate-per-second and --stun-global-burst must be at least 1",
        )?;
        check(self.stun_max_sources >= 1, "--stun-max-sources must be at least 1")?;
        self.edge.validate()?;
        self.relay.validate(self.max_message_size)?;
        self.turn.validate()?;
        check(
            self.turn.turn_tls_listen.0.is_none() || self.edge.tls_cert.is_some(),
            "--turn-tls-listen needs --tls-cert and --tls-key",
        )?;
        self.trim.validate()?;
        self.validate_cluster()
    }

    fn validate_cluster(&self) -> Result<(), InvalidSetting> {
        for url in &self.nats {
            url.parse::<async_nats::ServerAddr>()
                .map_err(|error| InvalidSetting(format!("--nats {url:?} is not a NATS URL: {error}")))?;
        }
        check(self.nats_queue >= 1, "--nats-queue must be at least 1")?;
        check(
            self.nats_creds.is_none() || self.nats_nkey.is_none(),
            "--nats-creds and --nats-nkey exclude each other (a .creds file holds its own NKey)",
        )?;
        check(
            self.nats_tls_cert.is_some() == self.nats_tls_key.is_some(),
            "--nats-tls-cert and --nats-tls-key go together",
        )?;
        check(
            !self.nats_prefix.is_empty()
                && self
                    .nats_prefix
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "--nats-prefix must be letters, digits, '-' or '_'",
        )?;
        check(
            !self.cluster_heartbeat.is_zero() && self.cluster_expiry >= 2 * self.cluster_heartbeat,
            "--cluster-expiry must be at least twice --cluster-heartbeat (and both positive)",
        )?;
        check(
            !self.cluster_max_clock_skew.is_zero(),
            "--cluster-max-clock-skew must be positive",
        )?;
        Ok(())
    }
}
