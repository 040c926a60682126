//! `multipart/*` bodies (RFC 2046 §5.1) as pjsip splits them (`sip_multipart.c`,
//! `pjsip_multipart_parse`): parts between `--boundary` delimiters, the CRLF before a
//! delimiter belonging to it, each part a header block, an empty line and its body.
//! jamid never sends one (JamiAccount refuses multi-part payloads) but its receiving
//! side reads every part (`im::parseSipMessage`), so we do too.

use super::message::{param, same_header};

/// Why a multipart body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MultipartError {
    #[error("no boundary parameter")]
    NoBoundary,
    #[error("no delimiter line in the body")]
    NoDelimiter,
    #[error("delimiter not followed by a newline")]
    NoNewline,
    #[error("part not closed by a delimiter")]
    Unterminated,
}

/// One part: its Content-Type value (`None` when absent) and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Split `body` whose Content-Type is `content_type` (with its `boundary` parameter).
pub fn split(content_type: &str, body: &[u8]) -> Result<Vec<Part>, MultipartError> {
    let boundary = param(content_type, "boundary").ok_or(MultipartError::NoBoundary)?;
    let boundary = boundary
        .strip_prefix('"')
        .and_then(|b| b.strip_suffix('"'))
        .unwrap_or(boundary);
    if boundary.is_empty() {
        return Err(MultipartError::NoBoundary);
    }
    let delim = format!("--{boundary}").into_bytes();
    let mut at = find(body, &delim).ok_or(MultipartError::NoDelimiter)?;
    let mut parts = Vec::new();
    loop {
        at += delim.len();
        if body[at..].starts_with(b"--") {
            return Ok(parts);
        }
        while body.get(at).is_some_and(|b| *b == b' ' || *b == b'\t') {
            at += 1;
        }
        if body.get(at) == Some(&b'\r') {
            at += 1;
        }
        if body.get(at) != Some(&b'\n') {
            return Err(MultipartError::NoNewline);
        }
        at += 1;
        let start = at;
        let next = start + find(&body[start..], &delim).ok_or(MultipartError::Unterminated)?;
        let mut end = next;
        if end > start && body[end - 1] == b'\n' {
            end -= 1;
        }
        if end > start && body[end - 1] == b'\r' {
            end -= 1;
        }
        parts.push(part(&body[start..end]));
        at = next;
    }
}

/// A part's header block and body (no header block when it starts with an empty line).
fn part(bytes: &[u8]) -> Part {
    let mut content_type = None;
    let mut at = 0;
    loop {
        let Some(nl) = bytes[at..].iter().position(|b| *b == b'\n') else {
            // Headers without an empty line: no body.
            return Part {
                content_type,
                body: Vec::new(),
            };
        };
        let line = &bytes[at..at + nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        at += nl + 1;
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = std::str::from_utf8(line).ok().and_then(|l| l.split_once(':')) {
            if same_header(name.trim(), "Content-Type") && content_type.is_none() {
                content_type = Some(value.trim().to_owned());
            }
        }
    }
    Part {
        content_type,
        body: bytes[at..].to_vec(),
    }
}
