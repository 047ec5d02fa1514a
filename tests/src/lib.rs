//! Test helpers: a real WebSocket client that speaks the signalling
//! protocol ([`client`]), a handle on a real `flsignal` process
//! ([`server_process`]), plain HTTP requests ([`http`]), and the
//! test beds of the cross-process tests (network namespaces, NAT,
//! WireGuard, NATS, TLS).
//!
//! Used by the cross-process tests in `tests/tests/` and by flsignal's own
//! in-process tests. Nothing here is a mock: the client is
//! tokio-tungstenite over TCP, the server is the real one.

use std::time::Duration;

pub mod browser;
pub mod client;
pub mod cluster;
pub mod flnode;
pub mod hostile_relay;
pub mod http;
pub mod leaks;
pub mod managed;
pub mod mesh;
pub mod nat;
pub mod nats;
pub mod netns;
pub mod proc_usage;
pub mod server_process;
pub mod spread;
pub mod stun_client;
pub mod tls;
pub mod wireguard;

pub use client::{ids_of, Client, Event, Socket};
pub use http::{http_get, http_get_head};
pub use server_process::{binary, ServerProcess};
pub use tokio_tungstenite::tungstenite;

/// How long a test waits for something that should happen promptly.
pub const PATIENCE: Duration = Duration::from_secs(10);
