//! `flload idle`: hold many idle authenticated nodes and report the
//! server's resident memory per node (when given its pid).

use std::time::{Duration, Instant};

use crate::args::Args;
use crate::client::{sources, Target};
use crate::crowd::join_crowd;
use crate::server_proc::resident_kib;

/// Time the server gets to settle (news, allocator) before its memory is read.
const SETTLE: Duration = Duration::from_secs(2);

pub async fn run(args: &Args) -> anyhow::Result<()> {
    let target = Target::new(&args.url, args).await?;
    let before = args.server_pid.map(resident_kib).transpose()?;
    let started = Instant::now();
    let crowd = join_crowd(&target, &sources(args.source_ips), args.nodes, args.in_flight, None).await;
    let elapsed = started.elapsed();
    let (joined, failed) = (crowd.registered(), crowd.failed);
    if let Some(error) = &crowd.first_error {
        eprintln!("first failure: {error}");
    }
    println!(
        "joined {joined} of {} nodes in {:.2} s ({:.0} handshakes/s), {failed} failed",
        args.nodes,
        elapsed.as_secs_f64(),
        joined as f64 / elapsed.as_secs_f64()
    );
    let mut result = format!("result mode=idle nodes={} joined={joined} failed={failed}", args.nodes);
    if let (Some(pid), Some(before)) = (args.server_pid, before) {
        tokio::time::sleep(SETTLE).await;
        let after = resident_kib(pid)?;
        let per_node = after.saturating_sub(before) as f64 / joined.max(1) as f64;
        println!("server RSS {before} KiB -> {after} KiB: {per_node:.2} KiB per idle authenticated node");
        result += &format!(" rss_before_kib={before} rss_after_kib={after} kib_per_node={per_node:.2}");
    }
    println!("{result}");
    Ok(())
}
