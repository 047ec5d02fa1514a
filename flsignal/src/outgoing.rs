//! What a connection's driver writes besides whole frames: text in
//! fragments, and the two queues it serves, signalling before relay
//! frames.

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::{self, Bytes, Message, Utf8Bytes};

use crate::datagram_queue::DatagramInbox;
use crate::hub::Outbound;
use crate::upgrade::ServerSocket;

/// Text longer than this goes out in fragments of this size, which bounds
/// the socket's write buffer (it keeps its largest size for good).
pub const FRAGMENT_SIZE: usize = 1024;

/// A frame waiting to be written.
pub enum Pending {
    Signal(Outbound),
    Datagram(Bytes),
}

/// The next relay frame for a node granted the relay; never, for any other.
pub async fn next_datagram(queue: &Option<DatagramInbox>) -> Bytes {
    match queue {
        Some(queue) => queue.next().await,
        None => std::future::pending().await,
    }
}

/// Queues one text message without flushing. Text longer than
/// [`FRAGMENT_SIZE`] goes in fragments of that size.
pub async fn feed_text(socket: &mut ServerSocket, text: Utf8Bytes) -> Result<(), tungstenite::Error> {
    if text.len() <= FRAGMENT_SIZE {
        return socket.feed(Message::Text(text)).await;
    }
    let bytes = Bytes::from(text);
    let count = bytes.len().div_ceil(FRAGMENT_SIZE);
    socket.get_mut().cork();
    for index in 0..count {
        let chunk = bytes.slice(index * FRAGMENT_SIZE..bytes.len().min((index + 1) * FRAGMENT_SIZE));
        let opcode = if index == 0 { Data::Text } else { Data::Continue };
        let frame = Frame::message(chunk, OpCode::Data(opcode), index + 1 == count);
        socket.feed(Message::Frame(frame)).await?;
    }
    Ok(())
}
