//! Minimal msgpack reader and writer for the OpenDHT wire format.
//!
//! The reader is written for hostile input: every length is checked against
//! the bytes that remain before anything is allocated, nesting is limited, and
//! every node keeps the exact byte span it was decoded from (signatures and
//! value blobs must be forwarded byte for byte).
//!
//! The writer emits msgpack-c's canonical form: the smallest integer encoding,
//! `str` for text, `bin` for bytes, the smallest map/array header.

use thiserror::Error;

/// Maximum nesting of arrays/maps accepted by [`parse`].
pub const MAX_DEPTH: usize = 32;

/// Why a msgpack document could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MsgpackError {
    #[error("unexpected end of input")]
    Truncated,
    #[error("reserved msgpack marker 0xc1")]
    ReservedMarker,
    #[error("nesting deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("{0} trailing bytes after the document")]
    TrailingBytes(usize),
}

/// A decoded msgpack object borrowing from the input buffer.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind<'a> {
    Nil,
    Bool(bool),
    /// A positive integer (any unsigned encoding or positive fixint).
    Uint(u64),
    /// A negative integer (only ever produced for values < 0).
    Int(i64),
    F32(f32),
    F64(f64),
    /// `str` payload; not validated as UTF-8 (msgpack-c does not either).
    Str(&'a [u8]),
    Bin(&'a [u8]),
    Array(Vec<Node<'a>>),
    Map(Vec<(Node<'a>, Node<'a>)>),
    Ext(i8, &'a [u8]),
}

/// A msgpack object together with the exact bytes it was decoded from.
#[derive(Debug, Clone, PartialEq)]
pub struct Node<'a> {
    pub kind: Kind<'a>,
    pub raw: &'a [u8],
}

impl<'a> Node<'a> {
    /// Unsigned integer value, as msgpack-c's `as<uint64_t>` accepts it.
    pub fn as_u64(&self) -> Option<u64> {
        match self.kind {
            Kind::Uint(u) => Some(u),
            _ => None,
        }
    }

    /// Signed integer value (`as<int64_t>`): positive ints that fit, or negatives.
    pub fn as_i64(&self) -> Option<i64> {
        match self.kind {
            Kind::Uint(u) => i64::try_from(u).ok(),
            Kind::Int(i) => Some(i),
            _ => None,
        }
    }

    /// Text as msgpack-c's `as<std::string>` accepts it (str or bin).
    pub fn as_str_bytes(&self) -> Option<&'a [u8]> {
        match self.kind {
            Kind::Str(s) | Kind::Bin(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bin(&self) -> Option<&'a [u8]> {
        match self.kind {
            Kind::Bin(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self.kind {
            Kind::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Node<'a>]> {
        match &self.kind {
            Kind::Array(a) => Some(a),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node<'a>, Node<'a>)]> {
        match &self.kind {
            Kind::Map(m) => Some(m),
            _ => None,
        }
    }

    /// True when this is a `str` equal to `key`.
    pub fn is_str(&self, key: &str) -> bool {
        matches!(self.kind, Kind::Str(s) if s == key.as_bytes())
    }

    /// First value whose key is the string `key` (OpenDHT's `findMapValue`).
    pub fn get(&self, key: &str) -> Option<&Node<'a>> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.is_str(key))
            .map(|(_, v)| v)
    }
}

/// Parse exactly one msgpack document occupying all of `buf`.
pub fn parse(buf: &[u8]) -> Result<Node<'_>, MsgpackError> {
    let (node, used) = parse_prefix(buf)?;
    match buf.len() - used {
        0 => Ok(node),
        n => Err(MsgpackError::TrailingBytes(n)),
    }
}

/// Parse the first msgpack document of `buf`; returns it and its length.
pub fn parse_prefix(buf: &[u8]) -> Result<(Node<'_>, usize), MsgpackError> {
    let mut r = Reader { buf, pos: 0 };
    let node = r.read(0)?;
    Ok((node, r.pos))
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], MsgpackError> {
        if n > self.remaining() {
            return Err(MsgpackError::Truncated);
        }
        let s = self
            .buf
            .get(self.pos..self.pos + n)
            .ok_or(MsgpackError::Truncated)?;
        self.pos += n;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8, MsgpackError> {
        Ok(self.take(1)?.first().copied().unwrap_or(0))
    }

    fn be(&mut self, n: usize) -> Result<u64, MsgpackError> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    fn len(&mut self, n: usize) -> Result<usize, MsgpackError> {
        usize::try_from(self.be(n)?).map_err(|_| MsgpackError::Truncated)
    }

    fn read(&mut self, depth: usize) -> Result<Node<'a>, MsgpackError> {
        if depth > MAX_DEPTH {
            return Err(MsgpackError::TooDeep);
        }
        let start = self.pos;
        let kind = self.read_kind(depth)?;
        let raw = self
            .buf
            .get(start..self.pos)
            .ok_or(MsgpackError::Truncated)?;
        Ok(Node { kind, raw })
    }

    fn read_kind(&mut self, depth: usize) -> Result<Kind<'a>, MsgpackError> {
        let m = self.byte()?;
        Ok(match m {
            0x00..=0x7f => Kind::Uint(u64::from(m)),
            0x80..=0x8f => self.map(usize::from(m & 0x0f), depth)?,
            0x90..=0x9f => self.array(usize::from(m & 0x0f), depth)?,
            0xa0..=0xbf => Kind::Str(self.take(usize::from(m & 0x1f))?),
            0xc0 => Kind::Nil,
            0xc1 => return Err(MsgpackError::ReservedMarker),
            0xc2 => Kind::Bool(false),
            0xc3 => Kind::Bool(true),
            0xc4 => Kind::Bin(self.sized(1)?),
            0xc5 => Kind::Bin(self.sized(2)?),
            0xc6 => Kind::Bin(self.sized(4)?),
            0xc7 => self.ext(1)?,
            0xc8 => self.ext(2)?,
            0xc9 => self.ext(4)?,
            0xca => Kind::F32(f32::from_bits(self.be(4)? as u32)),
            0xcb => Kind::F64(f64::from_bits(self.be(8)?)),
            0xcc => Kind::Uint(self.be(1)?),
            0xcd => Kind::Uint(self.be(2)?),
            0xce => Kind::Uint(self.be(4)?),
            0xcf => Kind::Uint(self.be(8)?),
            0xd0 => int(self.be(1)? as u8 as i8 as i64),
            0xd1 => int(self.be(2)? as u16 as i16 as i64),
            0xd2 => int(self.be(4)? as u32 as i32 as i64),
            0xd3 => int(self.be(8)? as i64),
            0xd4 => self.fixext(1)?,
            0xd5 => self.fixext(2)?,
            0xd6 => self.fixext(4)?,
            0xd7 => self.fixext(8)?,
            0xd8 => self.fixext(16)?,
            0xd9 => Kind::Str(self.sized(1)?),
            0xda => Kind::Str(self.sized(2)?),
            0xdb => Kind::Str(self.sized(4)?),
            0xdc => {
                let n = self.len(2)?;
                self.array(n, depth)?
            }
            0xdd => {
                let n = self.len(4)?;
                self.array(n, depth)?
            }
            0xde => {
                let n = self.len(2)?;
                self.map(n, depth)?
            }
            0xdf => {
                let n = self.len(4)?;
                self.map(n, depth)?
            }
            0xe0..=0xff => Kind::Int(i64::from(m as i8)),
        })
    }

    fn sized(&mut self, width: usize) -> Result<&'a [u8], MsgpackError> {
        let n = self.len(width)?;
        self.take(n)
    }

    fn ext(&mut self, width: usize) -> Result<Kind<'a>, MsgpackError> {
        let n = self.len(width)?;
        self.fixext(n)
    }

    fn fixext(&mut self, n: usize) -> Result<Kind<'a>, MsgpackError> {
        let t = self.byte()? as i8;
        Ok(Kind::Ext(t, self.take(n)?))
    }

    /// Every element takes at least one byte, so a count larger than the
    /// remaining input is a lie and is rejected before allocating.
    fn array(&mut self, n: usize, depth: usize) -> Result<Kind<'a>, MsgpackError> {
        if n > self.remaining() {
            return Err(MsgpackError::Truncated);
        }
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(self.read(depth + 1)?);
        }
        Ok(Kind::Array(items))
    }

    fn map(&mut self, n: usize, depth: usize) -> Result<Kind<'a>, MsgpackError> {
        if n.saturating_mul(2) > self.remaining() {
            return Err(MsgpackError::Truncated);
        }
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            let k = self.read(depth + 1)?;
            let v = self.read(depth + 1)?;
            items.push((k, v));
        }
        Ok(Kind::Map(items))
    }
}

/// msgpack-c reports non-negative signed encodings as positive integers.
fn int(i: i64) -> Kind<'static> {
    if i >= 0 {
        Kind::Uint(i as u64)
    } else {
        Kind::Int(i)
    }
}

/// Appends msgpack-c canonical encodings to a byte buffer.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    pub fn uint(&mut self, v: u64) -> &mut Self {
        match v {
            0..=0x7f => self.buf.push(v as u8),
            0x80..=0xff => self.buf.extend_from_slice(&[0xcc, v as u8]),
            0x100..=0xffff => {
                self.buf.push(0xcd);
                self.buf.extend_from_slice(&(v as u16).to_be_bytes());
            }
            0x1_0000..=0xffff_ffff => {
                self.buf.push(0xce);
                self.buf.extend_from_slice(&(v as u32).to_be_bytes());
            }
            _ => {
                self.buf.push(0xcf);
                self.buf.extend_from_slice(&v.to_be_bytes());
            }
        }
        self
    }

    /// Signed integer the way msgpack-c packs `int64_t`: non-negative values
    /// use the unsigned forms, negatives the smallest signed form.
    pub fn int(&mut self, v: i64) -> &mut Self {
        if v >= 0 {
            return self.uint(v as u64);
        }
        if v >= -32 {
            self.buf.push(v as i8 as u8);
        } else if v >= i64::from(i8::MIN) {
            self.buf.extend_from_slice(&[0xd0, v as i8 as u8]);
        } else if v >= i64::from(i16::MIN) {
            self.buf.push(0xd1);
            self.buf.extend_from_slice(&(v as i16).to_be_bytes());
        } else if v >= i64::from(i32::MIN) {
            self.buf.push(0xd2);
            self.buf.extend_from_slice(&(v as i32).to_be_bytes());
        } else {
            self.buf.push(0xd3);
            self.buf.extend_from_slice(&v.to_be_bytes());
        }
        self
    }

    pub fn nil(&mut self) -> &mut Self {
        self.buf.push(0xc0);
        self
    }

    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.buf.push(if v { 0xc3 } else { 0xc2 });
        self
    }

    pub fn str(&mut self, s: &str) -> &mut Self {
        self.str_bytes(s.as_bytes())
    }

    /// A `str` whose payload is given as bytes (kept verbatim).
    pub fn str_bytes(&mut self, s: &[u8]) -> &mut Self {
        let n = s.len();
        if n < 32 {
            self.buf.push(0xa0 | n as u8);
        } else {
            self.header(n, [0xd9, 0xda, 0xdb]);
        }
        self.buf.extend_from_slice(s);
        self
    }

    pub fn bin(&mut self, b: &[u8]) -> &mut Self {
        self.header(b.len(), [0xc4, 0xc5, 0xc6]);
        self.buf.extend_from_slice(b);
        self
    }

    pub fn array_len(&mut self, n: usize) -> &mut Self {
        if n < 16 {
            self.buf.push(0x90 | n as u8);
        } else {
            self.header16(n, [0xdc, 0xdd]);
        }
        self
    }

    pub fn map_len(&mut self, n: usize) -> &mut Self {
        if n < 16 {
            self.buf.push(0x80 | n as u8);
        } else {
            self.header16(n, [0xde, 0xdf]);
        }
        self
    }

    /// Appends already-encoded msgpack bytes verbatim.
    pub fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(b);
        self
    }

    /// 8/16/32-bit length header (bin, str8+).
    fn header(&mut self, n: usize, markers: [u8; 3]) {
        if n <= 0xff {
            self.buf.extend_from_slice(&[markers[0], n as u8]);
        } else {
            self.header16(n, [markers[1], markers[2]]);
        }
    }

    /// 16/32-bit length header. Lengths beyond u32 cannot occur in a UDP
    /// datagram; they are clamped rather than panicking.
    fn header16(&mut self, n: usize, markers: [u8; 2]) {
        if n <= 0xffff {
            self.buf.push(markers[0]);
            self.buf.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            self.buf.push(markers[1]);
            let n = u32::try_from(n).unwrap_or(u32::MAX);
            self.buf.extend_from_slice(&n.to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smallest_ints() {
        let mut w = Writer::new();
        w.uint(0x7f)
            .uint(0x80)
            .uint(0x1234)
            .uint(0x1_0000)
            .uint(1 << 32);
        assert_eq!(
            hex::encode(&w.buf),
            "7fcc80cd1234ce00010000cf0000000100000000"
        );
        let mut w = Writer::new();
        w.int(-1).int(-33).int(-200).int(5);
        assert_eq!(hex::encode(&w.buf), "ffd0dfd1ff3805");
    }

    #[test]
    fn spans_and_lookup() {
        let buf = hex::decode("82a16101a162c40201ff").unwrap_or_default();
        let n = parse(&buf).expect("valid");
        assert_eq!(n.get("a").and_then(Node::as_u64), Some(1));
        let b = n.get("b").expect("b");
        assert_eq!(b.raw, &[0xc4, 0x02, 0x01, 0xff]);
    }

    #[test]
    fn hostile_lengths_rejected() {
        assert_eq!(
            parse(&[0xdd, 0xff, 0xff, 0xff, 0xff]),
            Err(MsgpackError::Truncated)
        );
        assert_eq!(
            parse(&[0xc6, 0xff, 0xff, 0xff, 0xff]),
            Err(MsgpackError::Truncated)
        );
        let deep = vec![0x91u8; 100];
        assert!(parse(&deep).is_err());
    }
}
