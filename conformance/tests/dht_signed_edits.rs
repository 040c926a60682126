//! Signed values as editable records, against the official `dhtnode` (OpenDHT 2.4.12):
//! an edit with a higher `seq` replaces the value on dhtnode and here; a stale edit, an
//! edit by another owner and a forged signature are refused by both. What dhtnode keeps
//! is read back by a fresh node of ours whose only peer is dhtnode.

use conformance::dhtnode::DhtNode;
use conformance::netns::Netns;
use node::crypto::PrivateKey;
use node::dht::engine::{Config, Dht, Event};
use node::dht::secure::sign;
use node::dht::{Body, InfoHash, Value, ValueData};
use node::driver::{unix_ms, UdpDriver};
use rand::SeedableRng;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const DHTNODE_PORT: u16 = 4230;

fn node(seed: u64) -> Dht {
    Dht::new(
        Config::verifying(InfoHash::get(format!("edits-{seed}")), seed),
        unix_ms(),
    )
}

/// Put and wait for the put to finish.
fn put(d: &mut UdpDriver, key: InfoHash, v: Value) {
    let op = d.dht.put(unix_ms(), key, v);
    let done = d
        .run_until(
            Duration::from_secs(5),
            |e| matches!(e, Event::PutDone { op: o, .. } if *o == op),
        )
        .unwrap();
    assert!(done, "put finished");
}

/// A value as the assertions compare it: (id, seq of a signed value, data as text).
type Seen = (u64, Option<u16>, String);

fn seen(v: &Value) -> Seen {
    let seq = match &v.data {
        ValueData::Signed(s) => Some(s.seq),
        _ => None,
    };
    let text = v
        .body()
        .map(|b| String::from_utf8_lossy(&b.data).into_owned())
        .unwrap_or_default();
    (v.id, seq, text)
}

/// Every value a get at `key` returns.
fn get_all(d: &mut UdpDriver, key: InfoHash) -> Vec<Seen> {
    let op = d.dht.get(unix_ms(), key);
    let mut found = Vec::new();
    d.run_until(Duration::from_secs(5), |e| match e {
        Event::Values { op: o, values, .. } if *o == op => {
            found.extend(values.iter().map(seen));
            false
        }
        Event::GetDone { op: o, .. } => *o == op,
        _ => false,
    })
    .unwrap();
    found.sort();
    found
}

/// What our storage holds at `key`.
fn stored(d: &UdpDriver, key: InfoHash) -> Vec<Seen> {
    let mut v: Vec<Seen> = d
        .dht
        .storage()
        .get(&key.0)
        .iter()
        .filter_map(|e| Value::unpack(&e.value.packed).ok())
        .map(|v| seen(&v))
        .collect();
    v.sort();
    v
}

/// A node of ours (seed `seed`) that joined the DHT through dhtnode.
fn joined(seed: u64) -> UdpDriver {
    let mut d = UdpDriver::bind(node(seed), "127.0.0.1:0".parse().unwrap()).unwrap();
    d.dht
        .bootstrap(unix_ms(), SocketAddr::from(([127, 0, 0, 1], DHTNODE_PORT)));
    assert!(
        d.run_until(Duration::from_secs(5), |e| matches!(e, Event::Connected))
            .unwrap(),
        "our node {seed} joins through dhtnode"
    );
    d
}

/// Keep our node turning until dhtnode prints `needle` after `at` (15 s at most).
fn pump_until(a: &mut UdpDriver, official: &DhtNode, at: usize, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(tail) = official.wait_for(at, needle, Duration::ZERO) {
            return tail;
        }
        assert!(
            Instant::now() < deadline,
            "dhtnode prints {needle:?}:\n{}",
            &official.log_text()[at..]
        );
        a.turn(Duration::from_millis(5), &mut |_, _| {}).unwrap();
    }
}

#[test]
fn signed_edits_replace_and_stale_foreign_or_forged_ones_are_refused_on_both_sides() {
    if !conformance::dhtnode_or_skip() {
        return;
    }
    let ns = Netns::create("jsedit").expect("namespace");
    let mut official = DhtNode::start(&ns, DHTNODE_PORT, None, true).expect("dhtnode starts");
    let worker = ns.spawn(move || {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        let alice = PrivateKey::generate(2048, &mut rng).unwrap();
        let mallory = PrivateKey::generate(2048, &mut rng).unwrap();
        let mut a = joined(1);

        // 1. Our edits, stored by dhtnode (and by us).
        let k1 = InfoHash::get("edited-by-rust");
        let id = 0x5eed;
        let v1 = sign(&alice, id, 1, Body::text("edit v1"), None).unwrap();
        let v2 = sign(&alice, id, 2, Body::text("edit v2"), None).unwrap();
        let stale = sign(&alice, id, 1, Body::text("edit stale"), None).unwrap();
        let foreign = sign(&mallory, id, 3, Body::text("edit foreign"), None).unwrap();
        let mut forged = sign(&alice, id, 4, Body::text("edit forged"), None).unwrap();
        if let (ValueData::Signed(f), ValueData::Signed(good)) = (&mut forged.data, &v2.data) {
            f.sig = good.sig.clone();
        }
        put(&mut a, k1, v1);
        put(&mut a, k1, v2);
        let after_edit = stored(&a, k1);
        // dhtnode's own get shows our signed value at seq 2.
        let at = official.log_len();
        official.command("g edited-by-rust").unwrap();
        let dhtnode_get = pump_until(&mut a, &official, at, "Get: completed");
        for bad in [stale, foreign, forged] {
            put(&mut a, k1, bad);
        }
        let ours_k1 = stored(&a, k1);

        // A listen on dhtnode's side hears our put within a second.
        let at = official.log_len();
        official.command("l heard-by-dhtnode").unwrap();
        pump_until(&mut a, &official, at, "Listening, token");
        a.run_for(Duration::from_millis(500), &mut |_, _| {})
            .unwrap();
        let at = official.log_len();
        let sent = Instant::now();
        a.dht.put(
            unix_ms(),
            InfoHash::get("heard-by-dhtnode"),
            Value::plain(0x1157, 0, b"for your listen".to_vec()),
        );
        pump_until(&mut a, &official, at, "Value[id:1157");
        let heard_after = sent.elapsed();

        // 2. dhtnode's own signed value, then a takeover by another owner and a forgery of
        //    it, sent from here: refused here and by dhtnode.
        let k2 = InfoHash::get("signed-by-dhtnode-for-edits");
        let at = official.log_len();
        official
            .command("s signed-by-dhtnode-for-edits official")
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        while official
            .wait_for(at, "Put signed: success", Duration::ZERO)
            .is_none()
        {
            assert!(Instant::now() < deadline, "dhtnode's signed put succeeds");
            a.turn(Duration::from_millis(20), &mut |_, _| {}).unwrap();
        }
        a.run_for(Duration::from_millis(300), &mut |_, _| {})
            .unwrap();
        let theirs = a
            .dht
            .storage()
            .get(&k2.0)
            .iter()
            .find_map(|e| Value::unpack(&e.value.packed).ok())
            .expect("dhtnode's signed value is stored here");
        let ValueData::Signed(official_signed) = &theirs.data else {
            panic!("dhtnode's `s` value is signed: {theirs:?}");
        };
        let takeover = sign(
            &alice,
            theirs.id,
            official_signed.seq + 1,
            Body::text("hijacked"),
            None,
        )
        .unwrap();
        let mut tampered = theirs.clone();
        if let ValueData::Signed(t) = &mut tampered.data {
            t.seq += 1;
            t.body.data = b"tampered".to_vec();
            t.received_body = None;
        }
        put(&mut a, k2, takeover);
        put(&mut a, k2, tampered);
        let ours_k2 = stored(&a, k2);
        let rejected_here = a.dht.stats.rejected_values;
        drop(a);

        // 3. What dhtnode kept: a fresh node whose only peer is dhtnode asks.
        let mut b = joined(2);
        let dhtnode_k1 = get_all(&mut b, k1);
        let dhtnode_k2 = get_all(&mut b, k2);
        assert!(
            dhtnode_get.contains("signed (v2)") && dhtnode_get.contains("\"edit v2\""),
            "dhtnode gets our signed value (its signature verified there):\n{dhtnode_get}"
        );
        eprintln!("dhtnode's listen heard our put after {heard_after:?}");
        assert!(
            heard_after < Duration::from_secs(1),
            "dhtnode's listen hears our put within 1 s: {heard_after:?}"
        );
        let edit_v2 = (0x5eed, Some(2), "edit v2".to_string());
        assert_eq!(
            after_edit,
            vec![edit_v2.clone()],
            "seq 2 replaced seq 1 here"
        );
        assert_eq!(
            ours_k1,
            vec![edit_v2.clone()],
            "stale, foreign and forged edits refused here"
        );
        assert_eq!(
            dhtnode_k1,
            vec![edit_v2.clone()],
            "dhtnode replaced seq 1 by seq 2 and refused the stale, foreign and forged edits"
        );
        assert_eq!(
            ours_k2.len(),
            1,
            "one value at dhtnode's key here: {ours_k2:?}"
        );
        assert_eq!(
            ours_k2[0].2, "official",
            "dhtnode's value survives here: {ours_k2:?}"
        );
        assert!(rejected_here >= 3, "refusals counted here: {rejected_here}");
        assert_eq!(
            dhtnode_k2.len(),
            1,
            "dhtnode keeps one value: {dhtnode_k2:?}"
        );
        assert_eq!(
            dhtnode_k2[0].2, "official",
            "dhtnode refused the takeover and the forgery of its value: {dhtnode_k2:?}"
        );
    });
    worker
        .join()
        .expect("our nodes ran and saw all of the above");
}
