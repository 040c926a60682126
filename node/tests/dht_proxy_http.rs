//! The DHT proxy over HTTP: one client test body, written once and generic over the
//! transport, run against a real loopback proxy (real UDP, real clock) and inside
//! turmoil (simulated TCP, UDP and clock, the same backend code); turmoil alone adds
//! partitions and held links between the client, the proxy and the DHT node behind it.

mod turmoil_net;

use node::dht::proxy::backend::{Backend, REPUT_MS};
use node::dht::proxy::client::{ClientError, ProxyClient};
use node::dht::proxy::server;
use node::dht::{InfoHash, Value};
use node::net::Connector;
use std::net::SocketAddr;
use std::time::Duration;
use turmoil_net::{SimConnector, SimListener, SimUdp};

/// Unix time of the simulated clock's zero (values carry creation times).
const SIM_EPOCH_MS: u64 = 1_767_225_600_000;

/// Wait until the proxy's node counts the one node behind it; its node info.
async fn ready<C: Connector + 'static>(c: &ProxyClient<C>) -> serde_json::Value {
    for _ in 0..100 {
        let info = c.node_info().await.expect("node info");
        if info["ipv4"]["good"].as_u64() == Some(1) {
            return info;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the proxy's node never knew the node behind it");
}

/// The client scenario, for any transport: the proxy has one DHT node behind it.
async fn client_body<C: Connector + 'static>(c: ProxyClient<C>) {
    // Node info: the node behind the proxy is counted once it answered.
    let info = ready(&c).await;
    assert!(info["node_id"].as_str().is_some_and(|s| s.len() == 40));

    // A put without id gets one; a get finds exactly it; an unknown key has nothing.
    let k = InfoHash::get("body-key");
    let stored = c
        .put(&k, &Value::plain(0, 3, b"abc".to_vec()), false)
        .await
        .expect("put");
    assert_ne!(stored.id, 0);
    assert_eq!(c.get(&k).await.expect("get"), vec![stored.clone()]);
    assert_eq!(c.get(&InfoHash::get("nobody")).await.expect("get"), vec![]);

    // A listen hears a later put (permanent, as jamid's are) and stays open.
    let live = InfoHash::get("body-live");
    let mut l = c.listen(&live).await.expect("listen");
    let later = Value::plain(77, 0, b"later".to_vec());
    assert_eq!(c.put(&live, &later, true).await.expect("put"), later);
    let heard = tokio::time::timeout(Duration::from_secs(5), l.next_value())
        .await
        .expect("the listen delivers")
        .expect("stream open")
        .expect("a value");
    assert_eq!((heard.value, heard.expired), (later.clone(), false));
    let second = Value::plain(78, 0, b"again".to_vec());
    c.put(&live, &second, false).await.expect("put");
    let heard = tokio::time::timeout(Duration::from_secs(5), l.next_value())
        .await
        .expect("still listening")
        .expect("stream open")
        .expect("a value");
    assert_eq!(heard.value, second);
}

// ----- real loopback ------------------------------------------------------------------

#[tokio::test(flavor = "current_thread")]
async fn client_body_on_loopback() {
    let behind = Backend::start("127.0.0.1:0".parse().unwrap(), &[], 21).unwrap();
    let be = Backend::start("127.0.0.1:0".parse().unwrap(), &[behind.udp], 22).unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = l.local_addr().unwrap();
    let server = tokio::spawn(server::serve(l, be.clone()));
    client_body(ProxyClient::new(http).timeout(Duration::from_secs(5))).await;
    server.abort();
    be.stop();
    behind.stop();
}

#[tokio::test(flavor = "current_thread")]
async fn a_proxy_that_is_gone_is_a_clear_error() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = l.local_addr().unwrap();
    drop(l);
    let c = ProxyClient::new(http);
    assert!(matches!(
        c.get(&InfoHash::get("x")).await,
        Err(ClientError::Io(_))
    ));
    // A server that accepts but never answers: the deadline, not a hang.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let c = ProxyClient::new(silent.local_addr().unwrap()).timeout(Duration::from_millis(300));
    let t0 = std::time::Instant::now();
    assert!(matches!(
        c.put(&InfoHash::get("x"), &Value::plain(1, 0, vec![]), false)
            .await,
        Err(ClientError::Timeout(_))
    ));
    assert!(t0.elapsed() < Duration::from_secs(2));
}

// ----- turmoil ------------------------------------------------------------------------

/// The simulated clock, as the engine wants it (unix ms).
fn sim_clock() -> impl Fn() -> u64 {
    let t0 = tokio::time::Instant::now();
    move || SIM_EPOCH_MS + t0.elapsed().as_millis() as u64
}

/// Hosts `dht` (a plain node) and `proxy` (a node bootstrapped from it, serving the
/// proxy API on port 8000), both on our backend over turmoil's UDP.
fn sim_with_proxy(seed: u64) -> turmoil::Sim<'static> {
    let mut sim = turmoil::Builder::new()
        .simulation_duration(Duration::from_secs(300))
        .rng_seed(seed)
        .build();
    sim.host("dht", || async {
        let sock = SimUdp(turmoil::net::UdpSocket::bind("0.0.0.0:4222").await?);
        let (_be, node) = Backend::on_socket(sock, &[], 1, REPUT_MS, sim_clock())?;
        node.await;
        Ok(())
    });
    sim.host("proxy", || async {
        let sock = SimUdp(turmoil::net::UdpSocket::bind("0.0.0.0:4222").await?);
        let dht = SocketAddr::new(turmoil::lookup("dht"), 4222);
        let (be, node) = Backend::on_socket(sock, &[dht], 2, REPUT_MS, sim_clock())?;
        let listener = SimListener(turmoil::net::TcpListener::bind("0.0.0.0:8000").await?);
        tokio::join!(node, server::serve(listener, be));
        Ok(())
    });
    sim
}

fn sim_client() -> ProxyClient<SimConnector> {
    ProxyClient::with_connector(SimConnector, "proxy:8000").timeout(Duration::from_secs(2))
}

#[test]
fn client_body_in_turmoil() {
    let mut sim = sim_with_proxy(1);
    sim.client("node", async {
        client_body(sim_client()).await;
        Ok(())
    });
    sim.run().unwrap();
}

#[test]
fn a_partition_is_a_fast_error_and_healing_restores_the_proxy() {
    let mut sim = sim_with_proxy(2);
    sim.client("node", async {
        let c = sim_client();
        ready(&c).await;
        let k = InfoHash::get("part");
        let v = c.put(&k, &Value::plain(9, 0, b"v".to_vec()), false).await?;
        turmoil::partition("node", "proxy");
        let t0 = tokio::time::Instant::now();
        let err = c.get(&k).await.expect_err("partitioned");
        assert!(matches!(err, ClientError::Io(_)), "{err}");
        assert!(t0.elapsed() < Duration::from_millis(100), "refused at once");
        turmoil::repair("node", "proxy");
        assert_eq!(c.get(&k).await?, vec![v]);
        Ok(())
    });
    sim.run().unwrap();
}

#[test]
fn held_traffic_times_out_and_a_listen_loses_nothing() {
    let mut sim = sim_with_proxy(3);
    sim.client("other", async {
        // Puts while `node`'s link to the proxy is held (from 3 s to 6 s).
        tokio::time::sleep(Duration::from_secs(4)).await;
        let c = sim_client();
        c.put(
            &InfoHash::get("held"),
            &Value::plain(5, 0, b"during".to_vec()),
            false,
        )
        .await?;
        Ok(())
    });
    sim.client("node", async {
        let start = tokio::time::Instant::now();
        let c = sim_client();
        ready(&c).await;
        let mut l = c.listen(&InfoHash::get("held")).await?;
        tokio::time::sleep_until(start + Duration::from_secs(3)).await;
        turmoil::hold("node", "proxy");
        let t0 = tokio::time::Instant::now();
        let err = c
            .get(&InfoHash::get("held"))
            .await
            .expect_err("held: no answer");
        assert!(matches!(err, ClientError::Timeout(d) if d == Duration::from_secs(2)));
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_secs(2) && took < Duration::from_millis(2100),
            "{took:?}"
        );
        // Nothing reaches the listen while held; all of it after the release.
        let quiet = tokio::time::timeout(Duration::from_millis(500), l.next_value()).await;
        assert!(quiet.is_err(), "held traffic must not arrive");
        tokio::time::sleep(Duration::from_secs(2)).await;
        turmoil::release("node", "proxy");
        let heard = tokio::time::timeout(Duration::from_secs(5), l.next_value())
            .await
            .expect("delivered after the release")
            .expect("stream open")?;
        assert_eq!(heard.value, Value::plain(5, 0, b"during".to_vec()));
        Ok(())
    });
    sim.run().unwrap();
}

#[test]
fn a_proxy_cut_off_from_the_dht_says_put_failed_then_recovers() {
    let mut sim = sim_with_proxy(4);
    sim.client("node", async {
        let c = sim_client().timeout(Duration::from_secs(30));
        ready(&c).await;
        turmoil::partition("proxy", "dht");
        let t0 = tokio::time::Instant::now();
        let k = InfoHash::get("cut");
        let v = Value::plain(3, 0, b"cut".to_vec());
        match c.put(&k, &v, false).await {
            Err(ClientError::Status { status, body }) => {
                assert_eq!(status, 502);
                assert!(body.contains("Put failed"), "{body}");
            }
            other => panic!("a put nobody stored must fail: {other:?}"),
        }
        let took = t0.elapsed();
        assert!(took < Duration::from_secs(10), "{took:?}");
        turmoil::repair("proxy", "dht");
        // The proxy finds its way back to the DHT node and puts again.
        let mut stored = None;
        for _ in 0..60 {
            if let Ok(s) = c.put(&k, &v, false).await {
                stored = Some(s);
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        assert_eq!(stored, Some(v.clone()), "the put succeeds after the repair");
        assert_eq!(c.get(&k).await?, vec![v]);
        Ok(())
    });
    sim.run().unwrap();
}
