//! Minimal HTTP/1.1 framing for simulated services over netsim TCP: one request per
//! connection, `Content-Length` bodies, the server closes after its answer. Parsing of
//! untrusted bytes is httparse's; this only frames.

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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn responses_carry_status_and_json() {
        let r = http_response(409, &serde_json::json!({"success": false}));
        let (status, body) = parse_response(&r).unwrap();
        assert_eq!(status, 409);
        assert_eq!(body["success"], false);
    }
}
