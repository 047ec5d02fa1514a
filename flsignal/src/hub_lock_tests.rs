//! The hub's locks under concurrent use: relays offered with the registry
//! held, while nodes leave and come back (dropping and making queues under
//! the registry), news is flushed, and receivers take frames off their
//! queues and un-book them (`in_flight`) without the registry, as the
//! connection drivers do.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use flproto::announce::VerifiedNode;
use flproto::identity::NodeKey;
use flproto::node_info::NodeInfoV3;
use flproto::presence::PresenceConfig;
use flproto::relay_share::RelayShare;
use flproto::NodeId;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::hub::{Hub, Outbound, PeerHandle};

/// Nodes taking part; each relays to the next.
const NODES: usize = 6;
/// Rounds each thread goes through.
const ROUNDS: usize = 2_000;
/// Only "it finished at all": a deadlock never does.
const DEADLINE: Duration = Duration::from_secs(120);

fn node(key: &NodeKey) -> VerifiedNode {
    VerifiedNode {
        info: NodeInfoV3 {
            name: "n".into(),
            client: "test".into(),
            pubkey: key.id(),
            modules: String::new(),
            sealed_setup: None,
        },
        bound: false,
    }
}

/// Takes what is queued for one connection and un-books it, as the
/// driver's write does, until told to stop.
fn receive(inbox: flume::Receiver<Outbound>, handle: PeerHandle, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        if let Ok(outbound) = inbox.recv_timeout(Duration::from_millis(1)) {
            handle.written(outbound.sender, outbound.text.len());
        }
    }
}

#[test]
fn relays_joins_leaves_news_and_writes_on_many_threads_never_deadlock() {
    let hub = Arc::new(Hub::new(PresenceConfig::default()));
    let keys: Arc<Vec<NodeKey>> = Arc::new((0..NODES).map(|_| NodeKey::generate()).collect());
    let ids: Arc<Vec<NodeId>> = Arc::new(keys.iter().map(NodeKey::id).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let (mut receivers, mut workers) = (Vec::new(), Vec::new());
    // The first half of the nodes stay and keep relaying to all others.
    for sender in 0..NODES / 2 {
        let (outbox, inbox) = flume::bounded(16);
        let handle = PeerHandle::new(sender as u64, outbox);
        hub.register(&node(&keys[sender]), handle.clone());
        let stop = stop.clone();
        receivers.push(std::thread::spawn(move || receive(inbox, handle, stop)));
        let (hub, ids) = (hub.clone(), ids.clone());
        workers.push(std::thread::spawn(move || {
            let text = Utf8Bytes::from_static("{\"PeerSetup\":{}}");
            for round in 0..ROUNDS {
                let to = &ids[(sender + 1 + round) % NODES];
                hub.relay(
                    sender as u64,
                    &ids[sender],
                    to,
                    text.clone(),
                    Instant::now(),
                    RelayShare::default(),
                );
            }
        }));
    }
    // The other half leave and come back on new connections, their old
    // queues dropped under the registry.
    for churner in NODES / 2..NODES {
        let (hub, keys, ids) = (hub.clone(), keys.clone(), ids.clone());
        workers.push(std::thread::spawn(move || {
            for round in 0..ROUNDS {
                let conn = (churner * ROUNDS + round + NODES) as u64;
                let (outbox, inbox) = flume::bounded(16);
                let handle = PeerHandle::new(conn, outbox);
                hub.register(&node(&keys[churner]), handle.clone());
                while let Ok(outbound) = inbox.try_recv() {
                    handle.written(outbound.sender, outbound.text.len());
                }
                hub.leave(&ids[churner], conn);
            }
        }));
    }
    {
        let (hub, ids) = (hub.clone(), ids.clone());
        workers.push(std::thread::spawn(move || {
            for _ in 0..ROUNDS {
                hub.flush_news();
                let _ = hub.node_list(&ids[0]);
            }
        }));
    }
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let panicked = workers
            .into_iter()
            .map(|worker| worker.join())
            .any(|joined| joined.is_err());
        let _ = done.send(panicked);
    });
    let panicked = finished.recv_timeout(DEADLINE).expect("the hub deadlocked");
    stop.store(true, Ordering::Relaxed);
    for receiver in receivers {
        receiver.join().expect("a receiver panicked");
    }
    assert!(!panicked, "a worker panicked");
    assert_eq!(hub.online(), NODES / 2, "the churners left last");
}
