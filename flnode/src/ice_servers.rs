//! STUN and TURN servers for ICE, from `--ice-server` URLs.
//!
//! Syntax (one clear form each, RFC 7064/7065 URLs with the TURN
//! credentials in front of the host):
//!
//! * `stun:HOST[:PORT]`
//! * `turn:USER:PASSWORD@HOST[:PORT][?transport=udp]`
//!
//! HOST is a DNS name, an IPv4 address or a bracketed IPv6 address; PORT
//! defaults to 3478. In USER and PASSWORD, `%XX` stands for the byte XX, so
//! `:`, `@`, `,` and `%` are written `%3A`, `%40`, `%2C` and `%25`. Only
//! UDP is offered: the WebRTC stack skips `stuns:`, `turns:` and TCP TURN,
//! so they are refused here instead of silently doing nothing.

use std::fmt;

use thiserror::Error;
use webrtc::peer_connection::RTCIceServer;

/// The port of STUN and TURN when a URL names none (RFC 8489).
pub const DEFAULT_PORT: u16 = 3478;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Stun,
    Turn,
}

/// One STUN or TURN server.
#[derive(Clone, PartialEq, Eq)]
pub struct IceServer {
    pub scheme: Scheme,
    /// A DNS name, an IPv4 address, or an IPv6 address in brackets.
    pub host: String,
    pub port: u16,
    /// TURN's long-term credentials (user, password); none for STUN.
    pub credentials: Option<(String, String)>,
}

/// Why a URL is refused; shown after the URL in a one-line error.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum IceServerError {
    #[error("expected stun:HOST[:PORT] or turn:USER:PASSWORD@HOST[:PORT]")]
    UnknownScheme,
    #[error("{0}: is not supported (the WebRTC stack speaks STUN and TURN over UDP only)")]
    Unsupported(String),
    #[error("no host")]
    NoHost,
    #[error("host {0:?} is not a DNS name, an IPv4 address or a bracketed IPv6 address")]
    BadHost(String),
    #[error("port {0:?} is not a number from 1 to 65535")]
    BadPort(String),
    #[error("STUN takes no user or password")]
    StunCredentials,
    #[error("TURN needs USER:PASSWORD@ before the host, e.g. turn:alice:secret@turn.example:3478")]
    TurnWithoutCredentials,
    #[error("bad percent escape in the user or password (write % as %25)")]
    BadEscape,
    #[error("only ?transport=udp is supported")]
    BadQuery,
}

impl IceServer {
    pub fn parse(url: &str) -> Result<IceServer, IceServerError> {
        let (scheme, rest) = url.trim().split_once(':').ok_or(IceServerError::UnknownScheme)?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "stun" => Scheme::Stun,
            "turn" => Scheme::Turn,
            other @ ("stuns" | "turns") => return Err(IceServerError::Unsupported(other.to_owned())),
            _ => return Err(IceServerError::UnknownScheme),
        };
        let (rest, query) = match rest.split_once('?') {
            Some((rest, query)) => (rest, Some(query)),
            None => (rest, None),
        };
        if let Some(query) = query {
            if scheme == Scheme::Stun || !query.eq_ignore_ascii_case("transport=udp") {
                return Err(IceServerError::BadQuery);
            }
        }
        // The host never contains `@`; a password may (escaped or not).
        let (userinfo, authority) = match rest.rsplit_once('@') {
            Some((userinfo, authority)) => (Some(userinfo), authority),
            None => (None, rest),
        };
        let credentials = match (scheme, userinfo) {
            (Scheme::Stun, Some(_)) => return Err(IceServerError::StunCredentials),
            (Scheme::Stun, None) => None,
            (Scheme::Turn, None) => return Err(IceServerError::TurnWithoutCredentials),
            (Scheme::Turn, Some(userinfo)) => {
                let (user, password) = userinfo.split_once(':').ok_or(IceServerError::TurnWithoutCredentials)?;
                let (user, password) = (percent_decode(user)?, percent_decode(password)?);
                if user.is_empty() || password.is_empty() {
                    return Err(IceServerError::TurnWithoutCredentials);
                }
                Some((user, password))
            }
        };
        let (host, port) = split_host_port(authority)?;
        Ok(IceServer {
            scheme,
            host,
            port,
            credentials,
        })
    }

    /// The STUN service of the signalling server at `signal` (a `ws://`
    /// URL): same host, [`DEFAULT_PORT`].
    pub fn default_for_signal(signal: &str) -> Option<IceServer> {
        let authority = flproto::announce::authority_of_url(signal)?;
        let (host, _port) = authority.rsplit_once(':')?;
        let (host, _) = split_host_port(host).ok()?;
        Some(IceServer {
            scheme: Scheme::Stun,
            host,
            port: DEFAULT_PORT,
            credentials: None,
        })
    }

    /// The URL without credentials, as the WebRTC stack takes it.
    fn url(&self) -> String {
        match self.scheme {
            Scheme::Stun => format!("stun:{}:{}", self.host, self.port),
            Scheme::Turn => format!("turn:{}:{}?transport=udp", self.host, self.port),
        }
    }

    pub fn to_rtc(&self) -> RTCIceServer {
        let (username, credential) = self.credentials.clone().unwrap_or_default();
        RTCIceServer {
            urls: vec![self.url()],
            username,
            credential,
        }
    }
}

/// Shows the server without its password, for logs.
impl fmt::Display for IceServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.scheme, &self.credentials) {
            (Scheme::Turn, Some((user, _))) => write!(f, "turn:{user}:***@{}:{}", self.host, self.port),
            _ => f.write_str(&self.url()),
        }
    }
}

impl fmt::Debug for IceServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Parses every URL; the first bad one is a one-line error naming it.
pub fn parse_all(urls: &[String]) -> anyhow::Result<Vec<IceServer>> {
    urls.iter()
        .map(|url| IceServer::parse(url).map_err(|error| anyhow::anyhow!("--ice-server {:?}: {error}", redact(url))))
        .collect()
}

/// The STUN servers of `servers`: what a test peer's connection uses. A
/// TURN relay is the user's (its traffic, its credentials' quota); a node
/// that is not a configured peer gets host and server-reflexive paths only.
pub fn stun_only(servers: &[IceServer]) -> impl Iterator<Item = &IceServer> {
    servers.iter().filter(|server| server.scheme == Scheme::Stun)
}

/// `url` with anything between the scheme and an `@` hidden.
fn redact(url: &str) -> String {
    match (url.split_once(':'), url.rsplit_once('@')) {
        (Some((scheme, _)), Some((_, host))) => format!("{scheme}:***@{host}"),
        _ => url.to_owned(),
    }
}

fn split_host_port(authority: &str) -> Result<(String, u16), IceServerError> {
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (inside, after) = bracketed
            .split_once(']')
            .ok_or_else(|| IceServerError::BadHost(authority.to_owned()))?;
        inside
            .parse::<std::net::Ipv6Addr>()
            .map_err(|_| IceServerError::BadHost(authority.to_owned()))?;
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or(IceServerError::BadPort(after.to_owned()))?,
            ),
        };
        (format!("[{inside}]"), port)
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host.to_owned(), Some(port)),
            None => (authority.to_owned(), None),
        }
    };
    if host.is_empty() {
        return Err(IceServerError::NoHost);
    }
    if !host.starts_with('[') && !is_dns_name_or_ipv4(&host) {
        return Err(IceServerError::BadHost(host));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(text) => match text.parse::<u16>() {
            Ok(port) if port != 0 => port,
            _ => return Err(IceServerError::BadPort(text.to_owned())),
        },
    };
    Ok((host.to_ascii_lowercase(), port))
}

/// Letters, digits, `-` and `.`, in labels of 1 to 63 characters (an IPv4
/// address is such a name too).
fn is_dns_name_or_ipv4(host: &str) -> bool {
    host.len() <= 253
        && host.split('.').all(|label| {
            (1..=63).contains(&label.len()) && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn percent_decode(text: &str) -> Result<String, IceServerError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let hex = text.get(at + 1..at + 3).ok_or(IceServerError::BadEscape)?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| IceServerError::BadEscape)?);
            at += 3;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(out).map_err(|_| IceServerError::BadEscape)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(url: &str) -> IceServer {
        IceServer::parse(url).unwrap_or_else(|error| panic!("{url}: {error}"))
    }

    #[test]
    fn stun_urls() {
        let server = ok("stun:signal.example");
        assert_eq!(
            (server.scheme, server.host.as_str(), server.port),
            (Scheme::Stun, "signal.example", 3478)
        );
        assert_eq!(server.to_rtc().urls, vec!["stun:signal.example:3478"]);
        assert_eq!(ok("STUN:192.0.2.1:19302").to_rtc().urls, vec!["stun:192.0.2.1:19302"]);
        assert_eq!(
            ok("stun:[2001:db8::1]:5000").to_rtc().urls,
            vec!["stun:[2001:db8::1]:5000"]
        );
        assert_eq!(ok("stun:[2001:db8::1]").port, 3478);
        assert!(ok("stun:x").to_rtc().username.is_empty());
    }

    #[test]
    fn test_peers_get_the_stun_servers_and_no_turn_relay() {
        let servers = parse_all(&[
            "stun:a.example".into(),
            "turn:u:p@relay.example".into(),
            "stun:b.example:1".into(),
        ])
        .unwrap();
        let hosts: Vec<&str> = stun_only(&servers).map(|server| server.host.as_str()).collect();
        assert_eq!(hosts, ["a.example", "b.example"]);
        assert!(stun_only(&servers).all(|server| server.to_rtc().username.is_empty()));
    }

    #[test]
    fn turn_urls_carry_their_credentials() {
        let server = ok("turn:alice:s3cret@turn.example:3479?transport=udp");
        let rtc = server.to_rtc();
        assert_eq!(rtc.urls, vec!["turn:turn.example:3479?transport=udp"]);
        assert_eq!((rtc.username.as_str(), rtc.credential.as_str()), ("alice", "s3cret"));
        // The password never shows in logs.
        assert_eq!(server.to_string(), "turn:alice:***@turn.example:3479");
        assert!(!format!("{server:?}").contains("s3cret"));
        // TURN REST usernames contain `:`; passwords may contain anything.
        let escaped = ok("turn:1700000000%3Aalice:p%40ss:w%2Cord%25@[2001:db8::2]");
        assert_eq!(
            escaped.credentials,
            Some(("1700000000:alice".to_owned(), "p@ss:w,ord%".to_owned()))
        );
        assert_eq!(escaped.to_rtc().urls, vec!["turn:[2001:db8::2]:3478?transport=udp"]);
        // An unescaped `@` in the password still finds the host.
        assert_eq!(ok("turn:bob:a@b@turn.example").credentials.unwrap().1, "a@b");
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        for (url, error) in [
            ("signal.example:3478", IceServerError::UnknownScheme),
            ("http://x", IceServerError::UnknownScheme),
            ("turns:u:p@x", IceServerError::Unsupported("turns".into())),
            ("stuns:x", IceServerError::Unsupported("stuns".into())),
            ("stun:", IceServerError::NoHost),
            ("stun::3478", IceServerError::NoHost),
            ("stun:x:0", IceServerError::BadPort("0".into())),
            ("stun:x:99999", IceServerError::BadPort("99999".into())),
            ("stun:x:abc", IceServerError::BadPort("abc".into())),
            ("stun:bad_host", IceServerError::BadHost("bad_host".into())),
            ("stun:[nope]", IceServerError::BadHost("[nope]".into())),
            ("stun:2001:db8::1", IceServerError::BadPort("db8::1".into())),
            ("stun:u:p@x", IceServerError::StunCredentials),
            ("stun:x?transport=udp", IceServerError::BadQuery),
            ("turn:x", IceServerError::TurnWithoutCredentials),
            ("turn:user@x", IceServerError::TurnWithoutCredentials),
            ("turn::p@x", IceServerError::TurnWithoutCredentials),
            ("turn:u:p@x?transport=tcp", IceServerError::BadQuery),
            ("turn:u:%zz@x", IceServerError::BadEscape),
            ("turn:u:%4@x", IceServerError::BadEscape),
        ] {
            assert_eq!(IceServer::parse(url), Err(error), "{url}");
        }
        let message = parse_all(&["turn:alice:secret@x?transport=tcp".into()])
            .unwrap_err()
            .to_string();
        assert_eq!(message.lines().count(), 1);
        assert!(
            message.starts_with("--ice-server \"turn:***@x?transport=tcp\""),
            "{message}"
        );
        assert!(!message.contains("secret"), "{message}");
    }

    #[test]
    fn the_default_is_the_signalling_servers_stun() {
        let default = |signal: &str| IceServer::default_for_signal(signal).map(|s| s.to_rtc().urls[0].clone());
        assert_eq!(
            default("ws://Signal.Example:8765/").as_deref(),
            Some("stun:signal.example:3478")
        );
        assert_eq!(
            default("ws://203.0.113.10:8765").as_deref(),
            Some("stun:203.0.113.10:3478")
        );
        assert_eq!(
            default("ws://[2001:db8::5]:8765").as_deref(),
            Some("stun:[2001:db8::5]:3478")
        );
        assert_eq!(
            default("ws://signal.example").as_deref(),
            Some("stun:signal.example:3478")
        );
        assert_eq!(default("not a url"), None);
    }
}
