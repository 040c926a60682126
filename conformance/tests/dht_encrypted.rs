//! Certificates and encrypted values against the official `dhtnode -i` (OpenDHT 2.4.12):
//! each side announces its certificate (type 8) and finds the other's; dhtnode's `e`
//! encrypts for our key and we decrypt it; we encrypt for dhtnode's key and dhtnode
//! decrypts it. The node ids both derive from their certificates.

use conformance::dhtnode::DhtNode;
use conformance::netns::Netns;
use node::dht::engine::{Config, Event};
use node::dht::secure::{certificate_key, SecureDht, CERTIFICATE_TYPE};
use node::dht::{Body, InfoHash, ValueData};
use node::driver::{unix_ms, UdpDriver};
use node::identity::NodeIdentity;
use rand::SeedableRng;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const DHTNODE_PORT: u16 = 4235;

#[test]
fn encrypted_values_cross_between_our_node_and_dhtnode_both_ways() {
    if !conformance::dhtnode_or_skip() {
        return;
    }
    let ns = Netns::create("jsenc").expect("namespace");
    let mut official = DhtNode::start(&ns, DHTNODE_PORT, None, true).expect("dhtnode starts");
    let their_key = official.public_key_id().unwrap_or_else(|| {
        panic!(
            "dhtnode -i prints its public key id:\n{}",
            official.log_text()
        )
    });
    let worker = ns.spawn(move || {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(11);
        let identity = NodeIdentity::generate(2048, unix_ms() / 1000, &mut rng).unwrap();
        let our_key = identity.short_id();
        let our_node_id = identity.node_id();
        let dht = SecureDht::new(
            Config::verifying(InfoHash::get("replaced by the identity's"), 11),
            Some(identity),
            unix_ms(),
        );
        assert_eq!(
            dht.id().0,
            our_node_id,
            "node id derives from the certificate"
        );
        let mut d = UdpDriver::bind(dht, "127.0.0.1:0".parse().unwrap()).unwrap();
        d.dht
            .bootstrap(unix_ms(), SocketAddr::from(([127, 0, 0, 1], DHTNODE_PORT)));
        assert!(d
            .run_until(Duration::from_secs(5), |e| matches!(e, Event::Connected))
            .unwrap());
        // Our certificate announcement goes out on connection.
        d.run_for(Duration::from_secs(1), &mut |_, _| {}).unwrap();

        // 1. dhtnode encrypts for us (it must find our certificate first).
        let at = official.log_len();
        official
            .command(&format!(
                "e enc-for-rust {} secret-for-rust",
                InfoHash(our_key)
            ))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        let put = loop {
            let tail = official.log_text()[at..].to_string();
            if tail.contains("Put encrypted: ") {
                break tail;
            }
            assert!(Instant::now() < deadline, "dhtnode's `e` finishes:\n{tail}");
            d.turn(Duration::from_millis(20), &mut |_, _| {}).unwrap();
        };
        let op = d.dht.get(unix_ms(), InfoHash::get("enc-for-rust"));
        let mut got = None;
        d.run_until(Duration::from_secs(5), |e| {
            if let Event::Values { op: o, values, .. } = e {
                if *o == op {
                    got = values.iter().find_map(|v| match &v.data {
                        ValueData::Signed(s) => Some((
                            String::from_utf8_lossy(&s.body.data).into_owned(),
                            s.to,
                            InfoHash(node::crypto::short_id(&s.owner)),
                        )),
                        _ => None,
                    });
                }
            }
            got.is_some()
        })
        .unwrap();

        // 2. We find dhtnode's certificate and encrypt for it.
        let op = d.dht.get(unix_ms(), their_key);
        let mut found_cert = false;
        d.run_until(Duration::from_secs(5), |e| {
            if let Event::Values { op: o, values, .. } = e {
                found_cert |= *o == op
                    && values.iter().any(|v| {
                        v.body().is_some_and(|b| b.type_id == CERTIFICATE_TYPE)
                            && certificate_key(v, &their_key).is_some()
                    });
            }
            found_cert
        })
        .unwrap();
        let op = d.dht.put_encrypted(
            unix_ms(),
            InfoHash::get("enc-for-dhtnode"),
            their_key,
            0xe1,
            Body::text("secret-for-dhtnode"),
        );
        let mut stored_on = None;
        d.run_until(Duration::from_secs(10), |e| match e {
            Event::PutDone {
                op: o,
                stored_on: n,
                ..
            } if *o == op => {
                stored_on = Some(*n);
                true
            }
            Event::Failed { op: o, reason, .. } if *o == op => panic!("encrypted put: {reason}"),
            _ => false,
        })
        .unwrap();
        let at = official.log_len();
        official.command("g enc-for-dhtnode").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let dhtnode_got = loop {
            let tail = official.log_text()[at..].to_string();
            if tail.contains("Get: completed") || tail.contains("Get: failure") {
                break tail;
            }
            assert!(Instant::now() < deadline, "dhtnode's get finishes:\n{tail}");
            d.turn(Duration::from_millis(20), &mut |_, _| {}).unwrap();
        };
        (
            put,
            got,
            our_key,
            found_cert,
            stored_on,
            dhtnode_got,
            d.dht.secure_stats.clone(),
        )
    });
    let (put, got, our_key, found_cert, stored_on, dhtnode_got, stats) =
        worker.join().expect("our node ran");
    assert!(
        put.contains("Put encrypted: success"),
        "dhtnode found our certificate and put its encrypted value:\n{put}"
    );
    let (plain, to, owner) = got.expect("we got dhtnode's encrypted value and decrypted it");
    assert_eq!(plain, "secret-for-rust");
    assert_eq!(to, Some(InfoHash(our_key)), "addressed to our key");
    assert_eq!(owner, their_key, "signed by dhtnode's key");
    assert!(
        found_cert,
        "dhtnode's certificate is announced and found at its key id"
    );
    assert!(
        matches!(stored_on, Some(n) if n > 0),
        "our encrypted put was stored: {stored_on:?}"
    );
    assert!(
        dhtnode_got.contains("secret-for-dhtnode") && dhtnode_got.contains("decrypted"),
        "dhtnode decrypts our value:\n{dhtnode_got}"
    );
    eprintln!("secure layer counters here: {stats:?}\ndhtnode: {dhtnode_got}");
}
