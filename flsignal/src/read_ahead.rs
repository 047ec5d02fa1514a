//! Reads under the WebSocket in large gulps, held only while unread.
//!
//! tungstenite reads into its own buffer, whose size is the price every
//! idle node pays for good (`--ws-read-buffer`, 1 KiB by default, which is
//! what keeps a node under its memory budget). A busy connection then
//! takes a `recv` per one or two frames, a large share of a busy server's
//! time (BENCHMARKS.md). Here a read asks the socket for up to [`READ_AHEAD`]
//! bytes at once, hands tungstenite what fits, and keeps the rest for its
//! next reads; the buffer is freed as soon as it is used up, so an idle
//! connection holds none.
//!
//! Everything handed to tungstenite also passes a [`FragmentWatch`], which
//! is how the connection learns of a message left incomplete.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::fragment_watch::FragmentWatch;

/// Bytes asked of the socket in one read.
pub const READ_AHEAD: usize = 16 * 1024;

/// An I/O stream whose small reads are served from one large read.
pub struct ReadAhead<T> {
    inner: T,
    held: BytesMut,
    fragments: FragmentWatch,
}

impl<T> ReadAhead<T> {
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            held: BytesMut::new(),
            fragments: FragmentWatch::default(),
        }
    }

    /// Since when a fragmented message has been incomplete, if one is.
    pub fn partial_message_since(&self) -> Option<std::time::Instant> {
        self.fragments.open_since()
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ReadAhead<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.held.is_empty() {
            if buf.remaining() >= READ_AHEAD {
                let before = buf.filled().len();
                ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
                this.fragments.observe(&buf.filled()[before..]);
                return Poll::Ready(Ok(()));
            }
            let mut ahead = BytesMut::with_capacity(READ_AHEAD);
            ready!(tokio_util::io::poll_read_buf(Pin::new(&mut this.inner), cx, &mut ahead))?;
            this.held = ahead;
        }
        let count = buf.remaining().min(this.held.len());
        buf.put_slice(&this.held[..count]);
        this.fragments.observe(&this.held[..count]);
        this.held.advance(count);
        if this.held.is_empty() {
            // Free it: an idle connection holds no read-ahead.
            this.held = BytesMut::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ReadAhead<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn small_reads_are_served_from_one_large_read_and_the_buffer_is_freed() {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let mut io = ReadAhead::new(server);
        let sent: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        client.write_all(&sent).await.unwrap();
        let mut got = Vec::new();
        let mut chunk = [0u8; 1024];
        let first = io.read(&mut chunk).await.unwrap();
        got.extend_from_slice(&chunk[..first]);
        assert_eq!(first, 1024);
        assert_eq!(io.held.len(), sent.len() - 1024, "the rest came in the same read");
        while got.len() < sent.len() {
            let n = io.read(&mut chunk).await.unwrap();
            got.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(got, sent);
        assert_eq!(io.held.len(), 0);
        assert_eq!(io.held.capacity(), 0, "used up, so freed");
    }

    #[tokio::test]
    async fn end_of_stream_and_large_reads_pass_through() {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let mut io = ReadAhead::new(server);
        client.write_all(b"abc").await.unwrap();
        let mut large = vec![0u8; READ_AHEAD];
        assert_eq!(io.read(&mut large).await.unwrap(), 3);
        assert_eq!(io.held.capacity(), 0, "nothing held for a large read");
        drop(client);
        let mut small = [0u8; 16];
        assert_eq!(io.read(&mut small).await.unwrap(), 0);
    }
}
