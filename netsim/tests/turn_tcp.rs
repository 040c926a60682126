//! The node's sans-IO TURN client (node::connect::turn) driven inside the simulator
//! against netsim's TURN server over simulated TCP: a UDP relay behind a TCP control
//! connection (padded ChannelData on the stream), RFC 6062 TCP allocations relaying
//! streams both ways (ConnectionAttempt for a peer dialling the relayed address, Connect
//! to a listening peer), permissions enforced for TCP peers, wrong passwords refused,
//! and a server that never sends ConnectionAttempt seen to break the inbound path.

use netsim::apps::turn::{TurnConfig, TurnServer};
use netsim::{App, Ctx, HostOpts, NodeId, Sim, SimConfig, SimTime, SockId, TcpEvent};
use node::connect::turn::{
    ClientConfig, ConnId, Transmit, Transport, TurnAccountConfig, TurnClient, TurnError, TurnEvent,
};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

fn ms(cx: &Ctx<'_>) -> u64 {
    cx.now().since(SimTime::ZERO).as_millis() as u64
}

/// Drives a node `TurnClient` with the simulator's sockets.
struct TurnUser {
    client: TurnClient,
    udp: Option<SockId>,
    conns: BTreeMap<ConnId, netsim::ConnId>,
    back: BTreeMap<netsim::ConnId, ConnId>,
    events: Vec<TurnEvent>,
    armed: Option<u64>,
}

impl TurnUser {
    fn new(cfg: ClientConfig) -> Self {
        TurnUser {
            client: TurnClient::new(cfg),
            udp: None,
            conns: BTreeMap::new(),
            back: BTreeMap::new(),
            events: Vec::new(),
            armed: None,
        }
    }

    fn pump(&mut self, cx: &mut Ctx<'_>) {
        while let Some(t) = self.client.poll_transmit() {
            match t {
                Transmit::Datagram { to, data } => {
                    let _ = cx.udp_send(self.udp.unwrap(), to, &data);
                }
                Transmit::Open { conn, to } => match cx.tcp_connect(to) {
                    Ok(c) => {
                        self.conns.insert(conn, c);
                        self.back.insert(c, conn);
                    }
                    Err(_) => self.client.handle_closed(ms(cx), conn),
                },
                Transmit::Write { conn, data } => {
                    if let Some(c) = self.conns.get(&conn) {
                        let _ = cx.tcp_send(*c, &data);
                    }
                }
                Transmit::Close { conn } => {
                    if let Some(c) = self.conns.remove(&conn) {
                        self.back.remove(&c);
                        cx.tcp_close(c);
                    }
                }
            }
        }
        while let Some(e) = self.client.poll_event() {
            self.events.push(e);
        }
        if let Some(t) = self.client.poll_timeout() {
            if self.armed.is_none_or(|a| t < a) {
                self.armed = Some(t);
                cx.set_timer(Duration::from_millis(t.saturating_sub(ms(cx))), 0);
            }
        }
    }

    fn connected(&self) -> Vec<(ConnId, SocketAddr, bool)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                TurnEvent::PeerConnected {
                    conn,
                    peer,
                    inbound,
                } => Some((*conn, *peer, *inbound)),
                _ => None,
            })
            .collect()
    }

    fn stream(&self, conn: ConnId) -> Vec<u8> {
        self.events
            .iter()
            .filter_map(|e| match e {
                TurnEvent::PeerStream { conn: c, data } if *c == conn => Some(data.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    }
}

impl App for TurnUser {
    fn start(&mut self, cx: &mut Ctx<'_>) {
        self.udp = cx.udp_bind("0.0.0.0:0".parse().unwrap()).ok();
        self.client.start(ms(cx));
        self.pump(cx);
    }
    fn on_udp(
        &mut self,
        cx: &mut Ctx<'_>,
        _: SockId,
        from: SocketAddr,
        _: SocketAddr,
        data: &[u8],
    ) {
        self.client.handle_datagram(ms(cx), from, data);
        self.pump(cx);
    }
    fn on_tcp(&mut self, cx: &mut Ctx<'_>, ev: TcpEvent) {
        let now = ms(cx);
        match ev {
            TcpEvent::Connected { conn } => {
                if let Some(c) = self.back.get(&conn) {
                    self.client.handle_connected(now, *c);
                }
            }
            TcpEvent::Data { conn, data } => {
                if let Some(c) = self.back.get(&conn) {
                    self.client.handle_data(now, *c, &data);
                }
            }
            TcpEvent::PeerClosed { conn } | TcpEvent::Reset { conn, .. } => {
                if let Some(c) = self.back.remove(&conn) {
                    self.conns.remove(&c);
                    self.client.handle_closed(now, c);
                }
            }
            TcpEvent::Accepted { conn, .. } => cx.tcp_close(conn),
        }
        self.pump(cx);
    }
    fn on_timer(&mut self, cx: &mut Ctx<'_>, _: u64) {
        self.armed = None;
        self.client.handle_timeout(ms(cx));
        self.pump(cx);
    }
    netsim::app_any!();
}

/// A peer host: echoes UDP and TCP (uppercased) on port 7000, can dial out, and records
/// what its outgoing connection receives.
#[derive(Default)]
struct Peer {
    out: Option<netsim::ConnId>,
    got: Vec<u8>,
    closed: bool,
}

const PEER_PORT: u16 = 7000;

impl App for Peer {
    fn start(&mut self, cx: &mut Ctx<'_>) {
        let any = SocketAddr::from(([0, 0, 0, 0], PEER_PORT));
        cx.udp_bind(any).unwrap();
        cx.tcp_listen(any).unwrap();
    }
    fn on_udp(
        &mut self,
        cx: &mut Ctx<'_>,
        s: SockId,
        from: SocketAddr,
        _: SocketAddr,
        data: &[u8],
    ) {
        let _ = cx.udp_send(s, from, &data.to_ascii_uppercase());
    }
    fn on_tcp(&mut self, cx: &mut Ctx<'_>, ev: TcpEvent) {
        match ev {
            TcpEvent::Data { conn, data } if Some(conn) == self.out => self.got.extend(&data[..]),
            TcpEvent::Data { conn, data } => {
                let _ = cx.tcp_send(conn, &data.to_ascii_uppercase());
            }
            TcpEvent::PeerClosed { conn } | TcpEvent::Reset { conn, .. }
                if Some(conn) == self.out =>
            {
                self.closed = true
            }
            _ => {}
        }
    }
    netsim::app_any!();
}

struct World {
    sim: Sim,
    turn: NodeId,
    user: NodeId,
    peer: NodeId,
    peer_ip: std::net::IpAddr,
}

fn world(
    seed: u64,
    server: TurnConfig,
    password: &str,
    control: Transport,
    relay: Transport,
) -> World {
    let mut sim = Sim::new(SimConfig {
        seed,
        ..Default::default()
    });
    let turn = sim.add_host("turn", HostOpts::default());
    let server_addr = SocketAddr::new(sim.host(turn).unwrap().addrs[0], server.port);
    sim.add_app(turn, move || Box::new(TurnServer::new(server.clone())));
    let peer = sim.add_host("peer", HostOpts::default());
    let peer_ip = sim.host(peer).unwrap().addrs[0];
    sim.add_app(peer, || Box::new(Peer::default()));
    let user = sim.add_host("user", HostOpts::default());
    let account = TurnAccountConfig {
        password: password.into(),
        ..TurnAccountConfig::default()
    };
    let cfg = ClientConfig::from_account(&account, server_addr, control, relay, seed);
    sim.add_app(user, move || Box::new(TurnUser::new(cfg.clone())));
    sim.run_for(Duration::from_secs(2));
    World {
        sim,
        turn,
        user,
        peer,
        peer_ip,
    }
}

/// jamid's defaults: ring/ring, realm ring.
fn ring_server() -> TurnConfig {
    TurnConfig {
        realm: "ring".into(),
        users: vec![("ring".into(), "ring".into())],
        ..TurnConfig::default()
    }
}

impl World {
    fn user(&self) -> &TurnUser {
        self.sim.app::<TurnUser>(self.user, 0).unwrap()
    }
    fn act(&mut self, f: impl FnOnce(&mut TurnClient, u64)) {
        self.sim
            .with_app::<TurnUser, _>(self.user, 0, |u, cx| {
                f(&mut u.client, ms(cx));
                u.pump(cx);
            })
            .unwrap();
        self.sim.run_for(Duration::from_secs(1));
    }
    fn relayed(&self) -> SocketAddr {
        self.user().client.relayed().expect("allocated")
    }
    fn peer(&self) -> &Peer {
        self.sim.app::<Peer>(self.peer, 0).unwrap()
    }
    fn peer_dial(&mut self, to: SocketAddr, data: &'static [u8]) {
        self.sim
            .with_app::<Peer, _>(self.peer, 0, |p, cx| {
                p.out = cx.tcp_connect(to).ok();
            })
            .unwrap();
        self.sim.run_for(Duration::from_secs(1));
        self.peer_write(data);
    }
    fn peer_write(&mut self, data: &'static [u8]) {
        self.sim
            .with_app::<Peer, _>(self.peer, 0, |p, cx| {
                let _ = cx.tcp_send(p.out.unwrap(), data);
            })
            .unwrap();
        self.sim.run_for(Duration::from_secs(1));
    }
    fn server(&self) -> &TurnServer {
        self.sim.app::<TurnServer>(self.turn, 0).unwrap()
    }
}

#[test]
fn tcp_allocation_relays_streams_both_ways() {
    let mut w = world(1, ring_server(), "ring", Transport::Tcp, Transport::Tcp);
    let relayed = w.relayed();
    let peer_ip = w.peer_ip;
    w.act(|c, now| c.create_permission(now, peer_ip).unwrap());
    assert!(w
        .user()
        .events
        .contains(&TurnEvent::PermissionCreated(peer_ip)));

    // Inbound: the peer dials the relayed address.
    w.peer_dial(relayed, b"hello relay");
    let inbound = w.user().connected();
    assert_eq!(inbound.len(), 1, "{:?}", w.user().events);
    let (conn, from, is_inbound) = inbound[0];
    assert!(is_inbound);
    assert_eq!(from.ip(), peer_ip);
    assert_eq!(w.user().stream(conn), b"hello relay");
    w.act(|c, _| c.send_stream(conn, b"hello peer").unwrap());
    assert_eq!(w.peer().got, b"hello peer");

    // Outbound: Connect to the peer's echo listener.
    let target = SocketAddr::new(peer_ip, PEER_PORT);
    w.act(|c, now| c.connect_peer(now, target).unwrap());
    let (out, to, is_inbound) = *w.user().connected().last().unwrap();
    assert_eq!((to, is_inbound), (target, false));
    w.act(|c, _| c.send_stream(out, b"echo me").unwrap());
    assert_eq!(w.user().stream(out), b"ECHO ME");
    assert_eq!(w.server().tcp_bound_peers(), 2);
    assert_eq!(w.user().client.stats().bad_integrity, 0);
}

#[test]
fn tcp_peers_without_permission_are_refused() {
    let mut w = world(2, ring_server(), "ring", Transport::Tcp, Transport::Tcp);
    let relayed = w.relayed();
    w.peer_dial(relayed, b"let me in");
    assert!(w.user().connected().is_empty());
    assert_eq!(w.server().tcp_refused(), 1);
    assert!(w.peer().closed);
    // Connect without a permission: 403.
    let target = SocketAddr::new(w.peer_ip, PEER_PORT);
    w.act(|c, now| c.connect_peer(now, target).unwrap());
    assert!(w.user().events.iter().any(|e| matches!(
        e,
        TurnEvent::PeerFailed {
            error: TurnError::Server { code: 403, .. },
            ..
        }
    )));
}

#[test]
fn a_server_that_never_sends_connection_attempt_strands_inbound_peers() {
    let cfg = TurnConfig {
        drop_connection_attempts: true,
        ..ring_server()
    };
    let mut w = world(3, cfg, "ring", Transport::Tcp, Transport::Tcp);
    let relayed = w.relayed();
    let peer_ip = w.peer_ip;
    w.act(|c, now| c.create_permission(now, peer_ip).unwrap());
    w.peer_dial(relayed, b"anyone?");
    assert!(w.user().connected().is_empty());
    // The server gives up on the unbound connection after RFC 6062's 30 s.
    assert!(!w.peer().closed);
    w.sim.run_for(Duration::from_secs(31));
    assert!(w.peer().closed);
}

#[test]
fn udp_relay_over_a_tcp_control_connection_uses_padded_channel_data() {
    let mut w = world(4, ring_server(), "ring", Transport::Tcp, Transport::Udp);
    let peer = SocketAddr::new(w.peer_ip, PEER_PORT);
    w.act(|c, now| {
        c.bind_channel(now, peer).unwrap();
    });
    // Lengths 1..=5 exercise every padding amount on the stream.
    for msg in [&b"a"[..], b"bb", b"ccc", b"dddd", b"eeeee"] {
        w.act(|c, _| c.send_to(peer, msg).unwrap());
    }
    let got: Vec<Vec<u8>> = w
        .user()
        .events
        .iter()
        .filter_map(|e| match e {
            TurnEvent::Data { peer: p, data } if *p == peer => Some(data.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(got, [&b"A"[..], b"BB", b"CCC", b"DDDD", b"EEEEE"]);
    assert!(w.server().channel_data >= 10);
}

#[test]
fn wrong_password_is_refused_over_tcp() {
    let w = world(5, ring_server(), "wrong", Transport::Tcp, Transport::Tcp);
    assert_eq!(
        w.user().events,
        [TurnEvent::Failed(TurnError::Unauthorized)]
    );
    assert_eq!(w.server().auth_failures, 1);
}

#[test]
fn allocation_survives_refreshes_over_tcp() {
    let mut w = world(6, ring_server(), "ring", Transport::Tcp, Transport::Tcp);
    let relayed = w.relayed();
    w.sim.run_for(Duration::from_secs(3 * 600));
    assert_eq!(w.user().client.relayed(), Some(relayed));
    assert_eq!(w.server().allocation_count(), 1);
    assert!(!w
        .user()
        .events
        .iter()
        .any(|e| matches!(e, TurnEvent::Failed(_))));
}
