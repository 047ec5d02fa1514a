//! How a connection's driver writes: batches of queued frames with one
//! flush, single frames, and what a write that fails or stalls means.

use std::sync::atomic::{AtomicU64, Ordering};

use flproto::close::CloseReason;
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};

use super::{Connection, Flow};
use crate::metrics::Metrics;
use crate::outgoing::{feed_text, Pending};

/// Frames written between two flushes at most, so one busy sender cannot
/// keep a connection's driver from reading and ticking.
pub const WRITE_BATCH: usize = 64;

impl Connection {
    /// Writes `first` and whatever else is already queued (up to
    /// [`WRITE_BATCH`] frames), then flushes once: a busy connection pays
    /// one system call per batch, not per frame (see [`crate::coalesce`]);
    /// a lone frame is written straight through. Signalling frames go
    /// before relay frames: a relay frame is taken only when none waits.
    ///
    /// The write timeout counts from the last frame that went out, not
    /// from the start of the batch: a client that reads slowly but reads
    /// stays, one that takes nothing at all for that long is dropped.
    pub(super) async fn write(&mut self, first: Pending) -> Flow {
        let metrics = &self.shared.hub.metrics;
        let socket = &mut self.socket;
        let inbox = &mut self.inbox;
        let datagrams = self.datagrams.as_ref();
        let handle = &self.handle;
        // When a frame last went out, in ms after `start` (an atomic, as
        // the connection's future must be `Sync`).
        let start = tokio::time::Instant::now();
        let last_progress = AtomicU64::new(0);
        let progress_deadline = || {
            start
                + std::time::Duration::from_millis(last_progress.load(Ordering::Relaxed))
                + self.shared.config.write_timeout
        };
        if !inbox.is_empty() || datagrams.is_some_and(|queue| !queue.is_empty()) {
            socket.get_mut().cork();
        }
        let batch = async {
            let mut next = Some(first);
            let mut fed = 0;
            while let Some(pending) = next.take() {
                match pending {
                    Pending::Signal(outbound) => {
                        let bytes = outbound.text.len();
                        feed_text(socket, outbound.text).await?;
                        handle.written(outbound.sender, bytes);
                        if let Some(arrived) = outbound.relayed_at {
                            metrics.relay_latency.observe(arrived.elapsed().as_secs_f64());
                        }
                    }
                    Pending::Datagram(frame) => socket.feed(Message::Binary(frame)).await?,
                }
                last_progress.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
                fed += 1;
                if fed < WRITE_BATCH {
                    next = inbox.try_recv().ok().map(Pending::Signal).or_else(|| {
                        let frame = datagrams?.try_next()?;
                        Some(Pending::Datagram(frame))
                    });
                }
            }
            socket.flush().await
        };
        let outcome = {
            let mut batch = std::pin::pin!(batch);
            loop {
                match tokio::time::timeout_at(progress_deadline(), &mut batch).await {
                    Ok(written) => break Ok(written),
                    // A frame went out meanwhile: wait from then on.
                    Err(_) if progress_deadline() > tokio::time::Instant::now() => continue,
                    Err(elapsed) => break Err(elapsed),
                }
            }
        };
        self.after_write(outcome)
    }

    /// Sends `text`; while the socket is corked (a round of several
    /// actions, see [`Connection::apply`]) it waits for the round's flush.
    pub(super) async fn send_text(&mut self, text: Utf8Bytes) -> Flow {
        let alone = !self.socket.get_ref().is_corked();
        let socket = &mut self.socket;
        let write = async move {
            feed_text(socket, text).await?;
            if alone {
                socket.flush().await?;
            }
            Ok(())
        };
        let outcome = tokio::time::timeout(self.shared.config.write_timeout, write).await;
        self.after_write(outcome)
    }

    /// Writes out whatever was fed and not yet written.
    pub(super) async fn flush(&mut self) -> Flow {
        let outcome = tokio::time::timeout(self.shared.config.write_timeout, self.socket.flush()).await;
        self.after_write(outcome)
    }

    pub(super) async fn send(&mut self, message: Message) -> Flow {
        let outcome = tokio::time::timeout(self.shared.config.write_timeout, self.socket.send(message)).await;
        self.after_write(outcome)
    }

    /// A failed write ends the connection; so does one that made no
    /// progress for the write timeout: the client does not read. Its
    /// close frame could not get out either, so it is only counted, and
    /// what waited for it counts as dropped.
    pub(super) fn after_write(
        &self,
        outcome: Result<Result<(), tungstenite::Error>, tokio::time::error::Elapsed>,
    ) -> Flow {
        match outcome {
            Ok(Ok(())) => Flow::Continue,
            Ok(Err(_)) => Flow::Stop,
            Err(_) => {
                let metrics = &self.shared.hub.metrics;
                Metrics::count(&metrics.closes, CloseReason::SlowReader.label());
                metrics
                    .drops
                    .get_or_create(&crate::metrics::Reason { reason: "slow_reader" })
                    .inc_by(1 + self.inbox.len() as u64);
                if let Some(datagrams) = &self.datagrams {
                    let reason = crate::metrics::Reason { reason: "slow_reader" };
                    metrics
                        .datagrams
                        .drops
                        .get_or_create(&reason)
                        .inc_by(datagrams.len() as u64);
                }
                tracing::debug!(node = ?self.session.registered_node(), "closing a slow reader");
                Flow::Stop
            }
        }
    }
}
