//! The account-directory files jamid 13.7 keeps contacts in (`contact_list.cpp`):
//! `contacts` = msgpack `map<InfoHash, Contact>` and `incomingTrustRequests` = msgpack
//! `map<InfoHash, TrustRequest>`, each packed by msgpack-c: InfoHash as bin(20),
//! structs as `MSGPACK_DEFINE_MAP` maps in declaration order, `time_t` as the smallest
//! integer form, the device key as bin(DER SPKI) or nil. Decoding follows msgpack-c's
//! `convert`: fields by name, absent ones default, a wrong type is an error.

use super::contact::{Contact, ContactList, IncomingRequest, MAX_INCOMING_REQUESTS};
use crate::dht::infohash::InfoHash;
use crate::dht::msgpack::{self, Kind, Node, Writer};
use std::collections::BTreeMap;
use std::path::Path;

/// File name of the contacts, in the account directory.
pub const CONTACTS_FILE: &str = "contacts";
/// File name of the incoming trust requests, in the account directory.
pub const REQUESTS_FILE: &str = "incomingTrustRequests";

/// Largest file read back. Each entry is a few hundred bytes plus a vCard of at most
/// 64 KB; anything larger than this is not a file either of us wrote.
pub const MAX_FILE_BYTES: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("malformed msgpack: {0}")]
    Msgpack(#[from] msgpack::MsgpackError),
    #[error("{file}: {what}")]
    Shape { file: &'static str, what: String },
    #[error("{0} is larger than {MAX_FILE_BYTES} bytes")]
    TooLarge(&'static str),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

type Result<T> = std::result::Result<T, StoreError>;

fn shape(file: &'static str, what: impl Into<String>) -> StoreError {
    StoreError::Shape {
        file,
        what: what.into(),
    }
}

/// `contacts` file bytes.
pub fn encode_contacts(contacts: &BTreeMap<InfoHash, Contact>) -> Vec<u8> {
    let mut w = Writer::new();
    w.map_len(contacts.len());
    for (id, c) in contacts {
        w.bin(&id.0);
        w.map_len(5);
        w.str("added").int(c.added);
        w.str("removed").int(c.removed);
        w.str("confirmed").bool(c.confirmed);
        w.str("banned").bool(c.banned);
        w.str("conversationId").str(&c.conversation_id);
    }
    w.into_bytes()
}

/// `incomingTrustRequests` file bytes.
pub fn encode_requests(requests: &BTreeMap<InfoHash, IncomingRequest>) -> Vec<u8> {
    let mut w = Writer::new();
    w.map_len(requests.len());
    for (id, r) in requests {
        w.bin(&id.0);
        w.map_len(4);
        w.str("device");
        match &r.device {
            Some(d) => w.bin(d),
            None => w.nil(),
        };
        w.str("conversationId").str(&r.conversation_id);
        w.str("received").int(r.received);
        w.str("payload").bin(&r.payload);
    }
    w.into_bytes()
}

/// Entries of a top-level `map<InfoHash, T>`.
fn entries<'a>(file: &'static str, n: &'a Node<'a>) -> Result<Vec<(InfoHash, &'a Node<'a>)>> {
    let map = n.as_map().ok_or_else(|| shape(file, "not a map"))?;
    map.iter()
        .map(|(k, v)| {
            let id = k
                .as_bin()
                .and_then(InfoHash::from_slice)
                .ok_or_else(|| shape(file, "key is not a 20-byte bin"))?;
            if v.as_map().is_none() {
                return Err(shape(file, "entry is not a map"));
            }
            Ok((id, v))
        })
        .collect()
}

fn time(file: &'static str, n: Option<&Node<'_>>, field: &str) -> Result<i64> {
    match n {
        None => Ok(0),
        Some(n) => match n.kind {
            Kind::Uint(u) => {
                i64::try_from(u).map_err(|_| shape(file, format!("{field} overflows")))
            }
            Kind::Int(i) => Ok(i),
            _ => Err(shape(file, format!("{field} is not an integer"))),
        },
    }
}

fn flag(file: &'static str, n: Option<&Node<'_>>, field: &str) -> Result<bool> {
    n.map_or(Ok(false), |n| {
        n.as_bool()
            .ok_or_else(|| shape(file, format!("{field} is not a bool")))
    })
}

fn text(file: &'static str, n: Option<&Node<'_>>, field: &str) -> Result<String> {
    n.map_or(Ok(String::new()), |n| {
        n.as_str_bytes()
            .and_then(|b| String::from_utf8(b.to_vec()).ok())
            .ok_or_else(|| shape(file, format!("{field} is not a string")))
    })
}

/// Reads a `contacts` file.
pub fn decode_contacts(bytes: &[u8]) -> Result<BTreeMap<InfoHash, Contact>> {
    const F: &str = CONTACTS_FILE;
    let n = msgpack::parse(bytes)?;
    let mut out = BTreeMap::new();
    for (id, v) in entries(F, &n)? {
        let c = Contact {
            added: time(F, v.get("added"), "added")?,
            removed: time(F, v.get("removed"), "removed")?,
            confirmed: flag(F, v.get("confirmed"), "confirmed")?,
            banned: flag(F, v.get("banned"), "banned")?,
            conversation_id: text(F, v.get("conversationId"), "conversationId")?,
        };
        out.insert(id, c);
    }
    Ok(out)
}

/// Reads an `incomingTrustRequests` file (at most [`MAX_INCOMING_REQUESTS`] kept).
pub fn decode_requests(bytes: &[u8]) -> Result<BTreeMap<InfoHash, IncomingRequest>> {
    const F: &str = REQUESTS_FILE;
    let n = msgpack::parse(bytes)?;
    let mut out = BTreeMap::new();
    for (id, v) in entries(F, &n)?.into_iter().take(MAX_INCOMING_REQUESTS) {
        let device = match v.get("device") {
            None => None,
            Some(d) if d.kind == Kind::Nil => None,
            Some(d) => Some(
                d.as_bin()
                    .ok_or_else(|| shape(F, "device is not a bin"))?
                    .to_vec(),
            ),
        };
        let payload = match v.get("payload") {
            None => Vec::new(),
            Some(p) => {
                crate::dht::value::unpack_blob(p).ok_or_else(|| shape(F, "payload is not a bin"))?
            }
        };
        out.insert(
            id,
            IncomingRequest {
                device,
                conversation_id: text(F, v.get("conversationId"), "conversationId")?,
                received: time(F, v.get("received"), "received")?,
                payload,
            },
        );
    }
    Ok(out)
}

fn read(dir: &Path, name: &'static str) -> Result<Option<Vec<u8>>> {
    let path = dir.join(name);
    match std::fs::metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
        Ok(m) if m.len() > MAX_FILE_BYTES => return Err(StoreError::TooLarge(name)),
        Ok(_) => {}
    }
    Ok(Some(std::fs::read(path)?))
}

/// Loads both files from an account directory; a missing file is an empty list.
pub fn load(dir: &Path) -> Result<ContactList> {
    let contacts = match read(dir, CONTACTS_FILE)? {
        Some(b) => decode_contacts(&b)?,
        None => BTreeMap::new(),
    };
    let requests = match read(dir, REQUESTS_FILE)? {
        Some(b) => decode_requests(&b)?,
        None => BTreeMap::new(),
    };
    Ok(ContactList::from_parts(contacts, requests))
}

/// Writes both files (as jamid does, whole files, truncated first) and clears `dirty`.
pub fn save(dir: &Path, list: &mut ContactList) -> Result<()> {
    std::fs::write(dir.join(CONTACTS_FILE), encode_contacts(list.contacts()))?;
    std::fs::write(dir.join(REQUESTS_FILE), encode_requests(list.requests()))?;
    list.dirty = false;
    Ok(())
}

#[cfg(test)]
mod unit {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> ContactList {
        let mut l = ContactList::new();
        l.add_contact(1_795_541_618, InfoHash([1; 20]), true, "conv");
        l.remove_contact(1_795_541_700, InfoHash([2; 20]), true);
        l.on_trust_request(
            1_795_541_618,
            InfoHash([3; 20]),
            b"spki",
            false,
            "c3",
            b"BEGIN:VCARD".to_vec(),
        );
        l
    }

    #[test]
    fn contacts_file_is_msgpack_c_bytes() {
        let mut one = BTreeMap::new();
        one.insert(
            InfoHash([0xab; 20]),
            Contact {
                added: 1_795_541_618,
                removed: 0,
                confirmed: true,
                banned: false,
                conversation_id: "c".into(),
            },
        );
        let mut want = vec![0x81, 0xc4, 20];
        want.extend([0xab; 20]);
        want.push(0x85);
        want.extend(b"\xa5added\xce");
        want.extend(1_795_541_618u32.to_be_bytes());
        want.extend(b"\xa7removed\x00\xa9confirmed\xc3\xa6banned\xc2\xaeconversationId\xa1c");
        assert_eq!(encode_contacts(&one), want);
        assert_eq!(decode_contacts(&want).unwrap(), one);
    }

    #[test]
    fn requests_file_packs_device_as_bin_or_nil() {
        let l = sample();
        let bytes = encode_requests(l.requests());
        assert_eq!(decode_requests(&bytes).unwrap(), *l.requests());
        let mut none = l.requests().clone();
        none.values_mut().for_each(|r| r.device = None);
        let bytes = encode_requests(&none);
        assert!(
            bytes.windows(7).any(|w| w == b"device\xc0"),
            "null key packs as nil"
        );
        assert_eq!(decode_requests(&bytes).unwrap(), none);
    }

    #[test]
    fn save_then_load_gives_the_same_lists() {
        let dir = std::env::temp_dir().join(format!("jamisim-contacts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut l = sample();
        assert!(l.dirty);
        save(&dir, &mut l).unwrap();
        assert!(!l.dirty);
        let back = load(&dir).unwrap();
        assert_eq!(
            (back.contacts(), back.requests()),
            (l.contacts(), l.requests())
        );
        assert!(
            load(&dir.join("absent")).unwrap().contacts().is_empty(),
            "no files: empty lists"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_fields_default_and_wrong_types_fail() {
        // {bin20: {}} → a default contact, as msgpack-c's convert leaves absent fields.
        let mut b = vec![0x81, 0xc4, 20];
        b.extend([7; 20]);
        b.push(0x80);
        assert_eq!(
            decode_contacts(&b).unwrap()[&InfoHash([7; 20])],
            Contact::default()
        );
        let bad_key = [0x81, 0xc4, 19]
            .iter()
            .copied()
            .chain([7; 19])
            .chain([0x80])
            .collect::<Vec<_>>();
        assert!(matches!(
            decode_contacts(&bad_key),
            Err(StoreError::Shape { .. })
        ));
        let mut bad_flag = b[..b.len() - 1].to_vec();
        bad_flag.extend(b"\x81\xa9confirmed\x01");
        assert!(matches!(
            decode_contacts(&bad_flag),
            Err(StoreError::Shape { .. })
        ));
        assert!(decode_contacts(&[0x90]).is_err());
        assert!(decode_requests(&[0xc1]).is_err());
    }

    proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = decode_contacts(&bytes);
            let _ = decode_requests(&bytes);
        }

        #[test]
        fn mutated_files_never_panic(i in 0usize..400, b in any::<u8>()) {
            let l = sample();
            for mut f in [encode_contacts(l.contacts()), encode_requests(l.requests())] {
                let n = f.len();
                f[i % n] = b;
                let _ = decode_contacts(&f);
                let _ = decode_requests(&f);
            }
        }

        #[test]
        fn contacts_round_trip(entries in proptest::collection::btree_map(any::<[u8; 20]>(), (any::<i64>(), any::<i64>(), any::<bool>(), any::<bool>(), ".{0,8}"), 0..6)) {
            let contacts: BTreeMap<InfoHash, Contact> = entries.into_iter().map(|(k, (a, r, c, b, conv))| {
                (InfoHash(k), Contact { added: a, removed: r, confirmed: c, banned: b, conversation_id: conv })
            }).collect();
            prop_assert_eq!(decode_contacts(&encode_contacts(&contacts)).unwrap(), contacts);
        }
    }
}
