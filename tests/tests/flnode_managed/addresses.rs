//! Overlay addresses and packet sizes on the wire: a full-size packet is
//! one UDP datagram; `--address` is learnt by peers, and clashes are
//! routed to no one.

use super::*;

/// A full-size inner packet (1280 bytes, so `ping -s 1252` with DF) is
/// one UDP datagram on the wire: one SCTP chunk in one DTLS record.
#[tokio::test]
async fn a_full_size_packet_crosses_as_one_udp_datagram() {
    let test = "a_full_size_packet_crosses_as_one_udp_datagram";
    if !ready(test) || !tcpdump_available(test) {
        return;
    }
    let mesh = Mesh::new(2).unwrap();
    let (_server, url) = signal(&mesh).await;
    let mut nodes = nodes(&mesh);
    start_all(&mut nodes, &url, |_| USERSPACE.to_vec());
    let target = nodes[1].overlay().v4.to_string();
    ping_until(&nodes[0].ns, &target).await.unwrap();
    const PINGS: usize = 50;
    let lengths = udp_lengths_during_pings(&mesh, &nodes[0].ns, &target, 1252, PINGS).await;
    // A too-large one is refused on this side, not fragmented.
    assert!(run_in(&nodes[0].ns, &["ping", "-M", "do", "-s", "1253", "-c", "1", &target]).is_err());
    let full = lengths.iter().filter(|&&length| length == 1377).count();
    assert!(
        full >= PINGS,
        "{full} datagrams of 1377 bytes (1340 SCTP + 37 DTLS) for {PINGS} pings: {lengths:?}"
    );
    assert!(lengths.iter().all(|&length| length <= 1377), "{lengths:?}");
}

/// `--address` is learnt by the peers over `ctl`; an address another node
/// holds is routed to neither, and the node stays reachable over IPv6.
#[tokio::test]
async fn announced_addresses_are_routed_and_clashing_ones_are_not() {
    if !ready("announced_addresses_are_routed_and_clashing_ones_are_not") {
        return;
    }
    let mesh = Mesh::new(3).unwrap();
    let (_server, url) = signal(&mesh).await;
    let mut nodes = nodes(&mesh);
    let moved = "100.64.77.77";
    // Node 2 claims node 0's derived IPv4 address.
    let taken = nodes[0].overlay().v4.to_string();
    let addresses = [vec![], vec!["--address", moved], vec!["--address", taken.as_str()]];
    start_all(&mut nodes, &url, |index| [USERSPACE, &addresses[index]].concat());
    // The moved address is routed (node 2's own IPv4 clashes, so it has
    // none its peers take packets from).
    ping_until(&nodes[0].ns, moved).await.unwrap();
    assert!(
        !ping_once(&nodes[0].ns, &nodes[1].overlay().v4.to_string()),
        "the old one is not"
    );
    // The taken one: node 0 keeps its own; node 1 routes it to node 0,
    // never to node 2; node 2 stays reachable over IPv6.
    e2e::flnode::wait_for(nodes[0].dir(), "a clash", |report| {
        peer_block(report, &nodes[2].id).is_some_and(|block| block.contains("clashes with this node"))
    })
    .await
    .unwrap();
    let report = nodes[1].status().unwrap();
    let block = peer_block(&report, &nodes[2].id).unwrap();
    assert!(block.contains(&format!("{taken} (clashes with peer")), "{block}");
    let routes = run_in(&nodes[1].ns, &["ip", "route", "get", &taken]).unwrap();
    assert!(routes.contains(&nodes[1].interface), "{routes}");
    ping_until(&nodes[1].ns, &taken).await.unwrap();
    // In WireGuard's own table, the address is node 0's alone.
    let allowed = run_in(&nodes[1].ns, &["wg", "show", &nodes[1].interface, "allowed-ips"]).unwrap();
    let holders: Vec<&str> = allowed
        .lines()
        .filter(|line| line.contains(&format!("{taken}/32")))
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert_eq!(holders, [nodes[0].wireguard_key().unwrap()], "{allowed}");
    ping_until(&nodes[0].ns, &nodes[2].overlay().v6.to_string())
        .await
        .unwrap();
    ping_until(&nodes[1].ns, &nodes[2].overlay().v6.to_string())
        .await
        .unwrap();
}
