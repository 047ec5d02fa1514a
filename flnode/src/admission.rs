//! Who besides the configured peers may connect to this node, and what
//! they may cost. Pure: setups, ids and byte counts in, decisions out; the
//! tasks, PeerConnections and logs live in `node.rs` and `peer/`.
//!
//! A node that answers a setup gathers ICE candidates and sends them, and
//! those carry the machine's LAN and public addresses. So a node that is
//! not a configured peer (a "test peer": a browser page testing this node)
//! gets nothing unless test peers are turned on, and then only:
//!
//! * if it is on the allow-list (when there is one),
//! * after its setup's signature verified (a forged setup reserves
//!   nothing),
//! * while fewer than the configured number of slots are taken,
//! * for a bounded number of bytes ([`ByteBudget`]) over at most
//!   [`MAX_TEST_PEER_CHANNELS`] data channels, and never through a TURN
//!   relay (the user's relay is not for strangers).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use flproto::message::PeerInfo;
use flproto::setup_auth::{self, SetupAuthError};
use flproto::NodeId;

/// Test peers are off unless asked for: answering a stranger's setup tells
/// it the machine's addresses.
pub const DEFAULT_TEST_PEERS: usize = 0;
/// Most test-peer slots `--test-peers` may ask for: each is a PeerConnection
/// with its own sockets and tasks.
pub const MAX_TEST_PEERS: usize = 64;
/// Bytes a test peer may move over its data channels (in both directions,
/// across its reconnects) before flnode closes its connection: room for a
/// few of the page's 8 MiB throughput tests, not for using this node as a
/// free traffic sink.
pub const DEFAULT_TEST_PEER_BUDGET: u64 = 64 * 1024 * 1024;
/// Data channels a test peer's connection may have: the page's `wg` and
/// `ctl`. Further ones from the remote are closed at once, so that a peer
/// cannot multiply its throughput-test state.
pub const MAX_TEST_PEER_CHANNELS: usize = 2;
/// At most one log line per this interval for refused strangers, whatever
/// a hostile server or node sends; the rest are counted in the next line.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Which strangers may become test peers, and how many at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestPeerPolicy {
    /// Slots; 0 turns test peers off.
    pub slots: usize,
    /// Only these nodes, if not empty.
    pub allow: Vec<NodeId>,
}

/// Why a stranger's setup was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("test peers are off (--test-peers 0)")]
    TestPeersOff,
    #[error("{0} is not on the test-peer allow-list")]
    NotAllowed(NodeId),
    #[error("{0}")]
    BadSetup(SetupAuthError),
    #[error("all {slots} test-peer slots are taken")]
    Full { slots: usize },
}

/// The test-peer slots in use: a node holds one from its first accepted
/// setup until its task ends ([`TestPeerSlots::release`]).
#[derive(Debug)]
pub struct TestPeerSlots {
    policy: TestPeerPolicy,
    taken: HashSet<NodeId>,
}

/// A stranger's setup that may go on to a test-peer task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admitted {
    /// It holds a slot already: hand the setup to its task.
    Existing(NodeId),
    /// A slot was reserved for it just now: start its task.
    New(NodeId),
}

impl TestPeerSlots {
    pub fn new(policy: TestPeerPolicy) -> Self {
        TestPeerSlots {
            policy,
            taken: HashSet::new(),
        }
    }

    /// Decides on a setup from a node that is not a configured peer. The
    /// cheap refusals (off, not allowed) come first and cost no signature
    /// check; the signature is checked before a slot is reserved. A setup
    /// claiming to be from a test peer that has a slot goes to its task,
    /// whose state machine checks it (and logs a refusal as for any peer).
    pub fn admit(&mut self, setup: &PeerInfo, me: &NodeId) -> Result<Admitted, Refusal> {
        if self.policy.slots == 0 {
            return Err(Refusal::TestPeersOff);
        }
        // The claimed sender, not verified yet: refusing it reserves nothing.
        if let Some(claimed) = setup.counterpart_of(me) {
            if !self.policy.allow.is_empty() && !self.policy.allow.contains(&claimed) {
                return Err(Refusal::NotAllowed(claimed));
            }
            if self.taken.contains(&claimed) {
                return Ok(Admitted::Existing(claimed));
            }
        }
        let (sender, _) = setup_auth::verify(setup, me).map_err(Refusal::BadSetup)?;
        if self.taken.contains(&sender) {
            return Ok(Admitted::Existing(sender));
        }
        if self.taken.len() >= self.policy.slots {
            return Err(Refusal::Full {
                slots: self.policy.slots,
            });
        }
        self.taken.insert(sender);
        Ok(Admitted::New(sender))
    }

    /// The task of `id` ended: its slot is free.
    pub fn release(&mut self, id: &NodeId) {
        self.taken.remove(id);
    }

    pub fn taken(&self) -> usize {
        self.taken.len()
    }

    pub fn slots(&self) -> usize {
        self.policy.slots
    }
}

/// One log line per [`REFUSAL_LOG_INTERVAL`] at most; the lines not written
/// are counted and reported with the next one.
#[derive(Debug, Default)]
pub struct RefusalLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl RefusalLog {
    /// Notes one refusal at `now`; `Some(n)` if a line is due, `n` being
    /// the refusals not logged since the last line.
    pub fn note(&mut self, now: Instant) -> Option<u64> {
        if self.last.is_some_and(|last| now < last + REFUSAL_LOG_INTERVAL) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// What a test peer may still move over its data channels, shared by all
/// of its channels and connections.
#[derive(Debug)]
pub struct ByteBudget {
    limit: u64,
    used: AtomicU64,
}

impl ByteBudget {
    pub fn new(limit: u64) -> Self {
        ByteBudget {
            limit,
            used: AtomicU64::new(0),
        }
    }

    /// Counts `bytes` (received or sent); false once the total passes the
    /// limit: the message that crosses it is not answered.
    pub fn charge(&self, bytes: usize) -> bool {
        let before = self.used.fetch_add(bytes as u64, Ordering::Relaxed);
        before.saturating_add(bytes as u64) <= self.limit
    }

    /// Whether a charge has gone past the limit.
    #[cfg(test)]
    pub fn spent(&self) -> bool {
        self.used() > self.limit
    }

    #[cfg(test)]
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use flproto::identity::NodeKey;
    use flproto::message::SetupMessage;
    use flproto::setup_auth::{SessionId, SetupSigner};

    use super::*;

    /// A setup from `from` to `to`, signed by `from`.
    fn signed_setup(from: &NodeKey, to: &NodeId) -> PeerInfo {
        let (id_init, id_follow) = if from.id() < *to {
            (from.id(), *to)
        } else {
            (*to, from.id())
        };
        let mut signer = SetupSigner::new(SessionId([7; 8]));
        let mut attempt = signer.next_generation(1);
        let info = PeerInfo {
            id_init,
            id_follow,
            message: SetupMessage::Init,
            auth: None,
        };
        signer.sign(from, &mut attempt, info)
    }

    fn key(seed: u8) -> NodeKey {
        NodeKey::from_seed([seed; 32])
    }

    #[test]
    fn with_test_peers_off_a_stranger_gets_no_slot() {
        let me = key(1).id();
        let mut slots = TestPeerSlots::new(TestPeerPolicy::default());
        assert_eq!(
            slots.admit(&signed_setup(&key(2), &me), &me),
            Err(Refusal::TestPeersOff)
        );
        assert_eq!(slots.taken(), 0);
    }

    #[test]
    fn only_allowed_nodes_get_a_slot() {
        let me = key(1).id();
        let (allowed, stranger) = (key(2), key(3));
        let mut slots = TestPeerSlots::new(TestPeerPolicy {
            slots: 1,
            allow: vec![allowed.id()],
        });
        assert_eq!(
            slots.admit(&signed_setup(&stranger, &me), &me),
            Err(Refusal::NotAllowed(stranger.id()))
        );
        assert_eq!(slots.taken(), 0);
        assert_eq!(
            slots.admit(&signed_setup(&allowed, &me), &me),
            Ok(Admitted::New(allowed.id()))
        );
        assert_eq!(
            slots.admit(&signed_setup(&allowed, &me), &me),
            Ok(Admitted::Existing(allowed.id()))
        );
        assert_eq!(slots.taken(), 1);
    }

    #[test]
    fn a_forged_setup_reserves_nothing() {
        let me = key(1).id();
        let claimed = key(2);
        let mut slots = TestPeerSlots::new(TestPeerPolicy {
            slots: 4,
            allow: vec![claimed.id()],
        });
        // Signed by someone else in the allowed node's name.
        let mut forged = signed_setup(&key(9), &me);
        let genuine = signed_setup(&claimed, &me);
        forged.id_init = genuine.id_init;
        forged.id_follow = genuine.id_follow;
        assert!(matches!(
            slots.admit(&forged, &me),
            Err(Refusal::BadSetup(SetupAuthError::BadSignature { .. }))
        ));
        let mut unsigned = genuine.clone();
        unsigned.auth = None;
        assert_eq!(
            slots.admit(&unsigned, &me),
            Err(Refusal::BadSetup(SetupAuthError::Unsigned))
        );
        assert_eq!(slots.taken(), 0);
    }

    /// Its task checks it then, and logs the refusal like any peer's.
    #[test]
    fn a_forged_setup_in_the_name_of_an_admitted_test_peer_goes_to_its_task() {
        let me = key(1).id();
        let peer = key(2);
        let mut slots = TestPeerSlots::new(TestPeerPolicy {
            slots: 1,
            allow: vec![],
        });
        assert_eq!(
            slots.admit(&signed_setup(&peer, &me), &me),
            Ok(Admitted::New(peer.id()))
        );
        let mut forged = signed_setup(&peer, &me);
        forged.auth = None;
        assert_eq!(slots.admit(&forged, &me), Ok(Admitted::Existing(peer.id())));
        assert_eq!(slots.taken(), 1);
    }

    #[test]
    fn slots_run_out_and_come_back_when_released() {
        let me = key(1).id();
        let mut slots = TestPeerSlots::new(TestPeerPolicy {
            slots: 2,
            allow: vec![],
        });
        for seed in [2, 3] {
            assert_eq!(
                slots.admit(&signed_setup(&key(seed), &me), &me),
                Ok(Admitted::New(key(seed).id()))
            );
        }
        assert_eq!(
            slots.admit(&signed_setup(&key(4), &me), &me),
            Err(Refusal::Full { slots: 2 })
        );
        slots.release(&key(2).id());
        assert_eq!(
            slots.admit(&signed_setup(&key(4), &me), &me),
            Ok(Admitted::New(key(4).id()))
        );
    }

    #[test]
    fn refusals_are_logged_once_per_interval_with_a_count() {
        let mut log = RefusalLog::default();
        let start = Instant::now();
        assert_eq!(log.note(start), Some(0));
        for _ in 0..1000 {
            assert_eq!(log.note(start + Duration::from_secs(1)), None);
        }
        assert_eq!(log.note(start + REFUSAL_LOG_INTERVAL), Some(1000));
        assert_eq!(log.note(start + REFUSAL_LOG_INTERVAL), None);
    }

    #[test]
    fn the_budget_holds_until_the_limit_and_not_after() {
        let budget = ByteBudget::new(100);
        assert!(budget.charge(60));
        assert!(budget.charge(40));
        assert!(!budget.charge(1));
        assert!(!budget.charge(0), "once spent, it stays spent");
        assert_eq!(budget.used(), 101);
        assert!(budget.spent());
        assert!(!ByteBudget::new(100).spent());
        assert!(!ByteBudget::new(10).charge(usize::MAX));
    }
}
