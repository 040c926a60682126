//! OpenDHT 2.4.12 `Value` msgpack layout (PROTOCOLS §2.1).
//!
//! Packing reproduces msgpack-c's bytes exactly; unpacking follows
//! `Value::msgpack_unpack` (order-independent, first matching key wins).
//! No crypto lives here: signing, verifying and decrypting are done elsewhere
//! with [`Value::signed_body_bytes`], [`SignedValue::sig`] and the cypher.

use super::infohash::InfoHash;
use super::msgpack::{self, Kind, MsgpackError, Node, Writer};
use thiserror::Error;

/// Why a packed value was rejected (OpenDHT throws `msgpack::type_error`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ValueError {
    #[error("malformed msgpack: {0}")]
    Msgpack(#[from] MsgpackError),
    #[error("value is not a map with at least 2 entries")]
    NotAMap,
    #[error("missing field `{0}`")]
    Missing(&'static str),
    #[error("field `{0}` has the wrong type or is out of range")]
    BadField(&'static str),
}

/// The body fields shared by plain and signed values.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Body {
    /// Value type id (`type`, uint16).
    pub type_id: u16,
    /// Payload (`data`), always packed as `bin`.
    pub data: Vec<u8>,
    /// User type (`utype`); omitted from the wire when empty.
    pub utype: String,
}

impl Body {
    /// Text as `dhtnode`'s commands put it: type 0, user type `text/plain` (which
    /// `dhtnode` prints as text).
    pub fn text(s: &str) -> Body {
        Body {
            type_id: 0,
            data: s.as_bytes().to_vec(),
            utype: "text/plain".into(),
        }
    }
}

/// A signed value's body and signature.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SignedValue {
    pub seq: u16,
    /// Owner public key, DER SubjectPublicKeyInfo (kept opaque here).
    pub owner: Vec<u8>,
    /// Recipient short id; `None` is also what a zero `to` decodes to.
    pub to: Option<InfoHash>,
    pub body: Body,
    /// RSA signature over [`Value::signed_body_bytes`]; omitted when empty
    /// (OpenDHT packs `sig` only for signed values).
    pub sig: Vec<u8>,
    /// The exact `body` bytes as received, when decoded from the wire.
    pub received_body: Option<Vec<u8>>,
}

/// What `dat` holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueData {
    Plain(Body),
    Signed(SignedValue),
    /// `dat` is a bin: the encrypted, packed `{body, sig}` map.
    Encrypted(Vec<u8>),
}

/// An OpenDHT value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    /// Value id; 0 is invalid on the wire (put → error 203).
    pub id: u64,
    pub data: ValueData,
    /// `p`; emitted only when non-zero.
    pub priority: u32,
}

impl Value {
    /// A plain value with no user type.
    pub fn plain(id: u64, type_id: u16, data: impl Into<Vec<u8>>) -> Self {
        Value {
            id,
            data: ValueData::Plain(Body {
                type_id,
                data: data.into(),
                utype: String::new(),
            }),
            priority: 0,
        }
    }

    /// msgpack-c bytes of the whole value: `{id, dat[, p]}`.
    pub fn pack(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.map_len(2 + usize::from(self.priority != 0));
        w.str("id").uint(self.id);
        w.str("dat");
        self.pack_dat(&mut w);
        if self.priority != 0 {
            w.str("p").uint(u64::from(self.priority));
        }
        w.into_bytes()
    }

    /// msgpack-c bytes of `dat` (what encryption covers for a signed value).
    pub fn pack_dat(&self, w: &mut Writer) {
        match &self.data {
            ValueData::Encrypted(c) => {
                w.bin(c);
            }
            ValueData::Plain(b) => {
                w.map_len(1).str("body");
                pack_body(w, None, b);
            }
            ValueData::Signed(s) => {
                w.map_len(1 + usize::from(!s.sig.is_empty())).str("body");
                pack_body(w, Some(s), &s.body);
                if !s.sig.is_empty() {
                    w.str("sig").bin(&s.sig);
                }
            }
        }
    }

    /// The bytes OpenDHT signs and verifies: the canonical re-serialisation of
    /// `body`. `None` for encrypted values (decrypt first).
    pub fn signed_body_bytes(&self) -> Option<Vec<u8>> {
        let mut w = Writer::new();
        match &self.data {
            ValueData::Encrypted(_) => return None,
            ValueData::Plain(b) => pack_body(&mut w, None, b),
            ValueData::Signed(s) => pack_body(&mut w, Some(s), &s.body),
        }
        Some(w.into_bytes())
    }

    /// Unpack a value from its packed bytes. Bytes after the first msgpack
    /// document are ignored, as msgpack-c does (a reassembled value may be
    /// longer than its declared size).
    pub fn unpack(bytes: &[u8]) -> Result<Self, ValueError> {
        Self::from_node(&msgpack::parse_prefix(bytes)?.0)
    }

    /// Unpack `dat` alone (e.g. a decrypted cypher), keeping id and priority.
    pub fn unpack_dat(id: u64, priority: u32, bytes: &[u8]) -> Result<Self, ValueError> {
        let node = msgpack::parse(bytes)?;
        Ok(Value {
            id,
            data: dat_from_node(&node)?,
            priority,
        })
    }

    /// Unpack from an already-parsed node.
    pub fn from_node(n: &Node<'_>) -> Result<Self, ValueError> {
        match n.as_map() {
            Some(m) if m.len() >= 2 => {}
            _ => return Err(ValueError::NotAMap),
        }
        let id = n
            .get("id")
            .ok_or(ValueError::Missing("id"))?
            .as_u64()
            .ok_or(ValueError::BadField("id"))?;
        let data = dat_from_node(n.get("dat").ok_or(ValueError::Missing("dat"))?)?;
        let priority = match n.get("p") {
            None => 0,
            Some(p) => p
                .as_u64()
                .and_then(|p| u32::try_from(p).ok())
                .ok_or(ValueError::BadField("p"))?,
        };
        Ok(Value { id, data, priority })
    }

    /// The body fields, if visible (not encrypted).
    pub fn body(&self) -> Option<&Body> {
        match &self.data {
            ValueData::Plain(b) => Some(b),
            ValueData::Signed(s) => Some(&s.body),
            ValueData::Encrypted(_) => None,
        }
    }

    /// Size as OpenDHT counts it against `MAX_VALUE_SIZE`
    /// (cypher + data + signature + utype).
    pub fn size(&self) -> usize {
        match &self.data {
            ValueData::Encrypted(c) => c.len(),
            ValueData::Plain(b) => b.data.len() + b.utype.len(),
            ValueData::Signed(s) => s.body.data.len() + s.body.utype.len() + s.sig.len(),
        }
    }
}

/// `{seq, owner[, to], type, data[, utype]}` in msgpack-c order.
fn pack_body(w: &mut Writer, signed: Option<&SignedValue>, b: &Body) {
    let to = signed.and_then(|s| s.to.filter(|t| !t.is_zero()));
    let owner_fields = match signed {
        Some(_) => 2 + usize::from(to.is_some()),
        None => 0,
    };
    w.map_len(owner_fields + 2 + usize::from(!b.utype.is_empty()));
    if let Some(s) = signed {
        w.str("seq").uint(u64::from(s.seq));
        w.str("owner").bin(&s.owner);
        if let Some(t) = to {
            w.str("to").bin(&t.0);
        }
    }
    w.str("type").uint(u64::from(b.type_id));
    w.str("data").bin(&b.data);
    if !b.utype.is_empty() {
        w.str("utype").str(&b.utype);
    }
}

fn dat_from_node(dat: &Node<'_>) -> Result<ValueData, ValueError> {
    if let Kind::Bin(c) = dat.kind {
        return Ok(ValueData::Encrypted(c.to_vec()));
    }
    if dat.as_map().is_none() {
        return Err(ValueError::BadField("dat"));
    }
    let rbody = dat.get("body").ok_or(ValueError::Missing("body"))?;
    let data = unpack_blob(rbody.get("data").ok_or(ValueError::Missing("data"))?)
        .ok_or(ValueError::BadField("data"))?;
    let type_id = uint16(
        rbody.get("type").ok_or(ValueError::Missing("type"))?,
        "type",
    )?;
    let utype = match rbody.get("utype") {
        None => String::new(),
        Some(u) => u
            .as_str_bytes()
            .and_then(|s| std::str::from_utf8(s).ok())
            .ok_or(ValueError::BadField("utype"))?
            .to_owned(),
    };
    let body = Body {
        type_id,
        data,
        utype,
    };
    let Some(owner) = rbody.get("owner") else {
        return Ok(ValueData::Plain(body));
    };
    let seq = uint16(rbody.get("seq").ok_or(ValueError::Missing("seq"))?, "seq")?;
    let owner = unpack_blob(owner).ok_or(ValueError::BadField("owner"))?;
    let to = match rbody.get("to") {
        None => None,
        Some(t) => Some(
            t.as_bin()
                .and_then(InfoHash::from_slice)
                .ok_or(ValueError::BadField("to"))?,
        )
        .filter(|t| !t.is_zero()),
    };
    let sig = unpack_blob(dat.get("sig").ok_or(ValueError::Missing("sig"))?)
        .ok_or(ValueError::BadField("sig"))?;
    Ok(ValueData::Signed(SignedValue {
        seq,
        owner,
        to,
        body,
        sig,
        received_body: Some(rbody.raw.to_vec()),
    }))
}

fn uint16(n: &Node<'_>, field: &'static str) -> Result<u16, ValueError> {
    n.as_u64()
        .and_then(|v| u16::try_from(v).ok())
        .ok_or(ValueError::BadField(field))
}

/// OpenDHT `unpackBlob`: bin, str, or an array of byte-sized integers.
pub fn unpack_blob(n: &Node<'_>) -> Option<Vec<u8>> {
    match &n.kind {
        Kind::Bin(b) | Kind::Str(b) => Some(b.to_vec()),
        Kind::Array(items) => items
            .iter()
            .map(|i| i.as_u64().and_then(|v| u8::try_from(v).ok()))
            .collect(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn b3_plain_layouts() {
        let v = Value::plain(1, 0, b"hi".to_vec());
        assert_eq!(
            hex::encode(v.pack()),
            "82a2696401a364617481a4626f647982a47479706500a464617461c4026869"
        );
        let mut v = Value::plain(0x0102030405060708, 0, b"hi".to_vec());
        if let ValueData::Plain(b) = &mut v.data {
            b.utype = "peer_request".into();
        }
        let packed = v.pack();
        assert_eq!(
            hex::encode(&packed),
            "82a26964cf0102030405060708a364617481a4626f647983a47479706500a464617461c4026869a57574797065ac706565725f72657175657374"
        );
        assert_eq!(Value::unpack(&packed), Ok(v));
    }

    #[test]
    fn b3_signed_body() {
        let v = Value {
            id: 7,
            data: ValueData::Signed(SignedValue {
                seq: 0,
                owner: vec![0x30, 0, 0],
                to: None,
                body: Body {
                    type_id: 0,
                    data: b"hi".to_vec(),
                    utype: String::new(),
                },
                sig: vec![1, 2, 3],
                received_body: None,
            }),
            priority: 0,
        };
        let body = v.signed_body_bytes().unwrap_or_default();
        assert_eq!(
            hex::encode(&body),
            "84a373657100a56f776e6572c403300000a47479706500a464617461c4026869"
        );
        let back = Value::unpack(&v.pack()).expect("unpack");
        match &back.data {
            ValueData::Signed(s) => assert_eq!(s.received_body.as_deref(), Some(&body[..])),
            other => panic!("not signed: {other:?}"),
        }
    }

    #[test]
    fn lenient_inputs() {
        // data as str and as array; priority present.
        let mut w = Writer::new();
        w.map_len(3).str("p").uint(3).str("id").uint(9).str("dat");
        w.map_len(1).str("body").map_len(2);
        w.str("data").array_len(2).uint(104).uint(105);
        w.str("type").uint(2);
        let v = Value::unpack(&w.buf).expect("lenient");
        assert_eq!(v.priority, 3);
        assert_eq!(v.body().map(|b| b.data.clone()), Some(b"hi".to_vec()));
    }

    #[test]
    fn rejections() {
        // owner without seq/sig; single-entry map; missing type.
        let mut w = Writer::new();
        w.map_len(2).str("id").uint(1).str("dat");
        w.map_len(1).str("body").map_len(3);
        w.str("owner")
            .bin(b"k")
            .str("type")
            .uint(0)
            .str("data")
            .bin(b"");
        assert_eq!(Value::unpack(&w.buf), Err(ValueError::Missing("seq")));
        assert_eq!(
            Value::unpack(&[0x81, 0xa2, b'i', b'd', 1]),
            Err(ValueError::NotAMap)
        );
    }
}
