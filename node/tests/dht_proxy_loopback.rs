//! Our DHT proxy server and client on loopback, with a plain node of ours on UDP behind
//! it: routes, status codes and bodies as OpenDHT 2.4.12's server gives them, hashed-text
//! keys, legacy routes, and values crossing between the proxy and the UDP node.
//! (Against the official programs: conformance/tests/dht_proxy.rs.)

use node::dht::engine::{Config, Dht};
use node::dht::proxy::backend::Backend;
use node::dht::proxy::client::ProxyClient;
use node::dht::proxy::server;
use node::dht::{InfoHash, Value};
use node::driver::{unix_ms, UdpDriver};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A plain UDP node serving until `stop`.
fn udp_node(stop: Arc<AtomicBool>) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let dht = Dht::new(
            Config {
                id: InfoHash::get("loopback-udp-node"),
                network: 0,
                seed: 5,
                verify: None,
            },
            unix_ms(),
        );
        let mut d = UdpDriver::bind(dht, "127.0.0.1:0".parse().unwrap()).unwrap();
        tx.send(d.local_addr().unwrap()).unwrap();
        while !stop.load(Ordering::Relaxed) {
            d.turn(Duration::from_millis(20), &mut |_, _| {}).unwrap();
        }
    });
    rx.recv().unwrap()
}

/// A raw HTTP/1.1 exchange (`Connection: close`), to see exact status lines and bodies.
async fn raw(addr: SocketAddr, req: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "current_thread")]
async fn proxy_routes_and_values_on_loopback() {
    let stop = Arc::new(AtomicBool::new(false));
    let udp = udp_node(stop.clone());
    let be = Backend::start("127.0.0.1:0".parse().unwrap(), &[udp], 9).unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = l.local_addr().unwrap();
    tokio::spawn(server::serve(l, be.clone()));
    let c = ProxyClient::new(http);

    // Node info: our node id, the UDP node counted once it answered.
    let mut info = c.node_info().await.unwrap();
    for _ in 0..50 {
        if info["ipv4"]["good"].as_u64() == Some(1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        info = c.node_info().await.unwrap();
    }
    assert_eq!(info["node_id"], be.node_id.to_string());
    assert_eq!(info["ipv4"]["good"], 1);
    assert_eq!(info["public_ip"], "127.0.0.1");
    assert!(info.get("id").is_none(), "no identity, no `id`");

    // A put without id gets one; get by hex key and by the text it hashes.
    let stored = c
        .put(
            &InfoHash::get("hello"),
            &Value::plain(0, 3, b"abc".to_vec()),
            false,
        )
        .await
        .unwrap();
    assert_ne!(stored.id, 0);
    assert_eq!(
        c.get(&InfoHash::get("hello")).await.unwrap(),
        vec![stored.clone()]
    );
    let by_text = raw(
        http,
        "GET /key/hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(by_text.contains(&format!(
        "{{\"data\":\"YWJj\",\"id\":\"{}\",\"type\":3}}\n",
        stored.id
    )));
    assert!(by_text
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked"));
    // Legacy route: the same without `/key`.
    let legacy = raw(
        http,
        &format!(
            "GET /{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            InfoHash::get("hello")
        ),
    )
    .await;
    assert!(legacy.contains(&format!("\"id\":\"{}\"", stored.id)));

    // A listen sees a later put; the stream stays open.
    let mut l = c.listen(&InfoHash::get("live")).await.unwrap();
    let put = Value::plain(77, 0, b"later".to_vec());
    c.put(&InfoHash::get("live"), &put, true).await.unwrap();
    let heard = tokio::time::timeout(Duration::from_secs(5), l.next_value())
        .await
        .expect("listen delivers")
        .unwrap()
        .unwrap();
    assert_eq!((heard.value, heard.expired), (put, false));

    // Errors as OpenDHT words them.
    let bad = raw(
        http,
        "POST /key/x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\n{{{",
    )
    .await;
    assert!(bad.starts_with("HTTP/1.1 400"));
    assert!(bad.ends_with("{\"err:\":\"Incorrect JSON\"}"));
    let empty = raw(
        http,
        "POST /key/x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(empty.ends_with("{\"err\":\"Missing parameters\"}"));
    let opts = raw(
        http,
        "OPTIONS /key/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await
    .to_ascii_lowercase();
    assert!(opts.contains("access-control-allow-methods: options, get, post, listen"));
    match c
        .put(&InfoHash::get("x"), &Value::plain(1, 0, vec![]), false)
        .await
    {
        Ok(v) => assert_eq!(v.id, 1),
        Err(e) => panic!("put with a node behind the proxy: {e}"),
    }
    assert!(ProxyClient::new(http).node_info().await.is_ok());
    let missing = raw(
        http,
        "GET /node/nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(missing.starts_with("HTTP/1.1 404"));
    be.stop();
    stop.store(true, Ordering::Relaxed);
}

#[tokio::test(flavor = "current_thread")]
async fn permanent_puts_are_put_again_by_the_proxy() {
    let stop = Arc::new(AtomicBool::new(false));
    let udp = udp_node(stop.clone());
    // Re-put every 200 ms instead of 5 min.
    let be = Backend::start_with("127.0.0.1:0".parse().unwrap(), &[udp], 3, 200).unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let c = ProxyClient::new(l.local_addr().unwrap());
    tokio::spawn(server::serve(l, be.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let once = Value::plain(5, 0, b"once".to_vec());
    c.put(&InfoHash::get("k1"), &once, false).await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(be.counters.reputs.load(Ordering::Relaxed), 0);
    let kept = Value::plain(6, 0, b"kept".to_vec());
    c.put(&InfoHash::get("k2"), &kept, true).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let n = be.counters.reputs.load(Ordering::Relaxed);
    assert!((2..=8).contains(&n), "about 5 re-puts in 1.1 s: {n}");
    assert_eq!(be.counters.permanent_puts.load(Ordering::Relaxed), 1);
    be.stop();
    stop.store(true, Ordering::Relaxed);
}
