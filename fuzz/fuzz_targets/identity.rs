//! Certificates, chains and revocation lists come from the DHT (type-8 values, device
//! announcements) and archives from files and PIN links: never panic, and a certificate or
//! CRL that parses re-parses from its own DER to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use node::identity::archive::AccountArchive;
use node::identity::{chain, decode_chain, Certificate, RevocationList};

fuzz_target!(
    init: jamisim_fuzz::seeds::write_if_asked("identity"),
    |data: &[u8]| {
        if let Ok(c) = Certificate::from_pem_or_der(data) {
            let again = Certificate::from_der(c.der()).expect("own DER parses");
            assert_eq!(again.der(), c.der());
            let _ = c.verify_signature_by(&c);
        }
        if let Ok(chain) = decode_chain(data) {
            let _ = node::identity::verify_chain(&chain);
        }
        let _ = chain::from_value_data(data);
        if let Ok(crl) = RevocationList::from_pem_or_der(data) {
            let _ = crl.revoked();
        }
        // The plain form only: the password form runs Argon2i (64 MiB, 16 passes) per input.
        let _ = AccountArchive::decode(data, "");
        if let Ok(a) = AccountArchive::from_json(data) {
            let json = a.to_json().expect("a decoded archive encodes");
            AccountArchive::from_json(json.as_bytes()).expect("its JSON reads back");
        }
    }
);
