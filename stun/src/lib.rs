//! STUN (RFC 5389), NAT behaviour discovery (RFC 5780) and TURN (RFC 5766) wire codec.
//!
//! Sans-IO on purpose: this module only turns messages into bytes and back. It never
//! touches sockets, clocks or OS randomness — transaction ids come from the caller — so a
//! simulated STUN/TURN host stays deterministic and replayable.
//!
//! Decoding never panics, whatever the input: slices are taken with `get`/patterns and all
//! arithmetic is on values bounded by 16-bit length fields. Decoding is strict about
//! framing (a datagram must be exactly one message) because a lenient parser would let a
//! mutated length field slip past MESSAGE-INTEGRITY, whose input length is recomputed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::RangeInclusive;

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha1::Sha1;

/// Fixed value in every RFC 5389 header; also the XOR key for address attributes.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// Size of the STUN message header.
pub const HEADER_LEN: usize = 20;
/// Valid TURN channel numbers (RFC 5766 §11).
pub const CHANNEL_RANGE: RangeInclusive<u16> = 0x4000..=0x7FFF;
/// REQUESTED-TRANSPORT protocol number for UDP, the only one RFC 5766 defines.
pub const TRANSPORT_UDP: u8 = 17;
/// REQUESTED-TRANSPORT protocol number for TCP relays (RFC 6062 §5.1).
pub const TRANSPORT_TCP: u8 = 6;

/// XORed into the CRC-32 so FINGERPRINT differs from CRCs other protocols embed.
const FINGERPRINT_XOR: u32 = 0x5354_554E;
/// Encoded size (header + value) of MESSAGE-INTEGRITY and FINGERPRINT, needed because
/// both are computed with the header length already counting themselves.
const MI_ATTR_LEN: usize = 24;
const FP_ATTR_LEN: usize = 8;

type HmacSha1 = Hmac<Sha1>;

pub mod stream;

/// Attribute type codes.
pub mod attr_type {
    pub const MAPPED_ADDRESS: u16 = 0x0001;
    pub const CHANGE_REQUEST: u16 = 0x0003;
    pub const USERNAME: u16 = 0x0006;
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    pub const ERROR_CODE: u16 = 0x0009;
    pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
    pub const CHANNEL_NUMBER: u16 = 0x000C;
    pub const LIFETIME: u16 = 0x000D;
    pub const XOR_PEER_ADDRESS: u16 = 0x0012;
    pub const DATA: u16 = 0x0013;
    pub const REALM: u16 = 0x0014;
    pub const NONCE: u16 = 0x0015;
    pub const XOR_RELAYED_ADDRESS: u16 = 0x0016;
    pub const EVEN_PORT: u16 = 0x0018;
    pub const REQUESTED_TRANSPORT: u16 = 0x0019;
    pub const DONT_FRAGMENT: u16 = 0x001A;
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    pub const RESERVATION_TOKEN: u16 = 0x0022;
    /// RFC 6062 §6.2.1: names one peer TCP connection of a TCP allocation.
    pub const CONNECTION_ID: u16 = 0x002A;
    pub const PADDING: u16 = 0x0026;
    pub const RESPONSE_PORT: u16 = 0x0027;
    pub const SOFTWARE: u16 = 0x8022;
    pub const ALTERNATE_SERVER: u16 = 0x8023;
    pub const FINGERPRINT: u16 = 0x8028;
    pub const RESPONSE_ORIGIN: u16 = 0x802B;
    pub const OTHER_ADDRESS: u16 = 0x802C;

    /// Types below 0x8000 must be understood; an unknown one makes a request fail with 420.
    pub const fn is_comprehension_required(typ: u16) -> bool {
        typ < 0x8000
    }
}

use attr_type as at;

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StunError {
    #[error("message too short for its header: {len} bytes")]
    TooShort { len: usize },
    #[error("first two bits of the message type are not zero")]
    NotStun,
    #[error("bad magic cookie {0:#010x}")]
    BadCookie(u32),
    #[error("message length {0} is not a multiple of 4")]
    UnalignedLength(usize),
    #[error("header declares {header} bytes of body but {actual} are present")]
    LengthMismatch { header: usize, actual: usize },
    #[error("attribute at offset {offset} runs past the end of the message")]
    AttributeOverrun { offset: usize },
    #[error("attribute {typ:#06x} has invalid length {len}")]
    BadAttributeLength { typ: u16, len: usize },
    #[error("unknown address family {0:#04x}")]
    BadAddressFamily(u8),
    #[error("invalid ERROR-CODE {0}")]
    BadErrorCode(u16),
    #[error("attribute {0:#06x} is not valid UTF-8")]
    InvalidUtf8(u16),
    #[error("channel number {0:#06x} outside 0x4000..=0x7FFF")]
    BadChannelNumber(u16),
}

/// The two class bits of the message type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Request,
    Indication,
    SuccessResponse,
    ErrorResponse,
}

impl Class {
    /// C1 sits at bit 8 and C0 at bit 4 of the message type (RFC 5389 §6).
    fn bits(self) -> u16 {
        match self {
            Class::Request => 0x000,
            Class::Indication => 0x010,
            Class::SuccessResponse => 0x100,
            Class::ErrorResponse => 0x110,
        }
    }

    fn from_type(typ: u16) -> Class {
        match typ & 0x110 {
            0x000 => Class::Request,
            0x010 => Class::Indication,
            0x100 => Class::SuccessResponse,
            _ => Class::ErrorResponse,
        }
    }
}

/// STUN/TURN methods; `Other` keeps any 12-bit method this module does not name, so a
/// server can still answer it (e.g. with 400) instead of failing to parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Binding,
    Allocate,
    Refresh,
    Send,
    Data,
    CreatePermission,
    ChannelBind,
    /// RFC 6062: open a TCP connection from the relay to a peer.
    Connect,
    /// RFC 6062: attach a new client data connection to a peer connection.
    ConnectionBind,
    /// RFC 6062: server tells the client a peer connected to the relayed address.
    ConnectionAttempt,
    Other(u16),
}

impl Method {
    /// The 12-bit method number.
    pub fn code(self) -> u16 {
        match self {
            Method::Binding => 0x001,
            Method::Allocate => 0x003,
            Method::Refresh => 0x004,
            Method::Send => 0x006,
            Method::Data => 0x007,
            Method::CreatePermission => 0x008,
            Method::ChannelBind => 0x009,
            Method::Connect => 0x00A,
            Method::ConnectionBind => 0x00B,
            Method::ConnectionAttempt => 0x00C,
            Method::Other(code) => code & 0x0FFF,
        }
    }

    /// Maps a method number (low 12 bits) to its named variant when there is one.
    pub fn from_code(code: u16) -> Method {
        match code & 0x0FFF {
            0x001 => Method::Binding,
            0x003 => Method::Allocate,
            0x004 => Method::Refresh,
            0x006 => Method::Send,
            0x007 => Method::Data,
            0x008 => Method::CreatePermission,
            0x009 => Method::ChannelBind,
            0x00A => Method::Connect,
            0x00B => Method::ConnectionBind,
            0x00C => Method::ConnectionAttempt,
            other => Method::Other(other),
        }
    }
}

/// Interleaves method and class bits: `M11..M7 C1 M6..M4 C0 M3..M0`.
pub fn message_type(class: Class, method: Method) -> u16 {
    let m = method.code();
    (m & 0x000F) | ((m & 0x0070) << 1) | ((m & 0x0F80) << 2) | class.bits()
}

/// Inverse of [`message_type`]; the two top bits are ignored.
pub fn split_message_type(typ: u16) -> (Class, Method) {
    let m = (typ & 0x000F) | ((typ >> 1) & 0x0070) | ((typ >> 2) & 0x0F80);
    (Class::from_type(typ), Method::from_code(m))
}

/// ERROR-CODE value. `code` is the full 300..=699 number; the wire splits it into a
/// hundreds "class" and a 0..=99 "number".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorCode {
    pub code: u16,
    pub reason: String,
}

impl ErrorCode {
    pub const TRY_ALTERNATE: u16 = 300;
    pub const BAD_REQUEST: u16 = 400;
    pub const UNAUTHORIZED: u16 = 401;
    pub const FORBIDDEN: u16 = 403;
    pub const UNKNOWN_ATTRIBUTE: u16 = 420;
    pub const ALLOCATION_MISMATCH: u16 = 437;
    pub const STALE_NONCE: u16 = 438;
    pub const WRONG_CREDENTIALS: u16 = 441;
    pub const UNSUPPORTED_TRANSPORT: u16 = 442;
    pub const ALLOCATION_QUOTA_REACHED: u16 = 486;
    pub const SERVER_ERROR: u16 = 500;
    pub const INSUFFICIENT_CAPACITY: u16 = 508;

    pub fn new(code: u16, reason: impl Into<String>) -> Self {
        ErrorCode {
            code,
            reason: reason.into(),
        }
    }

    /// An error with the RFC's suggested reason phrase (empty for unlisted codes).
    pub fn standard(code: u16) -> Self {
        let reason = match code {
            300 => "Try Alternate",
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            420 => "Unknown Attribute",
            437 => "Allocation Mismatch",
            438 => "Stale Nonce",
            441 => "Wrong Credentials",
            442 => "Unsupported Transport Protocol",
            486 => "Allocation Quota Reached",
            500 => "Server Error",
            508 => "Insufficient Capacity",
            _ => "",
        };
        ErrorCode::new(code, reason)
    }

    /// Hundreds digit (3..=6 for valid codes).
    pub fn class(&self) -> u8 {
        (self.code / 100) as u8
    }

    /// Code modulo 100.
    pub fn number(&self) -> u8 {
        (self.code % 100) as u8
    }
}

/// A decoded attribute. Types this module does not know are kept verbatim in `Unknown`
/// so they survive re-encoding and can be reported in UNKNOWN-ATTRIBUTES.
///
/// Address attributes use [`SocketAddr`]; IPv6 flow info and scope id are not carried on
/// the wire and decode as zero. XOR-* variants hold the real (un-XORed) address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attribute {
    MappedAddress(SocketAddr),
    XorMappedAddress(SocketAddr),
    Username(String),
    MessageIntegrity([u8; 20]),
    Fingerprint(u32),
    ErrorCode(ErrorCode),
    UnknownAttributes(Vec<u16>),
    Realm(String),
    Nonce(String),
    Software(String),
    AlternateServer(SocketAddr),
    ChangeRequest {
        change_ip: bool,
        change_port: bool,
    },
    ResponseOrigin(SocketAddr),
    OtherAddress(SocketAddr),
    ResponsePort(u16),
    Padding(Vec<u8>),
    ChannelNumber(u16),
    Lifetime(u32),
    XorPeerAddress(SocketAddr),
    Data(Vec<u8>),
    XorRelayedAddress(SocketAddr),
    /// `true` asks the server to also reserve the next-higher port (R bit).
    EvenPort(bool),
    /// IP protocol number, e.g. [`TRANSPORT_UDP`].
    RequestedTransport(u8),
    DontFragment,
    ReservationToken([u8; 8]),
    /// RFC 6062 CONNECTION-ID: server-chosen id of a peer TCP connection.
    ConnectionId(u32),
    Unknown {
        typ: u16,
        value: Vec<u8>,
    },
}

impl Attribute {
    /// Wire type code.
    pub fn typ(&self) -> u16 {
        use Attribute as A;
        match self {
            A::MappedAddress(_) => at::MAPPED_ADDRESS,
            A::XorMappedAddress(_) => at::XOR_MAPPED_ADDRESS,
            A::Username(_) => at::USERNAME,
            A::MessageIntegrity(_) => at::MESSAGE_INTEGRITY,
            A::Fingerprint(_) => at::FINGERPRINT,
            A::ErrorCode(_) => at::ERROR_CODE,
            A::UnknownAttributes(_) => at::UNKNOWN_ATTRIBUTES,
            A::Realm(_) => at::REALM,
            A::Nonce(_) => at::NONCE,
            A::Software(_) => at::SOFTWARE,
            A::AlternateServer(_) => at::ALTERNATE_SERVER,
            A::ChangeRequest { .. } => at::CHANGE_REQUEST,
            A::ResponseOrigin(_) => at::RESPONSE_ORIGIN,
            A::OtherAddress(_) => at::OTHER_ADDRESS,
            A::ResponsePort(_) => at::RESPONSE_PORT,
            A::Padding(_) => at::PADDING,
            A::ChannelNumber(_) => at::CHANNEL_NUMBER,
            A::Lifetime(_) => at::LIFETIME,
            A::XorPeerAddress(_) => at::XOR_PEER_ADDRESS,
            A::Data(_) => at::DATA,
            A::XorRelayedAddress(_) => at::XOR_RELAYED_ADDRESS,
            A::EvenPort(_) => at::EVEN_PORT,
            A::RequestedTransport(_) => at::REQUESTED_TRANSPORT,
            A::DontFragment => at::DONT_FRAGMENT,
            A::ReservationToken(_) => at::RESERVATION_TOKEN,
            A::ConnectionId(_) => at::CONNECTION_ID,
            A::Unknown { typ, .. } => *typ,
        }
    }

    /// Appends the unpadded value bytes. XOR addresses need the transaction id.
    fn write_value(&self, txid: &[u8; 12], out: &mut Vec<u8>) {
        use Attribute as A;
        match self {
            A::MappedAddress(a)
            | A::AlternateServer(a)
            | A::ResponseOrigin(a)
            | A::OtherAddress(a) => put_addr(out, *a),
            A::XorMappedAddress(a) | A::XorPeerAddress(a) | A::XorRelayedAddress(a) => {
                put_addr(out, xor_addr(*a, txid))
            }
            A::Username(s) | A::Realm(s) | A::Nonce(s) | A::Software(s) => {
                out.extend_from_slice(s.as_bytes())
            }
            A::MessageIntegrity(mac) => out.extend_from_slice(mac),
            A::Fingerprint(crc) => out.extend_from_slice(&crc.to_be_bytes()),
            A::ErrorCode(e) => {
                out.extend_from_slice(&[0, 0, e.class() & 0x07, e.number()]);
                out.extend_from_slice(e.reason.as_bytes());
            }
            A::UnknownAttributes(types) => types
                .iter()
                .for_each(|t| out.extend_from_slice(&t.to_be_bytes())),
            A::ChangeRequest {
                change_ip,
                change_port,
            } => {
                let flags = (u8::from(*change_ip) << 2) | (u8::from(*change_port) << 1);
                out.extend_from_slice(&[0, 0, 0, flags]);
            }
            // RFC 5780 §7.5: a 16-bit port; the TLV padding supplies the trailing 2 bytes.
            A::ResponsePort(p) => out.extend_from_slice(&p.to_be_bytes()),
            A::Padding(v) | A::Data(v) | A::Unknown { value: v, .. } => out.extend_from_slice(v),
            A::ChannelNumber(c) => {
                out.extend_from_slice(&c.to_be_bytes());
                out.extend_from_slice(&[0, 0]);
            }
            A::Lifetime(secs) => out.extend_from_slice(&secs.to_be_bytes()),
            A::EvenPort(reserve) => out.push(if *reserve { 0x80 } else { 0 }),
            A::RequestedTransport(proto) => out.extend_from_slice(&[*proto, 0, 0, 0]),
            A::DontFragment => {}
            A::ReservationToken(token) => out.extend_from_slice(token),
            A::ConnectionId(id) => out.extend_from_slice(&id.to_be_bytes()),
        }
    }

    /// Parses one attribute value. Known types are validated strictly; others are kept raw.
    fn decode(typ: u16, v: &[u8], txid: &[u8; 12]) -> Result<Attribute, StunError> {
        use Attribute as A;
        Ok(match typ {
            at::MAPPED_ADDRESS => A::MappedAddress(get_addr(typ, v)?),
            at::XOR_MAPPED_ADDRESS => A::XorMappedAddress(xor_addr(get_addr(typ, v)?, txid)),
            at::USERNAME => A::Username(utf8(typ, v)?),
            at::MESSAGE_INTEGRITY => A::MessageIntegrity(fixed(typ, v)?),
            at::FINGERPRINT => A::Fingerprint(u32::from_be_bytes(fixed(typ, v)?)),
            at::ERROR_CODE => A::ErrorCode(get_error_code(v)?),
            at::UNKNOWN_ATTRIBUTES => A::UnknownAttributes(get_u16_list(typ, v)?),
            at::REALM => A::Realm(utf8(typ, v)?),
            at::NONCE => A::Nonce(utf8(typ, v)?),
            at::SOFTWARE => A::Software(utf8(typ, v)?),
            at::ALTERNATE_SERVER => A::AlternateServer(get_addr(typ, v)?),
            at::CHANGE_REQUEST => {
                let [_, _, _, flags] = fixed(typ, v)?;
                A::ChangeRequest {
                    change_ip: flags & 0x04 != 0,
                    change_port: flags & 0x02 != 0,
                }
            }
            at::RESPONSE_ORIGIN => A::ResponseOrigin(get_addr(typ, v)?),
            at::OTHER_ADDRESS => A::OtherAddress(get_addr(typ, v)?),
            // Accept the 2-byte form and peers that count the padding in the length.
            at::RESPONSE_PORT => match v {
                [a, b] | [a, b, _, _] => A::ResponsePort(u16::from_be_bytes([*a, *b])),
                _ => return Err(bad_len(typ, v)),
            },
            at::PADDING => A::Padding(v.to_vec()),
            at::CHANNEL_NUMBER => {
                let [a, b, _, _] = fixed(typ, v)?;
                A::ChannelNumber(u16::from_be_bytes([a, b]))
            }
            at::LIFETIME => A::Lifetime(u32::from_be_bytes(fixed(typ, v)?)),
            at::XOR_PEER_ADDRESS => A::XorPeerAddress(xor_addr(get_addr(typ, v)?, txid)),
            at::DATA => A::Data(v.to_vec()),
            at::XOR_RELAYED_ADDRESS => A::XorRelayedAddress(xor_addr(get_addr(typ, v)?, txid)),
            at::EVEN_PORT => {
                let [flags] = fixed(typ, v)?;
                A::EvenPort(flags & 0x80 != 0)
            }
            at::REQUESTED_TRANSPORT => {
                let [proto, _, _, _] = fixed(typ, v)?;
                A::RequestedTransport(proto)
            }
            at::DONT_FRAGMENT => {
                let [] = fixed(typ, v)?;
                A::DontFragment
            }
            at::RESERVATION_TOKEN => A::ReservationToken(fixed(typ, v)?),
            at::CONNECTION_ID => A::ConnectionId(u32::from_be_bytes(fixed(typ, v)?)),
            _ => A::Unknown {
                typ,
                value: v.to_vec(),
            },
        })
    }
}

fn bad_len(typ: u16, v: &[u8]) -> StunError {
    StunError::BadAttributeLength { typ, len: v.len() }
}

fn fixed<const N: usize>(typ: u16, v: &[u8]) -> Result<[u8; N], StunError> {
    <[u8; N]>::try_from(v).map_err(|_| bad_len(typ, v))
}

fn utf8(typ: u16, v: &[u8]) -> Result<String, StunError> {
    String::from_utf8(v.to_vec()).map_err(|_| StunError::InvalidUtf8(typ))
}

fn get_u16_list(typ: u16, v: &[u8]) -> Result<Vec<u16>, StunError> {
    if !v.len().is_multiple_of(2) {
        return Err(bad_len(typ, v));
    }
    Ok(v.chunks_exact(2)
        .filter_map(|c| <[u8; 2]>::try_from(c).ok())
        .map(u16::from_be_bytes)
        .collect())
}

fn get_error_code(v: &[u8]) -> Result<ErrorCode, StunError> {
    let [_, _, class, number, reason @ ..] = v else {
        return Err(bad_len(at::ERROR_CODE, v));
    };
    let code = u16::from(class & 0x07) * 100 + u16::from(*number);
    if *number >= 100 || !(300..700).contains(&code) {
        return Err(StunError::BadErrorCode(code));
    }
    Ok(ErrorCode::new(code, utf8(at::ERROR_CODE, reason)?))
}

/// Layout shared by all address attributes: reserved byte, family, port, address.
fn get_addr(typ: u16, v: &[u8]) -> Result<SocketAddr, StunError> {
    let (ip, port) = match v {
        [_, 0x01, p0, p1, rest @ ..] => {
            let octets: [u8; 4] = fixed(typ, rest).map_err(|_| bad_len(typ, v))?;
            (IpAddr::V4(Ipv4Addr::from(octets)), [*p0, *p1])
        }
        [_, 0x02, p0, p1, rest @ ..] => {
            let octets: [u8; 16] = fixed(typ, rest).map_err(|_| bad_len(typ, v))?;
            (IpAddr::V6(Ipv6Addr::from(octets)), [*p0, *p1])
        }
        [_, family, _, _, ..] => return Err(StunError::BadAddressFamily(*family)),
        _ => return Err(bad_len(typ, v)),
    };
    Ok(SocketAddr::new(ip, u16::from_be_bytes(port)))
}

fn put_addr(out: &mut Vec<u8>, addr: SocketAddr) {
    let port = addr.port().to_be_bytes();
    match addr.ip() {
        IpAddr::V4(ip) => {
            out.extend_from_slice(&[0, 0x01, port[0], port[1]]);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.extend_from_slice(&[0, 0x02, port[0], port[1]]);
            out.extend_from_slice(&ip.octets());
        }
    }
}

/// XOR-*-ADDRESS obfuscation (RFC 5389 §15.2) so NATs rewriting bare addresses in
/// payloads leave them alone. Self-inverse: the same call encodes and decodes.
fn xor_addr(addr: SocketAddr, txid: &[u8; 12]) -> SocketAddr {
    let port = addr.port() ^ (MAGIC_COOKIE >> 16) as u16;
    let ip = match addr.ip() {
        IpAddr::V4(ip) => IpAddr::V4(Ipv4Addr::from(u32::from(ip) ^ MAGIC_COOKIE)),
        IpAddr::V6(ip) => {
            let mut key = [0u8; 16];
            key[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
            key[4..].copy_from_slice(txid);
            IpAddr::V6(Ipv6Addr::from(u128::from(ip) ^ u128::from_be_bytes(key)))
        }
    };
    SocketAddr::new(ip, port)
}

/// Bytes of padding that bring `len` up to a multiple of 4.
fn pad_len(len: usize) -> usize {
    (4 - len % 4) % 4
}

/// Validated header fields plus the attribute area.
struct Header<'a> {
    typ: u16,
    txid: [u8; 12],
    body: &'a [u8],
}

fn parse_header(buf: &[u8]) -> Result<Header<'_>, StunError> {
    let Some((head, body)) = buf.split_first_chunk::<HEADER_LEN>() else {
        return Err(StunError::TooShort { len: buf.len() });
    };
    let [t0, t1, l0, l1, c0, c1, c2, c3, txid @ ..] = *head;
    let typ = u16::from_be_bytes([t0, t1]);
    if typ & 0xC000 != 0 {
        return Err(StunError::NotStun);
    }
    let cookie = u32::from_be_bytes([c0, c1, c2, c3]);
    if cookie != MAGIC_COOKIE {
        return Err(StunError::BadCookie(cookie));
    }
    let len = usize::from(u16::from_be_bytes([l0, l1]));
    if len % 4 != 0 {
        return Err(StunError::UnalignedLength(len));
    }
    if len != body.len() {
        return Err(StunError::LengthMismatch {
            header: len,
            actual: body.len(),
        });
    }
    Ok(Header { typ, txid, body })
}

/// Walks the TLVs of an attribute area, yielding `(offset in message, type, value)`.
/// Stops after the first error.
struct Tlvs<'a> {
    body: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for Tlvs<'a> {
    type Item = Result<(usize, u16, &'a [u8]), StunError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.body.get(self.pos..).filter(|r| !r.is_empty())?;
        let offset = HEADER_LEN + self.pos;
        let overrun = StunError::AttributeOverrun { offset };
        let item = match rest {
            [t0, t1, l0, l1, tail @ ..] => {
                let len = usize::from(u16::from_be_bytes([*l0, *l1]));
                // The padding must be inside the message too.
                match (tail.get(..len), tail.len() >= len + pad_len(len)) {
                    (Some(value), true) => Ok((offset, u16::from_be_bytes([*t0, *t1]), value)),
                    _ => Err(overrun),
                }
            }
            _ => Err(overrun),
        };
        self.pos = match &item {
            Ok((_, _, value)) => self.pos + 4 + value.len() + pad_len(value.len()),
            Err(_) => self.body.len(),
        };
        Some(item)
    }
}

fn tlvs(body: &[u8]) -> Tlvs<'_> {
    Tlvs { body, pos: 0 }
}

/// First attribute of type `typ` in a well-framed message: `(offset, value)`.
fn locate(raw: &[u8], typ: u16) -> Option<(usize, &[u8])> {
    let header = parse_header(raw).ok()?;
    tlvs(header.body)
        .map_while(Result::ok)
        .find(|(_, t, _)| *t == typ)
        .map(|(offset, _, value)| (offset, value))
}

/// `raw[..end]` with the header length rewritten to `end - 20 + trailer`: the input of
/// MESSAGE-INTEGRITY and FINGERPRINT, which count themselves in the length (§15.4, §15.5).
fn adjusted_prefix(raw: &[u8], end: usize, trailer: usize) -> Option<Vec<u8>> {
    let mut prefix = raw.get(..end)?.to_vec();
    let len = u16::try_from(end.checked_sub(HEADER_LEN)? + trailer).ok()?;
    prefix.get_mut(2..4)?.copy_from_slice(&len.to_be_bytes());
    Some(prefix)
}

fn hmac_sha1(key: &[u8], data: &[u8]) -> Option<HmacSha1> {
    // HMAC accepts keys of any length, so this never fails in practice.
    let mut mac = HmacSha1::new_from_slice(key).ok()?;
    mac.update(data);
    Some(mac)
}

fn fingerprint_of(data: &[u8]) -> u32 {
    crc32fast::hash(data) ^ FINGERPRINT_XOR
}

/// Long-term credential key (RFC 5389 §15.4): MD5("username:realm:password"). Inputs are
/// expected to be SASLprep'd already; this module does not implement SASLprep.
pub fn long_term_key(username: &str, realm: &str, password: &str) -> [u8; 16] {
    Md5::digest(format!("{username}:{realm}:{password}")).into()
}

/// Short-term credential key: the password bytes themselves.
pub fn short_term_key(password: &str) -> &[u8] {
    password.as_bytes()
}

/// Cheap demultiplexing test (RFC 5389 §7.3 / RFC 7983): STUN starts with two zero bits
/// and carries the magic cookie. Does not validate the rest.
pub fn is_stun(bytes: &[u8]) -> bool {
    match bytes {
        [t0, _, _, _, c0, c1, c2, c3, ..] if bytes.len() >= HEADER_LEN => {
            t0 & 0xC0 == 0 && u32::from_be_bytes([*c0, *c1, *c2, *c3]) == MAGIC_COOKIE
        }
        _ => false,
    }
}

/// Cheap demultiplexing test for TURN ChannelData: first two bits are `01`.
pub fn is_channel_data(bytes: &[u8]) -> bool {
    matches!(bytes, [first, _, _, _, ..] if first & 0xC0 == 0x40)
}

/// Knobs for [`Message::encode_opts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EncodeOptions<'a> {
    /// Append MESSAGE-INTEGRITY keyed with this (replaces any stored MI and FINGERPRINT).
    pub integrity: Option<&'a [u8]>,
    /// Append FINGERPRINT (replaces any stored one).
    pub fingerprint: bool,
    /// Fill byte for attribute padding. RFC 5389 allows any value; RFC 5769's vectors
    /// use spaces, so reproducing them byte-for-byte needs `b' '`.
    pub pad_byte: u8,
}

/// A STUN message: header fields plus attributes in wire order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub class: Class,
    pub method: Method,
    pub txid: [u8; 12],
    pub attrs: Vec<Attribute>,
}

/// Generates `fn name(&self) -> Option<T>` returning the first attribute of a variant.
macro_rules! getters {
    ($($(#[$doc:meta])* $name:ident: $variant:ident -> $ty:ty = |$v:ident| $conv:expr;)*) => {$(
        $(#[$doc])*
        pub fn $name(&self) -> Option<$ty> {
            self.attrs.iter().find_map(|a| match a {
                Attribute::$variant($v) => Some($conv),
                _ => None,
            })
        }
    )*};
}

impl Message {
    pub fn new(class: Class, method: Method, txid: [u8; 12]) -> Self {
        Message {
            class,
            method,
            txid,
            attrs: Vec::new(),
        }
    }

    /// A response skeleton: same method and transaction id as `self`.
    pub fn reply(&self, class: Class) -> Message {
        Message::new(class, self.method, self.txid)
    }

    pub fn add(&mut self, attr: Attribute) -> &mut Self {
        self.attrs.push(attr);
        self
    }

    /// By-value builder variant of [`Message::add`].
    pub fn with(mut self, attr: Attribute) -> Self {
        self.attrs.push(attr);
        self
    }

    /// Encodes attributes exactly as stored (a stored MI/FINGERPRINT is written verbatim).
    ///
    /// Panics if the attributes exceed the 65535-byte STUN length limit — a caller bug,
    /// since no datagram could carry such a message.
    pub fn encode(&self) -> Vec<u8> {
        self.encode_opts(&EncodeOptions::default())
    }

    /// Encodes and appends a MESSAGE-INTEGRITY computed with `key`.
    pub fn encode_with_integrity(&self, key: &[u8]) -> Vec<u8> {
        self.encode_with(Some(key), false)
    }

    /// Encodes with optional MESSAGE-INTEGRITY and FINGERPRINT, freshly computed.
    pub fn encode_with(&self, integrity: Option<&[u8]>, fingerprint: bool) -> Vec<u8> {
        self.encode_opts(&EncodeOptions {
            integrity,
            fingerprint,
            pad_byte: 0,
        })
    }

    /// Full-control encoder; see [`EncodeOptions`].
    pub fn encode_opts(&self, opts: &EncodeOptions<'_>) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + 64);
        out.extend_from_slice(&message_type(self.class, self.method).to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        out.extend_from_slice(&self.txid);
        let stale = |a: &&Attribute| match a {
            Attribute::MessageIntegrity(_) => opts.integrity.is_some(),
            Attribute::Fingerprint(_) => opts.integrity.is_some() || opts.fingerprint,
            _ => false,
        };
        for attr in self.attrs.iter().filter(|a| !stale(a)) {
            self.put_attr(&mut out, attr, opts.pad_byte);
        }
        if let Some(key) = opts.integrity {
            set_length(&mut out, MI_ATTR_LEN);
            let mac = hmac_sha1(key, &out).map_or([0; 20], |m| m.finalize().into_bytes().into());
            self.put_attr(&mut out, &Attribute::MessageIntegrity(mac), opts.pad_byte);
        }
        if opts.fingerprint {
            set_length(&mut out, FP_ATTR_LEN);
            let crc = fingerprint_of(&out);
            self.put_attr(&mut out, &Attribute::Fingerprint(crc), opts.pad_byte);
        }
        set_length(&mut out, 0);
        out
    }

    fn put_attr(&self, out: &mut Vec<u8>, attr: &Attribute, pad_byte: u8) {
        let start = out.len();
        out.extend_from_slice(&attr.typ().to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        attr.write_value(&self.txid, out);
        let len = out.len() - start - 4;
        let len16 = u16::try_from(len).expect("STUN attribute value exceeds 65535 bytes");
        out[start + 2..start + 4].copy_from_slice(&len16.to_be_bytes());
        out.resize(out.len() + pad_len(len), pad_byte);
    }

    /// Parses one datagram. Attributes after MESSAGE-INTEGRITY (other than FINGERPRINT)
    /// and after FINGERPRINT are dropped, as RFC 5389 §15.4 requires: they are not
    /// authenticated. Their framing is still checked. A malformed known attribute fails
    /// the whole message (a server would answer 400).
    pub fn decode(buf: &[u8]) -> Result<Message, StunError> {
        let header = parse_header(buf)?;
        let (class, method) = split_message_type(header.typ);
        let mut msg = Message::new(class, method, header.txid);
        let (mut seen_mi, mut seen_fp) = (false, false);
        for tlv in tlvs(header.body) {
            let (_, typ, value) = tlv?;
            if seen_fp || (seen_mi && typ != at::FINGERPRINT) {
                continue;
            }
            msg.attrs.push(Attribute::decode(typ, value, &header.txid)?);
            seen_mi |= typ == at::MESSAGE_INTEGRITY;
            seen_fp |= typ == at::FINGERPRINT;
        }
        Ok(msg)
    }

    /// Verifies MESSAGE-INTEGRITY against `raw`, the bytes `self` was decoded from.
    /// False when absent, when `raw` disagrees with `self`, or when the HMAC mismatches.
    pub fn check_integrity(&self, raw: &[u8], key: &[u8]) -> bool {
        let Some((offset, value)) = locate(raw, at::MESSAGE_INTEGRITY) else {
            return false;
        };
        if self.message_integrity().map(|m| &m[..]) != Some(value) {
            return false;
        }
        adjusted_prefix(raw, offset, MI_ATTR_LEN)
            .and_then(|prefix| hmac_sha1(key, &prefix))
            .is_some_and(|mac| mac.verify_slice(value).is_ok())
    }

    /// Verifies a FINGERPRINT that must be the last attribute of `raw`.
    pub fn check_fingerprint(raw: &[u8]) -> bool {
        let Some((offset, value)) = locate(raw, at::FINGERPRINT) else {
            return false;
        };
        let Ok(stored) = <[u8; 4]>::try_from(value) else {
            return false;
        };
        offset + FP_ATTR_LEN == raw.len()
            && adjusted_prefix(raw, offset, FP_ATTR_LEN)
                .is_some_and(|prefix| fingerprint_of(&prefix) == u32::from_be_bytes(stored))
    }

    /// Unknown comprehension-required attribute types, in order, deduplicated: a
    /// non-empty result means a request must be rejected with 420 listing them.
    pub fn unknown_comprehension_required(&self) -> Vec<u16> {
        let mut types: Vec<u16> = Vec::new();
        for attr in &self.attrs {
            if let Attribute::Unknown { typ, .. } = attr {
                if at::is_comprehension_required(*typ) && !types.contains(typ) {
                    types.push(*typ);
                }
            }
        }
        types
    }

    /// First attribute with wire type `typ`.
    pub fn get(&self, typ: u16) -> Option<&Attribute> {
        self.get_all(typ).next()
    }

    /// All attributes with wire type `typ` (e.g. several XOR-PEER-ADDRESS).
    pub fn get_all(&self, typ: u16) -> impl Iterator<Item = &Attribute> {
        self.attrs.iter().filter(move |a| a.typ() == typ)
    }

    pub fn has(&self, typ: u16) -> bool {
        self.get(typ).is_some()
    }

    /// CHANGE-REQUEST flags as `(change_ip, change_port)`.
    pub fn change_request(&self) -> Option<(bool, bool)> {
        self.attrs.iter().find_map(|a| match a {
            Attribute::ChangeRequest {
                change_ip,
                change_port,
            } => Some((*change_ip, *change_port)),
            _ => None,
        })
    }

    getters! {
        mapped_address: MappedAddress -> SocketAddr = |a| *a;
        xor_mapped: XorMappedAddress -> SocketAddr = |a| *a;
        alternate_server: AlternateServer -> SocketAddr = |a| *a;
        response_origin: ResponseOrigin -> SocketAddr = |a| *a;
        other_address: OtherAddress -> SocketAddr = |a| *a;
        xor_peer_address: XorPeerAddress -> SocketAddr = |a| *a;
        xor_relayed_address: XorRelayedAddress -> SocketAddr = |a| *a;
        username: Username -> &str = |s| s.as_str();
        realm: Realm -> &str = |s| s.as_str();
        nonce: Nonce -> &str = |s| s.as_str();
        software: Software -> &str = |s| s.as_str();
        message_integrity: MessageIntegrity -> &[u8; 20] = |m| m;
        fingerprint: Fingerprint -> u32 = |f| *f;
        error_code: ErrorCode -> &ErrorCode = |e| e;
        unknown_attributes: UnknownAttributes -> &[u16] = |t| t.as_slice();
        response_port: ResponsePort -> u16 = |p| *p;
        padding: Padding -> &[u8] = |p| p.as_slice();
        channel_number: ChannelNumber -> u16 = |c| *c;
        lifetime: Lifetime -> u32 = |l| *l;
        data: Data -> &[u8] = |d| d.as_slice();
        even_port: EvenPort -> bool = |r| *r;
        requested_transport: RequestedTransport -> u8 = |p| *p;
        reservation_token: ReservationToken -> [u8; 8] = |t| *t;
        connection_id: ConnectionId -> u32 = |c| *c;
    }
}

/// Sets the header length to the current body plus `trailer` bytes still to come.
fn set_length(buf: &mut [u8], trailer: usize) {
    let len = buf.len() - HEADER_LEN + trailer;
    let len16 = u16::try_from(len).expect("STUN message body exceeds 65535 bytes");
    buf[2..4].copy_from_slice(&len16.to_be_bytes());
}

/// TURN ChannelData (RFC 5766 §11.4): a 4-byte header instead of a STUN message, so
/// relayed application data costs little overhead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelData {
    pub channel: u16,
    pub data: Vec<u8>,
}

impl ChannelData {
    const HEADER: usize = 4;

    /// Encodes without padding, which is fine over UDP.
    ///
    /// Panics if `data` exceeds 65535 bytes (the length field is 16 bits).
    pub fn encode(&self) -> Vec<u8> {
        let len = u16::try_from(self.data.len()).expect("ChannelData payload exceeds 65535 bytes");
        let mut out = Vec::with_capacity(Self::HEADER + self.data.len() + 3);
        out.extend_from_slice(&self.channel.to_be_bytes());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&self.data);
        out
    }

    /// Encodes padded to a multiple of 4, as required over stream transports.
    pub fn encode_padded(&self) -> Vec<u8> {
        let mut out = self.encode();
        out.resize(out.len() + pad_len(self.data.len()), 0);
        out
    }

    /// Parses one datagram; up to 3 trailing padding bytes are accepted and ignored.
    pub fn decode(bytes: &[u8]) -> Result<ChannelData, StunError> {
        let [c0, c1, l0, l1, rest @ ..] = bytes else {
            return Err(StunError::TooShort { len: bytes.len() });
        };
        let channel = u16::from_be_bytes([*c0, *c1]);
        if !CHANNEL_RANGE.contains(&channel) {
            return Err(StunError::BadChannelNumber(channel));
        }
        let len = usize::from(u16::from_be_bytes([*l0, *l1]));
        let mismatch = StunError::LengthMismatch {
            header: len,
            actual: rest.len(),
        };
        match rest.get(..len) {
            Some(data) if rest.len() <= len + pad_len(len) => Ok(ChannelData {
                channel,
                data: data.to_vec(),
            }),
            _ => Err(mismatch),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    const SHORT_TERM_PASSWORD: &str = "VOkJxbRl1RmTxUk/WvJxBt";
    const RFC_TXID: [u8; 12] = [
        0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
    ];

    /// RFC 5769 §2.1 sample request.
    const RFC5769_REQUEST: &str = "
        00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
        80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
        00 24 00 04 6e 00 01 ff
        80 29 00 08 93 2f f9 b1 51 26 3b 36
        00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
        00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
        80 28 00 04 e5 7a 3b cf";

    /// RFC 5769 §2.2 sample IPv4 response.
    const RFC5769_IPV4: &str = "
        01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
        80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
        00 20 00 08 00 01 a1 47 e1 12 a6 43
        00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7
        80 28 00 04 c0 7d 4c 96";

    /// RFC 5769 §2.3 sample IPv6 response.
    const RFC5769_IPV6: &str = "
        01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
        80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
        00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9
        00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41
        80 28 00 04 c8 fb 0b 4c";

    /// RFC 5769 §2.4 sample request with long-term authentication.
    const RFC5769_LONG_TERM: &str = "
        00 01 00 60 21 12 a4 42 78 ad 34 33 c6 ad 72 c0 29 da 41 2e
        00 06 00 12 e3 83 9e e3 83 88 e3 83 aa e3 83 83 e3 82 af e3 82 b9 00 00
        00 15 00 1c 66 2f 2f 34 39 39 6b 39 35 34 64 36 4f 4c 33 34 6f 4c 39 46
                    53 54 76 79 36 34 73 41
        00 14 00 0b 65 78 61 6d 70 6c 65 2e 6f 72 67 00
        00 08 00 14 f6 70 24 65 6d d6 4a 3e 02 b8 e0 71 2e 85 c9 a2 8c a8 96 66";

    /// The vectors pad with spaces, so exact re-encoding needs that fill byte.
    fn reencode_rfc(msg: &Message, key: &[u8]) -> Vec<u8> {
        msg.encode_opts(&EncodeOptions {
            integrity: Some(key),
            fingerprint: true,
            pad_byte: b' ',
        })
    }

    #[test]
    fn rfc5769_sample_request() {
        let raw = hex(RFC5769_REQUEST);
        assert_eq!(raw.len(), 108);
        let key = short_term_key(SHORT_TERM_PASSWORD);
        let msg = Message::decode(&raw).unwrap();
        assert_eq!((msg.class, msg.method), (Class::Request, Method::Binding));
        assert_eq!(msg.txid, RFC_TXID);
        assert_eq!(msg.software(), Some("STUN test client"));
        assert_eq!(msg.username(), Some("evtj:h6vY"));
        // PRIORITY and ICE-CONTROLLED are ICE attributes this codec keeps raw.
        assert_eq!(
            msg.get(0x0024),
            Some(&Attribute::Unknown {
                typ: 0x0024,
                value: vec![0x6e, 0x00, 0x01, 0xff]
            })
        );
        assert_eq!(
            msg.get(0x8029),
            Some(&Attribute::Unknown {
                typ: 0x8029,
                value: hex("93 2f f9 b1 51 26 3b 36")
            })
        );
        assert_eq!(msg.unknown_comprehension_required(), vec![0x0024]);
        assert_eq!(msg.fingerprint(), Some(0xe57a_3bcf));
        assert!(msg.check_integrity(&raw, key));
        assert!(!msg.check_integrity(&raw, b"wrong password"));
        assert!(Message::check_fingerprint(&raw));
        assert_eq!(reencode_rfc(&msg, key), raw);
        // Verbatim re-encoding (stored MI/FINGERPRINT) also reproduces the bytes.
        let verbatim = EncodeOptions {
            pad_byte: b' ',
            ..EncodeOptions::default()
        };
        assert_eq!(msg.encode_opts(&verbatim), raw);
    }

    #[test]
    fn rfc5769_ipv4_response() {
        let raw = hex(RFC5769_IPV4);
        let key = short_term_key(SHORT_TERM_PASSWORD);
        let msg = Message::decode(&raw).unwrap();
        assert_eq!(
            (msg.class, msg.method),
            (Class::SuccessResponse, Method::Binding)
        );
        assert_eq!(msg.txid, RFC_TXID);
        assert_eq!(msg.software(), Some("test vector"));
        assert_eq!(msg.xor_mapped(), Some("192.0.2.1:32853".parse().unwrap()));
        assert!(msg.unknown_comprehension_required().is_empty());
        assert!(msg.check_integrity(&raw, key));
        assert!(Message::check_fingerprint(&raw));
        assert_eq!(reencode_rfc(&msg, key), raw);
    }

    #[test]
    fn rfc5769_ipv6_response() {
        let raw = hex(RFC5769_IPV6);
        let key = short_term_key(SHORT_TERM_PASSWORD);
        let msg = Message::decode(&raw).unwrap();
        assert_eq!(msg.software(), Some("test vector"));
        assert_eq!(
            msg.xor_mapped(),
            Some(
                "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
                    .parse()
                    .unwrap()
            )
        );
        assert!(msg.check_integrity(&raw, key));
        assert!(Message::check_fingerprint(&raw));
        assert_eq!(reencode_rfc(&msg, key), raw);
    }

    #[test]
    fn rfc5769_long_term_request() {
        let raw = hex(RFC5769_LONG_TERM);
        let msg = Message::decode(&raw).unwrap();
        assert_eq!(msg.txid, hex("78 ad 34 33 c6 ad 72 c0 29 da 41 2e")[..]);
        assert_eq!(msg.username(), Some("マトリックス"));
        assert_eq!(msg.nonce(), Some("f//499k954d6OL34oL9FSTvy64sA"));
        assert_eq!(msg.realm(), Some("example.org"));
        // Password after SASLprep, per the RFC 5769 errata.
        let key = long_term_key("マトリックス", "example.org", "TheMatrIX");
        assert!(msg.check_integrity(&raw, &key));
        assert!(!msg.check_integrity(
            &raw,
            &long_term_key("マトリックス", "example.org", "thematrix")
        ));
        assert!(
            !Message::check_fingerprint(&raw),
            "vector has no FINGERPRINT"
        );
        // This vector pads with zeros, so the default encoder reproduces it.
        assert_eq!(msg.encode_with_integrity(&key), raw);
    }

    const ALL_CLASSES: [Class; 4] = [
        Class::Request,
        Class::Indication,
        Class::SuccessResponse,
        Class::ErrorResponse,
    ];
    const ALL_METHODS: [Method; 10] = [
        Method::Binding,
        Method::Allocate,
        Method::Refresh,
        Method::Send,
        Method::Data,
        Method::CreatePermission,
        Method::ChannelBind,
        Method::Connect,
        Method::ConnectionBind,
        Method::ConnectionAttempt,
    ];

    /// Every known type code; anything else decodes as `Attribute::Unknown`.
    const KNOWN_TYPES: [u16; 26] = [
        at::MAPPED_ADDRESS,
        at::CHANGE_REQUEST,
        at::USERNAME,
        at::MESSAGE_INTEGRITY,
        at::ERROR_CODE,
        at::UNKNOWN_ATTRIBUTES,
        at::CHANNEL_NUMBER,
        at::LIFETIME,
        at::XOR_PEER_ADDRESS,
        at::DATA,
        at::REALM,
        at::NONCE,
        at::XOR_RELAYED_ADDRESS,
        at::EVEN_PORT,
        at::REQUESTED_TRANSPORT,
        at::DONT_FRAGMENT,
        at::XOR_MAPPED_ADDRESS,
        at::RESERVATION_TOKEN,
        at::PADDING,
        at::RESPONSE_PORT,
        at::SOFTWARE,
        at::ALTERNATE_SERVER,
        at::FINGERPRINT,
        at::RESPONSE_ORIGIN,
        at::OTHER_ADDRESS,
        at::CONNECTION_ID,
    ];

    /// One of each attribute type (both families for addresses), MI/FINGERPRINT last.
    fn sample_attrs() -> Vec<Attribute> {
        let v4: SocketAddr = "203.0.113.7:3478".parse().unwrap();
        let v6: SocketAddr = "[2001:db8::42]:65535".parse().unwrap();
        vec![
            Attribute::MappedAddress(v4),
            Attribute::MappedAddress(v6),
            Attribute::XorMappedAddress(v4),
            Attribute::XorMappedAddress(v6),
            Attribute::Username("alice".into()),
            Attribute::ErrorCode(ErrorCode::standard(ErrorCode::STALE_NONCE)),
            Attribute::UnknownAttributes(vec![0x0024, 0x7fff, 0x0001]),
            Attribute::Realm("sim.example".into()),
            Attribute::Nonce("n0nce".into()),
            Attribute::Software("jamisim".into()),
            Attribute::AlternateServer(v6),
            Attribute::ChangeRequest {
                change_ip: true,
                change_port: false,
            },
            Attribute::ChangeRequest {
                change_ip: false,
                change_port: true,
            },
            Attribute::ResponseOrigin(v4),
            Attribute::OtherAddress(v6),
            Attribute::ResponsePort(40000),
            Attribute::Padding(vec![0; 7]),
            Attribute::ChannelNumber(0x4001),
            Attribute::Lifetime(600),
            Attribute::XorPeerAddress(v4),
            Attribute::XorPeerAddress(v6),
            Attribute::Data(b"hello".to_vec()),
            Attribute::XorRelayedAddress(v6),
            Attribute::EvenPort(true),
            Attribute::EvenPort(false),
            Attribute::RequestedTransport(TRANSPORT_UDP),
            Attribute::DontFragment,
            Attribute::ReservationToken(*b"tokn1234"),
            Attribute::ConnectionId(0xC0FF_EE01),
            Attribute::RequestedTransport(TRANSPORT_TCP),
            Attribute::Unknown {
                typ: 0x7000,
                value: vec![1, 2, 3],
            },
            Attribute::Unknown {
                typ: 0xC001,
                value: vec![],
            },
            Attribute::MessageIntegrity([0xAB; 20]),
            Attribute::Fingerprint(0xDEAD_BEEF),
        ]
    }

    #[test]
    fn every_attribute_round_trips_alone() {
        for attr in sample_attrs() {
            let msg = Message::new(Class::Request, Method::Binding, [7; 12]).with(attr);
            let bytes = msg.encode();
            assert_eq!(bytes.len() % 4, 0);
            assert_eq!(Message::decode(&bytes).unwrap(), msg, "{msg:?}");
        }
    }

    #[test]
    fn sample_attrs_cover_every_known_type() {
        let attrs = sample_attrs();
        for typ in KNOWN_TYPES {
            assert!(attrs.iter().any(|a| a.typ() == typ), "{typ:#06x}");
        }
    }

    #[test]
    fn every_class_and_method_round_trips_with_all_attributes() {
        for class in ALL_CLASSES {
            for method in ALL_METHODS.into_iter().chain([Method::Other(0xABC)]) {
                let mut msg = Message::new(class, method, *b"jamisim-txid");
                sample_attrs().into_iter().for_each(|a| {
                    msg.add(a);
                });
                let bytes = msg.encode();
                assert!(is_stun(&bytes));
                assert_eq!(Message::decode(&bytes).unwrap(), msg);
                assert_eq!(
                    split_message_type(message_type(class, method)),
                    (class, method)
                );
            }
        }
    }

    #[test]
    fn message_type_bits_match_rfc() {
        let cases = [
            (Class::Request, Method::Binding, 0x0001),
            (Class::SuccessResponse, Method::Binding, 0x0101),
            (Class::ErrorResponse, Method::Binding, 0x0111),
            (Class::Indication, Method::Binding, 0x0011),
            (Class::Request, Method::Allocate, 0x0003),
            (Class::ErrorResponse, Method::Allocate, 0x0113),
            (Class::Request, Method::Refresh, 0x0004),
            (Class::Indication, Method::Send, 0x0016),
            (Class::Indication, Method::Data, 0x0017),
            (Class::Request, Method::CreatePermission, 0x0008),
            (Class::SuccessResponse, Method::ChannelBind, 0x0109),
            (Class::ErrorResponse, Method::Other(0xFFF), 0x3FFF),
        ];
        for (class, method, typ) in cases {
            assert_eq!(message_type(class, method), typ, "{class:?} {method:?}");
            assert_eq!(split_message_type(typ), (class, method));
        }
    }

    #[test]
    fn integrity_and_fingerprint_round_trip() {
        let key = long_term_key("user", "realm", "pass");
        let msg = Message::new(Class::Request, Method::Allocate, [3; 12])
            .with(Attribute::RequestedTransport(TRANSPORT_UDP))
            .with(Attribute::Data(b"odd".to_vec()));
        let raw = msg.encode_with(Some(&key), true);
        let back = Message::decode(&raw).unwrap();
        assert_eq!(back.attrs[..2], msg.attrs[..]);
        assert!(back.message_integrity().is_some() && back.fingerprint().is_some());
        assert!(back.check_integrity(&raw, &key));
        assert!(!back.check_integrity(&raw, b"other"));
        assert!(Message::check_fingerprint(&raw));
        // Re-encoding a decoded message replaces the stale MI/FINGERPRINT.
        assert_eq!(back.encode_with(Some(&key), true), raw);
        // Without MI there is nothing to verify.
        let plain = msg.encode();
        assert!(!Message::decode(&plain)
            .unwrap()
            .check_integrity(&plain, &key));
        assert!(!Message::check_fingerprint(&plain));
    }

    #[test]
    fn long_term_key_is_md5_of_joined_credentials() {
        // MD5("user:realm:pass") computed independently.
        assert_eq!(
            long_term_key("user", "realm", "pass").to_vec(),
            hex("84 93 fb c5 3b a5 82 fb 4c 04 4c 45 6b dc 40 eb")
        );
    }

    #[test]
    fn unknown_comprehension_required_reported_optional_kept() {
        let msg = Message::new(Class::Request, Method::Binding, [1; 12])
            .with(Attribute::Unknown {
                typ: 0x7F00,
                value: vec![9, 9],
            })
            .with(Attribute::Unknown {
                typ: 0xC0DE,
                value: vec![1],
            })
            .with(Attribute::Unknown {
                typ: 0x7F00,
                value: vec![],
            });
        let back = Message::decode(&msg.encode()).unwrap();
        assert_eq!(back.unknown_comprehension_required(), vec![0x7F00]);
        assert_eq!(
            back.get(0xC0DE),
            Some(&Attribute::Unknown {
                typ: 0xC0DE,
                value: vec![1]
            })
        );
        // A server answers 420 listing them.
        let answer = back
            .reply(Class::ErrorResponse)
            .with(Attribute::ErrorCode(ErrorCode::standard(
                ErrorCode::UNKNOWN_ATTRIBUTE,
            )))
            .with(Attribute::UnknownAttributes(
                back.unknown_comprehension_required(),
            ));
        let answer = Message::decode(&answer.encode()).unwrap();
        assert_eq!(answer.error_code().map(|e| e.code), Some(420));
        assert_eq!(answer.unknown_attributes(), Some(&[0x7F00][..]));
        assert_eq!(answer.txid, [1; 12]);
    }

    #[test]
    fn attributes_after_integrity_are_ignored() {
        let key = b"k";
        let signed = Message::new(Class::Request, Method::Refresh, [5; 12])
            .with(Attribute::Lifetime(0))
            .encode_with_integrity(key);
        let mut tampered = signed.clone();
        tampered.extend_from_slice(&[0x00, 0x13, 0x00, 0x04, 1, 2, 3, 4]);
        let body = u16::try_from(tampered.len() - HEADER_LEN).unwrap();
        tampered[2..4].copy_from_slice(&body.to_be_bytes());
        let msg = Message::decode(&tampered).unwrap();
        assert_eq!(msg.data(), None);
        assert_eq!(msg.lifetime(), Some(0));
        assert!(msg.check_integrity(&tampered, key));
    }

    #[test]
    fn getters_find_first_attribute() {
        let msg = Message::new(Class::SuccessResponse, Method::Allocate, [0; 12]);
        let msg = sample_attrs().into_iter().fold(msg, Message::with);
        let v4: SocketAddr = "203.0.113.7:3478".parse().unwrap();
        assert_eq!(msg.mapped_address(), Some(v4));
        assert_eq!(msg.xor_peer_address(), Some(v4));
        assert_eq!(msg.get_all(at::XOR_PEER_ADDRESS).count(), 2);
        assert_eq!(msg.change_request(), Some((true, false)));
        assert_eq!(msg.even_port(), Some(true));
        assert_eq!(msg.requested_transport(), Some(17));
        assert_eq!(msg.reservation_token(), Some(*b"tokn1234"));
        assert_eq!(msg.channel_number(), Some(0x4001));
        assert_eq!(msg.response_port(), Some(40000));
        assert_eq!(msg.padding(), Some(&[0u8; 7][..]));
        assert!(msg.has(at::DONT_FRAGMENT));
        let err = msg.error_code().unwrap();
        assert_eq!(
            (err.class(), err.number(), err.reason.as_str()),
            (4, 38, "Stale Nonce")
        );
    }

    fn header(typ: u16, len: u16) -> Vec<u8> {
        let mut b = typ.to_be_bytes().to_vec();
        b.extend_from_slice(&len.to_be_bytes());
        b.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        b.extend_from_slice(&[0; 12]);
        b
    }

    fn with_attr(typ: u16, value: &[u8]) -> Vec<u8> {
        let padded = value.len() + pad_len(value.len());
        let mut b = header(0x0001, u16::try_from(4 + padded).unwrap());
        b.extend_from_slice(&typ.to_be_bytes());
        b.extend_from_slice(&u16::try_from(value.len()).unwrap().to_be_bytes());
        b.extend_from_slice(value);
        b.resize(HEADER_LEN + 4 + padded, 0);
        b
    }

    #[test]
    fn decode_errors_are_specific() {
        use StunError as E;
        let decode = Message::decode;
        assert_eq!(decode(&[0; 19]), Err(E::TooShort { len: 19 }));
        assert_eq!(decode(&header(0x8001, 0)), Err(E::NotStun));
        let mut bad_cookie = header(1, 0);
        bad_cookie[4] = 0;
        assert_eq!(decode(&bad_cookie), Err(E::BadCookie(0x0012_A442)));
        assert_eq!(decode(&header(1, 2)), Err(E::UnalignedLength(2)));
        assert_eq!(
            decode(&header(1, 4)),
            Err(E::LengthMismatch {
                header: 4,
                actual: 0
            })
        );
        let mut overrun = with_attr(at::DATA, &[1, 2, 3, 4]);
        overrun[23] = 9;
        assert_eq!(decode(&overrun), Err(E::AttributeOverrun { offset: 20 }));
        assert_eq!(
            decode(&with_attr(at::MAPPED_ADDRESS, &[0, 3, 0, 1, 1, 2, 3, 4])),
            Err(E::BadAddressFamily(3))
        );
        assert_eq!(
            decode(&with_attr(at::XOR_MAPPED_ADDRESS, &[0, 1, 0, 1, 1, 2, 3])),
            Err(E::BadAttributeLength { typ: 0x20, len: 7 })
        );
        assert_eq!(
            decode(&with_attr(at::ERROR_CODE, &[0, 0, 2, 0])),
            Err(E::BadErrorCode(200))
        );
        assert_eq!(
            decode(&with_attr(at::ERROR_CODE, &[0, 0, 4, 100])),
            Err(E::BadErrorCode(500))
        );
        assert_eq!(
            decode(&with_attr(at::USERNAME, &[0xff, 0xfe])),
            Err(E::InvalidUtf8(at::USERNAME))
        );
        assert_eq!(
            decode(&with_attr(at::LIFETIME, &[0; 3])),
            Err(E::BadAttributeLength {
                typ: at::LIFETIME,
                len: 3
            })
        );
        assert_eq!(
            decode(&with_attr(at::UNKNOWN_ATTRIBUTES, &[0; 3])),
            Err(E::BadAttributeLength {
                typ: at::UNKNOWN_ATTRIBUTES,
                len: 3
            })
        );
        // RESPONSE-PORT is accepted with and without padding counted in its length.
        for value in [&[0x9c, 0x40][..], &[0x9c, 0x40, 0, 0]] {
            let msg = decode(&with_attr(at::RESPONSE_PORT, value)).unwrap();
            assert_eq!(msg.response_port(), Some(40000));
        }
    }

    #[test]
    fn demux_predicates() {
        let stun = Message::new(Class::Request, Method::Binding, [0; 12]).encode();
        let chan = ChannelData {
            channel: 0x4000,
            data: vec![1],
        }
        .encode();
        assert!(is_stun(&stun) && !is_channel_data(&stun));
        assert!(is_channel_data(&chan) && !is_stun(&chan));
        assert!(!is_stun(&stun[..19]));
        assert!(!is_stun(&[0x80; 20]) && !is_channel_data(&[0x80; 4]));
        assert!(!is_channel_data(&[0x40, 0, 0]));
    }

    #[test]
    fn channel_data_framing() {
        let cd = ChannelData {
            channel: 0x4001,
            data: b"hello".to_vec(),
        };
        let bytes = cd.encode();
        assert_eq!(bytes, hex("40 01 00 05 68 65 6c 6c 6f"));
        assert_eq!(ChannelData::decode(&bytes), Ok(cd.clone()));
        let padded = cd.encode_padded();
        assert_eq!(padded.len(), 12);
        assert_eq!(ChannelData::decode(&padded), Ok(cd));
        let empty = ChannelData {
            channel: 0x7FFF,
            data: vec![],
        };
        assert_eq!(ChannelData::decode(&empty.encode()), Ok(empty));
        assert_eq!(
            ChannelData::decode(&[0x40, 0]),
            Err(StunError::TooShort { len: 2 })
        );
        assert_eq!(
            ChannelData::decode(&[0x3F, 0xFF, 0, 0]),
            Err(StunError::BadChannelNumber(0x3FFF))
        );
        assert_eq!(
            ChannelData::decode(&bytes[..8]),
            Err(StunError::LengthMismatch {
                header: 5,
                actual: 4
            })
        );
        let mut too_long = padded.clone();
        too_long.push(0);
        assert_eq!(
            ChannelData::decode(&too_long),
            Err(StunError::LengthMismatch {
                header: 5,
                actual: 9
            })
        );
    }

    fn arb_addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>())
                .prop_map(|(ip, port)| SocketAddr::new(Ipv4Addr::from(ip).into(), port)),
            (any::<[u8; 16]>(), any::<u16>())
                .prop_map(|(ip, port)| SocketAddr::new(Ipv6Addr::from(ip).into(), port)),
        ]
    }

    /// Any attribute except MI/FINGERPRINT, which only belong at the end.
    fn arb_attr() -> impl Strategy<Value = Attribute> {
        use Attribute as A;
        let text = || "\\PC{0,24}";
        let bytes = || vec(any::<u8>(), 0..48);
        prop_oneof![
            arb_addr().prop_map(A::MappedAddress),
            arb_addr().prop_map(A::XorMappedAddress),
            text().prop_map(A::Username),
            (300u16..700, text()).prop_map(|(c, r)| A::ErrorCode(ErrorCode::new(c, r))),
            vec(any::<u16>(), 0..8).prop_map(A::UnknownAttributes),
            text().prop_map(A::Realm),
            text().prop_map(A::Nonce),
            text().prop_map(A::Software),
            arb_addr().prop_map(A::AlternateServer),
            (any::<bool>(), any::<bool>()).prop_map(|(change_ip, change_port)| {
                A::ChangeRequest {
                    change_ip,
                    change_port,
                }
            }),
            arb_addr().prop_map(A::ResponseOrigin),
            arb_addr().prop_map(A::OtherAddress),
            any::<u16>().prop_map(A::ResponsePort),
            bytes().prop_map(A::Padding),
            any::<u16>().prop_map(A::ChannelNumber),
            any::<u32>().prop_map(A::Lifetime),
            arb_addr().prop_map(A::XorPeerAddress),
            bytes().prop_map(A::Data),
            arb_addr().prop_map(A::XorRelayedAddress),
            any::<bool>().prop_map(A::EvenPort),
            any::<u8>().prop_map(A::RequestedTransport),
            Just(A::DontFragment),
            any::<[u8; 8]>().prop_map(A::ReservationToken),
            any::<u32>().prop_map(A::ConnectionId),
            (
                any::<u16>().prop_filter("unknown type", |t| !KNOWN_TYPES.contains(t)),
                bytes()
            )
                .prop_map(|(typ, value)| A::Unknown { typ, value }),
        ]
    }

    fn arb_message() -> impl Strategy<Value = Message> {
        (
            0u16..0x1000,
            0usize..4,
            any::<[u8; 12]>(),
            vec(arb_attr(), 0..8),
            proptest::option::of(any::<[u8; 20]>()),
            proptest::option::of(any::<u32>()),
        )
            .prop_map(|(method, class, txid, attrs, mi, fp)| {
                let mut msg = Message::new(ALL_CLASSES[class], Method::from_code(method), txid);
                msg.attrs = attrs;
                msg.attrs.extend(mi.map(Attribute::MessageIntegrity));
                msg.attrs.extend(fp.map(Attribute::Fingerprint));
                msg
            })
    }

    /// Raw TLVs with known and unknown types and random values under a valid header, so
    /// the fuzzing reaches every attribute parser rather than dying at the header.
    fn arb_tlv_soup() -> impl Strategy<Value = Vec<u8>> {
        let typ = prop_oneof![proptest::sample::select(KNOWN_TYPES.to_vec()), any::<u16>()];
        (vec((typ, vec(any::<u8>(), 0..24)), 0..6), any::<u16>()).prop_map(|(tlvs, t)| {
            let mut body = Vec::new();
            for (typ, value) in tlvs {
                body.extend_from_slice(&typ.to_be_bytes());
                body.extend_from_slice(&(value.len() as u16).to_be_bytes());
                body.extend_from_slice(&value);
                body.resize(body.len() + pad_len(value.len()), 0);
            }
            let mut msg = header(t & 0x3FFF, body.len() as u16);
            msg.extend_from_slice(&body);
            msg
        })
    }

    fn exercise(bytes: &[u8]) {
        if let Ok(msg) = Message::decode(bytes) {
            let _ = msg.check_integrity(bytes, b"key");
            let _ = msg.unknown_comprehension_required();
        }
        let _ = Message::check_fingerprint(bytes);
        let _ = ChannelData::decode(bytes);
        let _ = (is_stun(bytes), is_channel_data(bytes));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..256)) {
            exercise(&bytes);
        }

        #[test]
        fn arbitrary_bodies_never_panic(t in any::<u16>(), len in any::<u16>(), body in vec(any::<u8>(), 0..128)) {
            let mut bytes = header(t & 0x3FFF, len);
            bytes.extend_from_slice(&body);
            exercise(&bytes);
            let fixed_len = header(t & 0x3FFF, (body.len() & !3) as u16);
            let bytes = [fixed_len, body[..body.len() & !3].to_vec()].concat();
            exercise(&bytes);
        }

        #[test]
        fn tlv_soup_never_panics(bytes in arb_tlv_soup()) {
            exercise(&bytes);
        }

        #[test]
        fn well_formed_messages_round_trip(msg in arb_message()) {
            let bytes = msg.encode();
            prop_assert_eq!(bytes.len() % 4, 0);
            prop_assert!(is_stun(&bytes));
            prop_assert_eq!(Message::decode(&bytes), Ok(msg));
        }

        #[test]
        fn channel_data_round_trips(channel in CHANNEL_RANGE, data in vec(any::<u8>(), 0..64), pad in any::<bool>()) {
            let cd = ChannelData { channel, data };
            let bytes = if pad { cd.encode_padded() } else { cd.encode() };
            prop_assert!(is_channel_data(&bytes));
            prop_assert_eq!(ChannelData::decode(&bytes), Ok(cd));
        }

        #[test]
        fn any_byte_flip_breaks_integrity(
            msg in arb_message(),
            key in vec(any::<u8>(), 0..32),
            at in any::<proptest::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let mut bytes = msg.encode_with_integrity(&key);
            let decoded = Message::decode(&bytes).unwrap();
            prop_assert!(decoded.check_integrity(&bytes, &key));
            let i = at.index(bytes.len());
            bytes[i] ^= flip;
            let verified = Message::decode(&bytes).is_ok_and(|m| m.check_integrity(&bytes, &key));
            prop_assert!(!verified, "flip at {} still verified", i);
        }

        #[test]
        fn any_byte_flip_breaks_fingerprint(
            msg in arb_message(),
            at in any::<proptest::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let mut bytes = msg.encode_with(None, true);
            prop_assert!(Message::check_fingerprint(&bytes));
            let i = at.index(bytes.len());
            bytes[i] ^= flip;
            let valid = Message::decode(&bytes).is_ok() && Message::check_fingerprint(&bytes);
            prop_assert!(!valid, "flip at {} still valid", i);
        }
    }
}
