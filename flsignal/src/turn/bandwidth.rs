//! A token bucket of bytes: what one allocation, or one node, may have
//! relayed. Time is passed in, so it is exact under test.

use std::time::Instant;

/// Bytes per second on average, and how many at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRate {
    pub per_second: u64,
    pub burst: u64,
}

/// Tokens are bytes; they refill continuously at `per_second`, up to
/// `burst`. A datagram that does not fit is dropped whole: WireGuard is
/// UDP, and TCP inside the tunnel slows down when it sees the loss.
#[derive(Debug, Clone)]
pub struct ByteBudget {
    rate: ByteRate,
    /// Bytes available, in millionths of a byte, so that a refill of a few
    /// microseconds is not rounded away.
    micro_tokens: u128,
    updated: Instant,
}

const MICRO: u128 = 1_000_000;

impl ByteBudget {
    /// A full bucket.
    pub fn new(rate: ByteRate, now: Instant) -> Self {
        Self {
            rate,
            micro_tokens: u128::from(rate.burst) * MICRO,
            updated: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated);
        self.updated = now.max(self.updated);
        let added = elapsed.as_micros() * u128::from(self.rate.per_second);
        self.micro_tokens = (self.micro_tokens + added).min(u128::from(self.rate.burst) * MICRO);
    }

    /// Whether `bytes` fit now; if they do, they are spent.
    pub fn try_spend(&mut self, bytes: usize, now: Instant) -> bool {
        self.refill(now);
        let cost = bytes as u128 * MICRO;
        if cost <= self.micro_tokens {
            self.micro_tokens -= cost;
            true
        } else {
            false
        }
    }

    /// Gives back `bytes` spent by [`ByteBudget::try_spend`] (the other
    /// budget a datagram also needed said no).
    pub fn refund(&mut self, bytes: usize) {
        let cap = u128::from(self.rate.burst) * MICRO;
        self.micro_tokens = (self.micro_tokens + bytes as u128 * MICRO).min(cap);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const RATE: ByteRate = ByteRate {
        per_second: 1000,
        burst: 3000,
    };

    #[test]
    fn a_burst_then_the_rate() {
        let start = Instant::now();
        let mut budget = ByteBudget::new(RATE, start);
        assert!(budget.try_spend(1500, start));
        assert!(budget.try_spend(1500, start));
        assert!(!budget.try_spend(1, start));
        // A millisecond brings one byte.
        assert!(budget.try_spend(1, start + Duration::from_millis(1)));
        assert!(!budget.try_spend(1000, start + Duration::from_millis(1)));
        assert!(budget.try_spend(1000, start + Duration::from_millis(1001)));
        // A long pause never stores more than the burst.
        let later = start + Duration::from_secs(3600);
        assert!(budget.try_spend(3000, later));
        assert!(!budget.try_spend(1, later));
    }

    #[test]
    fn a_datagram_larger_than_the_burst_never_fits_and_costs_nothing() {
        let start = Instant::now();
        let mut budget = ByteBudget::new(RATE, start);
        assert!(!budget.try_spend(3001, start));
        assert!(budget.try_spend(3000, start));
    }

    #[test]
    fn refunds_never_exceed_the_burst() {
        let start = Instant::now();
        let mut budget = ByteBudget::new(RATE, start);
        assert!(budget.try_spend(2000, start));
        budget.refund(5000);
        assert!(budget.try_spend(3000, start));
        assert!(!budget.try_spend(1, start));
    }

    #[test]
    fn time_running_backwards_adds_nothing() {
        let start = Instant::now() + Duration::from_secs(10);
        let mut budget = ByteBudget::new(RATE, start);
        assert!(budget.try_spend(3000, start));
        assert!(!budget.try_spend(1, start - Duration::from_secs(5)));
        assert!(!budget.try_spend(1, start));
    }

    #[test]
    fn the_measured_rate_over_a_minute_is_the_configured_one() {
        let start = Instant::now();
        let mut budget = ByteBudget::new(RATE, start);
        let mut sent = 0u64;
        for ms in 0..60_000u64 {
            let now = start + Duration::from_millis(ms);
            while budget.try_spend(100, now) {
                sent += 100;
            }
        }
        // The burst plus a minute at the rate, within one datagram.
        let expected = RATE.burst + 60 * RATE.per_second;
        assert!(sent <= expected && sent + 100 >= expected, "{sent}");
    }
}
