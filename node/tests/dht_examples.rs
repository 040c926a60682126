//! Byte layouts from the spec sheet (TEST-VECTORS B3) and the example
//! datagrams recorded from jamid 13.7 / OpenDHT 2.4 (peers notes).

use node::dht::value::Value;
use node::dht::wire::{decode, encode, MessageBody, ValueSlot};
use node::dht::InfoHash;
use std::net::{IpAddr, Ipv4Addr};

fn round_trip(hex_packet: &str) -> MessageBody {
    let bytes = hex::decode(hex_packet).expect("hex");
    let m = decode(&bytes).expect("decode");
    assert_eq!(hex::encode(encode(&m)), hex_packet);
    m.body
}

fn h(s: &str) -> InfoHash {
    s.parse().expect("infohash")
}

#[test]
fn notes_ping_pong() {
    let ping = "85a16181a26964c414f687bad2edf59772b315f48b576a826fa1f8d33ba171a470696e67a174ce843d106fa179a171a176a4524e4731";
    let bytes = hex::decode(ping).expect("hex");
    assert_eq!(decode(&bytes).map(|m| m.tid), Ok(2218594415));
    let MessageBody::Ping { id } = round_trip(ping) else {
        panic!("ping")
    };
    assert_eq!(id, h("f687bad2edf59772b315f48b576a826fa1f8d33b"));

    let pong = "84a17282a26964c414aba8a37826d614cc3f8c2f215fbc6d0f70029b6fa27361c4047f000001a174ce843d106fa179a172a176a4524e4731";
    let MessageBody::Reply(r) = round_trip(pong) else {
        panic!("pong")
    };
    assert_eq!(r.sa, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    assert_eq!(r.id, h("aba8a37826d614cc3f8c2f215fbc6d0f70029b6f"));
}

#[test]
fn notes_find_get() {
    let find = "85a16182a26964c414f687bad2edf59772b315f48b576a826fa1f8d33ba6746172676574c4146a8f7f29b42b55fbac24b74f52a18af2bf6ef39ba171a466696e64a174ce68218319a179a171a176a4524e4731";
    let MessageBody::Find(f) = round_trip(find) else {
        panic!("find")
    };
    assert_eq!(f.target, h("6a8f7f29b42b55fbac24b74f52a18af2bf6ef39b"));
    assert_eq!(f.want, None);

    let get = "85a16183a26964c414f687bad2edf59772b315f48b576a826fa1f8d33ba168c4146a8f7f29b42b55fbac24b74f52a18af2bf6ef39ba17182a173920104a17790a171a3676574a174ce68218323a179a171a176a4524e4731";
    let MessageBody::Get(g) = round_trip(get) else {
        panic!("get")
    };
    let q = g.query.expect("query");
    assert_eq!(q.select, vec![1, 4]);
    assert!(q.filters.is_empty());
}

#[test]
fn notes_put_and_ack() {
    let put = "85a16185a26964c414f34ab7dddd109a694fb9434cf8970f186356d1c6a168c4147a757ff91391e3acb230a24c48586e36a232daa1a676616c75657391cd0702a163ce6b05ca6aa5746f6b656ec420a6760783edf324e3b7b5649c6043a481e817118a934cbe4543a40347c41db6c6a171a3707574a174cea8809133a179a171a176a4524e4731";
    let MessageBody::Put(p) = round_trip(put) else {
        panic!("put")
    };
    assert_eq!(p.values, vec![ValueSlot::Size(1794)]);
    assert_eq!(p.created, Some(1795541610));
    assert_eq!(p.token.len(), 32);

    let ack = "84a17283a26964c4146bd060b1ebdc51c49997749c8b707aeac882e6e8a3766964cfb4b6a23a5d3089dda27361c4047f000001a174cea8809133a179a172a176a4524e4731";
    let MessageBody::Reply(r) = round_trip(ack) else {
        panic!("ack")
    };
    assert_eq!(r.vid, Some(13021773744143632861));
}

#[test]
fn notes_value_part_header() {
    // The notes show the part header; the 1280 data bytes are elided there.
    let mut bytes = hex::decode("83a179a170a174ce193baa9ea170810082a16f00a164c50500").expect("hex");
    let value = Value::plain(0xb4b6a23a5d3089dd, 0, vec![0x5a; 1300]).pack();
    let chunk = value.get(..1280).expect("chunk");
    bytes.extend_from_slice(chunk);
    let m = decode(&bytes).expect("decode");
    assert_eq!(m.tid, 0x193baa9e);
    let MessageBody::ValueParts(parts) = &m.body else {
        panic!("part")
    };
    let part = parts.get(&0).expect("index 0");
    assert_eq!((part.offset, part.data.as_slice()), (0, chunk));
    assert_eq!(encode(&m), bytes);
}

#[test]
fn key_order_does_not_matter_when_decoding() {
    use node::dht::msgpack::Writer;
    let canonical = "85a16185a26964c414f34ab7dddd109a694fb9434cf8970f186356d1c6a168c4147a757ff91391e3acb230a24c48586e36a232daa1a676616c75657391cd0702a163ce6b05ca6aa5746f6b656ec420a6760783edf324e3b7b5649c6043a481e817118a934cbe4543a40347c41db6c6a171a3707574a174cea8809133a179a171a176a4524e4731";
    let m = decode(&hex::decode(canonical).expect("hex")).expect("decode");
    let MessageBody::Put(p) = &m.body else {
        panic!("put")
    };
    let mut w = Writer::new();
    w.map_len(5).str("v").str("RNG1").str("y").str("q");
    w.str("t")
        .uint(u64::from(m.tid))
        .str("q")
        .str("put")
        .str("a");
    w.map_len(5).str("token").bin(&p.token);
    w.str("c").int(p.created.unwrap_or_default());
    w.str("values").array_len(1).uint(1794);
    w.str("h").bin(&p.h.0).str("id").bin(&p.id.0);
    let shuffled = decode(&w.buf).expect("decode shuffled");
    assert_eq!(shuffled, m);
    assert_eq!(hex::encode(encode(&shuffled)), canonical);
}
