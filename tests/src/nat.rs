//! Two hosts, each behind its own NAT router, and a "public" network
//! between the routers where the servers live — all in network namespaces,
//! removed again when the topology is dropped (also when a test fails).
//!
//! ```text
//! host_a 192.168.10.2 ── 192.168.10.1 router_a 198.51.100.2 ─┐
//!                                                            public 198.51.100.1 / .5,
//!                                                            servers on 203.0.113.10
//! host_b 192.168.20.2 ── 192.168.20.1 router_b 198.51.100.6 ─┘
//! ```
//!
//! The routers masquerade (iptables MASQUERADE on their public side) and
//! drop unsolicited packets from outside, so the outside sees only
//! 198.51.100.2 and .6, and neither host can reach the other's private
//! address. `public` routes between the routers;
//! [`NatTopology::block_direct_udp`] makes it drop UDP between them, so
//! that only a relay on the public side can carry the traffic.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};

use crate::netns::{ip, run_in, unique_tag};
use crate::PATIENCE;

pub const HOST_A: &str = "192.168.10.2";
pub const HOST_B: &str = "192.168.20.2";
pub const ROUTER_A_PUBLIC: &str = "198.51.100.2";
pub const ROUTER_B_PUBLIC: &str = "198.51.100.6";
/// Where flsignal (with its STUN service) and coturn listen.
pub const SERVERS: &str = "203.0.113.10";

/// Whether iptables (and, if `turn`, coturn's turnserver) are installed;
/// under `CI=true` their absence is a failure (scripts/test.sh installs
/// them).
pub fn tools_available(test: &str, turn: bool) -> bool {
    let mut tools = vec!["iptables"];
    if turn {
        tools.push("turnserver");
    }
    let missing: Vec<&str> = tools
        .into_iter()
        .filter(|tool| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: needs {missing:?} (Debian packages iptables, coturn), and CI=true forbids skipping");
    }
    eprintln!("SKIPPED {test}: needs {missing:?} (Debian packages iptables, coturn)");
    false
}

/// The five namespaces and their links.
pub struct NatTopology {
    pub host_a: String,
    pub router_a: String,
    pub public: String,
    pub router_b: String,
    pub host_b: String,
    /// Unique per topology, for names outside the namespaces.
    pub tag: String,
}

impl NatTopology {
    pub fn new() -> anyhow::Result<NatTopology> {
        let tag = unique_tag("n");
        let topology = NatTopology {
            host_a: format!("nha{tag}"),
            router_a: format!("nra{tag}"),
            public: format!("npub{tag}"),
            router_b: format!("nrb{tag}"),
            host_b: format!("nhb{tag}"),
            tag,
        };
        // All namespaces exist before anything can fail, so Drop removes
        // whatever was made.
        for ns in topology.namespaces() {
            ip(&["netns", "add", ns])?;
        }
        topology.wire()?;
        Ok(topology)
    }

    fn namespaces(&self) -> [&String; 5] {
        [&self.host_a, &self.router_a, &self.public, &self.router_b, &self.host_b]
    }

    /// A veth pair from `(ns, address/prefix)` to `(ns, address/prefix)`.
    fn link(&self, name: &str, left: (&str, &str), right: (&str, &str)) -> anyhow::Result<()> {
        let (l, r) = (format!("{name}l{}", self.tag), format!("{name}r{}", self.tag));
        ip(&[
            "link", "add", &l, "netns", left.0, "type", "veth", "peer", "name", &r, "netns", right.0,
        ])?;
        for (ns, dev, addr) in [(left.0, &l, left.1), (right.0, &r, right.1)] {
            ip(&["-n", ns, "addr", "add", addr, "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        Ok(())
    }

    fn wire(&self) -> anyhow::Result<()> {
        for ns in self.namespaces() {
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        self.link(
            "a",
            (&self.host_a, "192.168.10.2/24"),
            (&self.router_a, "192.168.10.1/24"),
        )?;
        self.link(
            "ap",
            (&self.router_a, "198.51.100.2/30"),
            (&self.public, "198.51.100.1/30"),
        )?;
        self.link(
            "bp",
            (&self.router_b, "198.51.100.6/30"),
            (&self.public, "198.51.100.5/30"),
        )?;
        self.link(
            "b",
            (&self.host_b, "192.168.20.2/24"),
            (&self.router_b, "192.168.20.1/24"),
        )?;
        ip(&["-n", &self.public, "addr", "add", &format!("{SERVERS}/32"), "dev", "lo"])?;
        ip(&["-n", &self.host_a, "route", "add", "default", "via", "192.168.10.1"])?;
        ip(&["-n", &self.host_b, "route", "add", "default", "via", "192.168.20.1"])?;
        ip(&["-n", &self.router_a, "route", "add", "default", "via", "198.51.100.1"])?;
        ip(&["-n", &self.router_b, "route", "add", "default", "via", "198.51.100.5"])?;
        // The rest of the internet, where a packet for an address nobody
        // routes (a peer's private host address, say) is dropped somewhere
        // on the way. Without a default route, a send to such an address
        // fails at once (ENETUNREACH; a blackhole route gives EINVAL), and
        // coturn closes the allocation whose relay socket saw the error: a
        // TURN client's checks towards the peer's host candidate killed its
        // relay before a relayed pair could succeed. So: a default route
        // into a link that silently drops everything (a veth whose other
        // end is down, without ARP, so no neighbour error comes back).
        ip(&[
            "-n",
            &self.public,
            "link",
            "add",
            "up0",
            "type",
            "veth",
            "peer",
            "name",
            "up1",
        ])?;
        ip(&["-n", &self.public, "link", "set", "up0", "arp", "off"])?;
        ip(&["-n", &self.public, "link", "set", "up0", "up"])?;
        ip(&["-n", &self.public, "route", "add", "default", "dev", "up0"])?;
        for ns in [&self.router_a, &self.public, &self.router_b] {
            run_in(ns, &["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"])?;
        }
        for (ns, public_side) in [
            (&self.router_a, format!("apl{}", self.tag)),
            (&self.router_b, format!("bpl{}", self.tag)),
        ] {
            run_in(
                ns,
                &[
                    "iptables",
                    "-t",
                    "nat",
                    "-A",
                    "POSTROUTING",
                    "-o",
                    &public_side,
                    "-j",
                    "MASQUERADE",
                ],
            )?;
            // Like a home router, drop what nobody inside asked for. Besides
            // being realistic this matters: an accepted stray packet (the
            // peer's first check, arriving before our own went out) would
            // leave a conntrack entry that makes MASQUERADE pick another
            // port for our packets to the peer, and hole punching fail.
            for chain in ["INPUT", "FORWARD"] {
                run_in(
                    ns,
                    &[
                        "iptables",
                        "-A",
                        chain,
                        "-i",
                        &public_side,
                        "-m",
                        "conntrack",
                        "--ctstate",
                        "NEW,INVALID",
                        "-j",
                        "DROP",
                    ],
                )?;
            }
        }
        Ok(())
    }

    /// Makes the public network drop UDP between the two routers, both
    /// ways: no direct path, however the NATs map.
    pub fn block_direct_udp(&self) -> anyhow::Result<()> {
        for (from, to) in [(ROUTER_A_PUBLIC, ROUTER_B_PUBLIC), (ROUTER_B_PUBLIC, ROUTER_A_PUBLIC)] {
            run_in(
                &self.public,
                &[
                    "iptables", "-A", "FORWARD", "-p", "udp", "-s", from, "-d", to, "-j", "DROP",
                ],
            )?;
        }
        Ok(())
    }

    /// Makes both routers drop every UDP packet they would forward, and
    /// anything from their host that is not for the servers: only TCP to
    /// flsignal gets out, as on a network that lets web traffic through
    /// and nothing else. The hosts' own firewalls refuse UDP off the
    /// machine as well (loopback, where WireGuard meets flnode, stays
    /// open), so sends fail at once (EPERM) as they do under a local
    /// firewall, which is what made the WebRTC stack flood its log.
    pub fn block_udp(&self) -> anyhow::Result<()> {
        self.udp_rules("-I")
    }

    /// Undoes [`NatTopology::block_udp`].
    pub fn unblock_udp(&self) -> anyhow::Result<()> {
        self.udp_rules("-D")
    }

    fn udp_rules(&self, verb: &str) -> anyhow::Result<()> {
        for host in [&self.host_a, &self.host_b] {
            run_in(
                host,
                &["iptables", verb, "OUTPUT", "!", "-o", "lo", "-p", "udp", "-j", "DROP"],
            )?;
        }
        for (router, inside) in [
            (&self.router_a, format!("ar{}", self.tag)),
            (&self.router_b, format!("br{}", self.tag)),
        ] {
            run_in(router, &["iptables", verb, "FORWARD", "-p", "udp", "-j", "DROP"])?;
            run_in(
                router,
                &[
                    "iptables", verb, "FORWARD", "-i", &inside, "!", "-d", SERVERS, "-j", "DROP",
                ],
            )?;
        }
        Ok(())
    }

    /// The packet counters of every router's and the public network's
    /// firewall rules, for a failing test's message.
    pub fn firewall_counters(&self) -> String {
        let mut text = String::new();
        for ns in [&self.router_a, &self.public, &self.router_b] {
            for table in ["filter", "nat"] {
                let listing =
                    run_in(ns, &["iptables", "-t", table, "-L", "-v", "-n", "-x"]).unwrap_or_else(|e| e.to_string());
                text.push_str(&format!("--- {ns} {table}:\n{listing}"));
            }
        }
        text
    }

    /// The value of one series of flsignal's `/metrics` at `server` (in the
    /// public namespace), 0 if it is absent, and the whole text for a
    /// failure's message.
    pub fn server_metric(&self, server: SocketAddr, series: &str) -> (f64, String) {
        let metrics = crate::netns::Testbed::in_namespace(&self.public, move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(async move { crate::http_get(server, "/metrics").await.map_err(std::io::Error::other) })
        })
        .map(|(_, body)| body)
        .unwrap_or_else(|error| format!("no metrics: {error:#}"));
        let value = metrics
            .lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0.0);
        (value, metrics)
    }

    /// Whether one ping from `ns` to `address` is answered within a second.
    pub fn pings(ns: &str, address: &str) -> bool {
        run_in(ns, &["ping", "-c", "1", "-W", "1", address]).is_ok()
    }
}

impl Drop for NatTopology {
    fn drop(&mut self) {
        // Deleting a namespace deletes its veth ends (and their peers) and
        // its iptables rules. Processes in it were killed by their drops.
        for ns in self.namespaces() {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// coturn on the public network with one static long-term user; killed
/// when dropped.
pub struct Coturn {
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
    pub addr: SocketAddr,
}

pub const TURN_USER: &str = "flnode";
pub const TURN_PASSWORD: &str = "nat-test-secret";
/// Beside flsignal's STUN on 3478.
pub const TURN_PORT: u16 = 3479;

impl Coturn {
    pub async fn start(topology: &NatTopology) -> anyhow::Result<Coturn> {
        let dir = tempfile::tempdir()?;
        let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
        let user = format!("{TURN_USER}:{TURN_PASSWORD}");
        let port = TURN_PORT.to_string();
        let child = tokio::process::Command::new("ip")
            .args(["netns", "exec", &topology.public, "turnserver", "-n"])
            .args([
                "--listening-ip",
                SERVERS,
                "--relay-ip",
                SERVERS,
                "--listening-port",
                &port,
            ])
            .args(["--lt-cred-mech", "--user", &user, "--realm", "flnode.test"])
            .args(["--no-tls", "--no-dtls", "--no-cli", "--fingerprint", "--verbose"])
            .args(["--min-port", "49152", "--max-port", "65535"])
            .args(["--userdb", &path("turndb"), "--pidfile", &path("turnserver.pid")])
            .args(["--log-file", &path("turnserver.log"), "--simple-log"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start turnserver")?;
        let coturn = Coturn {
            _child: child,
            addr: format!("{SERVERS}:{TURN_PORT}").parse()?,
            _dir: dir,
        };
        // Ready when it answers a STUN Binding Request on its port.
        let socket = crate::netns::Testbed::udp_socket(&topology.public, "0.0.0.0:0".parse()?)?;
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let answered = crate::stun_client::mapped_address(&socket, coturn.addr, Duration::from_millis(200)).await;
            if matches!(answered, Ok(Some(_))) {
                return Ok(coturn);
            }
            if tokio::time::Instant::now() > deadline {
                bail!("turnserver did not answer on {}: {}", coturn.addr, coturn.log());
            }
            if answered.is_err() {
                // Refused (not listening yet): do not spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// The `--ice-server` URL for flnode.
    pub fn ice_server(&self) -> String {
        format!("turn:{TURN_USER}:{TURN_PASSWORD}@{}", self.addr)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("turnserver.log")).unwrap_or_default()
    }

    /// Its process ID (`ip netns exec` execs turnserver in its place).
    pub fn pid(&self) -> Option<u32> {
        self._child.id()
    }
}
