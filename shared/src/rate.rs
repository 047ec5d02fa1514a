//! A token bucket for per-connection message rates. Time is passed in, so
//! it is exact under test.

use std::time::Instant;

/// Messages per second a connection may send on average, and how many it
/// may send at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

/// Tokens are messages; one is spent per message and they refill
/// continuously at `per_second`, up to `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    limit: RateLimit,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    pub fn new(limit: RateLimit, now: Instant) -> Self {
        Self {
            limit,
            tokens: f64::from(limit.burst),
            updated: now,
        }
    }

    /// Spends one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.try_take_many(1, now)
    }

    /// Spends `amount` tokens if there are that many (a bucket whose tokens
    /// are bytes: one frame's size); nothing is spent otherwise.
    pub fn try_take_many(&mut self, amount: u32, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.updated);
        self.updated = now;
        self.tokens =
            (self.tokens + elapsed.as_secs_f64() * f64::from(self.limit.per_second)).min(f64::from(self.limit.burst));
        if self.tokens >= f64::from(amount) {
            self.tokens -= f64::from(amount);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn allows_burst_then_refills_at_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(
            RateLimit {
                per_second: 10,
                burst: 5,
            },
            start,
        );
        assert!((0..5).all(|_| bucket.try_take(start)));
        assert!(!bucket.try_take(start));
        assert!(bucket.try_take(start + Duration::from_millis(100)));
        assert!(!bucket.try_take(start + Duration::from_millis(100)));
        // A long pause never stores more than the burst.
        let later = start + Duration::from_secs(60);
        assert_eq!((0..10).filter(|_| bucket.try_take(later)).count(), 5);
    }

    #[test]
    fn a_byte_bucket_takes_whole_frames_or_nothing() {
        let start = Instant::now();
        let mut bytes = TokenBucket::new(
            RateLimit {
                per_second: 1000,
                burst: 1500,
            },
            start,
        );
        assert!(bytes.try_take_many(1000, start));
        assert!(
            !bytes.try_take_many(600, start),
            "500 left: a 600-byte frame does not fit"
        );
        assert!(bytes.try_take_many(500, start), "and a refused frame spent nothing");
        assert!(!bytes.try_take_many(1, start));
        // 1000 bytes a second: 0.7 s later a 600-byte frame fits again.
        assert!(bytes.try_take_many(600, start + Duration::from_millis(700)));
        assert!(
            !bytes.try_take_many(2000, start + Duration::from_secs(60)),
            "never more than the burst"
        );
    }
}
