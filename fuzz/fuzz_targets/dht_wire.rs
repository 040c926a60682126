//! OpenDHT datagram decoder: never panics; what it accepts re-encodes to bytes that decode
//! again to the same message and re-encode to the same bytes (the encoder's output is a
//! fixpoint, as byte-exact compatibility with OpenDHT needs); a header announcing value
//! sizes is completed by the parts our fragmenter makes for those sizes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use node::dht::wire::{
    self, value_parts_messages, Message, MessageBody, PartialMessage, ValueSlot, MAX_VALUE_SIZE,
};
use std::net::SocketAddr;

fuzz_target!(
    init: jamisim_fuzz::seeds::write_if_asked("dht_wire"),
    |data: &[u8]| {
        let Ok(m1) = wire::decode(data) else { return };
        let bytes = wire::encode(&m1);
        let m2 = wire::decode(&bytes).expect("our own encoding decodes");
        assert_eq!(wire::encode(&m2), bytes, "encode is not a fixpoint");
        assert_eq!(m2, as_encoded(m1), "a field did not survive encode → decode");

        reassemble(&m2);
    }
);

/// What `encode` keeps of a decoded message. It never sends `s` (2.4.12 does not), and an
/// update has the two shapes 2.4.12 sends: with values (`id, ve, h, sid, values, c, token`)
/// or without (`id, sid, token, re, exp`); keys the shape lacks are not sent.
fn as_encoded(mut m: Message) -> Message {
    m.is_client = false;
    if let MessageBody::Update(u) = &mut m.body {
        if u.values.is_some() {
            u.h = Some(u.h.unwrap_or_default());
            u.refreshed.clear();
            u.expired.clear();
        } else {
            u.h = None;
            u.version = 0;
            u.created = None;
        }
    }
    m
}

/// Reassembles `m` from parts of made-up bytes for each size it declares and checks the
/// result: accepted sizes become those bytes inline, oversized ones are dropped.
fn reassemble(m: &Message) {
    let from: SocketAddr = "192.0.2.1:4222".parse().expect("addr");
    let Ok(mut partial) = PartialMessage::start(m.clone(), from) else {
        return;
    };
    let slots = m.values().cloned().unwrap_or_default();
    let accepted = |n: &u64| *n <= MAX_VALUE_SIZE + 32;
    let total: u64 = slots
        .iter()
        .filter_map(|s| match s {
            ValueSlot::Size(n) if accepted(n) => Some(*n),
            _ => None,
        })
        .sum();
    if total > 1 << 20 {
        return; // a valid but large header; not worth the memory per execution
    }
    let blobs: Vec<Vec<u8>> = slots
        .iter()
        .enumerate()
        .map(|(i, s)| match s {
            ValueSlot::Size(n) if accepted(n) => vec![i as u8; *n as usize],
            _ => Vec::new(),
        })
        .collect();
    for part in value_parts_messages(m.tid, m.network, &blobs) {
        partial.append(&part, from);
    }
    let full = partial.finish().expect("every declared part arrived");
    let expected: Vec<ValueSlot> = slots
        .into_iter()
        .zip(blobs)
        .filter_map(|(s, blob)| match s {
            ValueSlot::Size(n) if accepted(&n) => Some(ValueSlot::Inline(blob)),
            ValueSlot::Size(_) => None,
            inline => Some(inline),
        })
        .collect();
    assert_eq!(full.values(), Some(&expected));
}
