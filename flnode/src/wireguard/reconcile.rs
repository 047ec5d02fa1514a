//! From the peer entries flnode wants and the ones the device has to the
//! changes that make the one the other; and the same for the routes to the
//! peers' overlay addresses. Pure: whatever the device holds (entries
//! someone else added, a listen port changed behind flnode's back) is
//! brought back to what the allow-list says.

use std::collections::BTreeSet;

use ipnet::IpNet;

use super::device::{PeerConfig, PeerOp, PeerView};
use super::key::WgKey;

/// The operations that turn `actual` into `wanted`: a `Set` for every
/// wanted entry that is missing or differs in anything flnode sets, a
/// `Remove` for every entry flnode does not want. Entries that match are
/// left alone, so their handshakes and counters stay, except those in
/// `renew`, and those whose endpoint went astray (only a fresh entry has
/// none): they are removed and set again, which also means a fresh
/// handshake at once on the side that starts them.
pub fn peer_ops(wanted: &[PeerConfig], actual: &[PeerView], renew: &[WgKey]) -> Vec<PeerOp> {
    let mut ops = Vec::new();
    for peer in wanted {
        match actual.iter().find(|view| view.key == peer.key) {
            None => ops.push(PeerOp::Set(peer.clone())),
            Some(view) if renew.contains(&view.key) || !peer.endpoint_fits(view.endpoint) => {
                ops.push(PeerOp::Remove(view.key));
                ops.push(PeerOp::Set(peer.clone()));
            }
            Some(view)
                if view.keepalive != peer.keepalive() || sorted(&view.allowed_ips) != sorted(&peer.allowed_ips) =>
            {
                ops.push(PeerOp::Set(peer.clone()))
            }
            Some(_) => {}
        }
    }
    for view in actual {
        if !wanted.iter().any(|peer| peer.key == view.key) {
            ops.push(PeerOp::Remove(view.key));
        }
    }
    ops
}

fn sorted(nets: &[IpNet]) -> BTreeSet<IpNet> {
    nets.iter().copied().collect()
}

/// A change to the routes through the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteOp {
    Add(IpNet),
    Remove(IpNet),
}

/// Routes follow allowed IPs: a host route through the interface for every
/// address some wanted peer may send from, and none for any other
/// (`actual` holds only the host routes to overlay addresses flnode
/// manages, never the kernel's own).
pub fn route_ops(wanted: &[PeerConfig], actual: &[IpNet]) -> Vec<RouteOp> {
    let wanted: BTreeSet<IpNet> = wanted
        .iter()
        .flat_map(|peer| peer.allowed_ips.iter().copied())
        .collect();
    let actual: BTreeSet<IpNet> = actual.iter().copied().collect();
    let add = wanted.difference(&actual).map(|net| RouteOp::Add(*net));
    let remove = actual.difference(&wanted).map(|net| RouteOp::Remove(*net));
    add.chain(remove).collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::device::Handshake;
    use super::*;

    fn config(byte: u8, ips: &[&str]) -> PeerConfig {
        PeerConfig {
            key: WgKey([byte; 32]),
            endpoint: format!("127.0.0.1:{}", 40000 + u16::from(byte)).parse().unwrap(),
            allowed_ips: ips.iter().map(|ip| ip.parse().unwrap()).collect(),
            handshake: Handshake::Starts { keepalive: 25 },
        }
    }

    fn view_of(config: &PeerConfig) -> PeerView {
        PeerView {
            key: config.key,
            endpoint: config.set_endpoint(),
            allowed_ips: config.allowed_ips.iter().rev().copied().collect(),
            keepalive: config.keepalive(),
            last_handshake: None,
            rx_bytes: 1,
            tx_bytes: 2,
        }
    }

    #[test]
    fn a_matching_table_needs_nothing() {
        let wanted = [config(1, &["100.64.0.1/32", "fd50:e038:65e7::1/128"]), config(2, &[])];
        let actual: Vec<PeerView> = wanted.iter().map(view_of).collect();
        assert_eq!(peer_ops(&wanted, &actual, &[]), []);
    }

    #[test]
    fn missing_entries_are_added_and_unwanted_ones_removed() {
        let wanted = [config(1, &["100.64.0.1/32"])];
        let stranger = view_of(&config(9, &["100.64.0.9/32"]));
        assert_eq!(
            peer_ops(&wanted, &[stranger], &[]),
            [PeerOp::Set(wanted[0].clone()), PeerOp::Remove(WgKey([9; 32]))]
        );
    }

    #[test]
    fn an_entry_that_drifted_is_set_again() {
        let wanted = config(1, &["100.64.0.1/32"]);
        let mut no_keepalive = view_of(&wanted);
        no_keepalive.keepalive = None;
        let mut more_ips = view_of(&wanted);
        more_ips.allowed_ips.push("100.64.0.2/32".parse().unwrap());
        for drifted in [no_keepalive, more_ips] {
            assert_eq!(
                peer_ops(std::slice::from_ref(&wanted), &[drifted], &[]),
                [PeerOp::Set(wanted.clone())]
            );
        }
        // An endpoint elsewhere: a fresh entry.
        let mut moved = view_of(&wanted);
        moved.endpoint = Some("127.0.0.1:1".parse().unwrap());
        assert_eq!(
            peer_ops(std::slice::from_ref(&wanted), &[moved], &[]),
            [PeerOp::Remove(wanted.key), PeerOp::Set(wanted.clone())]
        );
    }

    #[test]
    fn a_renewed_entry_is_removed_and_set_again_even_when_it_matches() {
        let wanted = [config(1, &["100.64.0.1/32"]), config(2, &[])];
        let actual: Vec<PeerView> = wanted.iter().map(view_of).collect();
        assert_eq!(
            peer_ops(&wanted, &actual, &[WgKey([1; 32])]),
            [PeerOp::Remove(WgKey([1; 32])), PeerOp::Set(wanted[0].clone())]
        );
        // Not there yet: just set.
        assert_eq!(
            peer_ops(&wanted[..1], &[], &[WgKey([1; 32])]),
            [PeerOp::Set(wanted[0].clone())]
        );
    }

    #[test]
    fn an_answering_entry_has_no_endpoint_until_the_peer_brings_it() {
        let answering = PeerConfig {
            handshake: Handshake::Answers,
            ..config(1, &["100.64.0.1/32"])
        };
        let fresh = view_of(&answering);
        assert_eq!(fresh.endpoint, None);
        assert_eq!(
            peer_ops(std::slice::from_ref(&answering), std::slice::from_ref(&fresh), &[]),
            []
        );
        let learnt = PeerView {
            endpoint: Some(answering.endpoint),
            ..fresh.clone()
        };
        assert_eq!(peer_ops(std::slice::from_ref(&answering), &[learnt], &[]), []);
        let astray = PeerView {
            endpoint: Some("192.0.2.1:51820".parse().unwrap()),
            ..fresh
        };
        assert_eq!(
            peer_ops(std::slice::from_ref(&answering), &[astray], &[]),
            [PeerOp::Remove(answering.key), PeerOp::Set(answering.clone())]
        );
    }

    #[test]
    fn routes_follow_the_wanted_allowed_ips() {
        let wanted = [config(1, &["100.64.0.1/32", "fd50:e038:65e7::1/128"])];
        let stale: IpNet = "100.64.0.9/32".parse().unwrap();
        let kept: IpNet = "100.64.0.1/32".parse().unwrap();
        assert_eq!(
            route_ops(&wanted, &[kept, stale]),
            [
                RouteOp::Add("fd50:e038:65e7::1/128".parse().unwrap()),
                RouteOp::Remove(stale)
            ]
        );
    }

    proptest! {
        /// Whatever the device holds, applying the operations gives exactly
        /// the wanted table, and a second pass finds nothing to do.
        #[test]
        fn applying_the_ops_reaches_the_wanted_table(
            wanted_keys in proptest::collection::btree_set(0u8..8, 0..6),
            actual_keys in proptest::collection::btree_set(0u8..8, 0..6),
            drift in any::<u8>(),
        ) {
            let wanted: Vec<PeerConfig> = wanted_keys.iter().map(|&k| config(k, &["100.64.0.1/32"])).collect();
            let mut actual: Vec<PeerView> = actual_keys
                .iter()
                .map(|&k| {
                    let mut view = view_of(&config(k, &["100.64.0.1/32"]));
                    if drift & (1 << k) != 0 {
                        view.keepalive = None;
                    }
                    view
                })
                .collect();
            for op in peer_ops(&wanted, &actual, &[]) {
                match op {
                    PeerOp::Set(peer) => {
                        actual.retain(|view| view.key != peer.key);
                        actual.push(view_of(&peer));
                    }
                    PeerOp::Remove(key) => actual.retain(|view| view.key != key),
                }
            }
            let mut keys: Vec<u8> = actual.iter().map(|view| view.key.0[0]).collect();
            keys.sort();
            prop_assert_eq!(keys, wanted_keys.iter().copied().collect::<Vec<_>>());
            prop_assert!(peer_ops(&wanted, &actual, &[]).is_empty());
        }
    }
}
