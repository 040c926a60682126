//! The bytes of OpenDHT's peer discovery datagrams: the query (msgpack str `"q"`), the
//! announcement (a msgpack map `{serviceName: payload}`), and the payloads of the two
//! services Jami uses, `"dht"` and `"jami"`.
//!
//! Decoding follows what msgpack-c does for OpenDHT 2.4.12 where that is well defined
//! (str or bin accepted for text, extra array elements and bytes after the document
//! ignored, non-str map keys skipped) and refuses, with an error, what it leaves
//! undefined (a payload array too short leaves msgpack-c's fields uninitialised).

use crate::dht::msgpack::{self, Kind, MsgpackError, Writer};
use crate::dht::InfoHash;
use thiserror::Error;

/// Service name of a DHT node's announcement (`PEER_DISCOVERY_DHT_SERVICE`).
pub const DHT_SERVICE: &str = "dht";
/// Service name of a Jami account's announcement (`PEER_DISCOVERY_JAMI_SERVICE`).
pub const JAMI_SERVICE: &str = "jami";

/// The query datagram: msgpack-c's packing of the C string `"q"` (fixstr of 1).
pub const QUERY: [u8; 2] = [0xa1, b'q'];

/// Services in one announcement we keep. OpenDHT publishes at most one entry per
/// service and Jami uses two; a datagram of 64 KiB could otherwise carry thousands of
/// tiny entries, each one a callback and an allocation.
pub const MAX_SERVICES: usize = 16;

/// Why a discovery datagram or payload was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("not msgpack: {0}")]
    Msgpack(#[from] MsgpackError),
    /// A str other than `"q"` (OpenDHT ignores it).
    #[error("a string that is not the query \"q\"")]
    UnknownString,
    /// Neither a str nor a map (OpenDHT logs a type error).
    #[error("neither a query string nor an announcement map")]
    NotStrOrMap,
    #[error("announcement with more than {MAX_SERVICES} services")]
    TooManyServices,
    #[error("{service} payload: {reason}")]
    Payload {
        service: &'static str,
        reason: &'static str,
    },
}

/// One decoded datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Datagram<'a> {
    /// Someone asks every publisher to send its announcement.
    Query,
    /// `(service name, raw msgpack payload)` in wire order; entries with a non-str key
    /// are left out, as OpenDHT skips them.
    Announcement(Vec<(&'a [u8], &'a [u8])>),
}

/// Decode a datagram received on the discovery port.
pub fn decode(bytes: &[u8]) -> Result<Datagram<'_>, DecodeError> {
    // msgpack-c's `unpack(data, len)` accepts bytes after the first document.
    let (node, _) = msgpack::parse_prefix(bytes)?;
    match node.kind {
        Kind::Str(s) if s == b"q" => Ok(Datagram::Query),
        Kind::Str(_) => Err(DecodeError::UnknownString),
        Kind::Map(entries) => {
            if entries.len() > MAX_SERVICES {
                return Err(DecodeError::TooManyServices);
            }
            Ok(Datagram::Announcement(
                entries
                    .iter()
                    .filter_map(|(k, v)| match k.kind {
                        Kind::Str(name) => Some((name, v.raw)),
                        _ => None,
                    })
                    .collect(),
            ))
        }
        _ => Err(DecodeError::NotStrOrMap),
    }
}

/// Encode an announcement from `(service, packed payload)` pairs, in the order given
/// (OpenDHT's `std::map` order: sorted by name).
pub fn encode_announcement<'a>(
    services: impl ExactSizeIterator<Item = (&'a str, &'a [u8])>,
) -> Vec<u8> {
    let mut w = Writer::new();
    w.map_len(services.len());
    for (name, payload) in services {
        w.str(name).raw(payload);
    }
    w.into_bytes()
}

/// The `"dht"` payload (OpenDHT's `NodeInsertionPack`): who to bootstrap from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DhtPayload {
    pub node_id: InfoHash,
    /// The DHT socket's port for the address family this announcement was sent on.
    pub port: u16,
    pub net_id: u32,
}

fn payload_err(service: &'static str, reason: &'static str) -> DecodeError {
    DecodeError::Payload { service, reason }
}

/// The elements of a payload array, at least `n` of them (msgpack-c leaves the fields
/// of a shorter array uninitialised; more are ignored).
fn elements<'n, 'a>(
    node: &'n msgpack::Node<'a>,
    n: usize,
    service: &'static str,
) -> Result<&'n [msgpack::Node<'a>], DecodeError> {
    let items = node
        .as_array()
        .ok_or_else(|| payload_err(service, "not an array"))?;
    if items.len() < n {
        return Err(payload_err(service, "array too short"));
    }
    Ok(items)
}

/// An `InfoHash` as OpenDHT unpacks it: exactly a bin of 20 bytes.
fn hash(node: &msgpack::Node<'_>, service: &'static str) -> Result<InfoHash, DecodeError> {
    node.as_bin()
        .and_then(|b| <[u8; 20]>::try_from(b).ok())
        .map(InfoHash)
        .ok_or_else(|| payload_err(service, "id is not a bin of 20 bytes"))
}

impl DhtPayload {
    /// `[nodeId bin20, port, netId]` with msgpack-c's smallest integer forms.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.array_len(3)
            .bin(&self.node_id.0)
            .uint(self.port.into())
            .uint(self.net_id.into());
        w.into_bytes()
    }

    pub fn decode(raw: &[u8]) -> Result<DhtPayload, DecodeError> {
        let node = msgpack::parse(raw)?;
        let items = elements(&node, 3, DHT_SERVICE)?;
        let port = items[1]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| payload_err(DHT_SERVICE, "port is not a uint16"))?;
        let net_id = items[2]
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| payload_err(DHT_SERVICE, "net id is not a uint32"))?;
        Ok(DhtPayload {
            node_id: hash(&items[0], DHT_SERVICE)?,
            port,
            net_id,
        })
    }
}

/// The `"jami"` payload (jamid's `AccountPeerInfo`): an account nearby.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JamiPayload {
    pub account_id: InfoHash,
    /// Free text chosen by the user; msgpack-c does not check UTF-8, so neither do we
    /// (invalid sequences become U+FFFD when shown).
    pub display_name: Vec<u8>,
}

impl JamiPayload {
    /// `[accountId bin20, displayName str]`.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.array_len(2)
            .bin(&self.account_id.0)
            .str_bytes(&self.display_name);
        w.into_bytes()
    }

    pub fn decode(raw: &[u8]) -> Result<JamiPayload, DecodeError> {
        let node = msgpack::parse(raw)?;
        let items = elements(&node, 2, JAMI_SERVICE)?;
        let name = items[1]
            .as_str_bytes()
            .ok_or_else(|| payload_err(JAMI_SERVICE, "display name is not a string"))?;
        Ok(JamiPayload {
            account_id: hash(&items[0], JAMI_SERVICE)?,
            display_name: name.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn query_and_payload_bytes_are_msgpack_c_forms() {
        assert_eq!(decode(&QUERY), Ok(Datagram::Query));
        let p = DhtPayload {
            node_id: InfoHash([0xab; 20]),
            port: 4222,
            net_id: 0,
        };
        let mut want = vec![0x93, 0xc4, 20];
        want.extend([0xab; 20]);
        want.extend([0xcd, 0x10, 0x7e, 0x00]);
        assert_eq!(p.encode(), want);
        let small = DhtPayload {
            port: 100,
            net_id: 70000,
            ..p
        };
        assert_eq!(&small.encode()[23..], &[0x64, 0xce, 0, 1, 0x11, 0x70]);
        let j = JamiPayload {
            account_id: InfoHash([1; 20]),
            display_name: b"Ann".to_vec(),
        };
        let mut want = vec![0x92, 0xc4, 20];
        want.extend([1; 20]);
        want.extend(b"\xa3Ann");
        assert_eq!(j.encode(), want);
        let a = encode_announcement([(DHT_SERVICE, &p.encode()[..])].into_iter());
        assert_eq!(&a[..5], b"\x81\xa3dht");
        assert_eq!(
            decode(&a),
            Ok(Datagram::Announcement(vec![(&b"dht"[..], &a[5..])]))
        );
    }

    #[test]
    fn what_opendht_would_not_take_is_refused() {
        assert_eq!(decode(b"\xa1x"), Err(DecodeError::UnknownString));
        assert_eq!(decode(b"\x90"), Err(DecodeError::NotStrOrMap));
        assert!(matches!(decode(b""), Err(DecodeError::Msgpack(_))));
        let p = |b: &[u8]| DhtPayload::decode(b).unwrap_err();
        // Too short, id of 19 bytes, id as str, port > u16, negative net id.
        let id = |n: u8| [&[0xc4, n][..], &vec![0u8; n as usize]].concat();
        for bad in [
            [&[0x92][..], &id(20), &[1]].concat(),
            [&[0x93][..], &id(19), &[1, 0]].concat(),
            [&[0x93, 0xb4][..], &[0u8; 20], &[1, 0]].concat(),
            [&[0x93][..], &id(20), &[0xce, 0, 1, 0, 0, 0]].concat(),
            [&[0x93][..], &id(20), &[1, 0xff]].concat(),
        ] {
            assert!(matches!(p(&bad), DecodeError::Payload { .. }), "{bad:02x?}");
        }
        // An extra element is ignored, as msgpack-c's MSGPACK_DEFINE does.
        let extra = [&[0x94][..], &id(20), &[1, 0, 0xc0]].concat();
        assert_eq!(DhtPayload::decode(&extra).unwrap().port, 1);
        // A display name may be bin (msgpack-c's std::string accepts both).
        let bin_name = [&[0x92][..], &id(20), &[0xc4, 1, b'x']].concat();
        assert_eq!(JamiPayload::decode(&bin_name).unwrap().display_name, b"x");
        // Too many services.
        let mut many = Writer::new();
        many.map_len(MAX_SERVICES + 1);
        for i in 0..=MAX_SERVICES {
            many.uint(i as u64).nil();
        }
        assert_eq!(decode(&many.buf), Err(DecodeError::TooManyServices));
    }

    #[test]
    fn non_str_keys_are_skipped_and_trailing_bytes_ignored() {
        let d = decode(b"\x82\x01\xc0\xa1a\xc3\xff\xff").unwrap();
        assert_eq!(d, Datagram::Announcement(vec![(&b"a"[..], &b"\xc3"[..])]));
        assert_eq!(decode(b"\xa1q\x00"), Ok(Datagram::Query));
    }

    fn dht_payload() -> impl Strategy<Value = DhtPayload> {
        (any::<[u8; 20]>(), any::<u16>(), any::<u32>()).prop_map(|(id, port, net_id)| DhtPayload {
            node_id: InfoHash(id),
            port,
            net_id,
        })
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&bytes);
            let _ = DhtPayload::decode(&bytes);
            let _ = JamiPayload::decode(&bytes);
        }

        #[test]
        fn payloads_round_trip(p in dht_payload(), acc in any::<[u8; 20]>(),
                               name in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(DhtPayload::decode(&p.encode()), Ok(p));
            let j = JamiPayload { account_id: InfoHash(acc), display_name: name };
            prop_assert_eq!(JamiPayload::decode(&j.encode()), Ok(j.clone()));
            let (dp, jp) = (p.encode(), j.encode());
            let a = encode_announcement([(DHT_SERVICE, &dp[..]), (JAMI_SERVICE, &jp[..])].into_iter());
            prop_assert_eq!(
                decode(&a),
                Ok(Datagram::Announcement(vec![(&b"dht"[..], &dp[..]), (&b"jami"[..], &jp[..])]))
            );
        }

        #[test]
        fn mutated_announcements_never_panic(p in dht_payload(), at in any::<usize>(), byte in any::<u8>(), cut in any::<usize>()) {
            let dp = p.encode();
            let mut a = encode_announcement([(DHT_SERVICE, &dp[..])].into_iter());
            let i = at % a.len();
            a[i] = byte;
            a.truncate(cut % (a.len() + 1));
            if let Ok(Datagram::Announcement(services)) = decode(&a) {
                for (_, raw) in services {
                    let _ = DhtPayload::decode(raw);
                    let _ = JamiPayload::decode(raw);
                }
            }
        }
    }
}
