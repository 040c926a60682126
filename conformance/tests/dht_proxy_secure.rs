//! Our proxy-client mode's secure layer (`SecureProxy`, what `jamisim node dht --proxy`
//! runs) through the official `dhtnode --proxyserver`, with the official `dhtnode -i` on
//! the plain DHT behind it: we never touch UDP, yet our certificate is announced and
//! found, our signed value is dhtnode's signed value, and encrypted values cross both
//! ways.

use conformance::dhtnode::DhtNode;
use conformance::netns::Netns;
use node::dht::proxy::client::ProxyClient;
use node::dht::proxy::secure_client::SecureProxy;
use node::dht::{Body, InfoHash, ValueData};
use node::driver::unix_ms;
use node::identity::NodeIdentity;
use rand::SeedableRng;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

const PLAIN_PORT: u16 = 4240;
const PROXY_UDP_PORT: u16 = 4241;
const PROXY_HTTP_PORT: u16 = 8090;

/// Run `line` on dhtnode and return what it printed once `needle` appears (or all it
/// printed by the deadline, for the failure message).
fn run_on(n: &mut DhtNode, line: &str, needle: &str, secs: u64) -> String {
    let at = n.log_len();
    n.command(line).unwrap();
    n.wait_for(at, needle, Duration::from_secs(secs))
        .unwrap_or_else(|| n.log_text()[at..].to_string())
}

#[test]
fn signed_and_encrypted_values_through_dhtnodes_proxy() {
    if !conformance::dhtnode_or_skip() {
        return;
    }
    let ns = Netns::create("jspxsec").expect("namespace");
    let (mut official, _proxy) =
        DhtNode::start_proxied(&ns, PLAIN_PORT, PROXY_UDP_PORT, PROXY_HTTP_PORT)
            .expect("dhtnode -i and dhtnode --proxyserver start");
    let their_key = official.public_key_id().unwrap_or_else(|| {
        panic!(
            "dhtnode -i prints its public key id:\n{}",
            official.log_text()
        )
    });

    let (tx, rx) = mpsc::channel::<String>();
    let (go_tx, go) = mpsc::channel::<()>();
    let worker = ns.spawn_async(async move {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(41);
        let identity = NodeIdentity::generate(2048, unix_ms() / 1000, &mut rng).unwrap();
        let client = ProxyClient::new(SocketAddr::from(([127, 0, 0, 1], PROXY_HTTP_PORT)));
        let px = SecureProxy::new(client, Some(identity), rng);
        let me = px.public_key_id().unwrap();
        tx.send(format!("key {me}")).unwrap();
        // Connected as OpenDHT's proxy client decides it: the proxy's node has a
        // good node.
        let mut good = 0;
        for _ in 0..100 {
            if let Ok(info) = px.client.node_info().await {
                good = info["ipv4"]["good"].as_u64().unwrap_or(0);
                if good > 0 {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tx.send(format!("good {}", good > 0)).unwrap();
        let announced = px.announce().await.map(|v| v.is_some());
        tx.send(format!("announced {announced:?}")).unwrap();
        let signed = px
            .put_signed(
                &InfoHash::get("signed-via-proxy"),
                0x5a,
                Body::text("signed-through-proxy"),
            )
            .await
            .map(|_| ());
        tx.send(format!("signed {signed:?}")).unwrap();
        // dhtnode -i announces its certificate once it has a peer: wait until it can
        // be found through the proxy (putEncrypted fails without it, as OpenDHT's).
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(15) {
            let found = px.client.get(&their_key).await.is_ok_and(|vs| {
                vs.iter()
                    .any(|v| node::dht::secure::certificate_key(v, &their_key).is_some())
            });
            if found {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        eprintln!("dhtnode's certificate found after {:?}", t0.elapsed());
        let enc = px
            .put_encrypted(
                &InfoHash::get("enc-for-dhtnode"),
                &their_key,
                0xe2,
                Body::text("secret-via-proxy"),
            )
            .await
            .map(|_| ());
        tx.send(format!("encrypted {enc:?}")).unwrap();
        go.recv().unwrap();
        let got = px
            .get(&InfoHash::get("enc-for-proxy-user"))
            .await
            .expect("get");
        let plain: Vec<String> = got
            .iter()
            .filter_map(|v| match &v.data {
                ValueData::Signed(s) if s.to == Some(me) => Some(format!(
                    "{} from {}",
                    String::from_utf8_lossy(&s.body.data),
                    InfoHash(node::crypto::short_id(&s.owner))
                )),
                _ => None,
            })
            .collect();
        tx.send(format!("decrypted {plain:?}")).unwrap();
    });
    let t = Duration::from_secs(30);
    let me: InfoHash = rx.recv_timeout(t).unwrap()["key ".len()..].parse().unwrap();
    assert_eq!(
        rx.recv_timeout(t).unwrap(),
        "good true",
        "the proxy's node joined"
    );
    assert_eq!(rx.recv_timeout(t).unwrap(), "announced Ok(true)");
    assert_eq!(rx.recv_timeout(t).unwrap(), "signed Ok(())");
    assert_eq!(
        rx.recv_timeout(t).unwrap(),
        "encrypted Ok(())",
        "dhtnode's certificate found through its proxy"
    );

    // dhtnode sees our signature, and decrypts what we encrypted for it.
    let got = run_on(&mut official, "g signed-via-proxy", "Get: ", 10);
    assert!(
        got.contains("signed (v0)") && got.contains("signed-through-proxy"),
        "dhtnode gets our signed value:\n{got}"
    );
    let got = run_on(&mut official, "g enc-for-dhtnode", "Get: ", 10);
    assert!(
        got.contains("decrypted") && got.contains("secret-via-proxy"),
        "dhtnode decrypts our value:\n{got}"
    );

    // dhtnode finds our certificate (announced through its proxy) and encrypts for us.
    let line = format!("e enc-for-proxy-user {me} secret-for-proxy-user");
    let put = run_on(&mut official, &line, "Put encrypted: ", 15);
    assert!(
        put.contains("Put encrypted: success"),
        "dhtnode found our certificate:\n{put}"
    );
    go_tx.send(()).unwrap();
    assert_eq!(
        rx.recv_timeout(t).unwrap(),
        format!("decrypted [\"secret-for-proxy-user from {their_key}\"]"),
        "we decrypt dhtnode's value read through its proxy"
    );
    worker.join().expect("our client ran");
}
