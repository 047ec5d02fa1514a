//! TURN over a byte stream (TCP, TLS): STUN messages and ChannelData back
//! to back (RFC 8656 §12.5: ChannelData padded to four bytes). The
//! [`Framer`] cuts a stream into whole frames; anything else ends the
//! connection, so it never holds more than one frame and one read.

/// STUN's header: its length field counts what follows.
const STUN_HEADER: usize = 20;
/// ChannelData's header.
const CHANNEL_HEADER: usize = 4;

/// The stream does not carry TURN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not STUN or ChannelData")]
pub struct NotTurn;

/// Bytes read from a stream, cut into frames.
#[derive(Debug, Default)]
pub struct Framer {
    buffer: Vec<u8>,
}

impl Framer {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next whole frame: a STUN message, or ChannelData without its
    /// padding. `None` until one is complete.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, NotTurn> {
        let Some(&first) = self.buffer.first() else {
            return Ok(None);
        };
        if self.buffer.len() < CHANNEL_HEADER {
            return Ok(None);
        }
        let length = usize::from(u16::from_be_bytes([self.buffer[2], self.buffer[3]]));
        let (frame, consumed) = match first {
            // STUN: the two top bits are zero; the length is a multiple
            // of four.
            0x00..=0x3f if length % 4 == 0 => (STUN_HEADER + length, STUN_HEADER + length),
            // ChannelData, padded on streams.
            0x40..=0x7f => (CHANNEL_HEADER + length, (CHANNEL_HEADER + length).next_multiple_of(4)),
            _ => return Err(NotTurn),
        };
        if self.buffer.len() < consumed {
            return Ok(None);
        }
        let rest = self.buffer.split_off(consumed);
        let mut frame_bytes = std::mem::replace(&mut self.buffer, rest);
        frame_bytes.truncate(frame);
        Ok(Some(frame_bytes))
    }

    /// Bytes held that are not yet a whole frame.
    pub fn pending(&self) -> usize {
        self.buffer.len()
    }
}

/// `frame` as it goes onto a stream: ChannelData padded to four bytes.
pub fn padded(frame: &[u8]) -> Vec<u8> {
    let mut bytes = frame.to_vec();
    if matches!(frame.first(), Some(0x40..=0x7f)) {
        bytes.resize(frame.len().next_multiple_of(4), 0);
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stun(body: usize) -> Vec<u8> {
        let mut message = vec![0x00, 0x03];
        message.extend_from_slice(&(body as u16).to_be_bytes());
        message.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
        message.extend_from_slice(&[7; 12]);
        message.extend(std::iter::repeat_n(1, body));
        message
    }

    #[test]
    fn frames_come_out_whole_however_the_stream_is_cut() {
        let channel = [0x40, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5, 0, 0, 0];
        let mut stream = stun(8);
        stream.extend_from_slice(&channel);
        stream.extend(stun(0));
        for cut in 1..stream.len() {
            let mut framer = Framer::default();
            let mut frames = Vec::new();
            for piece in stream.chunks(cut) {
                framer.push(piece);
                while let Some(frame) = framer.next_frame().unwrap() {
                    frames.push(frame);
                }
            }
            assert_eq!(frames, [stun(8), channel[..9].to_vec(), stun(0)], "cut {cut}");
            assert_eq!(framer.pending(), 0);
        }
    }

    #[test]
    fn anything_else_ends_the_stream() {
        // (Text that starts like ChannelData, `GET …` say, is read as
        // such: the state machine drops it, and the connection, holding no
        // allocation, is closed after its handshake time.)
        for junk in [&[0x80, 0, 0, 0][..], &[0xff; 8], &[0x00, 0x01, 0x00, 0x03]] {
            let mut framer = Framer::default();
            framer.push(junk);
            assert_eq!(framer.next_frame(), Err(NotTurn), "{junk:?}");
        }
    }

    #[test]
    fn a_frame_is_held_until_complete_and_never_more() {
        let mut framer = Framer::default();
        let big = stun(65_532);
        framer.push(&big[..40_000]);
        assert_eq!(framer.next_frame(), Ok(None));
        framer.push(&big[40_000..]);
        assert_eq!(framer.next_frame().unwrap().map(|frame| frame.len()), Some(65_552));
    }

    #[test]
    fn channel_data_is_padded_on_the_way_out() {
        assert_eq!(
            padded(&[0x40, 0x01, 0x00, 0x01, 9]),
            [0x40, 0x01, 0x00, 0x01, 9, 0, 0, 0]
        );
        assert_eq!(padded(&[0x40, 0x01, 0x00, 0x00]).len(), 4);
        assert_eq!(padded(&stun(1)).len(), stun(1).len());
    }
}
