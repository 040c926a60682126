//! Our DHT node against the official `dhtnode` (OpenDHT 2.4.12) and python3-opendht, on
//! loopback inside a network namespace each test creates: bootstrap both ways, values
//! put on either side got on the other, listens, big values in parts, signed values.

use conformance::dhtnode::DhtNode;
use conformance::netns::Netns;
use node::dht::engine::{Config, Dht, Event};
use node::dht::{InfoHash, Value, ValueData};
use node::driver::{unix_ms, UdpDriver};
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

const DHTNODE_PORT: u16 = 4222;

fn our_node(seed: u64) -> Dht {
    Dht::new(
        Config::verifying(InfoHash::get(format!("jamisim-{seed}")), seed),
        unix_ms(),
    )
}

fn dhtnode_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], DHTNODE_PORT))
}

#[test]
fn values_and_listens_cross_between_our_node_and_dhtnode() {
    if !conformance::dhtnode_or_skip() {
        return;
    }
    let ns = Netns::create("jsdht").expect("namespace");
    // JAMISIM_CAPTURE=file.pcap records the namespace's loopback with tshark (debugging).
    let mut capture = std::env::var("JAMISIM_CAPTURE").ok().map(|f| {
        let c = ns
            .command("tshark")
            .args(["-q", "-i", "lo", "-w", &f])
            .spawn()
            .expect("tshark");
        std::thread::sleep(Duration::from_secs(2));
        c
    });
    let mut official = DhtNode::start(&ns, DHTNODE_PORT, None, true).expect("dhtnode starts");
    let (to_test, from_node) = mpsc::channel::<String>();
    let (go_tx, go) = mpsc::channel::<()>();
    let worker = ns.spawn(move || {
        let mut d = UdpDriver::bind(our_node(1), "127.0.0.1:0".parse().unwrap()).unwrap();
        d.dht.bootstrap(unix_ms(), dhtnode_addr());
        assert!(
            d.run_until(Duration::from_secs(5), |e| matches!(e, Event::Connected))
                .unwrap(),
            "bootstraps from dhtnode"
        );
        // 1. our put, small and 60 KiB.
        let small = Value::plain(0x4d, 0, b"rust says hi".to_vec());
        let big = Value::plain(
            0x4e,
            0,
            (0..60 * 1024).map(|i| (i % 251) as u8).collect::<Vec<u8>>(),
        );
        d.dht.put(unix_ms(), InfoHash::get("from-rust"), small);
        d.dht.put(unix_ms(), InfoHash::get("big-from-rust"), big);
        let mut acks = 0;
        d.run_until(Duration::from_secs(5), |e| {
            if let Event::PutDone { stored_on, .. } = e {
                acks += usize::from(*stored_on > 0);
            }
            acks == 2
        })
        .unwrap();
        to_test.send(format!("puts acknowledged: {acks}")).unwrap();
        // 2. listen, then the official node puts.
        let key = InfoHash::get("from-dhtnode");
        let op = d.dht.listen(unix_ms(), key);
        d.run_for(Duration::from_secs(2), &mut |_, _| {}).unwrap();
        to_test.send("listening".into()).unwrap();
        let asked = unix_ms();
        let mut heard = None;
        d.run_until(Duration::from_secs(5), |e| match e {
            Event::Values { op: o, values, .. } if *o == op => {
                let hit = values
                    .iter()
                    .any(|v| matches!(&v.data, ValueData::Plain(b) if b.data == b"pushed"));
                if hit {
                    heard = Some(unix_ms() - asked);
                }
                hit
            }
            _ => false,
        })
        .unwrap();
        to_test
            .send(format!("listen heard after {heard:?} ms"))
            .unwrap();
        // 3. a value dhtnode signs: keep serving (dhtnode's put needs us) until told to get it.
        while go.try_recv().is_err() {
            d.turn(Duration::from_millis(50), &mut |_, _| {}).unwrap();
        }
        let op = d.dht.get(unix_ms(), InfoHash::get("signed-by-dhtnode"));
        let mut verified = false;
        d.run_until(Duration::from_secs(5), |e| {
            if let Event::Values { op: o, values, .. } = e {
                if *o == op {
                    verified |= values.iter().any(|v| match &v.data {
                        ValueData::Signed(s) if s.body.data == b"signed" => {
                            let body = s
                                .received_body
                                .clone()
                                .or_else(|| v.signed_body_bytes())
                                .unwrap_or_default();
                            node::crypto::verify(&s.owner, &body, &s.sig)
                        }
                        _ => false,
                    });
                }
            }
            matches!(e, Event::GetDone { op: o, .. } if *o == op)
        })
        .unwrap();
        // It was also stored here, which needs its signature to verify.
        let stored = !d
            .dht
            .storage()
            .get(&InfoHash::get("signed-by-dhtnode").0)
            .is_empty();
        to_test
            .send(format!(
                "signed value verified: {verified}, stored here: {stored}"
            ))
            .unwrap();
    });
    assert_eq!(
        from_node.recv_timeout(Duration::from_secs(20)).unwrap(),
        "puts acknowledged: 2"
    );
    let at = official.log_len();
    official.command("g from-rust").unwrap();
    let got = official.wait_for(
        at,
        "Value[id:4d data:727573742073617973206869]",
        Duration::from_secs(5),
    );
    assert!(
        got.is_some(),
        "dhtnode gets our value:\n{}",
        official.log_text()
    );
    let at = official.log_len();
    official.command("g big-from-rust").unwrap();
    assert!(
        official
            .wait_for(at, "Value[id:4e", Duration::from_secs(5))
            .is_some(),
        "dhtnode gets our 60 KiB value:\n{}",
        &official.log_text()[at..]
    );

    assert_eq!(
        from_node.recv_timeout(Duration::from_secs(20)).unwrap(),
        "listening"
    );
    official.command("p from-dhtnode pushed").unwrap();
    let heard = from_node.recv_timeout(Duration::from_secs(20)).unwrap();
    let ms: Option<u64> = heard
        .trim_start_matches("listen heard after Some(")
        .trim_end_matches(") ms")
        .parse()
        .ok();
    assert!(
        matches!(ms, Some(m) if m < 1000),
        "our listen sees dhtnode's put within 1 s: {heard}"
    );

    let at = official.log_len();
    official.command("s signed-by-dhtnode signed").unwrap();
    let put = official.wait_for(at, "Put signed: success", Duration::from_secs(15));
    assert!(
        put.is_some(),
        "dhtnode's signed put succeeds with our node in the network:\n{}",
        &official.log_text()[at..]
    );
    go_tx.send(()).unwrap();
    let signed = from_node.recv_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(
        signed, "signed value verified: true, stored here: true",
        "dhtnode's signed value verifies here"
    );
    worker.join().expect("our node ran");
    if let Some(c) = capture.as_mut() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

#[test]
fn dhtnode_bootstraps_from_our_node_and_gets_from_it() {
    if !conformance::dhtnode_or_skip() {
        return;
    }
    let ns = Netns::create("jsdht").expect("namespace");
    const OURS: u16 = 4300;
    let (ready_tx, ready) = mpsc::channel::<()>();
    let (ids_tx, ids) = mpsc::channel::<Vec<String>>();
    let (stop_tx, stop) = mpsc::channel::<()>();
    let worker = ns.spawn(move || {
        let mut d = UdpDriver::bind(our_node(2), SocketAddr::from(([127, 0, 0, 1], OURS))).unwrap();
        // Alone: the value stays here, where dhtnode must come and get it.
        d.dht.put(
            unix_ms(),
            InfoHash::get("kept-by-rust"),
            Value::plain(0x99, 0, b"only here".to_vec()),
        );
        ready_tx.send(()).unwrap();
        while stop.try_recv().is_err() {
            d.turn(Duration::from_millis(50), &mut |_, _| {}).unwrap();
        }
        let known: Vec<String> = d
            .dht
            .routing_table()
            .nodes()
            .map(|n| InfoHash(n.id).to_string())
            .collect();
        ids_tx.send(known).unwrap();
    });
    ready.recv_timeout(Duration::from_secs(10)).unwrap();
    let bootstrap = SocketAddr::from(([127, 0, 0, 1], OURS));
    let mut official =
        DhtNode::start(&ns, DHTNODE_PORT, Some(bootstrap), false).expect("dhtnode starts");
    std::thread::sleep(Duration::from_secs(2));
    let at = official.log_len();
    official.command("g kept-by-rust").unwrap();
    let got = official.wait_for(
        at,
        "Value[id:99 data:6f6e6c792068657265]",
        Duration::from_secs(10),
    );
    stop_tx.send(()).unwrap();
    let known = ids.recv_timeout(Duration::from_secs(10)).unwrap();
    worker.join().unwrap();
    assert!(
        got.is_some(),
        "dhtnode, bootstrapped from us, gets the value only we hold:\n{}",
        &official.log_text()[at..]
    );
    assert!(
        known.contains(&official.id),
        "dhtnode ({}) is in our routing table: {known:?}",
        official.id
    );
}

const PY_JOIN_AND_EXCHANGE: &str = r#"
import os, sys, time
import opendht as dht
r = dht.DhtRunner()
r.run(port=0)
r.bootstrap("127.0.0.1", sys.argv[1])
time.sleep(1.5)
for v in r.get(dht.InfoHash.get("for-python")):
    print("got=" + bytes(v.data).hex(), flush=True)
ok = r.put(dht.InfoHash.get("from-python"), dht.Value(b"python says hi"))
print("put=" + str(ok), flush=True)
# 60 KiB: travels to us in value parts.
ok = r.put(dht.InfoHash.get("big-from-python"), dht.Value(bytes(i % 251 for i in range(60 * 1024))))
print("bigput=" + str(ok), flush=True)
time.sleep(0.5)
# DhtRunner.shutdown() can hang in the bindings; the test only needs a clean exit.
os._exit(0)
"#;

#[test]
fn python_opendht_joins_through_our_node_and_exchanges_values() {
    if !conformance::dhtnode_or_skip() {
        return;
    }
    let Some(_py) = conformance::python_opendht_or_skip() else {
        return;
    };
    let ns = Netns::create("jspy").expect("namespace");
    const OURS: u16 = 4310;
    let (ready_tx, ready) = mpsc::channel::<()>();
    let (done_tx, done) = mpsc::channel::<()>();
    let (result_tx, result) = mpsc::channel::<bool>();
    let worker = ns.spawn(move || {
        let mut d = UdpDriver::bind(our_node(3), SocketAddr::from(([127, 0, 0, 1], OURS))).unwrap();
        d.dht.put(
            unix_ms(),
            InfoHash::get("for-python"),
            Value::plain(0x51, 0, b"rust for python".to_vec()),
        );
        ready_tx.send(()).unwrap();
        while done.try_recv().is_err() {
            d.turn(Duration::from_millis(50), &mut |_, _| {}).unwrap();
        }
        // The python node is gone; its value must be here (we were its only peer).
        let op = d.dht.get(unix_ms(), InfoHash::get("from-python"));
        let mut found = false;
        d.run_until(Duration::from_secs(3), |e| {
            if let Event::Values { op: o, values, .. } = e {
                found |= *o == op
                    && values.iter().any(
                        |v| matches!(&v.data, ValueData::Plain(b) if b.data == b"python says hi"),
                    );
            }
            found
        })
        .unwrap();
        let big = d
            .dht
            .storage()
            .get(&InfoHash::get("big-from-python").0)
            .iter()
            .filter_map(|e| Value::unpack(&e.value.packed).ok())
            .any(|v| {
                matches!(&v.data, ValueData::Plain(b)
                    if b.data.len() == 60 * 1024 && b.data.iter().enumerate().all(|(i, x)| *x as usize == i % 251))
            });
        result_tx.send(found && big).unwrap();
    });
    ready.recv_timeout(Duration::from_secs(10)).unwrap();
    let mut child = ns
        .command("/usr/bin/python3")
        .args(["-", &OURS.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 starts");
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(PY_JOIN_AND_EXCHANGE.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().expect("python3 finishes");
    done_tx.send(()).unwrap();
    let found = result.recv_timeout(Duration::from_secs(10)).unwrap();
    worker.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains(&format!("got={}", "7275737420666f7220707974686f6e")),
        "python gets our value:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("put=True"),
        "python's put succeeds through us:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("bigput=True"),
        "python's 60 KiB put succeeds through us:\n{stdout}\n{stderr}"
    );
    assert!(
        found,
        "we get python's value, and hold its 60 KiB value intact"
    );
}
