//! The proxy client against answers in OpenDHT 2.4's proxy format (value lines as
//! [`json::to_line`] writes them, which match `dhtnode --proxyserver` byte for byte),
//! split at arbitrary points; and OpenDHT's secure layer over it.

use super::*;
use crate::dht::secure::{self, certificate_value, decrypt, CERTIFICATE_TYPE};
use crate::dht::value::{Body, ValueData};
use crate::identity::NodeIdentity;
use proptest::prelude::*;
use rand::SeedableRng;
use std::sync::OnceLock;

const SERVER: &str = "198.18.0.5:8000";

fn engine() -> ProxyEngine {
    ProxyEngine::new(SERVER.parse().unwrap(), 1_000)
}

fn ids() -> &'static (NodeIdentity, NodeIdentity) {
    static IDS: OnceLock<(NodeIdentity, NodeIdentity)> = OnceLock::new();
    IDS.get_or_init(|| {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(5);
        let a = NodeIdentity::generate(1024, 1_700_000_000, &mut rng).unwrap();
        let b = NodeIdentity::generate(1024, 1_700_000_000, &mut rng).unwrap();
        (a, b)
    })
}

/// Every command queued; the stream ids `Connect` opened, with the bytes written.
fn commands(e: &mut ProxyEngine) -> Vec<StreamCommand> {
    std::iter::from_fn(|| e.poll_stream_command()).collect()
}

fn events(e: &mut impl PlainDht) -> Vec<Event> {
    std::iter::from_fn(|| e.poll_event()).collect()
}

/// The stream the last `Connect` opened.
fn connected(e: &mut ProxyEngine, now: u64) -> (StreamId, String) {
    let cmds = commands(e);
    let id = cmds
        .iter()
        .rev()
        .find_map(|c| match c {
            StreamCommand::Connect { id, remote, .. } => {
                assert_eq!(remote.to_string(), SERVER);
                Some(*id)
            }
            _ => None,
        })
        .expect("a connect");
    assert!(ProxyEngine::owns(id));
    e.handle_stream_connected(now, id);
    let req = commands(e)
        .into_iter()
        .find_map(|c| match c {
            StreamCommand::Write { id: w, bytes } if w == id => Some(bytes),
            _ => None,
        })
        .expect("the request");
    (id, String::from_utf8(req).unwrap())
}

fn chunked(lines: &str) -> Vec<u8> {
    let mut w =
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    if !lines.is_empty() {
        w.extend(format!("{:x}\r\n{lines}\r\n", lines.len()).bytes());
    }
    w
}

fn length(status: u16, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The probe answered: the engine is connected.
fn reachable() -> ProxyEngine {
    let mut e = engine();
    let (id, req) = connected(&mut e, 1_000);
    assert!(req.starts_with("GET /node/info HTTP/1.1\r\n"), "{req}");
    assert!(req.contains("Host: 198.18.0.5:8000\r\n"));
    assert!(!e.reachable());
    e.handle_stream_data(1_100, id, &length(200, "{\"node_id\":\"00\"}"));
    assert!(e.reachable());
    assert_eq!(events(&mut e), vec![Event::Connected]);
    assert!(commands(&mut e).contains(&StreamCommand::Close { id }));
    e
}

fn plain(id: u64, data: &[u8]) -> Value {
    Value::plain(id, 0, data.to_vec())
}

#[test]
fn a_get_streams_its_values_in_any_split_and_ends_with_the_answer() {
    let key = InfoHash::get("k");
    let (v1, v2) = (plain(1, b"one"), plain(2, b"two"));
    let mut wire = chunked(&(json::to_line(&v1, false) + &json::to_line(&v2, false)));
    wire.extend_from_slice(b"0\r\n\r\n");
    for split in [1, 40, 90, wire.len() - 3] {
        let mut e = reachable();
        let op = PlainDht::get(&mut e, 2_000, key);
        let (id, req) = connected(&mut e, 2_000);
        assert!(
            req.starts_with(&format!("GET /key/{key} HTTP/1.1\r\n")),
            "{req}"
        );
        e.handle_stream_data(2_100, id, &wire[..split]);
        e.handle_stream_data(2_100, id, &wire[split..]);
        let got = events(&mut e);
        let values: Vec<Value> = got
            .iter()
            .flat_map(|ev| match ev {
                Event::Values { op: o, values, .. } if *o == op => values.clone(),
                _ => vec![],
            })
            .collect();
        assert_eq!(values, vec![v1.clone(), v2.clone()], "split {split}");
        assert_eq!(
            got.last(),
            Some(&Event::GetDone {
                op,
                key,
                nodes_answered: 1,
                hops: 0
            })
        );
        assert!(commands(&mut e).contains(&StreamCommand::Close { id }));
        assert_eq!(e.ops(), 0);
    }
}

#[test]
fn a_listen_reports_values_and_expiries_and_reopens_when_the_proxy_ends_it() {
    let key = InfoHash::get("l");
    let mut e = reachable();
    let op = PlainDht::listen(&mut e, 2_000, key);
    let (id, req) = connected(&mut e, 2_000);
    assert!(req.starts_with(&format!("GET /key/{key}/listen HTTP/1.1\r\n")));
    let v = plain(7, b"seven");
    e.handle_stream_data(2_100, id, &chunked(&json::to_line(&v, false)));
    // A quiet listen has no deadline.
    assert_eq!(e.poll_timeout(), None);
    e.handle_stream_data(
        2_200,
        id,
        format!(
            "{:x}\r\n{}\r\n",
            json::to_line(&v, true).len(),
            json::to_line(&v, true)
        )
        .as_bytes(),
    );
    assert_eq!(
        events(&mut e),
        vec![
            Event::Values {
                op,
                key,
                values: vec![v.clone()]
            },
            Event::Expired {
                op,
                key,
                ids: vec![7]
            }
        ]
    );
    // The proxy ends the stream: the listen opens again later, under the same op.
    e.handle_stream_closed(3_000, id);
    assert!(events(&mut e).is_empty());
    assert_eq!(e.poll_timeout(), Some(3_000 + LISTEN_RETRY_MS));
    e.handle_timeout(3_000 + LISTEN_RETRY_MS);
    let (id2, req) = connected(&mut e, 3_000 + LISTEN_RETRY_MS);
    assert_ne!(id, id2);
    assert!(req.contains("/listen"));
    assert_eq!(e.stats.relistens, 1);
    e.handle_stream_data(9_000, id2, &chunked(&json::to_line(&v, false)));
    assert!(matches!(&events(&mut e)[..], [Event::Values { op: o, .. }] if *o == op));
    // Cancelled: the stream closes and nothing more is reported.
    e.cancel(op);
    assert!(commands(&mut e).contains(&StreamCommand::Close { id: id2 }));
    e.handle_stream_data(9_100, id2, b"more");
    assert!(events(&mut e).is_empty());
    assert_eq!(e.ops(), 0);
}

#[test]
fn puts_post_the_value_json_and_report_the_proxys_answer() {
    let key = InfoHash::get("p");
    let v = plain(3, b"three");
    let mut e = reachable();
    let op = e.put_permanent(2_000, key, v.clone());
    let (id, req) = connected(&mut e, 2_000);
    let (head, body) = req.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with(&format!("POST /key/{key} HTTP/1.1\r\n")),
        "{head}"
    );
    assert!(head.contains(&format!("Content-Length: {}", body.len())));
    let pv = json::from_str(body).unwrap();
    assert!(pv.permanent);
    assert_eq!(pv.value, v);
    e.handle_stream_data(2_100, id, &length(200, &json::to_json(&v).to_string()));
    assert_eq!(
        events(&mut e),
        vec![Event::PutDone {
            op,
            key,
            stored_on: 1
        }]
    );
    // OpenDHT's 502 when no node stored it: a failure with the proxy's reason.
    let op = PlainDht::put(&mut e, 3_000, key, v.clone());
    let (id, req) = connected(&mut e, 3_000);
    assert!(!req.contains("permanent"));
    e.handle_stream_data(3_100, id, &length(502, "{\"err\":\"Put failed\"}"));
    match &events(&mut e)[..] {
        [Event::Failed { op: o, reason, .. }] => {
            assert_eq!(*o, op);
            assert!(
                reason.contains("502") && reason.contains("Put failed"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn failures_end_gets_and_puts_and_are_counted() {
    let key = InfoHash::get("f");
    let done0 = |op| Event::GetDone {
        op,
        key,
        nodes_answered: 0,
        hops: 0,
    };
    let mut e = reachable();
    // Refused or reset before any answer.
    let op = PlainDht::get(&mut e, 2_000, key);
    let id = match commands(&mut e)[..] {
        [StreamCommand::Connect { id, .. }] => id,
        ref c => panic!("{c:?}"),
    };
    e.handle_stream_closed(2_010, id);
    assert_eq!(events(&mut e), vec![done0(op)]);
    // A malformed answer.
    let op = PlainDht::get(&mut e, 2_000, key);
    let (id, _) = connected(&mut e, 2_000);
    e.handle_stream_data(2_100, id, b"SMTP ready\r\n\r\n");
    assert_eq!(events(&mut e), vec![done0(op)]);
    assert_eq!(e.stats.malformed, 1);
    // A chunked answer cut short.
    let op = PlainDht::get(&mut e, 2_000, key);
    let (id, _) = connected(&mut e, 2_000);
    e.handle_stream_data(2_100, id, &chunked("{\"id\":\"1\""));
    e.handle_stream_closed(2_200, id);
    assert_eq!(events(&mut e), vec![done0(op)]);
    // A proxy that never answers: the deadline.
    let op = PlainDht::get(&mut e, 5_000, key);
    let put = PlainDht::put(&mut e, 5_000, key, plain(1, b"x"));
    assert_eq!(e.poll_timeout(), Some(5_000 + REQUEST_TIMEOUT_MS));
    e.handle_timeout(5_000 + REQUEST_TIMEOUT_MS);
    let got = events(&mut e);
    assert!(got.contains(&done0(op)), "{got:?}");
    assert!(
        got.iter()
            .any(|ev| matches!(ev, Event::Failed { op: o, .. } if *o == put)),
        "{got:?}"
    );
    assert_eq!(e.ops(), 0);
    assert_eq!(e.stats.failed, 5);
    // Lines that are no value are skipped and counted.
    let op = PlainDht::get(&mut e, 20_000, key);
    let (id, _) = connected(&mut e, 20_000);
    let mut wire = chunked(&format!(
        "garbage\n{{}}\n{}",
        json::to_line(&plain(2, b"ok"), false)
    ));
    wire.extend_from_slice(b"0\r\n\r\n");
    e.handle_stream_data(20_100, id, &wire);
    let got = events(&mut e);
    assert!(
        matches!(&got[..], [Event::Values { values, .. }, Event::GetDone { op: o, nodes_answered: 1, .. }] if values.len() == 1 && *o == op),
        "{got:?}"
    );
    assert_eq!(e.stats.bad_lines, 1);
}

#[test]
fn an_unreachable_proxy_is_probed_again_and_nothing_is_announced() {
    let mut e = engine();
    let cmds = commands(&mut e);
    let id = match cmds[..] {
        [StreamCommand::Connect { id, .. }] => id,
        ref c => panic!("{c:?}"),
    };
    e.handle_stream_closed(1_050, id);
    assert!(!e.reachable());
    assert!(events(&mut e).is_empty());
    assert_eq!(e.poll_timeout(), Some(1_050 + PROBE_RETRY_MS));
    e.handle_timeout(1_050 + PROBE_RETRY_MS);
    let (_, req) = connected(&mut e, 1_050 + PROBE_RETRY_MS);
    assert!(req.starts_with("GET /node/info"));
}

#[test]
fn operations_are_bounded() {
    let mut e = reachable();
    for i in 0..MAX_OPS {
        PlainDht::get(&mut e, 2_000, InfoHash::get(i.to_string()));
    }
    assert!(events(&mut e).is_empty());
    let op = PlainDht::get(&mut e, 2_000, InfoHash::get("one too many"));
    assert!(
        matches!(&events(&mut e)[..], [Event::GetDone { op: o, nodes_answered: 0, .. }] if *o == op)
    );
    assert_eq!(e.ops(), MAX_OPS);
}

// ---- OpenDHT's secure layer over the proxy -----------------------------------------------

fn secure(me: &NodeIdentity) -> ProxyDht {
    SecureDht::over(engine(), Some(me.clone()), 9)
}

/// Answers the probe of a fresh [`ProxyDht`]; returns the certificate announcement it then
/// posts (our chain at our key id, permanent).
fn secure_reachable(d: &mut ProxyDht) -> (InfoHash, Value) {
    let (id, _) = connected(d, 1_000);
    d.handle_stream_data(1_100, id, &length(200, "{}"));
    assert_eq!(d.poll_event(), Some(Event::Connected));
    assert_eq!(d.poll_event(), None);
    let (_, req) = connected(d, 1_100);
    let (head, body) = req.split_once("\r\n\r\n").unwrap();
    let pv = json::from_str(body).unwrap();
    assert!(pv.permanent);
    let key: InfoHash = head
        .split_whitespace()
        .nth(1)
        .unwrap()
        .trim_start_matches("/key/")
        .parse()
        .unwrap();
    (key, pv.value)
}

#[test]
fn the_secure_layer_announces_our_certificate_through_the_proxy() {
    let (a, _) = ids();
    let mut d = secure(a);
    let (key, v) = secure_reachable(&mut d);
    assert_eq!(key, d.public_key_id().unwrap());
    assert_eq!(v.body().map(|b| b.type_id), Some(CERTIFICATE_TYPE));
    assert_eq!(v, certificate_value(a.chain_pem().as_bytes()));
}

#[test]
fn encrypted_puts_fetch_the_recipients_certificate_through_the_proxy() {
    let (a, b) = ids();
    let mut d = secure(a);
    secure_reachable(&mut d);
    let to = InfoHash(b.key().public_key().short_id());
    let inbox = InfoHash::get("inbox");
    let body = Body {
        type_id: 0,
        data: b"secret".to_vec(),
        utype: String::new(),
    };
    let op = d.put_encrypted(2_000, inbox, to, 42, body.clone());
    // First the certificate lookup at `to`...
    let (id, req) = connected(&mut d, 2_000);
    assert!(req.starts_with(&format!("GET /key/{to} HTTP/1.1")), "{req}");
    let cert = certificate_value(b.chain_pem().as_bytes());
    let mut wire = chunked(&json::to_line(&cert, false));
    wire.extend_from_slice(b"0\r\n\r\n");
    d.handle_stream_data(2_100, id, &wire);
    // ... which the user does not see; then the encrypted put at `inbox`.
    assert_eq!(d.poll_event(), None);
    let (id, req) = connected(&mut d, 2_100);
    let (head, json_body) = req.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with(&format!("POST /key/{inbox} ")), "{head}");
    let posted = json::from_str(json_body).unwrap().value;
    assert!(matches!(posted.data, ValueData::Encrypted(_)));
    let plain = decrypt(b.key(), &posted).expect("for b");
    assert_eq!(plain.id, 42);
    assert_eq!(
        plain.body().map(|x| x.data.clone()),
        Some(b"secret".to_vec())
    );
    assert!(secure::signature_ok(&plain));
    d.handle_stream_data(2_200, id, &length(200, json_body));
    assert_eq!(
        d.poll_event(),
        Some(Event::PutDone {
            op,
            key: inbox,
            stored_on: 1
        })
    );
    // No certificate found: the put fails, as on UDP.
    let nobody = InfoHash::get("nobody");
    let op = d.put_encrypted(3_000, inbox, nobody, 43, body);
    let (id, _) = connected(&mut d, 3_000);
    let mut wire = chunked("");
    wire.extend_from_slice(b"0\r\n\r\n");
    d.handle_stream_data(3_100, id, &wire);
    assert!(matches!(d.poll_event(), Some(Event::Failed { op: o, .. }) if o == op));
}

#[test]
fn values_through_the_proxy_pass_the_secure_filter() {
    let (a, b) = ids();
    let mut d = secure(b);
    secure_reachable(&mut d);
    let key = InfoHash::get("mixed");
    let body = |s: &[u8]| Body {
        type_id: 0,
        data: s.to_vec(),
        utype: String::new(),
    };
    let good = secure::sign(a.key(), 1, 0, body(b"signed"), None).unwrap();
    let mut forged = secure::sign(a.key(), 2, 0, body(b"signed"), None).unwrap();
    if let ValueData::Signed(s) = &mut forged.data {
        s.body.data = b"changed".to_vec();
    }
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
    let for_b = secure::encrypt(
        a.key(),
        3,
        0,
        body(b"to b"),
        &b.key().public_key(),
        &mut rng,
    )
    .unwrap();
    PlainDht::get(&mut *d, 2_000, key);
    let (id, _) = connected(&mut d, 2_000);
    let lines = [&good, &forged, &for_b]
        .iter()
        .map(|v| json::to_line(v, false))
        .collect::<String>();
    let mut wire = chunked(&lines);
    wire.extend_from_slice(b"0\r\n\r\n");
    d.handle_stream_data(2_100, id, &wire);
    let got: Vec<Event> = std::iter::from_fn(|| d.poll_event()).collect();
    let values: Vec<Value> = got
        .iter()
        .flat_map(|e| match e {
            Event::Values { values, .. } => values.clone(),
            _ => vec![],
        })
        .collect();
    assert_eq!(values.len(), 2, "{got:?}");
    assert_eq!(values[0], good);
    assert_eq!(
        values[1].body().map(|x| x.data.clone()),
        Some(b"to b".to_vec())
    );
    assert_eq!(d.secure_stats.bad_signatures, 1);
}

proptest! {
    /// Whatever the proxy answers, a get ends exactly once and nothing panics.
    #[test]
    fn any_answer_ends_a_get_once(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        cut in 0usize..600,
        close in any::<bool>(),
    ) {
        let mut e = reachable();
        let op = PlainDht::get(&mut e, 2_000, InfoHash::get("x"));
        let (id, _) = connected(&mut e, 2_000);
        let c = cut.min(bytes.len());
        e.handle_stream_data(2_100, id, &bytes[..c]);
        e.handle_stream_data(2_100, id, &bytes[c..]);
        if close {
            e.handle_stream_closed(2_200, id);
        }
        e.handle_timeout(2_000 + REQUEST_TIMEOUT_MS);
        let dones = events(&mut e)
            .into_iter()
            .filter(|ev| matches!(ev, Event::GetDone { op: o, .. } if *o == op))
            .count();
        prop_assert_eq!(dones, 1);
        prop_assert_eq!(e.ops(), 0);
    }

    /// A real answer with one byte changed: still one end, no panic.
    #[test]
    fn mutated_answers_end_a_get_once(pos in 0usize..400, byte in any::<u8>()) {
        let mut wire = chunked(&json::to_line(&plain(5, b"five"), false));
        wire.extend_from_slice(b"0\r\n\r\n");
        let p = pos % wire.len();
        wire[p] = byte;
        let mut e = reachable();
        let op = PlainDht::get(&mut e, 2_000, InfoHash::get("y"));
        let (id, _) = connected(&mut e, 2_000);
        e.handle_stream_data(2_100, id, &wire);
        e.handle_stream_closed(2_200, id);
        let dones = events(&mut e)
            .into_iter()
            .filter(|ev| matches!(ev, Event::GetDone { op: o, .. } if *o == op))
            .count();
        prop_assert_eq!(dones, 1);
    }
}
