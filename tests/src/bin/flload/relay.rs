//! `flload relay`: PeerSetup relay RTT and throughput between nodes on one
//! server (or instance) and nodes on another, or the same. Only wire v3 is
//! used and nothing but relayed setups is expected back (fledger's server
//! sends no errors or notices), so it loads fledger's server too. With
//! `--protocol matchbox` each pair is a room of its own and the same offer
//! travels as matchbox's `Signal`.
//!
//! With the server's pid (given, or found by its listening port) the
//! server's CPU time over the throughput phase is divided by the frames it
//! relayed in it.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use flproto::identity::NodeKey;
use flproto::NodeId;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, Semaphore};
use tokio_tungstenite::tungstenite::{self, Message};

use crate::args::{Args, Protocol, RelayFrame};
use crate::client::{join_as, resolve, Socket, Target};
use crate::matchbox;
use crate::server_proc::{self, server_pid, CpuMeter};
use crate::stats::Percentiles;

/// Time given to a cluster to spread the new nodes' presence.
const SETTLE: Duration = Duration::from_millis(1500);

/// How a relayed PeerSetup starts as it arrives.
const SETUP_PREFIX: &str = r#"{"PeerSetup""#;

/// The setup message every relayed frame carries: an offer with a short
/// SDP, as a browser or flnode would send it.
const OFFER: &str =
    r#"{"Offer":"v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"}"#;

/// A setup frame from `init` to `follow` (or back: the server relays it to
/// whichever of the two did not send it).
pub fn frame(init: NodeId, follow: NodeId) -> String {
    format!(r#"{{"PeerSetup":{{"id_init":"{init}","id_follow":"{follow}","message":{OFFER}}}}}"#)
}

/// An SDP of the size flnode's Offers have (450 bytes).
const FLNODE_SIZED_SDP: &str = "v=0\r\no=- 3890833965374056566 835397548 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=fingerprint:sha-256 01:F9:46:84:BC:91:55:EB:6A:90:81:79:92:AB:C8:40:E6:E8:06:D8:D9:10:4E:A0:82:39:64:25:51:3C:9F:98\r\na=extmap-allow-mixed\r\na=group:BUNDLE 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=setup:actpass\r\na=mid:0\r\na=sendrecv\r\na=sctp-port:5000\r\na=max-message-size:65536\r\na=ice-ufrag:DHUtwrugBbuEcwVX\r\na=ice-pwd:ltNhQpvYzEeEajlfJOuwkBCwYHOaxXWC\r\n";

/// The frame `kind` from `from` to `to`, as its sender would send it.
fn frame_of(kind: RelayFrame, from: &NodeKey, to: &NodeKey) -> String {
    use flproto::message::{NodeMessage, PeerInfo, SetupMessage};
    use flproto::setup_auth::{sign_with, SetupSigner};
    use flproto::setup_message::{Opens, SessionId};
    let (init, follow) = (from.id(), to.id());
    if kind == RelayFrame::Offer {
        return frame(init, follow);
    }
    let mut signer = SetupSigner::new(SessionId::random(Opens::Sealed));
    let mut attempt = signer.next_generation(1_763_800_000_000);
    let header = signer.next_header(from, &mut attempt, init, follow);
    let offer = SetupMessage::Offer(FLNODE_SIZED_SDP.into());
    let message = match kind {
        RelayFrame::Sealed => {
            flproto::seal::seal(&follow, &header, &offer, flproto::seal::EphemeralSeed(rand::random()))
                .expect("an Offer seals")
        }
        _ => offer,
    };
    let info: PeerInfo = sign_with(from, &header, message);
    NodeMessage::PeerSetup(info).to_json()
}

struct Pair {
    sender: Socket,
    receiver: Socket,
    /// What the sender sends and the receiver echoes.
    forth: String,
    back: String,
    /// How a relayed frame starts as it arrives.
    relayed: &'static str,
}

async fn pairs(args: &Args, count: usize) -> anyhow::Result<Vec<Pair>> {
    let to_url = args.to_url.clone().unwrap_or_else(|| args.url.clone());
    let from = Target::new(&args.url, args).await?;
    let to = Target::new(&to_url, args).await?;
    let source = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut pairs = Vec::with_capacity(count);
    for _ in 0..count {
        pairs.push(match args.protocol {
            Protocol::Fledger => {
                let (a, b) = (NodeKey::generate(), NodeKey::generate());
                let sender = join_as(&from, source, &a).await.context("sender")?;
                let receiver = join_as(&to, source, &b).await.context("receiver")?;
                let text = frame_of(args.frame, &a, &b);
                Pair {
                    sender,
                    receiver,
                    forth: text.clone(),
                    back: text,
                    relayed: SETUP_PREFIX,
                }
            }
            Protocol::Matchbox => {
                let room = matchbox::new_room();
                let (sender, a) = matchbox::join_room(&from, source, &room).await.context("sender")?;
                let (receiver, b) = matchbox::join_room(&to, source, &room).await.context("receiver")?;
                Pair {
                    sender,
                    receiver,
                    forth: matchbox::signal(&b, OFFER),
                    back: matchbox::signal(&a, OFFER),
                    relayed: matchbox::RELAYED_PREFIX,
                }
            }
        });
    }
    Ok(pairs)
}

/// The next relayed PeerSetup text, skipping news and pings.
pub async fn next_setup(ws: &mut Socket) -> anyhow::Result<()> {
    next_relayed(ws, SETUP_PREFIX).await
}

/// The next relayed frame (starting with `relayed`), skipping anything else.
async fn next_relayed(ws: &mut Socket, relayed: &str) -> anyhow::Result<()> {
    loop {
        let item = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .context("no relay within 10 s")?
            .context("closed")?;
        if let Some(setup) = as_relayed(item, relayed) {
            return setup;
        }
    }
}

pub async fn run(args: &Args) -> anyhow::Result<()> {
    let mut all = pairs(args, args.pairs.max(1)).await?;
    let frame_len = all[0].forth.len();
    tokio::time::sleep(SETTLE).await;

    // Round trips, one at a time, on the first pair.
    let first = &mut all[0];
    let mut samples = Vec::with_capacity(args.rtt_samples);
    for _ in 0..args.rtt_samples {
        let started = Instant::now();
        first.sender.send(Message::text(first.forth.clone())).await?;
        next_relayed(&mut first.receiver, first.relayed).await?;
        first.receiver.send(Message::text(first.back.clone())).await?;
        next_relayed(&mut first.sender, first.relayed).await?;
        samples.push(started.elapsed());
    }
    let idle = Percentiles::of(samples);
    if let Some(idle) = &idle {
        println!("rtt, one setup at a time (there and echoed back): {}", idle.human());
    }

    // Throughput: every pair echoes with `window` frames in flight.
    let messages = args.messages;
    let window = args.window.max(1);
    // The server of `--url`: in a cluster, the instance the senders use.
    let cpu = CpuMeter::start(server_pid(args.server_pid, resolve(&args.url).await?));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for pair in all {
        tasks.push(tokio::spawn(echo_pair(pair, messages, window)));
    }
    let mut loaded = Vec::with_capacity(messages * args.pairs.max(1));
    for task in tasks {
        loaded.extend(task.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_used = cpu.and_then(|cpu| cpu.used());
    let relayed = (2 * messages * args.pairs.max(1)) as f64;
    let rate = relayed / elapsed;
    println!(
        "throughput: {} pairs x {messages} echoed setups, {window} in flight: {relayed:.0} relayed frames in {elapsed:.2} s = {rate:.0} frames/s",
        args.pairs.max(1),
    );
    let loaded = Percentiles::of(loaded);
    if let Some(loaded) = &loaded {
        println!("rtt under that load (send to echo): {}", loaded.human());
    }
    let mut cpu_fields = String::new();
    if let Some(used) = cpu_used {
        let (fields, human) = server_proc::cpu_fields(used, relayed as usize, "frame");
        println!("{human}, over that load");
        cpu_fields = fields;
    }
    println!(
        "result mode=relay frame={:?} frame_bytes={} pairs={} window={window} msgs_per_s={rate:.1} {} {}{cpu_fields}",
        args.frame,
        frame_len,
        args.pairs.max(1),
        idle.map(|p| p.fields("idle_rtt")).unwrap_or_default(),
        loaded.map(|p| p.fields("rtt")).unwrap_or_default(),
    );
    Ok(())
}

/// Echoes `messages` setups on one pair with `window` in flight; returns
/// each setup's round trip (relay is in order, so echoes match sends in
/// turn).
///
/// Frames that are ready together are written together (fed, then one
/// flush), as a busy node would: the generator shares the machine with the
/// server, and a system call per frame here would be what is measured.
async fn echo_pair(pair: Pair, messages: usize, window: usize) -> anyhow::Result<Vec<Duration>> {
    let Pair {
        sender,
        receiver,
        forth,
        back,
        relayed,
    } = pair;
    let echo = tokio::spawn(async move {
        let (mut sink, stream) = receiver.split();
        let mut arrivals = Box::pin(relayed_frames(stream, relayed).ready_chunks(window));
        let mut echoed = 0;
        while echoed < messages {
            let ready = arrivals.next().await.context("closed")?;
            for setup in ready {
                setup?;
                sink.feed(Message::text(back.clone())).await?;
                echoed += 1;
            }
            sink.flush().await?;
        }
        anyhow::Ok(())
    });
    let (mut sink, stream) = sender.split();
    let permits = Arc::new(Semaphore::new(window));
    let (sent_at, mut sent_times) = mpsc::unbounded_channel();
    let writer = {
        let permits = permits.clone();
        tokio::spawn(async move {
            let mut sent = 0;
            while sent < messages {
                permits.acquire().await?.forget();
                let mut burst = 1;
                while sent + burst < messages && permits.try_acquire().map(|permit| permit.forget()).is_ok() {
                    burst += 1;
                }
                for _ in 0..burst {
                    sent_at.send(Instant::now())?;
                    sink.feed(Message::text(forth.clone())).await?;
                }
                sink.flush().await?;
                sent += burst;
            }
            anyhow::Ok(())
        })
    };
    let mut rtts = Vec::with_capacity(messages);
    let mut echoes = Box::pin(relayed_frames(stream, relayed));
    for _ in 0..messages {
        tokio::time::timeout(Duration::from_secs(10), echoes.next())
            .await
            .context("no echo within 10 s")?
            .context("closed")??;
        let sent = sent_times.recv().await.context("echo without a send")?;
        rtts.push(sent.elapsed());
        permits.add_permits(1);
    }
    writer.await??;
    echo.await??;
    Ok(rtts)
}

/// The relayed frames (starting with `relayed`) arriving on `stream`,
/// news and pings skipped; a close or a read error ends it with an error.
fn relayed_frames(
    stream: impl futures_util::Stream<Item = Result<Message, tungstenite::Error>>,
    relayed: &'static str,
) -> impl futures_util::Stream<Item = anyhow::Result<()>> {
    stream.filter_map(move |item| async move { as_relayed(item, relayed) })
}

/// What one received item means here: `Some(Ok)` a relayed frame (it
/// starts with `relayed`), `Some(Err)` a close or a read error, `None`
/// anything to skip.
fn as_relayed(item: Result<Message, tungstenite::Error>, relayed: &str) -> Option<anyhow::Result<()>> {
    match item {
        Ok(Message::Text(text)) if text.as_str().starts_with(relayed) => Some(Ok(())),
        Ok(Message::Close(frame)) => Some(Err(anyhow::anyhow!("closed: {frame:?}"))),
        Ok(_) => None,
        Err(error) => Some(Err(error.into())),
    }
}
