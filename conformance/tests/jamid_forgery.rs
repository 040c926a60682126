//! Forged devices against the real jamid's TLS checks (PROTOCOLS §6.4): each of our
//! devices below is announced honestly on the DHT, asks jamid for a connection, and then
//! presents something else in the TLS handshake. jamid (the TLS client, as the side that
//! received the request) requires the chain to be the one it holds for the requesting
//! device. An honest device of ours is the control: it connects.
//!
//! - another device than announced: the chain and key of a second device of the same
//!   account;
//! - a device issued by another account: the announced device's own key, certified by
//!   another account;
//! - a revoked device: honest chain, but the account's CRL revoking it is on the DHT at
//!   the account id. jamid 13.7 does not look for it on an incoming request and connects
//!   (measured here; the issue expected a refusal: the real program wins). Ours refuses
//!   such a device once it has the CRL (node/src/device/tests/connections.rs).
//!
//! Our own verifier refuses the same forgeries: node/src/connect/tls/tests.rs
//! (`forgeries_are_refused_on_both_sides_with_their_reason`) and the revoked device in
//! node/src/device/tests/connections.rs.

use conformance::ours::{self, connected, jamid_log, wait, Cmd, Report, Spec};
use node::connect::manager::{ConnectionEvent, ManagerConfig};
use node::device::jami::JamiEvent;
use node::dht::{InfoHash, Value};
use node::driver::unix_ms;
use node::identity::{CertSigner, DeviceIdentity, RevocationList};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc::channel;
use std::time::Duration;

const DHTNODE_PORT: u16 = 4253;
const STEP: Duration = Duration::from_secs(60);
const BITS: usize = 2048;
const HOST_IP: [u8; 4] = [198, 51, 100, 1];

const HONEST: usize = 0;
const OTHER_DEVICE: usize = 1;
const OTHER_ACCOUNT: usize = 2;
const REVOKED: usize = 3;
const NAMES: [&str; 4] = [
    "honest",
    "another device than announced",
    "issued by another account",
    "revoked device",
];

#[test]
fn jamid_refuses_forged_devices_in_tls() {
    if !conformance::jamid_or_skip() {
        return;
    }
    let _serial = conformance::jamid::one_at_a_time();
    let t = unix_ms() / 1000;
    let mut ids = ours::identities(5, 93);
    let (stranger, _) = ids.pop().expect("five");
    let uri: Vec<String> = ids
        .iter()
        .map(|(a, _)| InfoHash(a.account_id()).to_string())
        .collect();
    let mut rng = ChaCha20Rng::seed_from_u64(94);
    // What each device presents in TLS.
    let second = ids[OTHER_DEVICE].0.new_device(BITS, t, &mut rng).unwrap();
    let own_key = ids[OTHER_ACCOUNT].1.key().clone();
    let cert = stranger
        .issue_device(&own_key.public_key(), t, &mut rng)
        .unwrap();
    let mut chain = vec![cert];
    chain.extend(stranger.chain().iter().cloned());
    let foreign = DeviceIdentity::new(own_key, chain).unwrap();
    let present = [None, Some(second), Some(foreign), None];
    let (racc, rdev) = (&ids[REVOKED].0, &ids[REVOKED].1);
    let crl = RevocationList::sign(
        CertSigner::Rsa(racc.account_key()),
        racc.certificate(),
        &[],
        None,
        t,
        &mut rng,
    )
    .and_then(|e| {
        e.revoke(
            rdev.certificate(),
            CertSigner::Rsa(racc.account_key()),
            racc.certificate(),
            t + 1,
            &mut rng,
        )
    })
    .unwrap();
    let revoked_account = InfoHash(racc.account_id());

    let lab = ours::JamidOnDht::start("jsforge", DHTNODE_PORT);
    let (ns, jamid, jk) = (&lab.ns, &lab.jamid, lab.uri);

    let specs: Vec<Spec> = ids
        .into_iter()
        .zip(present)
        .enumerate()
        .map(|(i, ((account, device), present))| Spec {
            account,
            device,
            manager: ManagerConfig {
                host_ips: vec![IpAddr::from(HOST_IP)],
                seed: 97 + i as u64,
                present,
                ..ManagerConfig::default()
            },
        })
        .collect();
    let (cmd, cmd_rx) = channel();
    let (tx, rx) = channel();
    let boot = SocketAddr::from(([127, 0, 0, 1], DHTNODE_PORT));
    let worker = ns.spawn(move || ours::run(specs, boot, cmd_rx, tx));
    let mut up = [false; 4];
    assert!(wait(&rx, Duration::from_secs(20), |r| {
        if let Report::DhtUp(i) = r {
            up[*i] = true;
        }
        up.iter().all(|u| *u)
    }));
    cmd.send(Cmd::Put(
        REVOKED,
        revoked_account,
        Value::plain(99, 0, crl.to_value_data()),
    ))
    .unwrap();
    let mut online = [false; 4];
    for i in 0..4 {
        cmd.send(Cmd::Track(i, jk)).unwrap();
    }
    assert!(wait(&rx, STEP, |r| {
        if let Report::Online(i, a) = r {
            online[*i] |= *a == jk;
        }
        online.iter().all(|o| *o)
    }));
    std::thread::sleep(Duration::from_secs(2));
    for i in 0..4 {
        cmd.send(Cmd::Connect(i, jk)).unwrap();
    }
    // Each ends connected or closed; nothing is retried.
    let mut outcome: [Option<Result<String, String>>; 4] = Default::default();
    wait(&rx, STEP, |r| {
        for (i, o) in outcome.iter_mut().enumerate() {
            if o.is_some() {
                continue;
            }
            if let Some((p, _, ms)) = connected(r, i, &jk) {
                *o = Some(Ok(format!("connected in {ms} ms over {p}")));
            } else if let Report::Jami(
                j,
                JamiEvent::Connection(ConnectionEvent::Closed { reason, .. }),
            ) = r
            {
                if *j == i {
                    *o = Some(Err(reason.clone()));
                }
            }
        }
        outcome.iter().all(|o| o.is_some())
    });
    for (i, o) in outcome.iter().enumerate() {
        eprintln!("{}: {o:?}", NAMES[i]);
    }
    eprintln!("jamid's log:\n{}", jamid_log(jamid));
    assert!(
        matches!(outcome[HONEST], Some(Ok(_))),
        "the honest device connects"
    );
    for i in [OTHER_DEVICE, OTHER_ACCOUNT] {
        assert!(
            matches!(outcome[i], Some(Err(_))),
            "jamid refuses {}: {:?}",
            NAMES[i],
            outcome[i]
        );
    }
    // jamid logs "Refusing peer certificate" for each; ours sees its close_notify.
    assert!(
        matches!(outcome[REVOKED], Some(Ok(_))),
        "jamid 13.7 accepted the revoked device when this test was written: {:?}",
        outcome[REVOKED]
    );

    // The other direction: jamid requests (it is the TLS server and expects the chain it
    // holds for the device), our forgers answer as TLS client with the forged chain.
    for i in [OTHER_DEVICE, OTHER_ACCOUNT] {
        let _id: u64 = jamid
            .call(
                "ConfigurationManager",
                "sendTextMessage",
                &(
                    &lab.account,
                    &uri[i],
                    conformance::jamid::Details::from([(
                        "text/plain".to_string(),
                        "hi".to_string(),
                    )]),
                ),
            )
            .unwrap();
        let mut up = false;
        let closed = wait(&rx, STEP, |r| {
            up |= connected(r, i, &jk).is_some();
            matches!(r, Report::Jami(j, JamiEvent::Connection(ConnectionEvent::Closed { .. })) if *j == i)
        });
        eprintln!("jamid -> {}: closed {closed}, connected {up}", NAMES[i]);
        assert!(closed && !up, "jamid as TLS server refuses {}", NAMES[i]);
    }
    cmd.send(Cmd::Stop).unwrap();
    let _ = worker.join();
}
