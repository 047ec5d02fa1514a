//! A cluster for tests: a real `nats-server` configured with
//! `docs/nats-cluster.conf` (each instance its own NKey, subject
//! permissions as documented) and real `flsignal` processes clustered
//! through it, plus the polling helpers the cluster tests share.

use std::path::PathBuf;
use std::time::Duration;

use flproto::identity::NodeKey;
use flproto::message::ServerMessage;
use flproto::NodeId;

use crate::nats::{binary_or_skip, NatsServer};
use crate::{http_get, Client, Event, ServerProcess, PATIENCE};

/// The documented nats-server configuration, which the tests run under.
const DOCUMENTED_CONFIG: &str = include_str!("../../docs/nats-cluster.conf");

/// NKey users of one test cluster: one per instance, and spares.
pub struct ClusterKeys {
    dir: tempfile::TempDir,
    seeds: Vec<String>,
}

impl ClusterKeys {
    pub fn generate(count: usize) -> ClusterKeys {
        let seeds = (0..count)
            .map(|_| nkeys::KeyPair::new_user().seed().expect("a new key has a seed"))
            .collect();
        ClusterKeys {
            dir: tempfile::tempdir().expect("temporary directory"),
            seeds,
        }
    }

    /// The seed of user `index`.
    pub fn seed(&self, index: usize) -> &str {
        &self.seeds[index]
    }

    /// A file holding the seed of user `index`, for `--nats-nkey`.
    pub fn seed_file(&self, index: usize) -> PathBuf {
        let path = self.dir.path().join(format!("instance-{index}.nk"));
        std::fs::write(&path, format!("{}\n", self.seeds[index])).expect("write seed");
        path
    }

    /// The documented configuration with these users in place of its
    /// example ones.
    pub fn nats_config(&self) -> String {
        let mut lines: Vec<String> = Vec::new();
        let mut template = None;
        for line in DOCUMENTED_CONFIG.lines() {
            if line.contains("nkey:") {
                template.get_or_insert_with(|| line.to_owned());
                continue;
            }
            if line.trim() == "]" {
                if let Some(template) = &template {
                    let example = template.split('"').nth(1).unwrap_or_default();
                    for seed in &self.seeds {
                        let public = nkeys::KeyPair::from_seed(seed).expect("our seed").public_key();
                        lines.push(template.replace(example, &public));
                    }
                }
            }
            lines.push(line.to_owned());
        }
        assert!(template.is_some(), "docs/nats-cluster.conf lists no nkey users");
        lines.join("\n")
    }
}

pub struct Cluster {
    pub nats: NatsServer,
    pub servers: Vec<ServerProcess>,
    /// `count` instance users, then one spare (for a test that publishes
    /// as an instance whose key leaked).
    pub keys: ClusterKeys,
}

impl Cluster {
    /// NATS and `count` flsignal instances clustered through it, or `None`
    /// when nats-server is not installed (outside CI).
    pub async fn start(test: &str, count: usize) -> Option<Cluster> {
        let binary = binary_or_skip(test)?;
        let keys = ClusterKeys::generate(count + 1);
        let nats = NatsServer::start_with_config(binary, &keys.nats_config())
            .await
            .unwrap();
        let mut servers = Vec::new();
        for index in 0..count {
            let seed = keys.seed_file(index);
            let args = [
                "--nats",
                &nats.url(),
                "--nats-nkey",
                seed.to_str().unwrap(),
                "--presence-interval",
                "100ms",
            ];
            servers.push(ServerProcess::start(&args, &[]).await.unwrap());
        }
        let cluster = Cluster { nats, servers, keys };
        for server in &cluster.servers {
            wait_for(server, "all instances alive", |h| h["instances"] == count as u64).await;
        }
        Some(cluster)
    }

    pub fn url(&self, index: usize) -> String {
        self.servers[index].url()
    }
}

pub async fn healthz(server: &ServerProcess) -> serde_json::Value {
    let (status, body) = http_get(server.addr, "/healthz").await.unwrap();
    assert!(status.contains("200"), "{status}");
    serde_json::from_str(&body).unwrap()
}

/// Polls `/healthz` of `server` until `check` holds.
pub async fn wait_for(server: &ServerProcess, what: &str, check: impl Fn(&serde_json::Value) -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let health = healthz(server).await;
        if check(&health) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {PATIENCE:?}; last /healthz {health}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Joins with a bound announce, so the client gets `PresenceNews`.
pub async fn join(url: &str, key: &NodeKey) -> (Client, Vec<NodeId>) {
    Client::join(url, key, &Client::bound_auth(url)).await.unwrap()
}

/// Reads presence news until `node` has joined (or left), skipping others.
pub async fn expect_news(client: &mut Client, node: NodeId, joined: bool, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let wait = deadline.saturating_duration_since(tokio::time::Instant::now());
        let event = client.next_within(wait).await.unwrap();
        let Some(event) = event else {
            panic!(
                "no news that {node} {} within {within:?}",
                if joined { "joined" } else { "left" }
            );
        };
        if let Event::Frame(ServerMessage::PresenceNews(news)) = event {
            let listed = if joined {
                crate::ids_of(&news.joined).contains(&node)
            } else {
                news.left.contains(&node)
            };
            if listed {
                return;
            }
        } else if let Event::Closed(code) = event {
            panic!("closed ({code:?}) while waiting for news of {node}");
        }
    }
}
