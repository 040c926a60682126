//! Real OpenDHT 2.4.12 datagrams (see tests/data/opendht-2.4.12/README.md):
//! every one must decode and re-encode byte for byte.

use node::dht::value::{Value, ValueData};
use node::dht::wire::{
    decode, encode, pack_values, value_parts_messages, FieldEntry, FieldFilter, Message,
    MessageBody, PartialMessage, Query, ValueSlot,
};
use node::dht::InfoHash;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;

const CAPTURE1: &str = include_str!("data/opendht-2.4.12/capture1.hex");
const CAPTURE2: &str = include_str!("data/opendht-2.4.12/capture2-responses.hex");
const CAPTURE3: &str = include_str!("data/opendht-2.4.12/capture3-responses.hex");
const CAPTURE4: &str = include_str!("data/opendht-2.4.12/capture4-ipv6-responses.hex");
const CAPTURE5: &str = include_str!("data/opendht-2.4.12/capture5-fragmented-responses.hex");
const CAPTURE6: &str = include_str!("data/opendht-2.4.12/capture6-expired-responses.hex");

fn packets(text: &str) -> Vec<Vec<u8>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| hex::decode(l.trim()).expect("hex line"))
        .collect()
}

fn assert_round_trip(text: &str) -> Vec<Message> {
    packets(text)
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let m = decode(p).unwrap_or_else(|e| panic!("packet {i}: {e}"));
            assert_eq!(hex::encode(encode(&m)), hex::encode(p), "packet {i}");
            m
        })
        .collect()
}

#[test]
fn capture1_round_trips_byte_for_byte() {
    let msgs = assert_round_trip(CAPTURE1);
    assert!(msgs.len() > 400);
}

#[test]
fn capture2_round_trips_byte_for_byte() {
    let msgs = assert_round_trip(CAPTURE2);
    let errors: Vec<(u16, &str)> = msgs
        .iter()
        .filter_map(|m| match &m.body {
            MessageBody::Error(e) => Some((e.code, e.msg.as_str())),
            _ => None,
        })
        .collect();
    assert!(errors.contains(&(203, "Get_values with no info_hash")));
    assert!(errors.contains(&(203, "Put with invalid id")));
    assert!(errors.contains(&(401, "Put with wrong token")));
    assert!(errors.contains(&(401, "Listen with wrong token")));
    assert!(errors.contains(&(404, "Access operation for unknown storage")));
    // The refreshed-ids update carries no `h`.
    assert!(msgs.iter().any(|m| matches!(&m.body,
        MessageBody::Update(u) if u.h.is_none() && u.values.is_none() && !u.refreshed.is_empty())));
}

#[test]
fn capture3_round_trips_byte_for_byte() {
    let msgs = assert_round_trip(CAPTURE3);
    // Listener version 0: values arrive as a reply whose tid is the socket
    // id, refreshes as a `u` message.
    let sid = 0x77;
    assert!(msgs.iter().any(|m| m.tid == sid
        && matches!(&m.body,
        MessageBody::Reply(r) if !r.values.is_empty())));
    assert!(msgs.iter().any(|m| m.tid == sid
        && matches!(&m.body,
        MessageBody::LegacyUpdate(u) if u.refreshed == vec![91])));
    assert!(msgs.iter().any(|m| matches!(&m.body,
        MessageBody::Reply(r) if r.fields.as_ref().is_some_and(|f| f.fields == vec![1, 2, 3, 4, 5]))));
}

#[test]
fn capture4_ipv6_round_trips_byte_for_byte() {
    let msgs = assert_round_trip(CAPTURE4);
    let v6: SocketAddr = "[::1]:5001".parse().expect("addr");
    let v4: SocketAddr = "127.0.0.1:5002".parse().expect("addr");
    assert!(msgs.iter().any(|m| matches!(&m.body,
        MessageBody::Reply(r) if r.sa == Some(v6.ip())
            && r.nodes6.iter().any(|n| n.addr == v6 && n.id == InfoHash::get("jamisim-v6-b"))
            && r.nodes4.iter().any(|n| n.addr == v4 && n.id == InfoHash::get("jamisim-v4-c")))));
}

/// dhtnode stored a 3000-byte value we sent in parts and served it back in
/// parts identical to what our own fragmenter produces.
#[test]
fn capture5_fragmentation_matches_opendht() {
    let msgs = assert_round_trip(CAPTURE5);
    let data: Vec<u8> = (0..3000u32).map(|i| (i * 13 % 251) as u8).collect();
    let packed = Value::plain(4242, 0, data).pack();
    assert!(
        msgs.iter()
            .any(|m| m.tid == 0x702
                && matches!(&m.body, MessageBody::Reply(r) if r.vid == Some(4242)))
    );
    let header = msgs
        .iter()
        .find(|m| m.tid == 0x800 && m.values().is_some_and(|v| !v.is_empty()))
        .expect("get reply with sizes");
    let (slots, blobs) = pack_values(vec![packed.clone()]);
    assert_eq!(header.values(), Some(&slots));
    let theirs: Vec<&Message> = msgs
        .iter()
        .filter(|m| matches!(m.body, MessageBody::ValueParts(_)))
        .collect();
    let ours = value_parts_messages(0x800, 0, &blobs);
    assert_eq!(theirs.len(), ours.len());
    for (t, o) in theirs.iter().zip(&ours) {
        assert_eq!(encode(t), encode(o));
    }
    let from: SocketAddr = "127.0.0.1:4222".parse().expect("addr");
    let Ok(mut pm) = PartialMessage::start(header.clone(), from) else {
        panic!("expects parts")
    };
    for p in theirs {
        assert!(pm.append(p, from));
    }
    let full = pm.finish().expect("complete");
    assert_eq!(full.values(), Some(&vec![ValueSlot::Inline(packed)]));
}

/// A listener (version 1) gets the new value, then its expiry: an update
/// with `exp` and no `h`.
#[test]
fn capture6_update_values_then_expired() {
    let msgs = assert_round_trip(CAPTURE6);
    let updates: Vec<_> = msgs
        .iter()
        .filter_map(|m| match &m.body {
            MessageBody::Update(u) => Some(u),
            _ => None,
        })
        .collect();
    assert!(updates.iter().any(|u| u.sid == 0x99
        && u.h == Some(InfoHash::get("jamisim-exp-key"))
        && u.values.as_ref().is_some_and(|v| v.len() == 1)));
    assert!(updates
        .iter()
        .any(|u| u.sid == 0x99 && u.h.is_none() && u.values.is_none() && u.expired == vec![555]));
}

#[test]
fn snapshot_capture6() {
    insta::assert_snapshot!(render_all(CAPTURE6));
}

/// Reassemble every fragmented value of capture 1 (keyed by tid; the
/// capture's addresses are not kept, so one stand-in source is used).
fn reassembled_values() -> Vec<Value> {
    let from: SocketAddr = "127.0.0.1:4222".parse().expect("addr");
    let mut pending: BTreeMap<u32, PartialMessage> = BTreeMap::new();
    let mut values = Vec::new();
    for p in packets(CAPTURE1) {
        let m = decode(&p).expect("decode");
        if let MessageBody::ValueParts(_) = m.body {
            let tid = m.tid;
            let Some(pm) = pending.get_mut(&tid) else {
                continue;
            };
            pm.append(&m, from);
            if pm.is_complete() {
                if let Some(pm) = pending.remove(&tid) {
                    let full = pm.finish().expect("complete");
                    values.extend(inline_values(&full));
                }
            }
            continue;
        }
        match PartialMessage::start(m, from) {
            Ok(pm) => {
                pending.entry(pm.tid()).or_insert(pm);
            }
            Err(m) => values.extend(inline_values(&m)),
        }
    }
    values
}

fn inline_values(m: &Message) -> Vec<Value> {
    m.values()
        .into_iter()
        .flatten()
        .filter_map(|s| match s {
            ValueSlot::Inline(b) => {
                let v = Value::unpack(b).expect("captured value unpacks");
                assert_eq!(v.pack(), *b, "value re-packs byte for byte");
                Some(v)
            }
            ValueSlot::Size(_) => None,
        })
        .collect()
}

#[test]
fn captured_values_cover_all_kinds() {
    let values = reassembled_values();
    let big: Vec<u8> = (0..60 * 1024).map(|i: usize| (i * 7) as u8).collect();
    assert!(values
        .iter()
        .any(|v| v.body().is_some_and(|b| b.data == big)));
    let signed: Vec<_> = values
        .iter()
        .filter_map(|v| match &v.data {
            ValueData::Signed(s) => Some(s),
            _ => None,
        })
        .collect();
    assert!(signed.iter().any(|s| s.body.data == b"signedhello"));
    for s in &signed {
        assert_eq!(s.sig.len(), 512, "RSA-4096 signature");
        assert_eq!(s.owner.first(), Some(&0x30), "DER SPKI");
    }
    // The canonical re-serialisation equals the received body bytes, so
    // signatures can be checked over `signed_body_bytes()`.
    for v in &values {
        if let ValueData::Signed(s) = &v.data {
            assert_eq!(v.signed_body_bytes(), s.received_body.clone());
        }
    }
    assert!(values
        .iter()
        .any(|v| matches!(&v.data, ValueData::Encrypted(c) if c.len() > 512)));
    assert!(values
        .iter()
        .any(|v| v.body().is_some_and(|b| b.type_id == 8)));
}

// ------------------------------------------------------------- snapshots

fn bytes(b: &[u8]) -> String {
    if b.len() <= 32 {
        hex::encode(b)
    } else {
        let digest = InfoHash::get(b).to_string();
        format!(
            "<{}B sha1:{}>",
            b.len(),
            digest.get(..12).unwrap_or_default()
        )
    }
}

fn value(b: &[u8]) -> String {
    match Value::unpack(b) {
        Err(e) => format!("!{e} {}", bytes(b)),
        Ok(v) => {
            let mut s = format!("{{id:{}", v.id);
            match &v.data {
                ValueData::Plain(b) => {
                    let _ = write!(s, " type:{} data:{}", b.type_id, bytes(&b.data));
                    if !b.utype.is_empty() {
                        let _ = write!(s, " utype:{:?}", b.utype);
                    }
                }
                ValueData::Signed(sv) => {
                    let _ = write!(
                        s,
                        " seq:{} owner:{} to:{:?} type:{} data:{} sig:{}",
                        sv.seq,
                        bytes(&sv.owner),
                        sv.to,
                        sv.body.type_id,
                        bytes(&sv.body.data),
                        bytes(&sv.sig)
                    );
                }
                ValueData::Encrypted(c) => {
                    let _ = write!(s, " cypher:{}", bytes(c));
                }
            }
            if v.priority != 0 {
                let _ = write!(s, " p:{}", v.priority);
            }
            s + "}"
        }
    }
}

fn slots(v: &[ValueSlot]) -> String {
    let items: Vec<String> = v
        .iter()
        .map(|s| match s {
            ValueSlot::Inline(b) => value(b),
            ValueSlot::Size(n) => format!("size:{n}"),
        })
        .collect();
    format!("[{}]", items.join(", "))
}

fn query(q: &Option<Query>) -> String {
    match q {
        None => String::new(),
        Some(q) => {
            let w: Vec<String> = q
                .filters
                .iter()
                .map(|f| match f {
                    FieldFilter::Id(x) => format!("id={x}"),
                    FieldFilter::ValueType(x) => format!("type={x}"),
                    FieldFilter::OwnerPk(h) => format!("owner={h}"),
                    FieldFilter::UserType(u) => format!("utype={}", bytes(u)),
                })
                .collect();
            format!(" q:{{s:{:?} w:{:?}}}", q.select, w)
        }
    }
}

fn render(m: &Message) -> String {
    let mut s = format!("t:{:08x}", m.tid);
    if m.network != 0 {
        let _ = write!(s, " n:{}", m.network);
    }
    let body = match &m.body {
        MessageBody::Ping { id } => format!("ping id:{id}"),
        MessageBody::Find(f) => format!("find id:{} target:{} w:{:?}", f.id, f.target, f.want),
        MessageBody::Get(g) => format!(
            "get id:{} h:{}{} w:{:?}",
            g.id,
            g.h,
            query(&g.query),
            g.want
        ),
        MessageBody::Listen(l) => format!(
            "listen id:{} ve:{} h:{} token:{} sid:{}{}",
            l.id,
            l.version,
            l.h,
            bytes(&l.token),
            l.sid,
            query(&l.query)
        ),
        MessageBody::Put(p) => format!(
            "put id:{} h:{} values:{} c:{:?} token:{}",
            p.id,
            p.h,
            slots(&p.values),
            p.created,
            bytes(&p.token)
        ),
        MessageBody::Refresh(r) => format!(
            "refresh id:{} h:{} vid:{} token:{}",
            r.id,
            r.h,
            r.vid,
            bytes(&r.token)
        ),
        MessageBody::Update(u) => format!(
            "update id:{} ve:{} h:{:?} sid:{} values:{} c:{:?} token:{} re:{:?} exp:{:?}",
            u.id,
            u.version,
            u.h,
            u.sid,
            u.values.as_deref().map(slots).unwrap_or_default(),
            u.created,
            bytes(&u.token),
            u.refreshed,
            u.expired
        ),
        MessageBody::Reply(r) => {
            let mut s = format!("reply id:{}", r.id);
            if let Some(v) = r.vid {
                let _ = write!(s, " vid:{v}");
            }
            if let Some(a) = r.sa {
                let _ = write!(s, " sa:{a}");
            }
            for n in r.nodes4.iter().chain(&r.nodes6) {
                let _ = write!(s, " node:{}@{}", n.id, n.addr);
            }
            if !r.token.is_empty() {
                let _ = write!(s, " token:{}", bytes(&r.token));
            }
            if !r.values.is_empty() {
                let _ = write!(s, " values:{}", slots(&r.values));
            }
            if let Some(f) = &r.fields {
                let v: Vec<String> = f
                    .values
                    .iter()
                    .map(|e| match e {
                        FieldEntry::Uint(u) => u.to_string(),
                        FieldEntry::Bin(b) => bytes(b),
                        FieldEntry::Str(b) => format!("{:?}", String::from_utf8_lossy(b)),
                        FieldEntry::Raw(b) => format!("raw:{}", bytes(b)),
                    })
                    .collect();
                let _ = write!(s, " fileds:{{f:{:?} v:[{}]}}", f.fields, v.join(", "));
            }
            s
        }
        MessageBody::LegacyUpdate(u) => format!(
            "legacy-update id:{} token:{} re:{:?} exp:{:?}",
            u.id,
            bytes(&u.token),
            u.refreshed,
            u.expired
        ),
        MessageBody::Error(e) => format!("error {} {:?} id:{:?}", e.code, e.msg, e.id),
        MessageBody::ValueParts(p) => {
            let parts: Vec<String> = p
                .iter()
                .map(|(i, part)| format!("{i}@{}:{}", part.offset, bytes(&part.data)))
                .collect();
            format!("part {}", parts.join(" "))
        }
    };
    s + " " + &body
}

fn render_all(text: &str) -> String {
    packets(text)
        .iter()
        .map(|p| render(&decode(p).expect("decode")) + "\n")
        .collect()
}

#[test]
fn snapshot_capture1() {
    insta::assert_snapshot!(render_all(CAPTURE1));
}

#[test]
fn snapshot_capture2() {
    insta::assert_snapshot!(render_all(CAPTURE2));
}

#[test]
fn snapshot_capture3() {
    insta::assert_snapshot!(render_all(CAPTURE3));
}

#[test]
fn snapshot_capture4() {
    insta::assert_snapshot!(render_all(CAPTURE4));
}

#[test]
fn snapshot_reassembled_values() {
    let text: String = reassembled_values()
        .iter()
        .map(|v| value(&v.pack()) + "\n")
        .collect();
    insta::assert_snapshot!(text);
}
