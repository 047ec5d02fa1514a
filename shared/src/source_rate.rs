//! A rate limit per source address (see [`crate::addr_key`]), shared by
//! every connection from that source, in a table of bounded size.
//!
//! The table keeps the sources seen most recently; when it is full, the
//! one unseen for longest is forgotten (and starts afresh if it returns).
//! A flood of distinct sources thus costs a fixed amount of memory and
//! evicts entries one at a time, never the whole table at once.

use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::time::Instant;

use lru::LruCache;

use crate::rate::{RateLimit, TokenBucket};

/// Default announces per second one source may make on average, and at
/// once: room for a whole per-IP connection cap of nodes behind one NAT
/// reconnecting together, far below a registration churn that loads the
/// server.
pub const DEFAULT_ANNOUNCE_RATE: RateLimit = RateLimit {
    per_second: 16,
    burst: 256,
};
/// Default number of sources the announce rate table remembers.
pub const DEFAULT_ANNOUNCE_SOURCES: usize = 16_384;

/// Token buckets by source key, at most `capacity` of them.
pub struct SourceRates {
    limit: RateLimit,
    buckets: LruCache<IpAddr, TokenBucket>,
}

impl SourceRates {
    /// A table of at most `capacity` sources (at least one).
    pub fn new(limit: RateLimit, capacity: usize) -> Self {
        Self {
            limit,
            buckets: LruCache::new(NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN)),
        }
    }

    /// Spends one token of `source`'s bucket if it has one.
    pub fn try_take(&mut self, source: IpAddr, now: Instant) -> bool {
        let limit = self.limit;
        self.buckets
            .get_or_insert_mut(source, || TokenBucket::new(limit, now))
            .try_take(now)
    }

    /// Sources remembered now.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    const LIMIT: RateLimit = RateLimit {
        per_second: 1,
        burst: 2,
    };

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn each_source_has_its_own_burst_and_refills() {
        let now = Instant::now();
        let mut rates = SourceRates::new(LIMIT, 8);
        assert!(rates.try_take(ip(1), now) && rates.try_take(ip(1), now));
        assert!(!rates.try_take(ip(1), now));
        assert!(rates.try_take(ip(2), now), "another source is not affected");
        assert!(rates.try_take(ip(1), now + Duration::from_secs(1)));
    }

    #[test]
    fn a_full_table_forgets_the_source_unseen_longest() {
        let now = Instant::now();
        let mut rates = SourceRates::new(LIMIT, 2);
        for source in [1, 1, 2, 2] {
            rates.try_take(ip(source), now);
        }
        assert!(!rates.try_take(ip(2), now));
        rates.try_take(ip(3), now);
        assert_eq!(rates.len(), 2);
        assert!(!rates.try_take(ip(2), now), "2 was seen more recently than 1");
        assert!(rates.try_take(ip(1), now), "1 was forgotten and starts afresh");
    }

    proptest! {
        #[test]
        fn the_table_never_outgrows_its_capacity(
            capacity in 1usize..16,
            sources in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let now = Instant::now();
            let mut rates = SourceRates::new(LIMIT, capacity);
            for source in sources {
                rates.try_take(ip(source), now);
                prop_assert!(rates.len() <= capacity);
            }
        }
    }
}
