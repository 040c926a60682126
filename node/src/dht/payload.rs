//! The typed payloads Jami and OpenDHT put inside a value's `data` (PROTOCOLS §2.7,
//! OpenDHT 2.4.12 `default_types.h`), packed in msgpack-c's order so that signatures over
//! values carrying them match the official programs. Decoders take untrusted bytes and
//! return errors, never panic.

use super::msgpack::{self, Kind, Node, Writer};
use super::value::unpack_blob;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Value type ids of the payloads (§1.12).
pub const DHT_MESSAGE_TYPE: u16 = 1;
pub const IP_SERVICE_ANNOUNCEMENT_TYPE: u16 = 2;
pub const IM_MESSAGE_TYPE: u16 = 3;
pub const TRUST_REQUEST_TYPE: u16 = 4;
pub const ICE_CANDIDATES_TYPE: u16 = 5;

/// Why payload bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("malformed msgpack: {0}")]
    Msgpack(#[from] msgpack::MsgpackError),
    #[error("payload has the wrong shape: {0}")]
    Shape(&'static str),
}

type Result<T> = std::result::Result<T, PayloadError>;

fn text(n: Option<&Node<'_>>, field: &'static str) -> Result<String> {
    let b = n
        .and_then(|n| n.as_str_bytes())
        .ok_or(PayloadError::Shape(field))?;
    String::from_utf8(b.to_vec()).map_err(|_| PayloadError::Shape(field))
}

/// Type 4: a contact (trust) request, sent encrypted to the recipient's inbox.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TrustRequest {
    pub service: String,
    pub conversation_id: String,
    pub payload: Vec<u8>,
    pub confirm: bool,
}

impl TrustRequest {
    pub fn pack(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.map_len(4);
        w.str("service").str(&self.service);
        w.str("conversationId").str(&self.conversation_id);
        w.str("payload").bin(&self.payload);
        w.str("confirm").bool(self.confirm);
        w.into_bytes()
    }

    /// msgpack-c's `MSGPACK_DEFINE_MAP` unpacking: fields by name, absent ones default.
    pub fn unpack(bytes: &[u8]) -> Result<Self> {
        let n = msgpack::parse(bytes)?;
        if n.as_map().is_none() {
            return Err(PayloadError::Shape("trust request is not a map"));
        }
        Ok(TrustRequest {
            service: opt_text(n.get("service"), "service")?,
            conversation_id: opt_text(n.get("conversationId"), "conversationId")?,
            payload: match n.get("payload") {
                None => Vec::new(),
                Some(p) => unpack_blob(p).ok_or(PayloadError::Shape("payload"))?,
            },
            confirm: match n.get("confirm") {
                None => false,
                Some(c) => c.as_bool().ok_or(PayloadError::Shape("confirm"))?,
            },
        })
    }
}

fn opt_text(n: Option<&Node<'_>>, field: &'static str) -> Result<String> {
    match n {
        None => Ok(String::new()),
        some => text(some, field),
    }
}

/// `ImStatus` of an instant message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImStatus {
    #[default]
    None = 0,
    Typing = 1,
    Received = 2,
    Read = 3,
}

/// Type 3: an instant message (signed).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImMessage {
    pub id: u64,
    pub msg: String,
    pub date: i64,
    pub status: ImStatus,
    pub datatype: String,
    pub metadatas: BTreeMap<String, String>,
}

impl ImMessage {
    pub fn pack(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.map_len(6);
        w.str("id").uint(self.id);
        w.str("msg").str(&self.msg);
        w.str("date").int(self.date);
        w.str("status").uint(self.status as u64);
        w.str("datatype").str(&self.datatype);
        w.str("metadatas").map_len(self.metadatas.len());
        for (k, v) in &self.metadatas {
            w.str(k).str(v);
        }
        w.into_bytes()
    }

    pub fn unpack(bytes: &[u8]) -> Result<Self> {
        let n = msgpack::parse(bytes)?;
        if n.as_map().is_none() {
            return Err(PayloadError::Shape("message is not a map"));
        }
        let status = match n.get("status").map(|s| s.as_u64()) {
            None => ImStatus::None,
            Some(Some(0)) => ImStatus::None,
            Some(Some(1)) => ImStatus::Typing,
            Some(Some(2)) => ImStatus::Received,
            Some(Some(3)) => ImStatus::Read,
            Some(_) => return Err(PayloadError::Shape("status")),
        };
        let mut metadatas = BTreeMap::new();
        if let Some(m) = n.get("metadatas") {
            for (k, v) in m.as_map().ok_or(PayloadError::Shape("metadatas"))? {
                metadatas.insert(text(Some(k), "metadatas")?, text(Some(v), "metadatas")?);
            }
        }
        Ok(ImMessage {
            id: match n.get("id") {
                None => 0,
                Some(i) => i.as_u64().ok_or(PayloadError::Shape("id"))?,
            },
            msg: opt_text(n.get("msg"), "msg")?,
            date: match n.get("date") {
                None => 0,
                Some(d) => d.as_i64().ok_or(PayloadError::Shape("date"))?,
            },
            status,
            datatype: opt_text(n.get("datatype"), "datatype")?,
            metadatas,
        })
    }
}

/// Type 5: ICE candidates of the legacy call signalling, `[id, bin]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IceCandidates {
    pub id: u64,
    pub ice_data: Vec<u8>,
}

impl IceCandidates {
    pub fn pack(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.array_len(2).uint(self.id).bin(&self.ice_data);
        w.into_bytes()
    }

    /// Accepts arrays of two or more (extra entries ignored, as OpenDHT does).
    pub fn unpack(bytes: &[u8]) -> Result<Self> {
        let n = msgpack::parse(bytes)?;
        match n.as_array() {
            Some([id, data, ..]) => Ok(IceCandidates {
                id: id.as_u64().ok_or(PayloadError::Shape("id"))?,
                ice_data: unpack_blob(data).ok_or(PayloadError::Shape("ice_data"))?,
            }),
            _ => Err(PayloadError::Shape("ice candidates are not [id, data]")),
        }
    }
}

/// Type 1: a service message, `[service, data]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DhtMessage {
    pub service: String,
    pub data: Vec<u8>,
}

impl DhtMessage {
    pub fn pack(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.array_len(2).str(&self.service).bin(&self.data);
        w.into_bytes()
    }

    pub fn unpack(bytes: &[u8]) -> Result<Self> {
        let n = msgpack::parse(bytes)?;
        match n.as_array() {
            Some([service, data]) => Ok(DhtMessage {
                service: text(Some(service), "service")?,
                data: unpack_blob(data).ok_or(PayloadError::Shape("data"))?,
            }),
            _ => Err(PayloadError::Shape("message is not [service, data]")),
        }
    }
}

/// Type 2: an IP service announcement, a bin holding a Linux `sockaddr_in` (16 bytes)
/// or `sockaddr_in6` (28 bytes): family in host order (x86: little endian), port in
/// network order. Receivers replace the address by the sender's source address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpServiceAnnouncement {
    pub addr: SocketAddr,
}

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

impl IpServiceAnnouncement {
    pub fn pack(&self) -> Vec<u8> {
        let mut raw = Vec::with_capacity(28);
        match self.addr {
            SocketAddr::V4(a) => {
                raw.extend_from_slice(&AF_INET.to_le_bytes());
                raw.extend_from_slice(&a.port().to_be_bytes());
                raw.extend_from_slice(&a.ip().octets());
                raw.extend_from_slice(&[0; 8]);
            }
            SocketAddr::V6(a) => {
                raw.extend_from_slice(&AF_INET6.to_le_bytes());
                raw.extend_from_slice(&a.port().to_be_bytes());
                raw.extend_from_slice(&a.flowinfo().to_be_bytes());
                raw.extend_from_slice(&a.ip().octets());
                raw.extend_from_slice(&a.scope_id().to_le_bytes());
            }
        }
        let mut w = Writer::new();
        w.bin(&raw);
        w.into_bytes()
    }

    pub fn unpack(bytes: &[u8]) -> Result<Self> {
        let n = msgpack::parse(bytes)?;
        let Kind::Bin(raw) = n.kind else {
            return Err(PayloadError::Shape("announcement is not a bin"));
        };
        let u16_at = |i: usize| u16::from_le_bytes([raw[i], raw[i + 1]]);
        let port = |raw: &[u8]| u16::from_be_bytes([raw[2], raw[3]]);
        match (raw.len(), raw.len().checked_sub(2).map(|_| u16_at(0))) {
            (16, Some(AF_INET)) => {
                let ip = Ipv4Addr::new(raw[4], raw[5], raw[6], raw[7]);
                Ok(Self {
                    addr: SocketAddr::new(IpAddr::V4(ip), port(raw)),
                })
            }
            (28, Some(AF_INET6)) => {
                let mut o = [0u8; 16];
                o.copy_from_slice(&raw[8..24]);
                Ok(Self {
                    addr: SocketAddr::new(IpAddr::V6(Ipv6Addr::from(o)), port(raw)),
                })
            }
            _ => Err(PayloadError::Shape("not a sockaddr_in or sockaddr_in6")),
        }
    }

    /// The store policy of type 2: the address becomes the sender's, the port stays.
    pub fn seen_from(&self, source: IpAddr) -> Self {
        Self {
            addr: SocketAddr::new(source, self.addr.port()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn trust_request_bytes_follow_msgpack_c_order() {
        let t = TrustRequest {
            service: "jami".into(),
            conversation_id: "c0".into(),
            payload: vec![1, 2],
            confirm: true,
        };
        assert_eq!(
            hex::encode(t.pack()),
            "84a773657276696365a46a616d69ae636f6e766572736174696f6e4964a26330\
             a77061796c6f6164c4020102a7636f6e6669726dc3"
        );
        assert_eq!(TrustRequest::unpack(&t.pack()).unwrap(), t);
    }

    #[test]
    fn ip_announcement_is_a_linux_sockaddr() {
        let a = IpServiceAnnouncement {
            addr: "192.0.2.7:4222".parse().unwrap(),
        };
        assert_eq!(
            hex::encode(a.pack()),
            "c4100200107ec00002070000000000000000"
        );
        assert_eq!(IpServiceAnnouncement::unpack(&a.pack()).unwrap(), a);
        let seen = a.seen_from("198.51.100.1".parse().unwrap());
        assert_eq!(seen.addr, "198.51.100.1:4222".parse().unwrap());
        let v6 = IpServiceAnnouncement {
            addr: "[2001:db8::1]:80".parse().unwrap(),
        };
        assert_eq!(v6.pack().len(), 2 + 28);
        assert_eq!(IpServiceAnnouncement::unpack(&v6.pack()).unwrap(), v6);
    }

    #[test]
    fn wrong_shapes_are_errors() {
        assert!(TrustRequest::unpack(&[0x90]).is_err());
        assert!(
            ImMessage::unpack(&[0x81, 0xa6, b's', b't', b'a', b't', b'u', b's', 0x09]).is_err()
        );
        assert!(IceCandidates::unpack(&[0x91, 0x01]).is_err());
        assert!(DhtMessage::unpack(&[0x92, 0x01, 0xc4, 0x00]).is_err());
        assert!(IpServiceAnnouncement::unpack(&[0xc4, 0x02, 0x02, 0x00]).is_err());
        assert!(IpServiceAnnouncement::unpack(&[]).is_err());
    }

    proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = TrustRequest::unpack(&bytes);
            let _ = ImMessage::unpack(&bytes);
            let _ = IceCandidates::unpack(&bytes);
            let _ = DhtMessage::unpack(&bytes);
            let _ = IpServiceAnnouncement::unpack(&bytes);
        }

        #[test]
        fn round_trips(
            service in "[a-z]{0,12}", conv in "[0-9a-f]{0,40}",
            payload in proptest::collection::vec(any::<u8>(), 0..300),
            confirm: bool, id: u64, date: i64, status in 0u8..4,
            meta in proptest::collection::btree_map("[a-z]{1,6}", "[ -~]{0,10}", 0..4),
        ) {
            let t = TrustRequest { service: service.clone(), conversation_id: conv.clone(), payload: payload.clone(), confirm };
            prop_assert_eq!(TrustRequest::unpack(&t.pack()).unwrap(), t);
            let status = [ImStatus::None, ImStatus::Typing, ImStatus::Received, ImStatus::Read][status as usize];
            let m = ImMessage { id, msg: conv.clone(), date, status, datatype: service.clone(), metadatas: meta };
            prop_assert_eq!(ImMessage::unpack(&m.pack()).unwrap(), m);
            let i = IceCandidates { id, ice_data: payload.clone() };
            prop_assert_eq!(IceCandidates::unpack(&i.pack()).unwrap(), i);
            let d = DhtMessage { service, data: payload };
            prop_assert_eq!(DhtMessage::unpack(&d.pack()).unwrap(), d);
        }
    }
}
