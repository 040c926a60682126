//! HTTP/1.1 responses as a DHT proxy client reads them, sans-IO: bytes in as the stream
//! delivers them, the head's status, body bytes and the end out. Bodies are chunked
//! (OpenDHT's gets and listens), `Content-Length` (puts, `/node/info`) or run until the
//! server closes. Parsing the head is httparse's; this frames. Every malformed or
//! oversized input is an [`HttpError`], never a panic, and nothing grows without bound.

use thiserror::Error;

/// Longest response head we wait for (OpenDHT's heads are a few hundred bytes).
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest chunk or `Content-Length` body: a proxy line is one value (at most 64 KiB of
/// data in OpenDHT, about 88 KiB once base64-encoded, plus its fields).
pub const MAX_BODY: usize = 256 * 1024;
/// Longest chunk-size line (hex digits and extensions).
const MAX_SIZE_LINE: usize = 1024;
/// Headers a head may have.
const MAX_HEADERS: usize = 32;

/// Why the bytes are not an HTTP/1.1 response we can read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HttpError {
    #[error("malformed response head")]
    MalformedHead,
    #[error("response head longer than {MAX_HEAD} bytes")]
    HeadTooLong,
    #[error("bad Content-Length")]
    BadContentLength,
    #[error("bad chunk size")]
    BadChunkSize,
    #[error("chunk or body larger than {MAX_BODY} bytes")]
    TooLarge,
    #[error("chunk not followed by CRLF")]
    BadChunkEnd,
    #[error("the connection closed before the response ended")]
    Truncated,
    #[error("input after the response failed")]
    AfterError,
}

/// A piece of a response, in order: one `Head`, then `Body` parts, then `End`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Head { status: u16 },
    Body(Vec<u8>),
    End,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Head,
    /// In a chunked body: bytes of the current chunk still to come, if in one.
    Chunked {
        left: Option<usize>,
    },
    /// Trailer lines after the last chunk, until the empty line.
    Trailer,
    Length {
        left: usize,
    },
    UntilClose,
    Done,
    Failed,
}

/// Decodes one response.
#[derive(Debug, Clone)]
pub struct ResponseDecoder {
    buf: Vec<u8>,
    state: State,
}

impl Default for ResponseDecoder {
    fn default() -> Self {
        ResponseDecoder {
            buf: Vec::new(),
            state: State::Head,
        }
    }
}

impl ResponseDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// The response ended (or failed): further bytes are not ours.
    pub fn finished(&self) -> bool {
        matches!(self.state, State::Done | State::Failed)
    }

    /// Bytes from the stream; what they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Part>, HttpError> {
        match self.state {
            State::Failed => return Err(HttpError::AfterError),
            State::Done => return Ok(Vec::new()),
            _ => {}
        }
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        match self.run(&mut out) {
            Ok(()) => Ok(out),
            Err(e) => {
                self.state = State::Failed;
                self.buf = Vec::new();
                Err(e)
            }
        }
    }

    /// The server closed the stream: the end of a body that runs until close, an error
    /// for any other unfinished response.
    pub fn close(&mut self) -> Result<Vec<Part>, HttpError> {
        match self.state {
            State::UntilClose => {
                self.state = State::Done;
                Ok(vec![Part::End])
            }
            State::Done => Ok(Vec::new()),
            _ => {
                self.state = State::Failed;
                Err(HttpError::Truncated)
            }
        }
    }

    fn run(&mut self, out: &mut Vec<Part>) -> Result<(), HttpError> {
        loop {
            match self.state {
                State::Head => {
                    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                    let mut resp = httparse::Response::new(&mut headers);
                    let n = match resp.parse(&self.buf) {
                        Ok(httparse::Status::Complete(n)) => n,
                        Ok(httparse::Status::Partial) if self.buf.len() > MAX_HEAD => {
                            return Err(HttpError::HeadTooLong)
                        }
                        Ok(httparse::Status::Partial) => return Ok(()),
                        Err(_) => return Err(HttpError::MalformedHead),
                    };
                    let status = resp.code.ok_or(HttpError::MalformedHead)?;
                    let chunked = resp.headers.iter().any(|h| {
                        h.name.eq_ignore_ascii_case("transfer-encoding")
                            && h.value.to_ascii_lowercase().ends_with(b"chunked")
                    });
                    let length = resp
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                        .map(|h| {
                            std::str::from_utf8(h.value)
                                .ok()
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .ok_or(HttpError::BadContentLength)
                        })
                        .transpose()?;
                    self.buf.drain(..n);
                    out.push(Part::Head { status });
                    // 1xx, 204 and 304 have no body (RFC 9112 §6.3).
                    let bodiless = (100..200).contains(&status) || status == 204 || status == 304;
                    self.state = match (bodiless, chunked, length) {
                        (true, _, _) => State::Length { left: 0 },
                        (_, true, _) => State::Chunked { left: None },
                        (_, _, Some(n)) if n > MAX_BODY => return Err(HttpError::TooLarge),
                        (_, _, Some(n)) => State::Length { left: n },
                        _ => State::UntilClose,
                    };
                }
                State::Length { left } => {
                    let take = left.min(self.buf.len());
                    if take > 0 {
                        out.push(Part::Body(self.buf.drain(..take).collect()));
                    }
                    if take == left {
                        self.end(out);
                    } else {
                        self.state = State::Length { left: left - take };
                    }
                    return Ok(());
                }
                State::UntilClose => {
                    if !self.buf.is_empty() {
                        out.push(Part::Body(std::mem::take(&mut self.buf)));
                    }
                    return Ok(());
                }
                State::Chunked { left: None } => {
                    let Some(eol) = find_crlf(&self.buf) else {
                        if self.buf.len() > MAX_SIZE_LINE {
                            return Err(HttpError::BadChunkSize);
                        }
                        return Ok(());
                    };
                    if eol > MAX_SIZE_LINE {
                        return Err(HttpError::BadChunkSize);
                    }
                    let line = &self.buf[..eol];
                    let digits = line.split(|&b| b == b';').next().unwrap_or_default();
                    let digits = std::str::from_utf8(digits)
                        .map_err(|_| HttpError::BadChunkSize)?
                        .trim();
                    if digits.is_empty() || digits.len() > 16 {
                        return Err(HttpError::BadChunkSize);
                    }
                    let n =
                        usize::from_str_radix(digits, 16).map_err(|_| HttpError::BadChunkSize)?;
                    if n > MAX_BODY {
                        return Err(HttpError::TooLarge);
                    }
                    self.buf.drain(..eol + 2);
                    self.state = match n {
                        0 => State::Trailer,
                        n => State::Chunked { left: Some(n) },
                    };
                }
                State::Chunked { left: Some(n) } => {
                    if self.buf.len() < n + 2 {
                        return Ok(());
                    }
                    if &self.buf[n..n + 2] != b"\r\n" {
                        return Err(HttpError::BadChunkEnd);
                    }
                    out.push(Part::Body(self.buf[..n].to_vec()));
                    self.buf.drain(..n + 2);
                    self.state = State::Chunked { left: None };
                }
                State::Trailer => {
                    let Some(eol) = find_crlf(&self.buf) else {
                        if self.buf.len() > MAX_HEAD {
                            return Err(HttpError::HeadTooLong);
                        }
                        return Ok(());
                    };
                    self.buf.drain(..eol + 2);
                    if eol == 0 {
                        self.end(out);
                        return Ok(());
                    }
                }
                State::Done | State::Failed => return Ok(()),
            }
        }
    }

    fn end(&mut self, out: &mut Vec<Part>) {
        self.state = State::Done;
        self.buf = Vec::new();
        out.push(Part::End);
    }
}

fn find_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}

/// Splits a body into lines (a proxy writes one JSON value per line); a line longer
/// than [`MAX_BODY`] is dropped, not buffered.
#[derive(Debug, Clone, Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
    /// Dropping the rest of a line too long to keep.
    skipping: bool,
    /// Lines dropped for their length.
    pub too_long: u64,
}

impl LineSplitter {
    /// The lines `bytes` complete (without their newline).
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for piece in bytes.split_inclusive(|&b| b == b'\n') {
            let complete = piece.last() == Some(&b'\n');
            let data = if complete {
                &piece[..piece.len() - 1]
            } else {
                piece
            };
            if !self.skipping {
                if self.partial.len() + data.len() > MAX_BODY {
                    self.partial = Vec::new();
                    self.skipping = true;
                    self.too_long += 1;
                } else {
                    self.partial.extend_from_slice(data);
                }
            }
            if complete {
                if !self.skipping {
                    out.push(std::mem::take(&mut self.partial));
                }
                self.skipping = false;
            }
        }
        out
    }

    /// The body ended: its unterminated last line, if any.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        let skipping = std::mem::take(&mut self.skipping);
        let rest = std::mem::take(&mut self.partial);
        (!skipping && !rest.is_empty()).then_some(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(wire: &[u8], splits: &[usize]) -> Result<(u16, Vec<u8>, bool), HttpError> {
        let mut d = ResponseDecoder::new();
        let mut parts = Vec::new();
        let mut at = 0;
        for &s in splits.iter().chain([&wire.len()]) {
            let s = s.clamp(at, wire.len());
            parts.extend(d.feed(&wire[at..s])?);
            at = s;
        }
        let (mut status, mut body, mut end) = (0, Vec::new(), false);
        for p in parts {
            match p {
                Part::Head { status: s } => status = s,
                Part::Body(b) => body.extend(b),
                Part::End => end = true,
            }
        }
        Ok((status, body, end))
    }

    fn chunked(status: u16, chunks: &[&[u8]]) -> Vec<u8> {
        let mut w =
            format!("HTTP/1.1 {status} OK\r\nTransfer-Encoding: chunked\r\n\r\n").into_bytes();
        for c in chunks {
            w.extend(format!("{:x}\r\n", c.len()).bytes());
            w.extend_from_slice(c);
            w.extend_from_slice(b"\r\n");
        }
        w.extend_from_slice(b"0\r\n\r\n");
        w
    }

    #[test]
    fn chunked_and_length_bodies_decode() {
        let w = chunked(200, &[b"{\"id\":\"1\"}\n", b"{\"id\":\"2\"}\n"]);
        assert_eq!(
            decode_all(&w, &[]),
            Ok((200, b"{\"id\":\"1\"}\n{\"id\":\"2\"}\n".to_vec(), true))
        );
        let w = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 18\r\n\r\n{\"err\":\"Put failed\"}xx";
        let (status, body, end) = decode_all(w, &[]).unwrap();
        assert_eq!((status, end), (502, true));
        assert_eq!(body, b"{\"err\":\"Put failed");
        // Until close: no end before the server closes.
        let mut d = ResponseDecoder::new();
        let parts = d.feed(b"HTTP/1.1 200 OK\r\n\r\nabc").unwrap();
        assert_eq!(
            parts,
            vec![Part::Head { status: 200 }, Part::Body(b"abc".to_vec())]
        );
        assert_eq!(d.close(), Ok(vec![Part::End]));
    }

    #[test]
    fn malformed_responses_are_errors() {
        let bad: &[&[u8]] = &[
            b"\x00\x01garbage\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffff\r\n",
        ];
        for w in bad {
            assert!(
                decode_all(w, &[]).is_err(),
                "{:?}",
                String::from_utf8_lossy(w)
            );
        }
        let mut d = ResponseDecoder::new();
        assert_eq!(
            d.feed(&vec![b'a'; MAX_HEAD + 10]),
            Err(HttpError::MalformedHead)
        );
        let mut d = ResponseDecoder::new();
        let mut long = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        long.extend(vec![b'a'; MAX_HEAD + 10]);
        assert_eq!(d.feed(&long), Err(HttpError::HeadTooLong));
        assert_eq!(d.feed(b"more"), Err(HttpError::AfterError));
        // A chunked body cut short is truncated, not complete.
        let mut d = ResponseDecoder::new();
        d.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab")
            .unwrap();
        assert_eq!(d.close(), Err(HttpError::Truncated));
    }

    #[test]
    fn lines_split_and_overlong_lines_drop() {
        let mut l = LineSplitter::default();
        assert_eq!(l.push(b"ab"), Vec::<Vec<u8>>::new());
        assert_eq!(l.push(b"c\nde\nf"), vec![b"abc".to_vec(), b"de".to_vec()]);
        assert_eq!(l.finish(), Some(b"f".to_vec()));
        let mut l = LineSplitter::default();
        l.push(&vec![b'x'; MAX_BODY]);
        l.push(b"yy");
        assert_eq!(l.push(b"y\nok\n"), vec![b"ok".to_vec()]);
        assert_eq!(l.too_long, 1);
    }

    proptest! {
        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400), cut in 0usize..400) {
            let mut d = ResponseDecoder::new();
            let c = cut.min(bytes.len());
            let _ = d.feed(&bytes[..c]);
            let _ = d.feed(&bytes[c..]);
            let _ = d.close();
            let mut l = LineSplitter::default();
            let _ = l.push(&bytes);
            let _ = l.finish();
        }

        #[test]
        fn chunked_round_trips_in_any_split(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..50), 0..6),
            splits in proptest::collection::vec(0usize..400, 0..5),
        ) {
            let refs: Vec<&[u8]> = chunks.iter().map(|c| c.as_slice()).collect();
            let mut splits = splits;
            splits.sort();
            let w = chunked(200, &refs);
            let (status, body, end) = decode_all(&w, &splits).unwrap();
            prop_assert_eq!(status, 200);
            prop_assert!(end);
            prop_assert_eq!(body, chunks.concat());
        }

        #[test]
        fn mutated_responses_never_panic(
            pos in 0usize..200, byte in any::<u8>(),
        ) {
            let mut w = chunked(200, &[b"{\"id\":\"1\",\"data\":\"AA==\"}\n"]);
            let p = pos % w.len();
            w[p] = byte;
            let _ = decode_all(&w, &[p]);
        }
    }
}
