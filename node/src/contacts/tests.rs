//! ContactManager against a scripted DHT: every op it issues is recorded, and the test
//! answers with the events the secure DHT would give.

use super::*;
use crate::crypto::PrivateKey;
use crate::dht::engine::{Event, OpId};
use crate::dht::infohash::InfoHash;
use crate::dht::payload::{TrustRequest, TRUST_REQUEST_TYPE};
use crate::dht::secure::{self, certificate_value};
use crate::dht::value::{Body, Value, ValueData};
use crate::identity::cert::CertSigner;
use crate::identity::{AccountIdentity, Certificate, DeviceIdentity};
use crate::presence::{announcement_value, InboxDht, PresenceDht};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::collections::BTreeMap;
use std::sync::OnceLock;

const NOW: u64 = 1_790_000_000;
const NOW_MS: u64 = NOW * 1000;
const BITS: usize = 1024;

struct Fixture {
    me: DeviceIdentity,
    a: AccountIdentity,
    a_dev: DeviceIdentity,
    b: AccountIdentity,
    b_dev: DeviceIdentity,
    /// A key with a self-signed certificate.
    lone: (PrivateKey, Certificate),
}

fn fx() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let mut rng = ChaCha20Rng::seed_from_u64(90);
        let mine = AccountIdentity::generate(BITS, NOW, &mut rng).unwrap();
        let me = mine.new_device(BITS, NOW, &mut rng).unwrap();
        let a = AccountIdentity::generate(BITS, NOW, &mut rng).unwrap();
        let a_dev = a.new_device(BITS, NOW, &mut rng).unwrap();
        let b = AccountIdentity::generate(BITS, NOW, &mut rng).unwrap();
        let b_dev = b.new_device(BITS, NOW, &mut rng).unwrap();
        let key = PrivateKey::generate(BITS, &mut rng).unwrap();
        let cert = Certificate::generate(&key, "Jami device", None, false, NOW, &mut rng).unwrap();
        Fixture {
            me,
            a,
            a_dev,
            b,
            b_dev,
            lone: (key, cert),
        }
    })
}

#[derive(Default)]
struct FakeDht {
    next: OpId,
    listens: Vec<(OpId, InfoHash)>,
    gets: Vec<(OpId, InfoHash)>,
    puts: Vec<(OpId, InfoHash, InfoHash, Body)>,
    cancelled: Vec<OpId>,
    local: BTreeMap<InfoHash, Vec<Value>>,
}

impl FakeDht {
    fn op(&mut self) -> OpId {
        self.next += 1;
        self.next
    }
    fn get_at(&self, key: InfoHash) -> OpId {
        self.gets
            .iter()
            .rev()
            .find(|(_, k)| *k == key)
            .expect("a get at key")
            .0
    }
}

impl PresenceDht for FakeDht {
    fn listen(&mut self, _: u64, key: InfoHash) -> OpId {
        let op = self.op();
        self.listens.push((op, key));
        op
    }
    fn get(&mut self, _: u64, key: InfoHash) -> OpId {
        let op = self.op();
        self.gets.push((op, key));
        op
    }
    fn cancel(&mut self, op: OpId) {
        self.cancelled.push(op);
    }
    fn local_values(&self, key: &InfoHash) -> Vec<Value> {
        self.local.get(key).cloned().unwrap_or_default()
    }
}

impl InboxDht for FakeDht {
    fn put_encrypted(&mut self, _: u64, key: InfoHash, to: InfoHash, _: u64, body: Body) -> OpId {
        let op = self.op();
        self.puts.push((op, key, to, body));
        op
    }
}

fn short(d: &DeviceIdentity) -> InfoHash {
    InfoHash(d.short_id())
}

fn account(a: &AccountIdentity) -> InfoHash {
    InfoHash(a.account_id())
}

fn manager(dht: &mut FakeDht) -> ContactManager {
    let mut m = ContactManager::new(short(&fx().me), ContactList::new(), 7);
    m.start(dht, NOW_MS);
    m
}

fn values(op: OpId, key: InfoHash, values: Vec<Value>) -> Event {
    Event::Values { op, key, values }
}

fn done(op: OpId, key: InfoHash) -> Event {
    Event::GetDone {
        op,
        key,
        nodes_answered: 8,
        hops: 1,
    }
}

/// A trust request as the secure layer hands it over after decryption: signed by
/// `key`, addressed to our device.
fn request_value(key: &PrivateKey, id: u64, req: &TrustRequest) -> Value {
    let body = Body {
        type_id: TRUST_REQUEST_TYPE,
        data: req.pack(),
        utype: String::new(),
    };
    secure::sign(key, id, 0, body, Some(short(&fx().me))).unwrap()
}

fn tr(conv: &str, payload: &[u8], confirm: bool) -> TrustRequest {
    TrustRequest {
        service: SERVICE.into(),
        conversation_id: conv.into(),
        payload: payload.to_vec(),
        confirm,
    }
}

fn events(m: &mut ContactManager) -> Vec<TrustEvent> {
    std::iter::from_fn(|| m.poll_event()).collect()
}

/// Deliver `v` at the inbox, then answer the sender certificate lookup with `cert`.
fn deliver(
    m: &mut ContactManager,
    dht: &mut FakeDht,
    v: Value,
    cert: Option<Value>,
) -> Vec<TrustEvent> {
    let inbox = m.inbox();
    let listen = dht.listens[0].0;
    let gets = dht.gets.len();
    assert!(m.handle_event(dht, NOW_MS, &values(listen, inbox, vec![v])));
    if dht.gets.len() > gets {
        let (op, key) = dht.gets[gets];
        if let Some(c) = cert {
            m.handle_event(dht, NOW_MS, &values(op, key, vec![c]));
        }
        m.handle_event(dht, NOW_MS, &done(op, key));
    }
    events(m)
}

fn cert_of(d: &DeviceIdentity) -> Value {
    certificate_value(d.chain_pem().as_bytes())
}

#[test]
fn inbox_key_is_sha1_of_inbox_and_short_id_hex() {
    let dev = InfoHash([0x6a; 20]);
    assert_eq!(
        inbox_key(&dev),
        InfoHash::get(format!("inbox:{}", "6a".repeat(20)))
    );
    let mut dht = FakeDht::default();
    let m = manager(&mut dht);
    assert_eq!(
        dht.listens,
        vec![(1, inbox_key(&short(&fx().me)))],
        "listens on its own inbox"
    );
    assert_eq!(m.inbox(), inbox_key(&short(&fx().me)));
}

#[test]
fn send_puts_the_request_in_each_verified_device_inbox() {
    let f = fx();
    let mut dht = FakeDht::default();
    let mut m = manager(&mut dht);
    let to = account(&f.a);
    assert!(m.send_request(&mut dht, NOW_MS, to, "conv", b"BEGIN:VCARD".to_vec()));
    let c = m.contacts().contact(&to).unwrap();
    assert!(c.is_active() && !c.confirmed && c.conversation_id == "conv");
    let get = dht.get_at(to);
    let good = announcement_value(&f.a, f.a_dev.certificate(), 11).unwrap();
    // A device of account b announced at a's id, signed by b: not a's device.
    let foreign = announcement_value(&f.b, f.b_dev.certificate(), 12).unwrap();
    m.handle_event(
        &mut dht,
        NOW_MS,
        &values(get, to, vec![good.clone(), foreign, good]),
    );
    let dev = short(&f.a_dev);
    assert_eq!(
        dht.gets.iter().filter(|(_, k)| *k == dev).count(),
        1,
        "one lookup per device"
    );
    assert!(!dht.gets.iter().any(|(_, k)| *k == short(&f.b_dev)));
    let cert_get = dht.get_at(dev);
    m.handle_event(
        &mut dht,
        NOW_MS,
        &values(cert_get, dev, vec![cert_of(&f.a_dev)]),
    );
    assert_eq!(dht.puts.len(), 1);
    let (_, key, rcpt, body) = &dht.puts[0];
    assert_eq!((*key, *rcpt), (inbox_key(&dev), dev));
    assert_eq!(body.type_id, TRUST_REQUEST_TYPE);
    assert_eq!(
        TrustRequest::unpack(&body.data).unwrap(),
        tr("conv", b"BEGIN:VCARD", false)
    );
    m.handle_event(&mut dht, NOW_MS, &done(cert_get, dev));
    assert!(
        !events(&mut m)
            .iter()
            .any(|e| matches!(e, TrustEvent::Sent { .. })),
        "account get still open"
    );
    m.handle_event(&mut dht, NOW_MS, &done(get, to));
    assert_eq!(
        events(&mut m),
        vec![TrustEvent::Sent {
            to,
            confirm: false,
            devices: 1
        }]
    );
}

#[test]
fn a_device_certificate_of_another_account_gets_nothing() {
    // Model break: an announcement at a's id, signed by a, but the certificate found at
    // `dev` is issued by b (a forged lookup answer) — no put.
    let f = fx();
    let mut dht = FakeDht::default();
    let mut m = manager(&mut dht);
    let to = account(&f.a);
    m.send_request(&mut dht, NOW_MS, to, "", Vec::new());
    let claim = announcement_value(&f.a, f.b_dev.certificate(), 13).unwrap();
    let e = values(dht.get_at(to), to, vec![claim]);
    m.handle_event(&mut dht, NOW_MS, &e);
    let dev = short(&f.b_dev);
    let e = values(dht.get_at(dev), dev, vec![cert_of(&f.b_dev)]);
    m.handle_event(&mut dht, NOW_MS, &e);
    assert!(dht.puts.is_empty());
    let e = done(dht.get_at(dev), dev);
    m.handle_event(&mut dht, NOW_MS, &e);
    let e = done(dht.get_at(to), to);
    m.handle_event(&mut dht, NOW_MS, &e);
    assert!(events(&mut m).contains(&TrustEvent::Sent {
        to,
        confirm: false,
        devices: 0
    }));
}

#[test]
fn oversized_payload_is_dropped() {
    let f = fx();
    let mut dht = FakeDht::default();
    let mut m = manager(&mut dht);
    let to = account(&f.a);
    dht.local.insert(
        to,
        vec![announcement_value(&f.a, f.a_dev.certificate(), 14).unwrap()],
    );
    dht.local.insert(short(&f.a_dev), vec![cert_of(&f.a_dev)]);
    m.send_request(&mut dht, NOW_MS, to, "c", vec![b'x'; MAX_PAYLOAD + 1]);
    m.send_request(&mut dht, NOW_MS, to, "c", vec![b'x'; MAX_PAYLOAD]);
    let sent: Vec<usize> = dht
        .puts
        .iter()
        .map(|p| TrustRequest::unpack(&p.3.data).unwrap().payload.len())
        .collect();
    assert_eq!(sent, vec![0, MAX_PAYLOAD]);
}

#[test]
fn request_from_a_verified_device_is_kept_and_shown() {
    let f = fx();
    let mut dht = FakeDht::default();
    let mut m = manager(&mut dht);
    let v = request_value(f.a_dev.key(), 21, &tr("conv", b"vcard", false));
    let ev = deliver(&mut m, &mut dht, v, Some(cert_of(&f.a_dev)));
    assert_eq!(
        dht.gets.last().unwrap().1,
        short(&f.a_dev),
        "certificate looked up at the sender short id"
    );
    let from = account(&f.a);
    assert_eq!(
        ev,
        vec![TrustEvent::Contact(ContactEvent::IncomingRequest {
            from,
            conversation_id: "conv".into(),
            payload: b"vcard".to_vec(),
            received: NOW as i64
        })]
    );
    assert_eq!(
        m.contacts().requests()[&from].device.as_deref(),
        Some(f.a_dev.certificate().spki_der())
    );
    assert_eq!(m.stats.verified, 1);
    // Accept: a confirmation with the request's conversation to all of a's devices.
    assert!(m.accept(&mut dht, NOW_MS, from));
    assert!(m.contacts().contact(&from).unwrap().confirmed);
    let get = dht.get_at(from);
    m.handle_event(
        &mut dht,
        NOW_MS,
        &values(
            get,
            from,
            vec![announcement_value(&f.a, f.a_dev.certificate(), 22).unwrap()],
        ),
    );
    let dev = short(&f.a_dev);
    let e = values(dht.get_at(dev), dev, vec![cert_of(&f.a_dev)]);
    m.handle_event(&mut dht, NOW_MS, &e);
    let (_, key, _, body) = dht.puts.last().unwrap();
    assert_eq!(*key, inbox_key(&dev));
    assert_eq!(
        TrustRequest::unpack(&body.data).unwrap(),
        tr("conv", b"", true)
    );
    assert!(!m.accept(&mut dht, NOW_MS, from), "request consumed");
}

#[test]
fn decline_forgets_and_sends_nothing() {
    let f = fx();
    let mut dht = FakeDht::default();
    let mut m = manager(&mut dht);
    deliver(
        &mut m,
        &mut dht,
        request_value(f.a_dev.key(), 23, &tr("c", b"", false)),
        Some(cert_of(&f.a_dev)),
    );
    let gets = dht.gets.len();
    assert!(m.decline(&account(&f.a)));
    assert!(m.contacts().requests().is_empty() && m.contacts().contact(&account(&f.a)).is_none());
    assert_eq!((dht.gets.len(), dht.puts.len()), (gets, 0));
}

#[test]
fn banned_account_is_refused_and_counted() {
    let f = fx();
    let mut dht = FakeDht::default();
    let mut m = manager(&mut dht);
    assert!(m.remove(NOW_MS, account(&f.a), true));
    events(&mut m);
    let ev = deliver(
        &mut m,
        &mut dht,
        request_value(f.a_dev.key(), 24, &tr("c", b"", false)),
        Some(cert_of(&f.a_dev)),
    );
    assert_eq!(
        ev,
        vec![TrustEvent::Refused {
            reason: Refusal::Banned
        }]
    );
    assert!(m.contacts().requests().is_empty());
    // Model break: the same request from b (not banned) is kept.
    let ev = deliver(
        &mut m,
        &mut dht,
        request_value(f.b_dev.key(), 24, &tr("c", b"", false)),
        Some(cert_of(&f.b_dev)),
    );
    assert!(matches!(
        ev[0],
        TrustEvent::Contact(ContactEvent::IncomingRequest { .. })
    ));
}

#[test]
fn request_from_a_contact_is_confirmed_automatically() {
    let f = fx();
    let mut dht = FakeDht::default();
    let mut m = manager(&mut dht);
    let from = account(&f.a);
    m.send_request(&mut dht, NOW_MS, from, "", Vec::new());
    events(&mut m);
    let puts = dht.puts.len();
    let gets = dht.gets.len();
    let ev = deliver(
        &mut m,
        &mut dht,
        request_value(f.a_dev.key(), 25, &tr("theirs", b"", false)),
        Some(cert_of(&f.a_dev)),
    );
    assert_eq!(
        ev,
        vec![TrustEvent::Contact(ContactEvent::ContactAdded {
            account: from,
            confirmed: true
        })]
    );
    // A confirmation send started: a new get at a's account id.
    assert!(dht.gets[gets..].iter().any(|(_, k)| *k == from));
    assert_eq!(dht.puts.len(), puts);
}

#[test]
fn confirmation_of_our_request_confirms_the_contact() {
    let f = fx();
    let mut dht = FakeDht::default();
    let mut m = manager(&mut dht);
    let to = account(&f.a);
    m.send_request(&mut dht, NOW_MS, to, "conv", Vec::new());
    events(&mut m);
    let ev = deliver(
        &mut m,
        &mut dht,
        request_value(f.a_dev.key(), 26, &tr("conv", b"", true)),
        Some(cert_of(&f.a_dev)),
    );
    assert_eq!(
        ev,
        vec![
            TrustEvent::Contact(ContactEvent::ContactAdded {
                account: to,
                confirmed: true
            }),
            TrustEvent::Contact(ContactEvent::Confirmed {
                from: to,
                conversation_id: "conv".into()
            })
        ]
    );
    assert_eq!(m.contacts().details()[0]["confirmed"], "true");
}

#[test]
fn forged_requests_are_refused_and_counted() {
    let f = fx();
    let mut dht = FakeDht::default();
    let mut m = manager(&mut dht);
    let req = tr("c", b"v", false);
    let refused = |ev: Vec<TrustEvent>| match ev.as_slice() {
        [TrustEvent::Refused { reason }] => *reason,
        other => panic!("expected one refusal, got {other:?}"),
    };
    // Self-signed sender certificate.
    let (lone_key, lone_cert) = &f.lone;
    let lone_value = certificate_value(lone_cert.to_pem().as_bytes());
    assert_eq!(
        refused(deliver(
            &mut m,
            &mut dht,
            request_value(lone_key, 31, &req),
            Some(lone_value)
        )),
        Refusal::SelfSigned
    );
    // The certificate found is a's device, the signer is b's device key.
    let mut wrong = request_value(f.b_dev.key(), 32, &req);
    // Look the certificate up where the forger points: b's device id, answered with a's chain.
    assert_eq!(
        refused(deliver(
            &mut m,
            &mut dht,
            wrong.clone(),
            Some(cert_of(&f.a_dev))
        )),
        Refusal::NoCertificate,
        "a chain for another id is not taken"
    );
    // A device certificate naming a's account as issuer but signed by b's key.
    let mut rng = ChaCha20Rng::seed_from_u64(91);
    let pk = f.a_dev.key().public_key();
    let uid = crate::crypto::hex(&pk.short_id());
    let signer = (CertSigner::Rsa(f.b.account_key()), f.a.certificate());
    let forged =
        Certificate::generate_from_request(&pk, "Jami device", &uid, signer, NOW, &mut rng)
            .unwrap();
    let mut chain = vec![forged];
    chain.extend(f.a.chain().iter().cloned());
    let bad_chain = certificate_value(crate::identity::encode_pem_chain(&chain).as_bytes());
    assert_eq!(
        refused(deliver(
            &mut m,
            &mut dht,
            request_value(f.a_dev.key(), 33, &req),
            Some(bad_chain)
        )),
        Refusal::BadChain
    );
    // Tampered data under a valid signature.
    if let ValueData::Signed(s) = &mut wrong.data {
        s.body.data = tr("other", b"", false).pack();
        s.received_body = None;
    }
    wrong.id = 34;
    assert_eq!(
        refused(deliver(&mut m, &mut dht, wrong, None)),
        Refusal::BadSignature
    );
    // Not addressed to us.
    let body = Body {
        type_id: TRUST_REQUEST_TYPE,
        data: req.pack(),
        utype: String::new(),
    };
    let other = secure::sign(f.a_dev.key(), 35, 0, body, Some(short(&f.b_dev))).unwrap();
    assert_eq!(
        refused(deliver(&mut m, &mut dht, other, None)),
        Refusal::NotSigned
    );
    // Undecryptable.
    let opaque = Value {
        id: 36,
        data: ValueData::Encrypted(vec![1; 128]),
        priority: 0,
    };
    assert_eq!(
        refused(deliver(&mut m, &mut dht, opaque, None)),
        Refusal::Undecryptable
    );
    // Malformed TrustRequest.
    let body = Body {
        type_id: TRUST_REQUEST_TYPE,
        data: vec![0x93, 1, 2, 3],
        utype: String::new(),
    };
    let junk = secure::sign(f.a_dev.key(), 37, 0, body, Some(short(&fx().me))).unwrap();
    assert_eq!(
        refused(deliver(&mut m, &mut dht, junk, None)),
        Refusal::Malformed
    );
    // Replay of a genuine request.
    let genuine = request_value(f.a_dev.key(), 38, &req);
    assert!(matches!(
        deliver(&mut m, &mut dht, genuine.clone(), Some(cert_of(&f.a_dev)))[0],
        TrustEvent::Contact(_)
    ));
    assert_eq!(
        refused(deliver(&mut m, &mut dht, genuine, None)),
        Refusal::Replay
    );
    assert_eq!(m.stats.refused_total(), 8);
    assert_eq!(m.stats.verified, 1);
    assert_eq!(
        m.contacts().requests().len(),
        1,
        "only the genuine request is kept"
    );
}

#[test]
fn other_services_and_types_are_ignored() {
    let f = fx();
    let mut dht = FakeDht::default();
    let mut m = manager(&mut dht);
    let mut req = tr("c", b"", false);
    req.service = "other".into();
    assert!(deliver(
        &mut m,
        &mut dht,
        request_value(f.a_dev.key(), 41, &req),
        None
    )
    .is_empty());
    let body = Body {
        type_id: 3,
        data: vec![0x80],
        utype: String::new(),
    };
    let msg = secure::sign(f.a_dev.key(), 42, 0, body, Some(short(&fx().me))).unwrap();
    assert!(deliver(&mut m, &mut dht, msg, None).is_empty());
    assert_eq!(
        (
            m.stats.other_service,
            m.stats.other_types,
            m.stats.refused_total()
        ),
        (1, 1, 0)
    );
    assert_eq!(dht.gets.len(), 0, "no certificate lookups for them");
}

#[test]
fn sender_checks_in_flight_are_bounded() {
    let f = fx();
    let mut dht = FakeDht::default();
    let mut m = manager(&mut dht);
    let inbox = m.inbox();
    let listen = dht.listens[0].0;
    let many: Vec<Value> = (0..manager::MAX_PENDING_CHECKS as u64 + 3)
        .map(|i| request_value(f.a_dev.key(), 100 + i, &tr("c", b"", false)))
        .collect();
    m.handle_event(&mut dht, NOW_MS, &values(listen, inbox, many));
    assert_eq!(dht.gets.len(), manager::MAX_PENDING_CHECKS);
    assert_eq!(m.stats.refused[&Refusal::Busy], 3);
    // Finishing one frees a slot.
    let (op, key) = dht.gets[0];
    m.handle_event(&mut dht, NOW_MS, &done(op, key));
    let more = request_value(f.a_dev.key(), 999, &tr("c", b"", false));
    m.handle_event(&mut dht, NOW_MS, &values(listen, inbox, vec![more]));
    assert_eq!(dht.gets.len(), manager::MAX_PENDING_CHECKS + 1);
}

#[test]
fn a_signing_key_that_is_not_the_certificate_key_is_refused() {
    let f = fx();
    let chain = f.a_dev.chain();
    assert_eq!(
        check_sender(chain, f.a_dev.certificate().spki_der()),
        Ok(account(&f.a))
    );
    assert_eq!(
        check_sender(chain, f.b_dev.certificate().spki_der()),
        Err(Refusal::KeyMismatch)
    );
    assert_eq!(
        check_sender(&chain[..1], f.a_dev.certificate().spki_der()),
        Err(Refusal::SelfSigned)
    );
}

#[test]
fn unconfirmed_request_is_sent_again_when_the_contact_comes_online() {
    let f = fx();
    let mut dht = FakeDht::default();
    let mut m = manager(&mut dht);
    let to = account(&f.a);
    assert!(
        !m.contact_online(&mut dht, NOW_MS, to),
        "not a contact: nothing to resend"
    );
    m.send_request(&mut dht, NOW_MS, to, "conv", b"vcard".to_vec());
    // No device announced yet: the first request reaches no one.
    let e = done(dht.get_at(to), to);
    m.handle_event(&mut dht, NOW_MS, &e);
    assert!(events(&mut m).contains(&TrustEvent::Sent {
        to,
        confirm: false,
        devices: 0
    }));
    dht.local.insert(
        to,
        vec![announcement_value(&f.a, f.a_dev.certificate(), 51).unwrap()],
    );
    dht.local.insert(short(&f.a_dev), vec![cert_of(&f.a_dev)]);
    assert!(m.contact_online(&mut dht, NOW_MS, to));
    let (_, key, _, body) = dht.puts.last().expect("sent again");
    assert_eq!(*key, inbox_key(&short(&f.a_dev)));
    assert_eq!(
        TrustRequest::unpack(&body.data).unwrap(),
        tr("conv", b"vcard", false)
    );
    // Once confirmed, coming online sends nothing (model break: an unconfirmed one did).
    deliver(
        &mut m,
        &mut dht,
        request_value(f.a_dev.key(), 52, &tr("conv", b"", true)),
        Some(cert_of(&f.a_dev)),
    );
    assert!(m.contacts().contact(&to).unwrap().confirmed);
    let puts = dht.puts.len();
    assert!(!m.contact_online(&mut dht, NOW_MS, to));
    assert_eq!(dht.puts.len(), puts);
}
