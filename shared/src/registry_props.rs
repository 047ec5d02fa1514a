//! Property tests of the registry: local joins and leaves, takeovers,
//! remote joins and leaves, heartbeats, snapshots, goodbyes, expiry, list
//! requests and news ticks in random order never break what must hold
//! between presence, the ownership table and the local count.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::tests::{cluster, entry, id, node, EXPIRY, ME, SKEW};
use super::*;
use crate::presence::tests::check_invariants;

/// Instances other than this one the operations name.
const OTHERS: [InstanceId; 2] = [InstanceId(2), InstanceId(3)];
/// Nodes the operations name.
const NODES: u32 = 12;

#[derive(Debug, Clone)]
enum Op {
    Join(u32, bool),
    /// The current connection of a node leaves.
    Leave(u32),
    /// A connection of a node that was already replaced leaves.
    StaleLeave(u32),
    /// Another instance claims a node at our clock plus this many µs (far
    /// beyond the skew allowance for some).
    RemoteJoin(usize, u32, i64),
    RemoteLeave(usize, u32),
    Heartbeat(usize, u64),
    Snapshot(usize, Vec<u32>, bool),
    Goodbye(usize),
    Hello(usize),
    Wait(u64),
    List(u32),
    Drain,
    Resync(u32),
}

fn op() -> impl Strategy<Value = Op> {
    let skew = SKEW.as_micros() as i64;
    prop_oneof![
        4 => (0..NODES, any::<bool>()).prop_map(|(n, bound)| Op::Join(n, bound)),
        2 => (0..NODES).prop_map(Op::Leave),
        1 => (0..NODES).prop_map(Op::StaleLeave),
        4 => (0..2usize, 0..NODES, prop_oneof![-3_000i64..3_000, Just(2 * skew)])
            .prop_map(|(i, n, delta)| Op::RemoteJoin(i, n, delta)),
        2 => (0..2usize, 0..NODES).prop_map(|(i, n)| Op::RemoteLeave(i, n)),
        1 => (0..2usize, 0u64..6).prop_map(|(i, count)| Op::Heartbeat(i, count)),
        1 => (0..2usize, proptest::collection::vec(0..NODES, 0..4), any::<bool>())
            .prop_map(|(i, nodes, last)| Op::Snapshot(i, nodes, last)),
        1 => (0..2usize).prop_map(Op::Goodbye),
        1 => (0..2usize).prop_map(Op::Hello),
        1 => (0u64..2_500).prop_map(Op::Wait),
        1 => (0..NODES).prop_map(Op::List),
        2 => Just(Op::Drain),
        1 => (0..NODES).prop_map(Op::Resync),
    ]
}

/// The registry and what the test has handed it.
struct Run {
    registry: Registry<u32>,
    now: Instant,
    now_us: u64,
    /// The last connection registered per node; a node held here must be
    /// held by that one.
    last_handle: HashMap<NodeId, u32>,
    handles: u32,
}

impl Run {
    fn new(config: PresenceConfig) -> Self {
        Self {
            registry: Registry::with_seed(config, Some(cluster()), 7),
            now: Instant::now(),
            now_us: 1_000_000_000,
            last_handle: HashMap::new(),
            handles: 0,
        }
    }

    fn local_handle(&self, n: u32) -> Option<u32> {
        self.registry.local(&id(n))
    }

    fn apply(&mut self, message: ClusterMessage) -> Effects<u32> {
        self.registry.apply(message, self.now, self.now_us)
    }

    /// Carries out one operation and checks what it returned.
    fn run(&mut self, op: Op) {
        self.now_us += 1_000;
        let before: Vec<Option<u32>> = (0..NODES).map(|n| self.local_handle(n)).collect();
        let effects = match op {
            Op::Join(n, bound) => {
                self.handles += 1;
                let handle = self.handles;
                let mut verified = node(n);
                verified.bound = bound;
                let registered = self.registry.register(&verified, handle, Instant::now(), self.now_us);
                self.last_handle.insert(id(n), handle);
                assert_eq!(self.registry.route(&id(n)), Some(Route::Local(handle)));
                registered.effects
            }
            Op::Leave(n) => {
                let current = self.local_handle(n);
                let effects = self.registry.leave(&id(n), |handle| Some(*handle) == current);
                if current.is_some() {
                    assert_eq!(
                        self.registry.route(&id(n)),
                        None,
                        "the current connection's leave removes it"
                    );
                }
                effects
            }
            Op::StaleLeave(n) => {
                let route = self.registry.route(&id(n));
                let effects = self.registry.leave(&id(n), |_| false);
                assert!(effects.publish.is_empty());
                assert_eq!(
                    self.registry.route(&id(n)),
                    route,
                    "a replaced connection removes nothing"
                );
                effects
            }
            Op::RemoteJoin(i, n, delta) => {
                let at = self.now_us.saturating_add_signed(delta);
                let join = ClusterMessage::Join {
                    instance: OTHERS[i],
                    entry: entry(n, at),
                };
                let effects = self.apply(join);
                if delta > SKEW.as_micros() as i64 {
                    assert_eq!(effects.refused, vec![(OTHERS[i], EntryRefusal::FutureAt)]);
                }
                effects
            }
            Op::RemoteLeave(i, n) => self.apply(ClusterMessage::Leave {
                instance: OTHERS[i],
                node: id(n),
            }),
            Op::Heartbeat(i, nodes) => self.apply(ClusterMessage::Heartbeat {
                instance: OTHERS[i],
                nodes,
            }),
            Op::Snapshot(i, nodes, last) => {
                let nodes = nodes.into_iter().map(|n| entry(n, self.now_us)).collect();
                self.apply(ClusterMessage::Snapshot {
                    instance: OTHERS[i],
                    nodes,
                    last,
                })
            }
            Op::Goodbye(i) => {
                let effects = self.apply(ClusterMessage::Goodbye { instance: OTHERS[i] });
                for n in 0..NODES {
                    assert_ne!(self.registry.route(&id(n)), Some(Route::Remote(OTHERS[i])));
                }
                effects
            }
            Op::Hello(i) => self.apply(ClusterMessage::Hello { instance: OTHERS[i] }),
            Op::Wait(ms) => {
                self.now += Duration::from_millis(ms);
                let members = self.registry.len();
                let gone = self.registry.expire(self.now);
                assert_eq!(self.registry.len(), members - gone);
                Effects::default()
            }
            Op::List(n) => {
                let local = self.local_handle(n).is_some();
                assert_eq!(
                    self.registry.node_list(&id(n), Instant::now()).is_some(),
                    local,
                    "lists only for local nodes"
                );
                Effects::default()
            }
            Op::Drain => {
                self.check_news();
                Effects::default()
            }
            Op::Resync(n) => {
                self.registry.resync(&id(n));
                Effects::default()
            }
        };
        // A connection is handed back as replaced only if it held its node
        // and no longer does.
        for handle in &effects.replaced {
            let n = before.iter().position(|h| *h == Some(*handle)).expect("it held a node");
            assert_ne!(self.local_handle(n as u32), Some(*handle));
        }
    }

    /// News goes once per tick to the current connections of local nodes.
    fn check_news(&mut self) {
        let mut told = HashSet::new();
        for (to, handle, _) in self.registry.drain_news(self.now) {
            assert_eq!(
                self.registry.route(&to),
                Some(Route::Local(handle)),
                "news to the current connection"
            );
            assert!(told.insert(to), "one frame per node and tick");
        }
    }

    /// What holds after every operation.
    fn check_invariants(&self) {
        // Within presence: views, watchers and news agree; no remote member
        // has a view or news; the local count is the number of local holders.
        check_invariants(&self.registry.presence);
        let table = &self.registry.cluster.as_ref().expect("clustered").table;
        let mut local = 0;
        let mut remote = 0;
        for n in 0..NODES {
            let node = id(n);
            // Ownership and presence agree, node by node.
            match (self.registry.route(&node), table.owner(&node)) {
                (None, None) => {}
                (Some(Route::Local(handle)), Some((ME, _))) => {
                    assert_eq!(
                        self.last_handle.get(&node),
                        Some(&handle),
                        "held by its last connection"
                    );
                    local += 1;
                }
                (Some(Route::Remote(instance)), Some((owner, _))) if owner == instance && owner != ME => remote += 1,
                other => panic!("presence and ownership disagree on {n}: {other:?}"),
            }
        }
        assert_eq!(self.registry.local_len(), local);
        assert_eq!(self.registry.len(), local + remote);
        assert_eq!(table.remote_nodes(), remote, "the table's per-instance sets agree");
        assert!(self
            .registry
            .heartbeat()
            .is_some_and(|beat| matches!(beat, ClusterMessage::Heartbeat { nodes, .. } if nodes == local as u64)));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_registry_stays_consistent_under_any_sequence_of_events(
        ops in proptest::collection::vec(op(), 1..120),
        max_list_len in 1usize..5,
        join_fanout in 1usize..5,
    ) {
        let config = PresenceConfig {
            max_list_len,
            join_fanout,
            min_list_push_interval: Duration::ZERO,
        };
        let mut run = Run::new(config);
        for op in ops {
            run.run(op);
            run.check_invariants();
        }
        run.run(Op::Wait(EXPIRY.as_millis() as u64 + 1));
        run.check_invariants();
        prop_assert_eq!(run.registry.len(), run.registry.local_len(), "everything remote expired");
    }
}
