//! The client against a tiny fake server on loopback that registers it and
//! then sends one text frame larger than the client's limit.

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

use super::*;

/// One mebibyte of text: sixteen times the client's limit below.
const OVERSIZED: usize = 1024 * 1024;
const LIMIT: usize = 64 * 1024;

/// Accepts connections for ever; each one is registered at once (no
/// checks: it is fake) and then gets an [`OVERSIZED`] text frame.
async fn oversending_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut socket) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                let challenge = format!(r#"{{"Challenge":[3,"{}"]}}"#, "11".repeat(32));
                let _ = socket.send(Message::text(challenge)).await;
                let _ = socket.next().await; // the announce
                for frame in [r#"{"SystemConfig":{"system_realm":null}}"#, r#"{"ListIDsReply":[]}"#] {
                    let _ = socket.send(Message::text(frame)).await;
                }
                let _ = socket.send(Message::text("x".repeat(OVERSIZED))).await;
                // Keep the connection until the client drops it.
                while let Some(Ok(_)) = socket.next().await {}
            });
        }
    });
    url
}

fn client(url: String, events: mpsc::Sender<SignalEvent>) -> Client {
    let (_, addresses_gone) = mpsc::channel(1);
    let (_, probes) = mpsc::channel(1);
    let key = Arc::new(NodeKey::generate());
    Client {
        url,
        tls: crate::tls::client_config(None).unwrap(),
        info: NodeInfo::v3("test", "flnode", key.id(), ""),
        key,
        mode: AuthMode::Bound,
        max_message: LIMIT,
        events,
        first: None,
        addresses_gone,
        probes,
        relay: crate::relay_link::plumb().0,
    }
}

#[tokio::test]
async fn an_oversized_server_message_ends_the_connection_with_a_clear_error() {
    let url = oversending_server().await;
    let (events_tx, mut events) = mpsc::channel(16);
    let mut client = client(url, events_tx);
    let (_outgoing_tx, mut outgoing) = mpsc::channel(1);
    let mut registered = false;
    let session = client.session(&mut outgoing, &mut registered);
    let error = tokio::time::timeout(Duration::from_secs(10), session)
        .await
        .expect("the session ends")
        .expect_err("an oversized message is an error");
    assert!(registered);
    let text = format!("{error:#}");
    assert!(
        text.contains("the server sent more than this node takes") && text.contains("--max-signal-message"),
        "{text}"
    );
    assert_eq!(events.recv().await, Some(SignalEvent::Online(vec![])));
}

#[tokio::test]
async fn after_an_oversized_message_the_client_reconnects() {
    let url = oversending_server().await;
    let key = Arc::new(NodeKey::generate());
    let (events_tx, mut events) = mpsc::channel(16);
    let (_sender, _first) = spawn(
        url,
        crate::tls::client_config(None).unwrap(),
        key.clone(),
        AuthMode::Bound,
        NodeInfo::v3("test", "flnode", key.id(), ""),
        LIMIT,
        events_tx,
        crate::relay_link::plumb().0,
    );
    let mut seen = Vec::new();
    while seen
        .iter()
        .filter(|event| matches!(event, SignalEvent::Online(_)))
        .count()
        < 2
    {
        let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("the client keeps going")
            .expect("events");
        seen.push(event);
    }
    assert_eq!(
        seen,
        [
            SignalEvent::Online(vec![]),
            SignalEvent::Disconnected,
            SignalEvent::Online(vec![])
        ]
    );
}
