//! The STUN server (RFC 5389/5780) and the TURN relay and client (RFC 5766), end to end
//! in the simulator, including sabotaged relays that show the checks can fail.

use netsim::apps::stun_server::StunServer;
use netsim::apps::turn::{TurnClient, TurnConfig, TurnEvent, TurnServer};
use netsim::stun::{attr_type, long_term_key, Attribute, Class, Message, Method, TRANSPORT_UDP};
use netsim::{App, Ctx, HostOpts, LinkParams, NatConfig, NatType, NodeId, Sim, SimConfig, SockId};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Sends datagrams when told to and records everything it receives.
#[derive(Default)]
struct Prober {
    sock: Option<SockId>,
    got: Vec<(SocketAddr, Vec<u8>)>,
}

impl Prober {
    fn send(&mut self, cx: &mut Ctx<'_>, to: SocketAddr, data: &[u8]) {
        cx.udp_send(self.sock.unwrap(), to, data).unwrap();
    }
    /// Decoded STUN answers with transaction id `txid`.
    fn answers(&self, txid: [u8; 12]) -> Vec<(SocketAddr, Message, Vec<u8>)> {
        self.got
            .iter()
            .filter_map(|(from, raw)| Message::decode(raw).ok().map(|m| (*from, m, raw.clone())))
            .filter(|(_, m, _)| m.txid == txid)
            .collect()
    }
    fn answer(&self, txid: [u8; 12]) -> (SocketAddr, Message, Vec<u8>) {
        let mut a = self.answers(txid);
        assert_eq!(a.len(), 1, "exactly one answer to {txid:?}");
        a.remove(0)
    }
}

impl App for Prober {
    fn start(&mut self, cx: &mut Ctx<'_>) {
        self.sock = Some(cx.udp_bind("0.0.0.0:0".parse().unwrap()).unwrap());
    }
    fn on_udp(
        &mut self,
        _cx: &mut Ctx<'_>,
        _s: SockId,
        from: SocketAddr,
        _to: SocketAddr,
        data: &[u8],
    ) {
        self.got.push((from, data.to_vec()));
    }
    netsim::app_any!();
}

fn nat(kind: &str) -> NatConfig {
    NatConfig {
        kind: kind.parse::<NatType>().unwrap(),
        ..NatConfig::default()
    }
}

fn wifi() -> (LinkParams, LinkParams) {
    LinkParams::preset("wifi").unwrap()
}

/// Lossless links so that exact counts can be asserted.
fn clean() -> (LinkParams, LinkParams) {
    LinkParams::preset("lan").unwrap()
}

fn probe_with(sim: &mut Sim, host: NodeId, to: SocketAddr, data: Vec<u8>) {
    sim.with_app::<Prober, _>(host, 0, move |p, cx| p.send(cx, to, &data))
        .unwrap();
    sim.run_for(Duration::from_millis(500));
}

fn binding(txid: u8) -> Message {
    Message::new(Class::Request, Method::Binding, [txid; 12])
}

// ---- STUN ---------------------------------------------------------------------------

#[test]
fn stun_server_reflects_the_nat_address_and_honours_change_request() {
    let mut sim = Sim::new(SimConfig {
        seed: 7,
        ..Default::default()
    });
    let server = sim.add_host(
        "stun",
        HostOpts {
            extra_addrs: 1,
            ..Default::default()
        },
    );
    let (p, a) = {
        let h = sim.host(server).unwrap();
        (h.addrs[0], h.addrs[1])
    };
    sim.add_app(server, || Box::new(StunServer::new(3478, 3479)));
    // Endpoint-independent filtering lets the answers from the other addresses in.
    let (up, down) = clean();
    let home = sim.add_nat("home", nat("eim-eif"), None, up, down);
    let client = sim.add_host(
        "client",
        HostOpts {
            behind: Some(home),
            ..Default::default()
        },
    );
    sim.add_app(client, || Box::new(Prober::default()));
    sim.run_for(Duration::from_millis(10));
    let primary = SocketAddr::new(p, 3478);
    let wan = IpAddr::V4(sim.nat_mut(home).unwrap().wan);

    probe_with(&mut sim, client, primary, binding(1).encode());
    let change = |t: u8, ip: bool, port: bool| {
        binding(t)
            .with(Attribute::ChangeRequest {
                change_ip: ip,
                change_port: port,
            })
            .encode()
    };
    probe_with(&mut sim, client, primary, change(2, true, true));
    probe_with(&mut sim, client, primary, change(3, false, true));
    probe_with(&mut sim, client, primary, change(4, true, false));
    probe_with(
        &mut sim,
        client,
        primary,
        b"\x00\x01garbage that is not STUN".to_vec(),
    );
    probe_with(
        &mut sim,
        client,
        primary,
        binding(5)
            .with(Attribute::Unknown {
                typ: 0x7777,
                value: vec![1, 2, 3, 4],
            })
            .encode(),
    );
    probe_with(
        &mut sim,
        client,
        primary,
        binding(6).with(Attribute::Fingerprint(0)).encode(),
    );
    probe_with(
        &mut sim,
        client,
        primary,
        binding(7).encode_with(None, true),
    );

    let prober = sim.app::<Prober>(client, 0).unwrap();
    let (from, m, _) = prober.answer([1; 12]);
    assert_eq!(from, primary);
    assert_eq!(m.class, Class::SuccessResponse);
    let mapped = m.xor_mapped().unwrap();
    assert_eq!(
        mapped.ip(),
        wan,
        "XOR-MAPPED-ADDRESS is the NAT's WAN address"
    );
    assert_eq!(m.mapped_address(), Some(mapped));
    assert_eq!(m.response_origin(), Some(primary));
    assert_eq!(m.other_address(), Some(SocketAddr::new(a, 3479)));
    assert!(m.software().is_some());
    for (t, origin) in [
        (2, SocketAddr::new(a, 3479)),
        (3, SocketAddr::new(p, 3479)),
        (4, SocketAddr::new(a, 3478)),
    ] {
        let (from, m, _) = prober.answer([t; 12]);
        assert_eq!(
            from, origin,
            "CHANGE-REQUEST {t} answered from the changed address"
        );
        assert_eq!(m.response_origin(), Some(origin));
        assert_eq!(m.xor_mapped(), Some(mapped));
    }
    let (_, m, _) = prober.answer([5; 12]);
    assert_eq!(m.class, Class::ErrorResponse);
    assert_eq!(m.error_code().unwrap().code, 420);
    assert_eq!(m.unknown_attributes(), Some(&[0x7777u16][..]));
    assert!(
        prober.answers([6; 12]).is_empty(),
        "a bad FINGERPRINT is dropped"
    );
    let (_, m, raw) = prober.answer([7; 12]);
    assert_eq!(
        m.class,
        Class::SuccessResponse,
        "the server keeps answering after garbage"
    );
    assert!(
        Message::check_fingerprint(&raw),
        "a fingerprinted request gets a fingerprinted answer"
    );
    let s = sim.app::<StunServer>(server, 0).unwrap();
    assert_eq!(s.malformed, 2, "the garbage and the bad fingerprint");
    assert_eq!(s.requests, 6);
}

#[test]
fn change_request_answers_are_filtered_by_a_port_dependent_nat() {
    // The same exchange through an address-and-port-dependent filter: only the answer
    // from the address the client sent to gets in. This is what discovery relies on.
    let mut sim = Sim::new(SimConfig {
        seed: 8,
        ..Default::default()
    });
    let server = sim.add_host(
        "stun",
        HostOpts {
            extra_addrs: 1,
            ..Default::default()
        },
    );
    let p = sim.host(server).unwrap().addrs[0];
    sim.add_app(server, || Box::new(StunServer::new(3478, 3479)));
    let (up, down) = clean();
    let home = sim.add_nat("home", nat("eim-apdf"), None, up, down);
    let client = sim.add_host(
        "client",
        HostOpts {
            behind: Some(home),
            ..Default::default()
        },
    );
    sim.add_app(client, || Box::new(Prober::default()));
    sim.run_for(Duration::from_millis(10));
    let primary = SocketAddr::new(p, 3478);
    probe_with(&mut sim, client, primary, binding(1).encode());
    probe_with(
        &mut sim,
        client,
        primary,
        binding(2)
            .with(Attribute::ChangeRequest {
                change_ip: false,
                change_port: true,
            })
            .encode(),
    );
    let prober = sim.app::<Prober>(client, 0).unwrap();
    assert_eq!(prober.answers([1; 12]).len(), 1);
    assert!(prober.answers([2; 12]).is_empty());
    assert_eq!(
        sim.app::<StunServer>(server, 0).unwrap().requests,
        2,
        "the server did answer"
    );
}

#[test]
fn single_address_server_rejects_change_request() {
    let mut sim = Sim::new(SimConfig {
        seed: 9,
        ..Default::default()
    });
    let server = sim.add_host("stun", HostOpts::default());
    let p = sim.host(server).unwrap().addrs[0];
    sim.add_app(server, || Box::new(StunServer::new(3478, 3479)));
    let client = sim.add_host("client", HostOpts::default());
    sim.add_app(client, || Box::new(Prober::default()));
    sim.run_for(Duration::from_millis(10));
    let primary = SocketAddr::new(p, 3478);
    probe_with(&mut sim, client, primary, binding(1).encode());
    probe_with(
        &mut sim,
        client,
        primary,
        binding(2)
            .with(Attribute::ChangeRequest {
                change_ip: false,
                change_port: true,
            })
            .encode(),
    );
    let prober = sim.app::<Prober>(client, 0).unwrap();
    let (_, m, _) = prober.answer([1; 12]);
    assert_eq!(m.other_address(), None);
    let (_, m, _) = prober.answer([2; 12]);
    assert_eq!(m.error_code().unwrap().code, 420);
    assert_eq!(
        m.unknown_attributes(),
        Some(&[attr_type::CHANGE_REQUEST][..])
    );
}

#[test]
fn response_port_redirects_the_answer() {
    let mut sim = Sim::new(SimConfig {
        seed: 10,
        ..Default::default()
    });
    let server = sim.add_host(
        "stun",
        HostOpts {
            extra_addrs: 1,
            ..Default::default()
        },
    );
    let p = sim.host(server).unwrap().addrs[0];
    sim.add_app(server, || Box::new(StunServer::new(3478, 3479)));
    let client = sim.add_host("client", HostOpts::default());
    sim.add_app(client, || Box::new(Prober::default()));
    let other = sim.add_app(client, || Box::new(Prober::default()));
    sim.run_for(Duration::from_millis(10));
    let other_port = sim
        .with_app::<Prober, _>(client, other, |q, cx| {
            cx.local_addr(q.sock.unwrap()).unwrap().port()
        })
        .unwrap();
    let req = binding(1)
        .with(Attribute::ResponsePort(other_port))
        .encode();
    probe_with(&mut sim, client, SocketAddr::new(p, 3478), req);
    assert!(sim
        .app::<Prober>(client, 0)
        .unwrap()
        .answers([1; 12])
        .is_empty());
    let (_, m, _) = sim.app::<Prober>(client, other).unwrap().answer([1; 12]);
    assert_eq!(m.class, Class::SuccessResponse);
}

// ---- TURN ---------------------------------------------------------------------------

/// An app that uses a TURN relay through an embedded [`TurnClient`] on its one socket.
struct RelayUser {
    turn: TurnClient,
    sock: Option<SockId>,
    events: Vec<TurnEvent>,
}

impl RelayUser {
    fn new(server: SocketAddr, password: &str) -> Self {
        RelayUser {
            turn: TurnClient::new(server, "user", password),
            sock: None,
            events: Vec::new(),
        }
    }
    fn data(&self) -> Vec<(SocketAddr, Vec<u8>)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                TurnEvent::Data { peer, data } => Some((*peer, data.clone())),
                _ => None,
            })
            .collect()
    }
    fn failures(&self) -> usize {
        self.events
            .iter()
            .filter(|e| matches!(e, TurnEvent::Failed { .. }))
            .count()
    }
}

impl App for RelayUser {
    fn start(&mut self, cx: &mut Ctx<'_>) {
        let sock = cx.udp_bind("0.0.0.0:0".parse().unwrap()).unwrap();
        self.sock = Some(sock);
        self.turn.start(cx, sock);
    }
    fn on_udp(
        &mut self,
        cx: &mut Ctx<'_>,
        sock: SockId,
        from: SocketAddr,
        _to: SocketAddr,
        data: &[u8],
    ) {
        if let Some(ev) = self.turn.handle(cx, sock, from, data) {
            self.events.extend(ev);
        }
    }
    fn on_timer(&mut self, cx: &mut Ctx<'_>, token: u64) {
        let sock = self.sock.unwrap();
        let ev = self
            .turn
            .on_timer(cx, sock, token)
            .expect("only the client sets timers here");
        self.events.extend(ev);
    }
    netsim::app_any!();
}

struct World {
    sim: Sim,
    turn: NodeId,
    turn_addr: SocketAddr,
    a: NodeId,
    b: NodeId,
    nat_b: NodeId,
    c: NodeId,
}

/// A TURN server; A and B each behind an address-and-port-dependent (symmetric) NAT; C
/// public. A uses the relay.
fn world(seed: u64, cfg: TurnConfig, password: &str) -> World {
    let mut sim = Sim::new(SimConfig {
        seed,
        ..Default::default()
    });
    let turn = sim.add_host("turn", HostOpts::default());
    let turn_addr = SocketAddr::new(sim.host(turn).unwrap().addrs[0], cfg.port);
    sim.add_app(turn, move || Box::new(TurnServer::new(cfg.clone())));
    let (up, down) = wifi();
    let nat_a = sim.add_nat("nat-a", nat("apdm-apdf"), None, up.clone(), down.clone());
    let nat_b = sim.add_nat("nat-b", nat("apdm-apdf"), None, up, down);
    let a = sim.add_host(
        "a",
        HostOpts {
            behind: Some(nat_a),
            ..Default::default()
        },
    );
    let b = sim.add_host(
        "b",
        HostOpts {
            behind: Some(nat_b),
            ..Default::default()
        },
    );
    let c = sim.add_host("c", HostOpts::default());
    let password = password.to_string();
    sim.add_app(a, move || Box::new(RelayUser::new(turn_addr, &password)));
    sim.add_app(b, || Box::new(Prober::default()));
    sim.add_app(c, || Box::new(Prober::default()));
    World {
        sim,
        turn,
        turn_addr,
        a,
        b,
        nat_b,
        c,
    }
}

impl World {
    fn user(&self) -> &RelayUser {
        self.sim.app::<RelayUser>(self.a, 0).unwrap()
    }
    fn server(&self) -> &TurnServer {
        self.sim.app::<TurnServer>(self.turn, 0).unwrap()
    }
    fn act(&mut self, f: impl FnOnce(&mut TurnClient, &mut Ctx<'_>, SockId)) {
        self.sim
            .with_app::<RelayUser, _>(self.a, 0, |u, cx| {
                let sock = u.sock.unwrap();
                f(&mut u.turn, cx, sock)
            })
            .unwrap();
        self.sim.run_for(Duration::from_secs(1));
    }
    fn peer_send(&mut self, host: NodeId, to: SocketAddr, data: &[u8]) {
        let data = data.to_vec();
        self.sim
            .with_app::<Prober, _>(host, 0, move |p, cx| p.send(cx, to, &data))
            .unwrap();
        self.sim.run_for(Duration::from_secs(1));
    }
    fn received(&self, host: NodeId) -> Vec<(SocketAddr, Vec<u8>)> {
        self.sim.app::<Prober>(host, 0).unwrap().got.clone()
    }
}

/// What a relay session produced, for comparing honest and sabotaged relays.
struct Outcome {
    relayed: SocketAddr,
    a_got: Vec<(SocketAddr, Vec<u8>)>,
    b_got: Vec<(SocketAddr, Vec<u8>)>,
    b_mapped: Option<SocketAddr>,
    c_ip: IpAddr,
    dropped_no_permission: u64,
    relayed_to_client: u64,
    relayed_to_peer: u64,
    channel_data: u64,
}

/// A allocates and permits B's NAT; B and C (no permission) send to the relayed address;
/// A answers B by Send indication, then binds a channel and answers by ChannelData.
fn relay_session(cfg: TurnConfig) -> Outcome {
    let mut w = world(11, cfg, "pass");
    w.sim.run_for(Duration::from_secs(2));
    let (relayed, mapped) = match w.user().events.first() {
        Some(TurnEvent::Allocated { relayed, mapped }) => (*relayed, *mapped),
        other => panic!("expected an allocation, got {other:?}"),
    };
    assert_eq!(
        relayed.ip(),
        w.turn_addr.ip(),
        "relayed on the server's address"
    );
    assert_eq!(w.user().turn.relayed(), Some(relayed));
    assert_eq!(w.user().turn.mapped(), Some(mapped));
    let b_wan = IpAddr::V4(w.sim.nat_mut(w.nat_b).unwrap().wan);
    w.act(|t, cx, s| t.create_permission(cx, s, b_wan));
    assert!(w
        .user()
        .events
        .contains(&TurnEvent::PermissionCreated { peer: b_wan }));

    let (b, c) = (w.b, w.c);
    w.peer_send(b, relayed, b"b1");
    w.peer_send(b, relayed, b"b2");
    w.peer_send(c, relayed, b"c1");
    let b_mapped = w.user().data().first().map(|(p, _)| *p);
    if let Some(peer) = b_mapped {
        w.act(|t, cx, s| t.send(cx, s, peer, b"a1"));
        w.act(|t, cx, s| t.bind_channel(cx, s, peer));
        assert!(w.user().events.contains(&TurnEvent::ChannelBound {
            peer,
            channel: 0x4000
        }));
        assert_eq!(w.user().turn.channel(peer), Some(0x4000));
        w.act(|t, cx, s| t.send(cx, s, peer, b"a2"));
        w.peer_send(b, relayed, b"b3");
    }
    let s = w.server();
    Outcome {
        relayed,
        a_got: w.user().data(),
        b_got: w.received(b),
        b_mapped,
        c_ip: w.sim.host(c).unwrap().addrs[0],
        dropped_no_permission: s.dropped_no_permission,
        relayed_to_client: s.relayed_to_client,
        relayed_to_peer: s.relayed_to_peer,
        channel_data: s.channel_data,
    }
}

fn payloads(v: &[(SocketAddr, Vec<u8>)]) -> Vec<&[u8]> {
    v.iter().map(|(_, d)| d.as_slice()).collect()
}

#[test]
fn turn_relays_both_ways_between_symmetric_nats() {
    let o = relay_session(TurnConfig::default());
    assert_eq!(
        payloads(&o.a_got),
        vec![&b"b1"[..], b"b2", b"b3"],
        "only the permitted peer gets through"
    );
    let b_mapped = o.b_mapped.unwrap();
    assert!(o.a_got.iter().all(|(p, _)| *p == b_mapped));
    assert_ne!(b_mapped.ip(), o.c_ip);
    assert_eq!(
        payloads(&o.b_got),
        vec![&b"a1"[..], b"a2"],
        "Send indication, then ChannelData"
    );
    assert!(
        o.b_got.iter().all(|(from, _)| *from == o.relayed),
        "B hears A from the relayed address"
    );
    assert_eq!(o.dropped_no_permission, 1, "C had no permission");
    assert_eq!(o.relayed_to_client, 3);
    assert_eq!(o.relayed_to_peer, 2);
    assert_eq!(o.channel_data, 2, "a2 and b3 went over the channel");
}

#[test]
fn sabotaged_relay_ignoring_permissions_lets_strangers_in() {
    let o = relay_session(TurnConfig {
        ignore_permissions: true,
        ..Default::default()
    });
    assert_eq!(o.dropped_no_permission, 0);
    assert!(
        o.a_got.iter().any(|(p, d)| p.ip() == o.c_ip && d == b"c1"),
        "the check above would fail"
    );
}

#[test]
fn sabotaged_relay_dropping_data_delivers_nothing() {
    let o = relay_session(TurnConfig {
        drop_data: true,
        ..Default::default()
    });
    assert!(o.a_got.is_empty(), "the check that A hears B would fail");
    assert_eq!(o.relayed_to_client, 0);
}

#[test]
fn wrong_password_fails_and_is_counted() {
    let mut w = world(12, TurnConfig::default(), "wrong");
    w.sim.run_for(Duration::from_secs(5));
    assert_eq!(w.user().failures(), 1);
    let reason = match &w.user().events[..] {
        [TurnEvent::Failed { reason }] => reason.clone(),
        other => panic!("expected one failure, got {other:?}"),
    };
    assert!(reason.contains("401"), "{reason}");
    assert_eq!(w.user().turn.relayed(), None);
    assert_eq!(w.server().auth_failures, 1);
    assert_eq!(w.server().allocations, 0);
}

#[test]
fn unreachable_server_fails_after_retransmissions() {
    let mut w = world(13, TurnConfig::default(), "pass");
    w.sim.crash(w.turn);
    w.sim.run_for(Duration::from_secs(60));
    assert_eq!(w.user().failures(), 1, "{:?}", w.user().events);
    assert!(
        matches!(&w.user().events[0], TurnEvent::Failed { reason } if reason.contains("timed out"))
    );
}

#[test]
fn client_keeps_allocation_and_permission_alive() {
    // A 60 s allocation and 5 min permissions: after 15 minutes the relay still works
    // only if the client refreshed both (and kept its NAT mapping open).
    let cfg = TurnConfig {
        lifetime: Duration::from_secs(60),
        ..Default::default()
    };
    let mut w = world(14, cfg, "pass");
    w.sim.run_for(Duration::from_secs(2));
    let relayed = w.user().turn.relayed().unwrap();
    let b_wan = IpAddr::V4(w.sim.nat_mut(w.nat_b).unwrap().wan);
    w.act(|t, cx, s| t.create_permission(cx, s, b_wan));
    w.sim.run_for(Duration::from_secs(900));
    assert_eq!(w.user().failures(), 0, "{:?}", w.user().events);
    assert_eq!(w.user().turn.relayed(), Some(relayed));
    let b = w.b;
    w.peer_send(b, relayed, b"late");
    assert_eq!(payloads(&w.user().data()), vec![&b"late"[..]]);
    assert_eq!(w.server().allocations, 1);
    assert_eq!(w.server().allocation_count(), 1);
}

/// Signed TURN request as a raw client would build it.
fn signed(method: Method, txid: u8, nonce: &str, attrs: Vec<Attribute>) -> Vec<u8> {
    let mut m = Message::new(Class::Request, method, [txid; 12]);
    for a in attrs {
        m.add(a);
    }
    m.add(Attribute::Username("user".into()));
    m.add(Attribute::Realm("netsim".into()));
    m.add(Attribute::Nonce(nonce.into()));
    m.encode_with_integrity(&key())
}

fn key() -> [u8; 16] {
    long_term_key("user", "netsim", "pass")
}

#[test]
fn turn_server_protocol_errors_and_expiry() {
    let mut w = world(15, TurnConfig::default(), "pass");
    let (c, server) = (w.c, w.turn_addr);
    let udp = || Attribute::RequestedTransport(TRANSPORT_UDP);
    probe_with(
        &mut w.sim,
        c,
        server,
        Message::new(Class::Request, Method::Allocate, [1; 12])
            .with(udp())
            .encode(),
    );
    let (_, m, _) = w.sim.app::<Prober>(c, 0).unwrap().answer([1; 12]);
    assert_eq!(m.error_code().unwrap().code, 401);
    assert_eq!(m.realm(), Some("netsim"));
    let nonce = m.nonce().unwrap().to_string();

    probe_with(
        &mut w.sim,
        c,
        server,
        signed(
            Method::Allocate,
            2,
            &nonce,
            vec![Attribute::RequestedTransport(6)],
        ),
    );
    probe_with(
        &mut w.sim,
        c,
        server,
        signed(Method::Allocate, 3, &nonce, vec![udp()]),
    );
    probe_with(
        &mut w.sim,
        c,
        server,
        signed(Method::Allocate, 3, &nonce, vec![udp()]),
    );
    probe_with(
        &mut w.sim,
        c,
        server,
        signed(Method::Allocate, 4, &nonce, vec![udp()]),
    );
    probe_with(
        &mut w.sim,
        c,
        server,
        signed(Method::Allocate, 5, "stale", vec![udp()]),
    );
    let bad_channel = vec![
        Attribute::ChannelNumber(0x3FFF),
        Attribute::XorPeerAddress(server),
    ];
    probe_with(
        &mut w.sim,
        c,
        server,
        signed(Method::ChannelBind, 6, &nonce, bad_channel),
    );
    probe_with(&mut w.sim, c, server, vec![0x40, 0x00, 0x00, 0x10, 1]);
    probe_with(&mut w.sim, c, server, vec![0xff; 40]);

    let p = w.sim.app::<Prober>(c, 0).unwrap();
    let (_, m, raw) = p.answer([2; 12]);
    assert_eq!(m.error_code().unwrap().code, 442);
    assert!(
        m.check_integrity(&raw, &key()),
        "answers to authenticated requests are signed"
    );
    let ok = p.answers([3; 12]);
    assert_eq!(ok.len(), 2);
    assert_eq!(
        ok[0].2, ok[1].2,
        "a retransmitted Allocate gets the same answer"
    );
    let (_, m, raw) = &ok[0];
    assert_eq!(m.class, Class::SuccessResponse);
    assert!(m.check_integrity(raw, &key()));
    assert_eq!(m.lifetime(), Some(600));
    let relayed = m.xor_relayed_address().unwrap();
    let c_addr = m.xor_mapped().unwrap();
    assert_eq!(c_addr.ip(), w.sim.host(c).unwrap().addrs[0]);
    assert_eq!(p.answer([4; 12]).1.error_code().unwrap().code, 437);
    let (_, m, _) = p.answer([5; 12]);
    assert_eq!(m.error_code().unwrap().code, 438);
    assert_eq!(m.nonce(), Some(nonce.as_str()));
    assert_eq!(p.answer([6; 12]).1.error_code().unwrap().code, 400);
    assert_eq!(w.server().malformed, 2, "truncated ChannelData and garbage");
    assert_eq!(w.server().allocations, 2, "A's and C's");
    assert_eq!(w.server().relayed_for(c_addr), Some(relayed));

    // A permission for B's NAT, then let it lapse (5 min) while the allocation lives.
    let b_wan = IpAddr::V4(w.sim.nat_mut(w.nat_b).unwrap().wan);
    let perm = vec![Attribute::XorPeerAddress(SocketAddr::new(b_wan, 0))];
    probe_with(
        &mut w.sim,
        c,
        server,
        signed(Method::CreatePermission, 7, &nonce, perm),
    );
    let p = w.sim.app::<Prober>(c, 0).unwrap();
    assert_eq!(p.answer([7; 12]).1.class, Class::SuccessResponse);
    let b = w.b;
    w.peer_send(b, relayed, b"fresh");
    w.sim.run_for(Duration::from_secs(300));
    w.peer_send(b, relayed, b"stale");
    let from_relay: Vec<_> = w
        .received(c)
        .into_iter()
        .filter(|(f, _)| *f == server)
        .collect();
    let data: Vec<Vec<u8>> = from_relay
        .iter()
        .filter_map(|(_, raw)| Message::decode(raw).ok())
        .filter(|m| m.method == Method::Data)
        .filter_map(|m| m.data().map(|d| d.to_vec()))
        .collect();
    assert_eq!(
        data,
        vec![b"fresh".to_vec()],
        "the expired permission stops the relay"
    );
    assert_eq!(w.server().dropped_no_permission, 1);

    // The 10 min allocation expires by itself; Refresh then finds nothing (437).
    w.sim.run_for(Duration::from_secs(300));
    assert_eq!(w.server().relayed_for(c_addr), None);
    assert_eq!(
        w.server().allocation_count(),
        1,
        "A's client refreshes its own"
    );
    probe_with(
        &mut w.sim,
        c,
        server,
        signed(Method::Refresh, 8, &nonce, vec![]),
    );
    let p = w.sim.app::<Prober>(c, 0).unwrap();
    assert_eq!(p.answer([8; 12]).1.error_code().unwrap().code, 437);
}

#[test]
fn refresh_with_zero_lifetime_deletes_the_allocation() {
    let mut w = world(16, TurnConfig::default(), "pass");
    w.sim.run_for(Duration::from_secs(2));
    let relayed = w.user().turn.relayed().unwrap();
    assert_eq!(w.server().allocation_count(), 1);
    w.act(|t, cx, s| t.close(cx, s));
    assert_eq!(w.server().allocation_count(), 0);
    assert_eq!(w.user().turn.relayed(), None);
    let b = w.b;
    w.peer_send(b, relayed, b"gone");
    assert!(w.user().data().is_empty());
}

#[test]
fn turn_runs_are_deterministic() {
    let hash = || {
        let mut w = world(17, TurnConfig::default(), "pass");
        w.sim.run_for(Duration::from_secs(2));
        let relayed = w.user().turn.relayed().unwrap();
        let b = w.b;
        w.peer_send(b, relayed, b"x");
        w.sim.trace_hash()
    };
    assert_eq!(hash(), hash());
}

// ---- garbage --------------------------------------------------------------------------

use rand::{RngExt, SeedableRng};

/// Flip, truncate or extend a datagram at random.
fn mutate(rng: &mut rand_chacha::ChaCha8Rng, mut d: Vec<u8>) -> Vec<u8> {
    match rng.random_range(0..4u8) {
        0 => d,
        1 => {
            for _ in 0..rng.random_range(1..4usize) {
                if !d.is_empty() {
                    let i = rng.random_range(0..d.len());
                    d[i] ^= 1 << rng.random_range(0..8u32);
                }
            }
            d
        }
        2 => {
            let n = rng.random_range(0..=d.len());
            d.truncate(n);
            d
        }
        _ => {
            let extra: Vec<u8> = (0..rng.random_range(1..64usize))
                .map(|_| rng.random())
                .collect();
            d.extend(extra);
            d
        }
    }
}

/// Plausible STUN/TURN answers to `req`, some signed with the right key.
fn hostile_answers(
    rng: &mut rand_chacha::ChaCha8Rng,
    req: &Message,
    me: SocketAddr,
) -> Vec<Vec<u8>> {
    let long = |rng: &mut rand_chacha::ChaCha8Rng| "r".repeat(rng.random_range(0..1200usize));
    let ok = req
        .reply(Class::SuccessResponse)
        .with(Attribute::XorRelayedAddress(me))
        .with(Attribute::XorMappedAddress(me))
        .with(Attribute::OtherAddress(me))
        .with(Attribute::Lifetime(
            [0, 1, 600, rng.random::<u32>()][rng.random_range(0..4usize)],
        ));
    let err = |code: u16| {
        req.reply(Class::ErrorResponse).with(Attribute::ErrorCode(
            netsim::stun::ErrorCode::standard(code),
        ))
    };
    vec![
        err(401)
            .with(Attribute::Realm("netsim".into()))
            .with(Attribute::Nonce("n".into()))
            .encode(),
        err(401)
            .with(Attribute::Realm(long(rng)))
            .with(Attribute::Nonce(long(rng)))
            .encode(),
        err(438).with(Attribute::Nonce(long(rng))).encode(),
        err(rng.random_range(300..700u16)).encode(),
        ok.encode_with_integrity(&key()),
        ok.encode(),
        ChannelDataOf(rng.random()).bytes(rng.random_range(0..100usize)),
        Message::new(Class::Indication, Method::Data, rng.random())
            .with(Attribute::XorPeerAddress(me))
            .with(Attribute::Data(vec![7; rng.random_range(0..100usize)]))
            .encode(),
    ]
}

struct ChannelDataOf(u16);
impl ChannelDataOf {
    fn bytes(&self, n: usize) -> Vec<u8> {
        netsim::stun::ChannelData {
            channel: 0x4000 | (self.0 & 0x3fff),
            data: vec![1; n],
        }
        .encode()
    }
}

/// Answers every datagram with a burst of mutated, plausible answers.
struct Hostile {
    rng: rand_chacha::ChaCha8Rng,
    me: Option<SocketAddr>,
    port: u16,
}

impl App for Hostile {
    fn start(&mut self, cx: &mut Ctx<'_>) {
        let s = cx
            .udp_bind(SocketAddr::from(([0, 0, 0, 0], self.port)))
            .unwrap();
        self.me = cx.local_addr(s).ok();
    }
    fn on_udp(
        &mut self,
        cx: &mut Ctx<'_>,
        sock: SockId,
        from: SocketAddr,
        _to: SocketAddr,
        data: &[u8],
    ) {
        let Ok(req) = Message::decode(data) else {
            return;
        };
        let mut answers = hostile_answers(&mut self.rng, &req, self.me.unwrap());
        // Random order, so that every kind of answer is sometimes the one that counts.
        for i in (1..answers.len()).rev() {
            answers.swap(i, self.rng.random_range(0..=i));
        }
        for a in answers {
            let d = mutate(&mut self.rng, a);
            cx.udp_send(sock, from, &d).unwrap();
        }
    }
    netsim::app_any!();
}

/// A TURN client that starts over whenever it fails and uses every allocation it gets,
/// to meet as many answers as possible.
struct Stubborn(RelayUser, usize);

impl App for Stubborn {
    fn start(&mut self, cx: &mut Ctx<'_>) {
        self.0.start(cx);
    }
    fn on_udp(
        &mut self,
        cx: &mut Ctx<'_>,
        sock: SockId,
        from: SocketAddr,
        to: SocketAddr,
        data: &[u8],
    ) {
        self.0.on_udp(cx, sock, from, to, data);
        self.react(cx, sock);
    }
    fn on_timer(&mut self, cx: &mut Ctx<'_>, token: u64) {
        self.0.on_timer(cx, token);
        let sock = self.0.sock.unwrap();
        self.react(cx, sock);
    }
    netsim::app_any!();
}

impl Stubborn {
    fn react(&mut self, cx: &mut Ctx<'_>, sock: SockId) {
        let relayed = self.0.turn.relayed();
        if relayed.is_none() && self.0.turn.state() != netsim::apps::turn::TurnState::Allocating {
            self.0.turn.start(cx, sock);
        }
        let allocations = self
            .0
            .events
            .iter()
            .filter(|e| matches!(e, TurnEvent::Allocated { .. }))
            .count();
        if relayed.is_some() && allocations != self.1 {
            self.1 = allocations;
            let peer = SocketAddr::from(([198, 18, 0, 1], 9));
            self.0.turn.create_permission(cx, sock, peer.ip());
            self.0.turn.bind_channel(cx, sock, peer);
            self.0.turn.send(cx, sock, peer, b"x");
            self.0.turn.close(cx, sock);
        }
    }
}

#[test]
fn garbage_never_panics_servers_or_clients() {
    let mut sim = Sim::new(SimConfig {
        seed: 21,
        trace: false,
        ..Default::default()
    });
    let stun = sim.add_host(
        "stun",
        HostOpts {
            extra_addrs: 1,
            ..Default::default()
        },
    );
    sim.add_app(stun, || Box::new(StunServer::new(3478, 3479)));
    let turn = sim.add_host("turn", HostOpts::default());
    sim.add_app(turn, || Box::new(TurnServer::new(TurnConfig::default())));
    let hostile = sim.add_host("hostile", HostOpts::default());
    sim.add_app(hostile, || {
        Box::new(Hostile {
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(1),
            me: None,
            port: 3478,
        })
    });
    let fuzzer = sim.add_host("fuzzer", HostOpts::default());
    sim.add_app(fuzzer, || Box::new(Prober::default()));
    let victim = sim.add_host("victim", HostOpts::default());
    let hostile_addr = SocketAddr::new(sim.host(hostile).unwrap().addrs[0], 3478);
    sim.add_app(victim, move || {
        Box::new(Stubborn(RelayUser::new(hostile_addr, "pass"), 0))
    });
    sim.add_app(victim, move || {
        Box::new(netsim::apps::discovery::NatDiscovery::new(hostile_addr))
    });
    let stun_addr = SocketAddr::new(sim.host(stun).unwrap().addrs[0], 3478);
    let turn_addr = SocketAddr::new(sim.host(turn).unwrap().addrs[0], 3478);
    sim.run_for(Duration::from_millis(10));
    let allocate = Message::new(Class::Request, Method::Allocate, [3; 12])
        .with(Attribute::RequestedTransport(17));
    probe_with(&mut sim, fuzzer, turn_addr, allocate.encode());
    let nonce = sim
        .app::<Prober>(fuzzer, 0)
        .unwrap()
        .answer([3; 12])
        .1
        .nonce()
        .unwrap()
        .to_string();

    // Valid requests of every kind (signed with the real nonce), mutated, thrown at both
    // servers.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
    let peer = Attribute::XorPeerAddress(turn_addr);
    let seeds: Vec<Vec<u8>> = vec![
        binding(1)
            .with(Attribute::ChangeRequest {
                change_ip: true,
                change_port: true,
            })
            .encode(),
        binding(2)
            .with(Attribute::ResponsePort(4000))
            .encode_with(None, true),
        allocate.encode(),
        signed(
            Method::Allocate,
            4,
            &nonce,
            vec![Attribute::RequestedTransport(17), Attribute::Lifetime(1)],
        ),
        signed(
            Method::ChannelBind,
            5,
            &nonce,
            vec![Attribute::ChannelNumber(0x4001), peer.clone()],
        ),
        signed(Method::CreatePermission, 6, &nonce, vec![peer.clone()]),
        signed(Method::Refresh, 8, &nonce, vec![Attribute::Lifetime(0)]),
        Message::new(Class::Indication, Method::Send, [7; 12])
            .with(peer)
            .with(Attribute::Data(vec![1; 50]))
            .encode(),
        netsim::stun::ChannelData {
            channel: 0x4001,
            data: vec![2; 30],
        }
        .encode(),
    ];
    for round in 0..3000 {
        let d = mutate(&mut rng, seeds[round % seeds.len()].clone());
        let to = if round % 2 == 0 { stun_addr } else { turn_addr };
        sim.with_app::<Prober, _>(fuzzer, 0, move |p, cx| p.send(cx, to, &d))
            .unwrap();
        sim.run_for(Duration::from_millis(20));
    }
    sim.run_for(Duration::from_secs(60));
    assert!(sim.app::<StunServer>(stun, 0).unwrap().malformed > 0);
    let t = sim.app::<TurnServer>(turn, 0).unwrap();
    assert!(
        t.malformed > 0 && t.allocations > 0 && t.relayed_to_peer > 0,
        "the fuzz reached the relay"
    );
    let victim_events = &sim.app::<Stubborn>(victim, 0).unwrap().0.events;
    let allocated = victim_events
        .iter()
        .filter(|e| matches!(e, TurnEvent::Allocated { .. }))
        .count();
    assert!(
        allocated > 10 && victim_events.len() > 100,
        "the client met the hostile server often"
    );

    // Both servers still answer properly.
    probe_with(&mut sim, fuzzer, stun_addr, binding(9).encode());
    probe_with(&mut sim, fuzzer, turn_addr, binding(10).encode());
    let p = sim.app::<Prober>(fuzzer, 0).unwrap();
    assert_eq!(p.answer([9; 12]).1.class, Class::SuccessResponse);
    assert_eq!(p.answer([10; 12]).1.class, Class::SuccessResponse);
}

#[test]
fn a_new_allocation_reinstalls_permissions() {
    let mut w = world(18, TurnConfig::default(), "pass");
    w.sim.run_for(Duration::from_secs(2));
    let b_wan = IpAddr::V4(w.sim.nat_mut(w.nat_b).unwrap().wan);
    w.act(|t, cx, s| t.create_permission(cx, s, b_wan));
    w.act(|t, cx, s| t.close(cx, s));
    w.act(|t, cx, s| t.start(cx, s));
    let relayed = w.user().turn.relayed().unwrap();
    let created = TurnEvent::PermissionCreated { peer: b_wan };
    assert_eq!(w.user().events.iter().filter(|e| **e == created).count(), 2);
    let b = w.b;
    w.peer_send(b, relayed, b"again");
    assert_eq!(payloads(&w.user().data()), vec![&b"again"[..]]);
    assert_eq!(w.server().allocations, 2);
}
