//! Joining many nodes with a bounded number of handshakes in flight. Each
//! node is held (read from) the moment it is registered: fledger's server
//! stalls for everyone when one client stops reading.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::task::JoinHandle;

use crate::client::{bytes_received, hold, join, Target};

/// What became of a crowd of joins.
pub struct Crowd {
    /// Reader tasks of the registered nodes; their sockets stay open until
    /// [`Crowd::release`] or the end of the process.
    pub held: Vec<JoinHandle<()>>,
    /// Connect to node list, per registered node.
    pub latencies: Vec<Duration>,
    pub failed: usize,
    /// Joins still under way when the deadline passed.
    pub unfinished: usize,
    pub first_error: Option<String>,
    /// From the first connect to the last registration.
    pub last_registered: Duration,
    /// [`bytes_received`] at the last registration.
    pub bytes_at_last: u64,
}

impl Crowd {
    pub fn registered(&self) -> usize {
        self.held.len()
    }

    /// Closes every held socket.
    pub fn release(self) {
        for task in self.held {
            task.abort();
        }
    }
}

/// Joins `nodes` nodes, `in_flight` at a time, source addresses taken in
/// turn; gives up on what is not registered by `deadline` (if any).
pub async fn join_crowd(
    target: &Target,
    sources: &[IpAddr],
    nodes: usize,
    in_flight: usize,
    deadline: Option<Duration>,
) -> Crowd {
    let started = Instant::now();
    let deadline = deadline.map(|d| tokio::time::Instant::from_std(started + d));
    let mut joins = futures_util::stream::iter(0..nodes)
        .map(|n| async move {
            let begun = Instant::now();
            (join(target, sources[n % sources.len()]).await, begun.elapsed())
        })
        .buffer_unordered(in_flight.max(1));
    let mut crowd = Crowd {
        held: Vec::with_capacity(nodes),
        latencies: Vec::with_capacity(nodes),
        failed: 0,
        unfinished: 0,
        first_error: None,
        last_registered: Duration::ZERO,
        bytes_at_last: 0,
    };
    loop {
        let next = match deadline {
            Some(at) => match tokio::time::timeout_at(at, joins.next()).await {
                Ok(next) => next,
                Err(_) => break,
            },
            None => joins.next().await,
        };
        match next {
            None => break,
            Some((Ok(ws), latency)) => {
                crowd.held.push(hold(ws));
                crowd.latencies.push(latency);
                crowd.last_registered = started.elapsed();
                crowd.bytes_at_last = bytes_received();
            }
            Some((Err(error), _)) => {
                crowd.failed += 1;
                crowd.first_error.get_or_insert_with(|| format!("{error:#}"));
            }
        }
    }
    crowd.unfinished = nodes - crowd.registered() - crowd.failed;
    crowd
}
