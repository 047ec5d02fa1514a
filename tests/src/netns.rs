//! Test hosts in network namespaces: two namespaces joined by a veth pair,
//! removed again when the testbed is dropped — also when the test fails.
//!
//! WebRTC does not gather loopback candidates, so node-to-node tests need
//! real interfaces; these are the test's own, inside its own namespaces.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{bail, Context};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Whether tests that need root and namespaces can run here. On a
/// developer's machine without root they skip with a message; under
/// `CI=true` they must run, so a missing capability is a failure.
pub fn namespaces_available(test: &str) -> bool {
    let root = unsafe { libc::geteuid() } == 0;
    let ip = Command::new("ip").arg("-V").output().is_ok_and(|o| o.status.success());
    if root && ip {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: needs root and iproute2 (`ip`), and CI=true forbids skipping");
    }
    eprintln!("SKIPPED {test}: needs root and iproute2 for network namespaces");
    false
}

/// Two hosts, `a` (10.201.0.1) and `b` (10.201.0.2), on one link.
pub struct Testbed {
    pub a: String,
    pub b: String,
    /// Unique per testbed, for names that are not namespaced (such as
    /// wireguard-go's control sockets in /var/run/wireguard).
    pub tag: String,
}

pub const ADDR_A: &str = "10.201.0.1";
pub const ADDR_B: &str = "10.201.0.2";
/// The hosts' addresses on the second link ([`Testbed::add_second_link`]).
pub const ADDR2_A: &str = "10.202.0.1";
pub const ADDR2_B: &str = "10.202.0.2";

/// Runs `ip` with `args`; a failure is an error with its stderr.
/// A name part no other testbed of any test process uses: the process ID
/// and a counter, joined by `kind`.
pub fn unique_tag(kind: &str) -> String {
    format!(
        "{}{kind}{}",
        std::process::id() % 100_000,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs `args` inside namespace `ns`; a failure is an error with stderr.
pub fn run_in(ns: &str, args: &[&str]) -> anyhow::Result<String> {
    run_in_with_input(ns, args, None)
}

/// [`run_in`], with `input` written to the command's stdin.
pub fn run_in_with_input(ns: &str, args: &[&str], input: Option<&str>) -> anyhow::Result<String> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {args:?} in {ns}"))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        use std::io::Write;
        stdin.write_all(text.as_bytes())?;
    }
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!(
            "{} (in {ns}): {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

pub fn ip(args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("ip").args(args).output().context("cannot run ip")?;
    if !output.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

impl Testbed {
    pub fn new() -> anyhow::Result<Testbed> {
        let tag = unique_tag("x");
        let testbed = Testbed {
            a: format!("fla{tag}"),
            b: format!("flb{tag}"),
            tag: tag.clone(),
        };
        // Created before anything can fail, so Drop cleans up whatever exists.
        ip(&["netns", "add", &testbed.a])?;
        ip(&["netns", "add", &testbed.b])?;
        let (veth_a, veth_b) = (format!("va{tag}"), format!("vb{tag}"));
        ip(&[
            "link", "add", &veth_a, "netns", &testbed.a, "type", "veth", "peer", "name", &veth_b, "netns", &testbed.b,
        ])?;
        for (ns, dev, addr) in [(&testbed.a, &veth_a, ADDR_A), (&testbed.b, &veth_b, ADDR_B)] {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(testbed)
    }

    /// A second link between the hosts, a2 (10.202.0.1) — b2 (10.202.0.2),
    /// so that a node has another path when one dies. Interface names are
    /// returned as (a's, b's) for the first link by [`Testbed::link`].
    pub fn add_second_link(&self) -> anyhow::Result<()> {
        let (dev_a, dev_b) = self.link(2);
        ip(&[
            "link", "add", &dev_a, "netns", &self.a, "type", "veth", "peer", "name", &dev_b, "netns", &self.b,
        ])?;
        for (ns, dev, addr) in [(&self.a, &dev_a, ADDR2_A), (&self.b, &dev_b, ADDR2_B)] {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        Ok(())
    }

    /// The interface names of link 1 or 2, on a and on b.
    pub fn link(&self, number: u8) -> (String, String) {
        match number {
            1 => (format!("va{}", self.tag), format!("vb{}", self.tag)),
            _ => (format!("va{number}x{}", self.tag), format!("vb{number}x{}", self.tag)),
        }
    }

    /// Drops every UDP datagram on link `number`, both ways, leaving TCP
    /// (the signalling connection) alone: the data path on that link dies
    /// without any address event, as when a router upstream fails.
    pub fn block_udp_on_link(&self, number: u8) -> anyhow::Result<()> {
        let (dev_a, dev_b) = self.link(number);
        for (ns, dev) in [(&self.a, &dev_a), (&self.b, &dev_b)] {
            for [chain, direction] in [["INPUT", "-i"], ["OUTPUT", "-o"]] {
                run_in(
                    ns,
                    &["iptables", "-I", chain, direction, dev, "-p", "udp", "-j", "DROP"],
                )?;
            }
        }
        Ok(())
    }

    /// Lets UDP through on link `number` again ([`Testbed::block_udp_on_link`]
    /// undone): the path comes back.
    pub fn unblock_udp_on_link(&self, number: u8) -> anyhow::Result<()> {
        let (dev_a, dev_b) = self.link(number);
        for (ns, dev) in [(&self.a, &dev_a), (&self.b, &dev_b)] {
            for [chain, direction] in [["INPUT", "-i"], ["OUTPUT", "-o"]] {
                run_in(
                    ns,
                    &["iptables", "-D", chain, direction, dev, "-p", "udp", "-j", "DROP"],
                )?;
            }
        }
        Ok(())
    }

    /// Moves host b to `new_addr` on the same link, as a laptop that
    /// changes network: the new address appears, then the old one goes
    /// (with `promote_secondaries`, so that removing the old primary
    /// address does not take the new one with it).
    pub fn readdress_b(&self, new_addr: &str) -> anyhow::Result<()> {
        let dev = self.link(1).1;
        for conf in ["all", dev.as_str()] {
            run_in(
                &self.b,
                &["sysctl", "-qw", &format!("net.ipv4.conf.{conf}.promote_secondaries=1")],
            )?;
        }
        ip(&["-n", &self.b, "addr", "add", &format!("{new_addr}/24"), "dev", &dev])?;
        ip(&["-n", &self.b, "addr", "del", &format!("{ADDR_B}/24"), "dev", &dev])
    }

    /// A command that runs `program` inside namespace `ns`.
    pub fn command(ns: &str, program: &std::path::Path) -> tokio::process::Command {
        let mut command = tokio::process::Command::new("ip");
        command.args(["netns", "exec", ns]).arg(program).kill_on_drop(true);
        command
    }

    /// Runs `make` on a thread that has entered namespace `ns`, so the
    /// sockets it makes live there (a socket stays in the namespace it was
    /// made in, whichever thread uses it later).
    pub fn in_namespace<T: Send + 'static>(
        ns: &str,
        make: impl FnOnce() -> std::io::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let ns_path = format!("/var/run/netns/{ns}");
        std::thread::spawn(move || -> anyhow::Result<T> {
            let file = std::fs::File::open(&ns_path).with_context(|| format!("cannot open {ns_path}"))?;
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                bail!("setns {ns_path}: {}", std::io::Error::last_os_error());
            }
            Ok(make()?)
        })
        .join()
        .map_err(|_| anyhow::anyhow!("namespace thread panicked"))?
    }

    /// A UDP socket bound to `addr` inside namespace `ns`.
    pub fn udp_socket(ns: &str, addr: SocketAddr) -> anyhow::Result<tokio::net::UdpSocket> {
        let socket = Self::in_namespace(ns, move || {
            let socket = std::net::UdpSocket::bind(addr)?;
            socket.set_nonblocking(true)?;
            Ok(socket)
        })?;
        Ok(tokio::net::UdpSocket::from_std(socket)?)
    }

    /// A non-blocking TCP listener bound to `addr` inside namespace `ns`,
    /// ready for any runtime's `TcpListener::from_std`.
    pub fn tcp_listener(ns: &str, addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
        Self::in_namespace(ns, move || {
            let listener = std::net::TcpListener::bind(addr)?;
            listener.set_nonblocking(true)?;
            Ok(listener)
        })
    }

    /// A TCP connection to `addr` made from inside namespace `ns`.
    pub fn tcp_connect(ns: &str, addr: SocketAddr) -> anyhow::Result<tokio::net::TcpStream> {
        let stream = Self::in_namespace(ns, move || {
            let stream = std::net::TcpStream::connect(addr)?;
            stream.set_nonblocking(true)?;
            Ok(stream)
        })?;
        Ok(tokio::net::TcpStream::from_std(stream)?)
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth pair, and with it
        // the other end. Processes started in it were killed by their drop.
        let _ = ip(&["netns", "del", &self.a]);
        let _ = ip(&["netns", "del", &self.b]);
    }
}
