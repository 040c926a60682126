//! Certificate walk that finds the SubjectPublicKeyInfo (certificates arrive as DHT values
//! and in TLS handshakes): never panics; what it returns is one complete DER SEQUENCE, and a
//! DER certificate gives the same key info when wrapped in PEM.
#![no_main]

use libfuzzer_sys::fuzz_target;
use node::crypto::{certificate_spki_der, PublicKey};
use pkcs8::der::pem::LineEnding;

fuzz_target!(
    init: jamisim_fuzz::seeds::write_if_asked("crypto_cert"),
    |data: &[u8]| {
        let _ = PublicKey::from_certificate(data);
        let Ok(spki) = certificate_spki_der(data) else { return };
        assert_eq!(spki.first(), Some(&0x30), "not a SEQUENCE");
        assert_eq!(der_len(&spki), Some(spki.len()), "not exactly one TLV");
        if !data.windows(11).any(|w| w == b"-----BEGIN ") {
            let pem = pkcs8::der::pem::encode_string("CERTIFICATE", LineEnding::LF, data)
                .expect("PEM encodes");
            assert_eq!(certificate_spki_der(pem.as_bytes()).as_ref(), Ok(&spki));
        }
    }
);

/// Total length of the TLV at the start of `b` (definite lengths up to 4 bytes).
fn der_len(b: &[u8]) -> Option<usize> {
    let first = *b.get(1)?;
    if first < 0x80 {
        return Some(2 + usize::from(first));
    }
    let n = usize::from(first & 0x7f);
    let len = b
        .get(2..2 + n)?
        .iter()
        .fold(0usize, |acc, x| (acc << 8) | usize::from(*x));
    Some(2 + n + len)
}
