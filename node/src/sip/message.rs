//! One SIP message (RFC 3261 §7): start line, headers, body, and the bytes pjsip writes
//! for it. Parsing takes a complete head (what [`super::stream`] framed) and returns
//! errors, never panics.
//!
//! What pjsip (`sip_msg.c`, `pjsip_msg_print`) writes, and [`SipMessage::encode`] copies:
//! `Name: value` lines in list order, then — when there is a body — `Content-Type` and a
//! `Content-Length` whose number is right-aligned in 5 columns (`Content-Length:    12`);
//! without a body `Content-Length:  0` (two spaces). `Content-Length` is framing, so it is
//! not kept in [`SipMessage::headers`]: it is checked on input and recomputed on output.

/// Why a head was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("head is not UTF-8")]
    NotUtf8,
    #[error("bad start line: {0:?}")]
    StartLine(String),
    #[error("bad header line: {0:?}")]
    HeaderLine(String),
    #[error("continuation line before any header")]
    FoldWithoutHeader,
    #[error("missing Content-Length (required on a stream transport)")]
    NoContentLength,
    #[error("bad or conflicting Content-Length: {0:?}")]
    ContentLength(String),
}

/// Request line or status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    Request { method: String, uri: String },
    Status { code: u16, reason: String },
}

/// A header as written (name in the form received: long or compact, any case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: String,
}

/// A SIP message; `headers` never holds `Content-Length` (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipMessage {
    pub start: StartLine,
    pub headers: Vec<Header>,
    pub body: Vec<u8>,
}

/// RFC 3261 §7.3.3 compact forms (and later RFCs'), mapped to their long names.
const COMPACT: &[(&str, &str)] = &[
    ("a", "Accept-Contact"),
    ("b", "Referred-By"),
    ("c", "Content-Type"),
    ("d", "Request-Disposition"),
    ("e", "Content-Encoding"),
    ("f", "From"),
    ("i", "Call-ID"),
    ("j", "Reject-Contact"),
    ("k", "Supported"),
    ("l", "Content-Length"),
    ("m", "Contact"),
    ("o", "Event"),
    ("r", "Refer-To"),
    ("s", "Subject"),
    ("t", "To"),
    ("u", "Allow-Events"),
    ("v", "Via"),
    ("x", "Session-Expires"),
    ("y", "Identity"),
];

/// The long form of a header name (compact forms expanded), for comparisons.
pub fn long_name(name: &str) -> &str {
    if name.len() == 1 {
        if let Some((_, long)) = COMPACT.iter().find(|(c, _)| c.eq_ignore_ascii_case(name)) {
            return long;
        }
    }
    name
}

/// Whether two header names denote the same header (case-insensitive, compact forms).
pub fn same_header(a: &str, b: &str) -> bool {
    long_name(a).eq_ignore_ascii_case(long_name(b))
}

/// RFC 3261 `token` characters (methods, header names).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
}

impl SipMessage {
    pub fn request(method: &str, uri: &str) -> Self {
        SipMessage {
            start: StartLine::Request {
                method: method.into(),
                uri: uri.into(),
            },
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn response(code: u16, reason: &str) -> Self {
        SipMessage {
            start: StartLine::Status {
                code,
                reason: reason.into(),
            },
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Append a header.
    pub fn push(&mut self, name: &str, value: impl Into<String>) -> &mut Self {
        self.headers.push(Header {
            name: name.into(),
            value: value.into(),
        });
        self
    }

    /// The first value of header `name` (any case, long or compact form).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| same_header(&h.name, name))
            .map(|h| h.value.as_str())
    }

    /// Every value of header `name`, in order: repeated header lines and comma-separated
    /// lists (`Via: a, b`) alike. Commas inside quotes or `<…>` do not split.
    pub fn values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|h| same_header(&h.name, name))
            .flat_map(|h| split_list(&h.value))
            .collect()
    }

    pub fn method(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Status { .. } => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match &self.start {
            StartLine::Status { code, .. } => Some(*code),
            StartLine::Request { .. } => None,
        }
    }

    /// The bytes pjsip would write for this message (see the module doc).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.body.len());
        match &self.start {
            StartLine::Request { method, uri } => {
                out.extend_from_slice(format!("{method} {uri} SIP/2.0\r\n").as_bytes())
            }
            StartLine::Status { code, reason } => {
                out.extend_from_slice(format!("SIP/2.0 {code} {reason}\r\n").as_bytes())
            }
        }
        for h in &self.headers {
            out.extend_from_slice(format!("{}: {}\r\n", h.name, h.value).as_bytes());
        }
        if self.body.is_empty() {
            out.extend_from_slice(b"Content-Length:  0\r\n\r\n");
        } else {
            out.extend_from_slice(format!("Content-Length: {:>5}\r\n\r\n", self.body.len()).as_bytes());
            out.extend_from_slice(&self.body);
        }
        out
    }

    /// Parse a head (start line and header lines, without the empty line) and return
    /// the message without its body and the Content-Length it announces.
    pub fn parse_head(head: &[u8]) -> Result<(SipMessage, usize), ParseError> {
        let text = std::str::from_utf8(head).map_err(|_| ParseError::NotUtf8)?;
        let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
        let first = lines.next().unwrap_or_default();
        let start = parse_start_line(first)?;
        let mut headers: Vec<Header> = Vec::new();
        for line in lines {
            if line.is_empty() {
                continue;
            }
            if line.starts_with([' ', '\t']) {
                // Folding (RFC 3261 §7.3.1): the line continues the previous value.
                let last = headers.last_mut().ok_or(ParseError::FoldWithoutHeader)?;
                let more = line.trim();
                if !more.is_empty() {
                    if !last.value.is_empty() {
                        last.value.push(' ');
                    }
                    last.value.push_str(more);
                }
                continue;
            }
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| ParseError::HeaderLine(line.into()))?;
            let name = name.trim_end_matches([' ', '\t']);
            if !is_token(name) {
                return Err(ParseError::HeaderLine(line.into()));
            }
            headers.push(Header {
                name: name.into(),
                value: value.trim_matches([' ', '\t']).into(),
            });
        }
        let mut length = None;
        for h in headers.iter().filter(|h| same_header(&h.name, "Content-Length")) {
            let n = parse_content_length(&h.value)?;
            if length.is_some_and(|l| l != n) {
                return Err(ParseError::ContentLength(h.value.clone()));
            }
            length = Some(n);
        }
        let length = length.ok_or(ParseError::NoContentLength)?;
        headers.retain(|h| !same_header(&h.name, "Content-Length"));
        Ok((
            SipMessage {
                start,
                headers,
                body: Vec::new(),
            },
            length,
        ))
    }
}

/// A Content-Length value: digits only, at most 9 of them (pjsip's `strtoi_validate`
/// bound is `PJSIP_MAX_CONTENT_LENGTH` = `PJ_MAXINT32`).
pub fn parse_content_length(v: &str) -> Result<usize, ParseError> {
    let v = v.trim();
    if v.is_empty() || v.len() > 9 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::ContentLength(v.into()));
    }
    v.parse().map_err(|_| ParseError::ContentLength(v.into()))
}

fn parse_start_line(line: &str) -> Result<StartLine, ParseError> {
    let bad = || ParseError::StartLine(line.into());
    if let Some(rest) = strip_prefix_ci(line, "SIP/2.0 ") {
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let code: u16 = code.parse().map_err(|_| bad())?;
        if !(100..=699).contains(&code) {
            return Err(bad());
        }
        return Ok(StartLine::Status {
            code,
            reason: reason.into(),
        });
    }
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    if !is_token(method) || uri.is_empty() || !version.eq_ignore_ascii_case("SIP/2.0") {
        return Err(bad());
    }
    Ok(StartLine::Request {
        method: method.into(),
        uri: uri.into(),
    })
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &s[prefix.len()..])
}

/// Split a header value at top-level commas (not inside quotes or angle brackets).
pub fn split_list(v: &str) -> Vec<&str> {
    let (mut out, mut start, mut quoted, mut angle, mut escaped) = (Vec::new(), 0, false, 0u32, false);
    for (i, c) in v.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '<' if !quoted => angle += 1,
            '>' if !quoted => angle = angle.saturating_sub(1),
            ',' if !quoted && angle == 0 => {
                out.push(v[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(v[start..].trim());
    out.retain(|s| !s.is_empty());
    out
}

/// A `;name=value` parameter of a header value (Via `branch`, From `tag`), outside any
/// `<…>` and quotes.
pub fn param<'a>(value: &'a str, name: &str) -> Option<&'a str> {
    let mut quoted = false;
    let mut angle = 0u32;
    let mut cut = value.len();
    for (i, c) in value.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => angle += 1,
            '>' if !quoted => angle = angle.saturating_sub(1),
            ';' if !quoted && angle == 0 => {
                cut = i;
                break;
            }
            _ => {}
        }
    }
    value[cut..].split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The user part of the URI in a name-addr (`"Bob" <sip:bob@host>;tag=x` → `bob`).
pub fn uri_user(name_addr: &str) -> Option<&str> {
    let uri = match (name_addr.find('<'), name_addr.find('>')) {
        (Some(a), Some(b)) if a < b => &name_addr[a + 1..b],
        _ => name_addr.split(';').next()?,
    };
    let rest = uri.trim();
    let rest = strip_prefix_ci(rest, "sips:").or_else(|| strip_prefix_ci(rest, "sip:"))?;
    let (user, _) = rest.split_once('@')?;
    (!user.is_empty()).then_some(user)
}
