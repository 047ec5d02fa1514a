//! The TURN credentials flsignal sends its version-4 nodes over
//! signalling (`ServerMessage::TurnCredentials`), when the session says one
//! is due.

use std::time::SystemTime;

use flproto::message::{ServerMessage, TurnCredentials};
use flproto::turn_credentials::{CredentialSchedule, TurnSecret};
use flproto::NodeId;

/// The TURN service's ports, as nodes are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub udp: u16,
    pub tcp: Option<u16>,
    pub tls: Option<u16>,
}

pub struct CredentialIssuer {
    secret: TurnSecret,
    schedule: CredentialSchedule,
    ports: Ports,
}

impl CredentialIssuer {
    pub fn new(secret: TurnSecret, schedule: CredentialSchedule, ports: Ports) -> CredentialIssuer {
        CredentialIssuer {
            secret,
            schedule,
            ports,
        }
    }

    /// How often a node gets a fresh credential.
    pub fn renewal_interval(&self) -> std::time::Duration {
        self.schedule.renewal_interval()
    }

    /// A fresh credential for `node`, valid from `now` (Unix seconds).
    pub fn message_at(&self, node: &NodeId, now: u64) -> ServerMessage {
        let credential = self.secret.issue(node, self.schedule.expiry_at(now));
        ServerMessage::TurnCredentials(TurnCredentials {
            username: credential.username,
            password: credential.password,
            ttl: self.schedule.lifetime.as_secs(),
            port: self.ports.udp,
            tcp_port: self.ports.tcp,
            tls_port: self.ports.tls,
        })
    }

    /// A fresh credential for `node`, valid from now.
    pub fn message_for(&self, node: &NodeId) -> ServerMessage {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        self.message_at(node, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_node_gets_a_credential_the_secret_verifies() {
        let secret = TurnSecret::from_file_contents(b"a secret of enough bytes").unwrap();
        let schedule = CredentialSchedule {
            lifetime: Duration::from_secs(600),
        };
        let ports = Ports {
            udp: 3478,
            tcp: None,
            tls: Some(443),
        };
        let issuer = CredentialIssuer::new(secret.clone(), schedule, ports);
        let node = NodeId([7; 32]);
        let ServerMessage::TurnCredentials(message) = issuer.message_at(&node, 1_000) else {
            panic!("not a credential");
        };
        assert_eq!((message.ttl, message.port), (600, 3478));
        assert_eq!((message.tcp_port, message.tls_port), (None, Some(443)));
        assert_eq!(message.username, format!("1600:{node}"));
        let user = secret.verify(&message.username, &message.password, 1_599).unwrap();
        assert_eq!(user.node, node);
        assert!(secret.verify(&message.username, &message.password, 1_600).is_err());
        assert_eq!(issuer.renewal_interval(), Duration::from_secs(300));
    }
}
