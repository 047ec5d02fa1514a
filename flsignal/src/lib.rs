//! flsignal: a public-grade WebRTC signalling server that speaks fledger's
//! protocol version 3.
//!
//! The protocol decisions live in the `flproto` crate; this crate is the
//! edge around them:
//!
//! * [`listener`] accepts TCP connections and takes them through a PROXY
//!   header ([`proxy_header`], from [`trusted_proxy`] peers only) and TLS
//!   ([`tls`]) to HTTP; [`admission`] holds the connection limits;
//! * [`routes`] is the HTTP surface (WebSocket, `/healthz`, `/metrics`);
//! * [`web`] is the browser page, embedded in the binary;
//! * [`connection`] drives one WebSocket through `flproto::session` (what
//!   it writes besides whole frames in [`outgoing`]), and
//!   [`datagram_relay`] forwards its relay frames (flags in
//!   [`relay_config`], numbers in [`datagram_metrics`]), and
//!   [`coalesce`] turns its queued frames into one write and
//!   [`read_ahead`] its small reads into one;
//! * [`hub`] is what connections share: the node registry
//!   (`flproto::registry`: presence and, in a cluster, who holds whom)
//!   behind one lock, relay, news, and [`outbox`] how it reaches one
//!   connection (fair shares of its queue); [`news`] keeps one news frame
//!   per connection in its queue at most;
//! * [`heap`] gives freed memory back to the system after many nodes left;
//! * [`fragment_watch`] notices messages left incomplete;
//! * [`cluster`] is the NATS edge that carries what instances of a
//!   cluster tell each other (only with `--nats`), which the hub hands to
//!   the registry, and [`refusal_log`] counts what was refused from it;
//! * [`stun`] answers STUN Binding Requests (bytes in, bytes out),
//!   [`stun_limit`] decides how many replies go out and [`stun_service`]
//!   is its UDP socket (with `--stun-listen`);
//! * [`turn`] is the TURN service (on the STUN socket by default), which
//!   relays for nodes that find no direct path, with credentials handed out
//!   over signalling;
//! * [`server_names`] decides which names bound announces may be signed
//!   for;
//! * [`config`] lists every flag and limit, and [`error`] what can keep
//!   the server from starting.

pub mod admission;
pub mod cluster;
pub mod cluster_datagrams;
pub mod coalesce;
pub mod config;
mod config_validate;
pub mod connection;
pub mod datagram_metrics;
pub mod datagram_queue;
pub mod datagram_relay;
pub mod edge_config;
pub mod error;
pub mod fairness_config;
pub mod fragment_watch;
pub mod heap;
pub mod hub;
pub mod listener;
pub mod malloc_tunable;
pub mod metrics;
pub mod news;
pub mod outbox;
pub mod outgoing;
pub mod proxy_header;
pub mod read_ahead;
pub mod refusal_log;
pub mod relay_config;
pub mod rewound;
pub mod routes;
pub mod server_names;
pub mod stun;
pub mod stun_limit;
pub mod stun_service;
pub mod tls;
pub mod trusted_proxy;
pub mod turn;
pub mod unsent_limit;
pub mod upgrade;
pub mod web;

use std::net::SocketAddr;
use std::sync::Arc;

use flproto::announce::AnnouncePolicy;
use flproto::cluster_message::InstanceId;
use flproto::registry::ClusterConfig;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use admission::PerIpCounter;
pub use config::Config;
pub use error::Error;
use hub::Hub;
use tls::ServerCertificate;
use trusted_proxy::TrustedProxies;

impl Shared {
    /// The limits of a new connection's session.
    pub fn session_config(&self) -> flproto::session::SessionConfig {
        flproto::session::SessionConfig {
            turn_renewal: self.turn_issuer.as_ref().map(|issuer| issuer.renewal_interval()),
            ..self.config.session()
        }
    }

    /// Whether a node from `ip` may announce now (its source's rate).
    pub fn admit_announce(&self, ip: std::net::IpAddr, now: std::time::Instant) -> bool {
        let source = flproto::addr_key::source_key(ip, self.config.edge.ipv6_prefix_len);
        self.announce_rates.lock().try_take(source, now)
    }
}
use server_names::OwnIdentity;

/// Everything the tasks of one server share.
pub struct Shared {
    pub config: Config,
    pub hub: Hub,
    /// The datagram relay: the server's budget, relay queues, the way to
    /// other instances.
    pub datagrams: datagram_relay::DatagramRelay,
    per_ip: PerIpCounter,
    /// Announces per source address (see `--announce-rate-*`).
    announce_rates: parking_lot::Mutex<flproto::source_rate::SourceRates>,
    /// `--trusted-proxy`: peers whose word on the client is taken.
    trusted_proxies: TrustedProxies,
    /// What every connection's announce is checked against, built once at
    /// startup (see [`server_names`]).
    announce_policy: AnnouncePolicy,
    /// Cancelled on SIGTERM/SIGINT: stop accepting, close every node.
    shutdown: CancellationToken,
    /// What version-4 nodes are sent for the TURN service, while it runs.
    pub turn_issuer: Option<turn::issuer::CredentialIssuer>,
    /// Every connection task, so shutdown can wait for them.
    tasks: TaskTracker,
}

/// A bound, not yet running server.
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
    /// The NATS connection, with `--nats`.
    cluster: Option<cluster::ClusterLink>,
    /// The STUN socket, unless `--stun-listen off`.
    stun: Option<Arc<tokio::net::UdpSocket>>,
    /// The TURN service, unless `--turn-listen off`, and its own socket if
    /// it does not share STUN's.
    turn: Option<(Arc<turn::service::TurnService>, Option<Arc<tokio::net::UdpSocket>>)>,
    /// With `--tls-cert`: what the listener's handshakes present, and the
    /// acceptor that asks it.
    tls: Option<(Arc<ServerCertificate>, tokio_rustls::TlsAcceptor)>,
}

impl Server {
    /// Validates `config` and binds its listen address.
    pub async fn bind(config: Config) -> Result<Server, Error> {
        config.validate()?;
        let tls = match (&config.edge.tls_cert, &config.edge.tls_key) {
            (Some(cert), Some(key)) => {
                let certificate = Arc::new(ServerCertificate::load(cert, key)?);
                let acceptor = certificate.acceptor()?;
                Some((certificate, acceptor))
            }
            _ => None,
        };
        let listener = TcpListener::bind(config.listen).await.map_err(|source| Error::Listen {
            addr: config.listen,
            source,
        })?;
        let listen = listener.local_addr().unwrap_or(config.listen);
        // The machine's own names count only without --public-host.
        let own = if config.public_host.is_empty() {
            OwnIdentity::read()
        } else {
            OwnIdentity::default()
        };
        let announce_policy = AnnouncePolicy {
            require_bound: config.require_bound_auth,
            server_names: server_names::accepted_names(&config.public_host, listen, &own).into(),
        };
        let stun = match config.stun_listen.0 {
            Some(addr) => Some(Arc::new(stun_service::bind(addr).await?)),
            None => None,
        };
        let (hub, cluster, datagrams_out) = if config.nats.is_empty() {
            (Hub::new(config.presence()), None, None)
        } else {
            let instance = InstanceId::random();
            let (outgoing, queued) = tokio::sync::mpsc::channel(config.nats_queue);
            let cluster = ClusterConfig {
                instance,
                expiry: config.cluster_expiry,
                max_clock_skew: config.cluster_max_clock_skew,
            };
            let hub = Hub::clustered(config.presence(), cluster, outgoing);
            let (datagrams_out, datagrams_queued) = tokio::sync::mpsc::channel(config.relay.relay_nats_queue);
            let link = cluster::connect(&config, instance, queued, datagrams_queued).await?;
            (hub, Some(link), Some(datagrams_out))
        };
        hub.metrics.datagrams.show_limits(&config);
        let shutdown = CancellationToken::new();
        let acceptor = tls.as_ref().map(|(_, acceptor)| acceptor);
        let turn = turn::start(&config, stun.as_ref(), acceptor, &hub.metrics, &shutdown).await?;
        let (turn_issuer, turn) = match turn {
            Some(turn) => (Some(turn.issuer), Some((turn.service, turn.own_socket))),
            None => (None, None),
        };
        let shared = Arc::new(Shared {
            datagrams: datagram_relay::DatagramRelay::new(&config, datagrams_out),
            hub,
            per_ip: PerIpCounter::default(),
            announce_rates: parking_lot::Mutex::new(flproto::source_rate::SourceRates::new(
                config.fairness.announce_rate(),
                config.fairness.announce_sources,
            )),
            trusted_proxies: config.edge.trusted_proxies(),
            announce_policy,
            shutdown,
            turn_issuer,
            tasks: TaskTracker::new(),
            config,
        });
        Ok(Server {
            listener,
            shared,
            cluster,
            stun,
            turn,
            tls,
        })
    }

    /// The TLS certificate, with `--tls-cert`: [`ServerCertificate::reload`]
    /// replaces it for new connections.
    pub fn tls_certificate(&self) -> Option<Arc<ServerCertificate>> {
        self.tls.as_ref().map(|(certificate, _)| certificate.clone())
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.shared.config.listen)
    }

    /// The server names bound announces are accepted for.
    pub fn accepted_server_names(&self) -> &[String] {
        &self.shared.announce_policy.server_names
    }

    /// The STUN service's UDP address, if it runs.
    pub fn stun_addr(&self) -> Option<SocketAddr> {
        self.stun.as_ref().and_then(|socket| socket.local_addr().ok())
    }

    /// The TURN service's UDP address, if it runs.
    pub fn turn_addr(&self) -> Option<SocketAddr> {
        let (_, own) = self.turn.as_ref()?;
        own.as_ref().or(self.stun.as_ref())?.local_addr().ok()
    }

    /// Cancelling this token shuts the server down gracefully.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shared.shutdown.clone()
    }

    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Serves until the shutdown token is cancelled, then sends close 1001
    /// to every node and waits up to `--drain-timeout` for them.
    pub async fn run(self) {
        let shared = self.shared;
        let cluster = match self.cluster {
            Some(link) => match link.start(shared.clone()).await {
                Ok(tasks) => Some(tasks),
                Err(error) => {
                    let error = &error as &dyn std::error::Error;
                    tracing::error!(error, "serving without the cluster");
                    None
                }
            },
            None => None,
        };
        let news = tokio::spawn(news_ticker(shared.clone()));
        let (turn, turn_socket) = match self.turn {
            Some((service, own)) => (Some(service), own),
            None => (None, None),
        };
        let stun_turn = turn.clone().filter(|_| turn_socket.is_none());
        let stun = self
            .stun
            .map(|socket| tokio::spawn(stun_service::serve(socket, shared.clone(), stun_turn)));
        let turn_socket = turn_socket.map(|socket| tokio::spawn(stun_service::serve(socket, shared.clone(), turn)));
        let router = routes::router(shared.clone());
        let tls = self.tls.map(|(_, acceptor)| acceptor);
        listener::accept_loop(self.listener, shared.clone(), router, tls).await;
        shared.tasks.close();
        if tokio::time::timeout(shared.config.drain_timeout, shared.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(remaining = shared.tasks.len(), "drain timeout: dropping connections");
        }
        news.abort();
        // They end by themselves on shutdown.
        for task in [stun, turn_socket].into_iter().flatten() {
            let _ = task.await;
        }
        if let Some(cluster) = cluster {
            cluster.stop(&shared).await;
        }
    }
}

/// Sends coalesced join/leave news every `--presence-interval`.
async fn news_ticker(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(shared.config.presence_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => shared.hub.flush_news(),
            () = shared.shutdown.cancelled() => return,
        }
    }
}
