//! Turning glibc's per-thread malloc cache off by re-executing once at start.
//!
//! After a join storm, the chunks each thread keeps cached for reuse
//! (glibc's tcache) pin a few megabytes of arena pages that `malloc_trim`
//! cannot give back (`heap.rs`; BENCHMARKS.md, "What the 5 MiB after a wave
//! are"). `GLIBC_TUNABLES=glibc.malloc.tcache_count=0` removes them, but
//! glibc reads its tunables before `main`, so a running process cannot set
//! it for itself: flsignal executes itself again, once, with the tunable
//! and [`REEXECUTED_VAR`] added to its environment. The new image is the
//! same process (same pid, same open file descriptors, same argv) and finds
//! the marker, so it does not execute again, whatever glibc made of the
//! tunable (glibc may rewrite or, for a setuid program, erase it). An
//! operator's own `tcache_count` is left alone; `--keep-malloc-tcache`
//! keeps glibc's default.

use std::ffi::{OsStr, OsString};

/// The tunable that turns the tcache off.
pub const TCACHE_OFF: &str = "glibc.malloc.tcache_count=0";

/// The environment variable glibc reads its tunables from.
pub const TUNABLES_VAR: &str = "GLIBC_TUNABLES";

/// Set in the environment of the re-executed image: it must not execute
/// again.
pub const REEXECUTED_VAR: &str = "FLSIGNAL_MALLOC_REEXECUTED";

/// The flag that keeps glibc's default cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct MallocConfig {
    /// Keep glibc's per-thread malloc cache. By default flsignal restarts
    /// itself once at start with `GLIBC_TUNABLES=glibc.malloc.tcache_count=0`
    /// added (unless the environment already sets `tcache_count`): memory
    /// goes back after a join storm at a few per cent more CPU per frame.
    #[arg(long, env = "FLSIGNAL_KEEP_MALLOC_TCACHE")]
    pub keep_malloc_tcache: bool,
}

/// `GLIBC_TUNABLES` with the tcache turned off, or `None` when it needs no
/// change: the operator (or an earlier start of this process) already chose
/// a `tcache_count`.
pub fn tunables_without_tcache(current: Option<&OsStr>) -> Option<OsString> {
    let Some(current) = current.filter(|value| !value.is_empty()) else {
        return Some(OsString::from(TCACHE_OFF));
    };
    let chosen = current
        .as_encoded_bytes()
        .split(|&byte| byte == b':')
        .any(|tunable| tunable.starts_with(b"glibc.malloc.tcache_count="));
    if chosen {
        return None;
    }
    let mut value = current.to_owned();
    value.push(":");
    value.push(TCACHE_OFF);
    Some(value)
}

/// Executes this program again with the tcache turned off, unless
/// `config` opts out or the environment already sets it. Returns only when
/// nothing was to be done (`Ok`) or the execution failed (`Err`; the server
/// then runs on with glibc's default).
pub fn reexec_without_tcache(config: MallocConfig) -> std::io::Result<()> {
    let done = std::env::var_os(REEXECUTED_VAR).is_some();
    if done || config.keep_malloc_tcache || !cfg!(all(target_os = "linux", target_env = "gnu")) {
        return Ok(());
    }
    let Some(tunables) = tunables_without_tcache(std::env::var_os(TUNABLES_VAR).as_deref()) else {
        return Ok(());
    };
    exec_self(&tunables)
}

#[cfg(unix)]
fn exec_self(tunables: &OsStr) -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| OsString::from("flsignal"));
    // /proc/self/exe is this very file, also if it was replaced on disk.
    let error = std::process::Command::new("/proc/self/exe")
        .arg0(arg0)
        .args(args)
        .env(TUNABLES_VAR, tunables)
        .env(REEXECUTED_VAR, "1")
        .exec();
    Err(error)
}

#[cfg(not(unix))]
fn exec_self(_tunables: &OsStr) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_environment_gets_the_tunable() {
        assert_eq!(tunables_without_tcache(None), Some(OsString::from(TCACHE_OFF)));
        assert_eq!(
            tunables_without_tcache(Some(OsStr::new(""))),
            Some(OsString::from(TCACHE_OFF))
        );
    }

    #[test]
    fn other_tunables_are_kept() {
        assert_eq!(
            tunables_without_tcache(Some(OsStr::new("glibc.malloc.arena_max=2"))),
            Some(OsString::from("glibc.malloc.arena_max=2:glibc.malloc.tcache_count=0"))
        );
    }

    #[test]
    fn a_chosen_tcache_count_is_left_alone_so_a_second_start_does_nothing() {
        for chosen in [
            TCACHE_OFF,
            "glibc.malloc.tcache_count=3",
            "glibc.malloc.arena_max=1:glibc.malloc.tcache_count=7",
        ] {
            assert_eq!(tunables_without_tcache(Some(OsStr::new(chosen))), None, "{chosen}");
        }
        let once = tunables_without_tcache(Some(OsStr::new("glibc.malloc.arena_max=2"))).unwrap();
        assert_eq!(tunables_without_tcache(Some(&once)), None);
    }

    #[test]
    fn a_similar_name_is_not_the_tcache_count() {
        assert_eq!(
            tunables_without_tcache(Some(OsStr::new("glibc.malloc.tcache_max=64"))),
            Some(OsString::from("glibc.malloc.tcache_max=64:glibc.malloc.tcache_count=0"))
        );
    }
}
