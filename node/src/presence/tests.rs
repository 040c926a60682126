use super::*;
use crate::crypto::PrivateKey;
use crate::dht::engine::{Config, Event};
use crate::dht::infohash::InfoHash;
use crate::dht::secure::{self, certificate_value, SecureDht};
use crate::dht::value::{Body, Value, ValueData};
use crate::identity::cert::CertSigner;
use crate::identity::{AccountIdentity, DeviceIdentity, NodeIdentity, RevocationList};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::sync::OnceLock;

const NOW: u64 = 1_790_000_000;
const BITS: usize = 1024;

struct Fixture {
    a: AccountIdentity,
    a_dev: DeviceIdentity,
    b: AccountIdentity,
    b_dev: DeviceIdentity,
}

fn fx() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let mut rng = ChaCha20Rng::seed_from_u64(40);
        let a = AccountIdentity::generate(BITS, NOW, &mut rng).expect("a");
        let a_dev = a.new_device(BITS, NOW, &mut rng).expect("a device");
        let b = AccountIdentity::generate(BITS, NOW, &mut rng).expect("b");
        let b_dev = b.new_device(BITS, NOW, &mut rng).expect("b device");
        Fixture { a, a_dev, b, b_dev }
    })
}

fn key_of(a: &AccountIdentity) -> InfoHash {
    InfoHash(a.account_id())
}

/// Account `signer` signs an announcement with arbitrary `data`.
fn signed(signer: &AccountIdentity, id: u64, data: Vec<u8>) -> Value {
    let body = Body {
        type_id: ANNOUNCEMENT_TYPE,
        data,
        utype: String::new(),
    };
    secure::sign(signer.account_key(), id, 0, body, None).expect("sign")
}

fn revoking(a: &AccountIdentity, dev: &DeviceIdentity) -> RevocationList {
    let mut rng = ChaCha20Rng::seed_from_u64(41);
    let signer = CertSigner::Rsa(a.account_key());
    let empty = RevocationList::sign(signer, a.certificate(), &[], None, NOW, &mut rng).unwrap();
    let signer = CertSigner::Rsa(a.account_key());
    empty
        .revoke(
            dev.certificate(),
            signer,
            a.certificate(),
            NOW + 1,
            &mut rng,
        )
        .unwrap()
}

#[test]
fn data_is_msgpack_c_map_dev_then_pk() {
    let f = fx();
    let ann = DeviceAnnouncement::for_device(&f.a_dev);
    let bytes = ann.pack();
    let mut want = vec![0x82, 0xa3, b'd', b'e', b'v', 0xc4, 20];
    want.extend_from_slice(&f.a_dev.short_id());
    want.extend_from_slice(&[0xa2, b'p', b'k']);
    let pk = f.a_dev.certificate().spki_der();
    // bin8 below 256 bytes (1024-bit keys), bin16 for jamid's 4096-bit ones.
    match u8::try_from(pk.len()) {
        Ok(n) => want.extend_from_slice(&[0xc4, n]),
        Err(_) => {
            want.push(0xc5);
            want.extend_from_slice(&(pk.len() as u16).to_be_bytes());
        }
    }
    want.extend_from_slice(pk);
    assert_eq!(bytes, want);
    assert_eq!(DeviceAnnouncement::unpack(&bytes), Ok(ann.clone()));

    // Order-independent, unknown keys ignored, first key wins, nil pk = no key.
    let mut w = crate::dht::msgpack::Writer::new();
    w.map_len(4).str("x").uint(1).str("pk").nil().str("dev");
    w.bin(&f.a_dev.short_id()).str("dev").bin(&[0; 20]);
    let other = DeviceAnnouncement::unpack(&w.into_bytes()).unwrap();
    assert_eq!((other.dev, other.pk), (ann.dev, None));

    for bad in [
        &[0x90][..],                                 // array
        &[0x81, 0xa3, b'd', b'e', b'v', 0xc4, 1, 0], // short dev
        &[0x81, 0x01, 0x02],                         // int key
        &[0x81, 0xa2, b'p', b'k', 0x05],             // pk not bin
        &[],
    ] {
        assert_eq!(DeviceAnnouncement::unpack(bad), Err(Rejection::Malformed));
    }
}

#[test]
fn our_announcement_is_account_signed_type_0_and_verifies() {
    let f = fx();
    let v = announcement_value(&f.a, f.a_dev.certificate(), 77).unwrap();
    let ValueData::Signed(s) = &v.data else {
        panic!("signed")
    };
    assert_eq!((v.id, s.seq, s.body.type_id), (77, 0, 0));
    assert_eq!(s.owner, f.a.account_key().public_key().spki_der());
    assert!(s.to.is_none() && s.body.utype.is_empty());
    // Survives the wire.
    let v = Value::unpack(&v.pack()).unwrap();
    let claim = check_announcement(&key_of(&f.a), &v).expect("valid");
    assert_eq!(claim.announcement.dev.0, f.a_dev.short_id());
    let info = check_device(&claim, f.a_dev.chain(), &[]).expect("device ok");
    assert_eq!(info.account_id, f.a.account_id());
    assert_eq!(info.device_id, f.a_dev.device_id());
    // The chain as the type-8 value carries it.
    let cert = certificate_value(f.a_dev.chain_pem().as_bytes());
    assert_eq!(
        device_chain(&cert, &claim.announcement.dev).unwrap(),
        f.a_dev.chain()
    );
    assert!(device_chain(&cert, &InfoHash([1; 20])).is_none());
}

#[test]
fn forged_announcements_are_rejected() {
    let f = fx();
    let a_key = key_of(&f.a);
    let good = announcement_value(&f.a, f.a_dev.certificate(), 1).unwrap();

    // Tampered data, original signature.
    let mut tampered = good.clone();
    if let ValueData::Signed(s) = &mut tampered.data {
        s.body.data = DeviceAnnouncement::for_device(&f.b_dev).pack();
    }
    assert_eq!(
        check_announcement(&a_key, &tampered),
        Err(Rejection::BadSignature)
    );

    // Unsigned copy.
    let plain = Value::plain(1, 0, DeviceAnnouncement::for_device(&f.a_dev).pack());
    assert_eq!(
        check_announcement(&a_key, &plain),
        Err(Rejection::NotSigned)
    );

    // Signed by account B, put at A's id.
    let by_b = announcement_value(&f.b, f.a_dev.certificate(), 2).unwrap();
    assert_eq!(
        check_announcement(&a_key, &by_b),
        Err(Rejection::WrongAccount)
    );

    // `pk` is not the key of `dev`.
    let lie = DeviceAnnouncement {
        dev: InfoHash(f.a_dev.short_id()),
        pk: Some(f.b_dev.certificate().spki_der().to_vec()),
    };
    let v = signed(&f.a, 3, lie.pack());
    assert_eq!(check_announcement(&a_key, &v), Err(Rejection::KeyMismatch));

    // B announces A's device at B's id: B's claim is fine, the device is not B's.
    let b_claims_a_dev = announcement_value(&f.b, f.a_dev.certificate(), 4).unwrap();
    let claim = check_announcement(&key_of(&f.b), &b_claims_a_dev).expect("b's own claim");
    assert_eq!(
        check_device(&claim, f.a_dev.chain(), &[]),
        Err(Rejection::NotIssuedByAccount)
    );
    // A's device certificate shown with B's account chain: does not verify.
    let mut mixed = vec![f.a_dev.certificate().clone()];
    mixed.extend(f.b.chain().iter().cloned());
    let claim_a = check_announcement(&a_key, &good).unwrap();
    assert_eq!(
        check_device(&claim_a, &mixed, &[]),
        Err(Rejection::BadChain)
    );
    // A certificate for another device at `dev`.
    assert_eq!(
        check_device(&claim_a, f.b_dev.chain(), &[]),
        Err(Rejection::KeyMismatch)
    );
    // A self-signed "device".
    let mut rng = ChaCha20Rng::seed_from_u64(42);
    let key = PrivateKey::generate(BITS, &mut rng).unwrap();
    let me = NodeIdentity::certify(key, NOW, &mut rng).unwrap();
    let fake = DeviceAnnouncement {
        dev: InfoHash(me.chain()[0].short_id()),
        pk: None,
    };
    let claim = check_announcement(&a_key, &signed(&f.a, 5, fake.pack())).unwrap();
    assert!(check_device(&claim, &me.chain()[..1], &[]).is_err());

    // Revoked by A: refused; the same CRL signed by B: ignored.
    let crl = revoking(&f.a, &f.a_dev);
    assert_eq!(
        check_device(&claim_a, f.a_dev.chain(), std::slice::from_ref(&crl)),
        Err(Rejection::Revoked)
    );
    let not_a = revoking(&f.b, &f.a_dev);
    assert!(check_device(&claim_a, f.a_dev.chain(), &[not_a]).is_ok());
}

/// A node that stores locally and answers its own gets (no peers needed).
fn local_node() -> SecureDht {
    let f = fx();
    let id = NodeIdentity::new(f.b_dev.key().clone(), f.b_dev.chain().to_vec()).unwrap();
    let cfg = Config {
        id: InfoHash([0; 20]),
        network: 0,
        seed: 7,
        verify: None,
    };
    SecureDht::new(cfg, Some(id), 0)
}

fn pump(dht: &mut SecureDht, t: &mut PresenceTracker, now: u64) -> Vec<PresenceEvent> {
    for _ in 0..20 {
        let Some(e) = dht.poll_event() else { break };
        t.handle_event(dht, now, &e);
    }
    std::iter::from_fn(|| t.poll_event()).collect()
}

#[test]
fn tracker_goes_online_counts_forgeries_and_goes_offline() {
    let f = fx();
    let a_key = key_of(&f.a);
    let mut dht = local_node();
    let mut t = PresenceTracker::new();
    let now = 1_000;
    let dev = InfoHash(f.a_dev.short_id());
    dht.put(now, dev, certificate_value(f.a_dev.chain_pem().as_bytes()));
    let mut ann = DeviceAnnouncer::new(&f.a, &f.a_dev, 10).unwrap();
    ann.announce(&mut dht, now);
    assert_eq!(ann.poll_timeout(), Some(now + tracker::REANNOUNCE_MS));
    t.track(&mut dht, now, a_key);
    let ev = pump(&mut dht, &mut t, now);
    assert!(ev.contains(&PresenceEvent::Online(a_key)), "{ev:?}");
    assert!(t.is_online(&a_key));
    assert_eq!(t.devices(&a_key)[0].device_id, f.a_dev.device_id());
    assert_eq!(t.stats.verified, 1);

    // Forged values arriving on the listen: counted, presence unchanged.
    let forged = vec![
        announcement_value(&f.b, f.a_dev.certificate(), 20).unwrap(), // wrong signer
        {
            let mut v = announcement_value(&f.a, f.b_dev.certificate(), 21).unwrap();
            if let ValueData::Signed(s) = &mut v.data {
                s.sig[0] ^= 1;
            }
            v
        },
    ];
    let op = t.listen_op(&a_key).expect("listening");
    t.handle_event(
        &mut dht,
        now,
        &Event::Values {
            op,
            key: a_key,
            values: forged,
        },
    );
    let ev = pump(&mut dht, &mut t, now);
    assert_eq!(t.stats.rejected[&Rejection::WrongAccount], 1);
    assert_eq!(t.stats.rejected[&Rejection::BadSignature], 1);
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert!(t.is_online(&a_key));

    // A's claim for a device whose certificate nobody announced.
    let fake = DeviceAnnouncement {
        dev: InfoHash([9; 20]),
        pk: None,
    };
    let ghost = signed(&f.a, 22, fake.pack());
    t.handle_event(
        &mut dht,
        now,
        &Event::Values {
            op,
            key: a_key,
            values: vec![ghost],
        },
    );
    let mut later = now;
    for _ in 0..50 {
        later += 1_000;
        dht.handle_timeout(later);
        t.handle_timeout(&mut dht, later);
        pump(&mut dht, &mut t, later);
    }
    // Looked up CERT_ATTEMPTS times, then refused.
    assert_eq!(t.stats.rejected.get(&Rejection::NoCertificate), Some(&1));
    assert_eq!(
        t.stats.certificate_retries,
        u64::from(tracker::CERT_ATTEMPTS - 1)
    );

    // The announcement expires: offline.
    t.handle_event(
        &mut dht,
        now,
        &Event::Expired {
            op,
            key: a_key,
            ids: vec![10],
        },
    );
    assert_eq!(t.poll_event(), Some(PresenceEvent::Offline(a_key)));
    assert!(!t.is_online(&a_key));
}

#[test]
fn tracker_expires_unrefreshed_devices_and_honours_the_accounts_crl() {
    let f = fx();
    let a_key = key_of(&f.a);
    let mut dht = local_node();
    let mut t = PresenceTracker::new();
    let now = 1_000;
    dht.put(
        now,
        InfoHash(f.a_dev.short_id()),
        certificate_value(f.a_dev.chain_pem().as_bytes()),
    );
    dht.put(
        now,
        a_key,
        announcement_value(&f.a, f.a_dev.certificate(), 10).unwrap(),
    );
    t.track(&mut dht, now, a_key);
    pump(&mut dht, &mut t, now);
    assert!(t.is_online(&a_key));

    // Seen again by the periodic re-get: stays online past the first expiry.
    let recheck = now + tracker::RECHECK_MS;
    assert_eq!(t.poll_timeout(), Some(recheck));
    t.handle_timeout(&mut dht, recheck);
    pump(&mut dht, &mut t, recheck);
    let first_expiry = now + ANNOUNCEMENT_EXPIRATION_MS;
    t.handle_timeout(&mut dht, first_expiry);
    assert!(t.is_online(&a_key), "refreshed by the re-get");

    // A CRL by A revoking the device shows up at A's id: offline, counted.
    let crl = revoking(&f.a, &f.a_dev);
    let op = t.listen_op(&a_key).unwrap();
    let crl_value = Value::plain(99, 0, crl.to_value_data());
    t.handle_event(
        &mut dht,
        first_expiry,
        &Event::Values {
            op,
            key: a_key,
            values: vec![crl_value],
        },
    );
    let ev: Vec<_> = std::iter::from_fn(|| t.poll_event()).collect();
    assert_eq!(
        ev,
        vec![
            PresenceEvent::Rejected {
                account: a_key,
                reason: Rejection::Revoked
            },
            PresenceEvent::Offline(a_key)
        ]
    );

    // Without a refresh a device expires on its own; the re-get due at the same time
    // finds the announcement still stored and brings it back.
    let mut t = PresenceTracker::new();
    let mut dht = local_node();
    dht.put(
        now,
        InfoHash(f.a_dev.short_id()),
        certificate_value(f.a_dev.chain_pem().as_bytes()),
    );
    dht.put(
        now,
        a_key,
        announcement_value(&f.a, f.a_dev.certificate(), 10).unwrap(),
    );
    t.track(&mut dht, now, a_key);
    pump(&mut dht, &mut t, now);
    assert!(t.is_online(&a_key));
    t.handle_timeout(&mut dht, first_expiry);
    assert_eq!(t.poll_event(), Some(PresenceEvent::Offline(a_key)));
    let ev = pump(&mut dht, &mut t, first_expiry);
    assert!(ev.contains(&PresenceEvent::Online(a_key)), "{ev:?}");
    t.untrack(&mut dht, &a_key);
    assert!(!t.is_online(&a_key));
}

proptest! {
    #[test]
    fn announcement_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = DeviceAnnouncement::unpack(&bytes);
    }

    #[test]
    fn announcement_round_trips(dev in any::<[u8; 20]>(), pk in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300))) {
        let a = DeviceAnnouncement { dev: InfoHash(dev), pk };
        prop_assert_eq!(DeviceAnnouncement::unpack(&a.pack()), Ok(a));
    }
}

/// The real-NAT lab's rare "B not found": B's announcement reached A before B's
/// certificate did, A's one lookup found nothing and A forgot the device (the listen
/// reports a value once). Now the lookup is tried again and A sees B online.
#[test]
fn a_certificate_published_after_the_announcement_is_found_on_a_retry() {
    let f = fx();
    let a_key = key_of(&f.a);
    let mut dht = local_node();
    let mut t = PresenceTracker::new();
    let now = 1_000;
    let mut ann = DeviceAnnouncer::new(&f.a, &f.a_dev, 10).unwrap();
    ann.announce(&mut dht, now);
    t.track(&mut dht, now, a_key);
    let ev = pump(&mut dht, &mut t, now);
    assert!(!t.is_online(&a_key), "{ev:?}");
    // The lookup ends empty (no node but us), then the certificate arrives.
    let mut later = now;
    for _ in 0..5 {
        later += 100;
        dht.handle_timeout(later);
        pump(&mut dht, &mut t, later);
    }
    assert!(!t.is_online(&a_key));
    assert_eq!(t.stats.certificate_retries, 1);
    let dev = InfoHash(f.a_dev.short_id());
    dht.put(
        later,
        dev,
        certificate_value(f.a_dev.chain_pem().as_bytes()),
    );
    let retry = t.poll_timeout().expect("a retry is due");
    assert!(retry <= now + 1_000 + 500, "retry at {retry}");
    dht.handle_timeout(retry);
    t.handle_timeout(&mut dht, retry);
    let ev = pump(&mut dht, &mut t, retry);
    assert!(ev.contains(&PresenceEvent::Online(a_key)), "{ev:?}");
    assert!(t.stats.rejected.is_empty(), "{:?}", t.stats.rejected);
}
