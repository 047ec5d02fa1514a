//! Tests of `flnode up`'s settings: flags over environment over file.

use super::*;
use crate::tunnel_settings::Tunnel;

/// The manual-mode part of resolved settings: (WireGuard's address, the
/// first peer's local port).
fn manual(settings: &NodeSettings) -> (SocketAddr, u16) {
    match &settings.tunnel {
        Tunnel::Manual { wireguard, peers } => (*wireguard, peers[0].1.port()),
        Tunnel::Managed(_) => panic!("expected manual mode"),
    }
}

const ID: &str = "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c";

#[test]
fn file_fills_what_flags_leave_out() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        config_file(dir.path()),
        format!("signal = \"ws://s:8765\"\nwireguard = \"127.0.0.1:1000\"\npeers = [\"{ID}=127.0.0.1:2000\"]\n"),
    )
    .unwrap();
    let from_file = resolve(UpArgs {
        config: dir.path().into(),
        ..UpArgs::default()
    })
    .unwrap();
    assert_eq!(from_file.signal, "ws://s:8765");
    assert_eq!(manual(&from_file).0.port(), 1000);
    assert_eq!(manual(&from_file).1, 2000);
    let flags_win = resolve(UpArgs {
        config: dir.path().into(),
        signal: Some("ws://other:1".into()),
        peers: vec![format!("{ID}=127.0.0.1:3000")],
        ..UpArgs::default()
    })
    .unwrap();
    assert_eq!(flags_win.signal, "ws://other:1");
    assert_eq!(manual(&flags_win).1, 3000);
    assert_eq!(manual(&flags_win).0.port(), 1000);
}

#[test]
fn ice_servers_default_to_the_signalling_servers_stun() {
    let dir = tempfile::tempdir().unwrap();
    let args = || UpArgs {
        config: dir.path().into(),
        signal: Some("ws://signal.example:8765".into()),
        peers: vec![format!("{ID}=127.0.0.1:3000")],
        ..UpArgs::default()
    };
    let urls = |settings: NodeSettings| -> Vec<String> { settings.ice_servers.iter().map(|s| s.to_string()).collect() };
    assert_eq!(urls(resolve(args()).unwrap()), ["stun:signal.example:3478"]);
    let more = UpArgs {
        ice_servers: vec!["turn:u:p@turn.example".into(), "stun:signal.example".into()],
        ..args()
    };
    assert_eq!(
        urls(resolve(more).unwrap()),
        ["stun:signal.example:3478", "turn:u:***@turn.example:3478"]
    );
    let none = UpArgs {
        no_default_stun: true,
        ..args()
    };
    assert!(resolve(none).unwrap().ice_servers.is_empty());
    std::fs::write(
        config_file(dir.path()),
        "ice_servers = [\"stun:file.example:1\"]\nno_default_stun = true\n",
    )
    .unwrap();
    assert_eq!(urls(resolve(args()).unwrap()), ["stun:file.example:1"]);
    let bad = UpArgs {
        ice_servers: vec!["turn:nobody.example".into()],
        ..args()
    };
    let error = format!("{:#}", resolve(bad).unwrap_err());
    assert!(
        error.starts_with("--ice-server \"turn:nobody.example\": TURN needs"),
        "{error}"
    );
}

#[test]
fn test_peers_are_off_unless_asked_for_and_the_allow_list_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let args = || UpArgs {
        config: dir.path().into(),
        signal: Some("ws://s:1".into()),
        peers: vec![format!("{ID}=127.0.0.1:3000")],
        ..UpArgs::default()
    };
    let default = resolve(args()).unwrap();
    assert_eq!(default.test_peers, TestPeerPolicy::default());
    assert_eq!(default.test_peer_budget, DEFAULT_TEST_PEER_BUDGET);
    assert_eq!(default.max_signal_message, DEFAULT_MAX_SIGNAL_MESSAGE);
    let allowed = resolve(UpArgs {
        test_peers: Some(1),
        test_peer_allow: vec![ID.into()],
        test_peer_budget: Some(1000),
        ..args()
    })
    .unwrap();
    assert_eq!(allowed.test_peers.slots, 1);
    assert_eq!(allowed.test_peers.allow, [ID.parse().unwrap()]);
    assert_eq!(allowed.test_peer_budget, 1000);
    let error = |args: UpArgs| format!("{:#}", resolve(args).unwrap_err());
    assert!(error(UpArgs {
        test_peer_allow: vec![ID.into()],
        ..args()
    })
    .contains("needs --test-peers"));
    assert!(error(UpArgs {
        test_peers: Some(1),
        test_peer_allow: vec!["nope".into()],
        ..args()
    })
    .contains("64 hex"));
    assert!(error(UpArgs {
        test_peers: Some(MAX_TEST_PEERS + 1),
        ..args()
    })
    .contains("at most"));
    assert!(error(UpArgs {
        test_peer_budget: Some(0),
        ..args()
    })
    .contains("--test-peer-budget 0"));
    assert!(error(UpArgs {
        max_signal_message: Some(10),
        ..args()
    })
    .contains("--max-signal-message 10"));
    std::fs::write(
        config_file(dir.path()),
        format!("test_peers = 2\ntest_peer_allow = [\"{ID}\"]\nmax_signal_message = 70000\n"),
    )
    .unwrap();
    let from_file = resolve(args()).unwrap();
    assert_eq!(from_file.test_peers.slots, 2);
    assert_eq!(from_file.test_peers.allow.len(), 1);
    assert_eq!(from_file.max_signal_message, 70000);
}

#[test]
fn missing_or_bad_settings_say_what_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let args = || UpArgs {
        config: dir.path().into(),
        ..UpArgs::default()
    };
    assert!(resolve(args()).unwrap_err().to_string().contains("--signal"));
    std::fs::write(config_file(dir.path()), "signal = \"ws://s:1\"\nbogus = 1\n").unwrap();
    assert!(format!("{:#}", resolve(args()).unwrap_err()).contains("bogus"));
    std::fs::write(config_file(dir.path()), "signal = \"ws://s:1\"\n").unwrap();
    let error = |peer: &str| {
        format!(
            "{:#}",
            resolve(UpArgs {
                peers: vec![peer.into()],
                ..args()
            })
            .unwrap_err()
        )
    };
    assert!(error("abc=1").contains("64 hex"));
    assert!(error(&format!("{ID}=nope")).contains("IP:PORT"));
    assert!(error("abc").contains("64 hex"));
}

#[test]
fn managed_mode_comes_from_the_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        config_file(dir.path()),
        format!(
            "signal = \"ws://s:1\"\npeers = [\"{ID}\", {{ id = \"{ID}\", name = \"laptop\" }}]\n\
             wg_interface = \"wg-test\"\nwg_backend = \"userspace\"\naddress = [\"100.64.1.2\"]\n\
             keep_interface = true\npeer_grace = \"90s\"\n"
        ),
    )
    .unwrap();
    let settings = resolve(UpArgs {
        config: dir.path().into(),
        ..UpArgs::default()
    })
    .unwrap();
    let Tunnel::Managed(managed) = settings.tunnel else {
        panic!("bare IDs in the file are managed mode");
    };
    assert_eq!(managed.peers.len(), 2);
    assert_eq!(managed.peers[1].name.as_ref().map(|n| n.as_str()), Some("laptop"));
    assert_eq!(managed.interface.as_str(), "wg-test");
    assert_eq!(managed.backend, BackendChoice::Userspace);
    assert_eq!(managed.addresses.v4, Some("100.64.1.2".parse().unwrap()));
    assert!(managed.keep_interface);
    assert_eq!(managed.peer_grace, Duration::from_secs(90));
}

#[test]
fn held_halves_come_from_the_file_unless_flags_say_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let args = || UpArgs {
        config: dir.path().into(),
        peers: vec![format!("{ID}=127.0.0.1:2000")],
        ..UpArgs::default()
    };
    std::fs::write(config_file(dir.path()), "signal = \"ws://s:1\"\n").unwrap();
    let default = resolve(args()).unwrap().halves;
    assert_eq!(default, Some(flproto::halves::ReassemblyLimits::default()));
    std::fs::write(
        config_file(dir.path()),
        "signal = \"ws://s:1\"\nheld_halves = 8\nheld_half_max_age = \"50ms\"\n",
    )
    .unwrap();
    let from_file = resolve(args()).unwrap().halves.unwrap();
    assert_eq!((from_file.max_held, from_file.max_age), (8, Duration::from_millis(50)));
    let off = resolve(UpArgs {
        halves: crate::halves::HalvesArgs {
            held_halves: Some(0),
            held_half_max_age: None,
        },
        ..args()
    })
    .unwrap();
    assert_eq!(off.halves, None, "the flag wins over the file");
    std::fs::write(config_file(dir.path()), "signal = \"ws://s:1\"\nheld_halves = 100000\n").unwrap();
    assert!(format!("{:#}", resolve(args()).unwrap_err()).contains("--held-halves"));
}
