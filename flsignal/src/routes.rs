//! The HTTP surface: one table of routes.
//!
//! * `GET /` with a WebSocket upgrade: the signalling protocol (the URL
//!   fledger nodes use). Without an upgrade: the browser page ([`web`]).
//! * `GET /web/{name}`: the page's scripts and stylesheet.
//! * `GET /healthz`: liveness and a little state, as JSON (with the NATS
//!   link's state in a cluster).
//! * `GET /metrics`: Prometheus text format.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::admission;
use crate::listener::{Client, ConnectionContext};
use crate::{connection, upgrade, web, Shared};

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(signalling))
        .route("/web/{name}", get(web::asset))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(shared)
}

async fn signalling(
    State(shared): State<Arc<Shared>>,
    Extension(context): Extension<ConnectionContext>,
    mut request: Request<Body>,
) -> Response {
    if !upgrade::is_upgrade_request(request.headers()) {
        return web::index();
    }
    let (client, source) = match context.client {
        Client::Known { ip, permit } => (ip, permit),
        Client::Forwarded { proxy } => {
            let client = shared.trusted_proxies.forwarded_client(proxy, request.headers());
            match admission::admit_source(&shared, client) {
                Some(permit) => (client, Arc::new(permit)),
                None => {
                    return (StatusCode::TOO_MANY_REQUESTS, "too many connections from your address").into_response()
                }
            }
        }
    };
    let (response, pending) = match upgrade::accept(&mut request) {
        Ok(accepted) => accepted,
        Err(refusal) => return refusal.into_response(),
    };
    let policy = shared.announce_policy.clone();
    let config = &shared.config;
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(config.max_message_size))
        .max_frame_size(Some(config.max_message_size))
        .read_buffer_size(config.ws_read_buffer)
        .write_buffer_size(0)
        .max_write_buffer_size(config.max_message_size * 4);
    let tasks = shared.tasks.clone();
    tasks.spawn(async move {
        // The permits live as long as the WebSocket does.
        let _permits = (context.permit, source);
        if let Some(socket) = pending.socket(ws_config).await {
            connection::run(socket, shared, policy, client).await;
        }
    });
    response
}

async fn healthz(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let mut body = serde_json::json!({
        "status": "ok",
        "nodes": shared.hub.online(),
    });
    // Local nodes are served whether or not NATS is up, so the status stays
    // "ok"; `nats` says whether the rest of the cluster is reachable.
    if let Some((instance, up, instances)) = shared.hub.cluster_status() {
        body["nats"] = (if up { "up" } else { "down" }).into();
        body["instance"] = instance.to_string().into();
        body["instances"] = instances.into();
        body["cluster_nodes"] = shared.hub.online_in_cluster().into();
    }
    ([(header::CONTENT_TYPE, "application/json")], body.to_string())
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.hub.metrics.render(),
    )
}
