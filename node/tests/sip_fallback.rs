//! The DHT message fallback (PROTOCOLS §6.7) between two devices whose SecureDht nodes
//! run on an in-memory network with routers: a message and its receipt, de-duplication,
//! forged values, and the one-minute give-up.

use node::crypto::inbox_key;
use node::dht::engine::{Config, Event};
use node::dht::infohash::InfoHash;
use node::dht::payload::{ImMessage, IM_MESSAGE_TYPE};
use node::dht::secure::{self, SecureDht};
use node::dht::value::{Body, Value};
use node::identity::{AccountIdentity, DeviceIdentity, NodeIdentity};
use node::sip::fallback::{DhtFallback, FallbackEvent, Refusal, GIVE_UP_MS};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::OnceLock;

const DELAY_MS: u64 = 20;
const ROUTERS: usize = 6;
const BITS: usize = 1024;

struct Ids {
    alice: AccountIdentity,
    alice_dev: DeviceIdentity,
    bob_dev: DeviceIdentity,
    mallory_dev: DeviceIdentity,
}

fn ids() -> &'static Ids {
    static I: OnceLock<Ids> = OnceLock::new();
    I.get_or_init(|| {
        let mut rng = ChaCha20Rng::seed_from_u64(66);
        let now = 1_790_000_000;
        let alice = AccountIdentity::generate(BITS, now, &mut rng).unwrap();
        let alice_dev = alice.new_device(BITS, now, &mut rng).unwrap();
        let bob = AccountIdentity::generate(BITS, now, &mut rng).unwrap();
        let bob_dev = bob.new_device(BITS, now, &mut rng).unwrap();
        let mallory = AccountIdentity::generate(BITS, now, &mut rng).unwrap();
        let mallory_dev = mallory.new_device(BITS, now, &mut rng).unwrap();
        Ids {
            alice,
            alice_dev,
            bob_dev,
            mallory_dev,
        }
    })
}

fn node_id(d: &DeviceIdentity) -> NodeIdentity {
    NodeIdentity::new(d.key().clone(), d.chain().to_vec()).unwrap()
}

/// Routers, then Alice's, Bob's and Mallory's devices.
struct Net {
    now: u64,
    nodes: Vec<SecureDht>,
    addrs: Vec<SocketAddr>,
    /// The fallback of each device node (none on routers, and none where a test wants
    /// a device that does not answer).
    apps: Vec<Option<DhtFallback>>,
    events: Vec<Vec<FallbackEvent>>,
    queue: VecDeque<(u64, usize, SocketAddr, Vec<u8>)>,
}

const ALICE: usize = ROUTERS;
const BOB: usize = ROUTERS + 1;
const MALLORY: usize = ROUTERS + 2;

impl Net {
    fn new(bob_answers: bool) -> Net {
        let now = 1_790_000_000_000;
        let i = ids();
        let mut nodes = Vec::new();
        for r in 0..ROUTERS {
            let cfg = Config::verifying(InfoHash::get(format!("router-{r}")), r as u64);
            nodes.push(SecureDht::new(cfg, None, now));
        }
        for (k, d) in [&i.alice_dev, &i.bob_dev, &i.mallory_dev]
            .into_iter()
            .enumerate()
        {
            let cfg = Config::verifying(InfoHash([0; 20]), 100 + k as u64);
            nodes.push(SecureDht::new(cfg, Some(node_id(d)), now));
        }
        let addrs: Vec<SocketAddr> = (0..nodes.len())
            .map(|k| SocketAddr::from(([10, 0, 0, k as u8 + 1], 4222)))
            .collect();
        for k in 1..nodes.len() {
            nodes[k].bootstrap(now, addrs[0]);
        }
        let n = nodes.len();
        let mut net = Net {
            now,
            nodes,
            addrs,
            apps: (0..n).map(|_| None).collect(),
            events: vec![Vec::new(); n],
            queue: VecDeque::new(),
        };
        net.run_for(20_000);
        let me = |d: &DeviceIdentity| d.short_id();
        for (k, d, on) in [
            (ALICE, &i.alice_dev, true),
            (BOB, &i.bob_dev, bob_answers),
            (MALLORY, &i.mallory_dev, false),
        ] {
            if on {
                let now = net.now;
                net.apps[k] = Some(DhtFallback::new(&mut net.nodes[k], now, InfoHash(me(d))));
            }
        }
        net.run_for(3_000);
        net
    }

    fn flush(&mut self, k: usize) {
        while let Some(t) = self.nodes[k].poll_transmit() {
            if let Some(j) = self.addrs.iter().position(|a| *a == t.to) {
                self.queue
                    .push_back((self.now + DELAY_MS, j, self.addrs[k], t.bytes));
            }
        }
        while let Some(e) = self.nodes[k].poll_event() {
            if let Some(app) = self.apps[k].as_mut() {
                app.handle_event(&mut self.nodes[k], self.now, &e);
            }
        }
        if let Some(app) = self.apps[k].as_mut() {
            while let Some(e) = app.poll_event() {
                self.events[k].push(e);
            }
        }
        // Commands the app gave while handling events.
        while let Some(t) = self.nodes[k].poll_transmit() {
            if let Some(j) = self.addrs.iter().position(|a| *a == t.to) {
                self.queue
                    .push_back((self.now + DELAY_MS, j, self.addrs[k], t.bytes));
            }
        }
    }

    fn run_for(&mut self, ms: u64) {
        let end = self.now + ms;
        for k in 0..self.nodes.len() {
            self.flush(k);
        }
        loop {
            let next_packet = self.queue.front().map(|q| q.0).unwrap_or(u64::MAX);
            let next_timer = (0..self.nodes.len())
                .filter_map(|k| {
                    let app = self.apps[k].as_ref().and_then(|a| a.poll_timeout());
                    [self.nodes[k].poll_timeout(), app]
                        .into_iter()
                        .flatten()
                        .min()
                })
                .min()
                .unwrap_or(u64::MAX);
            let t = next_packet.min(next_timer).min(end);
            self.now = t.max(self.now);
            while self.queue.front().is_some_and(|q| q.0 <= self.now) {
                let (_, j, from, bytes) = self.queue.pop_front().unwrap();
                self.nodes[j].handle_datagram(self.now, from, &bytes);
                self.flush(j);
            }
            for k in 0..self.nodes.len() {
                if self.nodes[k].poll_timeout().is_some_and(|d| d <= self.now) {
                    self.nodes[k].handle_timeout(self.now);
                    self.flush(k);
                }
                if let Some(app) = self.apps[k].as_mut() {
                    if app.poll_timeout().is_some_and(|d| d <= self.now) {
                        app.handle_timeout(&mut self.nodes[k], self.now);
                        self.flush(k);
                    }
                }
            }
            if self.now >= end {
                break;
            }
        }
    }

    fn send(&mut self, from: usize, token: u64, to: &DeviceIdentity, mime: &str, body: &str) {
        let now = self.now;
        let app = self.apps[from].as_mut().unwrap();
        app.send(
            &mut self.nodes[from],
            now,
            token,
            &[InfoHash(to.short_id())],
            mime,
            body,
        )
        .unwrap();
        self.flush(from);
    }

    fn app(&self, k: usize) -> &DhtFallback {
        self.apps[k].as_ref().unwrap()
    }
}

/// Rejections by reason on the routers' storage.
fn router_rejections(net: &Net, why: &str) -> u64 {
    net.nodes[..ROUTERS]
        .iter()
        .map(|n| n.storage().rejected.get(why).copied().unwrap_or(0))
        .sum()
}

#[test]
fn a_message_crosses_the_dht_and_its_receipt_comes_back() {
    let i = ids();
    let mut net = Net::new(true);
    let body = r#"{"id":"conv","commit":"c0ffee","deviceId":"d"}"#;
    net.send(
        ALICE,
        0x1234_5678_9abc,
        &i.bob_dev,
        "application/im-gitmessage-id",
        body,
    );
    net.run_for(5_000);
    let got: Vec<_> = net.events[BOB].drain(..).collect();
    assert_eq!(got.len(), 1, "{got:?}");
    let FallbackEvent::Received(m) = &got[0] else {
        panic!("{got:?}")
    };
    assert_eq!(m.id, 0x1234_5678_9abc);
    assert_eq!(m.message_id(), "0000123456789abc");
    assert_eq!(m.mime, "application/im-gitmessage-id");
    assert_eq!(m.body, body);
    assert_eq!(m.from_account.0, i.alice.account_id());
    assert_eq!(m.from_device.0, i.alice_dev.short_id());
    assert_eq!(net.app(BOB).stats.receipts_sent, 1);
    // The receipt shares the key (Bob's inbox) but not the value id: OpenDHT packs an
    // ImMessage into a value without an id (`Value{TYPE, obj}`) and the put draws one,
    // so no node refuses it as an edit of the message, and Alice hears it.
    assert_eq!(router_rejections(&net, "edit by another owner"), 0);
    assert_eq!(
        net.events[ALICE],
        vec![FallbackEvent::Delivered {
            token: 0x1234_5678_9abc,
            device: InfoHash(i.bob_dev.short_id()),
        }]
    );
    net.events[ALICE].clear();
    assert_eq!(net.app(ALICE).poll_timeout(), None, "no longer waiting");

    // The same id again (a resend): no second report, no second receipt.
    net.send(ALICE, 0x1234_5678_9abc, &i.bob_dev, "text/plain", "again");
    net.run_for(5_000);
    assert!(net.events[BOB].is_empty(), "{:?}", net.events[BOB]);
    assert_eq!(net.app(BOB).stats.receipts_sent, 1);

    // And the other way, text/plain by default.
    net.send(BOB, 77, &i.alice_dev, "", "hi alice");
    net.run_for(5_000);
    assert!(
        matches!(&net.events[ALICE][1..], [FallbackEvent::Received(m)] if m.mime == "text/plain" && m.body == "hi alice")
    );
}

/// The receipt as a listener gets it where a node did store it (OpenDHT stores a
/// node's own put unconditionally, so a recipient node among the closest to its inbox
/// notifies listeners): the decrypted value SecureDht's filter hands over.
fn receipt(net: &Net, signer: &DeviceIdentity, id: u64, encrypted: bool) -> Value {
    let i = ids();
    let r = ImMessage {
        id,
        date: 1,
        ..ImMessage::default()
    };
    let body = Body {
        type_id: IM_MESSAGE_TYPE,
        data: r.pack(),
        utype: String::new(),
    };
    if !encrypted {
        return secure::sign(signer.key(), id, 0, body, None).unwrap();
    }
    let alice_pk = i.alice_dev.certificate().public_key().unwrap().clone();
    let mut rng = ChaCha20Rng::seed_from_u64(net.now);
    let v = secure::encrypt(signer.key(), id, 0, body, &alice_pk, &mut rng).unwrap();
    secure::decrypt(i.alice_dev.key(), &v).unwrap()
}

#[test]
fn receipts_deliver_forged_ones_are_refused_and_silence_fails_after_a_minute() {
    let i = ids();
    let mut net = Net::new(false);
    net.send(ALICE, 9, &i.bob_dev, "text/plain", "anyone?");
    net.run_for(3_000);
    let listens = net.app(ALICE).receipt_listens(9).to_vec();
    assert_eq!(listens.len(), 1);
    let bob_inbox = InfoHash(inbox_key(&i.bob_dev.short_id()));
    let feed = |net: &mut Net, v: Value| {
        let e = Event::Values {
            op: listens[0],
            key: bob_inbox,
            values: vec![v],
        };
        let now = net.now;
        let app = net.apps[ALICE].as_mut().unwrap();
        assert!(app.handle_event(&mut net.nodes[ALICE], now, &e));
        net.flush(ALICE);
    };
    // Mallory's device (valid, another account) signs a receipt for id 9; a plain
    // signed one; one for another id.
    let forged = receipt(&net, &i.mallory_dev, 9, true);
    feed(&mut net, forged);
    let plain = receipt(&net, &i.bob_dev, 9, false);
    feed(&mut net, plain);
    let other = receipt(&net, &i.bob_dev, 10, true);
    feed(&mut net, other);
    assert!(net.events[ALICE].is_empty(), "{:?}", net.events[ALICE]);
    let refused = &net.app(ALICE).stats.refused;
    assert_eq!(
        refused.get(&Refusal::ForgedReceipt),
        Some(&1),
        "{refused:?}"
    );
    assert_eq!(refused.get(&Refusal::NotEncrypted), Some(&1), "{refused:?}");
    // Bob's real receipt delivers.
    let real = receipt(&net, &i.bob_dev, 9, true);
    feed(&mut net, real);
    assert_eq!(
        net.events[ALICE],
        vec![FallbackEvent::Delivered {
            token: 9,
            device: InfoHash(i.bob_dev.short_id())
        }]
    );
    assert!(
        net.app(ALICE).receipt_listens(9).is_empty(),
        "listen cancelled"
    );

    // Bob's device runs no fallback: the next message is never confirmed.
    net.events[ALICE].clear();
    net.send(ALICE, 11, &i.bob_dev, "text/plain", "still there?");
    net.run_for(GIVE_UP_MS - 100);
    assert!(net.events[ALICE].is_empty());
    net.run_for(200);
    assert_eq!(
        net.events[ALICE],
        vec![FallbackEvent::Failed {
            token: 11,
            timed_out: true
        }]
    );
    assert_eq!(net.app(ALICE).poll_timeout(), None);
}

#[test]
fn messages_to_alice_from_unknown_or_malformed_senders_are_refused() {
    let i = ids();
    let mut net = Net::new(true);
    let alice_inbox = InfoHash(inbox_key(&i.alice_dev.short_id()));
    let to_alice = InfoHash(i.alice_dev.short_id());
    let now = net.now;
    // Malformed ImMessage payload, properly encrypted and signed by Bob's device.
    let junk = Body {
        type_id: IM_MESSAGE_TYPE,
        data: vec![0xc1, 0x00],
        utype: String::new(),
    };
    net.nodes[BOB].put_encrypted(now, alice_inbox, to_alice, 5, junk);
    // An ImMessage whose id differs from the value id: fine (OpenDHT draws value ids at
    // random), so it is reported.
    let odd = ImMessage {
        id: 6,
        msg: "x".into(),
        ..ImMessage::default()
    };
    let odd = Body {
        type_id: IM_MESSAGE_TYPE,
        data: odd.pack(),
        utype: String::new(),
    };
    net.nodes[BOB].put_encrypted(now, alice_inbox, to_alice, 7, odd);
    // Another type at the inbox (a trust request's type) is not ours: ignored.
    let other = Body {
        type_id: 4,
        data: vec![0x80],
        utype: String::new(),
    };
    net.nodes[BOB].put_encrypted(now, alice_inbox, to_alice, 8, other);
    // Well formed and encrypted to Alice, but signed by a key with no device
    // certificate on the DHT (Alice's account key): the sender lookup finds nothing.
    let msg = ImMessage {
        id: 12,
        msg: "who am I".into(),
        ..ImMessage::default()
    };
    let body = Body {
        type_id: IM_MESSAGE_TYPE,
        data: msg.pack(),
        utype: String::new(),
    };
    let pk = i.alice_dev.certificate().public_key().unwrap().clone();
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let v = secure::encrypt(i.alice.account_key(), 12, 0, body, &pk, &mut rng).unwrap();
    net.nodes[BOB].put(now, alice_inbox, v);
    net.flush(BOB);
    net.run_for(5_000);
    let got: Vec<u64> = net.events[ALICE]
        .iter()
        .filter_map(|e| match e {
            FallbackEvent::Received(m) => Some(m.id),
            _ => None,
        })
        .collect();
    assert_eq!(got, vec![6], "{:?}", net.events[ALICE]);
    let refused = &net.app(ALICE).stats.refused;
    assert_eq!(refused.get(&Refusal::Malformed), Some(&1), "{refused:?}");
    assert_eq!(refused.get(&Refusal::BadSender), Some(&1), "{refused:?}");
    assert_eq!(refused.values().sum::<u64>(), 2);
    // Only the well-formed message from Bob's device is confirmed.
    assert_eq!(net.app(ALICE).stats.receipts_sent, 1);
    net.events[ALICE].clear();
    // Sending to a device that published no certificate: the put fails at once.
    let now = net.now;
    let app = net.apps[ALICE].as_mut().unwrap();
    app.send(
        &mut net.nodes[ALICE],
        now,
        10,
        &[InfoHash([9; 20])],
        "text/plain",
        "x",
    )
    .unwrap();
    net.flush(ALICE);
    net.run_for(5_000);
    assert_eq!(
        net.events[ALICE],
        vec![FallbackEvent::Failed {
            token: 10,
            timed_out: false
        }]
    );
    // Limits.
    let now = net.now;
    let app = net.apps[ALICE].as_mut().unwrap();
    let big = "x".repeat(node::sip::fallback::MAX_BODY + 1);
    assert!(app
        .send(
            &mut net.nodes[ALICE],
            now,
            11,
            &[to_alice],
            "text/plain",
            &big
        )
        .is_err());
    assert!(app
        .send(
            &mut net.nodes[ALICE],
            now,
            12,
            &[to_alice],
            "text/plain",
            "self only"
        )
        .is_err());
}
