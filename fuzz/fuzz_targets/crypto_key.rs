//! Key loaders (PEM or DER, PKCS#8 or PKCS#1, password-protected PKCS#8 in the strict and
//! the GnuTLS form, SPKI public keys as carried in value `owner`): never panic, and an
//! accepted key re-encodes to DER and PEM that load back to the same key and DER.
#![no_main]

use jamisim_fuzz::seeds::KEY_PASSWORD;
use libfuzzer_sys::fuzz_target;
use node::crypto::{PrivateKey, PublicKey};

fuzz_target!(
    init: jamisim_fuzz::seeds::write_if_asked("crypto_key"),
    |data: &[u8]| {
        if let Ok(k) = PrivateKey::from_pem_or_der(data) {
            private_round_trip(&k);
        }
        if let Ok(k) = PrivateKey::from_pem_or_der_with_password(data, KEY_PASSWORD) {
            private_round_trip(&k);
        }
        if let Ok(p) = PublicKey::from_pem_or_der(data) {
            let again = PublicKey::from_spki_der(p.spki_der()).expect("own SPKI loads");
            assert_eq!(again, p);
            let pem = p.to_pem().expect("PEM encodes");
            assert_eq!(PublicKey::from_pem_or_der(pem.as_bytes()).as_ref(), Ok(&p));
        }
    }
);

fn private_round_trip(k: &PrivateKey) {
    let der = k.to_pkcs8_der().expect("PKCS#8 encodes");
    let back = PrivateKey::from_pkcs8_der(&der).expect("own PKCS#8 loads");
    assert_eq!(back.public_key(), k.public_key());
    assert_eq!(back.to_pkcs8_der().as_ref(), Ok(&der));
    let pem = k.to_pkcs8_pem().expect("PEM encodes");
    let from_pem = PrivateKey::from_pem_or_der(pem.as_bytes()).expect("own PEM loads");
    assert_eq!(from_pem.to_pkcs8_der().as_ref(), Ok(&der));
}
