//! Two DHT nodes on an isolated LAN (no internet, no bootstrap address) find each other
//! through node::discovery over the simulator's multicast, and bootstrap from what they
//! heard, as OpenDHT nodes with peer discovery do.

use netsim::{app_any, App, Ctx, HostOpts, NodeId, Sim, SimConfig, SimTime, SockId};
use node::dht::engine::{Config, Dht};
use node::dht::InfoHash;
use node::discovery::peer_discovery::{DEFAULT_PORT, GROUP_V4};
use node::discovery::{self, DhtPayload, Discover, PeerDiscovery};
use std::net::SocketAddr;
use std::time::Duration;

const DHT_PORT: u16 = 4222;

fn ms(cx: &Ctx<'_>) -> u64 {
    cx.now().since(SimTime::ZERO).as_millis() as u64
}

/// A DHT node with peer discovery: one socket on the group, one for the DHT.
struct LanNode {
    seed: u64,
    discover: bool,
    disc: PeerDiscovery,
    dht: Option<Dht>,
    dsock: Option<SockId>,
    sock: Option<SockId>,
    armed: Option<u64>,
    found: Vec<SocketAddr>,
}

impl LanNode {
    fn new(seed: u64, discover: bool) -> LanNode {
        LanNode {
            seed,
            discover,
            disc: PeerDiscovery::new(discovery::Config::ipv4()),
            dht: None,
            dsock: None,
            sock: None,
            armed: None,
            found: Vec::new(),
        }
    }

    fn id(seed: u64) -> InfoHash {
        InfoHash::get(format!("lan-node-{seed}"))
    }

    fn flush(&mut self, cx: &mut Ctx<'_>) {
        let now = ms(cx);
        let (Some(dht), Some(dsock), Some(sock)) = (self.dht.as_mut(), self.dsock, self.sock)
        else {
            return;
        };
        while let Some(e) = self.disc.poll_event() {
            if let discovery::Event::DhtPeer { addr, .. } = e {
                self.found.push(addr);
                dht.bootstrap(now, addr);
            }
        }
        while dht.poll_event().is_some() {}
        while let Some(t) = self.disc.poll_transmit() {
            let _ = cx.udp_send(dsock, t.to, &t.bytes);
        }
        while let Some(t) = dht.poll_transmit() {
            let _ = cx.udp_send(sock, t.to, &t.bytes);
        }
        let next = [dht.poll_timeout(), self.disc.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        if let Some(t) = next {
            if self.armed.is_none_or(|a| t < a) {
                self.armed = Some(t);
                cx.set_timer(Duration::from_millis(t.saturating_sub(now)), 0);
            }
        }
    }
}

impl App for LanNode {
    fn start(&mut self, cx: &mut Ctx<'_>) {
        let now = ms(cx);
        let dsock = cx
            .udp_bind(SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT)))
            .unwrap();
        cx.udp_join_multicast(dsock, GROUP_V4.into()).unwrap();
        let sock = cx
            .udp_bind(SocketAddr::from(([0, 0, 0, 0], DHT_PORT)))
            .unwrap();
        let id = Self::id(self.seed);
        let cfg = Config {
            id,
            network: 0,
            seed: self.seed,
            verify: None,
        };
        self.dht = Some(Dht::new(cfg, now));
        (self.dsock, self.sock) = (Some(dsock), Some(sock));
        if self.discover {
            self.disc.start_discovery(
                now,
                Discover::Dht {
                    own_id: id,
                    net_id: 0,
                },
            );
        }
        let p = DhtPayload {
            node_id: id,
            port: DHT_PORT,
            net_id: 0,
        };
        self.disc.publish_dht(now, p).unwrap();
        self.flush(cx);
    }

    fn on_udp(
        &mut self,
        cx: &mut Ctx<'_>,
        s: SockId,
        from: SocketAddr,
        _to: SocketAddr,
        data: &[u8],
    ) {
        let now = ms(cx);
        if Some(s) == self.dsock {
            let _ = self.disc.handle_datagram(now, from, data);
        } else if let Some(dht) = self.dht.as_mut() {
            dht.handle_datagram(now, from, data);
        }
        self.flush(cx);
    }

    fn on_timer(&mut self, cx: &mut Ctx<'_>, _token: u64) {
        let now = ms(cx);
        if self.armed.is_some_and(|a| a <= now) {
            self.armed = None;
        }
        if let Some(dht) = self.dht.as_mut() {
            if dht.poll_timeout().is_some_and(|t| t <= now) {
                dht.handle_timeout(now);
            }
        }
        if self.disc.poll_timeout().is_some_and(|t| t <= now) {
            self.disc.handle_timeout(now);
        }
        self.flush(cx);
    }

    app_any!();
}

fn host(sim: &mut Sim, name: &str, lan: NodeId) -> NodeId {
    sim.add_host(
        name,
        HostOpts {
            behind: Some(lan),
            ..Default::default()
        },
    )
}

/// The other node's id is in `host`'s routing table.
fn knows(sim: &Sim, host: NodeId, app: usize, other_seed: u64) -> bool {
    let n = sim.app::<LanNode>(host, app).unwrap();
    let want = LanNode::id(other_seed).0;
    n.dht
        .as_ref()
        .is_some_and(|d| d.routing_table().nodes().any(|e| e.id == want))
}

#[test]
fn two_nodes_on_an_isolated_lan_find_each_other() {
    let mut sim = Sim::new(SimConfig {
        seed: 11,
        ..Default::default()
    });
    let lan = sim.add_lan("home");
    let (a, b) = (host(&mut sim, "a", lan), host(&mut sim, "b", lan));
    // A node on another isolated LAN: multicast does not reach it.
    let other_lan = sim.add_lan("office");
    let c = host(&mut sim, "c", other_lan);
    let apps = [(a, 1), (b, 2), (c, 3)]
        .map(|(h, seed)| sim.add_app(h, move || Box::new(LanNode::new(seed, true))));
    sim.run_for(Duration::from_secs(10));
    let ip = |h: NodeId| sim.host(h).unwrap().addrs[0];
    let found = |h: NodeId, app: usize| sim.app::<LanNode>(h, app).unwrap().found.clone();
    assert!(found(a, apps[0]).contains(&SocketAddr::new(ip(b), DHT_PORT)));
    assert!(found(b, apps[1]).contains(&SocketAddr::new(ip(a), DHT_PORT)));
    assert!(knows(&sim, a, apps[0], 2) && knows(&sim, b, apps[1], 1));
    assert!(found(c, apps[2]).is_empty(), "multicast stayed on its LAN");
    assert!(!knows(&sim, c, apps[2], 1));
}

#[test]
fn a_late_node_is_answered_by_unicast_and_a_node_not_discovering_stays_alone() {
    let mut sim = Sim::new(SimConfig {
        seed: 12,
        ..Default::default()
    });
    let lan = sim.add_lan("home");
    let a = host(&mut sim, "a", lan);
    // `a` publishes but does not discover: only someone who finds it can connect.
    let app_a = sim.add_app(a, || Box::new(LanNode::new(1, false)));
    sim.run_for(Duration::from_secs(5));
    assert!(!knows(&sim, a, app_a, 2));
    // `b` arrives after a's only announcement: its query is answered.
    let b = host(&mut sim, "b", lan);
    let app_b = sim.add_app(b, || Box::new(LanNode::new(2, true)));
    sim.run_for(Duration::from_secs(5));
    let na = sim.app::<LanNode>(a, app_a).unwrap();
    assert_eq!(na.disc.stats().queries_answered, 1);
    assert!(na.found.is_empty(), "a does not discover");
    let ip_a = sim.host(a).unwrap().addrs[0];
    assert_eq!(
        sim.app::<LanNode>(b, app_b).unwrap().found,
        vec![SocketAddr::new(ip_a, DHT_PORT)],
        "b heard a once: a's answer (b's own announcement carries b's id)"
    );
    assert!(knows(&sim, b, app_b, 1), "b bootstrapped from a");
    assert!(knows(&sim, a, app_a, 2), "a learnt b from b's requests");
}
