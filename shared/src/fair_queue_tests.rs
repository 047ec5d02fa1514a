use std::collections::VecDeque;

use proptest::prelude::*;

use super::*;

#[test]
fn a_lone_sender_may_fill_the_whole_queue_and_then_finds_it_full() {
    let mut queue = FairQueue::new(4);
    assert!((0..4).all(|n| queue.offer(1u8, n) == Offered::Queued));
    assert_eq!(queue.offer(1, 4), Offered::Dropped(QueueDrop::Full));
    assert_eq!((queue.len(), queue.queued_by(1)), (4, 4));
    assert_eq!(queue.pop(), Some(0), "first in, first out");
}

#[test]
fn in_a_full_shared_queue_the_sender_with_the_most_loses_its_oldest_frame() {
    let mut queue = FairQueue::new(4);
    (0..3).for_each(|n| assert_eq!(queue.offer(1u8, n), Offered::Queued));
    assert_eq!(queue.offer(2, 10), Offered::Queued);
    assert_eq!(queue.offer(2, 11), Offered::Displaced { sender: 1, dropped: 0 });
    assert_eq!((queue.queued_by(1), queue.queued_by(2)), (2, 2));
    // Now equal: a third from either would make it the one with the most.
    assert_eq!(queue.offer(2, 12), Offered::Dropped(QueueDrop::OverShare));
    assert_eq!(queue.offer(1, 3), Offered::Dropped(QueueDrop::OverShare));
    let displaced = queue.offer(3, 20);
    assert!(
        matches!(displaced, Offered::Displaced { sender: 1 | 2, .. }),
        "{displaced:?}"
    );
    let order: Vec<_> = std::iter::from_fn(|| queue.pop()).collect();
    assert_eq!(order.len(), 4);
    assert_eq!(order.last(), Some(&20), "the rest leave in the order they came");
}

#[test]
fn clearing_frees_the_queue_and_its_books() {
    let mut queue = FairQueue::new(8);
    (0..5).for_each(|n| {
        let _ = queue.offer(n % 2, n);
    });
    assert_eq!(queue.clear(), 5);
    assert!(queue.is_empty());
    assert_eq!(queue.queued_by(0), 0);
    assert_eq!(queue.frames.capacity() + queue.books.capacity(), 0);
}

/// One step of a receiver's life: a frame from `sender`, or the receiver
/// writing out its oldest frame.
#[derive(Debug, Clone)]
enum Step {
    Send(u8),
    Write,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0u8..6).prop_map(Step::Send),
        1 => Just(Step::Write),
    ]
}

proptest! {
    /// Against a model: the queue never holds more than its bound, its
    /// books match what it holds, frames leave in arrival order, nothing
    /// is dropped while there is room, and a frame is dropped (its own or
    /// another's displaced) only from a sender that would otherwise have
    /// at least as many queued as anyone, so never one that would stay
    /// within an equal split of the queue.
    #[test]
    fn drops_only_ever_hit_the_sender_with_the_most(
        bound in 1usize..24,
        steps in proptest::collection::vec(step(), 0..400),
    ) {
        let mut queue = FairQueue::new(bound);
        let mut model: VecDeque<(u8, u32)> = VecDeque::new();
        for (serial, step) in steps.into_iter().enumerate() {
            let serial = serial as u32;
            match step {
                Step::Send(sender) => {
                    let count = |who: u8| model.iter().filter(|(s, _)| *s == who).count();
                    let own_after = count(sender) + 1;
                    let most_other = (0..6).filter(|&s| s != sender).map(count).max().unwrap_or(0);
                    let senders = (0..6).filter(|&s| s == sender || count(s) > 0).count();
                    let full = model.len() == bound;
                    match queue.offer(sender, serial) {
                        Offered::Queued => {
                            prop_assert!(!full);
                            model.push_back((sender, serial));
                        }
                        Offered::Displaced { sender: loser, dropped } => {
                            prop_assert!(full);
                            prop_assert!(count(loser) > own_after, "only a sender with more than the newcomer");
                            prop_assert_eq!(count(loser), most_other);
                            let index = model.iter().position(|(s, _)| *s == loser).unwrap();
                            prop_assert_eq!(model.remove(index), Some((loser, dropped)), "its oldest frame");
                            model.push_back((sender, serial));
                        }
                        Offered::Dropped(reason) => {
                            prop_assert!(full, "dropped while there was room");
                            prop_assert!(own_after >= most_other);
                            prop_assert!(own_after * senders > bound, "dropped within an equal split");
                            let alone = count(sender) == model.len();
                            prop_assert_eq!(reason == QueueDrop::Full, alone);
                        }
                    }
                }
                Step::Write => prop_assert_eq!(queue.pop(), model.pop_front().map(|(_, frame)| frame)),
            }
            prop_assert!(queue.len() <= bound);
            prop_assert_eq!(queue.len(), model.len());
            for sender in 0..6 {
                let queued = model.iter().filter(|(s, _)| *s == sender).count();
                prop_assert_eq!(queue.queued_by(sender), queued);
            }
            prop_assert!(queue.books.len() <= queue.len());
        }
    }

    /// An honest sender that sends at most its equal split (with the
    /// flooders) between two reads of the receiver never loses a frame,
    /// however the flooders send.
    #[test]
    fn an_honest_sender_within_its_split_loses_nothing_to_flooders(
        bound in 4usize..64,
        flooders in 1u8..4,
        rounds in proptest::collection::vec((0usize..200, 0usize..8, 1usize..64), 1..40),
    ) {
        let honest = 0u8;
        let split = bound / (usize::from(flooders) + 1);
        let mut queue = FairQueue::new(bound);
        for (flood, reads, sends) in rounds {
            for n in 0..flood {
                let flooder = 1 + (n % usize::from(flooders)) as u8;
                let _ = queue.offer(flooder, false);
            }
            let room = split.saturating_sub(queue.queued_by(honest));
            for _ in 0..sends.min(room) {
                let offered = queue.offer(honest, true);
                let lost_own = matches!(offered, Offered::Dropped(_));
                prop_assert!(!lost_own, "the honest frame was dropped");
                let displaced_own = matches!(offered, Offered::Displaced { sender, .. } if sender == honest);
                prop_assert!(!displaced_own);
            }
            for _ in 0..reads {
                queue.pop();
            }
        }
    }
}
