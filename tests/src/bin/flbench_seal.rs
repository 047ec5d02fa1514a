//! flbench-seal: what sealing setup messages costs, three ways, each as
//! the same run with and without sealing.
//!
//!   cargo build --release -p flsignal -p flnode -p e2e
//!   sudo ./target/release/flbench_seal [runs]
//!
//! 1. Per message, in this process: signing a plain setup against sealing
//!    and signing it, and verifying against verifying and opening, for an
//!    Offer of flnode's size and a candidate.
//! 2. The first packet through the tunnel: time from both flnodes started
//!    (in two network namespaces, with flsignal) to the first ping answered
//!    through real WireGuard over them, with `--plain-setups` and with
//!    sealing, the runs alternating.
//! 3. The server: flsignal's relay rate (`flload relay`, 20 pairs × 8 in
//!    flight) and its CPU per relayed frame for fledger's short Offer,
//!    flnode's signed plain Offer and the same Offer sealed, a fresh server
//!    for each run, the frames alternating.
//!
//! Prints medians (min–max) over `runs` (default 5) of each.

use std::time::{Duration, Instant};

use anyhow::Context;
use e2e::flnode::{NodePair, PEER_PORT, WIREGUARD};
use e2e::netns::Testbed;
use e2e::spread::{report, Spread};
use e2e::wireguard::Overlay;
use e2e::{binary, ServerProcess};
use flproto::identity::NodeKey;
use flproto::message::SetupMessage;
use flproto::seal::{open, seal, EphemeralSeed};
use flproto::setup_auth::{sign_with, verify, SetupHeader, SetupSigner};
use flproto::setup_message::{Opens, SessionId};

const OFFER_LEN: usize = 450;
const CANDIDATE: &str = "candidate:750739622 1 udp 2130706431 10.201.0.2 36290 typ host";
/// Messages timed per measurement in part 1.
const MESSAGES: u32 = 2000;

/// Microseconds per message: (sign, seal + sign, verify, verify + open).
fn per_message(message: &SetupMessage) -> [f64; 4] {
    let (a, b) = (NodeKey::from_seed([1; 32]), NodeKey::from_seed([2; 32]));
    let secret = flproto::x25519::secret_of(&b);
    let mut signer = SetupSigner::new(SessionId::random(Opens::Sealed));
    let mut attempt = signer.next_generation(1);
    let (init, follow) = (a.id(), b.id());
    let time = |f: &mut dyn FnMut()| {
        let started = Instant::now();
        for _ in 0..MESSAGES {
            f();
        }
        started.elapsed().as_secs_f64() * 1e6 / f64::from(MESSAGES)
    };
    let mut plain = None;
    let sign = time(&mut || {
        let header = signer.next_header(&a, &mut attempt, init, follow);
        plain = Some(sign_with(&a, &header, message.clone()));
    });
    let mut sealed = None;
    let seal_sign = time(&mut || {
        let header = signer.next_header(&a, &mut attempt, init, follow);
        let text = seal(&follow, &header, message, EphemeralSeed(rand::random())).unwrap();
        sealed = Some(sign_with(&a, &header, text));
    });
    let (plain, sealed) = (plain.unwrap(), sealed.unwrap());
    let check = time(&mut || {
        verify(&plain, &follow).unwrap();
    });
    let check_open = time(&mut || {
        let (sender, auth) = verify(&sealed, &follow).unwrap();
        let SetupMessage::Sealed(text) = &sealed.message else {
            unreachable!()
        };
        open(&secret, &SetupHeader::of(&sealed, sender, &auth), text).unwrap();
    });
    [sign, seal_sign, check, check_open]
}

/// Milliseconds from both nodes started to the first ping through the
/// tunnel.
async fn first_packet(extra_args: &[&str]) -> anyhow::Result<f64> {
    let testbed = Testbed::new()?;
    let started = Instant::now();
    let server = ServerProcess::start_in(Some(&testbed.a), &["--listen", "0.0.0.0:0"], &[]).await?;
    let port = server.addr.port();
    let signal = [
        format!("ws://127.0.0.1:{port}"),
        format!("ws://{}:{port}", e2e::netns::ADDR_A),
    ];
    let pair = NodePair::start_between([&testbed.a, &testbed.b], server, signal, extra_args).await?;
    pair.wait_started().await?;
    let overlay = Overlay::new(&testbed, WIREGUARD, PEER_PORT).await?;
    while overlay.ping_rtts_from_a(1).map(|r| r.is_empty()).unwrap_or(true) {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(60), "tunnel never came up");
    }
    Ok(started.elapsed().as_secs_f64() * 1000.0)
}

/// CPU seconds (user + system) the process has used.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat.rsplit(')').next().context("stat")?.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    Ok(ticks / 100.0)
}

/// (relayed frames/s, server CPU µs per relayed frame, frame bytes) of
/// one `flload relay` run on a fresh server.
async fn relay(frame: &str) -> anyhow::Result<(f64, f64, f64)> {
    let server = ServerProcess::start(
        &[
            "--max-connections-per-ip",
            "20000",
            "--rate-per-second",
            "1000000",
            "--rate-burst",
            "1000000",
            "--announce-rate-per-second",
            "1000000",
            "--announce-rate-burst",
            "1000000",
        ],
        &[],
    )
    .await?;
    let (pairs, messages, rtt_samples) = (20, 10_000, 200);
    let before = cpu_seconds(server.pid())?;
    let output = tokio::process::Command::new(binary("flload")?)
        .args(["relay", "--url", &server.url(), "--frame", frame])
        .args(["--pairs", &pairs.to_string(), "--window", "8"])
        .args([
            "--messages",
            &messages.to_string(),
            "--rtt-samples",
            &rtt_samples.to_string(),
        ])
        .output()
        .await?;
    let cpu = cpu_seconds(server.pid())? - before;
    let text = String::from_utf8_lossy(&output.stdout);
    let result = text
        .lines()
        .find(|line| line.starts_with("result "))
        .with_context(|| format!("flload relay: {text}{}", String::from_utf8_lossy(&output.stderr)))?;
    let field = |name: &str| -> anyhow::Result<f64> {
        let value = result
            .split_whitespace()
            .find_map(|field| field.strip_prefix(&format!("{name}=")))
            .with_context(|| format!("no {name} in {result}"))?;
        Ok(value.parse()?)
    };
    let relayed = f64::from(2 * pairs * messages + 2 * rtt_samples);
    Ok((field("msgs_per_s")?, cpu * 1e6 / relayed, field("frame_bytes")?))
}

fn ratio(name: &str, with: &[f64], without: &[f64]) {
    let ratios: Vec<f64> = with.iter().zip(without).map(|(w, o)| w / o).collect();
    let s = Spread::of(ratios);
    println!(
        "{name}: {:.3} (min {:.3}, max {:.3}, n={})",
        s.median, s.min, s.max, s.n
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runs: usize = std::env::args().nth(1).map(|n| n.parse()).transpose()?.unwrap_or(5);

    println!("== per message ({MESSAGES} each, µs)");
    for (name, message) in [
        ("Offer", SetupMessage::Offer("o".repeat(OFFER_LEN))),
        ("IceCandidate", SetupMessage::IceCandidate(CANDIDATE.into())),
    ] {
        let samples: Vec<[f64; 4]> = (0..runs).map(|_| per_message(&message)).collect();
        for (index, what) in ["sign", "seal + sign", "verify", "verify + open"].iter().enumerate() {
            report(&format!("{name}: {what}"), "µs", samples.iter().map(|s| s[index]), 1);
        }
    }

    println!("== first packet through the tunnel (ms from start)");
    let (mut plain, mut sealed) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let p = first_packet(&["--plain-setups"]).await?;
        let s = first_packet(&[]).await?;
        println!(
            "run {}: plain {p:.0} ms, sealed {s:.0} ms, sealed - plain {:+.0} ms",
            run + 1,
            s - p
        );
        plain.push(p);
        sealed.push(s);
    }
    report("first packet, plain setups", "ms", plain.iter().copied(), 0);
    report("first packet, sealed setups", "ms", sealed.iter().copied(), 0);
    let added: Vec<f64> = sealed.iter().zip(&plain).map(|(s, p)| s - p).collect();
    report("sealed - plain, same run", "ms", added, 0);

    println!("== the server: flload relay, 20 pairs x 8 in flight, a fresh server per run");
    let frames = ["offer", "signed", "sealed"];
    let mut results = vec![Vec::new(); frames.len()];
    for run in 0..runs {
        for (index, frame) in frames.iter().enumerate() {
            let (rate, cpu, bytes) = relay(frame).await?;
            println!(
                "run {}: {frame} ({bytes:.0} bytes): {rate:.0} frames/s, {cpu:.2} µs server CPU per frame",
                run + 1
            );
            results[index].push((rate, cpu));
        }
    }
    for (index, frame) in frames.iter().enumerate() {
        report(
            &format!("relay {frame}"),
            "frames/s",
            results[index].iter().map(|r| r.0),
            0,
        );
        report(
            &format!("server CPU per {frame} frame"),
            "µs",
            results[index].iter().map(|r| r.1),
            2,
        );
    }
    let rates = |index: usize| results[index].iter().map(|r| r.0).collect::<Vec<_>>();
    let cpus = |index: usize| results[index].iter().map(|r| r.1).collect::<Vec<_>>();
    ratio("relay rate, sealed / signed", &rates(2), &rates(1));
    ratio("server CPU per frame, sealed / signed", &cpus(2), &cpus(1));
    ratio("relay rate, sealed / fledger's offer", &rates(2), &rates(0));
    Ok(())
}
