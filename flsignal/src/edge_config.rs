//! The flags of the server's edge: TLS on the listener, which proxies may
//! name their clients, and how clients are told apart for per-IP limits.
//! Part of [`crate::Config`] (flattened into its flags).

use crate::error::{check, InvalidSetting};
use std::path::PathBuf;

use clap::Args;
use flproto::addr_key::DEFAULT_IPV6_PREFIX_LEN;

use crate::proxy_header::{DEFAULT_MAX_PROXY_HEADER, MIN_MAX_PROXY_HEADER};
use crate::trusted_proxy::{self, TrustedProxies};

/// Largest `--max-proxy-header-size`: a version 2 header's own limit
/// (16 fixed bytes and a 16-bit length).
pub const MAX_MAX_PROXY_HEADER: usize = 16 + u16::MAX as usize;

#[derive(Debug, Clone, Args)]
pub struct EdgeConfig {
    /// PEM certificate chain to serve TLS (https://, wss://) with on
    /// --listen; needs --tls-key. Both are read again on SIGHUP.
    #[arg(long, env = "FLSIGNAL_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, env = "FLSIGNAL_TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// Address or network of a load balancer or proxy (comma separated or
    /// repeated) whose connections may name their client: with a PROXY
    /// protocol header (v1 or v2) or X-Forwarded-For. From anyone else
    /// both are ignored.
    #[arg(long, env = "FLSIGNAL_TRUSTED_PROXY", value_delimiter = ',', value_parser = trusted_proxy::parse_network)]
    pub trusted_proxy: Vec<ipnet::IpNet>,

    /// Largest PROXY protocol header read from a trusted proxy, in bytes.
    #[arg(long, env = "FLSIGNAL_MAX_PROXY_HEADER_SIZE", default_value_t = DEFAULT_MAX_PROXY_HEADER)]
    pub max_proxy_header_size: usize,

    /// IPv6 clients count against per-IP limits by this prefix (an IPv6
    /// user usually has a whole /64); 128 counts each address, 0 all of
    /// IPv6 as one client.
    #[arg(long, env = "FLSIGNAL_IPV6_PREFIX_LEN", default_value_t = DEFAULT_IPV6_PREFIX_LEN)]
    pub ipv6_prefix_len: u8,
}

impl EdgeConfig {
    pub fn trusted_proxies(&self) -> TrustedProxies {
        TrustedProxies(self.trusted_proxy.clone())
    }

    /// Checks combinations clap cannot check. Whether the TLS files are
    /// usable is checked when the server binds.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        check(
            self.tls_cert.is_some() == self.tls_key.is_some(),
            "--tls-cert and --tls-key go together",
        )?;
        check(
            (MIN_MAX_PROXY_HEADER..=MAX_MAX_PROXY_HEADER).contains(&self.max_proxy_header_size),
            format!("--max-proxy-header-size must be between {MIN_MAX_PROXY_HEADER} and {MAX_MAX_PROXY_HEADER} bytes"),
        )?;
        check(self.ipv6_prefix_len <= 128, "--ipv6-prefix-len must be at most 128")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;
    use clap::Parser;

    use super::*;

    #[test]
    fn defaults_are_the_documented_constants() {
        let edge = Config::default().edge;
        assert_eq!(edge.ipv6_prefix_len, DEFAULT_IPV6_PREFIX_LEN);
        assert_eq!(edge.max_proxy_header_size, DEFAULT_MAX_PROXY_HEADER);
        assert!(edge.trusted_proxies().is_empty());
        assert!(edge.tls_cert.is_none() && edge.tls_key.is_none());
    }

    #[test]
    fn trusted_proxies_are_repeatable_and_comma_separated() {
        let config = Config::parse_from([
            "flsignal",
            "--trusted-proxy",
            "127.0.0.1,10.0.0.0/8",
            "--trusted-proxy",
            "2001:db8::/32",
        ]);
        assert!(config.validate().is_ok());
        let trusted = config.edge.trusted_proxies();
        assert_eq!(trusted.0.len(), 3);
        assert!(trusted.contains("10.9.8.7".parse().unwrap()));
        assert!(Config::try_parse_from(["flsignal", "--trusted-proxy", "proxy.example"]).is_err());
    }

    #[test]
    fn tls_files_go_together_and_limits_are_checked() {
        for bad in [
            &["flsignal", "--tls-cert", "c.pem"][..],
            &["flsignal", "--tls-key", "k.pem"],
            &["flsignal", "--ipv6-prefix-len", "129"],
            &["flsignal", "--max-proxy-header-size", "100"],
            &["flsignal", "--max-proxy-header-size", "70000"],
        ] {
            assert!(Config::parse_from(bad).validate().is_err(), "{bad:?}");
        }
        let both = Config::parse_from(["flsignal", "--tls-cert", "c.pem", "--tls-key", "k.pem"]);
        assert!(both.validate().is_ok());
    }
}
