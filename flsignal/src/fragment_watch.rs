//! Notices a fragmented WebSocket message that is left incomplete.
//!
//! tungstenite assembles fragments itself and hands the connection only
//! whole messages and control frames, so a client can open a message with
//! a non-final fragment and keep it open for good by sending pings in
//! between: every ping counts as a sign of life. This watch reads the
//! frame headers of what tungstenite is handed (client frames, RFC 6455
//! §5.2) and says since when a message has been incomplete; the session
//! closes the connection once that lasts past the fragment timeout.

use std::time::Instant;

/// Longest frame header: 2 bytes, 8 of extended length, 4 of mask key.
const MAX_HEADER: usize = 14;

/// The state of the inbound frame stream; see the module documentation.
#[derive(Debug, Default)]
pub struct FragmentWatch {
    header: [u8; MAX_HEADER],
    /// Header bytes collected of the frame being read.
    have: u8,
    /// Payload bytes of the current frame still to come.
    payload_left: u64,
    /// When the first fragment of the incomplete message arrived.
    open_since: Option<Instant>,
}

impl FragmentWatch {
    /// Since when a fragmented message has been incomplete, if one is.
    pub fn open_since(&self) -> Option<Instant> {
        self.open_since
    }

    /// Follows the frames in `bytes`, the next bytes of the stream.
    pub fn observe(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let skip = usize::try_from(self.payload_left)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                self.payload_left -= skip as u64;
                bytes = &bytes[skip..];
                continue;
            }
            let have = usize::from(self.have);
            let need = header_len(&self.header[..have]);
            let take = (need - have).min(bytes.len());
            self.header[have..have + take].copy_from_slice(&bytes[..take]);
            self.have += take as u8;
            bytes = &bytes[take..];
            // The length fields may say the header is longer than thought.
            if usize::from(self.have) == header_len(&self.header[..usize::from(self.have)]) {
                self.on_header();
            }
        }
    }

    fn on_header(&mut self) {
        let header = &self.header[..usize::from(self.have)];
        let fin = header[0] & 0x80 != 0;
        let opcode = header[0] & 0x0f;
        self.payload_left = payload_len(header);
        self.have = 0;
        // Data frames are 0 (continuation), 1 (text) and 2 (binary);
        // control frames never split a message.
        if opcode <= 2 {
            self.open_since = match (fin, self.open_since) {
                (true, _) => None,
                (false, Some(since)) => Some(since),
                (false, None) => Some(Instant::now()),
            };
        }
    }
}

/// How long the header starting with `known` is: as far as can be told
/// from the bytes known so far (at least one more while it is unknown).
fn header_len(known: &[u8]) -> usize {
    if known.len() < 2 {
        return 2;
    }
    let mask = if known[1] & 0x80 != 0 { 4 } else { 0 };
    let extended = match known[1] & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    2 + extended + mask
}

fn payload_len(header: &[u8]) -> u64 {
    match header[1] & 0x7f {
        126 => u64::from(u16::from_be_bytes([header[2], header[3]])),
        127 => header[2..10].iter().fold(0, |len, &byte| (len << 8) | u64::from(byte)),
        short => u64::from(short),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// One masked client frame, as a browser would send it.
    fn frame(fin: bool, opcode: u8, payload_len: usize) -> Vec<u8> {
        let mut bytes = vec![(u8::from(fin) << 7) | opcode];
        match payload_len {
            0..=125 => bytes.push(0x80 | payload_len as u8),
            126..=65_535 => {
                bytes.push(0x80 | 126);
                bytes.extend_from_slice(&(payload_len as u16).to_be_bytes());
            }
            _ => {
                bytes.push(0x80 | 127);
                bytes.extend_from_slice(&(payload_len as u64).to_be_bytes());
            }
        }
        bytes.extend_from_slice(&[1, 2, 3, 4]);
        // Payload bytes that look like headers must not confuse it.
        bytes.extend(std::iter::repeat_n(0x01, payload_len));
        bytes
    }

    #[test]
    fn a_message_is_open_from_its_first_fragment_to_its_last() {
        let mut watch = FragmentWatch::default();
        watch.observe(&frame(true, 1, 10));
        assert!(watch.open_since().is_none());
        watch.observe(&frame(false, 1, 300));
        let since = watch.open_since().expect("open");
        watch.observe(&frame(true, 9, 0));
        watch.observe(&frame(false, 0, 70_000));
        assert_eq!(watch.open_since(), Some(since), "pings and fragments do not reset it");
        watch.observe(&frame(true, 0, 5));
        assert!(watch.open_since().is_none());
    }

    proptest! {
        /// However the stream is cut into reads, the watch ends in the
        /// state the frames say.
        #[test]
        fn any_chunking_of_any_frames_is_followed(
            frames in proptest::collection::vec((any::<bool>(), prop_oneof![Just(0u8), Just(1), Just(9), Just(10)], 0usize..70_000), 1..12),
            cut in 1usize..5_000,
        ) {
            let mut stream = Vec::new();
            let mut open = false;
            for &(fin, opcode, len) in &frames {
                let len = if opcode >= 8 { len % 126 } else { len };
                stream.extend(frame(fin || opcode >= 8, opcode, len));
                if opcode <= 2 {
                    open = !fin;
                }
            }
            let mut watch = FragmentWatch::default();
            for chunk in stream.chunks(cut) {
                watch.observe(chunk);
            }
            prop_assert_eq!(watch.open_since().is_some(), open);
            prop_assert_eq!(watch.have, 0);
            prop_assert_eq!(watch.payload_left, 0);
        }
    }
}
