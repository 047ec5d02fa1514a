use std::collections::HashSet;

use proptest::prelude::*;

use super::*;

/// `datagram` as the two messages a sender puts on the channel.
fn halves_of(datagram: &[u8], id: u32) -> (Vec<u8>, Vec<u8>) {
    let cut = split_at(datagram.len());
    let first = [&header(Half::First, id)[..], &datagram[..cut]].concat();
    let second = [&header(Half::Second, id)[..], &datagram[cut..]].concat();
    (first, second)
}

fn joined(first: &[u8], second: &[u8]) -> Vec<u8> {
    [&first[HEADER_LEN..], &second[HEADER_LEN..]].concat()
}

/// A WireGuard data message's first bytes: type 4, three zero bytes.
fn wireguard_datagram(len: usize, fill: u8) -> Vec<u8> {
    let mut datagram = vec![fill; len];
    datagram[..4].copy_from_slice(&[4, 0, 0, 0]);
    datagram
}

#[test]
fn a_full_size_datagram_of_a_1420_mtu_interface_becomes_two_equal_messages() {
    let datagram = wireguard_datagram(1452, 7);
    let (first, second) = halves_of(&datagram, 9);
    assert_eq!((first.len(), second.len()), (731, 731));
    assert_eq!(
        Message::of(&first),
        Message::Half {
            half: Half::First,
            id: 9
        }
    );
    assert_eq!(
        Message::of(&second),
        Message::Half {
            half: Half::Second,
            id: 9
        }
    );
    assert_eq!(joined(&first, &second), datagram);
}

#[test]
fn wireguard_messages_of_every_type_read_as_whole() {
    for message_type in 1..=4u8 {
        assert_eq!(Message::of(&[message_type, 0, 0, 0, 1, 2]), Message::Whole);
    }
    assert_eq!(Message::of(&[]), Message::Whole);
}

#[test]
fn a_marker_without_its_header_or_with_an_oversized_half_is_malformed() {
    assert_eq!(Message::of(&[FIRST]), Message::Malformed);
    assert_eq!(Message::of(&[SECOND, 0, 0, 1]), Message::Malformed);
    assert!(matches!(Message::of(&[FIRST, 0, 0, 0, 1]), Message::Half { .. }));
    let mut largest = vec![0; HEADER_LEN + MAX_HALF_BYTES];
    largest[0] = FIRST;
    assert!(matches!(Message::of(&largest), Message::Half { .. }));
    largest.push(0);
    assert_eq!(Message::of(&largest), Message::Malformed);
}

#[test]
fn an_odd_length_puts_the_extra_byte_in_the_first_half() {
    let datagram: Vec<u8> = (0..101).collect();
    let (first, second) = halves_of(&datagram, 0);
    assert_eq!((first.len() - HEADER_LEN, second.len() - HEADER_LEN), (51, 50));
    assert_eq!(joined(&first, &second), datagram);
}

#[test]
fn ids_count_up_and_wrap() {
    let mut ids = Ids(u32::MAX - 1);
    assert_eq!([ids.take(), ids.take(), ids.take()], [u32::MAX - 1, u32::MAX, 0]);
}

#[test]
fn halves_join_in_either_order_and_only_with_their_own_connection() {
    let now = Instant::now();
    let mut reassembly = Reassembly::new(ReassemblyLimits::default());
    let step = reassembly.on_half(1u8, Half::Second, 5, "b", now);
    assert_eq!(
        step,
        Step {
            joined: None,
            dropped: 0
        }
    );
    // The same id from another connection is another datagram.
    assert_eq!(reassembly.on_half(2, Half::First, 5, "x", now).joined, None);
    let step = reassembly.on_half(1, Half::First, 5, "a", now);
    assert_eq!(
        step,
        Step {
            joined: Some(("a", "b")),
            dropped: 0
        }
    );
    assert_eq!(reassembly.len(), 1);
    assert_eq!(reassembly.forget(2), 1);
    assert!(reassembly.is_empty());
}

#[test]
fn a_repeated_half_replaces_the_one_held() {
    let now = Instant::now();
    let mut reassembly = Reassembly::new(ReassemblyLimits::default());
    let _ = reassembly.on_half(0u8, Half::First, 1, "old", now);
    let step = reassembly.on_half(0, Half::First, 1, "new", now);
    assert_eq!(
        step,
        Step {
            joined: None,
            dropped: 1
        }
    );
    assert_eq!(
        reassembly.on_half(0, Half::Second, 1, "b", now).joined,
        Some(("new", "b"))
    );
}

#[test]
fn a_half_alone_longer_than_the_age_limit_is_dropped() {
    let start = Instant::now();
    let limits = ReassemblyLimits {
        max_held: 8,
        max_age: Duration::from_millis(100),
    };
    let mut reassembly = Reassembly::new(limits);
    let _ = reassembly.on_half(0u8, Half::First, 1, (), start);
    let _ = reassembly.on_half(0, Half::First, 2, (), start + Duration::from_millis(60));
    assert_eq!(
        reassembly.expire(start + Duration::from_millis(100)),
        0,
        "at the limit it still waits"
    );
    // Its partner comes too late: the first half is gone, the second waits.
    let step = reassembly.on_half(0, Half::Second, 1, (), start + Duration::from_millis(101));
    assert_eq!(
        step,
        Step {
            joined: None,
            dropped: 1
        }
    );
    assert_eq!(reassembly.len(), 2);
}

#[test]
fn a_full_table_drops_its_oldest_half() {
    let now = Instant::now();
    let limits = ReassemblyLimits {
        max_held: 3,
        max_age: Duration::from_secs(1),
    };
    let mut reassembly = Reassembly::new(limits);
    for id in 0..3 {
        assert_eq!(reassembly.on_half(0u8, Half::First, id, id, now).dropped, 0);
    }
    assert_eq!(reassembly.on_half(0, Half::First, 3, 3, now).dropped, 1);
    assert_eq!(
        reassembly.on_half(0, Half::Second, 0, 0, now).joined,
        None,
        "id 0 was pushed out"
    );
    assert_eq!(reassembly.on_half(0, Half::Second, 3, 3, now).joined, Some((3, 3)));
}

#[test]
fn with_no_room_at_all_every_lone_half_is_dropped() {
    let now = Instant::now();
    let limits = ReassemblyLimits {
        max_held: 0,
        max_age: Duration::from_secs(1),
    };
    let mut reassembly = Reassembly::new(limits);
    assert_eq!(
        reassembly.on_half(0u8, Half::First, 0, (), now),
        Step {
            joined: None,
            dropped: 1
        }
    );
    assert!(reassembly.is_empty());
}

/// One half as the receiver sees it: its connection, datagram, which half.
#[derive(Debug, Clone, Copy)]
struct Arrival {
    conn: u8,
    datagram: u32,
    half: Half,
}

fn arrivals() -> impl Strategy<Value = (Vec<Arrival>, usize)> {
    // Datagrams 0..n from two connections, each half lost or not, then
    // shuffled within a window (how far the path may reorder).
    (
        1usize..60,
        0usize..8,
        prop::collection::vec(any::<(bool, bool, u8)>(), 60),
    )
        .prop_flat_map(|(n, window, losses)| {
            let mut sent = Vec::new();
            for (datagram, &(lose_first, lose_second, conn)) in losses.iter().take(n).enumerate() {
                let conn = conn % 2;
                let datagram = datagram as u32;
                if !lose_first {
                    sent.push(Arrival {
                        conn,
                        datagram,
                        half: Half::First,
                    });
                }
                if !lose_second {
                    sent.push(Arrival {
                        conn,
                        datagram,
                        half: Half::Second,
                    });
                }
            }
            let len = sent.len();
            (Just(sent), prop::collection::vec(0..=window, len), Just(window)).prop_map(move |(sent, delays, _)| {
                // Each arrival moves later by up to `window` places.
                let mut keyed: Vec<(usize, usize, Arrival)> = sent
                    .into_iter()
                    .enumerate()
                    .map(|(at, a)| (at + delays[at], at, a))
                    .collect();
                keyed.sort_by_key(|&(key, at, _)| (key, at));
                (keyed.into_iter().map(|(_, _, a)| a).collect(), window)
            })
        })
}

proptest! {
    /// Whatever arrives, in whatever order within the window: every
    /// datagram comes out whole and at most once, never one whose half was
    /// lost; the table never holds more than its limit; and each half is
    /// either joined, still held, or counted as dropped.
    #[test]
    fn reassembly_gives_exactly_the_datagrams_whose_halves_both_came(
        (arrivals, window) in arrivals(),
        max_held in 0usize..6,
    ) {
        let now = Instant::now();
        let limits = ReassemblyLimits { max_held, max_age: Duration::from_secs(1) };
        let mut reassembly = Reassembly::new(limits);
        let mut out = HashSet::new();
        let mut dropped = 0;
        let complete: HashSet<(u8, u32)> = arrivals
            .iter()
            .filter(|a| a.half == Half::First)
            .filter(|a| arrivals.iter().any(|b| b.half == Half::Second && (b.conn, b.datagram) == (a.conn, a.datagram)))
            .map(|a| (a.conn, a.datagram))
            .collect();
        for a in &arrivals {
            let step = reassembly.on_half(a.conn, a.half, a.datagram, (a.conn, a.datagram, a.half), now);
            dropped += step.dropped;
            if let Some((first, second)) = step.joined {
                prop_assert_eq!((first.2, second.2), (Half::First, Half::Second));
                prop_assert_eq!((first.0, first.1), (second.0, second.1));
                prop_assert!(complete.contains(&(first.0, first.1)));
                prop_assert!(out.insert((first.0, first.1)), "joined twice");
            }
            prop_assert!(reassembly.len() <= max_held);
        }
        prop_assert_eq!(out.len() * 2 + reassembly.len() + dropped, arrivals.len());
        // With room for what the window can have in flight, nothing whose
        // halves both came is lost.
        if max_held > 2 * window + 1 {
            prop_assert_eq!(out, complete);
        }
    }
}
