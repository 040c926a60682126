//! Local peer discovery (node::discovery) against the official `dhtnode -D` (OpenDHT
//! 2.4.12) on a two-host LAN: two namespaces this test creates, joined by a veth pair
//! with a route for 239.0.0.0/8 on each side (multicast needs one; see
//! `Netns::link_lan`). dhtnode runs in one, our discovery and DHT node in the other.
//!
//! Both ways: we hear dhtnode's "dht" announcement and our node joins it; dhtnode hears
//! ours (its startup query answered by unicast, or our multicast announcement) and
//! contacts our node without being told its address.

use conformance::dhtnode::DhtNode;
use conformance::netns::Netns;
use node::dht::engine::{Config, Dht, Event as DhtEvent};
use node::dht::InfoHash;
use node::discovery::codec::{self, Datagram, QUERY};
use node::discovery::peer_discovery::{DEFAULT_PORT, GROUP_V4};
use node::discovery::{self, DhtPayload, Discover, PeerDiscovery};
use node::driver::unix_ms;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const DHTNODE_IP: &str = "198.51.100.1";
const OUR_IP: &str = "198.51.100.2";
const DHTNODE_PORT: u16 = 4222;

/// dhtnode's namespace and ours, joined as a LAN.
fn lan() -> (Netns, Netns) {
    let theirs = Netns::create("jsdisc").expect("namespace");
    let ours = Netns::create("jsdisc").expect("namespace");
    theirs
        .link_lan(&ours, DHTNODE_IP, OUR_IP)
        .expect("veth LAN between the namespaces");
    (theirs, ours)
}

fn group() -> SocketAddr {
    SocketAddr::new(GROUP_V4.into(), DEFAULT_PORT)
}

/// What our side saw.
#[derive(Debug)]
enum Seen {
    Discovery(discovery::Event),
    Dht(DhtEvent),
    /// Any datagram on the discovery socket (before it is handled).
    Datagram(SocketAddr),
}

/// Our side: a discovery socket on the group, a DHT node on its own socket, driven
/// by one loop (both cores are sans-IO).
struct Ours {
    disc: PeerDiscovery,
    dsock: UdpSocket,
    dht: Dht,
    sock: UdpSocket,
}

impl Ours {
    fn new(seed: u64) -> Ours {
        let dsock = UdpSocket::bind(("0.0.0.0", DEFAULT_PORT)).expect("bind 8888");
        dsock
            .join_multicast_v4(&GROUP_V4, &Ipv4Addr::UNSPECIFIED)
            .expect("join the group");
        dsock.set_nonblocking(true).unwrap();
        let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
        sock.set_nonblocking(true).unwrap();
        let id = InfoHash::get(format!("jamisim-discovery-{seed}"));
        Ours {
            disc: PeerDiscovery::new(discovery::Config::ipv4()),
            dsock,
            dht: Dht::new(Config::verifying(id, seed), unix_ms()),
            sock,
        }
    }

    fn dht_port(&self) -> u16 {
        self.sock.local_addr().unwrap().port()
    }

    /// Move datagrams and time for up to `d`, until `done` says so; returns whether it did.
    fn run(&mut self, d: Duration, mut done: impl FnMut(&mut Ours, &Seen) -> bool) -> bool {
        let end = Instant::now() + d;
        let mut buf = vec![0u8; 65536];
        let mut seen = Vec::new();
        while Instant::now() < end {
            while let Some(t) = self.disc.poll_transmit() {
                let _ = self.dsock.send_to(&t.bytes, t.to);
            }
            while let Some(t) = self.dht.poll_transmit() {
                let _ = self.sock.send_to(&t.bytes, t.to);
            }
            while let Some(e) = self.disc.poll_event() {
                seen.push(Seen::Discovery(e));
            }
            while let Some(e) = self.dht.poll_event() {
                seen.push(Seen::Dht(e));
            }
            let mut idle = true;
            match self.dsock.recv_from(&mut buf) {
                Ok((n, from)) => {
                    idle = false;
                    seen.push(Seen::Datagram(from));
                    let _ = self.disc.handle_datagram(unix_ms(), from, &buf[..n]);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("discovery socket: {e}"),
            }
            match self.sock.recv_from(&mut buf) {
                Ok((n, from)) => {
                    idle = false;
                    self.dht.handle_datagram(unix_ms(), from, &buf[..n]);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::ConnectionRefused
                    ) => {}
                Err(e) => panic!("dht socket: {e}"),
            }
            let now = unix_ms();
            if self.dht.poll_timeout().is_some_and(|t| t <= now) {
                self.dht.handle_timeout(now);
            }
            if self.disc.poll_timeout().is_some_and(|t| t <= now) {
                self.disc.handle_timeout(now);
            }
            for s in std::mem::take(&mut seen) {
                if done(self, &s) {
                    return true;
                }
            }
            if idle {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        false
    }
}

#[test]
fn our_discovery_hears_dhtnode_and_our_node_joins_it() {
    if !conformance::dhtnode_or_skip() {
        return;
    }
    let (theirs, ours_ns) = lan();
    let (ready_tx, ready) = mpsc::channel::<u16>();
    let (report_tx, report) = mpsc::channel::<String>();
    let (stop_tx, stop) = mpsc::channel::<()>();
    let worker = ours_ns.spawn(move || {
        let mut ours = Ours::new(1);
        let own_id = ours.dht.id();
        ours.disc
            .start_discovery(unix_ms(), Discover::Dht { own_id, net_id: 0 });
        ready_tx.send(ours.dht_port()).unwrap();
        // 1. dhtnode's announcement when it starts publishing.
        let mut peer = None;
        ours.run(Duration::from_secs(20), |_, s| {
            if let Seen::Discovery(discovery::Event::DhtPeer { addr, node_id }) = s {
                peer = Some((*addr, *node_id));
            }
            peer.is_some()
        });
        let (addr, node_id) = peer.expect("dhtnode's announcement heard");
        report_tx.send(format!("peer {addr} {node_id}")).unwrap();
        // 2. Nothing more from dhtnode until asked: no periodic announcement.
        let dhtnode_ip: std::net::IpAddr = DHTNODE_IP.parse().unwrap();
        let mut heard = 0;
        ours.run(Duration::from_secs(4), |_, s| {
            heard += usize::from(matches!(s, Seen::Datagram(from) if from.ip() == dhtnode_ip));
            false
        });
        report_tx
            .send(format!("silent window: {heard} datagrams"))
            .unwrap();
        // 3. A query from a socket off the group and off port 8888 is answered there,
        //    by unicast; bytes after the "q" do not matter.
        let probe = UdpSocket::bind("0.0.0.0:0").unwrap();
        probe
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        for q in [&QUERY[..], &[0xa1, b'q', 0x00, 0xff][..]] {
            probe.send_to(q, group()).unwrap();
            let mut buf = [0u8; 2048];
            let answer = match probe.recv_from(&mut buf) {
                Ok((n, from)) => match codec::decode(&buf[..n]) {
                    Ok(Datagram::Announcement(s)) => {
                        let dht = s
                            .iter()
                            .find(|(name, _)| *name == b"dht")
                            .and_then(|(_, raw)| DhtPayload::decode(raw).ok());
                        format!("answer from {from}: {dht:?}")
                    }
                    other => format!("answer from {from}: {other:?}"),
                },
                Err(e) => format!("no answer: {e}"),
            };
            report_tx.send(answer).unwrap();
        }
        // 4. Our own query (the network "changed") brings the announcement back.
        ours.disc.connectivity_changed(unix_ms());
        let again = ours.run(Duration::from_secs(3), |_, s| {
            matches!(s, Seen::Discovery(discovery::Event::DhtPeer { .. }))
        });
        report_tx
            .send(format!("answered our query: {again}"))
            .unwrap();
        // 5. A plain DHT node bootstraps from the discovered address.
        ours.dht.bootstrap(unix_ms(), addr);
        let connected = ours.run(Duration::from_secs(5), |_, s| {
            matches!(s, Seen::Dht(DhtEvent::Connected))
        });
        report_tx.send(format!("connected: {connected}")).unwrap();
        while stop.try_recv().is_err() {
            ours.run(Duration::from_millis(50), |_, _| false);
        }
        own_id
    });
    ready.recv_timeout(Duration::from_secs(10)).unwrap();
    let mut official = DhtNode::start_with(&theirs, DHTNODE_PORT, None, false, &["-D"])
        .expect("dhtnode -D starts");
    let next = || report.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(
        next(),
        format!("peer {DHTNODE_IP}:{DHTNODE_PORT} {}", official.id),
        "the announcement carries dhtnode's node id and DHT port, at its LAN address"
    );
    assert_eq!(next(), "silent window: 0 datagrams");
    let answer = format!(
        "answer from {DHTNODE_IP}:{DEFAULT_PORT}: Some(DhtPayload {{ node_id: {:?}, port: {DHTNODE_PORT}, net_id: 0 }})",
        official.id.parse::<InfoHash>().unwrap()
    );
    assert_eq!(next(), answer, "a query is answered by unicast");
    assert_eq!(next(), answer, "bytes after the query are ignored");
    assert_eq!(next(), "answered our query: true");
    assert_eq!(next(), "connected: true", "dhtnode answers our node");
    // dhtnode keeps our node in its routing table.
    let at = official.log_len();
    official.command("lr").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    stop_tx.send(()).unwrap();
    let own_id = worker.join().expect("our side ran");
    let table = official.log_text()[at..].to_string();
    assert!(
        table.contains(&own_id.to_string()),
        "our node {own_id} is in dhtnode's routing table:\n{table}"
    );
}

/// Our node publishes itself; dhtnode must contact it. With `ours_first`, dhtnode starts
/// after we published and learns of us from the answer to its startup query; otherwise
/// it is running already and hears our multicast announcement.
fn dhtnode_finds_our_node(ours_first: bool) {
    if !conformance::dhtnode_or_skip() {
        return;
    }
    let (theirs, ours_ns) = lan();
    let (ready_tx, ready) = mpsc::channel::<()>();
    let (publish_tx, publish) = mpsc::channel::<()>();
    let (result_tx, result) = mpsc::channel::<(Vec<String>, u64, Option<SocketAddr>)>();
    let worker = ours_ns.spawn(move || {
        let mut ours = Ours::new(2);
        let payload = DhtPayload {
            node_id: ours.dht.id(),
            port: ours.dht_port(),
            net_id: 0,
        };
        if !ours_first {
            ready_tx.send(()).unwrap();
            // Handle dhtnode's startup query now, while we publish nothing.
            while publish.try_recv().is_err() {
                ours.run(Duration::from_millis(50), |_, _| false);
            }
        }
        ours.disc.publish_dht(unix_ms(), payload).unwrap();
        ours.run(Duration::from_millis(100), |_, _| false);
        if ours_first {
            ready_tx.send(()).unwrap();
        }
        // We never send to dhtnode's DHT port: any node in our table came to us.
        let dhtnode_ip: std::net::IpAddr = DHTNODE_IP.parse().unwrap();
        let mut first_from = None;
        ours.run(Duration::from_secs(15), |o, _| {
            first_from = o
                .dht
                .routing_table()
                .nodes()
                .find(|n| n.addr.ip() == dhtnode_ip)
                .map(|n| n.addr);
            first_from.is_some()
        });
        // Let dhtnode finish its first exchanges.
        ours.run(Duration::from_secs(1), |_, _| false);
        let known = ours
            .dht
            .routing_table()
            .nodes()
            .map(|n| InfoHash(n.id).to_string())
            .collect();
        result_tx
            .send((known, ours.disc.stats().queries_answered, first_from))
            .unwrap();
    });
    ready.recv_timeout(Duration::from_secs(10)).unwrap();
    let official = DhtNode::start_with(&theirs, DHTNODE_PORT, None, false, &["-D"])
        .expect("dhtnode -D starts");
    if !ours_first {
        // dhtnode's own startup query went out before we published.
        std::thread::sleep(Duration::from_millis(500));
        publish_tx.send(()).unwrap();
    }
    let (known, answered, from) = result.recv_timeout(Duration::from_secs(40)).unwrap();
    worker.join().expect("our side ran");
    assert!(
        known.contains(&official.id),
        "dhtnode ({}) contacted our node, which only announced itself: {known:?} (from {from:?})",
        official.id
    );
    assert_eq!(
        from.map(|a| a.port()),
        Some(DHTNODE_PORT),
        "from dhtnode's DHT socket"
    );
    if ours_first {
        assert!(answered >= 1, "we answered dhtnode's startup query");
    } else {
        assert_eq!(
            answered, 0,
            "dhtnode learnt of us from the announcement alone"
        );
    }
}

#[test]
fn dhtnode_bootstraps_from_our_answer_to_its_query() {
    dhtnode_finds_our_node(true);
}

#[test]
fn dhtnode_bootstraps_from_our_multicast_announcement() {
    dhtnode_finds_our_node(false);
}
