//! One Device through a DHT proxy and one on UDP, on loopback with real sockets: our
//! proxy server (hyper, `dht::proxy::server`) in front of a UDP node, a plain bootstrap
//! node, bob's device on UDP and alice's on `DhtBackend::Proxy` (no UDP at all), both
//! driven by `DeviceDriver`. Each sees the other's account online (announcements and
//! certificates put through the proxy, listens streamed back), alice connects to bob
//! (the request encrypted to him through the proxy, the answer heard on her listen,
//! ICE-TCP on loopback) and her text arrives over `sip`; bob's reply arrives too.

use node::connect::manager::{ConnectionEvent, ManagerConfig};
use node::contacts::ContactList;
use node::device::jami::{JamiEvent, Via};
use node::device::Device;
use node::device::{DeviceEvent, DhtBackend, JamiIdentity};
use node::dht::engine::{Config, Dht, Event};
use node::dht::proxy::backend::Backend;
use node::dht::proxy::server;
use node::dht::InfoHash;
use node::driver::{unix_ms, DeviceDriver, UdpDriver};
use node::identity::{AccountIdentity, DeviceIdentity};
use node::presence::PresenceEvent;
use rand::SeedableRng;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn identity(seed: u64) -> (AccountIdentity, DeviceIdentity) {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
    let now_s = unix_ms() / 1000 - 60;
    let account = AccountIdentity::generate(1024, now_s, &mut rng).expect("account");
    let device = account.new_device(1024, now_s, &mut rng).expect("device");
    (account, device)
}

/// A plain UDP node serving until `stop`.
fn udp_node(stop: Arc<AtomicBool>) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let dht = Dht::new(Config::verifying(InfoHash::get("boot"), 3), unix_ms());
        let mut d = UdpDriver::bind(dht, "127.0.0.1:0".parse().unwrap()).unwrap();
        tx.send(d.local_addr().unwrap()).unwrap();
        while !stop.load(Ordering::Relaxed) {
            d.turn(Duration::from_millis(20), &mut |_, _| {}).unwrap();
        }
    });
    rx.recv().unwrap()
}

/// Our proxy server on loopback TCP, its node bootstrapped from `boot`.
fn proxy(boot: SocketAddr) -> SocketAddr {
    let be = Backend::start("127.0.0.1:0".parse().unwrap(), &[boot], 9).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap()).unwrap();
            server::serve(l, be).await;
        });
    });
    rx.recv().unwrap()
}

fn device(
    who: &(AccountIdentity, DeviceIdentity),
    backend: DhtBackend,
    seed: u64,
) -> DeviceDriver<Device> {
    let now = unix_ms();
    let jami = JamiIdentity {
        account: &who.0,
        device: &who.1,
        announcement_id: 0x7000 + seed,
    };
    let cfg = Config::verifying(InfoHash::get("replaced"), seed);
    let mut dev = Device::with_backend(cfg, Some(jami), backend, now).expect("device");
    let manager = ManagerConfig {
        host_ips: vec!["127.0.0.1".parse().unwrap()],
        allow_public: true,
        seed,
        ..Default::default()
    };
    assert!(dev.enable_services(now, manager, ContactList::new()));
    DeviceDriver::bind(dev, "127.0.0.1:0".parse().unwrap()).expect("bind")
}

fn account(who: &(AccountIdentity, DeviceIdentity)) -> InfoHash {
    InfoHash(who.0.account_id())
}

#[test]
fn a_device_through_the_proxy_and_one_on_udp_see_connect_to_and_text_each_other() {
    let stop = Arc::new(AtomicBool::new(false));
    let boot = udp_node(stop.clone());
    let http = proxy(boot);
    let (a, b) = (identity(11), identity(12));
    let mut alice = device(&a, DhtBackend::Proxy(http), 21);
    let mut bob = device(&b, DhtBackend::Udp, 22);
    bob.dht.bootstrap(unix_ms(), boot);
    assert_eq!(alice.dht.backend(), DhtBackend::Proxy(http));
    assert!(alice.dht.dht().is_none() && alice.dht.proxy().is_some());

    let now = unix_ms();
    alice.dht.track(now, account(&b));
    bob.dht.track(now, account(&a));

    #[derive(Default, Debug)]
    struct Seen {
        connected: bool,
        online: bool,
        connected_to_peer: bool,
        texts: Vec<(String, Via)>,
        delivered: Vec<(u64, Via)>,
    }
    let (mut sa, mut sb) = (Seen::default(), Seen::default());
    let record = |s: &mut Seen, e: DeviceEvent| match e {
        DeviceEvent::Dht(Event::Connected) => s.connected = true,
        DeviceEvent::Presence(PresenceEvent::Online(_)) => s.online = true,
        DeviceEvent::Jami(JamiEvent::Connection(ConnectionEvent::Connected { .. })) => {
            s.connected_to_peer = true
        }
        DeviceEvent::Jami(JamiEvent::Message { body, via, .. }) => s
            .texts
            .push((String::from_utf8_lossy(&body).into_owned(), via)),
        DeviceEvent::Jami(JamiEvent::Delivered { token, via }) => s.delivered.push((token, via)),
        _ => {}
    };
    let t0 = Instant::now();
    let turn = |alice: &mut DeviceDriver<Device>,
                bob: &mut DeviceDriver<Device>,
                sa: &mut Seen,
                sb: &mut Seen| {
        alice
            .turn(Duration::from_millis(5), &mut |_, e| record(sa, e))
            .unwrap();
        bob.turn(Duration::from_millis(5), &mut |_, e| record(sb, e))
            .unwrap();
    };
    while !(sa.online && sb.online) && t0.elapsed() < Duration::from_secs(60) {
        turn(&mut alice, &mut bob, &mut sa, &mut sb);
    }
    assert!(sa.connected, "alice's proxy never answered: {sa:?}");
    assert!(
        sa.online,
        "alice never saw bob online through the proxy: {sa:?}"
    );
    assert!(sb.online, "bob never saw alice's announcement: {sb:?}");
    assert!(alice.dht.announcements() >= 1);

    let token = alice
        .dht
        .send_message(
            unix_ms(),
            account(&b),
            "text/plain",
            b"hello from the proxy",
        )
        .expect("services");
    let online_at = t0.elapsed();
    while !(sa.delivered.iter().any(|d| d.0 == token)
        && sa.connected_to_peer
        && sb.connected_to_peer)
        && t0.elapsed() < Duration::from_secs(90)
    {
        turn(&mut alice, &mut bob, &mut sa, &mut sb);
    }
    assert!(
        sb.texts.iter().any(|t| t.0 == "hello from the proxy"),
        "bob: {sb:?}"
    );
    assert!(sa.delivered.iter().any(|d| d.0 == token), "alice: {sa:?}");
    assert!(
        sa.connected_to_peer && sb.connected_to_peer,
        "{sa:?} {sb:?}"
    );
    // Once connected the text goes over `sip` (the DHT copy may have arrived first).
    let reply = bob
        .dht
        .send_message(unix_ms(), account(&a), "text/plain", b"hello back")
        .expect("services");
    while !(sa.texts.iter().any(|t| t.0 == "hello back")
        && sb.delivered.iter().any(|d| d.0 == reply))
        && t0.elapsed() < Duration::from_secs(120)
    {
        turn(&mut alice, &mut bob, &mut sa, &mut sb);
    }
    assert!(
        sa.texts.contains(&("hello back".to_string(), Via::Sip)),
        "alice: {sa:?}"
    );
    eprintln!(
        "online both ways after {online_at:?}; connected, texted and answered after {:?}",
        t0.elapsed()
    );
    let stats = &alice.dht.proxy().unwrap().stats;
    assert!(stats.requests > 3 && stats.malformed == 0, "{stats:?}");
    stop.store(true, Ordering::Relaxed);
}
