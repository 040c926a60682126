//! `node::presence::Receipt` against the receipt the official jamid 13.7 wrote
//! (tests/fixtures/jami-13.7, see its README): we rebuild it byte for byte from the
//! archive's account key and the device certificate, read it back, and refuse tampered,
//! foreign and mismatched receipts.

mod jami_fixtures;
use jami_fixtures::*;

use std::sync::OnceLock;

use node::crypto::{self, PublicKey};
use node::identity::archive::AccountArchive;
use node::identity::{decode_chain, AccountIdentity, Certificate};
use node::presence::{Receipt, ReceiptError, Rejection};
use proptest::prelude::*;

/// The two jamid accounts with their device certificates (decoded once: the password
/// archive costs an Argon2 run).
struct Accounts {
    password: AccountIdentity,
    /// The eth address of the password archive's `ethKey`, derived here.
    password_eth: String,
    password_device: Certificate,
    plain: AccountIdentity,
    plain_device: Certificate,
}

fn accounts() -> &'static Accounts {
    static A: OnceLock<Accounts> = OnceLock::new();
    A.get_or_init(|| {
        let account = |file, pw| {
            let archive = AccountArchive::decode(&fixture(file), pw).expect("archive");
            let eth = node::identity::eth::eth_address(&archive.eth_key).expect("eth key");
            (archive.account().expect("account"), eth)
        };
        let device = |file| decode_chain(&fixture(file)).expect("chain").remove(0);
        let (password, password_eth) = account("password_archive.gz", PASSWORD);
        Accounts {
            password,
            password_eth,
            password_device: device("password_ring_device.crt"),
            plain: account("plain_archive.gz", "").0,
            plain_device: device("plain_ring_device.crt"),
        }
    })
}

fn key(a: &AccountIdentity) -> PublicKey {
    a.account_key().public_key()
}

/// `json` with one field replaced, signed again by `signer`.
fn edited(json: &[u8], field: &str, value: &str, signer: &AccountIdentity) -> (Vec<u8>, Vec<u8>) {
    let mut root: serde_json::Value = serde_json::from_slice(json).expect("json");
    root[field] = value.into();
    let json = serde_json::to_vec(&root).expect("json");
    let sig = signer.account_key().sign(&json).expect("sign");
    (json, sig)
}

fn field(json: &[u8], name: &str) -> String {
    let root: serde_json::Value = serde_json::from_slice(json).expect("json");
    root[name].as_str().expect("string field").to_owned()
}

/// The account key from the archive, jamid's device certificate and the account's eth
/// address give jamid's receipt and signature exactly (PKCS#1 v1.5 is deterministic).
#[test]
fn our_receipt_is_byte_identical_to_jamids() {
    let a = accounts();
    assert_eq!(crypto::hex(&a.password.account_id()), PASSWORD_ACCOUNT);
    let (json, sig) =
        Receipt::make(&a.password, &a.password_device, &a.password_eth).expect("make");
    assert_eq!(
        String::from_utf8(json).expect("utf-8"),
        String::from_utf8(fixture("password_receipt.json")).expect("utf-8")
    );
    assert_eq!(sig, fixture("password_receipt.sig"));
}

/// jamid's receipt verifies with the account key of its device chain, names the
/// account, device and eth address, carries that device's key, and re-encodes to its
/// own bytes.
#[test]
fn jamids_receipt_verifies_and_reencodes() {
    let json = fixture("password_receipt.json");
    let chain = decode_chain(&fixture("password_ring_device.crt")).expect("chain");
    let account_key = chain[1].public_key().expect("RSA account key");
    let r = Receipt::verify(&json, &fixture("password_receipt.sig"), account_key).expect("valid");
    assert_eq!(r.account.to_string(), PASSWORD_ACCOUNT);
    assert_eq!(r.dev.to_string(), PASSWORD_DEVICE_SHORT);
    assert_eq!(r.eth, accounts().password_eth);
    assert_eq!(r.announce.id, 0);
    assert_eq!(r.announcement.pk.as_deref(), Some(chain[0].spki_der()));
    assert_eq!(r.to_json(), json);
}

/// Any flipped byte, in the text or in the signature, fails the signature check.
#[test]
fn flipped_byte_is_refused() {
    let json = fixture("password_receipt.json");
    let sig = fixture("password_receipt.sig");
    let k = key(&accounts().password);
    for i in (0..json.len()).step_by(7) {
        let mut bad = json.clone();
        bad[i] ^= 0x01;
        assert_eq!(
            Receipt::verify(&bad, &sig, &k),
            Err(ReceiptError::BadSignature),
            "byte {i}"
        );
    }
    let mut bad = sig.clone();
    bad[100] ^= 0x80;
    assert_eq!(
        Receipt::verify(&json, &bad, &k),
        Err(ReceiptError::BadSignature)
    );
}

/// The other jamid account's receipt is its own, not the first account's; signed with
/// its key, a receipt naming the first account, or carrying its own announcement under
/// the first account's receipt, is refused for what it is.
#[test]
fn receipt_of_another_account_is_refused() {
    let a = accounts();
    let (json, sig) = Receipt::make(&a.plain, &a.plain_device, &a.password_eth).expect("make");
    let ok = Receipt::verify(&json, &sig, &key(&a.plain)).expect("valid for its own account");
    assert_eq!(ok.dev.to_string(), PLAIN_DEVICE_SHORT);
    assert_eq!(
        Receipt::verify(&json, &sig, &key(&a.password)),
        Err(ReceiptError::BadSignature)
    );
    // The plain account signs a receipt that claims to be the password account's.
    let (forged, forged_sig) = edited(&json, "id", PASSWORD_ACCOUNT, &a.plain);
    assert_eq!(
        Receipt::verify(&forged, &forged_sig, &key(&a.plain)),
        Err(ReceiptError::WrongAccount)
    );
    // The password account signs its receipt around the plain account's announcement.
    let theirs = field(&json, "announce");
    let ours = fixture("password_receipt.json");
    let (mixed, mixed_sig) = edited(&ours, "announce", &theirs, &a.password);
    assert_eq!(
        Receipt::verify(&mixed, &mixed_sig, &key(&a.password)),
        Err(ReceiptError::Announce(Rejection::WrongAccount))
    );
}

/// A receipt for one device whose announcement (validly signed by the account) names
/// another device is refused.
#[test]
fn announce_for_another_device_is_refused() {
    let a = accounts();
    let (other, _) = Receipt::make(&a.password, &a.plain_device, &a.password_eth).expect("make");
    assert_eq!(field(&other, "dev"), PLAIN_DEVICE_SHORT);
    let (json, sig) = edited(
        &fixture("password_receipt.json"),
        "announce",
        &field(&other, "announce"),
        &a.password,
    );
    assert_eq!(
        Receipt::verify(&json, &sig, &key(&a.password)),
        Err(ReceiptError::DeviceMismatch)
    );
}

/// Malformed content under a valid signature is refused by field, not by a panic.
#[test]
fn malformed_signed_receipts_are_refused() {
    let a = &accounts().password;
    let ours = fixture("password_receipt.json");
    let cases: [(&[u8], ReceiptError); 5] = [
        (b"[1,2]", ReceiptError::NotJson),
        (b"{\"id\":", ReceiptError::NotJson),
        (b"{\"id\":1}", ReceiptError::Field("id")),
        (
            br#"{"id":"bcc7095f046ede47d523d05b192a8dbb4b28fcc0"}"#,
            ReceiptError::Field("dev"),
        ),
        (
            br#"{"id":"bcc7095f046ede47d523d05b192a8dbb4b28fcc0","dev":"2399086b1be39a60ebeb0cb51b81c9f034573aad","eth":""}"#,
            ReceiptError::Field("announce"),
        ),
    ];
    for (json, why) in cases {
        let sig = a.account_key().sign(json).expect("sign");
        assert_eq!(Receipt::verify(json, &sig, &key(a)), Err(why));
    }
    for (announce, why) in [
        ("not base64!", Rejection::Malformed),
        ("kQ==", Rejection::Malformed),
    ] {
        let (json, sig) = edited(&ours, "announce", announce, a);
        assert_eq!(
            Receipt::verify(&json, &sig, &key(a)),
            Err(ReceiptError::Announce(why))
        );
    }
    assert_eq!(
        Receipt::make(
            a,
            &accounts().password_device,
            "4F80659BFF682D349D8FBC88B6FEA9DD0D509098"
        ),
        Err(ReceiptError::BadEth)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random bytes, signed by the account or not, never verify and never panic.
    #[test]
    fn random_bytes_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..400),
                                sig in proptest::collection::vec(any::<u8>(), 0..600)) {
        let a = &accounts().password;
        prop_assert_eq!(Receipt::verify(&bytes, &sig, &key(a)), Err(ReceiptError::BadSignature));
        let signed = a.account_key().sign(&bytes).expect("sign");
        prop_assert!(Receipt::verify(&bytes, &signed, &key(a)).is_err());
    }

    /// jamid's receipt with a few bytes changed: refused unless signed again, and then
    /// refused or still about this account and an announcement of its `dev`.
    #[test]
    fn mutated_receipts_are_refused(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4)) {
        let a = &accounts().password;
        let original = fixture("password_receipt.json");
        let mut json = original.clone();
        for (at, b) in edits {
            let i = at % json.len();
            json[i] = b;
        }
        prop_assume!(json != original);
        let sig = fixture("password_receipt.sig");
        prop_assert_eq!(Receipt::verify(&json, &sig, &key(a)), Err(ReceiptError::BadSignature));
        let signed = a.account_key().sign(&json).expect("sign");
        if let Ok(r) = Receipt::verify(&json, &signed, &key(a)) {
            prop_assert_eq!(r.account.to_string(), PASSWORD_ACCOUNT);
            prop_assert_eq!(r.announcement.dev, r.dev);
        }
    }
}

/// Our eth address derivation (secp256k1 + Keccak-256) gives the address jamid wrote
/// into its receipt, from the archive's `ethKey` alone.
#[test]
fn eth_address_of_the_archive_key_is_jamids() {
    let a = accounts();
    assert_eq!(
        a.password_eth,
        field(&fixture("password_receipt.json"), "eth")
    );
    assert_eq!(a.password_eth, "4f80659bff682d349d8fbc88b6fea9dd0d509098");
}
