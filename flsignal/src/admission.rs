//! Who may take a connection: the places in `--max-connections` and, per
//! client, in `--max-connections-per-ip`. Clients are counted by
//! [`source_key`]: IPv4 addresses as they are, IPv6 by their
//! `--ipv6-prefix-len` prefix. The client is the TCP peer, or whom a
//! trusted proxy says it is.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use flproto::addr_key::source_key;
use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::Metrics;
use crate::Shared;

/// Counts connections per source key.
#[derive(Default)]
pub struct PerIpCounter {
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// Held for as long as a TCP connection lives, including after it became
/// a WebSocket; dropping it frees the connection's place.
pub struct ConnectionPermit {
    _slot: OwnedSemaphorePermit,
    shared: Arc<Shared>,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.shared.hub.metrics.connections.dec();
    }
}

/// A client's place in `--max-connections-per-ip`, held for as long as
/// its connection (or, behind a proxy that forwards HTTP, its WebSocket)
/// lives.
pub struct SourcePermit {
    key: IpAddr,
    shared: Arc<Shared>,
}

impl Drop for SourcePermit {
    fn drop(&mut self) {
        let mut counts = self.shared.per_ip.counts.lock();
        if let Some(count) = counts.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// A place in `--max-connections`, or `None` (counted) when all are taken.
pub fn admit_connection(shared: &Arc<Shared>, slots: &Arc<Semaphore>) -> Option<ConnectionPermit> {
    let Ok(slot) = slots.clone().try_acquire_owned() else {
        Metrics::count(&shared.hub.metrics.rejected_connections, "max_connections");
        return None;
    };
    shared.hub.metrics.connections.inc();
    Some(ConnectionPermit {
        _slot: slot,
        shared: shared.clone(),
    })
}

/// A place for one more connection of `client`, or `None` (counted) when
/// its source already has `--max-connections-per-ip`.
pub fn admit_source(shared: &Arc<Shared>, client: IpAddr) -> Option<SourcePermit> {
    let key = source_key(client, shared.config.edge.ipv6_prefix_len);
    let mut counts = shared.per_ip.counts.lock();
    let count = counts.entry(key).or_insert(0);
    if *count >= shared.config.max_connections_per_ip {
        Metrics::count(&shared.hub.metrics.rejected_connections, "per_ip");
        return None;
    }
    *count += 1;
    Some(SourcePermit {
        key,
        shared: shared.clone(),
    })
}
