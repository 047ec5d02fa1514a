//! What a process has cost so far, from `/proc` (Linux): user and system
//! CPU time and resident memory, for benchmarks that divide a process's
//! CPU or memory by the work it did (per relayed MiB, per datagram, per
//! peer).

/// Clock ticks per second of `/proc/PID/stat`'s times (`USER_HZ`, 100 on
/// every Linux architecture this runs on).
pub const TICKS_PER_SECOND: f64 = 100.0;

/// User and system CPU time of process `pid`, in seconds.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may hold spaces:
    // count the fields after its closing one. utime and stime are fields
    // 14 and 15, the 12th and 13th after it.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |index: usize| -> anyhow::Result<f64> {
        let value: u64 = fields
            .get(index)
            .ok_or_else(|| anyhow::anyhow!("short /proc/{pid}/stat"))?
            .parse()?;
        Ok(value as f64 / TICKS_PER_SECOND)
    };
    Ok((ticks(11)?, ticks(12)?))
}

/// User plus system CPU time of process `pid`, in seconds.
pub fn total_cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let (user, system) = cpu_seconds(pid)?;
    Ok(user + system)
}

/// Resident memory of process `pid` (VmRSS), in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .ok_or_else(|| anyhow::anyhow!("no VmRSS in /proc/{pid}/status"))?;
    let kib = line
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("empty VmRSS line"))?;
    Ok(kib.parse()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_spent_some_time() {
        let mut spin = 0u64;
        let started = std::time::Instant::now();
        while started.elapsed() < std::time::Duration::from_millis(50) {
            spin = spin.wrapping_add(1);
        }
        let (user, system) = cpu_seconds(std::process::id()).unwrap();
        assert!(user + system > 0.0 && spin > 0);
        assert!(rss_kib(std::process::id()).unwrap() > 0);
    }
}
