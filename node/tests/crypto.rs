//! Tests of the OpenDHT crypto module against the spec vectors (TEST-VECTORS B1, C3)
//! and round-trip/robustness properties. Cross-checks with the real
//! python3-opendht live in the conformance crate.

use std::sync::OnceLock;

use node::crypto::{self, CryptoError, PrivateKey, PublicKey};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// One 2048-bit key shared by all tests (generation is the slow part).
fn key() -> &'static PrivateKey {
    static KEY: OnceLock<PrivateKey> = OnceLock::new();
    KEY.get_or_init(|| PrivateKey::generate(2048, &mut rng(1)).expect("keygen"))
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn arr<const N: usize>(s: &str) -> [u8; N] {
    unhex(s).try_into().expect("length")
}

#[test]
fn b1_identity_derived_keys() {
    let short: [u8; 20] = arr("0e441e08abfa43a77e5cd0fcd330317826119432");
    let long: [u8; 32] = arr("3a0e81a9446e3d3f84eed15b472b0a9451b8d3394e17d6205b3bb66818cc18a8");
    let node = crypto::node_id_from_short_id(&short);
    assert_eq!(
        crypto::hex(&node),
        "924efe8c27ddc61f0082179a9e0b05436e8cd2f9"
    );
    let inbox = crypto::inbox_key(&short);
    assert_eq!(
        crypto::hex(&inbox),
        "7a9ef0b247c6b9ade57892ba5156d939b6d146bf"
    );
    let peer = crypto::peer_key_short(&short);
    assert_eq!(
        crypto::hex(&peer),
        "3b95496df531ff1b63c03c0288eea0c7097f66ff"
    );
    let peer_long = crypto::peer_key_long(&long);
    assert_eq!(
        crypto::hex(&peer_long),
        "c2a9edcd3aa3de1b40e83fd0d62f316e33dd79b8"
    );
}

#[test]
fn c3_stretch_key_password_vector() {
    let salt: Vec<u8> = (0u8..16).collect();
    let key = crypto::stretch_key(b"password", &salt).expect("stretch");
    assert_eq!(
        crypto::hex(&key),
        "c0cafece83476c98ed3b3ae166344f76ebea80a0bdaaf0751870651e13d617a3"
    );
}

#[test]
fn c3_stretch_key_pin_vector() {
    use sha1::{Digest, Sha1};
    let key = crypto::stretch_key(b"", b"ABCD12341a2b3c").expect("stretch");
    assert_eq!(
        crypto::hex(&key),
        "7845b47ec903ea487e43387fdb4ed002ef04bc2fc45443f5f29e6f87ae16f6e9"
    );
    assert_eq!(
        crypto::hex(&Sha1::digest(key)),
        "225e1407e20e6bd0c08047d92f17bd5720b450b7"
    );
}

#[test]
fn stretch_key_rejects_short_salt() {
    assert!(matches!(
        crypto::stretch_key(b"pw", b"short"),
        Err(CryptoError::KeyStretch(_))
    ));
}

#[test]
fn private_key_pem_and_der_round_trip() {
    let k = key();
    let pem = k.to_pkcs8_pem().expect("pem");
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    let der = k.to_pkcs8_der().expect("der");
    let from_pem = PrivateKey::from_pem_or_der(pem.as_bytes()).expect("load pem");
    let from_der = PrivateKey::from_pem_or_der(&der).expect("load der");
    assert_eq!(from_pem.public_key(), k.public_key());
    assert_eq!(from_der.public_key(), k.public_key());
    assert_eq!(PrivateKey::from_pkcs8_der(&der).expect("der").size(), 256);
}

#[test]
fn encrypted_private_key_round_trip() {
    let k = key();
    let pem = k
        .to_pkcs8_encrypted_pem("secret", &mut rng(12))
        .expect("encrypt");
    assert!(pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
    let back = PrivateKey::from_pem_or_der_with_password(pem.as_bytes(), "secret").expect("load");
    assert_eq!(back.public_key(), k.public_key());
    assert_eq!(
        PrivateKey::from_pem_or_der_with_password(pem.as_bytes(), "wrong").map(|_| ()),
        Err(CryptoError::WrongPassword)
    );
    // Without a password the encrypted file is not a key; unencrypted keys load either way.
    assert!(PrivateKey::from_pem_or_der(pem.as_bytes()).is_err());
    let plain = k.to_pkcs8_pem().expect("pem");
    let again = PrivateKey::from_pem_or_der_with_password(plain.as_bytes(), "x").expect("plain");
    assert_eq!(again.public_key(), k.public_key());
}

#[test]
fn public_key_pem_der_and_ids() {
    use sha1::{Digest, Sha1};
    use sha2::Sha256;
    let pk = key().public_key();
    let der = pk.spki_der().to_vec();
    let pem = pk.to_pem().expect("pem");
    assert_eq!(PublicKey::from_pem_or_der(pem.as_bytes()).expect("pem"), pk);
    assert_eq!(PublicKey::from_pem_or_der(&der).expect("der"), pk);
    assert_eq!(pk.short_id().to_vec(), Sha1::digest(&der).to_vec());
    assert_eq!(pk.long_id().to_vec(), Sha256::digest(&der).to_vec());
    assert_eq!(pk.node_id(), crypto::node_id_from_short_id(&pk.short_id()));
}

#[test]
fn generate_default_size_constant() {
    assert_eq!(crypto::DEFAULT_RSA_BITS, 4096);
    let k = PrivateKey::generate(1024, &mut rng(7)).expect("keygen");
    assert_eq!(k.size(), 128);
}

#[test]
fn sign_and_verify() {
    let k = key();
    let spki = k.public_key().spki_der().to_vec();
    let sig = crypto::sign(k, b"body bytes").expect("sign");
    assert_eq!(sig.len(), 256);
    assert!(crypto::verify(&spki, b"body bytes", &sig));
    assert!(!crypto::verify(&spki, b"body bytez", &sig));
    let mut bad = sig.clone();
    bad[10] ^= 1;
    assert!(!crypto::verify(&spki, b"body bytes", &bad));
    assert!(!crypto::verify(b"not a key", b"body bytes", &sig));
    assert!(!crypto::verify(&spki, b"body bytes", &sig[1..]));
}

#[test]
fn encrypt_short_form_is_one_block() {
    let k = key();
    let pk = k.public_key();
    for len in [0usize, 1, 100, 245] {
        let msg = vec![0x5a; len];
        let c = crypto::encrypt_for(&pk, &msg, &mut rng(len as u64)).expect("encrypt");
        assert_eq!(c.len(), 256, "len {len}");
        assert_eq!(crypto::decrypt(k, &c).expect("decrypt"), msg);
    }
}

#[test]
fn encrypt_long_form_is_rsa_block_iv_gcm() {
    let k = key();
    let pk = k.public_key();
    for len in [246usize, 1000, 70_000] {
        let msg: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let c = crypto::encrypt_for(&pk, &msg, &mut rng(len as u64)).expect("encrypt");
        assert_eq!(c.len(), 256 + 12 + len + 16, "len {len}");
        assert_eq!(crypto::decrypt(k, &c).expect("decrypt"), msg);
        // The RSA block wraps a 32-byte AES key for a 2048-bit key.
        let first_block = crypto::decrypt(k, &c[..256]).expect("block");
        assert_eq!(first_block.len(), 32);
        assert_eq!(
            crypto::aes_decrypt(&c[256..], &first_block).expect("gcm"),
            msg
        );
    }
}

#[test]
fn decrypt_errors() {
    let k = key();
    assert!(matches!(
        crypto::decrypt(k, &[0u8; 10]),
        Err(CryptoError::CiphertextTooShort { len: 10, min: 256 })
    ));
    let c = crypto::encrypt_for(&k.public_key(), &[1u8; 500], &mut rng(3)).expect("enc");
    let mut tampered = c.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert_eq!(crypto::decrypt(k, &tampered), Err(CryptoError::AesDecrypt));
    let other = PrivateKey::generate(2048, &mut rng(99)).expect("keygen");
    assert!(crypto::decrypt(&other, &c).is_err());
}

#[test]
fn aes_round_trip_all_key_sizes() {
    for klen in [16usize, 24, 32] {
        let key = vec![7u8; klen];
        let c = crypto::aes_encrypt(b"hello", &key, &mut rng(5)).expect("enc");
        assert_eq!(c.len(), 12 + 5 + 16);
        assert_eq!(crypto::aes_decrypt(&c, &key).expect("dec"), b"hello");
        assert_eq!(
            crypto::aes_decrypt(&c, &vec![8u8; klen]),
            Err(CryptoError::AesDecrypt)
        );
    }
    assert_eq!(
        crypto::aes_encrypt(b"x", &[0u8; 20], &mut rng(5)),
        Err(CryptoError::AesKeyLength(20))
    );
    assert_eq!(
        crypto::aes_decrypt(&[0u8; 27], &[0u8; 32]),
        Err(CryptoError::AesDecrypt)
    );
    // Like OpenDHT: `IV ‖ tag` alone (empty plaintext) is refused on decryption.
    let empty = crypto::aes_encrypt(b"", &[9u8; 32], &mut rng(6)).expect("enc");
    assert_eq!(empty.len(), 28);
    assert_eq!(
        crypto::aes_decrypt(&empty, &[9u8; 32]),
        Err(CryptoError::AesDecrypt)
    );
    let one = crypto::aes_encrypt(b"x", &[9u8; 32], &mut rng(6)).expect("enc");
    assert_eq!(crypto::aes_decrypt(&one, &[9u8; 32]).expect("dec"), b"x");
}

#[test]
fn aes_password_round_trip() {
    let c = crypto::aes_encrypt_password(b"archive", b"pw", &mut rng(11)).expect("enc");
    assert_eq!(c.len(), 16 + 12 + 7 + 16);
    assert_eq!(
        crypto::aes_decrypt_password(&c, b"pw").expect("dec"),
        b"archive"
    );
    assert_eq!(
        crypto::aes_decrypt_password(&c, b"wrong"),
        Err(CryptoError::AesDecrypt)
    );
    assert_eq!(
        crypto::aes_decrypt_password(&c[..40], b"pw"),
        Err(CryptoError::AesDecrypt)
    );
}

#[test]
fn certificate_parsing_rejects_garbage() {
    assert!(crypto::certificate_spki_der(b"").is_err());
    assert!(crypto::certificate_spki_der(&[0x30, 0x03, 0x30, 0x01, 0x00]).is_err());
    assert!(crypto::certificate_spki_der(
        b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n"
    )
    .is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn decrypt_random_bytes_never_panics(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = crypto::decrypt(key(), &data);
    }

    #[test]
    fn decrypt_random_block_never_panics(block in proptest::collection::vec(any::<u8>(), 256..=256), tail in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut data = block;
        data.extend(tail);
        // A random block may (rarely) carry valid padding; only the absence of panics matters.
        let _ = crypto::decrypt(key(), &data);
    }

    #[test]
    fn verify_random_bytes_never_panics(spki in proptest::collection::vec(any::<u8>(), 0..400), sig in proptest::collection::vec(any::<u8>(), 0..300)) {
        prop_assert!(!crypto::verify(&spki, b"data", &sig));
        let real = key().public_key();
        prop_assert!(!crypto::verify(real.spki_der(), b"data", &sig));
    }

    #[test]
    fn key_loading_random_bytes_never_panics(data in proptest::collection::vec(any::<u8>(), 0..800)) {
        prop_assert!(PrivateKey::from_pem_or_der(&data).is_err());
        prop_assert!(PrivateKey::from_pem_or_der_with_password(&data, "pw").is_err());
        prop_assert!(PublicKey::from_pem_or_der(&data).is_err());
        let _ = crypto::certificate_spki_der(&data);
        let _ = PublicKey::from_certificate(&data);
    }

    #[test]
    fn key_loading_mutated_der_never_panics(pos in 0usize..1200, byte in any::<u8>()) {
        let mut der = key().to_pkcs8_der().expect("der");
        let i = pos % der.len();
        der[i] = byte;
        let _ = PrivateKey::from_pem_or_der(&der);
        let mut spki = key().public_key().spki_der().to_vec();
        let j = pos % spki.len();
        spki[j] = byte;
        let _ = PublicKey::from_pem_or_der(&spki);
    }

    #[test]
    fn aes_decrypt_random_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200), klen in 0usize..40) {
        let key = vec![1u8; klen];
        prop_assert!(crypto::aes_decrypt(&data, &key).is_err());
    }
}
