//! The NATS edge of a cluster: connects, subscribes, publishes what the hub
//! queues, beats, and feeds what arrives back into the hub. No decisions
//! are made here (see `flproto::registry`).
//!
//! Subjects, with `P` the `--nats-prefix` (default `flsignal`):
//!
//! * `P.presence` — every instance's `ClusterMessage`s (joins, leaves,
//!   heartbeats, hellos, snapshots after a reconnect, goodbyes);
//! * `P.instance.<instance>` — answers for one instance (snapshots);
//! * `P.node.<node ID>.<instance>` — a relayed frame for that node, held by
//!   that instance: the sender's exact bytes as the payload, the sending
//!   node's ID in the [`SENDER_HEADER`] header. Each instance subscribes to
//!   `P.node.*.<itself>` only, so a frame is delivered once, by the
//!   instance the sender's presence names, and only if it is a PeerSetup
//!   between that sender and that node.
//! * `P.relay.<node ID>.<instance>` — a relay frame of the datagram relay
//!   for that node, as its sender sent it, the sender in the
//!   [`SENDER_HEADER`] header; published and read by tasks of their own
//!   ([`crate::cluster_datagrams`]), so that relaying never holds up
//!   presence or setups.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::connection::State;
use async_nats::{Client, ConnectOptions, Event};
use flproto::cluster_message::{ClusterMessage, InstanceId, RelayRefusal};
use flproto::NodeId;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::cluster_datagrams;
use crate::config::Config;
use crate::datagram_relay::ClusterDatagram;
use crate::error::ClusterError;
use crate::hub::Outgoing;
use crate::metrics::Metrics;
use crate::Shared;

/// Longest wait between two attempts to reach NATS again; short, because
/// until then this instance's nodes are invisible to the others.
pub const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(2);
/// What each failed reconnect to NATS adds to the wait before the next,
/// up to [`MAX_RECONNECT_DELAY`].
pub const RECONNECT_DELAY_STEP: Duration = Duration::from_millis(100);
/// Time to establish one NATS connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Interval of the client's pings to NATS, which detect a dead link that
/// TCP alone would not report.
pub const NATS_PING_INTERVAL: Duration = Duration::from_secs(5);
/// Time the goodbye gets to reach NATS on shutdown.
pub const GOODBYE_TIMEOUT: Duration = Duration::from_secs(1);

/// The NATS header naming the node that sent a relayed frame.
pub const SENDER_HEADER: &str = "Flsignal-Sender";

/// A NATS connection made, not yet serving.
pub struct ClusterLink {
    client: Client,
    events: mpsc::UnboundedReceiver<Event>,
    outgoing: mpsc::Receiver<Outgoing>,
    /// Relay frames for other instances.
    datagrams: mpsc::Receiver<ClusterDatagram>,
    prefix: String,
    instance: InstanceId,
}

/// The running edge, stopped on shutdown.
pub struct ClusterTasks {
    client: Client,
    tasks: Vec<JoinHandle<()>>,
    prefix: String,
}

fn presence_subject(prefix: &str) -> String {
    format!("{prefix}.presence")
}

fn instance_subject(prefix: &str, instance: InstanceId) -> String {
    format!("{prefix}.instance.{instance}")
}

fn relay_subject(prefix: &str, node: &NodeId, instance: InstanceId) -> String {
    format!("{prefix}.node.{node}.{instance}")
}

/// Starts connecting to the configured NATS servers. It returns at once:
/// an unreachable NATS is retried in the background while the server
/// serves its own nodes.
pub async fn connect(
    config: &Config,
    instance: InstanceId,
    outgoing: mpsc::Receiver<Outgoing>,
    datagrams: mpsc::Receiver<ClusterDatagram>,
) -> Result<ClusterLink, ClusterError> {
    let (events_tx, events) = mpsc::unbounded_channel();
    let mut options = ConnectOptions::new()
        .name(format!("flsignal-{instance}"))
        .retry_on_initial_connect()
        .connection_timeout(CONNECT_TIMEOUT)
        .ping_interval(NATS_PING_INTERVAL)
        .reconnect_delay_callback(|attempts| (RECONNECT_DELAY_STEP * attempts.min(100) as u32).min(MAX_RECONNECT_DELAY))
        .event_callback(move |event| {
            let events_tx = events_tx.clone();
            async move {
                let _ = events_tx.send(event);
            }
        });
    if let Some(path) = &config.nats_creds {
        options = options
            .credentials_file(path)
            .await
            .map_err(|source| ClusterError::Credentials {
                path: path.clone(),
                source,
            })?;
    }
    if let Some(path) = &config.nats_nkey {
        let seed = std::fs::read_to_string(path).map_err(|source| ClusterError::NkeyUnreadable {
            path: path.clone(),
            source,
        })?;
        let seed = seed.trim();
        if !seed.starts_with("SU") {
            return Err(ClusterError::NotAnNkeySeed { path: path.clone() });
        }
        options = options.nkey(seed.to_owned());
    }
    if config.nats_tls {
        options = options.require_tls(true);
    }
    if let Some(ca) = &config.nats_tls_ca {
        options = options.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&config.nats_tls_cert, &config.nats_tls_key) {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    let servers: Vec<async_nats::ServerAddr> = config
        .nats
        .iter()
        .map(|url| url.parse())
        .collect::<Result<_, _>>()
        .map_err(ClusterError::Url)?;
    let client = options.connect(servers).await.map_err(ClusterError::Client)?;
    Ok(ClusterLink {
        client,
        events,
        outgoing,
        datagrams,
        prefix: config.nats_prefix.clone(),
        instance,
    })
}

impl ClusterLink {
    /// Subscribes and starts the edge's tasks.
    pub async fn start(self, shared: Arc<Shared>) -> Result<ClusterTasks, ClusterError> {
        let ClusterLink {
            client,
            events,
            outgoing,
            datagrams,
            prefix,
            instance,
        } = self;
        // Subscriptions are made before anything is published, and NATS
        // renews them by itself after a reconnect.
        let subscribe = |subject| client.subscribe(subject);
        let presence = subscribe(presence_subject(&prefix))
            .await
            .map_err(ClusterError::Subscribe)?;
        let answers = subscribe(instance_subject(&prefix, instance))
            .await
            .map_err(ClusterError::Subscribe)?;
        let relays = subscribe(format!("{prefix}.node.*.{instance}"))
            .await
            .map_err(ClusterError::Subscribe)?;
        let datagrams_in = subscribe(cluster_datagrams::subscription(&prefix, instance))
            .await
            .map_err(ClusterError::Subscribe)?;
        tracing::info!(%instance, servers = ?shared.config.nats, "clustering over NATS");
        let tasks = vec![
            tokio::spawn(receive_presence(
                shared.clone(),
                futures_util::stream::select(presence, answers),
            )),
            tokio::spawn(receive_relays(shared.clone(), relays)),
            tokio::spawn(cluster_datagrams::receive(shared.clone(), datagrams_in)),
            tokio::spawn(cluster_datagrams::publish(
                shared.clone(),
                client.clone(),
                datagrams,
                prefix.clone(),
            )),
            tokio::spawn(publish(shared.clone(), client.clone(), outgoing, prefix.clone())),
            tokio::spawn(beat(shared.clone())),
            tokio::spawn(follow_connection(shared, events)),
        ];
        Ok(ClusterTasks { client, tasks, prefix })
    }
}

impl ClusterTasks {
    /// Stops the edge and says goodbye, so the others forget our nodes now
    /// rather than at expiry.
    pub async fn stop(self, shared: &Shared) {
        for task in &self.tasks {
            task.abort();
        }
        if let Some(goodbye) = shared.hub.goodbye() {
            let send = async {
                let subject = presence_subject(&self.prefix);
                self.client.publish(subject, goodbye.to_json().into()).await.is_ok()
                    && self.client.flush().await.is_ok()
            };
            if !matches!(tokio::time::timeout(GOODBYE_TIMEOUT, send).await, Ok(true)) {
                tracing::warn!("could not say goodbye to the cluster; others will expire our nodes");
            }
        }
    }
}

/// Presence messages from other instances (and the answers for us).
async fn receive_presence(
    shared: Arc<Shared>,
    mut messages: impl futures_util::Stream<Item = async_nats::Message> + Unpin,
) {
    while let Some(message) = messages.next().await {
        match serde_json::from_slice::<ClusterMessage>(&message.payload) {
            Ok(cluster_message) => shared.hub.apply_cluster_message(cluster_message, Instant::now()),
            Err(error) => {
                if let Some(refused) = shared.hub.cluster_refusals() {
                    refused.refuse("malformed", &message.subject, &error);
                }
            }
        }
    }
}

/// Frames relayed to nodes this instance holds.
async fn receive_relays(shared: Arc<Shared>, mut messages: async_nats::Subscriber) {
    while let Some(message) = messages.next().await {
        // P.node.<node>.<instance>
        let (node, sender) = addressed(&message);
        let text = Utf8Bytes::try_from(message.payload);
        match (node, sender, text) {
            (Some(node), Some(sender), Ok(text)) => shared.hub.relay_from_cluster(&sender, &node, text),
            (Some(_), None, _) => refuse(&shared, "relay_no_sender", &message.subject),
            _ => refuse(&shared, RelayRefusal::NotPeerSetup.label(), &message.subject),
        }
    }
}

/// The node a message from another instance is for (the second-to-last
/// part of its subject, `P.<kind>.<node>.<instance>`) and the node that
/// sent it (its [`SENDER_HEADER`]); `None` where either does not parse.
pub(crate) fn addressed(message: &async_nats::Message) -> (Option<NodeId>, Option<NodeId>) {
    let node = message
        .subject
        .split('.')
        .rev()
        .nth(1)
        .and_then(|hex| hex.parse::<NodeId>().ok());
    let sender = message
        .headers
        .as_ref()
        .and_then(|headers| headers.get(SENDER_HEADER))
        .and_then(|value| value.as_str().parse::<NodeId>().ok());
    (node, sender)
}

pub(crate) fn refuse(shared: &Shared, reason: &'static str, subject: &async_nats::Subject) {
    if let Some(refused) = shared.hub.cluster_refusals() {
        refused.refuse(reason, subject, &"malformed relay from the cluster");
    }
}

/// Publishes what the hub queued. While NATS is unreachable everything is
/// dropped: relays would arrive stale, and presence is re-sent in full on
/// reconnect.
async fn publish(shared: Arc<Shared>, client: Client, mut outgoing: mpsc::Receiver<Outgoing>, prefix: String) {
    while let Some(message) = outgoing.recv().await {
        if client.connection_state() != State::Connected {
            if let Outgoing::Relay { .. } = message {
                Metrics::count(&shared.hub.metrics.drops, "cluster_down");
            }
            continue;
        }
        let published = match message {
            Outgoing::Relay {
                from,
                to,
                instance,
                text,
            } => {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert(SENDER_HEADER, from.to_string().as_str());
                client
                    .publish_with_headers(relay_subject(&prefix, &to, instance), headers, text)
                    .await
            }
            Outgoing::Broadcast(message) => {
                client
                    .publish(presence_subject(&prefix), message.to_json().into())
                    .await
            }
            Outgoing::Direct(instance, message) => {
                let subject = instance_subject(&prefix, instance);
                client.publish(subject, message.to_json().into()).await
            }
        };
        if let Err(error) = published {
            Metrics::count(&shared.hub.metrics.drops, "cluster_down");
            tracing::debug!(%error, "publish to NATS failed");
        }
    }
}

/// The heartbeat, and the expiry of silent instances.
async fn beat(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(shared.config.cluster_heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Some(heartbeat) = shared.hub.heartbeat() {
            shared.hub.publish(Outgoing::Broadcast(heartbeat));
        }
        shared.hub.expire_instances(Instant::now());
    }
}

/// Follows the NATS connection: the health gauge, and a full re-sync of
/// presence after every (re)connect.
async fn follow_connection(shared: Arc<Shared>, mut events: mpsc::UnboundedReceiver<Event>) {
    while let Some(event) = events.recv().await {
        match event {
            Event::Connected => {
                tracing::info!("connected to NATS; re-syncing presence");
                shared.hub.set_cluster_connected(true);
                shared.hub.rejoin_cluster();
            }
            Event::Disconnected | Event::Closed => {
                tracing::warn!("lost NATS; serving local nodes only until it returns");
                shared.hub.set_cluster_connected(false);
            }
            Event::SlowConsumer(sid) => {
                tracing::warn!(
                    sid,
                    "NATS dropped messages for us (slow consumer); heartbeats will repair presence"
                )
            }
            // Every failed reconnect attempt: the state is already logged.
            Event::ClientError(error) => tracing::debug!(%error, "NATS client error"),
            other => tracing::info!(event = %other, "NATS"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_name_node_and_instance() {
        let node = NodeId([0xab; 32]);
        let subject = relay_subject("flsignal", &node, InstanceId(1));
        assert_eq!(subject, format!("flsignal.node.{}.0000000000000001", "ab".repeat(32)));
        let parsed: NodeId = subject.split('.').rev().nth(1).unwrap().parse().unwrap();
        assert_eq!(parsed, node);
    }
}
