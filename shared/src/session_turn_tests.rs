//! TURN credentials: who gets them, when, and that they stop with the
//! session.

use std::time::Duration;

use super::tests::{Harness, FIRST_LIST, SERVER};
use super::*;
use crate::announce::AnnounceAuth;
use crate::identity::NodeKey;

const RENEWAL: Duration = Duration::from_secs(1800);

fn with_turn() -> SessionConfig {
    SessionConfig {
        turn_renewal: Some(RENEWAL),
        ..SessionConfig::default()
    }
}

/// With TURN, and no idle timeout or ping within the tests' hours.
fn long_lived() -> SessionConfig {
    SessionConfig {
        idle_timeout: Duration::from_secs(86_400),
        ping_interval: Duration::from_secs(86_400),
        ..with_turn()
    }
}

fn bound() -> AnnounceAuth {
    AnnounceAuth::Bound { server: SERVER.into() }
}

/// Announces `auth` and registers; what the registration produced.
fn register(harness: &mut Harness, auth: AnnounceAuth) -> Vec<Action> {
    let out = harness.announce(&NodeKey::generate(), &auth);
    assert!(matches!(out.as_slice(), [Action::Register(_)]), "{out:?}");
    let mut out = Vec::new();
    harness.session.on_registered(FIRST_LIST.into(), &mut out);
    out
}

fn credentials_sent(out: &[Action]) -> usize {
    out.iter()
        .filter(|action| **action == Action::SendTurnCredentials)
        .count()
}

#[test]
fn a_version_4_node_gets_a_credential_before_its_first_list() {
    let (mut harness, _) = Harness::new(with_turn());
    let out = register(&mut harness, bound());
    assert!(matches!(
        out.as_slice(),
        [
            Action::Send(ServerMessage::SystemConfig(_)),
            Action::SendTurnCredentials,
            Action::SendListing(_)
        ]
    ));
}

#[test]
fn fledger_nodes_never_get_one() {
    let (mut harness, _) = Harness::new(long_lived());
    let out = register(&mut harness, AnnounceAuth::Fledger);
    assert_eq!(credentials_sent(&out), 0, "{out:?}");
    for _ in 0..8 {
        let out = harness.advance(RENEWAL);
        assert_eq!(credentials_sent(&out), 0, "{out:?}");
        assert!(harness.session.node_id().is_some());
    }
}

#[test]
fn no_credentials_without_a_turn_service() {
    let (mut harness, _) = Harness::new(SessionConfig::default());
    let out = register(&mut harness, bound());
    assert_eq!(out.len(), 2, "{out:?}");
    assert!(harness.session.next_deadline() <= harness.now + DEFAULT_PING_INTERVAL);
}

#[test]
fn a_fresh_credential_follows_every_renewal_interval() {
    let (mut harness, _) = Harness::new(long_lived());
    register(&mut harness, bound());
    assert_eq!(harness.session.next_deadline(), harness.now + RENEWAL);
    assert_eq!(credentials_sent(&harness.advance(RENEWAL - Duration::from_secs(1))), 0);
    assert_eq!(credentials_sent(&harness.advance(Duration::from_secs(1))), 1);
    assert_eq!(harness.session.next_deadline(), harness.now + RENEWAL);
    assert_eq!(credentials_sent(&harness.advance(RENEWAL)), 1);
}

#[test]
fn a_closed_session_gets_no_more_credentials() {
    let (mut harness, _) = Harness::new(with_turn());
    register(&mut harness, bound());
    let mut out = Vec::new();
    harness.session.close(crate::close::CloseReason::Shutdown, &mut out);
    assert_eq!(credentials_sent(&harness.advance(RENEWAL * 4)), 0);
    // Nor does one that timed out while a renewal was due.
    let (mut harness, _) = Harness::new(with_turn());
    register(&mut harness, bound());
    let out = harness.advance(DEFAULT_IDLE_TIMEOUT.max(RENEWAL) + RENEWAL);
    assert!(
        out.contains(&Action::Close(crate::close::CloseReason::IdleTimeout)),
        "{out:?}"
    );
    assert_eq!(credentials_sent(&out), 0, "{out:?}");
}
