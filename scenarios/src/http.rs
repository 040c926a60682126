//! Minimal HTTP/1.1 framing for simulated services over netsim TCP: one request per
//! connection, `Content-Length` bodies, the server closes after its answer; streams
//! (the DHT proxy's listen) are chunked and stay open. Parsing of untrusted bytes is
//! httparse's; this only frames.

/// Largest request body a simulated service accepts.
pub const MAX_BODY: usize = 64 * 1024;

/// A complete HTTP/1.1 message at the start of `buf`: (head fields, body), or `None`
/// while incomplete. Only `Content-Length` bodies (what both sides here send).
pub fn parse_request(buf: &[u8]) -> Result<Option<(String, String, Vec<u8>)>, &'static str> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let head = match req.parse(buf).map_err(|_| "malformed request")? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(None),
    };
    let len = content_length(req.headers)?;
    if len > MAX_BODY {
        return Err("body too large");
    }
    if buf.len() < head + len {
        return Ok(None);
    }
    Ok(Some((
        req.method.unwrap_or("").to_string(),
        req.path.unwrap_or("").to_string(),
        buf[head..head + len].to_vec(),
    )))
}

fn content_length(headers: &[httparse::Header<'_>]) -> Result<usize, &'static str> {
    match headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
    {
        None => Ok(0),
        Some(h) => std::str::from_utf8(h.value)
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .ok_or("bad content-length"),
    }
}

/// A request as the simulated clients send it: `POST` with a JSON body (its
/// `Content-Length` set), or a bodiless `GET`.
pub fn request(method: &str, host: &str, path: &str, json_body: Option<&str>) -> Vec<u8> {
    match json_body {
        Some(body) => format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
        None => format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n\r\n"),
    }
    .into_bytes()
}

/// A whole response in `buf` (the server closes after it): status and body.
pub fn parse_response(buf: &[u8]) -> Option<(u16, serde_json::Value)> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(head) = resp.parse(buf).ok()? else {
        return None;
    };
    let body = serde_json::from_slice(&buf[head..]).unwrap_or(serde_json::Value::Null);
    Some((resp.code?, body))
}

pub fn http_response(status: u16, body: &serde_json::Value) -> Vec<u8> {
    http_response_text(status, &body.to_string())
}

/// A response whose body is already JSON text (e.g. one JSON value per line).
pub fn http_response_text(status: u16, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        if status == 200 { "OK" } else { "Error" },
        body.len()
    )
    .into_bytes()
}

/// The head of a streamed answer (a proxy listen): chunked, open until the client leaves.
pub const CHUNKED_HEAD: &str =
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";

/// One chunk of a chunked body.
pub fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

/// A response head at the start of `buf`: (status, head length, chunked?), or `None`
/// while incomplete.
pub fn parse_head(buf: &[u8]) -> Result<Option<(u16, usize, bool)>, &'static str> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let head = match resp.parse(buf).map_err(|_| "malformed response")? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(None),
    };
    let chunked = resp.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("transfer-encoding")
            && String::from_utf8_lossy(h.value)
                .to_ascii_lowercase()
                .contains("chunked")
    });
    Ok(Some((resp.code.ok_or("no status")?, head, chunked)))
}

/// Incremental decoder of a chunked body (RFC 9112 §7.1): bytes in as they arrive,
/// the body's data out. Chunk extensions and trailers are skipped; a malformed size or
/// a chunk over [`MAX_BODY`] is an error, never a panic.
#[derive(Default, Debug)]
pub struct Chunked {
    buf: Vec<u8>,
    /// Bytes of the current chunk still to come (then its CRLF).
    left: Option<usize>,
    pub done: bool,
}

impl Chunked {
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<u8>, &'static str> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        loop {
            if self.done {
                self.buf.clear();
                return Ok(out);
            }
            match self.left {
                None => {
                    let Some(eol) = self.buf.windows(2).position(|w| w == b"\r\n") else {
                        if self.buf.len() > 1024 {
                            return Err("chunk size line too long");
                        }
                        return Ok(out);
                    };
                    let line = String::from_utf8_lossy(&self.buf[..eol]).into_owned();
                    let size = line.split(';').next().unwrap_or("").trim();
                    let n = usize::from_str_radix(size, 16).map_err(|_| "bad chunk size")?;
                    if n > MAX_BODY {
                        return Err("chunk too large");
                    }
                    self.buf.drain(..eol + 2);
                    if n == 0 {
                        self.done = true;
                    } else {
                        self.left = Some(n);
                    }
                }
                Some(n) => {
                    if self.buf.len() < n + 2 {
                        return Ok(out);
                    }
                    if &self.buf[n..n + 2] != b"\r\n" {
                        return Err("chunk not followed by CRLF");
                    }
                    out.extend_from_slice(&self.buf[..n]);
                    self.buf.drain(..n + 2);
                    self.left = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_decode_in_any_split() {
        let mut wire = CHUNKED_HEAD.as_bytes().to_vec();
        let head_len = wire.len();
        wire.extend(chunk(b"{\"id\":\"1\"}\n"));
        wire.extend(chunk(b"second line\n"));
        wire.extend_from_slice(b"0\r\n\r\n");
        assert_eq!(parse_head(&wire[..10]), Ok(None));
        assert_eq!(parse_head(&wire), Ok(Some((200, head_len, true))));
        for split in 0..wire.len() - head_len {
            let body = &wire[head_len..];
            let mut d = Chunked::default();
            let mut got = d.feed(&body[..split]).unwrap();
            got.extend(d.feed(&body[split..]).unwrap());
            assert_eq!(got, b"{\"id\":\"1\"}\nsecond line\n");
            assert!(d.done);
        }
        assert!(Chunked::default().feed(b"zz\r\n").is_err());
        assert!(Chunked::default().feed(b"3\r\nabcXY").is_err());
        assert!(Chunked::default().feed(b"fffffffff\r\n").is_err());
    }

    proptest::proptest! {
        #[test]
        fn chunked_decoder_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let mut d = Chunked::default();
            let _ = d.feed(&bytes);
            let _ = parse_head(&bytes);
        }
    }

    #[test]
    fn requests_frame_by_content_length() {
        let r = b"POST /name/x HTTP/1.1\r\nContent-Length: 3\r\n\r\nab";
        assert_eq!(parse_request(r), Ok(None));
        let r = b"POST /name/x HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
        assert_eq!(
            parse_request(r),
            Ok(Some(("POST".into(), "/name/x".into(), b"abc".to_vec())))
        );
        assert!(parse_request(b"\x00\x01 nonsense\r\n\r\n").is_err());
        assert!(parse_request(b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n").is_err());
        let big = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert!(parse_request(big.as_bytes()).is_err());
    }

    #[test]
    fn requests_we_send_parse_back() {
        let r = request("POST", "proxy", "/key/k", Some("{\"a\":1}"));
        assert_eq!(
            parse_request(&r),
            Ok(Some((
                "POST".into(),
                "/key/k".into(),
                b"{\"a\":1}".to_vec()
            )))
        );
        let r = request("GET", "ns", "/name/x", None);
        assert_eq!(
            parse_request(&r),
            Ok(Some(("GET".into(), "/name/x".into(), Vec::new())))
        );
    }

    #[test]
    fn responses_carry_status_and_json() {
        let r = http_response(409, &serde_json::json!({"success": false}));
        let (status, body) = parse_response(&r).unwrap();
        assert_eq!(status, 409);
        assert_eq!(body["success"], false);
    }
}
