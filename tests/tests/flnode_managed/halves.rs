//! Datagrams too large for one SCTP packet (`flproto::halves`): with the
//! interface at the common MTU of 1420, a full-size packet crosses as two
//! UDP datagrams of equal size, and as SCTP's full chunk and remainder to
//! a node that does not join halves (`--held-halves 0`, or an older one).

use super::*;

/// `ping -s 1392` with DF at MTU 1420: a 1452-byte WireGuard datagram.
const FULL_SIZE_PING: u32 = 1420 - 28;
/// Each half on the wire: 5 bytes of header and 726 of the datagram in a
/// DATA chunk (16, padded to 4 bytes) of an SCTP packet (12), in a DTLS
/// record (37).
const HALF_ON_THE_WIRE: usize = (5 + 1452 / 2 + 16usize).next_multiple_of(4) + 12 + 37;
const PINGS: usize = 50;

/// Two nodes at MTU 1420, node 1 started with `extra_for_1`.
async fn pair_at_1420(extra_for_1: &[&str]) -> (Mesh, ServerProcess, Vec<ManagedNode>) {
    let mesh = Mesh::new(2).unwrap();
    let (server, url) = signal(&mesh).await;
    let mut nodes = nodes(&mesh);
    start_all(&mut nodes, &url, |index| {
        let extra = if index == 1 { extra_for_1 } else { &[] };
        [USERSPACE, extra].concat()
    });
    for node in &nodes {
        node.wait_up().await.unwrap();
        run_in(&node.ns, &["ip", "link", "set", "dev", &node.interface, "mtu", "1420"]).unwrap();
    }
    (mesh, server, nodes)
}

#[tokio::test]
async fn a_full_size_packet_of_a_1420_mtu_interface_crosses_as_two_equal_datagrams() {
    let test = "a_full_size_packet_of_a_1420_mtu_interface_crosses_as_two_equal_datagrams";
    if !ready(test) || !tcpdump_available(test) {
        return;
    }
    let (mesh, _server, nodes) = pair_at_1420(&[]).await;
    let target = nodes[1].overlay().v4.to_string();
    ping_until(&nodes[0].ns, &target).await.unwrap();
    let lengths = udp_lengths_during_pings(&mesh, &nodes[0].ns, &target, FULL_SIZE_PING, PINGS).await;
    let halves = lengths.iter().filter(|&&length| length == HALF_ON_THE_WIRE).count();
    assert!(
        halves >= 2 * PINGS,
        "{halves} datagrams of {HALF_ON_THE_WIRE} bytes for {PINGS} pings: {lengths:?}"
    );
    assert!(lengths.iter().all(|&length| length <= HALF_ON_THE_WIRE), "{lengths:?}");
    // Joined on the other side: the pings were answered (counted by
    // WireGuard on the way back), and no half was dropped.
    let report = nodes[1].status().unwrap();
    let block = peer_block(&report, &nodes[0].id).unwrap();
    assert!(block.contains(" 0 halves"), "{block}");
}

#[tokio::test]
async fn a_node_that_does_not_join_halves_is_sent_whole_datagrams() {
    let test = "a_node_that_does_not_join_halves_is_sent_whole_datagrams";
    if !ready(test) || !tcpdump_available(test) {
        return;
    }
    let (mesh, _server, nodes) = pair_at_1420(&["--held-halves", "0"]).await;
    let target = nodes[1].overlay().v4.to_string();
    ping_until(&nodes[0].ns, &target).await.unwrap();
    let lengths = udp_lengths_during_pings(&mesh, &nodes[0].ns, &target, FULL_SIZE_PING, PINGS).await;
    // SCTP's split: a full chunk (1377 on the wire) and the rest.
    let full = lengths.iter().filter(|&&length| length == 1377).count();
    assert!(full >= PINGS, "{full} full SCTP packets for {PINGS} pings: {lengths:?}");
    assert!(!lengths.contains(&HALF_ON_THE_WIRE), "{lengths:?}");
}
