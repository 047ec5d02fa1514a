//! Fuzz targets for what cluster instances tell each other: the NATS
//! messages must round-trip, and the ownership table must stay consistent
//! whatever order, duplication or nonsense the messages arrive in.
//!
//! The presence script has one event per line: a cluster message as sent
//! on NATS (`{"Join":…}`), applied the way flsignal's `cluster_sync` does;
//! or a direct call: `j<node><time>` local join, `q<node>` local leave,
//! `J<instance><node><at>` / `L<instance><node>` remote join / leave,
//! `H<instance><count>` heartbeat, `B<instance>` / `E<instance>` snapshot
//! begins / ends, `G<instance>` goodbye, `w<ms>` time passes (expiry).
//! Instance byte 0 is this instance itself.

mod fuzz_support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use flproto::cluster_message::{ClusterMessage, InstanceId};
use flproto::cluster_presence::{ClusterPresence, RemoteJoin, DEFAULT_EXPIRY};
use flproto::ids::NodeId;
use fuzz_support::{lines, CARGO_TEST_TIME};

const ME: InstanceId = InstanceId(0x6d65);

#[test]
fn cluster_messages_that_parse_round_trip() {
    bolero::check!()
        .with_test_time(CARGO_TEST_TIME)
        .for_each(|bytes: &[u8]| {
            let Ok(message) = serde_json::from_slice::<ClusterMessage>(bytes) else {
                return;
            };
            let json = message.to_json();
            assert!(!json.is_empty());
            let again: ClusterMessage = serde_json::from_str(&json).expect("our own serialisation parses");
            assert_eq!(again.instance(), message.instance());
            assert_eq!(again.to_json(), json, "serialisation is canonical");
        });
}

#[test]
fn cluster_presence_keeps_exactly_one_owner_per_node() {
    bolero::check!()
        .with_test_time(CARGO_TEST_TIME)
        .for_each(|script: &[u8]| run_script(script));
}

fn instance(byte: u8) -> InstanceId {
    match byte % 4 {
        0 => ME,
        other => InstanceId(u64::from(other)),
    }
}

fn node(byte: u8) -> NodeId {
    NodeId([byte % 8; 32])
}

/// The table under test and what the script knows about it.
struct Run {
    presence: ClusterPresence,
    now: Instant,
    /// Every node the script mentioned, to check the table against.
    nodes: HashSet<NodeId>,
}

impl Run {
    fn owned_by(&self, instance: InstanceId) -> usize {
        self.nodes
            .iter()
            .filter(|node| self.presence.owner(node).is_some_and(|(owner, _)| owner == instance))
            .count()
    }

    fn remote_join(&mut self, instance: InstanceId, node: NodeId, at: u64) {
        self.nodes.insert(node);
        let before = self.presence.owner(&node);
        let outcome = self.presence.remote_join(instance, node, at, self.now);
        let after = self.presence.owner(&node);
        match outcome {
            RemoteJoin::Accepted => {
                assert_ne!(instance, ME, "our own claims come back as Stale");
                assert_eq!(after, Some((instance, at)));
                if let Some((owner, owner_at)) = before {
                    assert!((at, instance) >= (owner_at, owner), "newest wins");
                }
            }
            RemoteJoin::Stale => {
                assert_eq!(after, before, "a stale claim changes nothing");
                if instance != ME {
                    let (owner, owner_at) = before.expect("stale only against an owner");
                    assert!((owner_at, owner) > (at, instance), "only a newer registration wins");
                }
            }
        }
    }

    fn gone(&mut self, instance: InstanceId, nodes: &[NodeId]) {
        for node in nodes {
            assert_eq!(self.presence.owner(node), None, "{node:?} was gone with {instance:?}");
        }
    }

    fn apply(&mut self, message: ClusterMessage) {
        match message {
            ClusterMessage::Hello { .. } => {}
            ClusterMessage::Join { instance, entry } => self.remote_join(instance, entry.node, entry.at),
            ClusterMessage::Leave { instance, node } => self.remote_leave(instance, node),
            ClusterMessage::Heartbeat { instance, nodes } => self.heartbeat(instance, nodes),
            ClusterMessage::Snapshot { instance, nodes, last } => {
                self.presence.snapshot_begins(instance, self.now);
                for entry in nodes {
                    self.remote_join(instance, entry.node, entry.at);
                }
                if last {
                    self.snapshot_ends(instance);
                }
            }
            ClusterMessage::Goodbye { instance } => self.goodbye(instance),
        }
    }

    fn remote_leave(&mut self, instance: InstanceId, node: NodeId) {
        self.nodes.insert(node);
        let before = self.presence.owner(&node);
        let left = self.presence.remote_leave(instance, &node, self.now);
        let after = self.presence.owner(&node);
        if left {
            assert_eq!(before.map(|(owner, _)| owner), Some(instance));
            assert_eq!(after, None);
        } else {
            assert_eq!(after, before);
        }
    }

    fn heartbeat(&mut self, instance: InstanceId, nodes: u64) {
        let held = self.owned_by(instance) as u64;
        if self.presence.remote_heartbeat(instance, nodes, self.now) {
            assert_ne!(held, nodes, "a snapshot is asked for only when counts disagree");
        }
    }

    fn snapshot_ends(&mut self, instance: InstanceId) {
        let gone = self.presence.snapshot_ends(instance);
        self.gone(instance, &gone);
    }

    fn goodbye(&mut self, instance: InstanceId) {
        let gone = self.presence.remove_instance(instance);
        self.gone(instance, &gone);
        if instance != ME {
            assert_eq!(self.owned_by(instance), 0, "nothing of a departed instance stays");
        }
    }

    fn event(&mut self, line: &[u8]) {
        let Some((&op, arg)) = line.split_first() else {
            return;
        };
        let byte = |at: usize| arg.get(at).copied().unwrap_or(0);
        match op {
            b'{' => {
                if let Ok(message) = serde_json::from_slice::<ClusterMessage>(line) {
                    self.apply(message);
                }
            }
            b'j' => {
                let node = node(byte(0));
                self.nodes.insert(node);
                let now_us = u64::from(byte(1));
                let before = self.presence.owner(&node);
                let at = self.presence.local_join(node, now_us);
                assert!(at >= now_us);
                if let Some((owner, owner_at)) = before.filter(|(owner, _)| *owner != ME) {
                    assert!(
                        at > owner_at,
                        "a local join outranks the {owner:?} registration it displaces"
                    );
                }
                assert_eq!(self.presence.owner(&node), Some((ME, at)));
            }
            b'q' => {
                let node = node(byte(0));
                let before = self.presence.owner(&node);
                self.presence.local_leave(&node);
                let expected = before.filter(|(owner, _)| *owner != ME);
                assert_eq!(self.presence.owner(&node), expected);
            }
            b'J' => self.remote_join(instance(byte(0)), node(byte(1)), u64::from(byte(2))),
            b'L' => self.remote_leave(instance(byte(0)), node(byte(1))),
            b'H' => self.heartbeat(instance(byte(0)), u64::from(byte(1) % 10)),
            b'B' => self.presence.snapshot_begins(instance(byte(0)), self.now),
            b'E' => self.snapshot_ends(instance(byte(0))),
            b'G' => self.goodbye(instance(byte(0))),
            b'w' => {
                let ms: u64 = std::str::from_utf8(arg)
                    .ok()
                    .and_then(|t| t.trim().parse().ok())
                    .unwrap_or(0);
                self.now += Duration::from_millis(ms.min(1_000_000));
                let instances_before = self.presence.remote_instances();
                for (instance, node) in self.presence.expire(self.now) {
                    assert_ne!(instance, ME);
                    assert_eq!(self.presence.owner(&node), None);
                }
                assert!(self.presence.remote_instances() <= instances_before);
            }
            _ => {}
        }
    }
}

fn run_script(script: &[u8]) {
    let mut run = Run {
        presence: ClusterPresence::new(ME, DEFAULT_EXPIRY),
        now: Instant::now(),
        nodes: HashSet::new(),
    };
    for line in lines(script) {
        run.event(line);
        // Each node has one owner, and each remote instance's node set is
        // exactly the nodes it owns: the two records agree.
        let remote_owned = run
            .nodes
            .iter()
            .filter(|node| run.presence.owner(node).is_some_and(|(owner, _)| owner != ME))
            .count();
        assert_eq!(
            run.presence.remote_nodes(),
            remote_owned,
            "after {:?}",
            String::from_utf8_lossy(line)
        );
    }
}
