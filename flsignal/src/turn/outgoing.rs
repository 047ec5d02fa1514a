//! How the TURN state's datagrams leave: built from what the state
//! machine returns, counted, handed to the [`Sink`]; and the state
//! machine's clock.

use std::time::Instant;

use turn_server_proto::api::DelayedMessageOrChannelSend;
use turn_server_proto::types::prelude::DelayedTransmitBuild;

use super::metrics::TurnMetrics;
use super::shaper::Dest;
use super::sink::Sink;

/// Writes an outgoing datagram into `scratch`; its length.
///
/// turn-types 0.7.3 writes a Data indication as a Send indication when
/// asked to write it into a buffer (`DelayedMessage::write_into` ignores
/// that it is for a client), which clients drop; such messages are built
/// the slower way, which gets them right. ChannelData, the common case,
/// is written in place.
pub fn build_into<T: AsRef<[u8]> + std::fmt::Debug>(
    data: DelayedMessageOrChannelSend<T>,
    scratch: &mut Vec<u8>,
) -> usize {
    if let DelayedMessageOrChannelSend::Message(message) = data {
        *scratch = message.build();
        return scratch.len();
    }
    scratch.resize(data.len(), 0);
    data.write_into(scratch)
}

/// Sends a relayed datagram and counts it.
pub fn deliver(metrics: &TurnMetrics, dest: Dest, data: &[u8], sink: &mut impl Sink) {
    match dest {
        Dest::Peer { relay, peer } => {
            metrics.relayed_to_peer(data.len());
            sink.to_peer(relay, peer, data);
        }
        Dest::Client(client) => {
            metrics.relayed_to_client(data.len());
            sink.to_client(client, data);
        }
    }
}

/// The time in `turn-server-proto`'s terms.
pub fn at(epoch: Instant, now: Instant) -> turn_server_proto::types::Instant {
    let nanos = now.saturating_duration_since(epoch).as_nanos();
    turn_server_proto::types::Instant::from_nanos(i64::try_from(nanos).unwrap_or(i64::MAX))
}
