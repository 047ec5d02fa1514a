use super::*;
use flproto::cluster_presence::{DEFAULT_EXPIRY, DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_MAX_CLOCK_SKEW};
use flproto::session::{DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_PING_INTERVAL};

#[test]
fn defaults_match_the_documented_constants() {
    let config = Config::default();
    assert_eq!(config.listen.to_string(), "0.0.0.0:8765");
    assert_eq!(config.handshake_timeout, DEFAULT_HANDSHAKE_TIMEOUT);
    assert_eq!(config.idle_timeout, DEFAULT_IDLE_TIMEOUT);
    assert_eq!(config.ping_interval, DEFAULT_PING_INTERVAL);
    assert_eq!(config.http_timeout, DEFAULT_HTTP_TIMEOUT);
    assert_eq!(config.write_timeout, DEFAULT_WRITE_TIMEOUT);
    assert_eq!(config.presence_interval, DEFAULT_PRESENCE_INTERVAL);
    assert_eq!(config.drain_timeout, DEFAULT_DRAIN_TIMEOUT);
    assert_eq!(config.cluster_heartbeat, DEFAULT_HEARTBEAT_INTERVAL);
    assert_eq!(config.cluster_expiry, DEFAULT_EXPIRY);
    assert_eq!(config.cluster_max_clock_skew, DEFAULT_MAX_CLOCK_SKEW);
    assert!(config.nats.is_empty());
    assert_eq!(config.stun_listen, StunListen(Some("0.0.0.0:3478".parse().unwrap())));
    assert_eq!(config.stun_rate(), stun_limit::DEFAULT_RATE);
    assert_eq!(config.stun_global_rate(), stun_limit::DEFAULT_GLOBAL_RATE);
    assert_eq!(config.stun_max_sources, stun_limit::DEFAULT_MAX_SOURCES);
    assert_eq!(config.stun_max_request, stun::DEFAULT_MAX_REQUEST);
    assert!(config.validate().is_ok());
}

#[test]
fn cluster_settings_are_checked() {
    let ok = Config::parse_from(["flsignal", "--nats", "nats://127.0.0.1:4222,tls://nats.example:4222"]);
    assert!(ok.validate().is_ok());
    for bad in [
        &["flsignal", "--nats", "nats://a b"][..],
        &["flsignal", "--nats-prefix", "a.b"],
        &["flsignal", "--nats-tls-cert", "c.pem"],
        &["flsignal", "--cluster-heartbeat", "2s", "--cluster-expiry", "3s"],
        &["flsignal", "--cluster-max-clock-skew", "0s"],
        &["flsignal", "--nats-creds", "a.creds", "--nats-nkey", "a.nk"],
    ] {
        assert!(Config::parse_from(bad).validate().is_err(), "{bad:?}");
    }
}

#[test]
fn stun_can_move_or_be_off() {
    let off = Config::parse_from(["flsignal", "--stun-listen", "off"]);
    assert_eq!(off.stun_listen, StunListen(None));
    let moved = Config::parse_from(["flsignal", "--stun-listen", "127.0.0.1:0"]);
    assert_eq!(moved.stun_listen.0, Some("127.0.0.1:0".parse().unwrap()));
    assert!(Config::try_parse_from(["flsignal", "--stun-listen", "nowhere"]).is_err());
    assert!(Config::parse_from(["flsignal", "--stun-max-request", "10"])
        .validate()
        .is_err());
    for bad in [
        &["flsignal", "--stun-rate-burst", "0"][..],
        &["flsignal", "--stun-global-burst", "0"],
        &["flsignal", "--stun-global-rate-per-second", "0"],
        &["flsignal", "--stun-max-sources", "0"],
    ] {
        assert!(Config::parse_from(bad).validate().is_err(), "{bad:?}");
    }
}

#[test]
fn fairness_defaults_match_the_documented_constants_and_are_checked() {
    use flproto::relay_share::RelayShare;
    use flproto::session::{DEFAULT_FRAGMENT_TIMEOUT, DEFAULT_LIST_RATE_LIMIT};
    use flproto::source_rate::DEFAULT_ANNOUNCE_RATE;
    let config = Config::default();
    assert_eq!(config.fairness.relay_share(), RelayShare::default());
    assert_eq!(
        config.fairness.relay_abuse(),
        flproto::relay_share::DEFAULT_ABUSE_LIMITS
    );
    assert_eq!(config.fairness.list_rate(), DEFAULT_LIST_RATE_LIMIT);
    assert_eq!(config.fairness.announce_rate(), DEFAULT_ANNOUNCE_RATE);
    assert_eq!(config.fairness.fragment_timeout, DEFAULT_FRAGMENT_TIMEOUT);
    assert_eq!(
        config.presence().min_list_push_interval,
        flproto::presence::DEFAULT_MIN_LIST_PUSH_INTERVAL
    );
    // Four senders at their share still leave room in the default queue.
    assert!(4 * config.fairness.relay_share_frames < DEFAULT_OUTBOUND_QUEUE);
    for bad in [
        &["flsignal", "--relay-share-frames", "0"][..],
        &["flsignal", "--relay-share-bytes", "1000"],
        &[
            "flsignal",
            "--relay-throttle-after",
            "8",
            "--relay-disconnect-after",
            "8",
        ],
        &["flsignal", "--relay-forgive-per-second", "0"],
        &["flsignal", "--list-rate-burst", "0"],
        &["flsignal", "--announce-rate-per-second", "0"],
        &["flsignal", "--announce-sources", "0"],
        &["flsignal", "--ipv6-prefix-len", "129"],
        &["flsignal", "--fragment-timeout", "0s"],
    ] {
        assert!(Config::parse_from(bad).validate().is_err(), "{bad:?}");
    }
    let adjusted = Config::parse_from([
        "flsignal",
        "--relay-share-frames",
        "8",
        "--min-list-push-interval",
        "0s",
    ]);
    assert!(adjusted.validate().is_ok());
    assert_eq!(adjusted.fairness.relay_share().frames, 8);
}
