//! Settings of datagrams sent in halves (`flproto::halves`): how many
//! halves a node holds for their partners, and for how long. A node that
//! holds none (`--held-halves 0`) does not ask its peers for halves, so
//! they send it whole datagrams, split by SCTP as before.

use std::time::Duration;

use anyhow::bail;
use flproto::halves::{ReassemblyLimits, DEFAULT_MAX_AGE, DEFAULT_MAX_HELD};

/// Most halves a node may be told to hold per peer (each at most
/// `flproto::halves::MAX_HALF_BYTES`).
pub const MAX_HELD_HALVES: usize = 4096;
/// Shortest and longest wait for a partner that may be set: below 10 ms
/// a half would be given up while its partner is still on the way; above
/// 10 s WireGuard has long since sent the data again.
pub const HELD_HALF_AGE_RANGE: std::ops::RangeInclusive<Duration> = Duration::from_millis(10)..=Duration::from_secs(10);

#[derive(Debug, Default, clap::Args)]
pub struct HalvesArgs {
    /// Halves of large WireGuard datagrams held per peer while they wait
    /// for their partner; 0: ask peers for whole datagrams instead
    /// [default: 64]
    #[arg(long, env = "FLNODE_HELD_HALVES")]
    pub held_halves: Option<usize>,
    /// How long a half waits for its partner [default: 500ms]
    #[arg(long, env = "FLNODE_HELD_HALF_MAX_AGE", value_parser = humantime::parse_duration)]
    pub held_half_max_age: Option<Duration>,
}

/// How datagrams in halves are handled; `None`: this node joins none.
pub fn limits(held: Option<usize>, max_age: Option<Duration>) -> anyhow::Result<Option<ReassemblyLimits>> {
    let max_held = held.unwrap_or(DEFAULT_MAX_HELD);
    if max_held > MAX_HELD_HALVES {
        bail!("--held-halves {max_held}: at most {MAX_HELD_HALVES}");
    }
    let max_age = max_age.unwrap_or(DEFAULT_MAX_AGE);
    if !HELD_HALF_AGE_RANGE.contains(&max_age) {
        bail!(
            "--held-half-max-age {max_age:?}: expected {:?} to {:?}",
            HELD_HALF_AGE_RANGE.start(),
            HELD_HALF_AGE_RANGE.end()
        );
    }
    Ok((max_held > 0).then_some(ReassemblyLimits { max_held, max_age }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_are_joined_by_default_and_zero_turns_them_off() {
        assert_eq!(limits(None, None).unwrap(), Some(ReassemblyLimits::default()));
        assert_eq!(limits(Some(0), None).unwrap(), None);
        let set = limits(Some(8), Some(Duration::from_millis(50))).unwrap().unwrap();
        assert_eq!((set.max_held, set.max_age), (8, Duration::from_millis(50)));
    }

    #[test]
    fn limits_out_of_range_are_refused_with_the_flag_named() {
        let error = limits(Some(MAX_HELD_HALVES + 1), None).unwrap_err().to_string();
        assert!(error.contains("--held-halves"), "{error}");
        for age in [Duration::from_millis(9), Duration::from_secs(11)] {
            let error = limits(None, Some(age)).unwrap_err().to_string();
            assert!(error.contains("--held-half-max-age"), "{error}");
        }
    }
}
