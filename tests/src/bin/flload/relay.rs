//! `flload relay`: PeerSetup relay RTT and throughput between nodes on one
//! server (or instance) and nodes on another, or the same.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use flproto::identity::NodeKey;
use flproto::NodeId;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

use super::{join_as, resolve, Args, Socket};

/// Time given to a cluster to spread the new nodes' presence.
const SETTLE: Duration = Duration::from_millis(1500);

/// A setup frame as a browser or flnode would send it: an offer with a
/// short SDP.
fn frame(init: NodeId, follow: NodeId) -> String {
    format!(
        r#"{{"PeerSetup":{{"id_init":"{init}","id_follow":"{follow}","message":{{"Offer":"v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"}}}}}}"#
    )
}

struct Pair {
    sender: Socket,
    receiver: Socket,
    /// What the sender sends (init = sender) and the receiver echoes.
    forth: String,
    back: String,
}

async fn pairs(args: &Args, count: usize) -> anyhow::Result<Vec<Pair>> {
    let to_url = args.to_url.clone().unwrap_or_else(|| args.url.clone());
    let (from_addr, to_addr) = (resolve(&args.url).await?, resolve(&to_url).await?);
    let source = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut pairs = Vec::with_capacity(count);
    for _ in 0..count {
        let (a, b) = (NodeKey::generate(), NodeKey::generate());
        let sender = join_as(&args.url, from_addr, source, &a).await.context("sender")?;
        let receiver = join_as(&to_url, to_addr, source, &b).await.context("receiver")?;
        pairs.push(Pair {
            sender,
            receiver,
            forth: frame(a.id(), b.id()),
            back: frame(a.id(), b.id()),
        });
    }
    Ok(pairs)
}

/// The next relayed PeerSetup text, skipping news and pings.
async fn next_setup(ws: &mut Socket) -> anyhow::Result<()> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .context("no relay within 10 s")?
            .context("closed")??
        {
            Message::Text(text) if text.as_str().starts_with(r#"{"PeerSetup""#) => return Ok(()),
            Message::Close(frame) => bail!("closed: {frame:?}"),
            _ => continue,
        }
    }
}

pub async fn run(args: &Args) -> anyhow::Result<()> {
    let mut all = pairs(args, args.pairs.max(1)).await?;
    tokio::time::sleep(SETTLE).await;

    // Round trips, one at a time, on the first pair.
    let first = &mut all[0];
    let mut samples = Vec::with_capacity(args.rtt_samples);
    for _ in 0..args.rtt_samples {
        let started = Instant::now();
        first.sender.send(Message::text(first.forth.clone())).await?;
        next_setup(&mut first.receiver).await?;
        first.receiver.send(Message::text(first.back.clone())).await?;
        next_setup(&mut first.sender).await?;
        samples.push(started.elapsed());
    }
    samples.sort();
    if !samples.is_empty() {
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
        println!(
            "rtt (setup there and echo back, {} samples): median {:.3} ms, p90 {:.3} ms, p99 {:.3} ms",
            samples.len(),
            at(0.5),
            at(0.9),
            at(0.99)
        );
    }

    // Throughput: every pair echoes with `window` frames in flight.
    let messages = args.messages;
    let window = args.window.max(1);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for pair in all {
        tasks.push(tokio::spawn(echo_pair(pair, messages, window)));
    }
    for task in tasks {
        task.await??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let relayed = (2 * messages * args.pairs.max(1)) as f64;
    println!(
        "throughput: {} pairs x {messages} echoed setups, {window} in flight: {relayed:.0} relayed frames in {elapsed:.2} s = {:.0} frames/s",
        args.pairs.max(1),
        relayed / elapsed
    );
    Ok(())
}

async fn echo_pair(pair: Pair, messages: usize, window: usize) -> anyhow::Result<()> {
    let Pair {
        sender,
        mut receiver,
        forth,
        back,
    } = pair;
    let echo = tokio::spawn(async move {
        for _ in 0..messages {
            next_setup(&mut receiver).await?;
            receiver.send(Message::text(back.clone())).await?;
        }
        anyhow::Ok(receiver)
    });
    let (mut sink, mut stream) = sender.split();
    let permits = Arc::new(Semaphore::new(window));
    let writer = {
        let permits = permits.clone();
        tokio::spawn(async move {
            for _ in 0..messages {
                permits.acquire().await?.forget();
                sink.send(Message::text(forth.clone())).await?;
            }
            anyhow::Ok(sink)
        })
    };
    for _ in 0..messages {
        loop {
            match tokio::time::timeout(Duration::from_secs(10), stream.next())
                .await
                .context("no echo within 10 s")?
                .context("closed")??
            {
                Message::Text(text) if text.as_str().starts_with(r#"{"PeerSetup""#) => break,
                Message::Close(frame) => bail!("closed: {frame:?}"),
                _ => continue,
            }
        }
        permits.add_permits(1);
    }
    let _sink = writer.await??;
    echo.await??;
    Ok(())
}
