//! flbench-lists: what a node-list or presence-news frame costs to render
//! through the wire types (`flproto::message::ListingFrame`, what flsignal
//! does) against string concatenation of the same stored `NodeInfo` JSON
//! (what flsignal did before: the reference function below is that code).
//!
//!   cargo build --release -p e2e --bin flbench_lists
//!   ./target/release/flbench_lists [runs]
//!
//! Each run renders the same frames both ways, alternated in rounds so
//! that both see the same machine load, and checks that both give the
//! same text. Frames: a full `ListIDsReply` of 100 nodes (the default list
//! length, ~19 KiB), and `PresenceNews` of 3 joined and 2 left (a typical
//! delta). Printed: nanoseconds per frame, medians of the runs with
//! min–max, and the ratio wire types / concatenation per run.

use std::hint::black_box;
use std::time::Instant;

use e2e::spread::{report, Spread};
use flproto::message::{Infos, ListingFrame};
use flproto::node_info::{NodeInfoJson, NodeInfoV3};
use flproto::NodeId;

/// Frames rendered per timed batch.
const FRAMES_PER_BATCH: usize = 2_000;
/// Batches of each kind per run, alternated.
const ROUNDS: usize = 10;

fn main() {
    let runs: usize = std::env::args().nth(1).and_then(|arg| arg.parse().ok()).unwrap_or(5);
    let infos: Vec<NodeInfoJson> = (0..100u8).map(|n| NodeInfoJson::of(&info(n))).collect();
    let left: Vec<NodeId> = (0..2u8).map(|n| NodeId([200 + n; 32])).collect();
    let joined = &infos[..3];

    let list = || ListingFrame::ListIDsReply(Infos(infos.iter())).render();
    let list_concat = || concat_list(&infos);
    let news = || {
        ListingFrame::PresenceNews {
            joined: Infos(joined.iter()),
            left: &left,
        }
        .render()
    };
    let news_concat = || concat_news(joined, &left);
    assert_eq!(list(), list_concat(), "both ways render the same list");
    assert_eq!(news(), news_concat(), "both ways render the same news");
    println!("list frame: {} bytes; news frame: {} bytes", list().len(), news().len());

    for (name, typed, concat) in [
        (
            "ListIDsReply, 100 nodes",
            &list as &dyn Fn() -> String,
            &list_concat as &dyn Fn() -> String,
        ),
        ("PresenceNews, 3 joined 2 left", &news, &news_concat),
    ] {
        let mut typed_ns = Vec::new();
        let mut concat_ns = Vec::new();
        let mut ratios = Vec::new();
        for _ in 0..runs {
            let (mut t, mut c) = (Vec::new(), Vec::new());
            for _ in 0..ROUNDS {
                t.push(per_frame_ns(typed));
                c.push(per_frame_ns(concat));
            }
            let (t, c) = (Spread::of(t).median, Spread::of(c).median);
            typed_ns.push(t);
            concat_ns.push(c);
            ratios.push(t / c);
        }
        println!("== {name}");
        report("  wire types", "ns/frame", typed_ns, 0);
        report("  concatenation", "ns/frame", concat_ns, 0);
        report("  ratio wire types / concatenation", "", ratios, 3);
    }
}

fn info(n: u8) -> NodeInfoV3 {
    NodeInfoV3 {
        name: format!("node-{n}"),
        client: "flnode 0.1.0".into(),
        pubkey: NodeId([n; 32]),
        modules: "STAT | RAND | GOSSIP | PING".into(),
        sealed_setup: None,
    }
}

/// Nanoseconds per frame over one batch.
fn per_frame_ns(render: &dyn Fn() -> String) -> f64 {
    let start = Instant::now();
    for _ in 0..FRAMES_PER_BATCH {
        black_box(render());
    }
    start.elapsed().as_nanos() as f64 / FRAMES_PER_BATCH as f64
}

/// The reference: how flsignal built a node list before, by concatenation.
fn concat_list(infos: &[NodeInfoJson]) -> String {
    let mut frame = String::with_capacity(20 + infos_len(infos));
    frame.push_str(r#"{"ListIDsReply":["#);
    push_infos(&mut frame, infos);
    frame.push_str("]}");
    frame
}

/// The reference: how flsignal built presence news before.
fn concat_news(joined: &[NodeInfoJson], left: &[NodeId]) -> String {
    let mut frame = String::with_capacity(40 + infos_len(joined) + left.len() * 67);
    frame.push_str(r#"{"PresenceNews":{"joined":["#);
    push_infos(&mut frame, joined);
    frame.push_str(r#"],"left":["#);
    for (index, id) in left.iter().enumerate() {
        if index > 0 {
            frame.push(',');
        }
        frame.push('"');
        frame.push_str(&id.to_hex());
        frame.push('"');
    }
    frame.push_str("]}}");
    frame
}

fn infos_len(infos: &[NodeInfoJson]) -> usize {
    infos.iter().map(|info| info.len() + 1).sum()
}

fn push_infos(frame: &mut String, infos: &[NodeInfoJson]) {
    for (index, info) in infos.iter().enumerate() {
        if index > 0 {
            frame.push(',');
        }
        frame.push_str(info.as_str());
    }
}
