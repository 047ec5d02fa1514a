//! Many datagrams per system call on a WireGuard-facing socket: `recvmmsg`
//! in, UDP GSO (one `sendmsg` for a run of equal-sized datagrams) out,
//! through quinn-udp, the crate the WebRTC stack's own sockets use.
//!
//! A datagram read one `recvfrom` at a time costs a system call and a
//! wake-up each; at tens of thousands a second that was most of flnode's
//! time (BENCHMARKS.md, the data-path profile).

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;

use quinn_udp::{RecvMeta, Transmit, UdpSockRef, UdpSocketState};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Datagrams taken from the kernel in one `recvmmsg`: quinn-udp's batch.
pub const RECV_BATCH: usize = quinn_udp::BATCH_SIZE;
/// Bytes each receive slot starts with: a datagram of an interface with an
/// MTU up to 2 000 fits, which covers every usual WireGuard setting.
pub const RECV_SLOT_BYTES: usize = 2048;
/// Largest datagram read from the local WireGuard (the largest UDP payload).
pub const MAX_DATAGRAM: usize = 65_535;
/// Slots kept once a datagram did not fit [`RECV_SLOT_BYTES`]: fewer, so
/// that the receive buffer stays at 256 KiB.
pub const LARGE_RECV_BATCH: usize = 4;
/// Most bytes one GSO send carries (the largest UDP payload).
pub const MAX_GSO_BYTES: usize = 65_000;

/// A UDP socket read and written in batches.
#[derive(Debug)]
pub struct BatchSocket {
    io: UdpSocket,
    state: UdpSocketState,
}

/// Where one `recvmmsg` lands: [`RECV_BATCH`] slots of [`RECV_SLOT_BYTES`],
/// reused for every read, and what each slot received.
pub struct RecvSlots {
    buffer: Vec<u8>,
    slot: usize,
    meta: Vec<RecvMeta>,
    filled: usize,
}

/// One datagram of a batch just read.
#[derive(Debug)]
pub enum Received<'a> {
    Datagram {
        source: SocketAddr,
        data: &'a [u8],
    },
    /// It filled its slot, so it may have been cut short: not to be
    /// forwarded. The slots have grown to [`MAX_DATAGRAM`] for the next read.
    Truncated {
        source: SocketAddr,
    },
}

impl Default for RecvSlots {
    fn default() -> Self {
        RecvSlots::new(RECV_SLOT_BYTES, RECV_BATCH)
    }
}

impl RecvSlots {
    fn new(slot: usize, count: usize) -> Self {
        RecvSlots {
            buffer: vec![0; slot * count],
            slot,
            meta: vec![RecvMeta::default(); count],
            filled: 0,
        }
    }

    /// The datagrams of the last read, in the order the kernel had them.
    pub fn received(&self) -> impl Iterator<Item = Received<'_>> {
        self.meta[..self.filled].iter().enumerate().map(|(index, meta)| {
            if meta.len >= self.slot && self.slot < MAX_DATAGRAM {
                return Received::Truncated { source: meta.addr };
            }
            let start = index * self.slot;
            Received::Datagram {
                source: meta.addr,
                data: &self.buffer[start..start + meta.len.min(self.slot)],
            }
        })
    }

    /// After a datagram did not fit: slots of [`MAX_DATAGRAM`] from now on.
    fn grow_if_truncated(&mut self) {
        let truncated = self.meta[..self.filled]
            .iter()
            .any(|meta| meta.len >= self.slot && self.slot < MAX_DATAGRAM);
        if truncated {
            tracing::warn!(
                slot = self.slot,
                "a datagram from WireGuard filled its receive slot and was dropped; reading up to {MAX_DATAGRAM} bytes from now on"
            );
            *self = RecvSlots::new(MAX_DATAGRAM, LARGE_RECV_BATCH);
        }
    }
}

impl BatchSocket {
    /// Takes over `io`. GRO stays off: the kernel hands over one datagram
    /// per slot, whatever the sender batched.
    pub fn new(io: UdpSocket) -> io::Result<Self> {
        let state = UdpSocketState::new(UdpSockRef::from(&io))?;
        nix::sys::socket::setsockopt(&io, nix::sys::socket::sockopt::UdpGroSegment, &false).map_err(io::Error::from)?;
        Ok(BatchSocket { io, state })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    /// Waits for datagrams and reads as many as are there, up to the
    /// slots' count, in one `recvmmsg`.
    pub async fn recv(&self, slots: &mut RecvSlots) -> io::Result<()> {
        slots.filled = 0;
        let filled = self
            .io
            .async_io(Interest::READABLE, || {
                let mut bufs: Vec<IoSliceMut<'_>> = slots.buffer.chunks_mut(slots.slot).map(IoSliceMut::new).collect();
                self.state.recv(UdpSockRef::from(&self.io), &mut bufs, &mut slots.meta)
            })
            .await?;
        slots.filled = filled;
        Ok(())
    }

    /// Called after the datagrams of a read were handled.
    pub fn recycle(&self, slots: &mut RecvSlots) {
        slots.grow_if_truncated();
        slots.filled = 0;
    }

    /// Sends `datagrams` to `destination` in order: each run of equal-sized
    /// ones (the last of a run may be shorter) as one GSO `sendmsg` where
    /// the kernel has GSO, the others one by one. `scratch` is where a
    /// run is laid end to end; it is kept for the next call.
    pub async fn send_all<D: AsRef<[u8]>>(
        &self,
        destination: SocketAddr,
        datagrams: &[D],
        scratch: &mut Vec<u8>,
    ) -> io::Result<()> {
        let max_segments = self.state.max_gso_segments();
        let mut rest = datagrams;
        while let Some(first) = rest.first() {
            let size = first.as_ref().len();
            let run = gso_run(rest, max_segments);
            let contents = if run == 1 {
                first.as_ref()
            } else {
                scratch.clear();
                for datagram in &rest[..run] {
                    scratch.extend_from_slice(datagram.as_ref());
                }
                scratch.as_slice()
            };
            let transmit = Transmit {
                destination,
                ecn: None,
                contents,
                segment_size: (run > 1).then_some(size),
                src_ip: None,
            };
            self.io
                .async_io(Interest::WRITABLE, || {
                    self.state.try_send(UdpSockRef::from(&self.io), &transmit)
                })
                .await?;
            rest = &rest[run..];
        }
        Ok(())
    }
}

/// How many of `datagrams` (at least one) go in one GSO send: the first
/// and those after it of the same size, then at most one shorter, within
/// `max_segments` and [`MAX_GSO_BYTES`]. Empty datagrams go alone.
fn gso_run<D: AsRef<[u8]>>(datagrams: &[D], max_segments: usize) -> usize {
    let size = datagrams[0].as_ref().len();
    if size == 0 {
        return 1;
    }
    let mut run = 1;
    let mut bytes = size;
    for datagram in &datagrams[1..] {
        let len = datagram.as_ref().len();
        if run == max_segments || len == 0 || len > size || bytes + len > MAX_GSO_BYTES {
            break;
        }
        run += 1;
        bytes += len;
        if len < size {
            break;
        }
    }
    run
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(sizes: &[usize]) -> Vec<Vec<u8>> {
        sizes.iter().map(|&size| vec![0u8; size]).collect()
    }

    #[test]
    fn a_run_is_equal_sizes_and_at_most_one_shorter_last() {
        assert_eq!(gso_run(&sizes(&[100, 100, 100, 60, 100]), 64), 4);
        assert_eq!(gso_run(&sizes(&[100, 120]), 64), 1, "a longer one starts the next run");
        assert_eq!(gso_run(&sizes(&[100, 100, 100]), 2), 2, "the kernel's segment limit");
        assert_eq!(gso_run(&sizes(&[0, 0]), 64), 1, "empty datagrams go alone");
        assert_eq!(
            gso_run(&sizes(&[1400; 60]), 64),
            MAX_GSO_BYTES / 1400,
            "within 65 000 bytes"
        );
    }

    async fn pair() -> (BatchSocket, UdpSocket) {
        let ours = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let theirs = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        (BatchSocket::new(ours).unwrap(), theirs)
    }

    #[tokio::test]
    async fn datagrams_sent_in_runs_arrive_whole_and_in_order() {
        let (ours, theirs) = pair().await;
        let datagrams: Vec<Vec<u8>> = [1400, 1400, 1400, 96, 1400, 700, 0, 1400]
            .iter()
            .enumerate()
            .map(|(index, &size)| vec![index as u8; size])
            .collect();
        let mut scratch = Vec::new();
        ours.send_all(theirs.local_addr().unwrap(), &datagrams, &mut scratch)
            .await
            .unwrap();
        let mut buffer = vec![0u8; 4096];
        for expected in &datagrams {
            let (len, _) = theirs.recv_from(&mut buffer).await.unwrap();
            assert_eq!(&buffer[..len], expected.as_slice());
        }
    }

    #[tokio::test]
    async fn a_batch_is_read_in_order_and_an_oversized_datagram_grows_the_slots() {
        let (ours, theirs) = pair().await;
        let to = ours.local_addr().unwrap();
        for index in 0..5u8 {
            theirs.send_to(&[index; 1000], to).await.unwrap();
        }
        theirs.send_to(&[9; 3000], to).await.unwrap();
        let mut slots = RecvSlots::default();
        let mut seen = Vec::new();
        while seen.len() < 6 {
            ours.recv(&mut slots).await.unwrap();
            for received in slots.received() {
                seen.push(match received {
                    Received::Datagram { data, .. } => Some((data[0], data.len())),
                    Received::Truncated { .. } => None,
                });
            }
            ours.recycle(&mut slots);
        }
        let expected: Vec<_> = (0..5u8).map(|index| Some((index, 1000))).chain([None]).collect();
        assert_eq!(seen, expected);
        theirs.send_to(&[7; 3000], to).await.unwrap();
        ours.recv(&mut slots).await.unwrap();
        let received: Vec<_> = slots.received().collect();
        assert!(matches!(received[..], [Received::Datagram { data, .. }] if data.len() == 3000));
    }
}
