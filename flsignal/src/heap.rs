//! Giving freed heap memory back to the system after load.
//!
//! glibc's malloc returns memory to the kernel only from the top of each
//! arena. After thousands of nodes have left, what they used is free but
//! scattered between the few allocations that live on (presence entries of
//! nodes still there, buffers of the runtime), so the server's resident
//! memory stays near its peak until a later load happens to reuse it.
//! `malloc_trim(0)` hands every free page of every arena back. It walks the
//! whole heap, taking each arena's lock in turn, so it runs only when many
//! nodes have left ([`TrimPolicy`]): at most once per `--trim-interval`
//! while they keep leaving, at once when they stop; on a blocking thread.
//!
//! What a trim cannot give back are pages that hold a chunk still in use,
//! and the chunks each thread keeps cached for reuse (glibc's tcache, up to
//! seven per size class and thread) are in use as far as a trim is
//! concerned. After a storm those few cached chunks are spread over
//! megabytes of pages; turning that cache off trades some CPU for them,
//! which flsignal does by default (`malloc_tunable.rs`, BENCHMARKS.md).

use crate::error::{check, InvalidSetting};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::Shared;

/// Shortest time between two trims: a trim costs a walk of the heap, and
/// nodes leaving one after another should not each pay for one.
pub const DEFAULT_TRIM_INTERVAL: Duration = Duration::from_secs(2);

/// Nodes that must have left (below the highest count since the last trim)
/// before a trim is worth its walk of the heap: a few leaves free too
/// little to notice.
pub const DEFAULT_TRIM_AFTER_LEAVES: usize = 500;

/// How often the node count is looked at. Short, so that a crowd that
/// joins and leaves between two looks is still seen at its peak most of
/// the time; a look is one lock of the hub.
const SAMPLE_PERIOD: Duration = Duration::from_millis(250);

/// The flags of heap trimming.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct TrimConfig {
    /// Shortest time between two heap trims while nodes keep leaving (give
    /// freed memory back to the system after many nodes left; once they
    /// stop leaving the trim comes at once, and one more follows an interval
    /// later); `0s` turns trimming off.
    #[arg(long, env = "FLSIGNAL_TRIM_INTERVAL", value_parser = humantime::parse_duration, default_value = "2s")]
    pub trim_interval: Duration,

    /// Nodes that must have left since the last heap trim before the next.
    #[arg(long, env = "FLSIGNAL_TRIM_AFTER_LEAVES", default_value_t = DEFAULT_TRIM_AFTER_LEAVES)]
    pub trim_after_leaves: usize,
}

impl TrimConfig {
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        check(self.trim_after_leaves >= 1, "--trim-after-leaves must be at least 1")?;
        Ok(())
    }
}

/// When to trim: the node count fell by `after_leaves` from its highest
/// since the last trim, and either the last trim is `interval` ago or the
/// leaving has stopped (the count did not change since the sample
/// before). Waiting out the interval spares a long exodus a trim per
/// sample; once nobody leaves any more, waiting frees nothing more and
/// only keeps the memory out longer. One more trim follows `interval` after
/// a trim caused by leaves: what the leavers' tasks and sockets free after
/// the count fell (their buffers, queued frames) comes after the first.
#[derive(Debug)]
pub struct TrimPolicy {
    interval: Duration,
    after_leaves: usize,
    highest: usize,
    previous: Option<usize>,
    last_trim: Option<Instant>,
    follow_up_at: Option<Instant>,
}

impl TrimPolicy {
    pub fn new(config: TrimConfig) -> Self {
        Self {
            interval: config.trim_interval,
            after_leaves: config.trim_after_leaves,
            highest: 0,
            previous: None,
            last_trim: None,
            follow_up_at: None,
        }
    }

    /// Takes the node count at `now`; true if the heap should be trimmed.
    pub fn on_sample(&mut self, online: usize, now: Instant) -> bool {
        self.highest = self.highest.max(online);
        let left_enough = self.highest - online >= self.after_leaves;
        let rested = self.last_trim.is_none_or(|at| now.duration_since(at) >= self.interval);
        let settled = self.previous.replace(online) == Some(online);
        if left_enough && (rested || settled) {
            self.highest = online;
            self.last_trim = Some(now);
            self.follow_up_at = Some(now + self.interval);
            return true;
        }
        if self.follow_up_at.is_some_and(|at| now >= at) {
            self.follow_up_at = None;
            self.last_trim = Some(now);
            return true;
        }
        false
    }
}

/// Watches the node count and trims the heap when [`TrimPolicy`] says so,
/// until shutdown. Does nothing if trimming is off.
pub async fn trim_after_leaves(shared: Arc<Shared>) {
    let config = shared.config.trim;
    if config.trim_interval.is_zero() {
        return;
    }
    let mut policy = TrimPolicy::new(config);
    let mut tick = tokio::time::interval(SAMPLE_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shared.shutdown.cancelled() => return,
        }
        if policy.on_sample(shared.hub.online(), Instant::now()) {
            let _ = tokio::task::spawn_blocking(release_free_memory).await;
        }
    }
}

/// Returns free heap pages to the kernel (glibc); elsewhere, nothing to do.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks malloc's own arenas, under their locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(interval_s: u64, after_leaves: usize) -> TrimPolicy {
        TrimPolicy::new(TrimConfig {
            trim_interval: Duration::from_secs(interval_s),
            trim_after_leaves: after_leaves,
        })
    }

    #[test]
    fn a_trim_follows_enough_leaves_below_the_peak() {
        let (mut policy, start) = (policy(2, 100), Instant::now());
        assert!(!policy.on_sample(0, start));
        assert!(!policy.on_sample(1000, start), "joins are no reason");
        assert!(!policy.on_sample(950, start), "50 leaves are too few");
        assert!(policy.on_sample(900, start));
    }

    #[test]
    fn trims_are_at_least_an_interval_apart_and_the_peak_restarts_after_one() {
        let (mut policy, start) = (policy(2, 100), Instant::now());
        policy.on_sample(1000, start);
        assert!(policy.on_sample(0, start));
        policy.on_sample(500, start);
        assert!(!policy.on_sample(0, start + Duration::from_secs(1)), "too soon");
        assert!(
            policy.on_sample(0, start + Duration::from_secs(2)),
            "the leaves are remembered"
        );
        assert!(
            policy.on_sample(0, start + Duration::from_secs(4)),
            "the follow-up, an interval after the last trim"
        );
        assert!(
            !policy.on_sample(0, start + Duration::from_secs(10)),
            "nobody left since the last trim"
        );
    }

    #[test]
    fn one_follow_up_trim_comes_an_interval_after_a_storm_left() {
        let (mut policy, start) = (policy(2, 100), Instant::now());
        policy.on_sample(8000, start);
        assert!(policy.on_sample(0, start));
        let at = |ms| start + Duration::from_millis(ms);
        assert!(!policy.on_sample(0, at(1750)), "not before the interval");
        assert!(policy.on_sample(0, at(2000)), "the follow-up");
        for ms in (2250..20_000).step_by(250) {
            assert!(!policy.on_sample(0, at(ms)), "only one follow-up ({ms} ms)");
        }
    }

    #[test]
    fn once_the_leaving_stops_the_trim_does_not_wait_for_the_interval() {
        let (mut policy, start) = (policy(2, 100), Instant::now());
        policy.on_sample(1000, start);
        assert!(policy.on_sample(800, start), "the first trim");
        let soon = start + Duration::from_millis(250);
        assert!(!policy.on_sample(300, soon), "still leaving, too soon");
        assert!(
            policy.on_sample(300, soon + Duration::from_millis(250)),
            "nobody left since the sample before: trim now"
        );
        assert!(
            !policy.on_sample(300, soon + Duration::from_millis(500)),
            "nobody left since that trim, and its follow-up is not due"
        );
    }

    #[test]
    fn leaves_below_the_threshold_never_trim() {
        let (mut policy, start) = (policy(0, 100), Instant::now());
        for second in 0..100 {
            let online = if second % 2 == 0 { 1000 } else { 901 };
            assert!(!policy.on_sample(online, start + Duration::from_secs(second)));
        }
    }

    #[test]
    fn the_flags_default_to_the_constants() {
        let config = crate::Config::default().trim;
        assert_eq!(config.trim_interval, DEFAULT_TRIM_INTERVAL);
        assert_eq!(config.trim_after_leaves, DEFAULT_TRIM_AFTER_LEAVES);
        let off = <crate::Config as clap::Parser>::parse_from(["flsignal", "--trim-interval", "0s"]);
        assert!(off.trim.trim_interval.is_zero());
    }

    #[test]
    fn no_leaves_threshold_is_refused() {
        let config = TrimConfig {
            trim_interval: DEFAULT_TRIM_INTERVAL,
            trim_after_leaves: 0,
        };
        assert!(config.validate().is_err());
    }
}
