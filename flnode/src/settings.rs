//! `flnode up` settings from three places, the first that has a value
//! winning: command-line flags, `FLNODE_*` environment variables, and
//! `DIR/flnode.toml`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::admission::{TestPeerPolicy, DEFAULT_TEST_PEERS, DEFAULT_TEST_PEER_BUDGET, MAX_TEST_PEERS};
use crate::ice_servers::{self, IceServer};
use crate::node::NodeSettings;
use crate::signal_client::{AuthMode, DEFAULT_MAX_SIGNAL_MESSAGE, MAX_SIGNAL_MESSAGE_RANGE};
use crate::tunnel_settings::{FilePeer, TunnelInputs};
use crate::wireguard::BackendChoice;
/// Most threads `--threads` may ask for.
pub const MAX_THREADS: usize = 64;
/// The name announced when none is configured.
pub const DEFAULT_NAME: &str = "flnode";

#[derive(clap::Args, Debug, Default)]
pub struct UpArgs {
    /// Directory with the node key (and optionally flnode.toml).
    #[arg(long, env = "FLNODE_CONFIG")]
    pub config: PathBuf,
    /// Signalling server, e.g. ws://signal.example:8765 or wss://signal.example
    #[arg(long, env = "FLNODE_SIGNAL")]
    pub signal: Option<String>,
    /// PEM certificates to trust for a wss:// signalling server, beside the
    /// system's (a private CA, or a self-signed server)
    #[arg(long, env = "FLNODE_SIGNAL_CA")]
    pub signal_ca: Option<PathBuf>,
    /// Manual mode: the local WireGuard's UDP address (its ListenPort)
    /// [default: 127.0.0.1:51820]
    #[arg(long, env = "FLNODE_WIREGUARD")]
    pub wireguard: Option<SocketAddr>,
    /// A peer. A bare node ID (managed mode): flnode sets up the WireGuard
    /// interface and gives this node a peer entry. ID=LOCAL_ADDR (manual
    /// mode): flnode listens on LOCAL_ADDR, your own WireGuard's endpoint
    /// for that peer. Repeat for several peers, all of one kind.
    #[arg(long = "peer", env = "FLNODE_PEERS", value_delimiter = ',')]
    pub peers: Vec<String>,
    /// Managed mode: the WireGuard interface flnode creates (or adopts, if
    /// it exists and is free) [default: flnode0]
    #[arg(long, env = "FLNODE_WG_INTERFACE")]
    pub wg_interface: Option<String>,
    /// Managed mode: which WireGuard drives the interface; auto is the
    /// kernel's where a wireguard link can be created, else wireguard-go
    /// [default: auto]
    #[arg(long, env = "FLNODE_WG_BACKEND", value_enum)]
    pub wg_backend: Option<BackendChoice>,
    /// Managed mode: this node's overlay address instead of the one derived
    /// from its node ID (one IPv4 in 100.64.0.0/10, one IPv6 in
    /// fd50:e038:65e7::/48; repeat for both). Peers learn it over the
    /// authenticated `ctl` channel.
    #[arg(long = "address", env = "FLNODE_ADDRESS", value_delimiter = ',')]
    pub addresses: Vec<String>,
    /// Managed mode: leave the WireGuard interface (and wireguard-go) in
    /// place when flnode stops.
    #[arg(long, env = "FLNODE_KEEP_INTERFACE")]
    pub keep_interface: bool,
    /// Managed mode: how long a peer that went offline keeps its WireGuard
    /// entry [default: 60s]
    #[arg(long, env = "FLNODE_PEER_GRACE", value_parser = humantime::parse_duration)]
    pub peer_grace: Option<Duration>,
    /// Authenticate with fledger's plain version-3 announce (for fledger servers).
    #[arg(long, env = "FLNODE_FLEDGER_COMPAT")]
    pub fledger_compat: bool,
    #[command(flatten)]
    pub seal: crate::sealing::SealArgs,
    #[command(flatten)]
    pub halves: crate::halves::HalvesArgs,
    /// Name announced to the network [default: flnode]
    #[arg(long, env = "FLNODE_NAME")]
    pub name: Option<String>,
    /// How many nodes that are not configured peers (a browser testing this
    /// node) may connect at once; they get ping, echo and throughput tests
    /// on the `ctl` channel, never the WireGuard path, and learn this
    /// machine's addresses from its ICE candidates. 0: off [default: 0]
    #[arg(long, env = "FLNODE_TEST_PEERS")]
    pub test_peers: Option<usize>,
    /// Only this node may be a test peer (the ID a browser page shows).
    /// Repeat for several; without it any node may take a slot.
    #[arg(long = "test-peer-allow", env = "FLNODE_TEST_PEER_ALLOW", value_delimiter = ',')]
    pub test_peer_allow: Vec<String>,
    /// Bytes a test peer may send and receive over its data channels
    /// before flnode closes its connection [default: 67108864 (64 MiB)]
    #[arg(long, env = "FLNODE_TEST_PEER_BUDGET")]
    pub test_peer_budget: Option<u64>,
    /// Largest WebSocket message (and frame) accepted from the signalling
    /// server, in bytes; a larger one ends the connection, which is made
    /// again [default: 524288 (512 KiB)]
    #[arg(long, env = "FLNODE_MAX_SIGNAL_MESSAGE")]
    pub max_signal_message: Option<usize>,
    /// Threads of the async runtime; 1 (one thread for everything) is
    /// fastest for a few peers [default: 1]
    #[arg(long, env = "FLNODE_THREADS")]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub log: crate::log_summary::LogArgs,
    /// A STUN or TURN server for NAT traversal: stun:HOST[:PORT] or
    /// turn:USER:PASSWORD@HOST[:PORT] (percent-escape `:` `@` `,` `%` in
    /// USER and PASSWORD). Repeat for several. Used besides the default.
    #[arg(long = "ice-server", env = "FLNODE_ICE_SERVERS", value_delimiter = ',')]
    pub ice_servers: Vec<String>,
    /// Do not use the STUN service of the signalling server
    /// (stun:<host of --signal>:3478), which is used by default.
    #[arg(long, env = "FLNODE_NO_DEFAULT_STUN")]
    pub no_default_stun: bool,
}

/// `DIR/flnode.toml`: the same settings as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    signal: Option<String>,
    wireguard: Option<SocketAddr>,
    #[serde(default)]
    peers: Vec<FilePeer>,
    wg_interface: Option<String>,
    wg_backend: Option<BackendChoice>,
    #[serde(default)]
    address: Vec<String>,
    #[serde(default)]
    keep_interface: bool,
    #[serde(default, with = "humantime_serde_opt")]
    peer_grace: Option<Duration>,
    #[serde(default)]
    fledger_compat: bool,
    #[serde(default)]
    require_sealed: bool,
    #[serde(default)]
    plain_setups: bool,
    name: Option<String>,
    test_peers: Option<usize>,
    #[serde(default)]
    test_peer_allow: Vec<String>,
    test_peer_budget: Option<u64>,
    max_signal_message: Option<usize>,
    threads: Option<usize>,
    held_halves: Option<usize>,
    #[serde(default, with = "humantime_serde_opt")]
    held_half_max_age: Option<Duration>,
    signal_ca: Option<PathBuf>,
    #[serde(default)]
    ice_servers: Vec<String>,
    #[serde(default)]
    no_default_stun: bool,
}

pub fn config_file(dir: &Path) -> PathBuf {
    dir.join("flnode.toml")
}

fn read_file(dir: &Path) -> anyhow::Result<FileSettings> {
    let path = config_file(dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).with_context(|| format!("{} is not valid", path.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(FileSettings::default()),
        Err(error) => Err(error).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Combines flags and environment (already merged by clap) with the file.
pub fn resolve(args: UpArgs) -> anyhow::Result<NodeSettings> {
    let file = read_file(&args.config)?;
    let Some(signal) = args.signal.or(file.signal) else {
        bail!(
            "no signalling server: give --signal ws://HOST:PORT (or wss://), FLNODE_SIGNAL, or `signal` in {}",
            config_file(&args.config).display()
        );
    };
    let scheme = signal.split_once("://").map(|(scheme, _)| scheme.to_ascii_lowercase());
    if !matches!(scheme.as_deref(), Some("ws" | "wss")) {
        bail!("--signal {signal:?}: expected ws://HOST:PORT or wss://HOST[:PORT]");
    }
    let tunnel = crate::tunnel_settings::resolve(TunnelInputs {
        peers: if args.peers.is_empty() {
            file.peers
        } else {
            args.peers.into_iter().map(FilePeer::Text).collect()
        },
        wireguard: args.wireguard.or(file.wireguard),
        interface: args.wg_interface.or(file.wg_interface),
        backend: args.wg_backend.or(file.wg_backend),
        addresses: if args.addresses.is_empty() {
            file.address
        } else {
            args.addresses
        },
        keep_interface: args.keep_interface || file.keep_interface,
        peer_grace: args.peer_grace.or(file.peer_grace),
    })?;
    let ice_servers = ice_servers(
        &signal,
        if args.ice_servers.is_empty() {
            &file.ice_servers
        } else {
            &args.ice_servers
        },
        args.no_default_stun || file.no_default_stun,
    )?;
    let fledger_compat = args.fledger_compat || file.fledger_compat;
    Ok(NodeSettings {
        tunnel,
        sealing: crate::sealing::policy(&args.seal, file.require_sealed, file.plain_setups, fledger_compat)?,
        signal,
        auth: if fledger_compat {
            AuthMode::FledgerCompat
        } else {
            AuthMode::Bound
        },
        name: args.name.or(file.name).unwrap_or_else(|| DEFAULT_NAME.to_owned()),
        config_dir: args.config,
        ice_servers,
        test_peers: test_peer_policy(
            args.test_peers.or(file.test_peers),
            if args.test_peer_allow.is_empty() {
                &file.test_peer_allow
            } else {
                &args.test_peer_allow
            },
        )?,
        test_peer_budget: match args.test_peer_budget.or(file.test_peer_budget) {
            Some(0) => {
                bail!("--test-peer-budget 0: give a number of bytes, or turn test peers off with --test-peers 0")
            }
            Some(bytes) => bytes,
            None => DEFAULT_TEST_PEER_BUDGET,
        },
        max_signal_message: match args.max_signal_message.or(file.max_signal_message) {
            Some(bytes) if !MAX_SIGNAL_MESSAGE_RANGE.contains(&bytes) => bail!(
                "--max-signal-message {bytes}: expected {} to {} bytes",
                MAX_SIGNAL_MESSAGE_RANGE.start(),
                MAX_SIGNAL_MESSAGE_RANGE.end()
            ),
            Some(bytes) => bytes,
            None => DEFAULT_MAX_SIGNAL_MESSAGE,
        },
        signal_ca: args.signal_ca.or(file.signal_ca),
        threads: args.threads.or(file.threads).unwrap_or(1).clamp(1, MAX_THREADS),
        halves: crate::halves::limits(
            args.halves.held_halves.or(file.held_halves),
            args.halves.held_half_max_age.or(file.held_half_max_age),
        )?,
    })
}

/// The configured servers, after the signalling server's STUN service
/// unless that is turned off.
fn ice_servers(signal: &str, urls: &[String], no_default_stun: bool) -> anyhow::Result<Vec<IceServer>> {
    let mut servers = Vec::new();
    if !no_default_stun {
        let Some(default) = IceServer::default_for_signal(signal) else {
            bail!("--signal {signal:?}: expected ws://HOST:PORT");
        };
        servers.push(default);
    }
    for server in ice_servers::parse_all(urls)? {
        if !servers.contains(&server) {
            servers.push(server);
        }
    }
    Ok(servers)
}

/// Test-peer slots and allow-list, checked: an allow-list without slots
/// would silently do nothing.
fn test_peer_policy(slots: Option<usize>, allow: &[String]) -> anyhow::Result<TestPeerPolicy> {
    let slots = slots.unwrap_or(DEFAULT_TEST_PEERS);
    if slots > MAX_TEST_PEERS {
        bail!("--test-peers {slots}: at most {MAX_TEST_PEERS}");
    }
    if slots == 0 && !allow.is_empty() {
        bail!("--test-peer-allow needs --test-peers N (N > 0): test peers are off by default");
    }
    let allow = allow
        .iter()
        .map(|id| {
            id.trim()
                .parse()
                .with_context(|| format!("--test-peer-allow {id:?}: expected a node ID of 64 hex characters"))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(TestPeerPolicy { slots, allow })
}

#[cfg(test)]
#[path = "settings_tests.rs"]
mod tests;

/// `peer_grace = "90s"` in flnode.toml, in the flags' duration syntax.
mod humantime_serde_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
        let Some(text) = Option::<String>::deserialize(deserializer)? else {
            return Ok(None);
        };
        humantime::parse_duration(&text)
            .map(Some)
            .map_err(serde::de::Error::custom)
    }
}
