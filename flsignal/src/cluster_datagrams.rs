//! The datagram relay across a cluster: relay frames for nodes held by
//! other instances go out on `P.relay.<node ID>.<instance>`, as the sender
//! sent them (addressed to the node), with the sending node's ID in the
//! [`SENDER_HEADER`] header; each instance reads `P.relay.*.<itself>` and
//! hands what arrives to [`crate::datagram_relay`], which checks it as the
//! sender's session did before it reaches a node.
//!
//! Both directions have their own task and queue, apart from presence and
//! setups (`crate::cluster`), so that a busy relay never delays them.

use std::sync::Arc;

use async_nats::connection::State;
use async_nats::Client;
use flproto::cluster_message::InstanceId;
use flproto::NodeId;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::cluster::{addressed, refuse, SENDER_HEADER};
use crate::datagram_relay::ClusterDatagram;
use crate::Shared;

/// The subject a relay frame for `node`, held by `instance`, goes to.
pub fn subject(prefix: &str, node: &NodeId, instance: InstanceId) -> String {
    format!("{prefix}.relay.{node}.{instance}")
}

/// What `instance` subscribes to: relay frames for any node it holds.
pub fn subscription(prefix: &str, instance: InstanceId) -> String {
    format!("{prefix}.relay.*.{instance}")
}

/// Publishes relay frames for other instances. While NATS is down they
/// are dropped and counted: a datagram that arrives late is worthless.
pub async fn publish(shared: Arc<Shared>, client: Client, mut queued: mpsc::Receiver<ClusterDatagram>, prefix: String) {
    let metrics = &shared.hub.metrics.datagrams;
    while let Some(datagram) = queued.recv().await {
        if client.connection_state() != State::Connected {
            metrics.drop("cluster_down");
            continue;
        }
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(SENDER_HEADER, datagram.from.to_string().as_str());
        let subject = subject(&prefix, &datagram.to, datagram.instance);
        if client
            .publish_with_headers(subject, headers, datagram.frame)
            .await
            .is_err()
        {
            metrics.drop("cluster_down");
        }
    }
}

/// Relay frames from other instances for nodes this one holds.
pub async fn receive(shared: Arc<Shared>, mut messages: async_nats::Subscriber) {
    while let Some(message) = messages.next().await {
        // P.relay.<node>.<instance>
        let (node, sender) = addressed(&message);
        match (node, sender) {
            (Some(node), Some(sender)) => {
                if let Err(refusal) = shared
                    .datagrams
                    .from_cluster(&shared.hub, &sender, &node, message.payload)
                {
                    refuse(&shared, refusal.label(), &message.subject);
                }
            }
            (Some(_), None) => refuse(&shared, "datagram_no_sender", &message.subject),
            (None, _) => refuse(&shared, "datagram_malformed", &message.subject),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_name_node_and_instance_and_match_the_subscription() {
        let node = NodeId([0xcd; 32]);
        let instance = InstanceId(2);
        let subject = subject("flsignal", &node, instance);
        assert_eq!(subject, format!("flsignal.relay.{}.0000000000000002", "cd".repeat(32)));
        assert_eq!(subscription("flsignal", instance), "flsignal.relay.*.0000000000000002");
        let parsed: NodeId = subject.split('.').rev().nth(1).unwrap().parse().unwrap();
        assert_eq!(parsed, node);
    }
}
