//! The DHT proxy (PROTOCOLS §3) against the official programs, in a network namespace
//! each test creates: our proxy client against `dhtnode --proxyserver`, and `dhtnode
//! --proxyclient` (OpenDHT's proxy client) through our proxy server, with values
//! crossing between proxy users and plain UDP nodes both ways.

use conformance::dhtnode::DhtNode;
use conformance::netns::Netns;
use node::dht::engine::{Config, Dht, Event};
use node::dht::proxy::backend::{Backend, Counters};
use node::dht::proxy::{client::ProxyClient, json, server};
use node::dht::{InfoHash, Value, ValueData};
use node::driver::{unix_ms, UdpDriver};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn our_node(seed: u64) -> Dht {
    Dht::new(
        Config::verifying(InfoHash::get(format!("jamisim-proxy-{seed}")), seed),
        unix_ms(),
    )
}

fn data_of(v: &Value) -> &[u8] {
    match &v.data {
        ValueData::Plain(b) => &b.data,
        ValueData::Signed(s) => &s.body.data,
        ValueData::Encrypted(c) => c,
    }
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// dhtnode's rendering of a value's data in `g`/`l` output.
fn shown(data: &[u8]) -> String {
    format!("data:{}", node::crypto::hex(data))
}

#[test]
fn our_proxy_client_against_dhtnode_proxy_server() {
    if !conformance::dhtnode_or_skip() {
        return;
    }
    let ns = Netns::create("jspxc").expect("namespace");
    // With an identity, so it can sign (`s`).
    let mut plain = DhtNode::start(&ns, 4222, None, true).expect("plain dhtnode starts");
    let proxy = DhtNode::start_with(
        &ns,
        4223,
        Some(addr(4222)),
        false,
        &["--proxyserver", "8080"],
    )
    .expect("dhtnode --proxyserver starts");
    std::thread::sleep(Duration::from_secs(2));
    let (tx, rx) = mpsc::channel::<String>();
    let (go_tx, go) = mpsc::channel::<()>();
    let (signed_tx, signed_go) = mpsc::channel::<()>();
    let worker = ns.spawn_async(async move {
        let c = ProxyClient::new(addr(8080));
        let info = c.node_info().await.expect("node info");
        tx.send(format!(
            "node_id {}",
            info["node_id"].as_str().unwrap_or("")
        ))
        .unwrap();
        let key = InfoHash::get("via-our-client");
        let v = Value::plain(0x51, 0, b"through-the-proxy".to_vec());
        let put = c.put(&key, &v, false).await.map(|s| s == v);
        tx.send(format!("put {put:?}")).unwrap();
        while go.try_recv().is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let got = c.get(&InfoHash::get("from-dhtnode")).await.expect("get");
        let hit = got.iter().any(|v| data_of(v) == b"pushed-by-dhtnode");
        tx.send(format!("get {hit}")).unwrap();
        let mut l = c
            .listen(&InfoHash::get("listen-key"))
            .await
            .expect("listen");
        tx.send("listening".into()).unwrap();
        let t0 = Instant::now();
        let heard = tokio::time::timeout(Duration::from_secs(15), async {
            while let Some(Ok(p)) = l.next_value().await {
                if data_of(&p.value) == b"live" && !p.expired {
                    return true;
                }
            }
            false
        })
        .await
        .unwrap_or(false);
        tx.send(format!(
            "listen {heard} after {} ms",
            t0.elapsed().as_millis()
        ))
        .unwrap();
        // A value dhtnode signed, as dhtnode's proxy writes it: our parse verifies
        // (PEM owner, base64 signature, body re-serialised) and re-encodes to the
        // same bytes.
        while signed_go.try_recv().is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let lines = c
            .get_lines(&InfoHash::get("signed-key"))
            .await
            .expect("get");
        let mut report = format!("{} lines", lines.len());
        for line in &lines {
            let p = json::from_str(line).expect("dhtnode's proxy line parses");
            let verified = match &p.value.data {
                ValueData::Signed(s) => {
                    node::crypto::verify(&s.owner, &p.value.signed_body_bytes().unwrap(), &s.sig)
                }
                _ => false,
            };
            let same = json::to_line(&p.value, false).trim_end() == line.trim_end();
            if !same {
                eprintln!("theirs: {line}\nours:   {}", json::to_line(&p.value, false));
            }
            report.push_str(&format!("; verified {verified} same bytes {same}"));
        }
        tx.send(report).unwrap();
    });
    let t = Duration::from_secs(30);
    assert_eq!(
        rx.recv_timeout(t).unwrap(),
        format!("node_id {}", proxy.id),
        "/node/info names the proxy's node"
    );
    assert_eq!(rx.recv_timeout(t).unwrap(), "put Ok(true)");
    let at = plain.log_len();
    plain.command("g via-our-client").unwrap();
    assert!(
        plain
            .wait_for(at, &shown(b"through-the-proxy"), Duration::from_secs(10))
            .is_some(),
        "the plain dhtnode gets what our client put through dhtnode's proxy:\n{}",
        &plain.log_text()[at..]
    );
    let at = plain.log_len();
    plain.command("p from-dhtnode pushed-by-dhtnode").unwrap();
    assert!(plain
        .wait_for(at, "Put: success", Duration::from_secs(10))
        .is_some());
    go_tx.send(()).unwrap();
    assert_eq!(
        rx.recv_timeout(t).unwrap(),
        "get true",
        "our client gets dhtnode's value"
    );
    assert_eq!(rx.recv_timeout(t).unwrap(), "listening");
    std::thread::sleep(Duration::from_secs(1));
    plain.command("p listen-key live").unwrap();
    let heard = rx.recv_timeout(t).unwrap();
    assert!(
        heard.starts_with("listen true"),
        "our listen stream sees dhtnode's put: {heard}"
    );
    eprintln!("{heard}");
    let at = plain.log_len();
    plain.command("s signed-key signed-by-dhtnode").unwrap();
    assert!(
        plain
            .wait_for(at, "Put signed: success", Duration::from_secs(20))
            .is_some(),
        "dhtnode's signed put:\n{}",
        &plain.log_text()[at..]
    );
    signed_tx.send(()).unwrap();
    assert_eq!(
        rx.recv_timeout(t).unwrap(),
        "1 lines; verified true same bytes true",
        "a signed value from dhtnode's proxy"
    );
    worker.join().expect("client ran");
}

enum NodeCmd {
    Put(InfoHash, Value),
    Get(InfoHash),
}

#[test]
fn dhtnode_proxy_client_through_our_proxy_server() {
    if !conformance::dhtnode_or_skip() {
        return;
    }
    let ns = Netns::create("jspxs").expect("namespace");
    // A plain node of ours on UDP, driven by commands.
    let (cmd_tx, cmd_rx) = mpsc::channel::<NodeCmd>();
    let (res_tx, res_rx) = mpsc::channel::<Vec<Value>>();
    let udp_node = ns.spawn(move || {
        let mut d = UdpDriver::bind(our_node(7), addr(4333)).unwrap();
        loop {
            match cmd_rx.try_recv() {
                Ok(NodeCmd::Put(k, v)) => {
                    d.dht.put(unix_ms(), k, v);
                }
                Ok(NodeCmd::Get(k)) => {
                    let op = d.dht.get(unix_ms(), k);
                    let mut found = Vec::new();
                    d.run_until(Duration::from_secs(10), |e| match e {
                        Event::Values { op: o, values, .. } if *o == op => {
                            found.extend(values.iter().cloned());
                            false
                        }
                        Event::GetDone { op: o, .. } => *o == op,
                        _ => false,
                    })
                    .unwrap();
                    res_tx.send(found).unwrap();
                }
                Err(mpsc::TryRecvError::Disconnected) => break,
                Err(mpsc::TryRecvError::Empty) => {}
            }
            d.turn(Duration::from_millis(20), &mut |_, _| {}).unwrap();
        }
    });
    // Our proxy, its DHT node joined to the plain one.
    let (stop_tx, proxy, counters) = start_our_proxy(&ns, 8081, addr(4333));
    let mut official =
        DhtNode::start_with(&ns, 4224, None, false, &["--proxyclient", "127.0.0.1:8081"])
            .expect("dhtnode --proxyclient starts");
    std::thread::sleep(Duration::from_secs(2));

    // 1. dhtnode puts through our proxy; our plain UDP node gets it.
    let at = official.log_len();
    official.command("p via-dhtnode-proxy dhtnode-put").unwrap();
    assert!(
        official
            .wait_for(at, "Put: success", Duration::from_secs(15))
            .is_some(),
        "dhtnode's put through our proxy succeeds:\n{}",
        &official.log_text()[at..]
    );
    cmd_tx
        .send(NodeCmd::Get(InfoHash::get("via-dhtnode-proxy")))
        .unwrap();
    let got = res_rx.recv_timeout(Duration::from_secs(20)).unwrap();
    assert!(
        got.iter().any(|v| data_of(v) == b"dhtnode-put"),
        "our UDP node gets dhtnode's value: {got:?}"
    );

    // 2. our UDP node puts; dhtnode gets it through our proxy.
    cmd_tx
        .send(NodeCmd::Put(
            InfoHash::get("from-udp"),
            Value::plain(0x61, 0, b"udp-put".to_vec()),
        ))
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let at = official.log_len();
    official.command("g from-udp").unwrap();
    assert!(
        official
            .wait_for(at, &shown(b"udp-put"), Duration::from_secs(15))
            .is_some(),
        "dhtnode gets our UDP node's value through our proxy:\n{}",
        &official.log_text()[at..]
    );

    // 3. dhtnode listens through our proxy; our UDP node's put reaches it.
    let at = official.log_len();
    official.command("l live-key").unwrap();
    assert!(official
        .wait_for(at, "Listening", Duration::from_secs(10))
        .is_some());
    std::thread::sleep(Duration::from_secs(1));
    let t0 = Instant::now();
    cmd_tx
        .send(NodeCmd::Put(
            InfoHash::get("live-key"),
            Value::plain(0x62, 0, b"udp-live".to_vec()),
        ))
        .unwrap();
    assert!(
        official
            .wait_for(at, &shown(b"udp-live"), Duration::from_secs(15))
            .is_some(),
        "dhtnode's listen through our proxy sees our UDP put:\n{}",
        &official.log_text()[at..]
    );
    eprintln!(
        "dhtnode's listen via our proxy heard the UDP put after {} ms",
        t0.elapsed().as_millis()
    );
    drop(official);
    assert!(
        counters.puts.load(Relaxed) >= 1
            && counters.gets.load(Relaxed) >= 1
            && counters.listens.load(Relaxed) >= 1,
        "dhtnode's p, g and l went through our proxy"
    );
    let _ = stop_tx.send(());
    drop(cmd_tx);
    proxy.join().expect("proxy ran");
    udp_node.join().expect("udp node ran");
}

/// Start our proxy (its DHT node joined to `bootstrap`) on `port` in `ns`; it runs until
/// the returned sender is dropped or used.
fn start_our_proxy(
    ns: &Netns,
    port: u16,
    bootstrap: SocketAddr,
) -> (
    tokio::sync::oneshot::Sender<()>,
    std::thread::JoinHandle<()>,
    std::sync::Arc<Counters>,
) {
    let (ready_tx, ready) = mpsc::channel::<std::sync::Arc<Counters>>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let t = ns.spawn_async(async move {
        let be = Backend::start(addr(0), &[bootstrap], 23).expect("proxy node");
        let l = tokio::net::TcpListener::bind(addr(port)).await.unwrap();
        ready_tx.send(be.counters.clone()).unwrap();
        tokio::select! {
            _ = server::serve(l, be.clone()) => {}
            _ = stop_rx => {}
        }
        be.stop();
    });
    let counters = ready.recv_timeout(Duration::from_secs(10)).unwrap();
    (stop_tx, t, counters)
}

#[test]
fn jamid_registers_through_our_proxy_and_is_seen_online() {
    use conformance::jamid::{AccountSetup, Jamid};
    if !conformance::jamid_or_skip() {
        return;
    }
    let ns = Netns::create("jspxj").expect("namespace");
    let _dht = DhtNode::start(&ns, 4222, None, false).expect("dhtnode");
    let (stop, proxy, counters) = start_our_proxy(&ns, 8082, addr(4222));
    let dir_a = conformance::TempDir::new("jamid-proxied").unwrap();
    let dir_b = conformance::TempDir::new("jamid-plain").unwrap();
    let a = Jamid::start(&ns, dir_a.path()).expect("jamid a");
    let b = Jamid::start(&ns, dir_b.path()).expect("jamid b");
    let mut setup = AccountSetup::new("proxied", addr(4222));
    setup
        .extra
        .insert("Account.proxyEnabled".into(), "true".into());
    setup
        .extra
        .insert("Account.proxyServer".into(), "127.0.0.1:8082".into());
    let t0 = Instant::now();
    let acc_a = a.create_account(&setup).expect("addAccount (proxied)");
    let acc_b = b
        .create_account(&AccountSetup::new("plain", addr(4222)))
        .expect("addAccount (plain)");
    let timeout = Duration::from_secs(90);
    a.wait_for_registration(&acc_a, timeout)
        .expect("the proxied account reaches REGISTERED through our proxy");
    eprintln!("proxied account REGISTERED after {:?}", t0.elapsed());
    let details = a.account_details(&acc_a).unwrap();
    assert_eq!(details["Account.proxyEnabled"], "true");
    assert_eq!(details["Account.proxyServer"], "127.0.0.1:8082");
    b.wait_for_registration(&acc_b, timeout)
        .expect("plain account");
    let (uri_a, uri_b) = (
        a.account_uri(&acc_a).unwrap(),
        b.account_uri(&acc_b).unwrap(),
    );
    let (ma, mb) = (a.signals().mark(), b.signals().mark());
    let t1 = Instant::now();
    a.subscribe_buddy(&acc_a, &uri_b, true).unwrap();
    b.subscribe_buddy(&acc_b, &uri_a, true).unwrap();
    b.wait_for_presence(&acc_b, &uri_a, true, mb, Duration::from_secs(60))
        .expect("the plain jamid sees the proxied one online");
    eprintln!("plain sees proxied online after {:?}", t1.elapsed());
    a.wait_for_presence(&acc_a, &uri_b, true, ma, Duration::from_secs(60))
        .expect("the proxied jamid sees the plain one online (listen through our proxy)");
    eprintln!("both online after {:?}", t1.elapsed());
    let (puts, listens) = (counters.puts.load(Relaxed), counters.listens.load(Relaxed));
    eprintln!(
        "our proxy served {} requests: {puts} puts ({} permanent), {} gets, {listens} listens",
        counters.requests.load(Relaxed),
        counters.permanent_puts.load(Relaxed),
        counters.gets.load(Relaxed)
    );
    assert!(
        puts > 0 && listens > 0,
        "the proxied jamid put and listened through our proxy"
    );
    let _ = stop.send(());
    proxy.join().unwrap();
}
