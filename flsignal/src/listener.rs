//! The accept loop. It owns the limits that apply before any HTTP is
//! spoken: total connections, connections per IP address, and how long a
//! connection may take to become a WebSocket. An idle or garbage TCP
//! connection costs one task until `--http-timeout`, then nothing.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt;

use crate::metrics::Metrics;
use crate::Shared;

/// Counts connections per IP address.
#[derive(Default)]
pub struct PerIpCounter {
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// Held for as long as a TCP connection lives, including after it became
/// a WebSocket; dropping it frees the connection's slots.
pub struct ConnectionPermit {
    _slot: OwnedSemaphorePermit,
    ip: IpAddr,
    shared: Arc<Shared>,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut counts = self.shared.per_ip.counts.lock();
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
        self.shared.hub.metrics.connections.dec();
    }
}

/// Accepts until shutdown, then returns.
pub async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, router: Router) {
    let slots = Arc::new(Semaphore::new(shared.config.max_connections));
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shared.shutdown.cancelled() => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                backoff = Duration::from_millis(5);
                accepted
            }
            Err(error) => {
                // Out of file descriptors or similar: wait instead of spinning.
                tracing::warn!(%error, "accept failed; backing off {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let Some(permit) = admit(&shared, &slots, peer) else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        shared
            .tasks
            .spawn(serve_connection(stream, peer, permit, router.clone(), shared.clone()));
    }
}

fn admit(shared: &Arc<Shared>, slots: &Arc<Semaphore>, peer: SocketAddr) -> Option<Arc<ConnectionPermit>> {
    let metrics = &shared.hub.metrics;
    let Ok(slot) = slots.clone().try_acquire_owned() else {
        Metrics::count(&metrics.rejected_connections, "max_connections");
        return None;
    };
    let ip = peer.ip().to_canonical();
    {
        let mut counts = shared.per_ip.counts.lock();
        let count = counts.entry(ip).or_insert(0);
        if *count >= shared.config.max_connections_per_ip {
            Metrics::count(&metrics.rejected_connections, "per_ip");
            return None;
        }
        *count += 1;
    }
    metrics.connections.inc();
    Some(Arc::new(ConnectionPermit {
        _slot: slot,
        ip,
        shared: shared.clone(),
    }))
}

/// Speaks HTTP/1.1 on one connection until it is answered or upgraded, for
/// at most `--http-timeout`.
async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    permit: Arc<ConnectionPermit>,
    router: Router,
    shared: Arc<Shared>,
) {
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(permit.clone());
        request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
        router.clone().oneshot(request)
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(shared.config.http_timeout)
        .max_buf_size(16 * 1024);
    let connection = http.serve_connection(TokioIo::new(stream), service).with_upgrades();
    let outcome = tokio::select! {
        outcome = tokio::time::timeout(shared.config.http_timeout, connection) => outcome,
        () = shared.shutdown.cancelled() => return,
    };
    if outcome.is_err() {
        Metrics::count(&shared.hub.metrics.closes, "http_timeout");
    }
}
