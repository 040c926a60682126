//! Local peer discovery (node::discovery) against the official jamid (Jami 13.7) with
//! `Account.peerDiscovery`, `Account.accountDiscovery` and `Account.accountPublish` on,
//! on a two-host LAN (two namespaces and a veth pair, `Netns::link_lan`).
//!
//! jamid's announcement carries both services in one map ("dht" then "jami"); ours
//! (published before jamid starts, so its startup query gets our unicast answer) makes
//! jamid list our account among its nearby peers.

use conformance::jamid::{AccountSetup, Jamid};
use conformance::netns::Netns;
use conformance::TempDir;
use node::dht::InfoHash;
use node::discovery::codec::{self, Datagram};
use node::discovery::peer_discovery::{DEFAULT_PORT, GROUP_V4};
use node::discovery::{self, Discover, JamiPayload, PeerDiscovery};
use node::driver::unix_ms;
use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, UdpSocket};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Not 198.51.100.0/24: `Jamid::start` puts jamid's host link there.
const JAMID_IP: &str = "192.0.2.1";
const OUR_IP: &str = "192.0.2.2";
/// Key generation and account start on a loaded 2-core machine.
const TIMEOUT: Duration = Duration::from_secs(90);

#[test]
fn jamid_and_our_discovery_see_each_other() {
    if !conformance::jamid_or_skip() {
        return;
    }
    let _one = conformance::jamid::one_at_a_time();
    let theirs = Netns::create("jsjdisc").expect("namespace");
    let ours_ns = Netns::create("jsjdisc").expect("namespace");
    theirs
        .link_lan(&ours_ns, JAMID_IP, OUR_IP)
        .expect("veth LAN between the namespaces");
    let our_account = InfoHash::get("jamisim-nearby-account");
    let (ready_tx, ready) = mpsc::channel::<()>();
    let (seen_tx, seen) = mpsc::channel::<String>();
    let (stop_tx, stop) = mpsc::channel::<()>();
    let worker = ours_ns.spawn(move || {
        let sock = UdpSocket::bind(("0.0.0.0", DEFAULT_PORT)).expect("bind 8888");
        sock.join_multicast_v4(&GROUP_V4, &Ipv4Addr::UNSPECIFIED)
            .expect("join the group");
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let mut d = PeerDiscovery::new(discovery::Config::ipv4());
        let now = unix_ms();
        d.start_discovery(
            now,
            Discover::Jami {
                own_account: our_account,
            },
        );
        d.start_discovery(
            now,
            Discover::Dht {
                own_id: InfoHash([1; 20]),
                net_id: 0,
            },
        );
        let me = JamiPayload {
            account_id: our_account,
            display_name: "Rusty Nearby".into(),
        };
        d.publish_jami(now, &me).unwrap();
        ready_tx.send(()).unwrap();
        let mut buf = vec![0u8; 65536];
        let mut maps: Vec<Vec<String>> = Vec::new();
        let end = Instant::now() + TIMEOUT;
        while stop.try_recv().is_err() && Instant::now() < end {
            while let Some(t) = d.poll_transmit() {
                let _ = sock.send_to(&t.bytes, t.to);
            }
            while let Some(e) = d.poll_event() {
                seen_tx.send(format!("{e:?}")).unwrap();
            }
            match sock.recv_from(&mut buf) {
                Ok((n, from)) => {
                    if from.ip().to_string() == JAMID_IP {
                        if let Ok(Datagram::Announcement(s)) = codec::decode(&buf[..n]) {
                            let names: Vec<String> = s
                                .iter()
                                .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
                                .collect();
                            if !maps.contains(&names) {
                                seen_tx.send(format!("services {names:?}")).unwrap();
                                maps.push(names);
                            }
                        }
                    }
                    if let Err(e) = d.handle_datagram(unix_ms(), from, &buf[..n]) {
                        seen_tx.send(format!("error {e}")).unwrap();
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!("discovery socket: {e}"),
            }
            d.handle_timeout(unix_ms());
        }
        d.stats()
    });
    ready.recv_timeout(Duration::from_secs(10)).unwrap();
    let dir = TempDir::new("jamid-discovery").expect("temp dir");
    let jamid = Jamid::start(&theirs, dir.path()).expect("jamid starts");
    // Nothing to bootstrap from: discovery needs no DHT.
    let mut setup = AccountSetup::new("nearby", "127.0.0.1:9".parse().unwrap());
    for key in [
        "Account.peerDiscovery",
        "Account.accountDiscovery",
        "Account.accountPublish",
    ] {
        setup.extra.insert(key.into(), "true".into());
    }
    setup
        .extra
        .insert("Account.displayName".into(), "Jamie Nearby".into());
    let dht_port = setup.dht_port;
    let account = jamid.create_account(&setup).expect("addAccount");
    // jamid lists our account, by id, with our display name.
    let deadline = Instant::now() + TIMEOUT;
    let mut nearby = HashMap::new();
    while Instant::now() < deadline {
        nearby = jamid
            .call::<_, HashMap<String, String>>(
                "ConfigurationManager",
                "getNearbyPeers",
                &(&account,),
            )
            .unwrap_or_default();
        if !nearby.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // The account id exists once its keys are generated.
    let deadline = Instant::now() + TIMEOUT;
    let mut uri = String::new();
    while uri.is_empty() && Instant::now() < deadline {
        uri = jamid.account_uri(&account).unwrap_or_default();
        std::thread::sleep(Duration::from_millis(200));
    }
    // `Account.username` may carry a `ring:` prefix.
    let account_id: InfoHash = uri
        .rsplit(':')
        .next()
        .and_then(|h| h.parse().ok())
        .unwrap_or_else(|| panic!("account id {uri:?}"));
    // Our side heard jamid's account and its DHT node.
    let mut heard = Vec::new();
    let want_jami = format!(
        "JamiPeer {{ account: {:?}, name: \"Jamie Nearby\", addr: {JAMID_IP}:{DEFAULT_PORT} }}",
        account_id
    );
    let want_dht_addr = format!("DhtPeer {{ addr: {JAMID_IP}:");
    let deadline = Instant::now() + TIMEOUT;
    while Instant::now() < deadline
        && !(heard.contains(&want_jami)
            && heard.iter().any(|h| h.starts_with(&want_dht_addr))
            && heard.iter().any(|h| h == r#"services ["dht", "jami"]"#))
    {
        if let Ok(s) = seen.recv_timeout(Duration::from_millis(200)) {
            heard.push(s);
        }
    }
    stop_tx.send(()).unwrap();
    let stats = worker.join().expect("our side ran");
    eprintln!("DHT.port {dht_port}; heard: {heard:#?}");
    let log = jamid.log_text();
    let _ = jamid.stop(Duration::from_secs(3));
    assert_eq!(
        nearby.get(&our_account.to_string()).map(String::as_str),
        Some("Rusty Nearby"),
        "jamid's nearby peers: {nearby:?}\n{}",
        &log[log.len().saturating_sub(3000)..]
    );
    assert!(
        stats.queries_answered >= 1,
        "jamid's startup query answered: {stats:?}"
    );
    assert!(heard.contains(&want_jami), "{heard:?}");
    assert!(
        heard.iter().any(|h| h.starts_with(&want_dht_addr)),
        "jamid's DHT node heard: {heard:?}"
    );
    assert!(
        heard.contains(&r#"services ["dht", "jami"]"#.to_string()),
        "one map, std::map order: {heard:?}"
    );
    assert!(!heard.iter().any(|h| h.starts_with("error")), "{heard:?}");
}
