//! STUN and ChannelData over a byte stream (TURN over TCP, RFC 5766 §11.5 / RFC 6062).
//!
//! A TCP connection to a TURN server carries STUN messages and ChannelData back to back
//! with no outer framing: the first two bits tell them apart (`00` STUN, `01` ChannelData)
//! and each carries its own 16-bit length. Over a stream ChannelData is padded to a
//! multiple of 4 bytes. Anything else means the stream is out of sync, which cannot be
//! repaired, so the decoder stops for good and the caller closes the connection.

use crate::{pad_len, ChannelData, Message, StunError, HEADER_LEN, MAGIC_COOKIE};

/// Largest frame either kind can announce: a 20-byte STUN header plus a 65535-byte body,
/// which is larger than 4 + 65535 + 3 for padded ChannelData.
pub const MAX_FRAME: usize = HEADER_LEN + u16::MAX as usize;

/// Bytes the decoder holds at most: one frame still incomplete plus one read's worth of
/// the next. A peer that announces a frame and then floods cannot grow it further; a
/// caller that drains frames after every push never reaches it.
pub const MAX_BUFFERED: usize = 2 * MAX_FRAME;

/// One frame cut from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A STUN message and the exact bytes it came from (integrity is checked on those).
    Stun { msg: Message, raw: Vec<u8> },
    /// ChannelData with its padding stripped.
    ChannelData(ChannelData),
}

/// Why the stream decoder refused input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The first two bits of a frame are `10` or `11`: not STUN, not ChannelData.
    #[error("stream out of sync: frame starts with {0:#04x}")]
    Desync(u8),
    /// A STUN header on the stream has a wrong cookie or an unaligned length.
    #[error("bad STUN header on stream: {0}")]
    BadHeader(StunError),
    /// A framed message whose content is malformed; the frame was skipped and the
    /// stream stays in sync.
    #[error("malformed frame skipped: {0}")]
    BadFrame(StunError),
    /// `push` would hold more than [`MAX_BUFFERED`] bytes.
    #[error("stream buffer full ({held} held, {offered} offered)")]
    BufferFull { held: usize, offered: usize },
    /// An earlier fatal error stopped this decoder.
    #[error("stream decoder stopped after an earlier error")]
    Stopped,
}

impl StreamError {
    /// True when the connection can no longer be read and must be closed.
    pub fn is_fatal(&self) -> bool {
        !matches!(self, StreamError::BadFrame(_))
    }
}

/// Incremental frame splitter. Feed bytes with [`push`](Self::push), take frames with
/// [`next_frame`](Self::next_frame) until it returns `Ok(None)`.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    buf: Vec<u8>,
    stopped: bool,
}

impl StreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes; refuses (and stops) rather than grow past [`MAX_BUFFERED`].
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), StreamError> {
        if self.stopped {
            return Err(StreamError::Stopped);
        }
        if self.buf.len() + bytes.len() > MAX_BUFFERED {
            self.stopped = true;
            return Err(StreamError::BufferFull {
                held: self.buf.len(),
                offered: bytes.len(),
            });
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Hands over the unframed remainder: after a successful RFC 6062 ConnectionBind the
    /// data connection carries raw peer bytes, which may already sit in the buffer.
    pub fn take_remaining(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, StreamError> {
        if self.stopped {
            return Err(StreamError::Stopped);
        }
        let len = match frame_len(&self.buf) {
            Ok(Some(len)) => len,
            Ok(None) => return Ok(None),
            Err(e) => {
                self.stopped = true;
                return Err(e);
            }
        };
        let Some(frame) = self.buf.get(..len) else {
            return Ok(None);
        };
        let raw = frame.to_vec();
        self.buf.drain(..len);
        let decoded = if raw.first().is_some_and(|b| b & 0xC0 == 0) {
            Message::decode(&raw).map(|msg| Frame::Stun { msg, raw })
        } else {
            ChannelData::decode(&raw).map(Frame::ChannelData)
        };
        decoded.map(Some).map_err(StreamError::BadFrame)
    }
}

/// Total on-stream length of the frame at the start of `buf`, once its header is in
/// (`Ok(None)`: the header is not all there yet).
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, StreamError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    match first & 0xC0 {
        0x00 => {
            let Some(head) = buf.get(..8) else {
                return Ok(None);
            };
            let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
            let cookie = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
            if cookie != MAGIC_COOKIE {
                return Err(StreamError::BadHeader(StunError::BadCookie(cookie)));
            }
            if len % 4 != 0 {
                return Err(StreamError::BadHeader(StunError::UnalignedLength(len)));
            }
            Ok(Some(HEADER_LEN + len))
        }
        0x40 => {
            let Some(head) = buf.get(..4) else {
                return Ok(None);
            };
            let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
            Ok(Some(4 + len + pad_len(len)))
        }
        _ => Err(StreamError::Desync(first)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Attribute, Class, Method};
    use proptest::collection::vec;
    use proptest::prelude::*;

    fn sample_frames() -> Vec<Vec<u8>> {
        let msg = Message::new(Class::Request, Method::Connect, [3; 12])
            .with(Attribute::XorPeerAddress("192.0.2.1:80".parse().unwrap()))
            .with(Attribute::ConnectionId(7));
        vec![
            msg.encode_with(Some(b"key"), true),
            ChannelData {
                channel: 0x4000,
                data: b"abcde".to_vec(),
            }
            .encode_padded(),
            ChannelData {
                channel: 0x7FFF,
                data: vec![],
            }
            .encode_padded(),
        ]
    }

    fn drain(dec: &mut StreamDecoder) -> Result<Vec<Frame>, StreamError> {
        let mut out = Vec::new();
        while let Some(f) = dec.next_frame()? {
            out.push(f);
        }
        Ok(out)
    }

    #[test]
    fn frames_split_at_every_byte_come_out_whole() {
        let stream: Vec<u8> = sample_frames().concat();
        let mut dec = StreamDecoder::new();
        let mut frames = Vec::new();
        for b in &stream {
            dec.push(&[*b]).unwrap();
            frames.extend(drain(&mut dec).unwrap());
        }
        assert_eq!(frames.len(), 3);
        assert!(matches!(&frames[0], Frame::Stun { msg, .. } if msg.method == Method::Connect));
        assert_eq!(
            frames[1],
            Frame::ChannelData(ChannelData {
                channel: 0x4000,
                data: b"abcde".to_vec()
            })
        );
        assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn unpadded_channel_data_desyncs_the_stream() {
        // Over a stream the 3 padding bytes after "abcde" are mandatory: without them the
        // next frame's first bytes are eaten as padding.
        let cd = ChannelData {
            channel: 0x4000,
            data: b"abcde".to_vec(),
        };
        let mut stream = cd.encode();
        stream.extend(sample_frames()[0].clone());
        let mut dec = StreamDecoder::new();
        dec.push(&stream).unwrap();
        assert!(matches!(dec.next_frame(), Ok(Some(Frame::ChannelData(_)))));
        assert!(dec.next_frame().is_err());
    }

    #[test]
    fn desync_is_fatal_and_sticky() {
        let mut dec = StreamDecoder::new();
        dec.push(&[0x80, 0, 0, 0]).unwrap();
        assert_eq!(dec.next_frame(), Err(StreamError::Desync(0x80)));
        assert_eq!(dec.next_frame(), Err(StreamError::Stopped));
        assert_eq!(dec.push(&[0]), Err(StreamError::Stopped));
    }

    #[test]
    fn malformed_framed_message_is_skipped() {
        // Well-framed STUN whose only attribute overruns: skipped, stream continues.
        let mut bad = Message::new(Class::Request, Method::Binding, [1; 12]).encode();
        bad.extend_from_slice(&[0x00, 0x06, 0x00, 0x09, 0, 0, 0, 0]);
        bad[3] = 8;
        let mut dec = StreamDecoder::new();
        dec.push(&bad).unwrap();
        dec.push(&sample_frames()[1]).unwrap();
        let err = dec.next_frame().unwrap_err();
        assert!(!err.is_fatal(), "{err}");
        assert!(matches!(dec.next_frame(), Ok(Some(Frame::ChannelData(_)))));
    }

    #[test]
    fn buffer_is_bounded() {
        let mut dec = StreamDecoder::new();
        let chunk = vec![0u8; MAX_FRAME];
        dec.push(&chunk).unwrap();
        dec.push(&chunk).unwrap();
        assert!(matches!(
            dec.push(&[0]),
            Err(StreamError::BufferFull { .. })
        ));
    }

    #[test]
    fn remaining_bytes_are_handed_over() {
        let mut stream = sample_frames()[0].clone();
        stream.extend_from_slice(b"raw peer bytes");
        let mut dec = StreamDecoder::new();
        dec.push(&stream).unwrap();
        assert!(matches!(dec.next_frame(), Ok(Some(Frame::Stun { .. }))));
        assert_eq!(dec.take_remaining(), b"raw peer bytes");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn random_bytes_never_panic(chunks in vec(vec(any::<u8>(), 0..80), 0..8)) {
            let mut dec = StreamDecoder::new();
            for c in chunks {
                if dec.push(&c).is_err() { break; }
                loop {
                    match dec.next_frame() {
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(e) if e.is_fatal() => break,
                        Err(_) => {}
                    }
                }
                prop_assert!(dec.buffered() <= MAX_BUFFERED);
            }
        }

        #[test]
        fn any_split_round_trips(order in vec(0usize..3, 0..12), cuts in vec(1usize..40, 1..20)) {
            let frames = sample_frames();
            let stream: Vec<u8> = order.iter().flat_map(|i| frames[*i].clone()).collect();
            let mut dec = StreamDecoder::new();
            let mut got = Vec::new();
            let mut pos = 0;
            let mut cut = cuts.iter().cycle();
            while pos < stream.len() {
                let end = (pos + cut.next().unwrap()).min(stream.len());
                dec.push(&stream[pos..end]).unwrap();
                got.extend(drain(&mut dec).unwrap());
                pos = end;
            }
            prop_assert_eq!(got.len(), order.len());
            for (frame, i) in got.iter().zip(&order) {
                let bytes = match frame {
                    Frame::Stun { raw, .. } => raw.clone(),
                    Frame::ChannelData(cd) => cd.encode_padded(),
                };
                prop_assert_eq!(&bytes, &frames[*i]);
            }
        }

        #[test]
        fn mutated_streams_never_panic(pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let mut stream = sample_frames().concat();
            let i = pos.index(stream.len());
            stream[i] = byte;
            let mut dec = StreamDecoder::new();
            dec.push(&stream).unwrap();
            for _ in 0..8 {
                match dec.next_frame() {
                    Ok(Some(_)) | Err(StreamError::BadFrame(_)) => {}
                    _ => break,
                }
            }
        }
    }
}
