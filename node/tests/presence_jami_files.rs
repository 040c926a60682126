//! `node::presence` against the device announcement the official jamid 13.7 wrote into
//! its receipt (tests/fixtures/jami-13.7, see its README): we read and verify it, and
//! signing the same announcement with the account key from the archive gives jamid's
//! bytes exactly.

mod jami_fixtures;
use jami_fixtures::*;

use base64::Engine;
use node::crypto;
use node::dht::{InfoHash, Value, ValueData};
use node::identity::archive::AccountArchive;
use node::identity::decode_chain;
use node::presence::{
    announcement_value, check_announcement, check_device, DeviceAnnouncement, ANNOUNCEMENT_TYPE,
};

/// The packed announcement in `password_receipt.json`.
fn jamid_announcement() -> Vec<u8> {
    let json: serde_json::Value =
        serde_json::from_slice(&fixture("password_receipt.json")).expect("json");
    let b64 = json["announce"].as_str().expect("announce");
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64")
}

#[test]
fn jamids_announcement_reads_and_verifies() {
    let packed = jamid_announcement();
    let v = Value::unpack(&packed).expect("an OpenDHT value");
    assert_eq!(
        v.id, 0,
        "receipt keeps the announcement with the invalid id 0"
    );
    let ValueData::Signed(s) = &v.data else {
        panic!("signed")
    };
    assert_eq!((s.seq, s.body.type_id), (0, ANNOUNCEMENT_TYPE));
    assert!(s.to.is_none() && s.body.utype.is_empty());
    let account: InfoHash = PASSWORD_ACCOUNT.parse().unwrap();
    let claim = check_announcement(&account, &v).expect("valid announcement");
    assert_eq!(claim.announcement.dev.to_string(), PASSWORD_DEVICE_SHORT);
    let chain = decode_chain(&fixture("password_ring_device.crt")).expect("chain");
    let info = check_device(&claim, &chain, &[]).expect("device chain");
    assert_eq!(crypto::hex(&info.account_id), PASSWORD_ACCOUNT);
    // Our packing of its data and of the whole value is jamid's, byte for byte.
    let ours = DeviceAnnouncement::for_certificate(&chain[0]);
    assert_eq!(ours, claim.announcement);
    assert_eq!(ours.pack(), s.body.data);
    assert_eq!(v.pack(), packed);
    // Checked against another account id, it is refused.
    assert!(check_announcement(&InfoHash([7; 20]), &v).is_err());
}

/// RSA PKCS#1 v1.5 signatures are deterministic: the account key from the archive signs
/// our announcement of the same device into jamid's exact bytes.
#[test]
fn our_announcement_is_byte_identical_to_jamids() {
    let archive =
        AccountArchive::decode(&fixture("password_archive.gz"), "secret pw").expect("archive");
    let account = archive.account().expect("account");
    assert_eq!(crypto::hex(&account.account_id()), PASSWORD_ACCOUNT);
    let chain = decode_chain(&fixture("password_ring_device.crt")).expect("chain");
    let ours = announcement_value(&account, &chain[0], 0).expect("sign");
    assert_eq!(ours.pack(), jamid_announcement());
}
