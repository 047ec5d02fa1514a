//! What can keep flsignal from starting, as types. Each says in one line
//! which flag, file or address is at fault; the underlying error, if any,
//! is its `source()`, which the binary prints after it (`main.rs` reports
//! with anyhow).

use std::net::SocketAddr;
use std::path::PathBuf;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Setting(#[from] InvalidSetting),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot listen on {addr}{}", in_use_hint(source, "--listen"))]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot listen for STUN on udp {addr}{}",
        in_use_hint(source, "--stun-listen, or `off`")
    )]
    StunListen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Turn(#[from] TurnError),
}

/// Why the TURN service cannot start.
#[derive(Debug, thiserror::Error)]
pub enum TurnError {
    #[error(
        "cannot listen for TURN on udp {addr}{}",
        in_use_hint(source, "--turn-listen, or `off`")
    )]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot listen for TURN on tcp {addr}{}",
        in_use_hint(source, "--turn-tcp-listen or --turn-tls-listen, or `off`")
    )]
    StreamListen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("--turn-secret-file {}: cannot read it", .path.display())]
    SecretUnreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--turn-secret-file {}: {source}", .path.display())]
    BadSecret {
        path: PathBuf,
        source: flproto::turn_credentials::CredentialError,
    },
    #[error("the TURN service needs an address for relay sockets: --turn-listen on 0.0.0.0 or [::] and no public interface address found; give --turn-relay-ip (or --turn-listen off)")]
    NoRelayIp,
}

/// A setting that breaks a rule clap cannot check; the text names the
/// flags and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidSetting(pub String);

/// `Ok` if `rule` holds, else the setting error `says`.
pub fn check(rule: bool, says: impl Into<String>) -> Result<(), InvalidSetting> {
    if rule {
        Ok(())
    } else {
        Err(InvalidSetting(says.into()))
    }
}

/// Why the TLS certificate or key (`--tls-cert`, `--tls-key`) cannot be
/// used, at startup or on reload.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("--tls-cert {}: cannot read it", .path.display())]
    CertUnreadable {
        path: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("--tls-cert {}: not PEM certificates", .path.display())]
    CertNotPem {
        path: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("--tls-cert {}: no certificate in it", .path.display())]
    NoCertificate { path: PathBuf },
    #[error("--tls-key {}: cannot read it", .path.display())]
    KeyUnreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--tls-key {}: no private key in it", .path.display())]
    NoKey { path: PathBuf },
    #[error("--tls-key {}: not a PEM private key", .path.display())]
    KeyNotPem {
        path: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("--tls-key {} does not fit --tls-cert {}", .key.display(), .cert.display())]
    Mismatch {
        key: PathBuf,
        cert: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("TLS set-up")]
    Setup(#[source] rustls::Error),
}

/// Why the NATS edge of a cluster (`--nats`) cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot read NATS credentials {}", .path.display())]
    Credentials {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the NATS NKey seed {}", .path.display())]
    NkeyUnreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} holds no NKey user seed (one starts with SU)", .path.display())]
    NotAnNkeySeed { path: PathBuf },
    #[error("bad --nats URL")]
    Url(#[source] std::io::Error),
    #[error("cannot set up the NATS client")]
    Client(#[source] async_nats::ConnectError),
    #[error("cannot subscribe to NATS")]
    Subscribe(#[source] async_nats::SubscribeError),
}

/// What to add to a bind error: the hint for a port in use.
fn in_use_hint(error: &std::io::Error, flag: &str) -> String {
    if error.kind() == std::io::ErrorKind::AddrInUse {
        format!(" (another program uses that port; pick another with {flag})")
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the binary prints: the error and its sources, `: `-joined.
    fn reported(error: &dyn std::error::Error) -> String {
        let mut text = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            text.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        text
    }

    #[test]
    fn a_port_in_use_names_the_flag_that_picks_another_once() {
        let in_use = || std::io::Error::from(std::io::ErrorKind::AddrInUse);
        let addr: SocketAddr = "127.0.0.1:8765".parse().unwrap();
        let listen = reported(&Error::Listen { addr, source: in_use() });
        assert!(
            listen.starts_with("cannot listen on 127.0.0.1:8765 (another program"),
            "{listen}"
        );
        assert_eq!(listen.matches("--listen").count(), 1, "{listen}");
        let stun = reported(&Error::StunListen { addr, source: in_use() });
        assert!(stun.starts_with("cannot listen for STUN on udp"), "{stun}");
        assert!(stun.contains("--stun-listen"), "{stun}");
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let other = reported(&Error::Listen { addr, source: denied });
        assert!(!other.contains("another program"), "{other}");
    }

    #[test]
    fn a_setting_error_is_its_rule() {
        assert_eq!(check(true, "never"), Ok(()));
        let error = Error::from(check(false, "--x must be at least 1").unwrap_err());
        assert_eq!(reported(&error), "--x must be at least 1");
    }
}
