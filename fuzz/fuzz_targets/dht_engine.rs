//! The DHT engine fed hostile datagrams from a few peers while it runs a bootstrap, a get, a
//! put and a listen: it never panics, and every datagram it sends decodes and re-encodes to
//! the same bytes. Inputs are framed by `jamisim_fuzz::engine_input`; a record may ask
//! the harness to patch in the transaction id and token the engine last gave that peer,
//! so replies and token-checked requests get past the first checks.
#![no_main]

use jamisim_fuzz::engine_input::{self, PEERS};
use libfuzzer_sys::fuzz_target;
use node::dht::engine::{Config, Dht};
use node::dht::value::Value;
use node::dht::wire::{self, MessageBody};
use node::dht::InfoHash;
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// What the engine last told each peer.
#[derive(Default)]
struct Seen {
    tid: BTreeMap<SocketAddr, u32>,
    token: BTreeMap<SocketAddr, Vec<u8>>,
}

fuzz_target!(
    init: jamisim_fuzz::seeds::write_if_asked("dht_engine"),
    |data: &[u8]| {
        let mut now: u64 = 1_700_000_000_000;
        let mut dht = Dht::new(
            Config {
                id: InfoHash::get("jamisim-fuzz"),
                network: 0,
                seed: 7,
                verify: Some(Box::new(node::crypto::verify)),
            },
            now,
        );
        let key = InfoHash::get("key");
        let bootstrap: SocketAddr = PEERS[0].parse().expect("addr");
        dht.bootstrap(now, bootstrap);
        dht.get(now, key);
        dht.put(now, key, Value::plain(42, 0, b"fuzz".to_vec()));
        dht.listen(now, key);
        let mut seen = Seen::default();
        drain(&mut dht, &mut seen);
        for r in engine_input::parse(data) {
            now += r.advance_ms;
            let bytes = if r.patch {
                patched(&r.bytes, &seen, r.from)
            } else {
                r.bytes
            };
            dht.handle_datagram(now, r.from, &bytes);
            if dht.poll_timeout().is_some_and(|t| t <= now) {
                dht.handle_timeout(now);
            }
            drain(&mut dht, &mut seen);
        }
        // Let every retry, expiry and reassembly timer fire once.
        now += 120_000;
        dht.handle_timeout(now);
        drain(&mut dht, &mut seen);
    }
);

fn drain(dht: &mut Dht, seen: &mut Seen) {
    while let Some(t) = dht.poll_transmit() {
        let m = wire::decode(&t.bytes).expect("the engine's datagrams decode");
        assert_eq!(
            wire::encode(&m),
            t.bytes,
            "the engine's datagrams are canonical"
        );
        match &m.body {
            MessageBody::Reply(r) => {
                if !r.token.is_empty() {
                    seen.token.insert(t.to, r.token.clone());
                }
            }
            MessageBody::Error(_) | MessageBody::ValueParts(_) => {}
            _ => {
                seen.tid.insert(t.to, m.tid);
            }
        }
    }
    while dht.poll_event().is_some() {}
}

/// `bytes` with the tid of a reply/error set to our last request to `from`, and the token
/// of a put/listen/refresh set to the one we last gave `from`.
fn patched(bytes: &[u8], seen: &Seen, from: SocketAddr) -> Vec<u8> {
    let Ok(mut m) = wire::decode(bytes) else {
        return bytes.to_vec();
    };
    let token = seen.token.get(&from).cloned().unwrap_or_default();
    match &mut m.body {
        MessageBody::Reply(_) | MessageBody::Error(_) | MessageBody::ValueParts(_) => {
            if let Some(tid) = seen.tid.get(&from) {
                m.tid = *tid;
            }
        }
        MessageBody::Put(p) => p.token = token,
        MessageBody::Listen(l) => l.token = token,
        MessageBody::Refresh(r) => r.token = token,
        _ => {}
    }
    wire::encode(&m)
}
