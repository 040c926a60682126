//! Our one Device on `DhtBackend::Proxy` (the sans-IO proxy client behind the secure
//! layer, on `DeviceDriver`'s TCP streams; no UDP) through the official `dhtnode
//! --proxyserver`, with the official `dhtnode -i` on the plain DHT behind it: the proxy
//! answers our probe, our put reaches dhtnode, dhtnode's values reach our get and our
//! listen stream, our certificate (announced through the proxy) lets dhtnode encrypt for
//! us and we decrypt it, and we encrypt for dhtnode with its certificate fetched through
//! the proxy.

use conformance::dhtnode::DhtNode;
use conformance::netns::Netns;
use node::device::{Device, DeviceEvent, DhtBackend, JamiIdentity};
use node::dht::engine::{Config, Event};
use node::dht::{Body, InfoHash, Value, ValueData};
use node::driver::{unix_ms, DeviceDriver};
use node::identity::AccountIdentity;
use rand::SeedableRng;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

const PLAIN_PORT: u16 = 4250;
const PROXY_UDP_PORT: u16 = 4251;
const PROXY_HTTP_PORT: u16 = 8095;

enum Cmd {
    Put(InfoHash, Value),
    Get(InfoHash),
    Listen(InfoHash),
    Encrypt(InfoHash, InfoHash, Body),
    Stop,
}

fn run_on(n: &mut DhtNode, line: &str, needle: &str, secs: u64) -> String {
    let at = n.log_len();
    n.command(line).unwrap();
    n.wait_for(at, needle, Duration::from_secs(secs))
        .unwrap_or_else(|| n.log_text()[at..].to_string())
}

fn text(v: &Value) -> String {
    match &v.data {
        ValueData::Plain(b) => String::from_utf8_lossy(&b.data).into_owned(),
        ValueData::Signed(s) => format!(
            "signed{} {}",
            if s.to.is_some() { " to us" } else { "" },
            String::from_utf8_lossy(&s.body.data)
        ),
        ValueData::Encrypted(_) => "encrypted".into(),
    }
}

#[test]
fn our_device_through_dhtnodes_proxy() {
    if !conformance::dhtnode_or_skip() {
        return;
    }
    let ns = Netns::create("jsdevpx").expect("namespace");
    let (mut official, _proxy) =
        DhtNode::start_proxied(&ns, PLAIN_PORT, PROXY_UDP_PORT, PROXY_HTTP_PORT)
            .expect("dhtnode -i and dhtnode --proxyserver start");
    let their_key = official
        .public_key_id()
        .expect("dhtnode -i prints its key id");
    std::thread::sleep(Duration::from_secs(2));

    let (cmd_tx, cmd_rx) = mpsc::channel::<Cmd>();
    let (tx, rx) = mpsc::channel::<String>();
    let worker = ns.spawn(move || {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(77);
        let now_s = unix_ms() / 1000 - 60;
        let account = AccountIdentity::generate(1024, now_s, &mut rng).unwrap();
        let device = account.new_device(1024, now_s, &mut rng).unwrap();
        let jami = JamiIdentity {
            account: &account,
            device: &device,
            announcement_id: 0x4a4d,
        };
        let proxy = SocketAddr::from(([127, 0, 0, 1], PROXY_HTTP_PORT));
        let dev = Device::with_backend(
            Config::verifying(InfoHash::get("replaced"), 77),
            Some(jami),
            DhtBackend::Proxy(proxy),
            unix_ms(),
        )
        .unwrap();
        let me = dev.proxy().unwrap().public_key_id().unwrap();
        tx.send(format!("key {me}")).unwrap();
        let mut d = DeviceDriver::bind(dev, "127.0.0.1:0".parse().unwrap()).unwrap();
        let mut ops = std::collections::BTreeMap::new();
        loop {
            match cmd_rx.try_recv() {
                Ok(Cmd::Stop) | Err(mpsc::TryRecvError::Disconnected) => break,
                Ok(c) => {
                    let now = unix_ms();
                    let (op, what) = match c {
                        Cmd::Put(k, v) => (d.dht.put(now, k, v), "put"),
                        Cmd::Get(k) => (d.dht.get(now, k), "get"),
                        Cmd::Listen(k) => (d.dht.listen(now, k), "listen"),
                        Cmd::Encrypt(k, to, body) => (
                            d.dht
                                .proxy_mut()
                                .unwrap()
                                .put_encrypted(now, k, to, 0xe5, body),
                            "encrypt",
                        ),
                        Cmd::Stop => unreachable!(),
                    };
                    ops.insert(op, what);
                }
                Err(mpsc::TryRecvError::Empty) => {}
            }
            d.turn(Duration::from_millis(10), &mut |_, e| {
                let line = match e {
                    DeviceEvent::Dht(Event::Connected) => "connected".to_string(),
                    DeviceEvent::Dht(Event::Values { op, values, .. }) => format!(
                        "{} values {:?}",
                        ops.get(&op).unwrap_or(&"?"),
                        values.iter().map(text).collect::<Vec<_>>()
                    ),
                    DeviceEvent::Dht(Event::GetDone {
                        op, nodes_answered, ..
                    }) => format!("{} done {nodes_answered}", ops.get(&op).unwrap_or(&"?")),
                    DeviceEvent::Dht(Event::PutDone { op, stored_on, .. }) => {
                        format!("{} stored {stored_on}", ops.get(&op).unwrap_or(&"?"))
                    }
                    DeviceEvent::Dht(Event::Failed { op, reason, .. }) => {
                        format!("{} failed {reason}", ops.get(&op).unwrap_or(&"?"))
                    }
                    _ => return,
                };
                let _ = tx.send(line);
            })
            .unwrap();
        }
        let s = d.dht.proxy().unwrap().stats.clone();
        let _ = tx.send(format!(
            "stats requests {} ok {} malformed {} bad lines {}; announcements stored {}",
            s.requests,
            s.ok,
            s.malformed,
            s.bad_lines,
            d.dht.announcements_stored()
        ));
    });
    let t = Duration::from_secs(30);
    let wait = |want: &dyn Fn(&str) -> bool| -> String {
        let mut seen = Vec::new();
        while let Ok(l) = rx.recv_timeout(t) {
            if want(&l) {
                return l;
            }
            seen.push(l);
        }
        panic!("not reported; saw {seen:?}");
    };
    let me: InfoHash = wait(&|l| l.starts_with("key "))["key ".len()..]
        .parse()
        .unwrap();
    wait(&|l| l == "connected");

    // Our put through dhtnode's proxy reaches the plain dhtnode.
    let v = Value::plain(0x61, 0, b"from-our-device".to_vec());
    cmd_tx.send(Cmd::Put(InfoHash::get("dev-put"), v)).unwrap();
    wait(&|l| l == "put stored 1");
    let got = run_on(&mut official, "g dev-put", "Get: ", 10);
    assert!(
        got.contains(&node::crypto::hex(b"from-our-device")),
        "dhtnode gets our device's put:\n{got}"
    );

    // dhtnode's value reaches our get; its later put reaches our listen stream.
    let put = run_on(&mut official, "p dev-get from-dhtnode", "Put: ", 10);
    assert!(put.contains("success"), "{put}");
    cmd_tx.send(Cmd::Get(InfoHash::get("dev-get"))).unwrap();
    wait(&|l| l == "get values [\"from-dhtnode\"]");
    wait(&|l| l == "get done 1");
    cmd_tx
        .send(Cmd::Listen(InfoHash::get("dev-listen")))
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let put = run_on(&mut official, "p dev-listen live", "Put: ", 10);
    assert!(put.contains("success"), "{put}");
    wait(&|l| l == "listen values [\"live\"]");

    // dhtnode finds our certificate (the secure layer announced it through the proxy)
    // and encrypts for us; we decrypt what our get reads through the proxy.
    let line = format!("e dev-enc {me} secret-for-our-device");
    let put = run_on(&mut official, &line, "Put encrypted: ", 20);
    assert!(
        put.contains("Put encrypted: success"),
        "dhtnode found our certificate:\n{put}"
    );
    cmd_tx.send(Cmd::Get(InfoHash::get("dev-enc"))).unwrap();
    wait(&|l| l == "get values [\"signed to us secret-for-our-device\"]");

    // We encrypt for dhtnode: its certificate fetched through the proxy.
    cmd_tx
        .send(Cmd::Encrypt(
            InfoHash::get("enc-for-dhtnode"),
            their_key,
            Body::text("secret-from-our-device"),
        ))
        .unwrap();
    wait(&|l| l == "encrypt stored 1");
    let got = run_on(&mut official, "g enc-for-dhtnode", "Get: ", 10);
    assert!(
        got.contains("decrypted") && got.contains("secret-from-our-device"),
        "dhtnode decrypts our value:\n{got}"
    );
    cmd_tx.send(Cmd::Stop).unwrap();
    let stats = wait(&|l| l.starts_with("stats"));
    eprintln!("{stats}");
    assert!(stats.contains("malformed 0"), "{stats}");
    assert!(!stats.ends_with("announcements stored 0"), "{stats}");
    worker.join().expect("our device ran");
}
