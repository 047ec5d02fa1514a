//! What flload reads about the server process from `/proc` (Linux): its
//! resident memory, its open file descriptors, the CPU time it used, and —
//! when no pid is given — which process listens on the port the nodes
//! connect to.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;

/// Resident memory of a process, from `/proc/PID/status`.
pub fn resident_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .context("no VmRSS")?;
    Ok(line.split_whitespace().nth(1).context("no value")?.parse()?)
}

/// Open file descriptors of a process.
pub fn open_fds(pid: u32) -> anyhow::Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

/// CPU time a process has used so far, its finished threads included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuTime {
    /// In user space (`utime`).
    pub user: Duration,
    /// In the kernel on its behalf (`stime`): system calls, and on
    /// loopback the receiving side's TCP work too.
    pub system: Duration,
}

impl CpuTime {
    pub fn total(&self) -> Duration {
        self.user + self.system
    }
}

/// `utime` and `stime` of `/proc/PID/stat`.
pub fn cpu_time(pid: u32) -> anyhow::Result<CpuTime> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    cpu_time_of_stat(&stat, clock_ticks_per_second())
}

/// `utime` and `stime` (fields 14 and 15) of a `/proc/PID/stat` line. The
/// command name (field 2) is in parentheses and may hold spaces, so fields
/// are counted after its closing parenthesis.
fn cpu_time_of_stat(stat: &str, ticks_per_second: u64) -> anyhow::Result<CpuTime> {
    let (_, after_name) = stat.rsplit_once(')').context("no command name")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // After the name: state is field 3, so field N is at index N - 3.
    let time = |field: usize| -> anyhow::Result<Duration> {
        let ticks: u64 = fields.get(field - 3).context("short stat line")?.parse()?;
        Ok(Duration::from_secs_f64(ticks as f64 / ticks_per_second as f64))
    };
    Ok(CpuTime {
        user: time(14)?,
        system: time(15)?,
    })
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    match unsafe { libc::sysconf(libc::_SC_CLK_TCK) } {
        ticks if ticks > 0 => ticks as u64,
        _ => 100,
    }
}

/// The server's CPU time from one moment on.
pub struct CpuMeter {
    pid: u32,
    start: CpuTime,
}

impl CpuMeter {
    /// Starts counting for `pid`; `None` without a readable process.
    pub fn start(pid: Option<u32>) -> Option<CpuMeter> {
        let pid = pid?;
        match cpu_time(pid) {
            Ok(start) => Some(CpuMeter { pid, start }),
            Err(error) => {
                eprintln!("server CPU not measured: {error:#}");
                None
            }
        }
    }

    /// CPU time used since the start.
    pub fn used(&self) -> Option<CpuTime> {
        cpu_time(self.pid).ok().map(|now| CpuTime {
            user: now.user.saturating_sub(self.start.user),
            system: now.system.saturating_sub(self.start.system),
        })
    }
}

/// `server_cpu_ms=… server_cpu_us_per_UNIT=… server_user_us_per_UNIT=…
/// server_system_us_per_UNIT=…` for a result line, and a line for people.
pub fn cpu_fields(used: CpuTime, count: usize, unit: &str) -> (String, String) {
    let per = |time: Duration| time.as_secs_f64() * 1e6 / count.max(1) as f64;
    let fields = format!(
        " server_cpu_ms={:.1} server_cpu_us_per_{unit}={:.3} server_user_us_per_{unit}={:.3} server_system_us_per_{unit}={:.3}",
        used.total().as_secs_f64() * 1e3,
        per(used.total()),
        per(used.user),
        per(used.system)
    );
    let human = format!(
        "server CPU {:.1} ms: {:.2} µs per {unit} ({:.2} user, {:.2} system)",
        used.total().as_secs_f64() * 1e3,
        per(used.total()),
        per(used.user),
        per(used.system)
    );
    (fields, human)
}

/// The server's pid: `given`, or the process listening on `server`'s
/// port; `None` (said on stderr) if neither is known.
pub fn server_pid(given: Option<u32>, server: SocketAddr) -> Option<u32> {
    if given.is_some() {
        return given;
    }
    match listener_pid(server) {
        Ok(pid) => Some(pid),
        Err(error) => {
            eprintln!("server not found, its usage is not measured: {error:#}");
            None
        }
    }
}

/// The process with a listening TCP socket on `server`'s port: its socket's
/// inode from `/proc/net/tcp{,6}`, then the process holding that inode.
pub fn listener_pid(server: SocketAddr) -> anyhow::Result<u32> {
    let port = format!("{:04X}", server.port());
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address is ADDR:PORT in hex; state 0A is LISTEN.
            let listens_on_port =
                fields.get(1).is_some_and(|local| local.ends_with(&format!(":{port}"))) && fields.get(3) == Some(&"0A");
            if let (true, Some(inode)) = (listens_on_port, fields.get(9)) {
                inodes.push(format!("socket:[{inode}]"));
            }
        }
    }
    anyhow::ensure!(!inodes.is_empty(), "nothing listens on port {}", server.port());
    for process in std::fs::read_dir("/proc")?.flatten() {
        let Ok(pid) = process.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(process.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(link) = std::fs::read_link(fd.path()) {
                if inodes.iter().any(|inode| link.as_os_str() == inode.as_str()) {
                    return Ok(pid);
                }
            }
        }
    }
    anyhow::bail!("no visible process holds the listener on port {}", server.port())
}

/// RSS and fds of the server, `None` where they cannot be read.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub rss_kib: Option<u64>,
    pub fds: Option<usize>,
}

impl Usage {
    pub fn of(pid: Option<u32>) -> Usage {
        Usage {
            rss_kib: pid.and_then(|pid| resident_kib(pid).ok()),
            fds: pid.and_then(|pid| open_fds(pid).ok()),
        }
    }

    /// `server RSS 12345 KiB, 12 fds` for people.
    pub fn human(&self) -> String {
        let rss = self.rss_kib.map_or("?".to_owned(), |kib| kib.to_string());
        let fds = self.fds.map_or("?".to_owned(), |fds| fds.to_string());
        format!("server RSS {rss} KiB, {fds} fds")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_adds_utime_and_stime_after_a_name_with_spaces() {
        let stat = "4242 (fl signal) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 70 0 0 20 0 3 0 100 1000 200";
        let time = cpu_time_of_stat(stat, 100).unwrap();
        assert_eq!(time.user, Duration::from_millis(2500));
        assert_eq!(time.system, Duration::from_millis(700));
        assert_eq!(time.total(), Duration::from_millis(3200));
        assert!(cpu_time_of_stat("4242 (x) S 1", 100).is_err());
    }

    #[test]
    fn this_process_has_used_some_cpu_and_a_meter_counts_from_its_start() {
        let me = std::process::id();
        let meter = CpuMeter::start(Some(me)).expect("own stat");
        // Spin until a clock tick is charged; the bound is only "at all".
        let spin = std::time::Instant::now();
        while meter.used().expect("own stat").total().is_zero() {
            assert!(
                spin.elapsed() < Duration::from_secs(30),
                "no CPU time charged while spinning"
            );
        }
    }
}
