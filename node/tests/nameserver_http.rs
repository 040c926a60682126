//! The name server over HTTP: one client test body, written once and generic over the
//! transport, run against a real loopback server and inside turmoil; turmoil alone
//! adds partitions (timeouts, retries, the cache answering meanwhile); loopback
//! alone adds a server restart on the same db file.

mod turmoil_net;

use node::crypto::{self, PrivateKey};
use node::nameserver::client::Connector;
use node::nameserver::http;
use node::nameserver::{
    ClientConfig, FileStore, LookupError, NsClient, RegisterError, Registry, TcpConnector,
};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use turmoil_net::{SimConnector, SimListener};

fn keys() -> &'static [PrivateKey; 2] {
    static KEYS: OnceLock<[PrivateKey; 2]> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        [
            PrivateKey::generate(1024, &mut rng).unwrap(),
            PrivateKey::generate(1024, &mut rng).unwrap(),
        ]
    })
}

fn addr_of(k: &PrivateKey) -> String {
    crypto::hex(&k.public_key().short_id())
}

fn config(server: &str) -> ClientConfig {
    ClientConfig {
        timeout: Duration::from_secs(1),
        retries: 2,
        backoff: Duration::from_millis(100),
        negative_ttl: Duration::from_millis(500),
        ..ClientConfig::new(server)
    }
}

/// The client scenario, for any transport: `client()` makes a fresh client (empty cache).
async fn client_body<C: Connector>(client: impl Fn() -> NsClient<C>) {
    let [k0, k1] = keys();
    let (a, b) = (client(), client());

    // Not found, then answered from the negative cache without a request.
    assert_eq!(a.lookup_name("alice").await, Err(LookupError::NotFound));
    assert_eq!(a.requests_sent(), 1);
    assert_eq!(a.lookup_name("Alice").await, Err(LookupError::NotFound));
    assert_eq!(a.requests_sent(), 1);
    assert!(matches!(
        a.lookup_name("a!").await,
        Err(LookupError::Invalid(_))
    ));

    // Register; another client resolves it (verifying key and signature) once, then from cache.
    assert_eq!(a.register_name(k0, "Alice", "").await, Ok(()));
    assert_eq!(b.lookup_name("alice").await, Ok(addr_of(k0)));
    assert_eq!(b.lookup_name("ALICE").await, Ok(addr_of(k0)));
    assert_eq!(b.requests_sent(), 1);
    assert_eq!(
        b.lookup_addr(&addr_of(k0)).await,
        Ok("alice".into()),
        "cached by the name lookup"
    );
    assert_eq!(b.requests_sent(), 1);
    assert_eq!(
        client().lookup_addr(&format!("0x{}", addr_of(k0))).await,
        Ok("alice".into())
    );

    // Conflicts map as in jamid: 409 and 403 are "already taken"; re-registering is success.
    assert_eq!(
        client().register_name(k1, "alice", "").await,
        Err(RegisterError::AlreadyTaken)
    );
    assert_eq!(
        client().register_name(k0, "alice2", "").await,
        Err(RegisterError::AlreadyTaken)
    );
    assert_eq!(client().register_name(k0, "alice", "").await, Ok(()));
    assert_eq!(
        client().register_name(k0, "x", "").await,
        Err(RegisterError::InvalidName)
    );

    // A not-found answer is believed only for negative_ttl.
    assert_eq!(b.lookup_name("bob").await, Err(LookupError::NotFound));
    assert_eq!(
        b.lookup_addr(&addr_of(k1)).await,
        Err(LookupError::NotFound)
    );
    assert_eq!(a.register_name(k1, "bob", "").await, Ok(()));
    assert_eq!(
        b.lookup_name("bob").await,
        Err(LookupError::NotFound),
        "still cached"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(b.lookup_name("bob").await, Ok(addr_of(k1)));
    assert_eq!(b.lookup_addr(&addr_of(k1)).await, Ok("bob".into()));
}

async fn loopback_server(
    db: Option<&std::path::Path>,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let store = match db {
        Some(p) => FileStore::open(p).unwrap(),
        None => FileStore::in_memory(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(http::serve(listener, Arc::new(Registry::new(store))));
    (addr, task)
}

#[tokio::test]
async fn client_body_on_loopback() {
    let (addr, server) = loopback_server(None).await;
    client_body(|| NsClient::new(TcpConnector, config(&addr.to_string()))).await;
    server.abort();
}

#[tokio::test]
async fn registrations_survive_a_server_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("names.jsonl");
    let [k0, _] = keys();
    let (addr, server) = loopback_server(Some(&db)).await;
    let c = NsClient::new(TcpConnector, config(&addr.to_string()));
    assert_eq!(c.register_name(k0, "carol", "0x01").await, Ok(()));
    server.abort();
    let _ = server.await;

    // Down: a clear error after the retries, not a hang.
    let fresh = NsClient::new(TcpConnector, config(&addr.to_string()));
    assert!(matches!(
        fresh.lookup_name("carol").await,
        Err(LookupError::Unreachable(_))
    ));
    assert_eq!(fresh.requests_sent(), 3);

    let (addr2, server2) = loopback_server(Some(&db)).await;
    let c2 = NsClient::new(TcpConnector, config(&addr2.to_string()));
    assert_eq!(c2.lookup_name("carol").await, Ok(addr_of(k0)));
    assert_eq!(c2.lookup_addr(&addr_of(k0)).await, Ok("carol".into()));
    server2.abort();
}

// ----- turmoil -----------------------------------------------------------------------

fn sim_with_server(seed: u64) -> turmoil::Sim<'static> {
    let mut sim = turmoil::Builder::new()
        .simulation_duration(Duration::from_secs(120))
        .rng_seed(seed)
        .build();
    sim.host("ns", || async {
        let listener = turmoil::net::TcpListener::bind("0.0.0.0:8089").await?;
        http::serve(
            SimListener(listener),
            Arc::new(Registry::new(FileStore::in_memory())),
        )
        .await;
        Ok(())
    });
    sim
}

#[test]
fn client_body_in_turmoil() {
    keys();
    let mut sim = sim_with_server(1);
    sim.client("node", async {
        client_body(|| NsClient::new(SimConnector, config("ns:8089"))).await;
        Ok(())
    });
    sim.run().unwrap();
}

#[test]
fn a_partition_is_a_fast_clear_error_and_the_cache_still_answers() {
    let [k0, _] = keys();
    let mut sim = sim_with_server(2);
    sim.client("node", async move {
        let c = NsClient::new(SimConnector, config("ns:8089"));
        assert_eq!(c.register_name(k0, "dave", "").await, Ok(()));
        let sent = c.requests_sent();

        turmoil::partition("node", "ns");
        let t0 = tokio::time::Instant::now();
        assert!(matches!(
            c.lookup_name("erin").await,
            Err(LookupError::Unreachable(_))
        ));
        // Refused at once, 3 attempts with 100 ms + 200 ms of backoff between them.
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_millis(400),
            "{took:?}"
        );
        assert_eq!(c.requests_sent(), sent + 3);
        // Known answers keep working while the server is unreachable.
        assert_eq!(c.lookup_name("dave").await, Ok(addr_of(k0)));
        assert_eq!(c.lookup_addr(&addr_of(k0)).await, Ok("dave".into()));
        assert_eq!(c.requests_sent(), sent + 3);
        // An unreachable server is not cached as "not found".
        turmoil::repair("node", "ns");
        assert_eq!(c.lookup_name("erin").await, Err(LookupError::NotFound));
        assert_eq!(c.requests_sent(), sent + 4);
        Ok(())
    });
    sim.run().unwrap();
}

#[test]
fn held_traffic_times_out_after_every_retry() {
    let [k0, _] = keys();
    let mut sim = sim_with_server(3);
    sim.client("node", async move {
        let c = NsClient::new(SimConnector, config("ns:8089"));
        assert_eq!(c.register_name(k0, "gina", "").await, Ok(()));
        let reader = NsClient::new(SimConnector, config("ns:8089"));
        // Messages are held, not refused: the client hears nothing and must time out.
        turmoil::hold("node", "ns");
        let t0 = tokio::time::Instant::now();
        assert_eq!(reader.lookup_name("gina").await, Err(LookupError::Timeout));
        // 3 attempts of 1 s each, plus 100 ms + 200 ms of backoff.
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(3300) && took < Duration::from_millis(3400),
            "{took:?}"
        );
        assert_eq!(reader.requests_sent(), 3);
        assert_eq!(
            reader.register_name(k0, "gina", "").await,
            Err(RegisterError::Error("timed out".into()))
        );
        turmoil::release("node", "ns");
        assert_eq!(reader.lookup_name("gina").await, Ok(addr_of(k0)));
        Ok(())
    });
    sim.run().unwrap();
}

#[test]
fn a_partition_healed_before_the_last_retry_still_answers() {
    let [k0, _] = keys();
    let mut sim = sim_with_server(4);
    sim.client("node", async move {
        let c = NsClient::new(SimConnector, config("ns:8089"));
        assert_eq!(c.register_name(k0, "frank", "").await, Ok(()));
        let reader = NsClient::new(SimConnector, config("ns:8089"));
        turmoil::partition("node", "ns");
        // Attempts go out at 0, 100 and 300 ms; heal between the second and the third.
        tokio::spawn(async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            turmoil::repair("node", "ns");
        });
        assert_eq!(reader.lookup_name("frank").await, Ok(addr_of(k0)));
        assert_eq!(reader.requests_sent(), 3);
        Ok(())
    });
    sim.run().unwrap();
}
