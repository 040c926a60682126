//! jamid's `contacts` and `incomingTrustRequests` files (node::contacts::store) are read
//! from an account directory that another program (jamid, a sync, an import) may have
//! written: never panic, and what decodes re-encodes to bytes that decode the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use node::contacts::store;

fuzz_target!(
    init: jamisim_fuzz::seeds::write_if_asked("contacts_store"),
    |data: &[u8]| {
        if let Ok(c) = store::decode_contacts(data) {
            assert_eq!(store::decode_contacts(&store::encode_contacts(&c)).ok(), Some(c));
        }
        if let Ok(r) = store::decode_requests(data) {
            assert_eq!(store::decode_requests(&store::encode_requests(&r)).ok(), Some(r));
        }
    }
);
