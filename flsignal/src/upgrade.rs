//! The WebSocket upgrade (RFC 6455 §4.2), done here rather than through
//! axum's `ws` extractor so that the connection driver owns a plain
//! tokio-tungstenite stream. That is what lets it send long frames in
//! fragments: tungstenite's write buffer never shrinks, so one 20 KiB node
//! list written whole would stay allocated for the life of an idle node.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use axum::response::IntoResponse;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

use crate::coalesce::WriteCoalescer;
use crate::read_ahead::ReadAhead;

/// The server side of an accepted WebSocket, its writes coalesced
/// between flushes and its reads taken in large gulps.
pub type ServerSocket = WebSocketStream<WriteCoalescer<ReadAhead<TokioIo<hyper::upgrade::Upgraded>>>>;

/// An upgrade that checked out and awaits its 101 response going out.
pub struct PendingUpgrade {
    on_upgrade: OnUpgrade,
}

impl PendingUpgrade {
    /// The WebSocket once the 101 response has gone out.
    pub async fn socket(self, config: WebSocketConfig) -> Option<ServerSocket> {
        let upgraded = self.on_upgrade.await.ok()?;
        Some(
            WebSocketStream::from_raw_socket(
                WriteCoalescer::new(ReadAhead::new(TokioIo::new(upgraded))),
                Role::Server,
                Some(config),
            )
            .await,
        )
    }
}

/// True if the request asks for a WebSocket at all (as opposed to plain HTTP).
pub fn is_upgrade_request(headers: &HeaderMap) -> bool {
    header_has_token(headers, header::UPGRADE, "websocket")
}

/// Why an upgrade request was turned down, as the HTTP answer to give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub reason: &'static str,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response<Body> {
        let mut response = (self.status, self.reason).into_response();
        if self.status == StatusCode::UPGRADE_REQUIRED {
            response
                .headers_mut()
                .insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        }
        response
    }
}

/// Validates a WebSocket upgrade request. `Ok` holds the 101 response to
/// give and the pending socket.
pub fn accept(request: &mut Request<Body>) -> Result<(Response<Body>, PendingUpgrade), Refusal> {
    let headers = request.headers();
    if request.method() != Method::GET
        || !header_has_token(headers, header::CONNECTION, "upgrade")
        || !header_has_token(headers, header::UPGRADE, "websocket")
    {
        return Err(refusal(StatusCode::BAD_REQUEST, "not a WebSocket upgrade request"));
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).map(HeaderValue::as_bytes) != Some(b"13") {
        return Err(refusal(StatusCode::UPGRADE_REQUIRED, "WebSocket version 13 required"));
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return Err(refusal(StatusCode::BAD_REQUEST, "Sec-WebSocket-Key missing"));
    };
    let accept_key = derive_accept_key(key.as_bytes());
    let Some(on_upgrade) = request.extensions_mut().remove::<OnUpgrade>() else {
        return Err(refusal(
            StatusCode::INTERNAL_SERVER_ERROR,
            "connection cannot be upgraded",
        ));
    };
    let response = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept_key)
        .body(Body::empty())
        .unwrap_or_default();
    Ok((response, PendingUpgrade { on_upgrade }))
}

fn refusal(status: StatusCode, reason: &'static str) -> Refusal {
    Refusal { status, reason }
}

/// Whether a comma-separated header contains `token`, case-insensitively.
fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value
            .to_str()
            .map(|text| text.split(',').any(|part| part.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> Request<Body> {
        let mut builder = Request::builder().method("GET").uri("/");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(Body::empty()).unwrap()
    }

    #[test]
    fn refuses_incomplete_upgrades() {
        let mut no_version = request(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert_eq!(
            accept(&mut no_version).err().unwrap().status,
            StatusCode::UPGRADE_REQUIRED
        );
        let mut no_key = request(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-version", "13"),
        ]);
        assert_eq!(accept(&mut no_key).err().unwrap().status, StatusCode::BAD_REQUEST);
        assert!(!is_upgrade_request(request(&[]).headers()));
    }

    #[test]
    fn accept_key_follows_the_rfc_example() {
        // RFC 6455 §1.3.
        assert_eq!(
            derive_accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
