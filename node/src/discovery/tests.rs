//! The state machine: who gets what, what is ignored, expiry, caps.

use super::codec::{self, QUERY};
use super::peer_discovery::*;
use super::*;
use crate::dht::InfoHash;
use proptest::prelude::*;
use std::net::SocketAddr;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn id(b: u8) -> InfoHash {
    InfoHash([b; 20])
}

fn dht_announcement(node: u8, port: u16, net: u32) -> Vec<u8> {
    let p = DhtPayload {
        node_id: id(node),
        port,
        net_id: net,
    }
    .encode();
    codec::encode_announcement([(DHT_SERVICE, &p[..])].into_iter())
}

fn jami_announcement(account: u8, name: &str) -> Vec<u8> {
    let p = JamiPayload {
        account_id: id(account),
        display_name: name.as_bytes().to_vec(),
    }
    .encode();
    codec::encode_announcement([(JAMI_SERVICE, &p[..])].into_iter())
}

fn drain(d: &mut PeerDiscovery) -> (Vec<(SocketAddr, Vec<u8>)>, Vec<Event>) {
    let t = std::iter::from_fn(|| d.poll_transmit())
        .map(|t| (t.to, t.bytes))
        .collect();
    (t, std::iter::from_fn(|| d.poll_event()).collect())
}

const GROUP: &str = "239.192.0.1:8888";

#[test]
fn publishing_announces_once_to_the_group_and_answers_queries_by_unicast() {
    let mut d = PeerDiscovery::new(Config::ipv4());
    let p = DhtPayload {
        node_id: id(7),
        port: 4222,
        net_id: 0,
    };
    d.publish_dht(0, p).unwrap();
    let (sent, _) = drain(&mut d);
    assert_eq!(sent, vec![(addr(GROUP), dht_announcement(7, 4222, 0))]);
    // No timer: nothing more is sent however long we wait.
    assert_eq!(d.poll_timeout(), None);
    d.handle_timeout(10 * 60_000);
    assert!(drain(&mut d).0.is_empty());
    // A query gets the announcement back at the querier's address, not the group.
    let querier = addr("192.0.2.9:8888");
    d.handle_datagram(1, querier, &QUERY).unwrap();
    assert_eq!(
        drain(&mut d).0,
        vec![(querier, dht_announcement(7, 4222, 0))]
    );
    // Adding a service re-sends the whole map, sorted by name; "dht" < "jami".
    let j = JamiPayload {
        account_id: id(1),
        display_name: b"Ann".to_vec(),
    };
    d.publish_jami(2, &j).unwrap();
    let (sent, _) = drain(&mut d);
    let both = codec::encode_announcement(
        [
            (DHT_SERVICE, &p.encode()[..]),
            (JAMI_SERVICE, &j.encode()[..]),
        ]
        .into_iter(),
    );
    assert_eq!(sent, vec![(addr(GROUP), both)]);
    // Stop one: the next answer carries only the other; stop both: queries go unanswered.
    assert!(d.stop_publish(DHT_SERVICE));
    d.handle_datagram(3, querier, &QUERY).unwrap();
    assert_eq!(
        drain(&mut d).0,
        vec![(querier, jami_announcement(1, "Ann"))]
    );
    assert!(d.stop_publish(JAMI_SERVICE));
    d.handle_datagram(4, querier, &QUERY).unwrap();
    assert!(drain(&mut d).0.is_empty());
    assert_eq!(d.stats().queries_answered, 2);
}

#[test]
fn discovery_queries_once_and_reports_dht_peers_of_our_network_only() {
    let mut d = PeerDiscovery::new(Config::ipv4());
    let me = Discover::Dht {
        own_id: id(1),
        net_id: 0,
    };
    d.start_discovery(0, me);
    d.start_discovery(0, Discover::Jami { own_account: id(9) });
    assert_eq!(drain(&mut d).0, vec![(addr(GROUP), QUERY.to_vec())]);
    let from = addr("192.0.2.5:8888");
    // Another node: the sender's IP with the announced port.
    d.handle_datagram(1, from, &dht_announcement(2, 4222, 0))
        .unwrap();
    // Ourselves (looped back), another network, port 0: ignored.
    for (node, port, net) in [(1, 4222, 0), (3, 4222, 5), (4, 0, 0)] {
        d.handle_datagram(1, from, &dht_announcement(node, port, net))
            .unwrap();
    }
    let (_, events) = drain(&mut d);
    assert_eq!(
        events,
        vec![Event::DhtPeer {
            addr: addr("192.0.2.5:4222"),
            node_id: id(2)
        }]
    );
    assert_eq!(d.stats().ignored, 3);
    // An IPv4-mapped sender is reported as IPv4.
    d.handle_datagram(
        2,
        addr("[::ffff:192.0.2.6]:8888"),
        &dht_announcement(2, 5000, 0),
    )
    .unwrap();
    assert_eq!(
        drain(&mut d).1,
        vec![Event::DhtPeer {
            addr: addr("192.0.2.6:5000"),
            node_id: id(2)
        }]
    );
    // Not discovering "dht" any more: its announcements are ignored.
    assert!(d.stop_discovery(DHT_SERVICE));
    d.handle_datagram(3, from, &dht_announcement(2, 4222, 0))
        .unwrap();
    assert!(drain(&mut d).1.is_empty());
}

#[test]
fn jami_peers_expire_a_minute_after_the_last_announcement() {
    let mut d = PeerDiscovery::new(Config::ipv4());
    d.start_discovery(0, Discover::Jami { own_account: id(1) });
    drain(&mut d);
    let from = addr("192.0.2.5:8888");
    d.handle_datagram(1000, from, &jami_announcement(1, "me"))
        .unwrap();
    d.handle_datagram(1000, from, &jami_announcement(2, "Bob"))
        .unwrap();
    assert_eq!(
        drain(&mut d).1,
        vec![Event::JamiPeer {
            account: id(2),
            name: "Bob".into(),
            addr: from
        }]
    );
    assert_eq!(d.poll_timeout(), Some(61_000));
    // Refreshed at 30 s: no new event, expiry moves.
    d.handle_datagram(30_000, from, &jami_announcement(2, "Bob"))
        .unwrap();
    assert!(drain(&mut d).1.is_empty());
    assert_eq!(d.poll_timeout(), Some(90_000));
    d.handle_timeout(61_000);
    assert!(drain(&mut d).1.is_empty(), "the refresh counted");
    // A new name is news.
    d.handle_datagram(31_000, from, &jami_announcement(2, "Bobby"))
        .unwrap();
    assert_eq!(drain(&mut d).1.len(), 1);
    d.handle_timeout(91_000);
    assert_eq!(
        drain(&mut d).1,
        vec![Event::JamiPeerLost {
            account: id(2),
            name: "Bobby".into()
        }]
    );
    assert_eq!(d.jami_peers().count(), 0);
    assert_eq!(d.poll_timeout(), None);
}

#[test]
fn malformed_datagrams_are_errors_counted_and_stop_at_the_bad_entry() {
    let mut d = PeerDiscovery::new(Config::ipv4());
    d.start_discovery(0, Discover::Jami { own_account: id(1) });
    d.start_discovery(
        0,
        Discover::Dht {
            own_id: id(1),
            net_id: 0,
        },
    );
    drain(&mut d);
    let from = addr("192.0.2.5:8888");
    assert!(d.handle_datagram(0, from, b"\xc1").is_err());
    assert!(d.handle_datagram(0, from, b"\x92\x01\x02").is_err());
    // A bad "dht" entry first: the good "jami" entry after it is not used.
    let j = JamiPayload {
        account_id: id(2),
        display_name: vec![],
    }
    .encode();
    let bad = codec::encode_announcement(
        [(DHT_SERVICE, &b"\x91\xc0"[..]), (JAMI_SERVICE, &j[..])].into_iter(),
    );
    assert!(matches!(
        d.handle_datagram(0, from, &bad),
        Err(DecodeError::Payload { service: "dht", .. })
    ));
    assert!(drain(&mut d).1.is_empty());
    // Unknown services are skipped, a bad payload of one we do not discover too.
    let ok =
        codec::encode_announcement([("aaa", &b"\x91\xc0"[..]), (JAMI_SERVICE, &j[..])].into_iter());
    d.handle_datagram(0, from, &ok).unwrap();
    assert_eq!(drain(&mut d).1.len(), 1);
    assert_eq!(d.stats().malformed, 3);
    assert_eq!(d.stats().received, 4);
}

#[test]
fn memory_stays_bounded_under_floods() {
    let mut d = PeerDiscovery::new(Config::ipv4());
    d.start_discovery(0, Discover::Jami { own_account: id(0) });
    d.publish(0, "x", vec![0xc0]).unwrap();
    drain(&mut d);
    let from = addr("192.0.2.5:8888");
    for i in 0..(MAX_JAMI_PEERS as u32 + 10) {
        let mut acc = [0u8; 20];
        acc[..4].copy_from_slice(&(i + 1).to_be_bytes());
        let p = JamiPayload {
            account_id: InfoHash(acc),
            display_name: vec![],
        }
        .encode();
        let a = codec::encode_announcement([(JAMI_SERVICE, &p[..])].into_iter());
        d.handle_datagram(0, from, &a).unwrap();
        d.handle_datagram(0, from, &QUERY).unwrap();
    }
    assert_eq!(d.jami_peers().count(), MAX_JAMI_PEERS);
    assert_eq!(d.stats().peers_refused, 10);
    let (sent, events) = drain(&mut d);
    assert_eq!(sent.len(), MAX_QUEUED_TRANSMITS);
    assert_eq!(events.len(), MAX_JAMI_PEERS.min(MAX_QUEUED_EVENTS));
    assert_eq!(
        d.stats().transmits_dropped,
        (MAX_JAMI_PEERS + 10 - MAX_QUEUED_TRANSMITS) as u64
    );
    // Publishing more services than a datagram may carry is refused.
    for i in 1..codec::MAX_SERVICES {
        d.publish(0, &format!("s{i}"), vec![0xc0]).unwrap();
    }
    assert_eq!(
        d.publish(0, "one-more", vec![0xc0]),
        Err(PublishError::TooManyServices)
    );
    assert!(matches!(
        d.publish(0, "s1", vec![0xc0; MAX_ANNOUNCEMENT_LEN]),
        Err(PublishError::TooLarge(_))
    ));
}

#[test]
fn connectivity_change_queries_and_announces_again() {
    let mut d = PeerDiscovery::new(Config::ipv6());
    d.connectivity_changed(0);
    assert!(drain(&mut d).0.is_empty(), "nothing to say");
    d.start_discovery(
        0,
        Discover::Dht {
            own_id: id(1),
            net_id: 0,
        },
    );
    d.publish_dht(
        0,
        DhtPayload {
            node_id: id(1),
            port: 1,
            net_id: 0,
        },
    )
    .unwrap();
    drain(&mut d);
    d.connectivity_changed(1);
    let group = addr("[ff08::101]:8888");
    assert_eq!(
        drain(&mut d).0,
        vec![(group, QUERY.to_vec()), (group, dht_announcement(1, 1, 0))]
    );
}

proptest! {
    #[test]
    fn random_datagrams_never_panic_and_keep_bounds(
        datagrams in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..64),
        times in proptest::collection::vec(0u64..200_000, 64),
    ) {
        let mut d = PeerDiscovery::new(Config::ipv4());
        d.start_discovery(0, Discover::Jami { own_account: id(0) });
        d.start_discovery(0, Discover::Dht { own_id: id(0), net_id: 0 });
        d.publish(0, "x", vec![0xc0]).unwrap();
        let from = addr("192.0.2.5:8888");
        for (i, bytes) in datagrams.iter().enumerate() {
            let _ = d.handle_datagram(times[i], from, bytes);
            if let Some(t) = d.poll_timeout() {
                d.handle_timeout(t);
            }
        }
        let s = d.stats();
        prop_assert_eq!(s.received, datagrams.len() as u64);
        prop_assert!(d.jami_peers().count() <= MAX_JAMI_PEERS);
    }

    #[test]
    fn every_well_formed_announcement_of_another_node_is_reported(
        node in any::<[u8; 20]>(), port in 1u16.., net in any::<u32>(), ip in any::<[u8; 4]>()
    ) {
        prop_assume!(node != [0; 20]);
        let mut d = PeerDiscovery::new(Config::ipv4());
        d.start_discovery(0, Discover::Dht { own_id: id(0), net_id: net });
        let p = DhtPayload { node_id: InfoHash(node), port, net_id: net }.encode();
        let a = codec::encode_announcement([(DHT_SERVICE, &p[..])].into_iter());
        let from = SocketAddr::from((ip, 8888));
        d.handle_datagram(0, from, &a).unwrap();
        prop_assert_eq!(
            d.poll_event(),
            Some(Event::DhtPeer { addr: SocketAddr::from((ip, port)), node_id: InfoHash(node) })
        );
    }
}
