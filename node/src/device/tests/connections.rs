//! Two Jami devices on the in-memory network connect through the whole stack: the
//! request over the DHT, ICE-TCP, TLS with Jami's chain checks, the multiplexed socket,
//! the `sip` channel and a text message each way; and the DHT fallback when no TCP
//! connection can form.

use super::*;
use crate::connect::ice::CandidateType;
use crate::connect::manager::{ConnectionEvent, ManagerConfig};
use crate::contacts::ContactList;
use crate::device::jami::{JamiEvent, Via};

/// Turn on device `i`'s services, its host candidates on its own address.
fn enable(net: &mut Net, i: usize) {
    let cfg = ManagerConfig {
        host_ips: vec![net.addrs[i].ip()],
        seed: i as u64,
        ..ManagerConfig::default()
    };
    let now = net.now;
    assert!(net.devices[i].enable_services(now, cfg, ContactList::new()));
}

fn with_services(plain: usize) -> Net {
    let f = accounts();
    let mut net = Net::new(plain, &[&f.alice, &f.bob]);
    for i in plain..plain + 2 {
        enable(&mut net, i);
    }
    net.run_for(5_000);
    net
}

fn jami(net: &Net, i: usize) -> Vec<&JamiEvent> {
    net.events[i]
        .iter()
        .filter_map(|e| match e {
            DeviceEvent::Jami(j) => Some(j),
            _ => None,
        })
        .collect()
}

fn connected(net: &Net, i: usize) -> Option<(CandidateType, CandidateType, bool)> {
    jami(net, i).into_iter().find_map(|e| match e {
        JamiEvent::Connection(ConnectionEvent::Connected {
            local,
            remote,
            initiator,
            ..
        }) => Some((local.typ, remote.typ, *initiator)),
        _ => None,
    })
}

fn messages(net: &Net, i: usize) -> Vec<(String, Via)> {
    jami(net, i)
        .into_iter()
        .filter_map(|e| match e {
            JamiEvent::Message { body, via, .. } => {
                Some((String::from_utf8_lossy(body).into_owned(), *via))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn two_devices_connect_and_exchange_texts_over_sip() {
    let f = accounts();
    let (alice, bob) = (6, 7);
    let mut net = with_services(6);
    let now = net.now;
    assert!(net.devices[bob]
        .connect(now, account_id(&f.alice.0))
        .is_some());
    // Bob follows Alice; her device is found, then connected.
    net.run_for(20_000);
    let (l, r, init) = connected(&net, bob).unwrap_or_else(|| panic!("bob: {:?}", jami(&net, bob)));
    assert_eq!((l, init), (CandidateType::Host, true));
    // Bob is ICE controlled and passive: Alice's active check comes from a port her
    // candidate (port 9) does not name, so he learns it as peer-reflexive.
    assert!(
        matches!(r, CandidateType::Host | CandidateType::Prflx),
        "{r:?}"
    );
    let (_, _, init) = connected(&net, alice).expect("alice connected");
    assert!(!init, "the receiver of the request");
    assert_eq!(
        net.devices[bob].presence_of(&account_id(&f.alice.0)),
        Some(PresenceState::Connected)
    );
    let now = net.now;
    let token = net.devices[bob]
        .send_message(now, account_id(&f.alice.0), "text/plain", b"hello alice")
        .expect("services");
    net.run_for(2_000);
    assert_eq!(
        messages(&net, alice),
        vec![("hello alice".to_string(), Via::Sip)]
    );
    assert!(jami(&net, bob).iter().any(|e| **e
        == JamiEvent::Delivered {
            token,
            via: Via::Sip
        }));
    let now = net.now;
    net.devices[alice]
        .send_message(now, account_id(&f.bob.0), "text/plain", b"hi bob")
        .expect("services");
    net.run_for(2_000);
    assert_eq!(messages(&net, bob), vec![("hi bob".to_string(), Via::Sip)]);
    // What each learnt of the other beyond packet sources: the candidates' addresses,
    // here the host address (Bob's passive port and the active candidates' port 9).
    let learned = net.devices[alice]
        .services()
        .expect("services")
        .learned_addresses();
    let of_bob = learned
        .get(&InfoHash(f.bob.1.short_id()))
        .expect("Bob's candidates");
    assert!(
        of_bob.iter().all(|a| a.ip() == net.addrs[bob].ip()),
        "{of_bob:?}"
    );
    assert!(of_bob.iter().any(|a| a.port() == 9), "{of_bob:?}");
    // Nothing refused on either side.
    for i in [alice, bob] {
        let s = net.devices[i].services().expect("services").conns.stats();
        assert_eq!(
            s.requests.forged + s.requests.malformed + s.refused_chain,
            0
        );
        assert_eq!(s.connections_up, 1, "device {i}: {s:?}");
    }
}

/// No TCP connection can form (every connect is refused): the message still arrives,
/// through the DHT, and the receipt comes back.
#[test]
fn without_a_connection_the_dht_carries_the_message_and_its_receipt() {
    let f = accounts();
    let (alice, bob) = (6, 7);
    let mut net = with_services(6);
    net.refuse_tcp = true;
    let now = net.now;
    net.devices[bob].track(now, account_id(&f.alice.0));
    net.run_for(5_000);
    let now = net.now;
    let token = net.devices[bob]
        .send_message(now, account_id(&f.alice.0), "text/plain", b"via the dht")
        .expect("services");
    net.run_for(10_000);
    assert_eq!(
        messages(&net, alice),
        vec![("via the dht".to_string(), Via::Dht)]
    );
    assert!(
        jami(&net, bob).iter().any(|e| **e
            == JamiEvent::Delivered {
                token,
                via: Via::Dht
            }),
        "{:?}",
        jami(&net, bob)
    );
    assert!(connected(&net, bob).is_none());
}

/// Breaks the model: Alice banned Bob, so her device refuses his request and no
/// connection forms; the refusal is counted.
#[test]
fn a_banned_account_cannot_connect() {
    let f = accounts();
    let (alice, bob) = (6, 7);
    let mut net = with_services(6);
    let now = net.now;
    assert!(net.devices[alice].remove_contact(now, account_id(&f.bob.0), true));
    net.devices[bob].connect(now, account_id(&f.alice.0));
    net.run_for(20_000);
    assert!(connected(&net, bob).is_none() && connected(&net, alice).is_none());
    let s = net.devices[alice]
        .services()
        .expect("services")
        .conns
        .stats();
    assert_eq!(s.refused_banned, 1, "{s:?}");
    assert!(jami(&net, alice)
        .iter()
        .any(|e| matches!(e, JamiEvent::Connection(ConnectionEvent::Refused { .. }))));
}

/// An isolated LAN with no bootstrap node and no internet: the two devices hear each
/// other's multicast announcements (OpenDHT's peer discovery), bootstrap their DHT from
/// them, see each other's account nearby, and connect host to host.
#[test]
fn on_an_isolated_lan_discovery_is_enough_to_connect() {
    let f = accounts();
    let (alice, bob) = (0, 1);
    let mut net = Net::new_unbooted(&[&f.alice, &f.bob]);
    for i in [alice, bob] {
        enable(&mut net, i);
        let now = net.now;
        net.devices[i].enable_discovery(now, 4222, if i == alice { "alice" } else { "bob" });
    }
    net.run_for(3_000);
    let nearby = |i: usize| {
        net.events[i].iter().any(|e| {
            matches!(e, DeviceEvent::Nearby(crate::discovery::Event::JamiPeer { name, .. })
                if name == if i == alice { "bob" } else { "alice" })
        })
    };
    assert!(nearby(alice) && nearby(bob), "{:?}", net.events[alice]);
    assert!(net.devices[alice].is_connected() && net.devices[bob].is_connected());
    let now = net.now;
    net.devices[bob].connect(now, account_id(&f.alice.0));
    net.run_for(20_000);
    let (l, _, _) = connected(&net, bob).unwrap_or_else(|| panic!("{:?}", jami(&net, bob)));
    assert_eq!(l, CandidateType::Host);
    let now = net.now;
    net.devices[bob].send_message(now, account_id(&f.alice.0), "text/plain", b"on the LAN");
    net.run_for(2_000);
    assert!(messages(&net, alice).contains(&("on the LAN".to_string(), Via::Sip)));
}

/// Breaks the model: the same LAN without discovery has no way in, so nobody connects.
#[test]
fn on_an_isolated_lan_without_discovery_nothing_connects() {
    let f = accounts();
    let mut net = Net::new_unbooted(&[&f.alice, &f.bob]);
    net.run_for(3_000);
    assert!(!net.devices[0].is_connected() && !net.devices[1].is_connected());
}

/// Forged, malformed and replayed connection requests at Alice's `peer:` key are refused
/// and counted, and Alice keeps serving Bob: his connection and message go through.
#[test]
fn forged_and_replayed_requests_are_counted_and_alice_keeps_serving() {
    use crate::connect::request::{self, PeerConnectionRequest};
    use crate::dht::value::Value;
    let f = accounts();
    // 0..5 plain, 5 Alice, 6 Bob (both with services), 7 Carol (announced, no services).
    let mut net = Net::new(5, &[&f.alice, &f.bob, &f.carol]);
    for i in [5, 6] {
        enable(&mut net, i);
    }
    let (alice, bob, carol) = (5, 6, 7);
    net.run_for(5_000);
    let now = net.now;
    let alice_dev = &f.alice.1;
    let key = request::peer_key(&InfoHash(alice_dev.short_id()));
    // Junk at the key: a plain value is not signed and encrypted to Alice.
    net.devices[carol].put(now, key, Value::plain(1, 0, b"junk".to_vec()));
    // A genuine request from Carol's device, then the same request id again (a replay,
    // as a second value).
    let req = PeerConnectionRequest {
        id: 4242,
        ice_msg: "ufrag\npwd\n".into(),
        is_answer: false,
        conn_type: String::new(),
    };
    let pk = alice_dev.certificate().public_key().expect("key").clone();
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    for vid in [11, 12] {
        let (k, v) = request::seal(&req, f.carol.1.key(), &pk, vid, &mut rng).expect("seal");
        assert_eq!(k, key);
        net.devices[carol].put(now, k, v);
    }
    net.run_for(5_000);
    let s = net.devices[alice]
        .services()
        .expect("services")
        .connection_stats();
    assert_eq!(s.requests.replayed, 1, "{s:?}");
    assert!(s.requests.forged >= 1, "the junk value: {s:?}");
    // Bob still gets through.
    let now = net.now;
    net.devices[bob].connect(now, account_id(&f.alice.0));
    net.run_for(20_000);
    assert!(connected(&net, bob).is_some(), "{:?}", jami(&net, bob));
    let now = net.now;
    net.devices[bob].send_message(now, account_id(&f.alice.0), "text/plain", b"still there");
    net.run_for(2_000);
    assert!(messages(&net, alice).contains(&("still there".to_string(), Via::Sip)));
}

/// Bob's account revoked his device (its CRL is at his account id): Alice, who follows
/// Bob, learns the CRL and her TLS verifier refuses the revoked device's chain, so no
/// connection forms. (Without the CRL the same connection forms: the first test.)
#[test]
fn a_revoked_device_is_refused_by_tls() {
    use crate::dht::value::Value;
    use crate::identity::{CertSigner, RevocationList};
    let f = accounts();
    let (alice, bob) = (6, 7);
    let mut net = with_services(6);
    let mut rng = ChaCha20Rng::seed_from_u64(41);
    let (acc, dev) = (&f.bob.0, &f.bob.1);
    let t = NOW / 1000;
    let empty = RevocationList::sign(
        CertSigner::Rsa(acc.account_key()),
        acc.certificate(),
        &[],
        None,
        t,
        &mut rng,
    )
    .expect("crl");
    let crl = empty
        .revoke(
            dev.certificate(),
            CertSigner::Rsa(acc.account_key()),
            acc.certificate(),
            t + 1,
            &mut rng,
        )
        .expect("revoke");
    let now = net.now;
    net.devices[2].put(
        now,
        account_id(acc),
        Value::plain(99, 0, crl.to_value_data()),
    );
    net.devices[alice].track(now, account_id(acc));
    net.run_for(5_000);
    let now = net.now;
    net.devices[bob].connect(now, account_id(&f.alice.0));
    net.run_for(20_000);
    assert!(connected(&net, alice).is_none(), "{:?}", jami(&net, alice));
    let refused = jami(&net, alice).into_iter().any(|e| {
        matches!(e, JamiEvent::Connection(ConnectionEvent::Closed { reason, .. }) if reason.contains("revoked"))
    });
    assert!(refused, "{:?}", jami(&net, alice));
}

/// `connect` before any device of the account is known: the devices verified later are
/// connected then (jamid's `forEachDevice` keeps looking too).
#[test]
fn connect_reaches_devices_found_later() {
    let f = accounts();
    let (alice, bob) = (6, 7);
    let mut net = Net::new(6, &[&f.alice, &f.bob]);
    for i in [alice, bob] {
        enable(&mut net, i);
    }
    let now = net.now;
    assert_eq!(
        net.devices[bob].connect(now, account_id(&f.alice.0)),
        Some(0)
    );
    net.run_for(25_000);
    assert!(connected(&net, bob).is_some(), "{:?}", jami(&net, bob));
}

/// Seventy connect / disconnect rounds between the same two devices: each set-up (to the
/// `sip` channel open) stays as fast as the first, so nothing in the manager or the DHT
/// bookkeeping grows with the connections already made. (The connect bench saw set-ups
/// slow down after ~45 rounds on real sockets; this rules the sans-IO side out.)
#[test]
fn repeated_connections_stay_fast() {
    let f = accounts();
    let bob = 7;
    let mut net = with_services(6);
    let mut times = Vec::new();
    for _ in 0..70 {
        let now = net.now;
        net.devices[bob].connect(now, account_id(&f.alice.0));
        let (start, before) = (net.now, net.events[bob].len());
        let mut up = None;
        for _ in 0..100 {
            net.run_for(100);
            let opened = net.events[bob][before..].iter().any(|e| {
                matches!(
                    e,
                    DeviceEvent::Jami(JamiEvent::Connection(ConnectionEvent::ChannelOpened { .. }))
                )
            });
            if opened {
                up = Some(net.now - start);
                break;
            }
        }
        times.push(up);
        let now = net.now;
        assert_eq!(net.devices[bob].disconnect(now, account_id(&f.alice.0)), 1);
        net.run_for(2_000);
    }
    assert!(
        times.iter().all(|t| t.is_some_and(|ms| ms <= 1_000)),
        "{times:?}"
    );
}
