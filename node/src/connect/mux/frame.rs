//! Mux frames on the TLS stream (PROTOCOLS §6.5): each is the msgpack array
//! `[channel (uint16), data (bin)]`, no other length header. jamid packs the channel with
//! msgpack-c's smallest unsigned form and the data as bin8/bin16, and never writes more
//! than 65,535 data bytes in one frame.
//!
//! [`FrameDecoder`] is a streaming parser that buffers at most one header (≤ 19 bytes)
//! and one frame's data (≤ [`MAX_FRAME_PAYLOAD`]). It accepts the layouts msgpack-c
//! produces and reads (any integer form for the channel, bin or str for the data); a
//! frame that is a well-delimited array of two but names a channel outside 0..=65535 is
//! skipped, as jamid's `as<ChanneledMessage>` failure skips it. Anything it cannot
//! delimit, or a frame announcing more than [`MAX_FRAME_PAYLOAD`] bytes, is a fatal error:
//! the stream cannot be resynchronised and the socket must be cut off.

use crate::dht::msgpack::Writer;

/// Largest data a frame may carry: jamid's `MultiplexedSocket::write` refuses longer
/// buffers (`len > UINT16_MAX`) and channel writes are split at this size, so a longer
/// frame never comes from a real peer and would make us buffer up to 4 GiB.
pub const MAX_FRAME_PAYLOAD: usize = 65_535;

/// Longest header: array32 (5) + uint64 channel (9) + bin32/str32 length (5).
const MAX_HEADER: usize = 19;

/// Why the byte stream can no longer be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame announces {0} data bytes, more than {MAX_FRAME_PAYLOAD}")]
    Oversized(u64),
    #[error("frame is not an array of two (marker {0:#04x})")]
    NotAnArrayOfTwo(u8),
    #[error("frame channel has marker {0:#04x}, not an integer")]
    ChannelNotInteger(u8),
    #[error("frame data has marker {0:#04x}, not bin or str")]
    DataNotBinary(u8),
}

/// Append the frame `[channel, data]` exactly as jamid's packer writes it.
/// `data` must be at most [`MAX_FRAME_PAYLOAD`] bytes (callers split longer writes).
pub fn encode(out: &mut Vec<u8>, channel: u16, data: &[u8]) {
    debug_assert!(data.len() <= MAX_FRAME_PAYLOAD);
    let mut w = Writer {
        buf: std::mem::take(out),
    };
    w.array_len(2).uint(u64::from(channel)).bin(data);
    *out = w.into_bytes();
}

/// A complete frame. `channel` is `None` when the frame named a channel outside u16
/// (jamid fails to convert it and drops the frame).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub channel: Option<u16>,
    pub data: Vec<u8>,
}

#[derive(Debug)]
enum State {
    Header,
    Body {
        channel: Option<u16>,
        want: usize,
        data: Vec<u8>,
    },
}

/// Streaming frame parser; feed it stream bytes in any split.
#[derive(Debug)]
pub struct FrameDecoder {
    header: Vec<u8>,
    state: State,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder {
            header: Vec::with_capacity(MAX_HEADER),
            state: State::Header,
        }
    }
}

/// A parsed header: its length, the channel and the data length.
struct Header {
    len: usize,
    channel: Option<u16>,
    data_len: usize,
}

impl FrameDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Consume bytes from `input` until one frame is complete or the input ends.
    /// Returns how many bytes were used and the frame, if one completed.
    pub fn push(&mut self, input: &[u8]) -> Result<(usize, Option<Frame>), FrameError> {
        let mut used = 0;
        if let State::Header = self.state {
            let before = self.header.len();
            let take = input.len().min(MAX_HEADER - before);
            self.header
                .extend_from_slice(input.get(..take).unwrap_or_default());
            match parse_header(&self.header)? {
                None => return Ok((take, None)),
                Some(h) => {
                    used = h.len - before;
                    self.header.clear();
                    self.state = State::Body {
                        channel: h.channel,
                        want: h.data_len,
                        data: Vec::with_capacity(h.data_len),
                    };
                }
            }
        }
        let State::Body {
            channel,
            want,
            data,
        } = &mut self.state
        else {
            return Ok((used, None));
        };
        let rest = input.get(used..).unwrap_or_default();
        let take = rest.len().min(*want - data.len());
        data.extend_from_slice(rest.get(..take).unwrap_or_default());
        used += take;
        if data.len() < *want {
            return Ok((used, None));
        }
        let frame = Frame {
            channel: *channel,
            data: std::mem::take(data),
        };
        self.state = State::Header;
        Ok((used, Some(frame)))
    }

    /// Bytes of a partial frame held (header or data).
    pub fn buffered(&self) -> usize {
        match &self.state {
            State::Header => self.header.len(),
            State::Body { data, .. } => data.len(),
        }
    }
}

/// Parse `[channel, data-header` from `b`; `None` when more bytes are needed.
fn parse_header(b: &[u8]) -> Result<Option<Header>, FrameError> {
    let mut r = Cursor { b, pos: 0 };
    let Some(m) = r.byte() else { return Ok(None) };
    let n = match m {
        0x90..=0x9f => u64::from(m & 0x0f),
        0xdc => match r.be(2) {
            Some(n) => n,
            None => return Ok(None),
        },
        0xdd => match r.be(4) {
            Some(n) => n,
            None => return Ok(None),
        },
        _ => return Err(FrameError::NotAnArrayOfTwo(m)),
    };
    if n != 2 {
        return Err(FrameError::NotAnArrayOfTwo(m));
    }
    let Some(m) = r.byte() else { return Ok(None) };
    let channel = match m {
        0x00..=0x7f => Some(u64::from(m)),
        0xcc => r.be(1),
        0xcd => r.be(2),
        0xce => r.be(4),
        0xcf => r.be(8),
        // Signed forms: msgpack-c converts non-negative ones; negatives fail.
        0xd0 => r.be(1).map(|v| (v as u8 as i8) as i64 as u64),
        0xd1 => r.be(2).map(|v| (v as u16 as i16) as i64 as u64),
        0xd2 => r.be(4).map(|v| (v as u32 as i32) as i64 as u64),
        0xd3 => r.be(8),
        0xe0..=0xff => Some(u64::MAX),
        _ => return Err(FrameError::ChannelNotInteger(m)),
    };
    let Some(channel) = channel else {
        return Ok(None);
    };
    // Signed encodings of negatives became huge u64 values: out of range like the rest.
    let channel = u16::try_from(channel).ok();
    let Some(m) = r.byte() else { return Ok(None) };
    let data_len = match m {
        0xa0..=0xbf => Some(u64::from(m & 0x1f)),
        0xc4 | 0xd9 => r.be(1),
        0xc5 | 0xda => r.be(2),
        0xc6 | 0xdb => r.be(4),
        _ => return Err(FrameError::DataNotBinary(m)),
    };
    let Some(data_len) = data_len else {
        return Ok(None);
    };
    if data_len > MAX_FRAME_PAYLOAD as u64 {
        return Err(FrameError::Oversized(data_len));
    }
    Ok(Some(Header {
        len: r.pos,
        channel,
        data_len: data_len as usize,
    }))
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn byte(&mut self) -> Option<u8> {
        let v = *self.b.get(self.pos)?;
        self.pos += 1;
        Some(v)
    }

    fn be(&mut self, n: usize) -> Option<u64> {
        let s = self.b.get(self.pos..self.pos + n)?;
        self.pos += n;
        Some(s.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x)))
    }
}
