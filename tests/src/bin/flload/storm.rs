//! `flload storm`: N nodes join at once (at most C connects in flight, so
//! the listen backlog does not overflow into SYN drops); the time until
//! every one has its node list, and the bytes the server sent to all of
//! them — up to the last registration, and after a settling period in
//! which presence news about the joins still arrives.

use std::time::Instant;

use crate::args::Args;
use crate::client::{bytes_received, sources, Target};
use crate::crowd::join_crowd;

pub async fn run(args: &Args) -> anyhow::Result<()> {
    let target = Target::new(&args.url, args).await?;
    let started = Instant::now();
    let crowd = join_crowd(
        &target,
        &sources(args.source_ips),
        args.nodes,
        args.in_flight,
        Some(args.deadline),
    )
    .await;
    let registered = crowd.registered();
    let all = registered == args.nodes;
    let until = if all { crowd.last_registered } else { started.elapsed() };
    let bytes_registered = if all { crowd.bytes_at_last } else { bytes_received() };
    println!(
        "storm: {registered} of {} nodes registered ({} failed, {} unfinished) {} {:.3} s, {} in flight",
        args.nodes,
        crowd.failed,
        crowd.unfinished,
        if all { "after" } else { "when giving up at" },
        until.as_secs_f64(),
        args.in_flight
    );
    if let Some(error) = &crowd.first_error {
        eprintln!("first failure: {error}");
    }
    tokio::time::sleep(args.settle).await;
    let bytes_settled = bytes_received();
    let per_node = |bytes: u64| bytes as f64 / registered.max(1) as f64;
    println!(
        "bytes from the server: {bytes_registered} until {} ({:.0} per registered node), {bytes_settled} after {:.1} s more ({:.0} per node)",
        if all { "the last registration" } else { "giving up" },
        per_node(bytes_registered),
        args.settle.as_secs_f64(),
        per_node(bytes_settled)
    );
    println!(
        "result mode=storm nodes={} registered={registered} failed={} unfinished={} all_registered={all} seconds={:.3} bytes_registered={bytes_registered} bytes_settled={bytes_settled} bytes_per_node={:.0}",
        args.nodes,
        crowd.failed,
        crowd.unfinished,
        until.as_secs_f64(),
        per_node(bytes_settled)
    );
    crowd.release();
    Ok(())
}
