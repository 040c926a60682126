//! `node::identity` against files the official jamid 13.7 wrote (tests/fixtures/jami-13.7,
//! see its README): archives with and without password, device chains, a receipt.

mod jami_fixtures;
use jami_fixtures::*;

use node::crypto::{self, HashAlg, PrivateKey};
use node::identity::archive::{AccountArchive, ArchiveError};
use node::identity::{
    self, verify_device_chain, CertSigner, DeviceIdentity, KeyAlgorithm, RevocationList,
    SignatureAlgorithm,
};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn hex(b: &[u8]) -> String {
    crypto::hex(b)
}

/// jamid's unencrypted archive: gzip of the JSON; our parse finds the account, its
/// chain, CA key and ethKey, and our re-serialisation is byte-identical.
#[test]
fn plain_archive_reads_and_reencodes_identically() {
    let file = fixture("plain_archive.gz");
    let archive = AccountArchive::decode(&file, "").expect("decode");
    let account = archive.account().expect("account");
    assert_eq!(hex(&account.account_id()), PLAIN_ACCOUNT);
    let [acc, ca] = account.chain() else {
        panic!("account chain has two certificates")
    };
    assert_eq!((acc.name(), ca.name()), (Some("Jami"), Some("Jami CA")));
    assert_eq!(acc.uid(), Some(PLAIN_ACCOUNT));
    assert!(acc.is_ca() && ca.is_ca() && ca.is_self_issued());
    identity::verify_chain(account.chain()).expect("account chain verifies");
    let ca_key = archive.ca_key.as_ref().expect("ringCaKey");
    assert_eq!(ca.public_key(), Some(&ca_key.public_key()));
    assert_eq!(archive.eth_key.len(), 32);
    assert!(archive.crl.is_none() && archive.contacts.is_empty() && archive.config.is_empty());

    // Same JSON text as jamid wrote (keys, order, base64 of the same PEM bytes).
    let mut original = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&file[..]), &mut original)
        .expect("gunzip");
    assert_eq!(archive.to_json().expect("json").as_bytes(), original);
}

/// jamid's password archive decrypts with the password (salt ‖ IV ‖ GCM ‖ tag around
/// zlib data) and refuses others.
#[test]
fn password_archive_decrypts_only_with_its_password() {
    let file = fixture("password_archive.gz");
    let plain = crypto::aes_decrypt_password(&file, PASSWORD.as_bytes()).expect("decrypt");
    assert_eq!(plain[0], 0x78, "zlib stream inside");
    assert_eq!(file.len(), 16 + 12 + plain.len() + 16);
    let archive = AccountArchive::decode(&file, PASSWORD).expect("decode");
    assert_eq!(
        hex(&archive.account().expect("account").account_id()),
        PASSWORD_ACCOUNT
    );
    assert_eq!(
        AccountArchive::decode(&file, "secret PW").err(),
        Some(ArchiveError::Decrypt)
    );
    assert_eq!(
        AccountArchive::decode(&file, "").err(),
        Some(ArchiveError::PasswordRequired)
    );
}

/// jamid's device chain: ids, names, RSA-4096 with SHA-384, a device certificate
/// without extensions, and it links to the archive's account certificate byte for byte.
#[test]
fn device_chain_matches_ids_and_archive() {
    let device = DeviceIdentity::from_pem(
        &fixture("plain_ring_device.key"),
        &fixture("plain_ring_device.crt"),
    )
    .expect("device identity");
    assert_eq!(hex(&device.account_id()), PLAIN_ACCOUNT);
    assert_eq!(hex(&device.short_id()), PLAIN_DEVICE_SHORT);
    assert_eq!(hex(&device.device_id()), PLAIN_DEVICE_ID);
    let cert = device.certificate();
    assert_eq!(cert.name(), Some("Jami device"));
    assert_eq!(cert.uid(), Some(PLAIN_DEVICE_SHORT));
    assert_eq!(cert.issuer_uid(), Some(PLAIN_ACCOUNT));
    assert!(!cert.is_ca() && cert.subject_key_id().is_none());
    for c in device.chain() {
        assert_eq!(c.key_algorithm(), KeyAlgorithm::Rsa { bits: 4096 });
        assert_eq!(
            c.signature_algorithm(),
            SignatureAlgorithm::Rsa(HashAlg::Sha384)
        );
        assert_eq!(c.not_after() - c.not_before(), identity::VALIDITY_SECS);
    }
    let archive = AccountArchive::decode(&fixture("plain_archive.gz"), "").expect("archive");
    assert_eq!(&device.chain()[1..], &archive.account_chain[..]);
    // Our PEM export of the chain equals jamid's file.
    assert_eq!(
        device.chain_pem().as_bytes(),
        &fixture("plain_ring_device.crt")[..]
    );
}

/// A device we certify with the account key from jamid's archive (what linking a new
/// device does) verifies under jamid's CA; revoking jamid's own device with that key
/// yields a CRL that names it and verifies.
#[test]
fn archive_account_issues_and_revokes_devices() {
    let mut rng = ChaCha20Rng::seed_from_u64(50);
    let archive = AccountArchive::decode(&fixture("plain_archive.gz"), "").expect("archive");
    let account = archive.account().expect("account");
    let now = account.certificate().not_before() + 3600;
    let new_device = account.new_device(1024, now, &mut rng).expect("device");
    let info = verify_device_chain(new_device.chain()).expect("valid chain");
    assert_eq!(hex(&info.account_id), PLAIN_ACCOUNT);
    assert_eq!(
        new_device.certificate().signature_algorithm(),
        SignatureAlgorithm::Rsa(HashAlg::Sha384)
    );

    let jamid_device = identity::decode_chain(&fixture("plain_ring_device.crt")).expect("chain");
    let signer = CertSigner::Rsa(account.account_key());
    let crl = RevocationList::sign(signer, account.certificate(), &[], None, now, &mut rng)
        .and_then(|c| {
            c.revoke(
                &jamid_device[0],
                signer,
                account.certificate(),
                now,
                &mut rng,
            )
        })
        .expect("crl");
    crl.verify_signed_by(account.certificate())
        .expect("signed by account");
    assert!(crl.is_revoked(&jamid_device[0]));
    assert!(!crl.is_revoked(new_device.certificate()));
    assert_eq!(crl.issuer_uid().as_deref(), Some(PLAIN_ACCOUNT));
}

/// The receipt jamid stored for its device: account-signed (RSA SHA-512 over the JSON
/// text), naming the account and the device short id of the device chain.
#[test]
fn receipt_is_signed_by_the_account_key() {
    let receipt = fixture("password_receipt.json");
    let signature = fixture("password_receipt.sig");
    let json: serde_json::Value = serde_json::from_slice(&receipt).expect("json");
    assert_eq!(json["id"], PASSWORD_ACCOUNT);
    assert_eq!(json["dev"], PASSWORD_DEVICE_SHORT);
    let chain = identity::decode_chain(&fixture("password_ring_device.crt")).expect("chain");
    let info = verify_device_chain(&chain).expect("device chain");
    assert_eq!(hex(&info.device_short_id), PASSWORD_DEVICE_SHORT);
    let account_key = chain[1].public_key().expect("RSA account key");
    assert!(account_key.verify(&receipt, &signature));
    assert!(!account_key.verify(&receipt[1..], &signature));
}

/// A key from the archive signs exactly as jamid's GnuTLS would verify: our key
/// round-trip through PKCS#8 keeps its ids.
#[test]
fn archive_keys_round_trip_pkcs8() {
    let archive = AccountArchive::decode(&fixture("plain_archive.gz"), "").expect("archive");
    let pem = archive.account_key.to_pkcs8_pem().expect("pem");
    let again = PrivateKey::from_pem_or_der(pem.as_bytes()).expect("reload");
    assert_eq!(hex(&again.public_key().short_id()), PLAIN_ACCOUNT);
}
