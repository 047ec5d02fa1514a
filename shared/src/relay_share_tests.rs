use std::time::Duration;

use proptest::prelude::*;

use super::*;

const SHARE: RelayShare = RelayShare {
    frames: 4,
    bytes: 10_000,
};

#[test]
fn a_frame_over_either_budget_is_refused_and_booking_is_released() {
    let mut books = InFlight::default();
    assert!((0..4).all(|_| books.try_admit(1u64, 100, SHARE)));
    assert!(!books.try_admit(1, 100, SHARE), "fifth frame");
    assert!(books.try_admit(2, 9_000, SHARE), "another sender has its own share");
    assert!(!books.try_admit(2, 1_001, SHARE), "over the bytes");
    books.release(2, 9_000);
    books.release(1, 100);
    assert_eq!(books.of(1), (3, 300));
    (0..3).for_each(|_| books.release(1, 100));
    assert!(books.is_empty(), "drained books hold no memory");
}

#[test]
fn strikes_throttle_then_disconnect_and_are_forgiven_slowly() {
    let limits = AbuseLimits {
        throttle_after: 2,
        disconnect_after: 4,
        forgive_per_second: 1,
    };
    let start = Instant::now();
    let mut meter = AbuseMeter::default();
    assert_eq!(meter.standing(&limits, start), Standing::Good);
    assert_eq!(meter.strike(&limits, start), Standing::Good);
    assert_eq!(meter.strike(&limits, start), Standing::Throttled);
    assert_eq!(meter.standing(&limits, start + Duration::from_secs(2)), Standing::Good);
    let later = start + Duration::from_secs(2);
    (0..3).for_each(|_| {
        meter.strike(&limits, later);
    });
    assert_eq!(meter.strike(&limits, later), Standing::Disconnect);
}

/// One step of a receiver's life: a frame from `sender`, or the receiver
/// writing out its oldest queued frame.
#[derive(Debug, Clone)]
enum Step {
    Send { sender: u64, bytes: usize },
    Write,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0u64..4, 0usize..12_000).prop_map(|(sender, bytes)| Step::Send { sender, bytes }),
        1 => Just(Step::Write),
    ]
}

proptest! {
    #[test]
    fn no_sender_ever_has_more_than_its_share_queued(steps in proptest::collection::vec(step(), 0..300)) {
        let mut books = InFlight::default();
        let mut queue = std::collections::VecDeque::new();
        for step in steps {
            match step {
                Step::Send { sender, bytes } => {
                    if books.try_admit(sender, bytes, SHARE) {
                        queue.push_back((sender, bytes));
                    }
                }
                Step::Write => {
                    if let Some((sender, bytes)) = queue.pop_front() {
                        books.release(sender, bytes);
                    }
                }
            }
            for sender in 0..4 {
                let (frames, bytes) = books.of(sender);
                prop_assert!(frames <= SHARE.frames && bytes <= SHARE.bytes);
                let queued: Vec<_> = queue.iter().filter(|(s, _)| *s == sender).collect();
                prop_assert_eq!(frames, queued.len());
                prop_assert_eq!(bytes, queued.iter().map(|(_, b)| b).sum::<usize>());
            }
        }
        while let Some((sender, bytes)) = queue.pop_front() {
            books.release(sender, bytes);
        }
        prop_assert!(books.is_empty());
    }

    /// An honest sender sends bursts of at most its share of frames, each
    /// no larger than its share of bytes allows, and the receiver reads a
    /// burst before the next; a flooder shares the receiver meanwhile.
    /// The honest sender's frames are always admitted.
    #[test]
    fn an_honest_sender_is_never_struck_whatever_others_send(
        bursts in proptest::collection::vec((1usize..=4, 1usize..=2_500, 0usize..50), 1..40),
    ) {
        let limits = AbuseLimits::default();
        let start = Instant::now();
        let (honest, flooder) = (1u64, 2u64);
        let mut books = InFlight::default();
        let mut meter = AbuseMeter::default();
        let mut queue = Vec::new();
        for (index, (frames, bytes, flood)) in bursts.into_iter().enumerate() {
            let now = start + Duration::from_millis(index as u64 * 10);
            for _ in 0..flood {
                if books.try_admit(flooder, 5_000, SHARE) {
                    queue.push((flooder, 5_000));
                }
            }
            for _ in 0..frames {
                if books.try_admit(honest, bytes, SHARE) {
                    queue.push((honest, bytes));
                } else {
                    meter.strike(&limits, now);
                }
            }
            prop_assert_eq!(meter.standing(&limits, now), Standing::Good);
            // The receiver reads what is queued; the flooder's frames stay.
            queue.retain(|&(sender, bytes)| {
                if sender == honest {
                    books.release(sender, bytes);
                }
                sender != honest
            });
        }
    }

    /// A sender that keeps sending to a receiver that never reads, faster
    /// than strikes are forgiven, ends disconnected within a bounded number
    /// of frames, for any limits.
    #[test]
    fn a_sender_that_keeps_flooding_always_ends_disconnected(
        throttle_after in 1u32..20,
        extra in 1u32..40,
        share_frames in 1usize..32,
        gaps in proptest::collection::vec(0u64..500, 1..8),
    ) {
        let limits = AbuseLimits {
            throttle_after,
            disconnect_after: throttle_after + extra,
            forgive_per_second: 1,
        };
        let share = RelayShare { frames: share_frames, bytes: usize::MAX };
        let mut books = InFlight::default();
        let mut meter = AbuseMeter::default();
        let mut now = Instant::now();
        // Each frame past the share adds one strike and at most half of
        // one is forgiven before the next.
        let bound = share_frames + 2 * limits.disconnect_after as usize + 1;
        let mut disconnected = false;
        for sent in 0..bound {
            now += Duration::from_millis(gaps[sent % gaps.len()]);
            let standing = match meter.standing(&limits, now) {
                Standing::Good if books.try_admit(7u64, 1_000, share) => Standing::Good,
                _ => meter.strike(&limits, now),
            };
            if standing == Standing::Disconnect {
                disconnected = true;
                break;
            }
        }
        prop_assert!(disconnected);
    }
}
