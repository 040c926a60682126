//! Decryption of hostile cyphers (encrypted DHT values; AES-GCM payloads): never panics, and
//! encryption round trips. First byte: 0 = RSA/hybrid cypher for the fixed key, 1 = AES-GCM
//! cypher (next byte picks the key), 2 = plaintext to encrypt, decrypt and tamper with.
#![no_main]

use jamisim_fuzz::{aes_key, fixed_key, rng};
use libfuzzer_sys::fuzz_target;
use node::crypto::{aes_decrypt, aes_encrypt};

fuzz_target!(
    init: jamisim_fuzz::seeds::write_if_asked("crypto_decrypt"),
    |data: &[u8]| {
        let Some((&mode, rest)) = data.split_first() else { return };
        let key = fixed_key();
        match mode % 3 {
            0 => {
                if let Ok(plain) = key.decrypt(rest) {
                    let cypher = key.public_key().encrypt(&plain, &mut rng(1)).expect("encrypt");
                    assert_eq!(key.decrypt(&cypher).as_ref(), Ok(&plain));
                }
            }
            1 => {
                let Some((&sel, cypher)) = rest.split_first() else { return };
                let k = aes_key(sel);
                if let Ok(plain) = aes_decrypt(cypher, &k) {
                    let again = aes_encrypt(&plain, &k, &mut rng(2)).expect("encrypt");
                    assert_eq!(aes_decrypt(&again, &k).as_ref(), Ok(&plain));
                }
            }
            _ => {
                let cypher = key.public_key().encrypt(rest, &mut rng(3)).expect("encrypt");
                assert_eq!(key.decrypt(&cypher).as_deref(), Ok(rest));
                // A changed bit in the AES-GCM part (hybrid form) must be caught by the tag.
                if cypher.len() > key.size() {
                    let mut bad = cypher.clone();
                    let i = key.size() + usize::from(mode) % (cypher.len() - key.size());
                    bad[i] ^= 0x01;
                    assert!(key.decrypt(&bad).is_err(), "tampered cypher decrypted");
                }
                for sel in 0..3 {
                    let k = aes_key(sel);
                    let mut c = aes_encrypt(rest, &k, &mut rng(4)).expect("encrypt");
                    match aes_decrypt(&c, &k) {
                        Ok(p) => assert_eq!(p, rest),
                        // OpenDHT refuses an empty plaintext's cypher; so do we.
                        Err(_) => assert!(rest.is_empty()),
                    }
                    let i = usize::from(mode) % c.len();
                    c[i] ^= 0x80;
                    assert!(aes_decrypt(&c, &k).is_err(), "tampered AES-GCM cypher decrypted");
                }
            }
        }
    }
);
