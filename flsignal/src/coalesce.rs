//! Write coalescing under the WebSocket: frames fed between a cork and the
//! next flush leave in one `send` instead of one each.
//!
//! Relaying is mostly system calls, one per frame unless frames are
//! written together (BENCHMARKS.md has the profile). A connection that has
//! several frames queued feeds them all and flushes once, and this layer
//! turns that into a single write.
//!
//! tungstenite's own write buffer would coalesce too, but it never gives
//! its memory back, and tens of thousands of idle nodes each holding the
//! largest batch they ever got is what the per-node memory budget cannot
//! afford. Here the buffer is released whenever it has been written out,
//! so an idle connection holds none; and a lone frame (no cork) is written
//! straight through, so the common case allocates nothing.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes gathered before a write goes out even without a flush.
pub const COALESCE_LIMIT: usize = 16 * 1024;

/// Bytes reserved when a corked batch starts, so that a batch of small
/// frames (relayed setups are a few hundred bytes) is gathered without
/// growing its buffer step by step; released with the rest once written.
pub const BATCH_RESERVE: usize = 4 * 1024;

/// An I/O stream whose writes, once corked, are held until the next flush
/// (or until [`COALESCE_LIMIT`] bytes are held), then written at once.
pub struct WriteCoalescer<T> {
    inner: T,
    pending: Vec<u8>,
    corked: bool,
}

impl<T> WriteCoalescer<T> {
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            pending: Vec::new(),
            corked: false,
        }
    }

    /// The stream underneath.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// Holds writes until the next flush: call it before writing several
    /// frames that should leave together.
    pub fn cork(&mut self) {
        self.corked = true;
    }

    /// Whether writes are being held for the next flush.
    pub fn is_corked(&self) -> bool {
        self.corked
    }
}

impl<T: AsyncWrite + Unpin> WriteCoalescer<T> {
    /// Hands every held byte to the inner stream, then frees the buffer.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let written = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            // Partial writes are rare (the kernel buffer is full): the
            // copy that keeps the rest in front is cheap next to waiting.
            self.pending.drain(..written);
        }
        self.pending = Vec::new();
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteCoalescer<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteCoalescer<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if !self.corked && self.pending.is_empty() {
            return Pin::new(&mut self.inner).poll_write(cx, buf);
        }
        if self.pending.len() + buf.len() > COALESCE_LIMIT {
            ready!(self.poll_drain(cx))?;
            if buf.len() > COALESCE_LIMIT {
                return Pin::new(&mut self.inner).poll_write(cx, buf);
            }
        }
        if self.pending.capacity() == 0 {
            self.pending.reserve(BATCH_RESERVE.max(buf.len()));
        }
        self.pending.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        self.corked = false;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Counts the writes that reach it and accepts at most `chunk` bytes each.
    struct Recorder {
        writes: Vec<Vec<u8>>,
        chunk: usize,
    }

    impl AsyncWrite for Recorder {
        fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.chunk);
            self.writes.push(buf[..n].to_vec());
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn recorder(chunk: usize) -> WriteCoalescer<Recorder> {
        WriteCoalescer::new(Recorder {
            writes: Vec::new(),
            chunk,
        })
    }

    #[tokio::test]
    async fn writes_between_a_cork_and_a_flush_go_out_as_one() {
        let mut io = recorder(usize::MAX);
        assert!(!io.is_corked());
        io.cork();
        assert!(io.is_corked());
        io.write_all(b"one ").await.unwrap();
        io.write_all(b"two ").await.unwrap();
        io.write_all(b"three").await.unwrap();
        assert!(io.inner.writes.is_empty());
        io.flush().await.unwrap();
        assert_eq!(io.inner.writes, vec![b"one two three".to_vec()]);
        assert!(!io.is_corked(), "a flush uncorks");
        assert_eq!(io.pending.capacity(), 0, "the buffer is released once written");
        io.write_all(b"alone").await.unwrap();
        assert_eq!(
            io.inner.writes.len(),
            2,
            "the flush uncorked: writes go straight through"
        );
        assert_eq!(io.pending.capacity(), 0);
    }

    #[tokio::test]
    async fn the_limit_sends_early_and_large_writes_pass_straight_through() {
        let mut io = recorder(usize::MAX);
        io.cork();
        let half = vec![1u8; COALESCE_LIMIT / 2 + 1];
        io.write_all(&half).await.unwrap();
        io.write_all(&half).await.unwrap();
        assert_eq!(io.inner.writes.len(), 1, "the first half went out to make room");
        assert_eq!(io.pending.len(), half.len());
        let large = vec![2u8; COALESCE_LIMIT + 1];
        io.write_all(&large).await.unwrap();
        assert_eq!(io.inner.writes.len(), 3);
        assert_eq!(io.inner.writes[2], large);
        assert_eq!(io.pending.len(), 0);
    }

    #[tokio::test]
    async fn a_batch_starts_with_room_for_several_frames_and_releases_it() {
        let mut io = recorder(usize::MAX);
        io.cork();
        io.write_all(&[1u8; 300]).await.unwrap();
        assert!(io.pending.capacity() >= BATCH_RESERVE);
        let first_buffer = io.pending.as_ptr();
        for _ in 0..10 {
            io.write_all(&[2u8; 300]).await.unwrap();
        }
        assert_eq!(
            io.pending.as_ptr(),
            first_buffer,
            "eleven small frames fit without growing"
        );
        io.flush().await.unwrap();
        assert_eq!(io.pending.capacity(), 0);
    }

    #[tokio::test]
    async fn partial_writes_keep_every_byte_in_order() {
        let mut io = recorder(3);
        io.cork();
        io.write_all(b"abcdefghij").await.unwrap();
        io.flush().await.unwrap();
        assert_eq!(io.inner.writes.concat(), b"abcdefghij");
        assert_eq!(io.inner.writes.len(), 4);
    }

    #[tokio::test]
    async fn reads_pass_through() {
        let (client, server) = tokio::io::duplex(64);
        let mut io = WriteCoalescer::new(server);
        let mut client = client;
        client.write_all(b"hello").await.unwrap();
        let mut got = [0u8; 5];
        io.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello");
        io.write_all(b"back").await.unwrap();
        io.flush().await.unwrap();
        let mut back = [0u8; 4];
        client.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"back");
    }
}
