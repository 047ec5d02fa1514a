//! The handshake reply: what a connection is sent once the server entered
//! its node, or refused to, and what the server removes when it ends.

use std::time::Duration;

use super::tests::{registered, Harness, FIRST_LIST, SERVER};
use super::*;
use crate::announce::AnnounceAuth;
use crate::identity::NodeKey;

#[test]
fn a_registered_node_gets_the_system_config_then_its_first_list() {
    let key = NodeKey::generate();
    let (mut harness, _) = Harness::new(SessionConfig::default());
    let out = harness.announce(&key, &AnnounceAuth::Bound { server: SERVER.into() });
    assert!(matches!(out.as_slice(), [Action::Register(node)] if node.id() == key.id() && node.bound));
    assert_eq!(harness.session.node_id(), None, "not before the server entered it");
    assert_eq!(harness.session.registered_node(), Some(key.id()));
    let mut out = Vec::new();
    harness.session.on_registered(FIRST_LIST.into(), &mut out);
    assert_eq!(
        out,
        vec![
            Action::Send(ServerMessage::SystemConfig(SystemConfig::default())),
            Action::SendListing(FIRST_LIST.into()),
        ]
    );
    assert_eq!(harness.session.node_id(), Some(key.id()));
    // A second report changes nothing.
    let mut again = Vec::new();
    harness.session.on_registered(FIRST_LIST.into(), &mut again);
    assert!(again.is_empty());
}

#[test]
fn a_registration_the_server_refuses_closes_as_rate_limited_holding_nothing() {
    let key = NodeKey::generate();
    let (mut harness, _) = Harness::new(SessionConfig::default());
    harness.announce(&key, &AnnounceAuth::Fledger);
    let mut out = Vec::new();
    harness.session.refuse_registration(&mut out);
    assert_eq!(
        out,
        vec![
            Action::Refuse(Refusal::SourceRateLimited),
            Action::Close(CloseReason::RateLimited)
        ]
    );
    assert!(harness.session.is_closed());
    assert_eq!(harness.session.registered_node(), None, "the server never held it");
    let mut out = Vec::new();
    harness.session.on_registered(FIRST_LIST.into(), &mut out);
    assert!(out.is_empty(), "too late");
}

#[test]
fn a_closed_session_still_names_the_node_to_remove() {
    let key = NodeKey::generate();
    let mut harness = registered(&key, AnnounceAuth::Fledger);
    let mut out = Vec::new();
    harness.session.close(CloseReason::Shutdown, &mut out);
    assert_eq!(harness.session.node_id(), None, "it speaks for nobody once closed");
    assert_eq!(harness.session.registered_node(), Some(key.id()));
    // Refusing a registration that is done changes nothing.
    let mut out = Vec::new();
    harness.session.refuse_registration(&mut out);
    assert!(out.is_empty());
}

#[test]
fn a_session_that_never_announced_holds_nothing() {
    let (mut harness, _) = Harness::new(SessionConfig::default());
    assert_eq!(harness.session.registered_node(), None);
    let mut out = Vec::new();
    harness.session.refuse_registration(&mut out);
    harness.session.on_registered(FIRST_LIST.into(), &mut out);
    assert!(out.is_empty(), "{out:?}");
    assert!(!harness.session.is_closed());
}

#[test]
fn valid_announces_register_with_their_flavour() {
    let key = NodeKey::generate();
    for (auth, bound) in [
        (AnnounceAuth::Fledger, false),
        (AnnounceAuth::Bound { server: SERVER.into() }, true),
    ] {
        let harness = registered(&key, auth);
        assert_eq!(harness.session.node_id(), Some(key.id()));
        let _ = bound;
    }
}

#[test]
fn repeated_auth_failures_close() {
    let (mut harness, _) = Harness::new(SessionConfig::default());
    let key = NodeKey::generate();
    let wrong_server = AnnounceAuth::Bound {
        server: "elsewhere:1".into(),
    };
    assert!(matches!(
        harness.announce(&key, &wrong_server).as_slice(),
        [Action::Refuse(_)]
    ));
    assert!(matches!(
        harness.announce(&key, &wrong_server).as_slice(),
        [Action::Refuse(_)]
    ));
    let out = harness.announce(&key, &wrong_server);
    assert_eq!(out.last(), Some(&Action::Close(CloseReason::AuthFailed)));
    assert!(harness.session.is_closed());
    // A closed session ignores everything, even a valid announce.
    assert!(harness.announce(&key, &AnnounceAuth::Fledger).is_empty());
}

#[test]
fn handshake_times_out() {
    let (mut harness, _) = Harness::new(SessionConfig::default());
    assert!(harness
        .advance(DEFAULT_HANDSHAKE_TIMEOUT - Duration::from_millis(1))
        .is_empty());
    assert_eq!(
        harness.advance(Duration::from_millis(1)),
        vec![Action::Close(CloseReason::HandshakeTimeout)]
    );
}
