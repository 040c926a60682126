//! Two sessions back to back in memory with real (small-key) Jami device chains.

use std::sync::{Arc, OnceLock};

use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rustls::pki_types::CertificateDer;
use rustls::{CipherSuite, NamedGroup};

use super::*;
use crate::crypto::PrivateKey;
use crate::identity::account::{AccountIdentity, DeviceIdentity, DeviceInfo, DEVICE_NAME};
use crate::identity::cert::{CertSigner, Certificate};
use crate::identity::crl::RevocationList;

/// Unix ms; certificates are made at `NOW / 1000` s.
const NOW: u64 = 1_790_000_000_000;
/// 1024-bit keys keep the tests fast (PSS-SHA-384 still fits).
const BITS: usize = 1024;

struct Fixture {
    /// Device `a` of account A, its sibling `a2`, device `b` of B, device `c` of C.
    a: DeviceIdentity,
    a2: DeviceIdentity,
    b: DeviceIdentity,
    c: DeviceIdentity,
    /// A's CRL revoking `a`.
    crl_a: RevocationList,
    /// A self-signed "Jami device" certificate and its key.
    self_signed: (PrivateKey, Certificate),
}

fn fx() -> &'static Fixture {
    static FX: OnceLock<Fixture> = OnceLock::new();
    FX.get_or_init(|| {
        let mut rng = ChaCha20Rng::seed_from_u64(600);
        let now = NOW / 1000;
        let acc_a = AccountIdentity::generate(BITS, now, &mut rng).expect("A");
        let acc_b = AccountIdentity::generate(BITS, now, &mut rng).expect("B");
        let acc_c = AccountIdentity::generate(BITS, now, &mut rng).expect("C");
        let a = acc_a.new_device(BITS, now, &mut rng).expect("a");
        let a2 = acc_a.new_device(BITS, now, &mut rng).expect("a2");
        let b = acc_b.new_device(BITS, now, &mut rng).expect("b");
        let c = acc_c.new_device(BITS, now, &mut rng).expect("c");
        let signer = CertSigner::Rsa(acc_a.account_key());
        let crl_a = RevocationList::sign(signer, acc_a.certificate(), &[], None, now, &mut rng)
            .and_then(|e| e.revoke(a.certificate(), signer, acc_a.certificate(), now, &mut rng))
            .expect("crl");
        let key = PrivateKey::generate(BITS, &mut rng).expect("key");
        let cert =
            Certificate::generate(&key, DEVICE_NAME, None, false, now, &mut rng).expect("cert");
        Fixture {
            a,
            a2,
            b,
            c,
            crl_a,
            self_signed: (key, cert),
        }
    })
}

fn expect(dev: &DeviceIdentity, crls: Vec<RevocationList>) -> Arc<dyn PeerCheck> {
    Arc::new(ExpectedPeer::new(dev.chain().to_vec(), crls).expect("expected peer"))
}

fn session(
    role: Role,
    key: &PrivateKey,
    chain: &[Certificate],
    check: Arc<dyn PeerCheck>,
    seed: u64,
) -> TlsSession {
    TlsSession::with_check(NOW, role, key, chain, check, ChaCha20Rng::seed_from_u64(seed))
        .expect("session")
}

/// Moves stream bytes both ways until both are quiet; returns the transcript
/// (direction, bytes) in order.
fn pump(client: &mut TlsSession, server: &mut TlsSession) -> Vec<(bool, Vec<u8>)> {
    let mut log = Vec::new();
    loop {
        let mut moved = false;
        while let Some(bytes) = client.poll_stream_write() {
            server.handle_stream_bytes(NOW, &bytes);
            log.push((true, bytes));
            moved = true;
        }
        while let Some(bytes) = server.poll_stream_write() {
            client.handle_stream_bytes(NOW, &bytes);
            log.push((false, bytes));
            moved = true;
        }
        if !moved {
            return log;
        }
    }
}

fn events(s: &mut TlsSession) -> Vec<TlsEvent> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

fn data(events: &[TlsEvent]) -> Vec<u8> {
    events
        .iter()
        .filter_map(|e| match e {
            TlsEvent::Data(d) => Some(d.as_slice()),
            _ => None,
        })
        .flatten()
        .copied()
        .collect()
}

fn info(dev: &DeviceIdentity) -> DeviceInfo {
    DeviceInfo {
        account_id: dev.account_id(),
        device_short_id: dev.short_id(),
        device_id: dev.device_id(),
    }
}

/// `b` received the request, so it is the TLS client; `a` requested, TLS server.
fn honest_pair(seed_c: u64, seed_s: u64) -> (TlsSession, TlsSession) {
    let f = fx();
    let client = session(Role::Client, f.b.key(), f.b.chain(), expect(&f.a, vec![]), seed_c);
    let server = session(Role::Server, f.a.key(), f.a.chain(), expect(&f.b, vec![]), seed_s);
    (client, server)
}

#[test]
fn handshake_then_data_both_ways() {
    let f = fx();
    let (mut client, mut server) = honest_pair(1, 2);
    // Written before the handshake ends: held until it does.
    assert_eq!(client.send(NOW, b"early hello").expect("send"), 11);
    pump(&mut client, &mut server);
    let (ce, se) = (events(&mut client), events(&mut server));
    assert_eq!(ce[0], TlsEvent::HandshakeComplete { peer: info(&f.a) });
    assert_eq!(se[0], TlsEvent::HandshakeComplete { peer: info(&f.b) });
    assert!(client.is_established() && server.is_established());
    assert_eq!(data(&se), b"early hello");
    let want = (CipherSuite::TLS13_AES_256_GCM_SHA384, NamedGroup::secp384r1);
    assert_eq!(client.negotiated(), Some(want));
    assert_eq!(server.negotiated(), Some(want));

    // A payload far above the plaintext buffer, both ways, with back-pressure.
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    for (from_client, payload) in [(true, &big), (false, &big)] {
        let mut sent = 0;
        let mut got = Vec::new();
        while got.len() < payload.len() {
            let tx = if from_client { &mut client } else { &mut server };
            if sent < payload.len() {
                let n = tx.send(NOW, &payload[sent..]).expect("send");
                assert!(n <= MAX_BUFFERED_PLAINTEXT);
                sent += n;
            }
            if from_client {
                pump(&mut client, &mut server);
                got.extend(data(&events(&mut server)));
            } else {
                pump(&mut client, &mut server);
                got.extend(data(&events(&mut client)));
            }
        }
        assert_eq!(&got, payload);
    }
    assert_eq!(server.stats().plaintext_in, 11 + big.len() as u64);

    client.close(NOW);
    pump(&mut client, &mut server);
    assert_eq!(events(&mut server), vec![TlsEvent::Closed]);
    assert!(matches!(client.send(NOW, b"x"), Err(TlsError::Closed)));
}

#[test]
fn same_seeds_give_identical_bytes_other_seeds_differ() {
    let run = |sc, ss| {
        let (mut client, mut server) = honest_pair(sc, ss);
        let mut log = pump(&mut client, &mut server);
        client.send(NOW, b"ping").expect("send");
        server.send(NOW, b"pong").expect("send");
        log.extend(pump(&mut client, &mut server));
        assert!(client.is_established() && server.is_established());
        log
    };
    let first = run(10, 20);
    assert!(first.iter().any(|(c, _)| *c) && first.iter().any(|(c, _)| !*c));
    assert_eq!(first, run(10, 20), "same seeds: byte-identical in both directions");
    let other_client = run(11, 20);
    let other_server = run(10, 21);
    // ClientHello (random, key share) changes with the client seed ...
    assert_ne!(first[0], other_client[0]);
    // ... and the server's flight with the server seed, while the ClientHello stays.
    assert_eq!(first[0], other_server[0]);
    let server_flight = |log: &[(bool, Vec<u8>)]| log.iter().find(|(c, _)| !*c).cloned();
    assert_ne!(server_flight(&first), server_flight(&other_server));
}

/// Every way of presenting the wrong device, as (presented key, presented chain, CRLs
/// the verifier holds, expected refusal). The verifier always expects device `a`.
fn forgeries() -> Vec<(&'static str, PrivateKey, Vec<Certificate>, Vec<RevocationList>, RefusalKind)>
{
    let f = fx();
    let mut broken = f.a.chain().to_vec();
    let mut der = broken[0].der().to_vec();
    let last = der.len() - 1;
    der[last] ^= 0x01; // the signature BIT STRING ends the certificate
    broken[0] = Certificate::from_der(&der).expect("still parses");
    vec![
        (
            "device of another account",
            f.c.key().clone(),
            f.c.chain().to_vec(),
            vec![],
            RefusalKind::WrongAccount,
        ),
        (
            "revoked device",
            f.a.key().clone(),
            f.a.chain().to_vec(),
            vec![f.crl_a.clone()],
            RefusalKind::Revoked,
        ),
        (
            "another device than announced",
            f.a2.key().clone(),
            f.a2.chain().to_vec(),
            vec![],
            RefusalKind::UnexpectedCertificate,
        ),
        (
            "self-signed device",
            f.self_signed.0.clone(),
            vec![f.self_signed.1.clone()],
            vec![],
            RefusalKind::SelfSigned,
        ),
        (
            "broken certificate signature",
            f.a.key().clone(),
            broken,
            vec![],
            RefusalKind::BadSignature,
        ),
        (
            "announced chain without its key",
            f.a2.key().clone(),
            f.a.chain().to_vec(),
            vec![],
            RefusalKind::BadHandshakeSignature,
        ),
    ]
}

/// Runs the forgery with the forger on `forger_role`; returns the honest side's events
/// and stats, and whether the forger ended established.
fn run_forgery(
    forger_role: Role,
    key: &PrivateKey,
    chain: &[Certificate],
    honest_check: Arc<dyn PeerCheck>,
) -> (Vec<TlsEvent>, TlsStats, bool) {
    let f = fx();
    let honest_role = match forger_role {
        Role::Client => Role::Server,
        Role::Server => Role::Client,
    };
    let mut forger = session(forger_role, key, chain, expect(&f.b, vec![]), 5);
    let mut honest = session(honest_role, f.b.key(), f.b.chain(), honest_check, 6);
    match forger_role {
        Role::Client => pump(&mut forger, &mut honest),
        Role::Server => pump(&mut honest, &mut forger),
    };
    let established = forger.is_established();
    (events(&mut honest), honest.stats().clone(), established)
}

#[test]
fn forgeries_are_refused_on_both_sides_with_their_reason() {
    for (what, key, chain, crls, kind) in forgeries() {
        for role in [Role::Client, Role::Server] {
            let check = expect(&fx().a, crls.clone());
            let (ev, stats, forger_in) = run_forgery(role, &key, &chain, check);
            let refused = ev.iter().find_map(|e| match e {
                TlsEvent::Failed(TlsError::Refused(r)) => Some(r.kind()),
                _ => None,
            });
            assert_eq!(refused, Some(kind), "{what}, forger as {role:?}: {ev:?}");
            assert!(
                !ev.iter().any(|e| matches!(e, TlsEvent::HandshakeComplete { .. })),
                "{what}: honest side must not complete"
            );
            assert_eq!(stats.refused.get(&kind), Some(&1), "{what}: counted");
            assert!(!forger_in, "{what}: forger must not end established");
        }
    }
}

/// A check that accepts whatever is presented.
#[derive(Debug)]
struct AcceptAny;

impl PeerCheck for AcceptAny {
    fn check(&self, chain: &[CertificateDer<'_>]) -> Result<DeviceInfo, Refusal> {
        let dev = Certificate::from_der(&chain[0]).map_err(|e| Refusal::Malformed(e.to_string()))?;
        Ok(DeviceInfo {
            account_id: [0; 20],
            device_short_id: dev.short_id(),
            device_id: dev.long_id(),
        })
    }
}

/// Model break: with a permissive check in place of Jami's rules, the chain forgeries
/// get through, so the refusals above come from the check and not from elsewhere.
#[test]
fn accept_any_check_lets_chain_forgeries_through() {
    for (what, key, chain, _, kind) in forgeries() {
        if kind == RefusalKind::BadHandshakeSignature {
            continue; // rustls' proof of key possession, independent of the chain check
        }
        let (ev, _, forger_in) = run_forgery(Role::Client, &key, &chain, Arc::new(AcceptAny));
        assert!(
            matches!(ev.first(), Some(TlsEvent::HandshakeComplete { .. })) && forger_in,
            "{what}: a permissive check lets it in: {ev:?}"
        );
    }
}

#[test]
fn a_silent_peer_is_cut_off_after_the_handshake_timeout() {
    let (mut client, mut server) = honest_pair(3, 4);
    assert_eq!(client.poll_timeout(), Some(NOW + HANDSHAKE_TIMEOUT_MS));
    // The server receives the ClientHello and answers, but its answer is lost.
    let hello = client.poll_stream_write().expect("client hello");
    server.handle_stream_bytes(NOW, &hello);
    assert!(server.poll_stream_write().is_some());
    for s in [&mut client, &mut server] {
        s.handle_timeout(NOW + HANDSHAKE_TIMEOUT_MS - 1);
        assert_eq!(s.poll_event(), None, "not yet");
        s.handle_timeout(NOW + HANDSHAKE_TIMEOUT_MS);
        assert_eq!(
            s.poll_event(),
            Some(TlsEvent::Failed(TlsError::HandshakeTimeout))
        );
        assert_eq!(s.stats().handshake_timeouts, 1);
        assert_eq!(s.poll_timeout(), None);
        s.handle_stream_bytes(NOW + HANDSHAKE_TIMEOUT_MS, b"late");
        assert_eq!(s.stats().dropped_bytes, 4);
    }
    // Once established, there is no deadline any more.
    let (mut client, mut server) = honest_pair(3, 4);
    pump(&mut client, &mut server);
    assert_eq!(client.poll_timeout(), None);
    client.handle_timeout(NOW + 10 * HANDSHAKE_TIMEOUT_MS);
    assert!(client.is_established());
}

/// jamid ignores GnuTLS' EXPIRED / NOT_ACTIVATED flags, so validity dates do not matter.
#[test]
fn validity_dates_are_not_checked_like_jamid() {
    let f = fx();
    let late = NOW + 20 * 365 * 24 * 3600 * 1000; // past the 10-year validity
    assert!(!f.a.certificate().is_valid_at(late / 1000));
    let rng = |s| ChaCha20Rng::seed_from_u64(s);
    let mut c = TlsSession::new(late, Role::Client, &f.b, ExpectedPeer::new(f.a.chain().to_vec(), vec![]).expect("a"), rng(1))
        .expect("client");
    let mut s = TlsSession::new(late, Role::Server, &f.a, ExpectedPeer::new(f.b.chain().to_vec(), vec![]).expect("b"), rng(2))
        .expect("server");
    pump(&mut c, &mut s);
    assert!(c.is_established() && s.is_established());
}

#[test]
fn garbage_on_the_stream_fails_the_session() {
    let (_, mut server) = honest_pair(7, 8);
    server.handle_stream_bytes(NOW, b"GET / HTTP/1.1\r\n\r\n");
    assert!(matches!(
        server.poll_event(),
        Some(TlsEvent::Failed(TlsError::Protocol(_)))
    ));
    assert_eq!(server.stats().protocol_errors, 1);
    // The alert goes out; nothing else happens afterwards.
    assert!(server.poll_stream_write().is_some());
    assert!(matches!(server.send(NOW, b"x"), Err(TlsError::Closed)));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random bytes, or a real ClientHello with mutations, never panic a server and
    /// never authenticate anyone.
    #[test]
    fn random_or_mutated_input_never_panics(
        junk in proptest::collection::vec(any::<u8>(), 0..2048),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        use_hello in any::<bool>(),
    ) {
        let (mut client, mut server) = honest_pair(9, 10);
        let mut input = if use_hello { client.poll_stream_write().unwrap_or_default() } else { junk.clone() };
        if use_hello {
            for (at, x) in &flips {
                if !input.is_empty() {
                    let i = at % input.len();
                    input[i] ^= x;
                }
            }
            input.extend(&junk);
        }
        for chunk in input.chunks(97) {
            server.handle_stream_bytes(NOW, chunk);
        }
        let _ = server.poll_stream_write();
        let ev = events(&mut server);
        let authenticated = ev.iter().any(|e| matches!(e, TlsEvent::HandshakeComplete { .. }));
        prop_assert!(!authenticated);
    }
}
