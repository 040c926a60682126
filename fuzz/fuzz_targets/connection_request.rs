//! Connection requests arrive from any device that can put on the DHT. The request map
//! must decode without panicking and round-trip; a value carrying one (plain, signed or
//! encrypted to the fixed key) must be refused or accepted without panicking.
#![no_main]

use jamisim_fuzz::fixed_key;
use libfuzzer_sys::fuzz_target;
use node::connect::request::{self, PeerConnectionRequest, PeerRequests};
use node::dht::infohash::InfoHash;
use node::dht::value::Value;

fuzz_target!(
    init: jamisim_fuzz::seeds::write_if_asked("connection_request"),
    |data: &[u8]| {
        if let Ok(r) = PeerConnectionRequest::unpack(data) {
            assert_eq!(PeerConnectionRequest::unpack(&r.pack()).as_ref(), Ok(&r));
        }
        if let Ok(v) = Value::unpack(data) {
            let key = fixed_key();
            let me = InfoHash(key.public_key().short_id());
            let _ = request::from_value(&me, &v);
            let mut book = PeerRequests::new();
            if book.handle_encrypted(0, key, &v).is_ok() {
                assert!(book.handle_encrypted(1, key, &v).is_err(), "replay accepted");
            }
        }
    }
);
