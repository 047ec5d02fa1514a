//! The accept loop and what a connection goes through before HTTP: the
//! limits that apply before any byte is read (total connections,
//! connections per client), a PROXY header from trusted proxies, TLS with
//! `--tls-cert`, then HTTP/1.1 until the WebSocket upgrade. Everything
//! before the upgrade shares one `--http-timeout`, and none of it runs in
//! the accept loop: an idle or garbage TCP connection costs one task until
//! the timeout, then nothing.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::admission::{self, ConnectionPermit, SourcePermit};
use crate::metrics::Metrics;
use crate::proxy_header::{self, Received};
use crate::rewound::Rewound;
use crate::Shared;

/// Largest HTTP request head; an upgrade request is well under 1 KiB.
pub const MAX_HTTP_HEAD: usize = 16 * 1024;

/// First wait after a failed `accept` (out of file descriptors, say), so
/// the loop waits for the condition to clear instead of spinning.
pub const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
/// Longest wait between failed `accept`s; it doubles up to this.
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Who a connection is for, as limits and logs see it.
#[derive(Clone)]
pub enum Client {
    /// Known before HTTP: the TCP peer, or whom a trusted proxy's PROXY
    /// header named. Counted per IP for as long as the connection lives.
    Known { ip: IpAddr, permit: Arc<SourcePermit> },
    /// A trusted proxy that sent no PROXY header: each request's
    /// `X-Forwarded-For` says whom it is for.
    Forwarded { proxy: IpAddr },
}

/// What each request learns of its connection (a request extension).
#[derive(Clone)]
pub struct ConnectionContext {
    pub permit: Arc<ConnectionPermit>,
    pub client: Client,
}

/// Accepts until shutdown, then returns.
pub async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, router: Router, tls: Option<TlsAcceptor>) {
    let slots = Arc::new(Semaphore::new(shared.config.max_connections));
    let mut backoff = ACCEPT_BACKOFF_MIN;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shared.shutdown.cancelled() => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                backoff = ACCEPT_BACKOFF_MIN;
                accepted
            }
            Err(error) => {
                // Out of file descriptors or similar: wait instead of spinning.
                tracing::warn!(%error, "accept failed; backing off {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        let Some(permit) = admission::admit_connection(&shared, &slots) else {
            continue;
        };
        let peer_ip = peer.ip().to_canonical();
        // A direct client is counted before anything is read from it; a
        // proxy's connections only once they say whom they carry.
        let direct = if shared.trusted_proxies.contains(peer_ip) {
            None
        } else {
            let Some(source) = admission::admit_source(&shared, peer_ip) else {
                continue;
            };
            Some(Client::Known {
                ip: peer_ip,
                permit: Arc::new(source),
            })
        };
        let _ = stream.set_nodelay(true);
        let _ = crate::unsent_limit::limit_unsent(&stream, shared.config.relay.unsent_limit);
        let connection = Accepted {
            stream,
            peer,
            permit: Arc::new(permit),
            direct,
        };
        let (shared, router, tls) = (shared.clone(), router.clone(), tls.clone());
        shared.tasks.clone().spawn(async move {
            let deadline = Instant::now() + shared.config.http_timeout;
            tokio::select! {
                () = connection.serve(&shared, router, tls, deadline) => {}
                () = shared.shutdown.cancelled() => {}
            }
        });
    }
}

/// A connection the accept loop let in.
struct Accepted {
    stream: TcpStream,
    peer: SocketAddr,
    permit: Arc<ConnectionPermit>,
    /// The client when it is the TCP peer; `None` for a trusted proxy.
    direct: Option<Client>,
}

impl Accepted {
    async fn serve(self, shared: &Arc<Shared>, router: Router, tls: Option<TlsAcceptor>, deadline: Instant) {
        let Accepted {
            mut stream,
            peer,
            permit,
            direct,
        } = self;
        let (client, replay) = match direct {
            Some(client) => (client, Vec::new()),
            None => match proxied_client(&mut stream, peer, shared, deadline).await {
                Some(proxied) => proxied,
                None => return,
            },
        };
        let context = ConnectionContext { permit, client };
        let stream = Rewound::new(replay, stream);
        match tls {
            None => serve_http(stream, context, router, shared, deadline).await,
            Some(acceptor) => match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => serve_http(stream, context, router, shared, deadline).await,
                Ok(Err(error)) => {
                    // Scanners fail handshakes all day: counted, not logged.
                    tracing::debug!(%peer, %error, "TLS handshake failed");
                    Metrics::count(&shared.hub.metrics.closes, "tls_handshake");
                }
                Err(_) => Metrics::count(&shared.hub.metrics.closes, "http_timeout"),
            },
        }
    }
}

/// Reads a trusted proxy's PROXY header, if it sends one, and admits the
/// client it names. `None`: the connection is to be closed (counted).
/// Otherwise the client, and the bytes read past the header.
async fn proxied_client(
    stream: &mut TcpStream,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    deadline: Instant,
) -> Option<(Client, Vec<u8>)> {
    let read = proxy_header::read(stream, shared.config.edge.max_proxy_header_size);
    let received = match tokio::time::timeout_at(deadline, read).await {
        Ok(Ok(received)) => received,
        Ok(Err(error)) => {
            tracing::debug!(%peer, %error, "PROXY header refused");
            Metrics::count(&shared.hub.metrics.closes, "proxy_header");
            return None;
        }
        Err(_) => {
            Metrics::count(&shared.hub.metrics.closes, "http_timeout");
            return None;
        }
    };
    let proxy = peer.ip().to_canonical();
    let (ip, replay) = match received {
        Received::Bare { rest } => return Some((Client::Forwarded { proxy }, rest)),
        Received::Header { client, rest } => (client.map_or(proxy, |addr| addr.ip().to_canonical()), rest),
    };
    let permit = Arc::new(admission::admit_source(shared, ip)?);
    Some((Client::Known { ip, permit }, replay))
}

/// Speaks HTTP/1.1 on one connection until it is answered or upgraded, or
/// `deadline` passes.
async fn serve_http<S>(stream: S, context: ConnectionContext, router: Router, shared: &Arc<Shared>, deadline: Instant)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(context.clone());
        router.clone().oneshot(request)
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(deadline.saturating_duration_since(Instant::now()))
        .max_buf_size(MAX_HTTP_HEAD);
    let connection = http.serve_connection(TokioIo::new(stream), service).with_upgrades();
    if tokio::time::timeout_at(deadline, connection).await.is_err() {
        Metrics::count(&shared.hub.metrics.closes, "http_timeout");
    }
}
