//! Fuzz targets for what cluster instances tell each other: the NATS
//! messages must round-trip, and the node registry of one instance must
//! keep its ownership table and presence in agreement whatever order,
//! duplication or nonsense the messages arrive in.
//!
//! The presence script has one event per line: a cluster message as sent
//! on NATS (`{"Join":…}`), applied as flsignal applies it; or shorthand:
//! `j<node><time>` local join, `q<node>` local leave,
//! `J<instance><node><at>` / `L<instance><node>` remote join / leave,
//! `H<instance><count>` heartbeat, `B<instance>` / `E<instance>` a snapshot
//! part that is not the last / the last, `G<instance>` goodbye, `w<ms>`
//! time passes (expiry). Instance byte 0 is this instance itself.

mod fuzz_support;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use flproto::announce::VerifiedNode;
use flproto::cluster_message::{ClusterMessage, InstanceId, NodeEntry};
use flproto::cluster_presence::{believable_at, DEFAULT_EXPIRY, DEFAULT_MAX_CLOCK_SKEW};
use flproto::ids::NodeId;
use flproto::node_info::{NodeInfoJson, NodeInfoV3};
use flproto::presence::PresenceConfig;
use flproto::registry::{ClusterConfig, Publish, Registry, Route};
use fuzz_support::{lines, CARGO_TEST_TIME};

const ME: InstanceId = InstanceId(0x6d65);
/// Our wall clock, in microseconds since the epoch, whenever a message
/// arrives: claims up to [`DEFAULT_MAX_CLOCK_SKEW`] beyond it are believed.
const WALL_US: u64 = 1_000;

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

fn info(node: NodeId) -> NodeInfoV3 {
    NodeInfoV3 {
        name: "n".into(),
        client: "fuzz".into(),
        pubkey: node,
        modules: String::new(),
        sealed_setup: None,
    }
}

fn entry(node: NodeId, at: u64) -> NodeEntry {
    NodeEntry {
        node,
        at,
        bound: true,
        info: NodeInfoJson::of(&info(node)).to_raw(),
    }
}

/// The registry under test and what the script knows about it.
struct Run {
    registry: Registry<u32>,
    now: Instant,
    /// Every node the script mentioned, to check the registry against.
    nodes: HashSet<NodeId>,
    /// Nodes named by each instance since the first part of a snapshot
    /// of it that has not ended (a superset when that instance expired
    /// meanwhile, which only weakens the check).
    snapshots: HashMap<InstanceId, HashSet<NodeId>>,
    connections: u32,
}

impl Run {
    fn owned_by(&self, instance: InstanceId) -> HashSet<NodeId> {
        self.nodes
            .iter()
            .filter(|node| self.registry.owner(node).is_some_and(|(owner, _)| owner == instance))
            .copied()
            .collect()
    }

    /// What a claim of `instance` on `entry` must have done, given the
    /// owner before; notes the node for a snapshot in progress.
    fn check_claim(&mut self, instance: InstanceId, entry: &NodeEntry, before: Option<(InstanceId, u64)>) {
        let node = entry.node;
        self.nodes.insert(node);
        let after = self.registry.owner(&node);
        let acceptable = entry.checked_info().is_ok() && believable_at(entry.at, WALL_US, DEFAULT_MAX_CLOCK_SKEW);
        if !acceptable {
            assert_eq!(after, before, "a refused entry changes nothing");
            return;
        }
        if let Some(named) = self.snapshots.get_mut(&instance) {
            named.insert(node);
        }
        match before {
            Some((owner, at)) if (at, owner) >= (entry.at, instance) => {
                assert_eq!(after, before, "only a newer registration wins");
            }
            _ => assert_eq!(after, Some((instance, entry.at)), "the newest registration wins"),
        }
    }

    fn apply(&mut self, message: ClusterMessage) {
        let from = message.instance();
        if from == ME {
            // Our own broadcast, echoed: it must change nothing.
            let owners: Vec<_> = self.nodes.iter().map(|node| self.registry.owner(node)).collect();
            self.registry.apply(message, self.now, WALL_US);
            let again: Vec<_> = self.nodes.iter().map(|node| self.registry.owner(node)).collect();
            assert_eq!(owners, again, "our own echo changes nothing");
            return;
        }
        match message {
            ClusterMessage::Join { instance, entry } => {
                let before = self.registry.owner(&entry.node);
                self.registry.apply(
                    ClusterMessage::Join {
                        instance,
                        entry: entry.clone(),
                    },
                    self.now,
                    WALL_US,
                );
                self.check_claim(instance, &entry, before);
            }
            ClusterMessage::Leave { instance, node } => {
                self.nodes.insert(node);
                let before = self.registry.owner(&node);
                self.registry
                    .apply(ClusterMessage::Leave { instance, node }, self.now, WALL_US);
                let after = self.registry.owner(&node);
                match before {
                    Some((owner, _)) if owner == instance => assert_eq!(after, None),
                    _ => assert_eq!(after, before, "only the holder's leave counts"),
                }
            }
            ClusterMessage::Heartbeat { instance, nodes } => {
                let held = self.owned_by(instance).len() as u64;
                let effects = self
                    .registry
                    .apply(ClusterMessage::Heartbeat { instance, nodes }, self.now, WALL_US);
                if !effects.publish.is_empty() {
                    assert_ne!(held, nodes, "a snapshot is asked for only when counts disagree");
                    assert!(matches!(
                        &effects.publish[..],
                        [Publish::Direct(to, ClusterMessage::Hello { instance: ME })] if *to == instance
                    ));
                }
            }
            ClusterMessage::Snapshot { instance, nodes, last } => {
                self.nodes.extend(nodes.iter().map(|entry| entry.node));
                // Every node named counts as named, whatever became of
                // its claim: more than the registry counts never fails
                // the check below, fewer could.
                self.snapshots
                    .entry(instance)
                    .or_default()
                    .extend(nodes.iter().map(|entry| entry.node));
                let befores: Vec<_> = nodes.iter().map(|entry| self.registry.owner(&entry.node)).collect();
                let message = ClusterMessage::Snapshot {
                    instance,
                    nodes: nodes.clone(),
                    last,
                };
                self.registry.apply(message, self.now, WALL_US);
                if !last {
                    // Claims in one part are judged one after another, so
                    // only the part's last claim per node is checked.
                    for (entry, before) in nodes.iter().zip(befores).rev() {
                        if nodes.iter().filter(|other| other.node == entry.node).count() == 1 {
                            self.check_claim(instance, entry, before);
                        }
                    }
                    return;
                }
                let named = self.snapshots.remove(&instance).unwrap_or_default();
                let owned = self.owned_by(instance);
                assert!(
                    owned.is_subset(&named),
                    "after a snapshot, its instance holds only what it named"
                );
            }
            ClusterMessage::Goodbye { instance } => {
                self.registry
                    .apply(ClusterMessage::Goodbye { instance }, self.now, WALL_US);
                self.snapshots.remove(&instance);
                assert!(
                    self.owned_by(instance).is_empty(),
                    "nothing of a departed instance stays"
                );
            }
            ClusterMessage::Hello { instance } => {
                let effects = self
                    .registry
                    .apply(ClusterMessage::Hello { instance }, self.now, WALL_US);
                let mut named = HashSet::new();
                for publish in &effects.publish {
                    let Publish::Direct(
                        to,
                        ClusterMessage::Snapshot {
                            instance: ME, nodes, ..
                        },
                    ) = publish
                    else {
                        panic!("a Hello is answered with our snapshot only: {publish:?}");
                    };
                    assert_eq!(*to, instance);
                    named.extend(nodes.iter().map(|entry| entry.node));
                }
                assert_eq!(named, self.owned_by(ME), "the snapshot names exactly our nodes");
            }
        }
    }

    fn event(&mut self, line: &[u8]) {
        let Some((&op, arg)) = line.split_first() else {
            return;
        };
        let byte = |at: usize| arg.get(at).copied().unwrap_or(0);
        let message = match op {
            b'{' => serde_json::from_slice::<ClusterMessage>(line).ok(),
            b'J' => Some(ClusterMessage::Join {
                instance: instance(byte(0)),
                entry: entry(node(byte(1)), u64::from(byte(2))),
            }),
            b'L' => Some(ClusterMessage::Leave {
                instance: instance(byte(0)),
                node: node(byte(1)),
            }),
            b'H' => Some(ClusterMessage::Heartbeat {
                instance: instance(byte(0)),
                nodes: u64::from(byte(1) % 10),
            }),
            b'B' | b'E' => Some(ClusterMessage::Snapshot {
                instance: instance(byte(0)),
                nodes: Vec::new(),
                last: op == b'E',
            }),
            b'G' => Some(ClusterMessage::Goodbye {
                instance: instance(byte(0)),
            }),
            _ => None,
        };
        if let Some(message) = message {
            return self.apply(message);
        }
        match op {
            b'j' => {
                let node = node(byte(0));
                self.nodes.insert(node);
                let now_us = u64::from(byte(1));
                let before = self.registry.owner(&node);
                self.connections += 1;
                let verified = VerifiedNode {
                    info: info(node),
                    bound: true,
                };
                let registered = self
                    .registry
                    .register(&verified, self.connections, Instant::now(), now_us);
                let [Publish::Broadcast(ClusterMessage::Join { instance: ME, entry })] =
                    &registered.effects.publish[..]
                else {
                    panic!("a local join is announced: {:?}", registered.effects.publish);
                };
                let at = entry.at;
                assert!(at >= now_us);
                if let Some((owner, owner_at)) = before.filter(|(owner, _)| *owner != ME) {
                    assert!(
                        at > owner_at,
                        "a local join outranks the {owner:?} registration it displaces"
                    );
                }
                assert_eq!(self.registry.owner(&node), Some((ME, at)));
            }
            b'q' => {
                let node = node(byte(0));
                let before = self.registry.owner(&node);
                self.registry.leave(&node, |_| true);
                let expected = before.filter(|(owner, _)| *owner != ME);
                assert_eq!(self.registry.owner(&node), expected);
            }
            b'w' => {
                let ms: u64 = std::str::from_utf8(arg)
                    .ok()
                    .and_then(|t| t.trim().parse().ok())
                    .unwrap_or(0);
                self.now += Duration::from_millis(ms.min(1_000_000));
                let (members, instances) = (self.registry.len(), self.registry.instances());
                let gone = self.registry.expire(self.now);
                assert_eq!(self.registry.len(), members - gone, "expired nodes leave presence too");
                assert!(self.registry.instances() <= instances);
            }
            _ => {}
        }
    }

    /// Ownership and presence agree: a node is listed exactly when it has
    /// an owner, as local exactly when the owner is this instance, and the
    /// local count is the number held here.
    fn check_agreement(&self, line: &[u8]) {
        let mut owned = 0;
        let mut local = 0;
        for node in &self.nodes {
            let route = self.registry.route(node);
            match self.registry.owner(node) {
                None => assert_eq!(route, None),
                Some((ME, _)) => {
                    assert!(matches!(route, Some(Route::Local(_))), "{route:?}");
                    local += 1;
                }
                Some((instance, _)) => assert_eq!(route, Some(Route::Remote(instance))),
            }
            owned += usize::from(self.registry.owner(node).is_some());
        }
        let line = String::from_utf8_lossy(line);
        assert_eq!(self.registry.len(), owned, "after {line:?}");
        assert_eq!(self.registry.local_len(), local, "after {line:?}");
    }
}

fn run_script(script: &[u8]) {
    let cluster = ClusterConfig {
        instance: ME,
        expiry: DEFAULT_EXPIRY,
        max_clock_skew: DEFAULT_MAX_CLOCK_SKEW,
    };
    let mut run = Run {
        registry: Registry::with_seed(PresenceConfig::default(), Some(cluster), 7),
        now: Instant::now(),
        nodes: HashSet::new(),
        snapshots: HashMap::new(),
        connections: 0,
    };
    for line in lines(script) {
        run.event(line);
        run.check_agreement(line);
    }
}
