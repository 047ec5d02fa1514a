//! What the fuzz targets of this crate share: how long each runs under
//! `cargo test`, and the fixed keys and challenge their scripts refer to.
//!
//! Under `cargo test` a target replays its checked-in corpus
//! (`tests/__fuzz__/<target>/corpus`) and then tries random inputs until
//! [`CARGO_TEST_TIME`] is up (`BOLERO_RANDOM_TEST_TIME_MS` or
//! `BOLERO_RANDOM_ITERATIONS` override it). `scripts/fuzz.sh` runs the same
//! targets under a coverage-guided engine for as long as asked.

#![allow(dead_code)] // Each test binary uses its own part of this module.

use std::time::Duration;

use flproto::identity::NodeKey;
use flproto::ids::ChallengeNonce;

/// Random inputs per target and `cargo test` run: long enough to catch a
/// shallow regression, short enough that the whole fuzz set adds seconds,
/// not minutes, to CI.
pub const CARGO_TEST_TIME: Duration = Duration::from_secs(2);

/// The challenge of `shared/reference/fledger-v3-wire.md`; the reference
/// Announce there is signed for it.
pub const CHALLENGE: ChallengeNonce = ChallengeNonce([0xab; 32]);

/// The server authority bound announces of the corpus are signed for.
pub const SERVER: &str = "signal.example:8765";

/// A node key picked by one byte of fuzz input. Seed `[1; 32]` is the
/// reference key of the wire document.
pub fn key(seed: u8) -> NodeKey {
    NodeKey::from_seed([seed; 32])
}

/// Splits a script into its lines (events), dropping a trailing `\r`.
pub fn lines(script: &[u8]) -> impl Iterator<Item = &[u8]> {
    script
        .split(|&byte| byte == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
}
