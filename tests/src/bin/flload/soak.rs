//! `flload soak`: nodes join, relay and leave at a steady rate for a long
//! time, to see whether the server's memory and file descriptors stay put.
//!
//! `--nodes` slots each hold one node at a time: it joins, stays
//! `--lifetime` (the first stays are spread evenly over one lifetime, so
//! leaves do not come in waves), leaves, and the slot joins a new node. That
//! keeps about `--nodes` connected with `nodes / lifetime` joins and leaves
//! a second. `--pairs` more slots hold two nodes each that relay a
//! PeerSetup there and back every [`RELAY_INTERVAL`] and churn the same
//! way. Every `--report` a line gives the churn, failures, relay round
//! trips and the server's RSS and fds; after `--duration` every node
//! leaves, and a last line gives the server's RSS and fds `--settle` later.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flproto::identity::NodeKey;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{watch, Mutex, Semaphore};
use tokio_tungstenite::tungstenite::Message;

use crate::args::Args;
use crate::client::{join, join_as, sources, Socket, Target};
use crate::relay::{frame, next_setup};
use crate::server_proc::{server_pid, Usage};
use crate::stats::Percentiles;

/// Pause between two round trips of one relay pair.
const RELAY_INTERVAL: Duration = Duration::from_millis(200);

/// How long a leaving node waits for the server to acknowledge its close.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Pause after a failed join before the slot tries again.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Counters shared by every slot.
#[derive(Default)]
struct Tally {
    connected: AtomicUsize,
    joins: AtomicU64,
    leaves: AtomicU64,
    join_failures: AtomicU64,
    /// Connections the server closed, or that failed, before their time.
    dropped: AtomicU64,
    relay_failures: AtomicU64,
    /// Relay round trips since the last report.
    rtts: Mutex<Vec<Duration>>,
    first_error: std::sync::Mutex<Option<String>>,
}

impl Tally {
    fn failed(&self, counter: &AtomicU64, error: &anyhow::Error) {
        counter.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        first.get_or_insert_with(|| format!("{error:#}"));
    }

    fn failures(&self) -> u64 {
        self.join_failures.load(Ordering::Relaxed)
            + self.dropped.load(Ordering::Relaxed)
            + self.relay_failures.load(Ordering::Relaxed)
    }
}

/// What every slot needs.
struct Soak {
    target: Target,
    sources: Vec<IpAddr>,
    lifetime: Duration,
    /// Joins in flight at most, so a burst of leaves does not turn into a
    /// burst of handshakes larger than the server's accept queue.
    joining: Semaphore,
    tally: Tally,
    stop: watch::Receiver<bool>,
}

impl Soak {
    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Waits until the churn stops.
    async fn stopped(&self) {
        let mut stop = self.stop.clone();
        let _ = stop.wait_for(|stop| *stop).await;
    }

    /// How long the `index`-th of `count` slots keeps its first node: the
    /// first leaves are spread evenly over one lifetime.
    fn first_stay(&self, index: usize, count: usize) -> Duration {
        self.lifetime.mul_f64((index + 1) as f64 / count.max(1) as f64)
    }

    async fn join_one(&self, source: IpAddr, key: Option<&NodeKey>) -> Option<Socket> {
        let _permit = self.joining.acquire().await.ok()?;
        let joined = match key {
            Some(key) => join_as(&self.target, source, key).await,
            None => join(&self.target, source).await,
        };
        match joined {
            Ok(ws) => {
                self.tally.joins.fetch_add(1, Ordering::Relaxed);
                self.tally.connected.fetch_add(1, Ordering::Relaxed);
                Some(ws)
            }
            Err(error) => {
                self.tally.failed(&self.tally.join_failures, &error);
                None
            }
        }
    }

    async fn leave(&self, mut ws: Socket) {
        let _ = tokio::time::timeout(CLOSE_WAIT, ws.close(None)).await;
        self.tally.connected.fetch_sub(1, Ordering::Relaxed);
        self.tally.leaves.fetch_add(1, Ordering::Relaxed);
    }
}

/// One slot of idle nodes, one after the other, until the churn stops.
async fn idle_slot(soak: Arc<Soak>, index: usize, count: usize) {
    let source = soak.sources[index % soak.sources.len()];
    let mut stay = soak.first_stay(index, count);
    while !soak.stopping() {
        let Some(mut ws) = soak.join_one(source, None).await else {
            tokio::time::sleep(RETRY_PAUSE).await;
            continue;
        };
        let until = tokio::time::Instant::now() + stay;
        tokio::select! {
            () = tokio::time::sleep_until(until) => {}
            () = soak.stopped() => {}
            error = read_until_closed(&mut ws) => {
                soak.tally.failed(&soak.tally.dropped, &error);
            }
        }
        soak.leave(ws).await;
        stay = soak.lifetime;
    }
}

/// Reads (and drops) what the server sends until the connection ends,
/// which a node that has not left yet reports as an error.
async fn read_until_closed(ws: &mut Socket) -> anyhow::Error {
    while let Some(item) = ws.next().await {
        if let Err(error) = item {
            return error.into();
        }
    }
    anyhow::anyhow!("closed by the server")
}

/// One slot of relaying pairs: the two echo a setup every
/// [`RELAY_INTERVAL`] for a lifetime, then both leave and a new pair joins.
async fn relay_slot(soak: Arc<Soak>, index: usize, count: usize) {
    let source = soak.sources[index % soak.sources.len()];
    let mut stay = soak.first_stay(index, count);
    while !soak.stopping() {
        let (a, b) = (NodeKey::generate(), NodeKey::generate());
        let Some(mut sender) = soak.join_one(source, Some(&a)).await else {
            tokio::time::sleep(RETRY_PAUSE).await;
            continue;
        };
        let Some(mut receiver) = soak.join_one(source, Some(&b)).await else {
            soak.leave(sender).await;
            tokio::time::sleep(RETRY_PAUSE).await;
            continue;
        };
        let setup = frame(a.id(), b.id());
        let until = tokio::time::Instant::now() + stay;
        tokio::select! {
            () = tokio::time::sleep_until(until) => {}
            () = soak.stopped() => {}
            Err(error) = echo(&mut sender, &mut receiver, &setup, &soak.tally) => {
                soak.tally.failed(&soak.tally.relay_failures, &error);
            }
        }
        soak.leave(sender).await;
        soak.leave(receiver).await;
        stay = soak.lifetime;
    }
}

/// Relays `setup` from `sender` to `receiver` and back, again and again,
/// until something fails.
async fn echo(sender: &mut Socket, receiver: &mut Socket, setup: &str, tally: &Tally) -> anyhow::Result<Infallible> {
    loop {
        let started = Instant::now();
        sender.send(Message::text(setup)).await?;
        next_setup(receiver).await?;
        receiver.send(Message::text(setup)).await?;
        next_setup(sender).await?;
        tally.rtts.lock().await.push(started.elapsed());
        tokio::time::sleep(RELAY_INTERVAL).await;
    }
}

/// Counters at one report, to print the difference to the next.
#[derive(Clone, Copy, Default)]
struct Counts {
    joins: u64,
    leaves: u64,
}

pub async fn run(args: &Args) -> anyhow::Result<()> {
    let target = Target::new(&args.url, args).await?;
    let pid = server_pid(args.server_pid, target.server);
    let before = Usage::of(pid);
    println!(
        "soak: {} nodes on average (+{} relaying pairs), each staying {:.0} s, for {:.0} s; before: {}",
        args.nodes,
        args.pairs,
        args.lifetime.as_secs_f64(),
        args.duration.as_secs_f64(),
        before.human()
    );
    let (stop_tx, stop) = watch::channel(false);
    let soak = Arc::new(Soak {
        target,
        sources: sources(args.source_ips),
        lifetime: args.lifetime,
        joining: Semaphore::new(args.in_flight.max(1)),
        tally: Tally::default(),
        stop,
    });
    let mut slots = Vec::with_capacity(args.nodes + args.pairs);
    for index in 0..args.nodes {
        slots.push(tokio::spawn(idle_slot(soak.clone(), index, args.nodes)));
    }
    for index in 0..args.pairs {
        slots.push(tokio::spawn(relay_slot(soak.clone(), index, args.pairs)));
    }

    let started = Instant::now();
    let mut all_rtts = Vec::new();
    let mut last = Counts::default();
    let mut peak_rss = before.rss_kib;
    let mut next_report = tokio::time::Instant::from_std(started);
    let end = next_report + args.duration;
    while next_report < end {
        next_report = (next_report + args.report).min(end);
        tokio::time::sleep_until(next_report).await;
        let usage = Usage::of(pid);
        peak_rss = peak_rss.max(usage.rss_kib);
        let rtts = std::mem::take(&mut *soak.tally.rtts.lock().await);
        all_rtts.extend_from_slice(&rtts);
        let tally = &soak.tally;
        let now = Counts {
            joins: tally.joins.load(Ordering::Relaxed),
            leaves: tally.leaves.load(Ordering::Relaxed),
        };
        println!(
            "{:6.0} s: {} connected, +{} joins, +{} leaves; failures: {} joins, {} dropped, {} relays; relay rtt {}; {}",
            started.elapsed().as_secs_f64(),
            tally.connected.load(Ordering::Relaxed),
            now.joins - last.joins,
            now.leaves - last.leaves,
            tally.join_failures.load(Ordering::Relaxed),
            tally.dropped.load(Ordering::Relaxed),
            tally.relay_failures.load(Ordering::Relaxed),
            Percentiles::of(rtts).map_or("none".to_owned(), |p| p.human()),
            usage.human()
        );
        last = now;
    }

    let _ = stop_tx.send(true);
    for slot in slots {
        let _ = slot.await;
    }
    tokio::time::sleep(args.settle).await;
    let after = Usage::of(pid);
    let tally = &soak.tally;
    println!(
        "churn stopped, every node left; {:.1} s later: {} (before: {})",
        args.settle.as_secs_f64(),
        after.human(),
        before.human()
    );
    if let Some(error) = tally.first_error.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
        eprintln!("first failure: {error}");
    }
    let field = |name: &str, value: Option<String>| value.map(|v| format!(" {name}={v}")).unwrap_or_default();
    let rtt = Percentiles::of(all_rtts);
    println!(
        "result mode=soak nodes={} pairs={} seconds={:.0} joins={} leaves={} join_failed={} dropped={} relay_failed={} failed={}{}{}{}{}{}{}{}",
        args.nodes,
        args.pairs,
        started.elapsed().as_secs_f64(),
        tally.joins.load(Ordering::Relaxed),
        tally.leaves.load(Ordering::Relaxed),
        tally.join_failures.load(Ordering::Relaxed),
        tally.dropped.load(Ordering::Relaxed),
        tally.relay_failures.load(Ordering::Relaxed),
        tally.failures(),
        rtt.map(|p| format!(" {}", p.fields("rtt"))).unwrap_or_default(),
        field("rss_before_kib", before.rss_kib.map(|v| v.to_string())),
        field("rss_peak_kib", peak_rss.map(|v| v.to_string())),
        field("rss_after_kib", after.rss_kib.map(|v| v.to_string())),
        field("fds_before", before.fds.map(|v| v.to_string())),
        field("fds_after", after.fds.map(|v| v.to_string())),
        field("connected_after", Some(tally.connected.load(Ordering::Relaxed).to_string())),
    );
    Ok(())
}
