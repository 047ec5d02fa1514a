//! Which server names a bound (version 4) announce may be signed for: this
//! server's own, decided at startup, never the Host header a client sent.
//! Real clients against a real server on a loopback port.

mod common;

use clap::Parser;
use common::TestServer;
use e2e::Client;
use flproto::announce::AnnounceAuth;
use flproto::identity::NodeKey;

fn bound(server: &str) -> AnnounceAuth {
    AnnounceAuth::Bound { server: server.into() }
}

fn port_of(url: &str) -> u16 {
    let authority = flproto::announce::authority_of_url(url).unwrap();
    authority.rsplit_once(':').unwrap().1.parse().unwrap()
}

/// Announces bound to `server` over a connection presenting `host`, and
/// says whether the server accepted it.
async fn accepted(url: &str, host: Option<&str>, server: &str) -> bool {
    let mut client = Client::connect_with_host(url, host).await.unwrap();
    client.announce(&NodeKey::generate(), &bound(server)).await.unwrap();
    match client.expect_registered().await {
        Ok(_) => true,
        Err(error) => {
            let text = error.to_string();
            assert!(text.contains("not to this server"), "{text}");
            false
        }
    }
}

#[tokio::test]
async fn a_bound_announce_for_a_foreign_name_is_refused_even_when_the_host_header_names_it() {
    let server = TestServer::start(&[]).await;
    let port = port_of(&server.url);
    // What a relaying server does: its own name in Host and in the signature.
    let foreign = format!("relay.example:{port}");
    assert!(!accepted(&server.url, Some(&foreign), &foreign).await);
    assert!(!accepted(&server.url, Some("relay.example"), "relay.example:80").await);
    assert!(server.metric(r#"flsignal_handshakes_total{reason="wrong_server"}"#) >= 2.0);
}

#[tokio::test]
async fn bound_announces_for_localhost_and_127_0_0_1_with_the_listening_port_are_accepted() {
    let server = TestServer::start(&[]).await;
    let port = port_of(&server.url);
    assert!(accepted(&server.url, None, &format!("127.0.0.1:{port}")).await);
    assert!(
        accepted(
            &server.url,
            Some(&format!("localhost:{port}")),
            &format!("localhost:{port}")
        )
        .await
    );
    // Another port is another server.
    assert!(!accepted(&server.url, None, &format!("127.0.0.1:{}", port.wrapping_add(1))).await);
}

#[tokio::test]
async fn with_public_host_exactly_those_names_are_accepted() {
    let server = TestServer::start(&["--public-host", "signal.example:443,Other.Example"]).await;
    let port = port_of(&server.url);
    assert!(accepted(&server.url, None, "signal.example:443").await);
    assert!(accepted(&server.url, None, "other.example:80").await);
    assert!(!accepted(&server.url, None, &format!("127.0.0.1:{port}")).await);
    assert!(!accepted(&server.url, None, &format!("localhost:{port}")).await);
    assert!(!accepted(&server.url, Some("relay.example:443"), "relay.example:443").await);
    server.stop().await;
}

#[tokio::test]
async fn a_wildcard_listener_accepts_loopback_names_and_refuses_foreign_ones() {
    let config = flsignal::Config::parse_from(["flsignal", "--listen", "0.0.0.0:0", "--stun-listen", "off"]);
    let server = flsignal::Server::bind(config).await.unwrap();
    let port = server.local_addr().port();
    let names = server.accepted_server_names().to_vec();
    assert!(names.contains(&format!("localhost:{port}")), "{names:?}");
    let shutdown = server.shutdown_token();
    let task = tokio::spawn(server.run());
    let url = format!("ws://127.0.0.1:{port}/");
    assert!(accepted(&url, None, &format!("127.0.0.1:{port}")).await);
    assert!(accepted(&url, None, &format!("localhost:{port}")).await);
    assert!(
        !accepted(
            &url,
            Some(&format!("relay.example:{port}")),
            &format!("relay.example:{port}")
        )
        .await
    );
    shutdown.cancel();
    let _ = task.await;
}
