//! A real WireGuard overlay (wireguard-go, wg, iperf3 from Debian) across a
//! [`Testbed`] (or any two namespaces): host a is 10.77.0.1, host b
//! 10.77.0.2; each WireGuard's peer endpoint is the local flnode's port for
//! the other host.

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};

use crate::netns::{run_in_with_input as run, Testbed};

pub const OVERLAY_A: &str = "10.77.0.1";
pub const OVERLAY_B: &str = "10.77.0.2";

/// Whether wireguard-go, wg, ping and iperf3 are installed; under `CI=true`
/// their absence is a failure (scripts/test.sh installs them).
pub fn tools_available(test: &str) -> bool {
    let present = ["wireguard-go", "wg", "iperf3", "ping"].iter().all(|tool| {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if present {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: needs wireguard-go, wireguard-tools, iperf3 and ping, and CI=true forbids skipping");
    }
    eprintln!("SKIPPED {test}: needs wireguard-go, wireguard-tools, iperf3 and ping");
    false
}

/// Two wireguard-go interfaces, killed with the overlay.
pub struct Overlay {
    a: String,
    b: String,
    /// Interface names: unique, as wireguard-go's control sockets live in
    /// one directory for all namespaces.
    interfaces: [String; 2],
    _daemons: Vec<tokio::process::Child>,
    _keys: tempfile::TempDir,
}

impl Overlay {
    /// `wireguard` is WireGuard's listen address on each host (what flnode
    /// sends to), `flnode_port` flnode's local port for the other host.
    pub async fn new(testbed: &Testbed, wireguard: &str, flnode_port: &str) -> anyhow::Result<Overlay> {
        Self::between([&testbed.a, &testbed.b], &testbed.tag, wireguard, flnode_port).await
    }

    /// The same between any two namespaces `[a, b]`; `tag` makes the
    /// interface names unique.
    pub async fn between(
        namespaces: [&str; 2],
        tag: &str,
        wireguard: &str,
        flnode_port: &str,
    ) -> anyhow::Result<Overlay> {
        let [a, b] = namespaces.map(str::to_owned);
        let keys = tempfile::tempdir()?;
        let listen_port = wireguard.rsplit(':').next().context("no port")?;
        let mut daemons = Vec::new();
        let mut public = Vec::new();
        let interfaces = [format!("wg{tag}a"), format!("wg{tag}b")];
        for (ns, host, interface) in [(&a, "a", &interfaces[0]), (&b, "b", &interfaces[1])] {
            let daemon = tokio::process::Command::new("ip")
                .args(["netns", "exec", ns, "wireguard-go", "-f", interface])
                // Without it wireguard-go waits instead of starting when the
                // kernel has WireGuard; the tests want the userspace one.
                .env("WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD", "1")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()?;
            daemons.push(daemon);
            let private = run(ns, &["wg", "genkey"], None)?;
            let path = keys.path().join(host);
            std::fs::write(&path, private.trim())?;
            public.push(run(ns, &["wg", "pubkey"], Some(&private))?.trim().to_owned());
        }
        for (ns, interface) in [(&a, &interfaces[0]), (&b, &interfaces[1])] {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while run(ns, &["ip", "link", "show", interface], None).is_err() {
                if tokio::time::Instant::now() > deadline {
                    bail!("wireguard-go did not create {interface} in {ns}");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let hosts = [
            (&a, "a", &interfaces[0], OVERLAY_A, &public[1], OVERLAY_B),
            (&b, "b", &interfaces[1], OVERLAY_B, &public[0], OVERLAY_A),
        ];
        // Both hosts listen and know each other before either sends: a peer
        // with keepalive sends its first handshake at once, and one that is
        // not answered is retried only after WireGuard's 5 s REKEY_TIMEOUT.
        for (ns, host, interface, address, peer_key, peer_address) in &hosts {
            let key_path = keys.path().join(host);
            let key_path = key_path.to_str().context("key path")?;
            run(
                ns,
                &[
                    "wg",
                    "set",
                    interface,
                    "private-key",
                    key_path,
                    "listen-port",
                    listen_port,
                ],
                None,
            )?;
            let allowed = format!("{peer_address}/32");
            run(
                ns,
                &[
                    "wg",
                    "set",
                    interface,
                    "peer",
                    peer_key,
                    "endpoint",
                    flnode_port,
                    "allowed-ips",
                    &allowed,
                ],
                None,
            )?;
            run(
                ns,
                &["ip", "addr", "add", &format!("{address}/24"), "dev", interface],
                None,
            )?;
            run(ns, &["ip", "link", "set", interface, "up"], None)?;
        }
        // Keepalive on host a only: when both initiate at the same moment the
        // crossing handshakes go unused until WireGuard's 5 s retry.
        let (ns, _, interface, _, peer_key, _) = &hosts[0];
        run(
            ns,
            &["wg", "set", interface, "peer", peer_key, "persistent-keepalive", "1"],
            None,
        )?;
        Ok(Overlay {
            a: a.clone(),
            b: b.clone(),
            interfaces,
            _daemons: daemons,
            _keys: keys,
        })
    }

    /// Points each WireGuard's peer endpoint somewhere else: flnode's port,
    /// or the other host's WireGuard directly (for comparison).
    pub fn set_endpoints(&self, endpoint_on_a: &str, endpoint_on_b: &str) -> anyhow::Result<()> {
        for (ns, interface, endpoint) in [
            (&self.a, &self.interfaces[0], endpoint_on_a),
            (&self.b, &self.interfaces[1], endpoint_on_b),
        ] {
            let peer = run(ns, &["wg", "show", interface, "peers"], None)?;
            run(
                ns,
                &["wg", "set", interface, "peer", peer.trim(), "endpoint", endpoint],
                None,
            )?;
        }
        Ok(())
    }

    /// Round-trip times (ms) of `count` pings from a to b through the overlay.
    pub fn ping_rtts_from_a(&self, count: u32) -> anyhow::Result<Vec<f64>> {
        self.ping_rtts_from_a_every(count, "0.05")
    }

    /// [`Overlay::ping_rtts_from_a`] with pings `interval` seconds apart
    /// (ping's `-i`; below 0.002 needs root).
    pub fn ping_rtts_from_a_every(&self, count: u32, interval: &str) -> anyhow::Result<Vec<f64>> {
        let output = run(
            &self.a,
            &["ping", "-c", &count.to_string(), "-i", interval, "-W", "1", OVERLAY_B],
            None,
        )?;
        Ok(output
            .lines()
            .filter_map(|line| line.split("time=").nth(1))
            .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
            .collect())
    }

    /// The mean round trip (ms) of `count` pings from a to b sent back to
    /// back (`ping -f`: the next as soon as the answer is in), so the path
    /// is never idle between them.
    pub fn flood_rtt_from_a(&self, count: u32) -> anyhow::Result<f64> {
        let output = run(
            &self.a,
            &["ping", "-f", "-q", "-c", &count.to_string(), OVERLAY_B],
            None,
        )?;
        // rtt min/avg/max/mdev = 0.138/0.459/8.448/0.186 ms
        let stats = output
            .lines()
            .find_map(|line| line.split(" = ").nth(1).filter(|_| line.starts_with("rtt")))
            .with_context(|| format!("no rtt line in ping's output: {output}"))?;
        let average = stats.split('/').nth(1).context("no average")?;
        Ok(average.parse()?)
    }

    /// Pings b's overlay address from a every `interval` for `seconds`
    /// while `during` runs, and returns the longest time between two
    /// answered pings (ms, from ping's own timestamps) and how many went
    /// unanswered.
    pub async fn ping_gap_from_a(
        &self,
        seconds: u32,
        interval: Duration,
        during: impl std::future::Future<Output = anyhow::Result<()>>,
    ) -> anyhow::Result<(f64, u64)> {
        let count = (f64::from(seconds) / interval.as_secs_f64()).round() as u64;
        let ping = tokio::process::Command::new("ip")
            .args(["netns", "exec", &self.a, "ping", "-D", "-n", "-W", "1"])
            .args(["-i", &format!("{:.3}", interval.as_secs_f64())])
            .args(["-c", &count.to_string(), OVERLAY_B])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        during.await?;
        let output = ping.wait_with_output().await?;
        let text = String::from_utf8_lossy(&output.stdout);
        let stamps: Vec<f64> = text
            .lines()
            .filter(|line| line.contains("time="))
            .filter_map(|line| line.strip_prefix('[')?.split(']').next()?.parse().ok())
            .collect();
        anyhow::ensure!(stamps.len() >= 2, "too few answers to measure a gap: {text}");
        let gap = stamps.windows(2).map(|pair| pair[1] - pair[0]).fold(0.0, f64::max);
        Ok((gap * 1000.0, count.saturating_sub(stamps.len() as u64)))
    }

    /// Pings b's overlay address from a until three pings in a row answer
    /// (the first may wait for the WireGuard handshake), for up to 30 s.
    pub async fn ping_from_a(&self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            match run(&self.a, &["ping", "-c", "3", "-i", "0.2", "-W", "1", OVERLAY_B], None) {
                Ok(_) => return Ok(()),
                Err(error) if tokio::time::Instant::now() > deadline => return Err(error),
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }

    /// An iperf3 TCP run from a to b for `seconds`; returns the receiver's
    /// throughput in Mbit/s.
    pub async fn iperf3_mbits_from_a(&self, seconds: u32) -> anyhow::Result<f64> {
        let line = self.iperf3_from_a(seconds).await?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let at = words
            .iter()
            .position(|w| *w == "Mbits/sec")
            .context("no Mbits/sec in iperf3 output")?;
        Ok(words.get(at.wrapping_sub(1)).context("no number")?.parse()?)
    }

    /// An iperf3 TCP run from a to b for `seconds`; returns iperf3's summary line.
    pub async fn iperf3_from_a(&self, seconds: u32) -> anyhow::Result<String> {
        let _server = tokio::process::Command::new("ip")
            .args(["netns", "exec", &self.b, "iperf3", "-s", "-1", "-B", OVERLAY_B])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let output = run(
            &self.a,
            &["iperf3", "-c", OVERLAY_B, "-t", &seconds.to_string(), "-f", "m"],
            None,
        )?;
        Ok(output
            .lines()
            .rfind(|line| line.contains("receiver"))
            .unwrap_or_default()
            .trim()
            .to_owned())
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        // wireguard-go, killed, leaves its control socket behind.
        for interface in &self.interfaces {
            let _ = std::fs::remove_file(format!("/var/run/wireguard/{interface}.sock"));
        }
    }
}
