//! RFC 4571 framing: every packet on an ICE-TCP connection (STUN checks and application
//! data alike) is prefixed by its length as a 16-bit big-endian integer (PROTOCOLS §6.3,
//! pjnath's ice_strans over TCP).
//!
//! [`Decoder`] is a streaming, bounded reassembler: feed it whatever the byte stream
//! delivered, in any split, and pop whole frames. It never panics and never holds more than
//! one frame plus [`MAX_BUFFERED_FRAMES`] complete frames.

use std::collections::VecDeque;

/// Largest payload a 2-byte length can announce.
pub const MAX_FRAME: usize = u16::MAX as usize;

/// Complete frames kept until the caller pops them; a peer that streams faster than we
/// consume is refused past this, so memory stays bounded (64 × 64 KiB = 4 MiB at worst).
pub const MAX_BUFFERED_FRAMES: usize = 64;

/// Why [`frame`] or [`Decoder::push`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("payload of {0} bytes exceeds the 65535-byte RFC 4571 frame")]
    TooLarge(usize),
    #[error("more than {MAX_BUFFERED_FRAMES} complete frames waiting to be read")]
    Backlog,
}

/// Prefixes `payload` with its 2-byte length.
pub fn frame(payload: &[u8]) -> Result<Vec<u8>, FramingError> {
    let len = u16::try_from(payload.len()).map_err(|_| FramingError::TooLarge(payload.len()))?;
    let mut out = Vec::with_capacity(payload.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

/// Streaming RFC 4571 decoder.
#[derive(Debug, Default, Clone)]
pub struct Decoder {
    /// Bytes of the frame being assembled (length prefix included).
    partial: Vec<u8>,
    ready: VecDeque<Vec<u8>>,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends stream bytes. On [`FramingError::Backlog`] the bytes past the point where
    /// the backlog filled are not consumed; a reader that pops between calls should use
    /// [`Decoder::push_partial`] instead.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), FramingError> {
        if self.push_partial(bytes) < bytes.len() {
            return Err(FramingError::Backlog);
        }
        Ok(())
    }

    /// Consumes bytes until they run out or [`MAX_BUFFERED_FRAMES`] frames wait; returns
    /// how many bytes were consumed. Pop frames and call again with the rest.
    pub fn push_partial(&mut self, bytes: &[u8]) -> usize {
        let mut rest = bytes;
        while !rest.is_empty() && self.ready.len() < MAX_BUFFERED_FRAMES {
            let need = match self.partial.len() {
                n if n < 2 => 2 - n,
                n => 2 + usize::from(u16::from_be_bytes([self.partial[0], self.partial[1]])) - n,
            };
            let take = need.min(rest.len());
            self.partial.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.partial.len() >= 2 {
                let len = usize::from(u16::from_be_bytes([self.partial[0], self.partial[1]]));
                if self.partial.len() == 2 + len {
                    let payload = self.partial.split_off(2);
                    self.partial.clear();
                    self.ready.push_back(payload);
                }
            }
        }
        bytes.len() - rest.len()
    }

    /// The next complete frame's payload.
    pub fn pop(&mut self) -> Option<Vec<u8>> {
        self.ready.pop_front()
    }

    /// Bytes of an incomplete frame held (for diagnostics and tests).
    pub fn pending(&self) -> usize {
        self.partial.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(d: &mut Decoder) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| d.pop()).collect()
    }

    #[test]
    fn empty_frame_and_exact_bytes() {
        assert_eq!(frame(b"").unwrap(), vec![0, 0]);
        assert_eq!(frame(b"abc").unwrap(), vec![0, 3, b'a', b'b', b'c']);
        let mut d = Decoder::new();
        d.push(&[0, 0, 0, 1, 7]).unwrap();
        assert_eq!(decode_all(&mut d), vec![vec![], vec![7]]);
    }

    #[test]
    fn oversized_payload_refused() {
        assert_eq!(
            frame(&vec![0; MAX_FRAME + 1]),
            Err(FramingError::TooLarge(MAX_FRAME + 1))
        );
        assert_eq!(frame(&vec![0; MAX_FRAME]).unwrap().len(), MAX_FRAME + 2);
    }

    #[test]
    fn backlog_is_bounded() {
        let mut d = Decoder::new();
        let many: Vec<u8> = (0..=MAX_BUFFERED_FRAMES)
            .flat_map(|_| frame(b"x").unwrap())
            .collect();
        assert_eq!(d.push(&many), Err(FramingError::Backlog));
        assert_eq!(decode_all(&mut d).len(), MAX_BUFFERED_FRAMES);
        // A reader that pops between calls gets everything.
        let mut d = Decoder::new();
        let (mut rest, mut got) = (&many[..], 0);
        while !rest.is_empty() {
            rest = &rest[d.push_partial(rest)..];
            got += decode_all(&mut d).len();
        }
        assert_eq!(got, MAX_BUFFERED_FRAMES + 1);
    }

    proptest! {
        #[test]
        fn every_split_point_yields_the_same_frames(
            frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..6),
            split in any::<proptest::sample::Index>(),
        ) {
            let wire: Vec<u8> = frames.iter().flat_map(|f| frame(f).unwrap()).collect();
            // All single split points are checked; `split` additionally picks a second cut.
            for at in 0..=wire.len() {
                let mut d = Decoder::new();
                let second = if wire.is_empty() { 0 } else { at + split.index(wire.len() - at + 1) };
                d.push(&wire[..at]).unwrap();
                d.push(&wire[at..second]).unwrap();
                d.push(&wire[second..]).unwrap();
                prop_assert_eq!(decode_all(&mut d), frames.clone());
                prop_assert_eq!(d.pending(), 0);
            }
        }

        #[test]
        fn byte_by_byte_equals_whole(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let (mut a, mut b) = (Decoder::new(), Decoder::new());
            let ra = a.push(&bytes);
            let mut rb = Ok(());
            for byte in &bytes {
                rb = b.push(std::slice::from_ref(byte));
                if rb.is_err() { break; }
            }
            prop_assert_eq!(ra.is_ok(), rb.is_ok());
            prop_assert_eq!(decode_all(&mut a), decode_all(&mut b));
            prop_assert_eq!(a.pending(), b.pending());
        }
    }
}
