//! `flnode up` settings from three places, the first that has a value
//! winning: command-line flags, `FLNODE_*` environment variables, and
//! `DIR/flnode.toml`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use flproto::NodeId;
use serde::Deserialize;

use crate::admission::{TestPeerPolicy, DEFAULT_TEST_PEERS, DEFAULT_TEST_PEER_BUDGET, MAX_TEST_PEERS};
use crate::ice_servers::{self, IceServer};
use crate::node::NodeSettings;
use crate::signal_client::{AuthMode, DEFAULT_MAX_SIGNAL_MESSAGE, MAX_SIGNAL_MESSAGE_RANGE};

/// WireGuard's usual listen address.
pub const DEFAULT_WIREGUARD: &str = "127.0.0.1:51820";
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
    /// The local WireGuard's UDP address (its ListenPort) [default: 127.0.0.1:51820]
    #[arg(long, env = "FLNODE_WIREGUARD")]
    pub wireguard: Option<SocketAddr>,
    /// A peer as ID=LOCAL_ADDR: flnode listens on LOCAL_ADDR, which is the
    /// local WireGuard's endpoint for that peer. Repeat for several peers.
    #[arg(long = "peer", env = "FLNODE_PEERS", value_delimiter = ',')]
    pub peers: Vec<String>,
    /// Authenticate with fledger's plain version-3 announce (for fledger servers).
    #[arg(long, env = "FLNODE_FLEDGER_COMPAT")]
    pub fledger_compat: bool,
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
    peers: Vec<String>,
    #[serde(default)]
    fledger_compat: bool,
    name: Option<String>,
    test_peers: Option<usize>,
    #[serde(default)]
    test_peer_allow: Vec<String>,
    test_peer_budget: Option<u64>,
    max_signal_message: Option<usize>,
    threads: Option<usize>,
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
    let peers = if args.peers.is_empty() { file.peers } else { args.peers };
    if peers.is_empty() {
        bail!("no peers: give --peer ID=127.0.0.1:PORT (the ID comes from `flnode id` on the other machine)");
    }
    let ice_servers = ice_servers(
        &signal,
        if args.ice_servers.is_empty() {
            &file.ice_servers
        } else {
            &args.ice_servers
        },
        args.no_default_stun || file.no_default_stun,
    )?;
    let wireguard = match args.wireguard.or(file.wireguard) {
        Some(addr) => addr,
        None => DEFAULT_WIREGUARD.parse()?,
    };
    Ok(NodeSettings {
        peers: peers.iter().map(|p| parse_peer(p)).collect::<anyhow::Result<_>>()?,
        signal,
        wireguard,
        auth: if args.fledger_compat || file.fledger_compat {
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

pub fn parse_peer(text: &str) -> anyhow::Result<(NodeId, SocketAddr)> {
    let Some((id, addr)) = text.split_once('=') else {
        bail!("--peer {text:?}: expected ID=ADDR, e.g. <64 hex>=127.0.0.1:51900");
    };
    let id: NodeId = id
        .trim()
        .parse()
        .with_context(|| format!("--peer {text:?}: the ID must be 64 hex characters (from `flnode id`)"))?;
    let addr = addr
        .trim()
        .parse()
        .with_context(|| format!("--peer {text:?}: the address must be IP:PORT"))?;
    Ok((id, addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c";

    #[test]
    fn file_fills_what_flags_leave_out() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            config_file(dir.path()),
            format!("signal = \"ws://s:8765\"\nwireguard = \"127.0.0.1:1000\"\npeers = [\"{ID}=127.0.0.1:2000\"]\n"),
        )
        .unwrap();
        let from_file = resolve(UpArgs {
            config: dir.path().into(),
            ..UpArgs::default()
        })
        .unwrap();
        assert_eq!(from_file.signal, "ws://s:8765");
        assert_eq!(from_file.wireguard.port(), 1000);
        assert_eq!(from_file.peers[0].1.port(), 2000);
        let flags_win = resolve(UpArgs {
            config: dir.path().into(),
            signal: Some("ws://other:1".into()),
            peers: vec![format!("{ID}=127.0.0.1:3000")],
            ..UpArgs::default()
        })
        .unwrap();
        assert_eq!(flags_win.signal, "ws://other:1");
        assert_eq!(flags_win.peers[0].1.port(), 3000);
        assert_eq!(flags_win.wireguard.port(), 1000);
    }

    #[test]
    fn ice_servers_default_to_the_signalling_servers_stun() {
        let dir = tempfile::tempdir().unwrap();
        let args = || UpArgs {
            config: dir.path().into(),
            signal: Some("ws://signal.example:8765".into()),
            peers: vec![format!("{ID}=127.0.0.1:3000")],
            ..UpArgs::default()
        };
        let urls =
            |settings: NodeSettings| -> Vec<String> { settings.ice_servers.iter().map(|s| s.to_string()).collect() };
        assert_eq!(urls(resolve(args()).unwrap()), ["stun:signal.example:3478"]);
        let more = UpArgs {
            ice_servers: vec!["turn:u:p@turn.example".into(), "stun:signal.example".into()],
            ..args()
        };
        assert_eq!(
            urls(resolve(more).unwrap()),
            ["stun:signal.example:3478", "turn:u:***@turn.example:3478"]
        );
        let none = UpArgs {
            no_default_stun: true,
            ..args()
        };
        assert!(resolve(none).unwrap().ice_servers.is_empty());
        std::fs::write(
            config_file(dir.path()),
            "ice_servers = [\"stun:file.example:1\"]\nno_default_stun = true\n",
        )
        .unwrap();
        assert_eq!(urls(resolve(args()).unwrap()), ["stun:file.example:1"]);
        let bad = UpArgs {
            ice_servers: vec!["turn:nobody.example".into()],
            ..args()
        };
        let error = format!("{:#}", resolve(bad).unwrap_err());
        assert!(
            error.starts_with("--ice-server \"turn:nobody.example\": TURN needs"),
            "{error}"
        );
    }

    #[test]
    fn test_peers_are_off_unless_asked_for_and_the_allow_list_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let args = || UpArgs {
            config: dir.path().into(),
            signal: Some("ws://s:1".into()),
            peers: vec![format!("{ID}=127.0.0.1:3000")],
            ..UpArgs::default()
        };
        let default = resolve(args()).unwrap();
        assert_eq!(default.test_peers, TestPeerPolicy::default());
        assert_eq!(default.test_peer_budget, DEFAULT_TEST_PEER_BUDGET);
        assert_eq!(default.max_signal_message, DEFAULT_MAX_SIGNAL_MESSAGE);
        let allowed = resolve(UpArgs {
            test_peers: Some(1),
            test_peer_allow: vec![ID.into()],
            test_peer_budget: Some(1000),
            ..args()
        })
        .unwrap();
        assert_eq!(allowed.test_peers.slots, 1);
        assert_eq!(allowed.test_peers.allow, [ID.parse().unwrap()]);
        assert_eq!(allowed.test_peer_budget, 1000);
        let error = |args: UpArgs| format!("{:#}", resolve(args).unwrap_err());
        assert!(error(UpArgs {
            test_peer_allow: vec![ID.into()],
            ..args()
        })
        .contains("needs --test-peers"));
        assert!(error(UpArgs {
            test_peers: Some(1),
            test_peer_allow: vec!["nope".into()],
            ..args()
        })
        .contains("64 hex"));
        assert!(error(UpArgs {
            test_peers: Some(MAX_TEST_PEERS + 1),
            ..args()
        })
        .contains("at most"));
        assert!(error(UpArgs {
            test_peer_budget: Some(0),
            ..args()
        })
        .contains("--test-peer-budget 0"));
        assert!(error(UpArgs {
            max_signal_message: Some(10),
            ..args()
        })
        .contains("--max-signal-message 10"));
        std::fs::write(
            config_file(dir.path()),
            format!("test_peers = 2\ntest_peer_allow = [\"{ID}\"]\nmax_signal_message = 70000\n"),
        )
        .unwrap();
        let from_file = resolve(args()).unwrap();
        assert_eq!(from_file.test_peers.slots, 2);
        assert_eq!(from_file.test_peers.allow.len(), 1);
        assert_eq!(from_file.max_signal_message, 70000);
    }

    #[test]
    fn missing_or_bad_settings_say_what_to_fix() {
        let dir = tempfile::tempdir().unwrap();
        let args = || UpArgs {
            config: dir.path().into(),
            ..UpArgs::default()
        };
        assert!(resolve(args()).unwrap_err().to_string().contains("--signal"));
        std::fs::write(config_file(dir.path()), "signal = \"ws://s:1\"\nbogus = 1\n").unwrap();
        assert!(format!("{:#}", resolve(args()).unwrap_err()).contains("bogus"));
        assert!(parse_peer("abc=1").unwrap_err().to_string().contains("64 hex"));
        assert!(parse_peer(&format!("{ID}=nope"))
            .unwrap_err()
            .to_string()
            .contains("IP:PORT"));
    }
}
