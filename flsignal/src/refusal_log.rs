//! What this instance refused from the cluster: counted by reason in
//! `/metrics`, and logged as a warning at most once per interval with the
//! number of refusals since, so a flood of forged messages cannot flood the
//! log too.

use std::fmt::Display;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::metrics::{Metrics, Reason};

/// Shortest time between two warnings about refused cluster messages.
pub const WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// Refusals since the last warning.
#[derive(Debug, Default)]
struct Quiet {
    last_warning: Option<Instant>,
    suppressed: u64,
}

pub struct RefusalLog {
    counter: Family<Reason, Counter>,
    quiet: Mutex<Quiet>,
}

impl RefusalLog {
    pub fn new(counter: Family<Reason, Counter>) -> Self {
        Self {
            counter,
            quiet: Mutex::new(Quiet::default()),
        }
    }

    /// Counts a refusal and warns unless a warning went out within the
    /// interval. `from` names the instance or subject it came from.
    pub fn refuse(&self, reason: &'static str, from: &dyn Display, detail: &dyn Display) {
        Metrics::count(&self.counter, reason);
        let suppressed = {
            let mut quiet = self.quiet.lock();
            let now = Instant::now();
            if quiet
                .last_warning
                .is_some_and(|last| now.saturating_duration_since(last) < WARNING_INTERVAL)
            {
                quiet.suppressed += 1;
                return;
            }
            quiet.last_warning = Some(now);
            std::mem::take(&mut quiet.suppressed)
        };
        tracing::warn!(
            reason,
            %from,
            %detail,
            refused_since_last_warning = suppressed,
            "refused a message from the cluster (counted in flsignal_cluster_refused_total)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_is_counted_though_few_are_logged() {
        let counter = Family::<Reason, Counter>::default();
        let log = RefusalLog::new(counter.clone());
        for _ in 0..1000 {
            log.refuse("future_at", &"instance", &"detail");
        }
        assert_eq!(counter.get_or_create(&Reason { reason: "future_at" }).get(), 1000);
        assert_eq!(log.quiet.lock().suppressed, 999);
    }
}
