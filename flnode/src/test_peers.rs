//! Setups from nodes that are not configured peers: admitted or dropped by
//! [`crate::admission`], and the tasks of the admitted ones. A dropped
//! setup starts nothing (no task, no PeerConnection, no ICE gathering), so
//! nothing about this machine's addresses goes out.

use std::collections::HashMap;

use flproto::message::PeerInfo;
use flproto::NodeId;

use crate::admission::{Admitted, RefusalLog, TestPeerPolicy, TestPeerSlots};
use crate::peer::PeerInput;
use crate::peers::{PeerEntry, PeerFactory};

pub struct TestPeers {
    slots: TestPeerSlots,
    tasks: HashMap<NodeId, PeerEntry>,
    /// Setups from strangers dropped so far, for `flnode status`.
    refused: u64,
    log: RefusalLog,
}

impl TestPeers {
    pub fn new(policy: TestPeerPolicy) -> Self {
        TestPeers {
            slots: TestPeerSlots::new(policy),
            tasks: HashMap::new(),
            refused: 0,
            log: RefusalLog::default(),
        }
    }

    /// Hands `setup` (from a node that is not a configured peer) to its
    /// test-peer task, starting one if the stranger is admitted.
    pub fn on_setup(&mut self, me: &NodeId, factory: &PeerFactory, setup: PeerInfo) {
        self.clear_finished();
        let entry = match self.slots.admit(&setup, me) {
            Ok(Admitted::Existing(id)) => self.tasks.get(&id),
            Ok(Admitted::New(id)) => {
                tracing::info!(peer = %id, "a node that is not a configured peer connects: test peer on ctl only");
                Some(&*self.tasks.entry(id).or_insert_with(|| factory.start_test_peer(id)))
            }
            Err(refusal) => {
                self.refused += 1;
                let refused = self.refused;
                if let Some(suppressed) = self.log.note(std::time::Instant::now()) {
                    let claimed = setup.counterpart_of(me).map(|id| id.to_string()).unwrap_or_default();
                    tracing::info!(claimed_sender = %claimed, refused, suppressed, "dropped a setup from a node that is not a configured peer: {refusal}");
                }
                None
            }
        };
        if let Some(entry) = entry {
            let _ = entry.inputs.try_send(PeerInput::Setup(setup));
        }
    }

    /// Frees the slots of test peers whose task ended (idle, or gone).
    fn clear_finished(&mut self) {
        let slots = &mut self.slots;
        self.tasks.retain(|id, entry| {
            let alive = !entry.inputs.is_closed();
            if !alive {
                slots.release(id);
            }
            alive
        });
    }

    pub fn live(&self) -> impl Iterator<Item = (&NodeId, &PeerEntry)> {
        self.tasks.iter().filter(|(_, entry)| !entry.inputs.is_closed())
    }

    /// Slots taken, and slots in all.
    pub fn slots(&self) -> (usize, usize) {
        (self.slots.taken(), self.slots.slots())
    }

    pub fn refused(&self) -> u64 {
        self.refused
    }
}
