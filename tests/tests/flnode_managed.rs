//! Managed mode end to end: hosts in network namespaces on one bridge,
//! each running only `flnode init` and `flnode up --peer ID …`; flnode
//! creates and configures WireGuard (wireguard-go here: these machines'
//! kernels have no WireGuard module). `wg`, `ip` and ping only observe.

use std::time::Duration;

use e2e::managed::{iperf3_mbits, peer_block, ping_once, ping_until, ManagedNode, ONLY_NET_ADMIN};
use e2e::mesh::{Mesh, MESH_SERVER};
use e2e::netns::{namespaces_available, run_in};
use e2e::wireguard::tools_available;
use e2e::ServerProcess;
use flproto::NodeId;

/// flsignal in the mesh's switch namespace; the URL every host dials.
async fn signal(mesh: &Mesh) -> (ServerProcess, String) {
    let server = ServerProcess::start_in(
        Some(&mesh.switch),
        &["--listen", "0.0.0.0:0", "--stun-listen", "0.0.0.0:3478"],
        &[],
    )
    .await
    .unwrap();
    let url = format!("ws://{MESH_SERVER}:{}", server.addr.port());
    (server, url)
}

/// A node per host, not started.
fn nodes(mesh: &Mesh) -> Vec<ManagedNode> {
    (0..mesh.hosts.len())
        .map(|index| ManagedNode::init(&mesh.hosts[index], &mesh.wireguard_name(index)).unwrap())
        .collect()
}

fn ids_except(nodes: &[ManagedNode], except: usize) -> Vec<NodeId> {
    nodes
        .iter()
        .enumerate()
        .filter(|(index, _)| *index != except)
        .map(|(_, node)| node.id)
        .collect()
}

/// Starts each of `nodes` with all the others as its peers and
/// `args(index)` as its flags.
fn start_all<'a>(nodes: &mut [ManagedNode], url: &str, args: impl Fn(usize) -> Vec<&'a str>) {
    for index in 0..nodes.len() {
        let peers = ids_except(nodes, index);
        nodes[index].start(url, &peers, &args(index)).unwrap();
    }
}

/// The userspace backend, as CI has no kernel WireGuard.
const USERSPACE: &[&str] = &["--wg-backend", "userspace"];

fn ready(test: &str) -> bool {
    namespaces_available(test) && tools_available(test)
}

/// Whether tcpdump is here (it must be in CI).
fn tcpdump_available(test: &str) -> bool {
    if std::process::Command::new("tcpdump").arg("--version").output().is_ok() {
        return true;
    }
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{test}: needs tcpdump");
    eprintln!("SKIPPED {test}: needs tcpdump");
    false
}

/// The UDP payload length of every datagram host 0 sends host 1 on the
/// mesh while `ns` sends `count` pings of `size` bytes (with DF) to
/// `target`, 50 ms apart.
async fn udp_lengths_during_pings(mesh: &Mesh, ns: &str, target: &str, size: u32, count: usize) -> Vec<usize> {
    let capture = tokio::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "tcpdump",
            "-i",
            &mesh.link_of(0),
            "-nn",
            "-l",
            "-q",
        ])
        .args(["-c", "400", "udp and src host 10.203.0.1 and dst host 10.203.0.2"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (size, count) = (size.to_string(), count.to_string());
    run_in(
        ns,
        &[
            "ping", "-M", "do", "-s", &size, "-c", &count, "-i", "0.05", "-W", "1", target,
        ],
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = capture.id().unwrap();
    // SAFETY: kill(2) of our own child (tcpdump prints what it has).
    unsafe { libc::kill(pid as i32, libc::SIGINT) };
    let output = capture.wait_with_output().await.unwrap();
    // `… UDP, length N`: the UDP payload of each datagram.
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.rsplit("length ").next()?.trim().parse().ok())
        .collect()
}

#[tokio::test]
async fn three_nodes_reach_each_other_by_overlay_address() {
    if !ready("three_nodes_reach_each_other_by_overlay_address") {
        return;
    }
    let mesh = Mesh::new(3).unwrap();
    let (_server, url) = signal(&mesh).await;
    let mut nodes = nodes(&mesh);
    // One of them as systemd runs it: root, but with CAP_NET_ADMIN only,
    // also for the wireguard-go it starts.
    let last = nodes.pop().unwrap();
    nodes.push(last.wrapped(ONLY_NET_ADMIN));
    start_all(&mut nodes, &url, |_| USERSPACE.to_vec());
    for from in &nodes {
        for to in nodes.iter().filter(|to| to.id != from.id) {
            let overlay = to.overlay();
            ping_until(&from.ns, &overlay.v4.to_string()).await.unwrap();
            ping_until(&from.ns, &overlay.v6.to_string()).await.unwrap();
        }
    }
    for (index, node) in nodes.iter().enumerate() {
        node.wait_connected(&ids_except(&nodes, index)).await.unwrap();
        let report = node.status().unwrap();
        assert!(report.contains("backend userspace (wireguard-go)"), "{report}");
        assert!(report.contains(&format!("overlay {}", node.overlay())), "{report}");
        for peer in &nodes.iter().filter(|peer| peer.id != node.id).collect::<Vec<_>>() {
            let block = peer_block(&report, &peer.id).unwrap();
            assert!(block.contains(&format!("overlay {}", peer.overlay())), "{block}");
            assert!(block.contains("path host "), "{block}");
        }
        // WireGuard's own view agrees: the two others' keys, nothing else.
        let mut listed = node.wireguard_peers().unwrap();
        listed.sort();
        let mut wanted: Vec<String> = nodes
            .iter()
            .filter(|peer| peer.id != node.id)
            .map(|peer| peer.wireguard_key().unwrap())
            .collect();
        wanted.sort();
        assert_eq!(listed, wanted);
        // The interface's MTU is the one that fits one SCTP chunk.
        let link = run_in(&node.ns, &["ip", "link", "show", &node.interface]).unwrap();
        assert!(link.contains("mtu 1280"), "{link}");
    }
    let mbits = iperf3_mbits(&nodes[0].ns, &nodes[1].ns, &nodes[1].overlay().v4.to_string(), 2)
        .await
        .unwrap();
    eprintln!("iperf3 through the managed tunnel: {mbits:.0} Mbit/s");
    assert!(mbits > 0.0);
}

#[tokio::test]
async fn peers_added_and_removed_at_run_time_change_the_mesh() {
    if !ready("peers_added_and_removed_at_run_time_change_the_mesh") {
        return;
    }
    let mesh = Mesh::new(4).unwrap();
    let (_server, url) = signal(&mesh).await;
    let mut nodes = nodes(&mesh);
    // Three nodes in a mesh; the fourth allows node 0, which does not
    // allow it yet.
    start_all(&mut nodes[..3], &url, |_| USERSPACE.to_vec());
    let first = nodes[0].id;
    nodes[3].start(&url, &[first], USERSPACE).unwrap();
    nodes[0].wait_connected(&[nodes[1].id, nodes[2].id]).await.unwrap();
    assert!(!ping_once(&nodes[0].ns, &nodes[3].overlay().v4.to_string()));

    let fourth = nodes[3].id.to_string();
    let added = nodes[0].peers(&["add", &fourth, "--name", "fourth"]).unwrap();
    assert!(added.contains("the running node has it"), "{added}");
    ping_until(&nodes[0].ns, &nodes[3].overlay().v4.to_string())
        .await
        .unwrap();
    nodes[0].wait_connected(&[nodes[3].id]).await.unwrap();
    let report = nodes[0].status().unwrap();
    assert!(
        peer_block(&report, &nodes[3].id).unwrap().contains("name fourth"),
        "{report}"
    );
    let listed = nodes[0].peers(&[]).unwrap();
    assert!(
        listed
            .lines()
            .any(|line| line.starts_with("fourth ") && line.contains(&fourth)),
        "{listed}"
    );

    let second = nodes[1].id.to_string();
    let second_key = nodes[1].wireguard_key().unwrap();
    assert!(nodes[0].wireguard_peers().unwrap().contains(&second_key));
    let removed = nodes[0].peers(&["remove", &second]).unwrap();
    assert!(removed.contains("the running node has it"), "{removed}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while nodes[0].wireguard_peers().unwrap().contains(&second_key) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the removed peer's entry stayed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(peer_block(&nodes[0].status().unwrap(), &nodes[1].id).is_none());
    assert!(!ping_once(&nodes[0].ns, &nodes[1].overlay().v4.to_string()));
    // The others stay; nothing restarted.
    ping_until(&nodes[0].ns, &nodes[2].overlay().v4.to_string())
        .await
        .unwrap();
    assert!(nodes[0].running());
    // The file has the change, so it lasts.
    let file = std::fs::read_to_string(nodes[0].dir().join("flnode.toml")).unwrap();
    assert!(
        file.contains(&fourth) && file.contains("fourth") && !file.contains(&second),
        "{file}"
    );
    assert!(
        nodes[0].peers(&["remove", &second]).is_err(),
        "removing twice is an error"
    );
}

#[tokio::test]
async fn a_node_not_on_the_allow_lists_gets_no_wireguard_entry() {
    if !ready("a_node_not_on_the_allow_lists_gets_no_wireguard_entry") {
        return;
    }
    let mesh = Mesh::new(3).unwrap();
    let (_server, url) = signal(&mesh).await;
    let mut nodes = nodes(&mesh);
    let (a, b) = (nodes[0].id, nodes[1].id);
    nodes[0].start(&url, &[b], USERSPACE).unwrap();
    nodes[1].start(&url, &[a], USERSPACE).unwrap();
    // The stranger allows both; neither allows it.
    nodes[2].start(&url, &[a, b], USERSPACE).unwrap();
    nodes[0].wait_connected(&[b]).await.unwrap();
    nodes[2].wait_up().await.unwrap();
    let stranger_key = nodes[2].wireguard_key().unwrap();
    // Long enough for the stranger to have tried: its setups are refused.
    wait_for_refusals(&nodes[0]).await;
    for node in &nodes[..2] {
        let listed = node.wireguard_peers().unwrap();
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert!(!listed.contains(&stranger_key));
    }
    assert!(!ping_once(&nodes[2].ns, &nodes[0].overlay().v4.to_string()));
}

/// Waits until node `node` has refused a setup from a stranger.
async fn wait_for_refusals(node: &ManagedNode) {
    e2e::flnode::wait_for(node.dir(), "a stranger refused", |report| {
        report
            .split("strangers refused ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|count| count != "0")
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn the_kernel_backend_carries_the_tunnel_where_the_kernel_has_wireguard() {
    let test = "the_kernel_backend_carries_the_tunnel_where_the_kernel_has_wireguard";
    if !ready(test) {
        return;
    }
    let mesh = Mesh::new(2).unwrap();
    // The one skip allowed under CI: a kernel without WireGuard.
    let probe = mesh.wireguard_name(0);
    if let Err(error) = run_in(&mesh.hosts[0], &["ip", "link", "add", &probe, "type", "wireguard"]) {
        eprintln!("SKIPPED {test}: the kernel has no WireGuard (`ip link add {probe} type wireguard`: {error})");
        return;
    }
    run_in(&mesh.hosts[0], &["ip", "link", "del", &probe]).unwrap();
    let (_server, url) = signal(&mesh).await;
    let mut nodes = nodes(&mesh);
    start_all(&mut nodes, &url, |_| vec!["--wg-backend", "kernel"]);
    ping_until(&nodes[0].ns, &nodes[1].overlay().v4.to_string())
        .await
        .unwrap();
    nodes[0].wait_connected(&[nodes[1].id]).await.unwrap();
    assert!(nodes[0].status().unwrap().contains("backend kernel"));
    nodes[0].terminate().await.unwrap();
    assert!(!nodes[0].interface_exists());
}

#[path = "flnode_managed/addresses.rs"]
mod addresses;
#[path = "flnode_managed/errors.rs"]
mod errors;
#[path = "flnode_managed/halves.rs"]
mod halves;
#[path = "flnode_managed/lifecycle.rs"]
mod lifecycle;
