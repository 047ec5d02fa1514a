//! `flload handshakes`: N nodes join with C handshakes in flight (connect,
//! challenge, signed Announce, node list; for matchbox connect, upgrade and
//! the assigned id); handshakes per second and the latency of one
//! handshake. Registered nodes stay connected (and read) until the run
//! ends, as real nodes would.
//!
//! With the server's pid (given, or found by its listening port) the
//! server's CPU time over the joins is divided by the handshakes. It is
//! read `--settle` after the last join, so what the joins cost later
//! (presence news to other nodes' views) is counted too.

use std::time::Instant;

use crate::args::Args;
use crate::client::{bytes_received, sources, Target};
use crate::crowd::join_crowd;
use crate::server_proc::{self, server_pid, CpuMeter};
use crate::stats::Percentiles;

pub async fn run(args: &Args) -> anyhow::Result<()> {
    let target = Target::new(&args.url, args).await?;
    let cpu = CpuMeter::start(server_pid(args.server_pid, target.server));
    let started = Instant::now();
    let crowd = join_crowd(&target, &sources(args.source_ips), args.nodes, args.in_flight, None).await;
    let elapsed = started.elapsed().as_secs_f64();
    let registered = crowd.registered();
    let rate = registered as f64 / elapsed;
    println!(
        "handshakes: {registered} of {} nodes in {elapsed:.3} s, {} in flight = {rate:.0} handshakes/s; {} failed",
        args.nodes, args.in_flight, crowd.failed
    );
    if let Some(error) = &crowd.first_error {
        eprintln!("first failure: {error}");
    }
    let latency = Percentiles::of(crowd.latencies.clone());
    if let Some(latency) = &latency {
        println!("handshake latency (connect to node list): {}", latency.human());
    }
    let mut cpu_fields = String::new();
    if let Some(cpu) = cpu {
        tokio::time::sleep(args.settle).await;
        if let Some(used) = cpu.used() {
            let (fields, human) = server_proc::cpu_fields(used, registered, "handshake");
            println!("{human}, over the joins and {:.1} s after", args.settle.as_secs_f64());
            cpu_fields = fields;
        }
    }
    println!(
        "result mode=handshakes nodes={} registered={registered} failed={} seconds={elapsed:.3} handshakes_per_s={rate:.1} {} bytes={}{cpu_fields}",
        args.nodes,
        crowd.failed,
        latency.map(|l| l.fields("latency")).unwrap_or_default(),
        bytes_received()
    );
    crowd.release();
    Ok(())
}
