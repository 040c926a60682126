//! OpenDHT value decoder, on bare packed values and on the values inside a datagram (where
//! the node meets them): never panics; an accepted value packs to bytes that unpack to the
//! same value and pack again to the same bytes; a signed value's received body bytes are
//! kept verbatim, and after one canonical re-pack they equal `signed_body_bytes`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use node::dht::msgpack::Writer;
use node::dht::value::{Value, ValueData};
use node::dht::wire::{self, ValueSlot};

fuzz_target!(
    init: jamisim_fuzz::seeds::write_if_asked("dht_value"),
    |data: &[u8]| {
        check(data);
        if let Ok(v) = Value::unpack_dat(7, 3, data) {
            let mut w = Writer::new();
            v.pack_dat(&mut w);
            let again = Value::unpack_dat(7, 3, &w.into_bytes()).expect("own dat unpacks");
            assert_eq!(without_received(again), without_received(v));
        }
        if let Ok(m) = wire::decode(data) {
            for slot in m.values().into_iter().flatten() {
                if let ValueSlot::Inline(b) = slot {
                    check(b);
                }
            }
        }
    }
);

fn check(bytes: &[u8]) {
    let Ok(v1) = Value::unpack(bytes) else { return };
    let _ = (v1.size(), v1.body(), v1.signed_body_bytes());
    let packed = v1.pack();
    let v2 = match Value::unpack(&packed) {
        Ok(v) => v,
        // Like OpenDHT (`isSigned()` is false without a signature), a value with an owner
        // but an empty `sig` is packed without `sig`, which no parser accepts. Harmless: the
        // node forwards the bytes it received and only packs values it signed itself.
        Err(_) if matches!(&v1.data, ValueData::Signed(s) if s.sig.is_empty()) => return,
        Err(e) => panic!("own packing does not unpack: {e}"),
    };
    assert_eq!(v2.pack(), packed, "pack is not a fixpoint");
    if let ValueData::Signed(s) = &v2.data {
        assert_eq!(s.received_body, v2.signed_body_bytes());
    }
    assert_eq!(without_received(v2), without_received(v1));
}

/// The value less the received body bytes (wire form, canonical only after a re-pack).
fn without_received(mut v: Value) -> Value {
    if let ValueData::Signed(s) = &mut v.data {
        s.received_body = None;
    }
    v
}
