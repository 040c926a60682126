//! Content-Length framing of SIP messages on a reliable stream (RFC 3261 §18.3), as
//! pjsip does it for TCP/TLS and for Jami's `sip` channel (`sip_transport.c`,
//! `pjsip_find_msg`): the head ends at the first empty line, the body is
//! `Content-Length` bytes, CR/LF bytes between messages are keep-alives and skipped.
//!
//! Bytes arrive in any split; messages come out whole. Every error concerns one message
//! and the decoder carries on with the next: a malformed head is dropped (with the body
//! its Content-Length announces), an oversized message is skipped as its bytes arrive,
//! so memory stays bounded by [`MAX_MESSAGE_LEN`].

use super::message::{ParseError, SipMessage};

/// Largest message (head + body) accepted. Jami builds pjsip with
/// `PJSIP_MAX_PKT_LEN=8000` and its channeled transport keeps at most that many bytes:
/// jamid can neither receive nor hold a larger message, so neither do we.
pub const MAX_MESSAGE_LEN: usize = 8000;

/// Why a message was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error("malformed message head: {0}")]
    Parse(#[from] ParseError),
    #[error("head longer than {MAX_MESSAGE_LEN} bytes without an end; skipped to the next empty line")]
    HeadTooLong,
    #[error("message of {0} bytes exceeds {MAX_MESSAGE_LEN}; its body is skipped")]
    TooLarge(usize),
}

/// What the decoder dropped and skipped, for the node's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecoderStats {
    pub messages: u64,
    pub malformed: u64,
    pub oversized: u64,
    /// CR/LF keep-alive bytes skipped between messages.
    pub keepalive_bytes: u64,
    /// Bytes thrown away (bodies of dropped messages, resynchronisation).
    pub discarded_bytes: u64,
}

#[derive(Debug)]
enum State {
    Head,
    Body { msg: SipMessage, len: usize },
    /// Drop `n` more bytes (the body of a refused message).
    Skip(usize),
    /// After an overlong head: drop bytes up to and including the next empty line.
    Resync,
}

/// Streaming decoder: [`push`](Self::push) bytes, then take messages with
/// [`next`](Self::next) until it returns `None`.
#[derive(Debug)]
pub struct StreamDecoder {
    buf: Vec<u8>,
    state: State,
    pub stats: DecoderStats,
}

impl Default for StreamDecoder {
    fn default() -> Self {
        StreamDecoder {
            buf: Vec::new(),
            state: State::Head,
            stats: DecoderStats::default(),
        }
    }
}

/// Index just past the empty line ending a head: `\n\r\n` (pjsip's end-of-head marker)
/// or `\n\n`, whichever comes first; and the head's length without it.
fn head_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while let Some(p) = buf[i..].iter().position(|&b| b == b'\n') {
        let nl = i + p;
        match buf.get(nl + 1) {
            Some(b'\n') => return Some((nl, nl + 2)),
            Some(b'\r') if buf.get(nl + 2) == Some(&b'\n') => return Some((nl, nl + 3)),
            _ => i = nl + 1,
        }
    }
    None
}

impl StreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes buffered, waiting for the rest of a message (at most [`MAX_MESSAGE_LEN`]).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Stream bytes in. Skipped bytes are dropped at once, so the buffer stays bounded.
    pub fn push(&mut self, mut bytes: &[u8]) {
        loop {
            match &mut self.state {
                State::Skip(n) => {
                    let k = (*n).min(bytes.len());
                    *n -= k;
                    self.stats.discarded_bytes += k as u64;
                    bytes = &bytes[k..];
                    if *n == 0 {
                        self.state = State::Head;
                    }
                    if bytes.is_empty() {
                        return;
                    }
                }
                State::Resync => {
                    // Keep the last 2 bytes: the marker may straddle two pushes.
                    let keep = self.buf.len().min(2);
                    self.stats.discarded_bytes += (self.buf.len() - keep) as u64;
                    self.buf.drain(..self.buf.len() - keep);
                    self.buf.extend_from_slice(bytes);
                    match head_end(&self.buf) {
                        Some((_, end)) => {
                            self.stats.discarded_bytes += end as u64;
                            self.buf.drain(..end);
                            self.state = State::Head;
                            let rest = std::mem::take(&mut self.buf);
                            // Re-enter with what followed the empty line.
                            return self.push(&rest);
                        }
                        None => return,
                    }
                }
                _ => {
                    self.buf.extend_from_slice(bytes);
                    return;
                }
            }
        }
    }

    /// The next complete message, an error for a dropped one, or `None` until more
    /// bytes arrive.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Result<SipMessage, StreamError>> {
        loop {
            match std::mem::replace(&mut self.state, State::Head) {
                State::Head => {
                    let ws = self.buf.iter().take_while(|b| matches!(b, b'\r' | b'\n')).count();
                    if ws > 0 {
                        self.stats.keepalive_bytes += ws as u64;
                        self.buf.drain(..ws);
                    }
                    let Some((head_len, end)) = head_end(&self.buf) else {
                        if self.buf.len() >= MAX_MESSAGE_LEN {
                            self.stats.oversized += 1;
                            self.state = State::Resync;
                            self.push(&[]);
                            return Some(Err(StreamError::HeadTooLong));
                        }
                        return None;
                    };
                    if end > MAX_MESSAGE_LEN {
                        self.stats.oversized += 1;
                        self.stats.discarded_bytes += end as u64;
                        let skip = content_length_hint(&self.buf[..head_len]);
                        self.buf.drain(..end);
                        self.skip(skip);
                        return Some(Err(StreamError::HeadTooLong));
                    }
                    let parsed = SipMessage::parse_head(&self.buf[..head_len]);
                    let hint = content_length_hint(&self.buf[..head_len]);
                    self.buf.drain(..end);
                    match parsed {
                        Err(e) => {
                            self.stats.malformed += 1;
                            self.skip(hint);
                            return Some(Err(e.into()));
                        }
                        Ok((_, len)) if end + len > MAX_MESSAGE_LEN => {
                            self.stats.oversized += 1;
                            self.skip(len);
                            return Some(Err(StreamError::TooLarge(end + len)));
                        }
                        Ok((msg, len)) => self.state = State::Body { msg, len },
                    }
                }
                State::Body { mut msg, len } => {
                    if self.buf.len() < len {
                        self.state = State::Body { msg, len };
                        return None;
                    }
                    msg.body = self.buf.drain(..len).collect();
                    self.stats.messages += 1;
                    return Some(Ok(msg));
                }
                State::Skip(n) => {
                    self.state = State::Skip(n);
                    return None;
                }
                State::Resync => {
                    self.state = State::Resync;
                    return None;
                }
            }
        }
    }

    /// Drop the next `n` bytes, those already buffered first.
    fn skip(&mut self, n: usize) {
        let now = n.min(self.buf.len());
        self.buf.drain(..now);
        self.stats.discarded_bytes += now as u64;
        if n > now {
            self.state = State::Skip(n - now);
        }
    }
}

/// The Content-Length of a head we refuse, to skip its body too (0 when unreadable).
fn content_length_hint(head: &[u8]) -> usize {
    head.split(|&b| b == b'\n')
        .filter_map(|l| {
            let l = std::str::from_utf8(l).ok()?;
            let (name, value) = l.split_once(':')?;
            super::message::same_header(name.trim(), "Content-Length")
                .then(|| super::message::parse_content_length(value).ok())?
        })
        .next()
        .unwrap_or(0)
}
