//! Command line of `flload`: one mode, then `--flag value` pairs.

use std::time::Duration;

use anyhow::{bail, Context};

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Hold many idle nodes; the server's resident memory per node.
    Idle,
    /// Handshake rate and latency with a bounded number in flight.
    Handshakes,
    /// PeerSetup relay RTT and throughput.
    Relay,
    /// Many nodes at once: time until all are registered, bytes received.
    Storm,
    /// Nodes joining, relaying and leaving at a steady rate for a long
    /// time: the server's RSS and fds over time.
    Soak,
    /// Pairs relaying WireGuard-sized datagrams through the server's
    /// datagram relay at a set rate: loss, latency, server CPU.
    Datagrams,
}

/// `relay`: which setup frame the pairs echo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayFrame {
    /// fledger's: an unsigned Offer with a short SDP.
    Offer,
    /// flnode's plain one: a signed Offer with an SDP of flnode's size.
    Signed,
    /// flnode's sealed one: the same Offer sealed, padded and signed.
    Sealed,
}

/// Which signalling protocol the nodes speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// fledger's wire v3: challenge, signed Announce, node list (ours and
    /// fledger's server).
    Fledger,
    /// matchbox_server's rooms (see `matchbox`), for comparison: no
    /// authentication, each node in a room of its own, each relay pair in
    /// one room.
    Matchbox,
}

pub struct Args {
    pub mode: Mode,
    /// `relay`: the frame relayed.
    pub frame: RelayFrame,
    pub protocol: Protocol,
    pub url: String,
    /// `relay`: where the receiving nodes connect.
    pub to_url: Option<String>,
    pub pairs: usize,
    pub messages: usize,
    pub window: usize,
    pub rtt_samples: usize,
    pub nodes: usize,
    pub in_flight: usize,
    pub server_pid: Option<u32>,
    /// Client sockets use 127.0.0.1 … 127.0.0.K as source addresses.
    pub source_ips: u8,
    /// Send `"ListIDsRequest"` right after the Announce, as fledger nodes
    /// do. fledger's server sends the node list only when asked; ours sends
    /// it on registration either way.
    pub list_request: bool,
    /// `storm`: give up waiting for registrations after this long.
    pub deadline: Duration,
    /// `storm`: how long to keep counting bytes after the last node
    /// registered (presence news that follows the joins). `soak`: how long
    /// after the last node left the server's RSS and fds are read.
    pub settle: Duration,
    /// `soak`: how long the churn goes on.
    pub duration: Duration,
    /// `soak`: how long each node stays connected.
    pub lifetime: Duration,
    /// `soak`: time between two report lines.
    pub report: Duration,
    /// `datagrams`: what each node sends its peer, in kbit/s.
    pub rate_kbit: u64,
    /// `datagrams`: payload bytes of each relay frame.
    pub payload: usize,
}

const USAGE: &str = "usage: flload MODE [flags]
  idle        [--url URL] [--nodes N] [--in-flight C] [--server-pid PID] [--source-ips K]
  handshakes  [--url URL] [--nodes N] [--in-flight C] [--source-ips K]
  relay       [--url URL] [--to-url URL] [--pairs P] [--messages M per pair] [--window W] [--rtt-samples R]
              [--frame offer|signed|sealed]
  storm       [--url URL] [--nodes N] [--in-flight C] [--source-ips K] [--deadline 60s] [--settle 1s]
  soak        [--url URL] [--nodes N] [--pairs P] [--duration 600s] [--lifetime 60s] [--report 60s]
              [--in-flight C] [--server-pid PID] [--source-ips K] [--settle 5s]
  datagrams   [--url URL] [--pairs P] [--rate-kbit 1000] [--payload 1452] [--duration 10s]
              [--in-flight C] [--server-pid PID] [--source-ips K]
  every mode  [--list-request true|false]   (default true: Announce then \"ListIDsRequest\", as fledger nodes do)
              [--protocol fledger|matchbox] (default fledger; matchbox: not with soak or datagrams)
  handshakes, relay, datagrams [--server-pid PID] (the server's CPU time per handshake / relayed frame)";

pub fn parse() -> anyhow::Result<Args> {
    parse_from(std::env::args().skip(1))
}

fn parse_from(mut argv: impl Iterator<Item = String>) -> anyhow::Result<Args> {
    let mode = match argv.next().as_deref() {
        Some("idle") => Mode::Idle,
        Some("handshakes") => Mode::Handshakes,
        Some("relay") => Mode::Relay,
        Some("storm") => Mode::Storm,
        Some("soak") => Mode::Soak,
        Some("datagrams") => Mode::Datagrams,
        _ => bail!("{USAGE}"),
    };
    let mut args = Args {
        mode,
        frame: RelayFrame::Offer,
        protocol: Protocol::Fledger,
        url: "ws://127.0.0.1:8765/".into(),
        to_url: None,
        pairs: if mode == Mode::Soak { 20 } else { 8 },
        messages: 5000,
        window: 16,
        rtt_samples: 1000,
        nodes: match mode {
            Mode::Handshakes => 200,
            Mode::Soak => 10_000,
            _ => 1000,
        },
        in_flight: match mode {
            Mode::Handshakes => 20,
            Mode::Storm => 1000,
            Mode::Soak => 100,
            _ => 50,
        },
        server_pid: None,
        source_ips: 4,
        list_request: true,
        deadline: Duration::from_secs(60),
        settle: Duration::from_secs(if mode == Mode::Soak { 5 } else { 1 }),
        duration: Duration::from_secs(if mode == Mode::Datagrams { 10 } else { 600 }),
        lifetime: Duration::from_secs(60),
        report: Duration::from_secs(60),
        rate_kbit: 1000,
        // The largest WireGuard packet from an interface MTU of 1420.
        payload: 1452,
    };
    while let Some(flag) = argv.next() {
        let value = argv.next().with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
        let bad = || format!("bad value {value:?} for {flag}");
        match flag.as_str() {
            "--url" => args.url = value,
            "--nodes" => args.nodes = value.parse().with_context(bad)?,
            "--in-flight" => args.in_flight = value.parse().with_context(bad)?,
            "--server-pid" => args.server_pid = Some(value.parse().with_context(bad)?),
            "--source-ips" => args.source_ips = value.parse().with_context(bad)?,
            "--to-url" => args.to_url = Some(value),
            "--pairs" => args.pairs = value.parse().with_context(bad)?,
            "--messages" => args.messages = value.parse().with_context(bad)?,
            "--window" => args.window = value.parse().with_context(bad)?,
            "--rtt-samples" => args.rtt_samples = value.parse().with_context(bad)?,
            "--frame" => {
                args.frame = match value.as_str() {
                    "offer" => RelayFrame::Offer,
                    "signed" => RelayFrame::Signed,
                    "sealed" => RelayFrame::Sealed,
                    _ => bail!("{}", bad()),
                }
            }
            "--list-request" => args.list_request = value.parse().with_context(bad)?,
            "--protocol" => {
                args.protocol = match value.as_str() {
                    "fledger" => Protocol::Fledger,
                    "matchbox" => Protocol::Matchbox,
                    _ => bail!("{}", bad()),
                }
            }
            "--deadline" => args.deadline = seconds(&value).with_context(bad)?,
            "--settle" => args.settle = seconds(&value).with_context(bad)?,
            "--duration" => args.duration = seconds(&value).with_context(bad)?,
            "--lifetime" => args.lifetime = seconds(&value).with_context(bad)?,
            "--report" => args.report = seconds(&value).with_context(bad)?,
            "--rate-kbit" => args.rate_kbit = value.parse().with_context(bad)?,
            "--payload" => args.payload = value.parse().with_context(bad)?,
            other => bail!("unknown flag {other}\n{USAGE}"),
        }
    }
    anyhow::ensure!(
        !(matches!(args.mode, Mode::Soak | Mode::Datagrams) && args.protocol == Protocol::Matchbox),
        "soak and datagrams speak the fledger protocol only"
    );
    anyhow::ensure!(
        !args.lifetime.is_zero() && !args.report.is_zero(),
        "--lifetime and --report must be longer than zero"
    );
    Ok(args)
}

/// `"60s"`, `"1.5s"` or a bare number of seconds.
fn seconds(text: &str) -> anyhow::Result<Duration> {
    let number: f64 = text.strip_suffix('s').unwrap_or(text).parse()?;
    anyhow::ensure!(number.is_finite() && number >= 0.0, "not a duration");
    Ok(Duration::from_secs_f64(number))
}
