//! The signalling server's TURN relay: flsignal sends each of our nodes a
//! short-lived credential (`TurnCredentials`, renewed before it expires),
//! and every connection made afterwards offers `turn:<host of --signal>:
//! <port>` with it to ICE, beside the configured servers. No credential
//! lives in a node's configuration.
//!
//! A connection keeps the credential it was made with: the relay checks
//! credentials when an allocation is made, not when it is refreshed.

use flproto::message::TurnCredentials;
use tokio::sync::watch;
use webrtc::peer_connection::RTCIceServer;

use crate::ice_servers::{IceServer, Scheme};

/// Longest username or password taken from the server: STUN's limit for a
/// USERNAME (RFC 8489), far above the ~80 bytes flsignal sends.
pub const MAX_CREDENTIAL_BYTES: usize = 513;

/// Why a credential from the server is not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnusableCredential {
    #[error("the signal URL has no host")]
    NoHost,
    #[error("port 0")]
    NoPort,
    #[error("an empty, overlong or multi-line username or password")]
    BadText,
}

/// The server's TURN relay as an ICE server: the host of `signal`, the
/// port and credential the server sent.
pub fn relay_of(signal: &str, credentials: &TurnCredentials) -> Result<IceServer, UnusableCredential> {
    let usable =
        |text: &str| !text.is_empty() && text.len() <= MAX_CREDENTIAL_BYTES && !text.chars().any(char::is_control);
    if !usable(&credentials.username) || !usable(&credentials.password) {
        return Err(UnusableCredential::BadText);
    }
    if credentials.port == 0 {
        return Err(UnusableCredential::NoPort);
    }
    let stun = IceServer::default_for_signal(signal).ok_or(UnusableCredential::NoHost)?;
    Ok(IceServer {
        scheme: Scheme::Turn,
        host: stun.host,
        port: credentials.port,
        credentials: Some((credentials.username.clone(), credentials.password.clone())),
    })
}

/// The ICE servers new connections of configured peers use: the configured
/// ones, then the server's relay once it sent a credential. Peers read the
/// list when they build a connection.
pub struct IceServerList {
    configured: Vec<IceServer>,
    signal: String,
    relay: Option<IceServer>,
    current: watch::Sender<Vec<RTCIceServer>>,
}

impl IceServerList {
    pub fn new(configured: Vec<IceServer>, signal: String) -> IceServerList {
        let (current, _) = watch::channel(configured.iter().map(IceServer::to_rtc).collect());
        IceServerList {
            configured,
            signal,
            relay: None,
            current,
        }
    }

    /// What a new peer reads its servers from.
    pub fn subscribe(&self) -> watch::Receiver<Vec<RTCIceServer>> {
        self.current.subscribe()
    }

    /// Takes a credential the server sent; the first one is logged.
    pub fn on_credentials(&mut self, credentials: &TurnCredentials) {
        let relay = match relay_of(&self.signal, credentials) {
            Ok(relay) => relay,
            Err(error) => {
                tracing::warn!("the signalling server's TURN credential is not used: {error}");
                return;
            }
        };
        if self.relay.is_none() {
            tracing::info!(%relay, ttl = credentials.ttl, "using the signalling server's TURN relay");
        }
        let servers = self.configured.iter().chain([&relay]).map(IceServer::to_rtc).collect();
        self.relay = Some(relay);
        self.current.send_replace(servers);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials(username: &str, password: &str, port: u16) -> TurnCredentials {
        TurnCredentials {
            username: username.into(),
            password: password.into(),
            ttl: 3600,
            port,
            tcp_port: None,
            tls_port: None,
        }
    }

    #[test]
    fn the_relay_is_on_the_signalling_host() {
        let relay = relay_of("wss://Signal.Example/", &credentials("1700003600:ab", "p/w=", 3478)).unwrap();
        let rtc = relay.to_rtc();
        assert_eq!(rtc.urls, vec!["turn:signal.example:3478?transport=udp"]);
        assert_eq!(
            (rtc.username.as_str(), rtc.credential.as_str()),
            ("1700003600:ab", "p/w=")
        );
        assert!(!relay.to_string().contains("p/w="));
        let v6 = relay_of("ws://[2001:db8::1]:8765", &credentials("u", "p", 3479)).unwrap();
        assert_eq!(v6.to_rtc().urls, vec!["turn:[2001:db8::1]:3479?transport=udp"]);
    }

    #[test]
    fn unusable_credentials_are_refused() {
        let long = "x".repeat(MAX_CREDENTIAL_BYTES + 1);
        for (username, password, port, error) in [
            ("", "p", 3478, UnusableCredential::BadText),
            ("u", "", 3478, UnusableCredential::BadText),
            (long.as_str(), "p", 3478, UnusableCredential::BadText),
            ("u", "a\nb", 3478, UnusableCredential::BadText),
            ("u", "p", 0, UnusableCredential::NoPort),
        ] {
            assert_eq!(
                relay_of("ws://signal.example:8765", &credentials(username, password, port)),
                Err(error)
            );
        }
        assert_eq!(
            relay_of("not a url", &credentials("u", "p", 3478)),
            Err(UnusableCredential::NoHost)
        );
    }

    #[test]
    fn new_connections_get_the_newest_credential() {
        let configured = vec![IceServer::parse("stun:stun.example").unwrap()];
        let mut list = IceServerList::new(configured, "ws://signal.example:8765".into());
        let peer = list.subscribe();
        assert_eq!(peer.borrow().len(), 1);
        list.on_credentials(&credentials("1:a", "first", 3478));
        list.on_credentials(&credentials("2:a", "second", 3478));
        let servers = peer.borrow().clone();
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[0].urls, vec!["stun:stun.example:3478"]);
        assert_eq!(servers[1].credential, "second");
        // A broken one leaves the last good one in place.
        list.on_credentials(&credentials("3:a", "third", 0));
        assert_eq!(peer.borrow()[1].credential, "second");
    }
}
