//! How many STUN replies the service sends: a budget per source and one for
//! all sources together. Time is passed in; no socket here.
//!
//! The per-source budget keeps one address from using the service as a
//! reflector at full speed. It cannot stop a flood with spoofed sources, one
//! request from each of millions of addresses (all aimed, by their replies,
//! at one victim): the global budget caps what the port sends whatever the
//! sources. IPv6 sources are keyed by prefix ([`flproto::addr_key`]), so a
//! host with a /64 cannot mint fresh budgets. The source table is bounded;
//! when full, the source heard from least recently is forgotten, never the
//! whole table at once.

use std::net::IpAddr;
use std::time::Instant;

use flproto::addr_key::source_key;
use flproto::rate::{RateLimit, TokenBucket};
use lru::LruCache;

/// Binding Requests per second one source may have answered on average.
/// ICE gathering sends one per local address and STUN server, plus
/// retransmissions; many nodes behind one NAT share an address.
pub const DEFAULT_RATE: RateLimit = RateLimit {
    per_second: 20,
    burst: 100,
};
/// Replies per second to all sources together. A reply is about 80 bytes on
/// the wire, so this caps reflected traffic near 3.2 Mbit/s, while a few
/// thousand nodes gathering candidates at once (a handful of requests each)
/// are still answered within a couple of seconds.
pub const DEFAULT_GLOBAL_RATE: RateLimit = RateLimit {
    per_second: 5_000,
    burst: 10_000,
};
/// Sources whose budgets are remembered (about 100 bytes each). A source
/// forgotten to make room starts again with a full budget, so the table
/// bounds memory, not the rate: that is the global budget's job.
pub const DEFAULT_MAX_SOURCES: usize = 65_536;

/// Why a request is not answered for budget reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverBudget {
    /// Its source (address or IPv6 prefix) used up its share.
    Source,
    /// All sources together did.
    Global,
}

/// The per-source and global reply budgets of one STUN service.
pub struct ReplyBudget {
    limit: RateLimit,
    ipv6_prefix_len: u8,
    max_sources: usize,
    sources: LruCache<IpAddr, TokenBucket>,
    global: TokenBucket,
}

impl ReplyBudget {
    pub fn new(limit: RateLimit, global: RateLimit, ipv6_prefix_len: u8, max_sources: usize, now: Instant) -> Self {
        Self {
            limit,
            ipv6_prefix_len,
            max_sources: max_sources.max(1),
            // Grown as sources arrive, so an idle service holds no table.
            sources: LruCache::unbounded(),
            global: TokenBucket::new(global, now),
        }
    }

    /// Spends one of `source`'s tokens if it has one. Checked before the
    /// request is decoded, so a source sending garbage pays for it too.
    pub fn source_allows(&mut self, source: IpAddr, now: Instant) -> bool {
        let key = source_key(source, self.ipv6_prefix_len);
        if let Some(bucket) = self.sources.get_mut(&key) {
            return bucket.try_take(now);
        }
        if self.sources.len() >= self.max_sources {
            self.sources.pop_lru();
        }
        let mut bucket = TokenBucket::new(self.limit, now);
        let allowed = bucket.try_take(now);
        self.sources.push(key, bucket);
        allowed
    }

    /// Spends one global token if there is one; asked only for a reply
    /// about to be sent, since only replies reflect.
    pub fn global_allows(&mut self, now: Instant) -> bool {
        self.global.try_take(now)
    }

    /// Sources remembered now.
    pub fn tracked(&self) -> usize {
        self.sources.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use flproto::addr_key::DEFAULT_IPV6_PREFIX_LEN;

    const GENEROUS: RateLimit = RateLimit {
        per_second: 1_000_000,
        burst: 1_000_000,
    };

    /// Both budgets for one request in the service's order (the source's
    /// is spent even on a request the global budget then refuses).
    fn allow(budget: &mut ReplyBudget, source: IpAddr, now: Instant) -> Result<(), OverBudget> {
        if !budget.source_allows(source, now) {
            return Err(OverBudget::Source);
        }
        if !budget.global_allows(now) {
            return Err(OverBudget::Global);
        }
        Ok(())
    }

    fn budget(limit: RateLimit, global: RateLimit, max_sources: usize) -> (ReplyBudget, Instant) {
        let now = Instant::now();
        let budget = ReplyBudget::new(limit, global, DEFAULT_IPV6_PREFIX_LEN, max_sources, now);
        (budget, now)
    }

    #[test]
    fn each_source_has_its_own_budget() {
        let limit = RateLimit {
            per_second: 10,
            burst: 3,
        };
        let (mut budget, start) = budget(limit, GENEROUS, 100);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!((0..5).filter(|_| allow(&mut budget, a, start).is_ok()).count(), 3);
        assert_eq!(allow(&mut budget, a, start), Err(OverBudget::Source));
        // Another source has its own budget.
        assert!(allow(&mut budget, b, start).is_ok());
        // The same address seen as v4-mapped v6 is the same source.
        assert!(allow(&mut budget, "::ffff:192.0.2.1".parse().unwrap(), start).is_err());
        assert!(allow(&mut budget, a, start + Duration::from_millis(100)).is_ok());
        assert_eq!(budget.tracked(), 2);
    }

    #[test]
    fn ipv6_sources_in_one_prefix_share_a_budget() {
        let limit = RateLimit {
            per_second: 1,
            burst: 2,
        };
        let (mut budget, now) = budget(limit, GENEROUS, 100);
        // Fresh addresses from one /64 do not mint fresh budgets.
        let allowed = (1..=50u16)
            .filter(|i| allow(&mut budget, format!("2001:db8:1:2::{i:x}").parse().unwrap(), now).is_ok())
            .count();
        assert_eq!(allowed, 2);
        assert!(allow(&mut budget, "2001:db8:1:3::1".parse().unwrap(), now).is_ok());
        assert_eq!(budget.tracked(), 2);
    }

    #[test]
    fn spoofed_sources_cannot_exceed_the_global_budget() {
        let global = RateLimit {
            per_second: 10,
            burst: 20,
        };
        let (mut budget, start) = budget(DEFAULT_RATE, global, DEFAULT_MAX_SOURCES);
        // One request from each of 10 000 addresses, all within a second.
        let mut answered = 0;
        let mut refused_globally = 0;
        for i in 0..10_000u32 {
            let now = start + Duration::from_micros(u64::from(i) * 100);
            match allow(&mut budget, IpAddr::from((0x0a00_0000 + i).to_be_bytes()), now) {
                Ok(()) => answered += 1,
                Err(OverBudget::Global) => refused_globally += 1,
                Err(OverBudget::Source) => panic!("each source sent one request"),
            }
        }
        // The burst plus one second's refill, whatever the sources.
        assert!(answered <= 20 + 10 + 1, "{answered} answered");
        assert_eq!(answered + refused_globally, 10_000);
    }

    #[test]
    fn a_full_table_forgets_the_least_recently_heard_source_only() {
        let limit = RateLimit {
            per_second: 1,
            burst: 2,
        };
        let (mut budget, now) = budget(limit, GENEROUS, 4);
        let busy: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(allow(&mut budget, busy, now).is_ok());
        for i in 0..100u8 {
            // The busy source keeps being heard, so it stays, budget spent.
            let _ = allow(&mut budget, busy, now);
            assert!(allow(&mut budget, IpAddr::from([10, 0, 0, i]), now).is_ok());
            assert!(budget.tracked() <= 4);
        }
        assert_eq!(allow(&mut budget, busy, now), Err(OverBudget::Source));
    }
}
