//! matchbox_server's protocol (matchbox_signaling 0.15), spoken so that
//! the signalling people often pick instead can be measured with the same
//! generator (`--protocol matchbox`).
//!
//! A client connects to `ws://HOST:PORT/ROOM` and is told its id at once,
//! `{"IdAssigned":ID}`; peers already in the room hear `{"NewPeer":ID}`.
//! `{"Signal":{"receiver":ID,"data":…}}` reaches the receiver as
//! `{"Signal":{"sender":ID,"data":…}}`. There is no authentication and no
//! node list, so a handshake is connect, upgrade and the id. Every node
//! that needs no partner gets a room of its own, and each relay pair one
//! room: matchbox's best case, as nobody hears of anyone else.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{bail, Context};

use crate::client::{connect, next_text, Socket, Target, JOIN_TIMEOUT};

/// How a relayed frame starts as it arrives at its receiver.
pub const RELAYED_PREFIX: &str = r#"{"Signal""#;

/// Rooms handed out so far by this process.
static ROOMS: AtomicU64 = AtomicU64::new(0);

/// A room name no other join of this process uses.
pub fn new_room() -> String {
    format!(
        "flload-{}-{}",
        std::process::id(),
        ROOMS.fetch_add(1, Ordering::Relaxed)
    )
}

/// Joins a room of its own: the socket and the id matchbox assigned.
pub async fn join_own_room(target: &Target, source: IpAddr) -> anyhow::Result<(Socket, String)> {
    join_room(target, source, &new_room()).await
}

/// Joins `room` and waits for the assigned id, failing after
/// [`JOIN_TIMEOUT`].
pub async fn join_room(target: &Target, source: IpAddr, room: &str) -> anyhow::Result<(Socket, String)> {
    tokio::time::timeout(JOIN_TIMEOUT, async {
        let url = format!("{}/{room}", target.url.trim_end_matches('/'));
        let mut ws = connect(target, source, &url).await?;
        let text = next_text(&mut ws).await?;
        let id = assigned_id(&text).with_context(|| format!("expected IdAssigned, got {text}"))?;
        Ok((ws, id))
    })
    .await
    .context("join timed out")?
}

/// The id in `{"IdAssigned":ID}`.
fn assigned_id(text: &str) -> anyhow::Result<String> {
    let value: serde_json::Value = serde_json::from_str(text)?;
    match value.get("IdAssigned").and_then(|id| id.as_str()) {
        Some(id) => Ok(id.to_owned()),
        None => bail!("no IdAssigned"),
    }
}

/// A signal for `receiver` carrying `data` (JSON) as it is sent.
pub fn signal(receiver: &str, data: &str) -> String {
    format!(r#"{{"Signal":{{"receiver":"{receiver}","data":{data}}}}}"#)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_assigned_id_is_read_and_anything_else_refused() {
        let id = "2f1a4c3e-0d5b-4b8e-9f6a-1c2d3e4f5a6b";
        assert_eq!(assigned_id(&format!(r#"{{"IdAssigned":"{id}"}}"#)).unwrap(), id);
        assert!(assigned_id(&format!(r#"{{"NewPeer":"{id}"}}"#)).is_err());
        assert!(assigned_id("not json").is_err());
    }

    #[test]
    fn a_signal_is_the_request_matchbox_expects() {
        let frame = signal("abc", r#"{"Offer":"v=0"}"#);
        let value: serde_json::Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(value["Signal"]["receiver"], "abc");
        assert_eq!(value["Signal"]["data"]["Offer"], "v=0");
        assert!(new_room() != new_room());
    }
}
