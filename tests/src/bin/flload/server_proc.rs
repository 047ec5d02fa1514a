//! What flload reads about the server process from `/proc` (Linux): its
//! resident memory, its open file descriptors, and — when no pid is given —
//! which process listens on the port the nodes connect to.

use std::net::SocketAddr;

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
