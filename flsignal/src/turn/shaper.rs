//! The relay's byte budgets, per allocation and per node, and the short
//! queue that smooths what exceeds them.
//!
//! Dropping everything over a budget (policing) kills the tunnels it is
//! meant to slow down: flnode's data channel (SCTP) and the ctl keepalives
//! in it stall under that loss, and the node gives the path up (measured
//! in BENCHMARKS.md: TCP through the tunnel fell to 0.1–3 Mbit/s under a
//! 10 Mbit/s budget, then the path died). A link that queues briefly
//! instead carries the same tunnel at its rate. So a datagram over budget
//! waits in its allocation's queue, in order, until the budgets allow it,
//! and is dropped only when that queue holds [`SHAPING_DELAY`] worth of its
//! rate (at most [`MAX_QUEUE_BYTES`]), or all queues together hold
//! [`MAX_QUEUED_BYTES`].

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use flproto::NodeId;

use super::bandwidth::{ByteBudget, ByteRate};
use super::state::ClientAddr;

/// Longest a datagram waits for its budget: a queue longer than this much
/// of its allocation's rate drops what comes next. About what a home
/// router's queue holds.
pub const SHAPING_DELAY: Duration = Duration::from_millis(50);
/// Most bytes one allocation's queue holds, whatever its rate.
pub const MAX_QUEUE_BYTES: usize = 64 * 1024;
/// Most bytes all queues together hold: bounds the memory a crowd of
/// nodes over their budgets costs.
pub const MAX_QUEUED_BYTES: usize = 16 * 1024 * 1024;

/// Where a relayed datagram goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// From relay socket `relay` to a peer.
    Peer { relay: SocketAddr, peer: SocketAddr },
    /// From the listening socket (or connection) to the allocation's client.
    Client(ClientAddr),
}

/// What became of an offered datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Within the budgets: send it now.
    Send,
    /// Queued until the budgets allow it.
    Held,
    /// Dropped: its queue (or all queues) is full. The budget it was over.
    Dropped(&'static str),
}

/// One allocation's budget and queue.
#[derive(Debug)]
pub struct Lane {
    budget: ByteBudget,
    queue: VecDeque<(Dest, Vec<u8>)>,
    queued: usize,
    /// Bytes the queue may hold: [`SHAPING_DELAY`] of the rate.
    limit: usize,
    /// The budget that last said no: why what overflows the queue is
    /// dropped.
    short: &'static str,
}

impl Lane {
    pub fn new(rate: ByteRate, now: Instant) -> Lane {
        let delay_worth = rate.per_second.saturating_mul(SHAPING_DELAY.as_millis() as u64) / 1000;
        Lane {
            budget: ByteBudget::new(rate, now),
            queue: VecDeque::new(),
            queued: 0,
            limit: usize::try_from(delay_worth).unwrap_or(usize::MAX).min(MAX_QUEUE_BYTES),
            short: "allocation_bandwidth",
        }
    }

    pub fn is_idle(&self) -> bool {
        self.queue.is_empty()
    }
}

struct NodeUsage {
    allocations: usize,
    budget: ByteBudget,
}

/// The nodes' budgets and the queues' total.
pub struct Shaper {
    node_rate: ByteRate,
    nodes: HashMap<NodeId, NodeUsage>,
    queued: usize,
}

impl Shaper {
    pub fn new(node_rate: ByteRate) -> Shaper {
        Shaper {
            node_rate,
            nodes: HashMap::new(),
            queued: 0,
        }
    }

    /// Allocations `node` holds.
    pub fn allocations_of(&self, node: &NodeId) -> usize {
        self.nodes.get(node).map_or(0, |usage| usage.allocations)
    }

    pub fn add_allocation(&mut self, node: NodeId, now: Instant) {
        let rate = self.node_rate;
        self.nodes
            .entry(node)
            .or_insert_with(|| NodeUsage {
                allocations: 0,
                budget: ByteBudget::new(rate, now),
            })
            .allocations += 1;
    }

    /// The allocation of `node` whose lane this was ended: what waited in
    /// it is dropped.
    pub fn remove_allocation(&mut self, node: &NodeId, lane: Lane) {
        self.queued -= lane.queued;
        if let Some(usage) = self.nodes.get_mut(node) {
            usage.allocations -= 1;
            if usage.allocations == 0 {
                self.nodes.remove(node);
            }
        }
    }

    /// A datagram of `node`'s allocation: sent now if nothing waits before
    /// it and both budgets allow, else queued, else dropped.
    pub fn offer(&mut self, node: &NodeId, lane: &mut Lane, dest: Dest, data: &[u8], now: Instant) -> Offer {
        if lane.queue.is_empty() {
            match self.spend(node, lane, data.len(), now) {
                Ok(()) => return Offer::Send,
                Err(short) if lane.limit < data.len() => return Offer::Dropped(short),
                Err(_) => {}
            }
        }
        if lane.queued + data.len() > lane.limit {
            return Offer::Dropped(lane.short);
        }
        if self.queued + data.len() > MAX_QUEUED_BYTES {
            return Offer::Dropped("queues_full");
        }
        lane.queue.push_back((dest, data.to_vec()));
        lane.queued += data.len();
        self.queued += data.len();
        Offer::Held
    }

    /// Sends (through `send`) what waits in `lane` as far as the budgets
    /// now allow.
    pub fn release(&mut self, node: &NodeId, lane: &mut Lane, now: Instant, mut send: impl FnMut(Dest, &[u8])) {
        while let Some((_, data)) = lane.queue.front() {
            let len = data.len();
            if self.spend(node, lane, len, now).is_err() {
                return;
            }
            if let Some((dest, data)) = lane.queue.pop_front() {
                lane.queued -= len;
                self.queued -= len;
                send(dest, &data);
            }
        }
    }

    /// Spends `bytes` of both budgets, or of neither: which one was short.
    fn spend(&mut self, node: &NodeId, lane: &mut Lane, bytes: usize, now: Instant) -> Result<(), &'static str> {
        if !lane.budget.try_spend(bytes, now) {
            lane.short = "allocation_bandwidth";
            return Err(lane.short);
        }
        if !self
            .nodes
            .get_mut(node)
            .is_some_and(|usage| usage.budget.try_spend(bytes, now))
        {
            lane.budget.refund(bytes);
            lane.short = "node_bandwidth";
            return Err(lane.short);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: ByteRate = ByteRate {
        per_second: 100_000,
        burst: 3_000,
    };
    const NODE: NodeId = NodeId([1; 32]);

    fn peer() -> Dest {
        Dest::Peer {
            relay: "203.0.113.10:50000".parse().unwrap(),
            peer: "198.51.100.20:6000".parse().unwrap(),
        }
    }

    #[test]
    fn over_budget_datagrams_wait_in_order_then_go() {
        let start = Instant::now();
        let mut shaper = Shaper::new(ByteRate {
            per_second: 1_000_000,
            burst: 1_000_000,
        });
        shaper.add_allocation(NODE, start);
        let mut lane = Lane::new(RATE, start);
        // 50 ms of 100 000 bytes/s: 5 000 bytes may wait.
        assert_eq!(lane.limit, 5_000);
        let offers: Vec<Offer> = (0..10u8)
            .map(|n| shaper.offer(&NODE, &mut lane, peer(), &[n; 1000], start))
            .collect();
        assert_eq!(offers[..3], [Offer::Send; 3]);
        assert_eq!(offers[3..8], [Offer::Held; 5]);
        assert_eq!(offers[8..], [Offer::Dropped("allocation_bandwidth"); 2]);
        // Nothing jumps the queue, even when the budget would allow it.
        let later = start + Duration::from_millis(10);
        assert_eq!(
            shaper.offer(&NODE, &mut lane, peer(), &[9; 1], later),
            Offer::Dropped("allocation_bandwidth")
        );
        let mut sent = Vec::new();
        shaper.release(&NODE, &mut lane, later, |_, data| sent.push(data[0]));
        assert_eq!(sent, [3]);
        // The budget refills by its burst at most (3 000 bytes).
        let mut release_at = |ms| {
            shaper.release(&NODE, &mut lane, start + Duration::from_millis(ms), |_, data| {
                sent.push(data[0])
            })
        };
        release_at(60);
        release_at(70);
        assert_eq!(sent, [3, 4, 5, 6, 7]);
        assert!(lane.is_idle());
        assert_eq!(shaper.queued, 0);
    }

    #[test]
    fn a_nodes_budget_holds_all_its_lanes_back() {
        let start = Instant::now();
        let mut shaper = Shaper::new(RATE);
        shaper.add_allocation(NODE, start);
        shaper.add_allocation(NODE, start);
        let wide = ByteRate {
            per_second: 1_000_000,
            burst: 1_000_000,
        };
        let (mut first, mut second) = (Lane::new(wide, start), Lane::new(wide, start));
        assert_eq!(shaper.offer(&NODE, &mut first, peer(), &[0; 2000], start), Offer::Send);
        assert_eq!(shaper.offer(&NODE, &mut second, peer(), &[0; 2000], start), Offer::Held);
        assert_eq!(shaper.allocations_of(&NODE), 2);
        // An ended allocation gives back what waited in it.
        shaper.remove_allocation(&NODE, second);
        assert_eq!(shaper.queued, 0);
        shaper.remove_allocation(&NODE, first);
        assert_eq!(shaper.allocations_of(&NODE), 0);
    }

    #[test]
    fn a_datagram_larger_than_the_queue_is_dropped_not_held() {
        let start = Instant::now();
        let mut shaper = Shaper::new(RATE);
        shaper.add_allocation(NODE, start);
        let slow = ByteRate {
            per_second: 10_000,
            burst: 2_048,
        };
        let mut lane = Lane::new(slow, start);
        assert_eq!(lane.limit, 500);
        assert_eq!(shaper.offer(&NODE, &mut lane, peer(), &[0; 2000], start), Offer::Send);
        assert_eq!(
            shaper.offer(&NODE, &mut lane, peer(), &[0; 1000], start),
            Offer::Dropped("allocation_bandwidth")
        );
        assert!(lane.is_idle());
    }
}
