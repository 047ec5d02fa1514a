//! The STUN service's UDP edge: one socket, one task, which TURN may
//! share (its datagrams are handed over first). Each datagram is
//! read into a buffer one byte larger than the request limit (so an
//! oversized one is recognised, not silently truncated into something
//! that parses), checked against its source's budget, and handed to
//! [`crate::stun::answer`]; the reply, if any, is checked against the
//! global budget and sent without waiting.
//! The task ends when the server shuts down.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::UdpSocket;

use crate::error::Error;
use crate::metrics::Metrics;
use crate::stun::{self, Ignored};
use crate::stun_limit::ReplyBudget;
use crate::turn::demux::{self, Kind};
use crate::turn::service::TurnService;
use crate::Shared;

/// Binds the STUN socket; a port in use is a one-line error.
pub async fn bind(addr: SocketAddr) -> Result<UdpSocket, Error> {
    UdpSocket::bind(addr)
        .await
        .map_err(|source| Error::StunListen { addr, source })
}

/// Answers Binding Requests on `socket` until the server shuts down, and
/// hands TURN's datagrams (see [`crate::turn::demux`]) to `turn` if it
/// shares the socket.
pub async fn serve(socket: Arc<UdpSocket>, shared: Arc<Shared>, turn: Option<Arc<TurnService>>) {
    let config = &shared.config;
    let metrics = &shared.hub.metrics;
    let max_request = config.stun_max_request;
    let mut budget = ReplyBudget::new(
        config.stun_rate(),
        config.stun_global_rate(),
        config.edge.ipv6_prefix_len,
        config.stun_max_sources,
        Instant::now(),
    );
    // Relayed datagrams are larger than any STUN request: with TURN, the
    // buffer takes the largest UDP payload, and STUN's limit is checked
    // on the length read.
    let size = match turn {
        Some(_) => crate::turn::service::MAX_RELAYED_DATAGRAM,
        None => max_request + 1,
    };
    let mut buffer = vec![0u8; size];
    loop {
        let received = tokio::select! {
            received = socket.recv_from(&mut buffer) => received,
            () = shared.shutdown.cancelled() => return,
        };
        let (len, source) = match received {
            Ok(received) => received,
            Err(error) => {
                // Errors on an unconnected UDP socket are transient (an
                // ICMP error reported late, a signal); the next read is new.
                tracing::debug!(%error, "STUN socket read failed");
                continue;
            }
        };
        let now = Instant::now();
        if let Some(turn) = &turn {
            let kind = demux::classify(&buffer[..len]);
            if matches!(kind, Kind::Turn | Kind::ChannelData)
                && turn.on_datagram(source, &buffer[..len], kind, || {
                    budget.source_allows(source.ip(), now) && budget.global_allows(now)
                })
            {
                continue;
            }
        }
        let outcome = if budget.source_allows(source.ip(), now) {
            stun::answer(&buffer[..len], source, max_request)
        } else {
            Err(Ignored::RateLimited)
        };
        let outcome = outcome.and_then(|reply| {
            if budget.global_allows(now) {
                Ok(reply)
            } else {
                Err(Ignored::GlobalRateLimited)
            }
        });
        let outcome = outcome.and_then(|reply| match socket.try_send_to(&reply, source) {
            Ok(_) => Ok(()),
            Err(_) => Err(Ignored::SendFailed),
        });
        match outcome {
            Ok(()) => {
                metrics.stun_answered.inc();
            }
            Err(reason) => {
                tracing::trace!(%source, reason = reason.label(), "STUN datagram ignored");
                Metrics::count(&metrics.stun_ignored, reason.label());
            }
        }
    }
}
