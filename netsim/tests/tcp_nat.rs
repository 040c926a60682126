//! TCP through NATs end to end (RFC 5382): STUN over TCP sees the mapping, unsolicited
//! SYNs meet the box's policy, and a simultaneous open crosses two NATs.

use netsim::apps::stun_server::StunServer;
use netsim::stun::{Class, Message, Method};
use netsim::{
    App, ConnId, Ctx, HostOpts, LinkParams, NatConfig, NatType, NodeId, Sim, SimConfig, TcpEvent,
    UnsolicitedSyn,
};
use std::net::SocketAddr;
use std::time::Duration;

/// Connects when told to (from a chosen local address or an ephemeral port) and records
/// what happens.
#[derive(Default)]
struct Client {
    conns: Vec<ConnId>,
    connected: Vec<(ConnId, Duration)>,
    resets: Vec<(ConnId, &'static str, Duration)>,
    data: Vec<u8>,
    closed: bool,
}

impl App for Client {
    fn on_tcp(&mut self, cx: &mut Ctx<'_>, ev: TcpEvent) {
        let t = Duration::from_nanos(cx.sim_now().as_nanos());
        match ev {
            TcpEvent::Connected { conn } => self.connected.push((conn, t)),
            TcpEvent::Reset { conn, reason } => self.resets.push((conn, reason, t)),
            TcpEvent::Data { data, .. } => self.data.extend_from_slice(&data),
            TcpEvent::PeerClosed { .. } => self.closed = true,
            TcpEvent::Accepted { .. } => {}
        }
    }
    netsim::app_any!();
}

fn lan() -> (LinkParams, LinkParams) {
    LinkParams::preset("lan").unwrap()
}

fn nat(sim: &mut Sim, name: &str, kind: &str, syn: UnsolicitedSyn) -> NodeId {
    let cfg = NatConfig {
        kind: kind.parse::<NatType>().unwrap(),
        unsolicited_syn: syn,
        ..NatConfig::default()
    };
    let (up, down) = lan();
    sim.add_nat(name, cfg, None, up, down)
}

fn host(sim: &mut Sim, name: &str, behind: Option<NodeId>) -> NodeId {
    let (up, down) = lan();
    sim.add_host(
        name,
        HostOpts {
            behind,
            up,
            down,
            ..HostOpts::default()
        },
    )
}

fn addr(sim: &Sim, h: NodeId, port: u16) -> SocketAddr {
    SocketAddr::new(sim.host(h).unwrap().addrs[0], port)
}

fn connect(sim: &mut Sim, h: NodeId, from: Option<SocketAddr>, to: SocketAddr) -> ConnId {
    sim.with_app::<Client, _>(h, 0, |c, cx| {
        let id = match from {
            Some(f) => cx.tcp_connect_from(f, to),
            None => cx.tcp_connect(to),
        }
        .unwrap();
        c.conns.push(id);
        id
    })
    .unwrap()
}

fn client(sim: &Sim, h: NodeId) -> &Client {
    sim.app::<Client>(h, 0).unwrap()
}

#[test]
fn stun_over_tcp_sees_the_mapping_and_cuts_off_garbage() {
    let mut sim = Sim::new(SimConfig::default());
    let server = host(&mut sim, "stun", None);
    let stun_app = sim.add_app(server, || Box::new(StunServer::new(3478, 3479)));
    let home = nat(&mut sim, "home", "eim-apdf", UnsolicitedSyn::Drop);
    let alice = host(&mut sim, "alice", Some(home));
    sim.add_app(alice, || Box::<Client>::default());
    let to = addr(&sim, server, 3478);
    let from = addr(&sim, alice, 40000);
    let conn = connect(&mut sim, alice, Some(from), to);
    sim.run_for(Duration::from_millis(100));
    // Two requests in one write: the server frames them by their length.
    let mut two = Message::new(Class::Request, Method::Binding, [1; 12]).encode();
    two.extend(Message::new(Class::Request, Method::Binding, [2; 12]).encode());
    sim.with_app::<Client, _>(alice, 0, |_, cx| cx.tcp_send(conn, &two).unwrap());
    sim.run_for(Duration::from_millis(200));
    let got = &client(&sim, alice).data;
    let len = 20 + usize::from(u16::from_be_bytes([got[2], got[3]]));
    let first = Message::decode(&got[..len]).unwrap();
    let second = Message::decode(&got[len..]).unwrap();
    let wan = match sim.node(home).kind {
        netsim::NodeKind::Nat(ref b) => b.wan,
        _ => unreachable!(),
    };
    let mapped: SocketAddr = (wan, 40000).into();
    assert_eq!((first.txid, first.xor_mapped()), ([1; 12], Some(mapped)));
    assert_eq!((second.txid, second.xor_mapped()), ([2; 12], Some(mapped)));
    // Not STUN: the server closes the connection and counts it.
    let bad = connect(&mut sim, alice, None, to);
    sim.run_for(Duration::from_millis(100));
    sim.with_app::<Client, _>(alice, 0, |_, cx| {
        cx.tcp_send(bad, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap()
    });
    sim.run_for(Duration::from_millis(300));
    assert!(client(&sim, alice).closed, "the server hung up");
    let s = sim.app::<StunServer>(server, stun_app).unwrap();
    assert_eq!((s.requests, s.malformed), (2, 1));
}

/// An outside host connects to an inside host's mapping that does not admit it. The
/// box's policy decides what it sees: nothing (drop), an immediate refusal (rst), or a
/// refusal after 6 s (refuse, RFC 5382 REQ-4).
#[test]
fn unsolicited_syns_meet_the_policy_of_the_box() {
    for (policy, refused_within) in [
        (UnsolicitedSyn::Drop, None),
        (UnsolicitedSyn::Rst, Some((0.0, 0.1))),
        (UnsolicitedSyn::Refuse, Some((6.0, 6.1))),
    ] {
        let mut sim = Sim::new(SimConfig::default());
        let server = host(&mut sim, "server", None);
        let outsider = host(&mut sim, "outsider", None);
        let home = nat(&mut sim, "home", "eim-apdf", policy);
        let alice = host(&mut sim, "alice", Some(home));
        for h in [server, outsider, alice] {
            sim.add_app(h, || Box::<Client>::default());
        }
        // Alice's port 40000 gets a mapping toward the server (nobody listens: refused).
        let from = addr(&sim, alice, 40000);
        let to = addr(&sim, server, 80);
        connect(&mut sim, alice, Some(from), to);
        sim.run_for(Duration::from_millis(100));
        let wan = match sim.node(home).kind {
            netsim::NodeKind::Nat(ref b) => b.wan,
            _ => unreachable!(),
        };
        let start = sim.now().as_secs_f64();
        connect(&mut sim, outsider, None, (wan, 40000).into());
        sim.run_for(Duration::from_secs(10));
        let resets = &client(&sim, outsider).resets;
        match refused_within {
            None => assert!(resets.is_empty(), "{policy}: {resets:?}"),
            Some((lo, hi)) => {
                assert_eq!(resets.len(), 1, "{policy}");
                let (_, why, at) = resets[0];
                let after = at.as_secs_f64() - start;
                assert_eq!(why, "refused");
                assert!(
                    lo <= after && after < hi,
                    "{policy}: refused after {after}s"
                );
            }
        }
    }
}

/// Both sides behind EIM/APDF NATs connect to each other's mapped address: the first SYN
/// is dropped by the far NAT, the second gets through and the two open simultaneously.
/// Without simultaneous open in the TCP model, nothing connects.
#[test]
fn simultaneous_open_crosses_two_nats() {
    for sabotage in [false, true] {
        let mut sim = Sim::new(SimConfig {
            sabotage: netsim::Sabotage {
                tcp_no_simultaneous_open: sabotage,
                ..Default::default()
            },
            ..SimConfig::default()
        });
        let na = nat(&mut sim, "nat-a", "eim-apdf", UnsolicitedSyn::Drop);
        let nb = nat(&mut sim, "nat-b", "eim-adf", UnsolicitedSyn::Drop);
        let a = host(&mut sim, "a", Some(na));
        let b = host(&mut sim, "b", Some(nb));
        for h in [a, b] {
            sim.add_app(h, || Box::<Client>::default());
        }
        let wan = |n: NodeId| match sim.node(n).kind {
            netsim::NodeKind::Nat(ref x) => x.wan,
            _ => unreachable!(),
        };
        // Port preservation: the mapped address is the NAT's address and the local port.
        let (ma, mb): (SocketAddr, SocketAddr) = ((wan(na), 41000).into(), (wan(nb), 42000).into());
        let (la, lb) = (addr(&sim, a, 41000), addr(&sim, b, 42000));
        connect(&mut sim, a, Some(la), mb);
        sim.run_for(Duration::from_millis(300));
        connect(&mut sim, b, Some(lb), ma);
        sim.run_for(Duration::from_secs(5));
        let (ca, cb) = (client(&sim, a), client(&sim, b));
        if sabotage {
            assert!(ca.connected.is_empty() && cb.connected.is_empty());
        } else {
            assert_eq!((ca.connected.len(), cb.connected.len()), (1, 1));
            assert!(ca.resets.is_empty() && cb.resets.is_empty());
        }
        let drops = sim.node(nb).drops;
        assert!(drops >= 1, "nat-b dropped a's early SYN");
    }
}

/// Hairpinning for TCP (RFC 5382 REQ-8 via RFC 4787 REQ-9): an inside host reaches
/// another's mapping through the box's public address, and a SYN that mapping does not
/// admit is refused back inside through the sender's own mapping.
#[test]
fn tcp_hairpins_and_refuses_hairpinned_syns() {
    for (filter, connects) in [("eim-eif", true), ("eim-apdf", false)] {
        let mut sim = Sim::new(SimConfig::default());
        let server = host(&mut sim, "server", None);
        let cfg = NatConfig {
            kind: filter.parse::<NatType>().unwrap(),
            hairpin: true,
            unsolicited_syn: UnsolicitedSyn::Rst,
            ..NatConfig::default()
        };
        let (up, down) = lan();
        let box_ = sim.add_nat("box", cfg, None, up, down);
        let a = host(&mut sim, "a", Some(box_));
        let b = host(&mut sim, "b", Some(box_));
        for h in [server, a, b] {
            sim.add_app(h, || Box::<Client>::default());
        }
        sim.with_app::<Client, _>(b, 0, |_, cx| {
            cx.tcp_listen("0.0.0.0:43000".parse().unwrap()).unwrap()
        });
        // b's listening port gets a mapping (toward the server) ...
        let (lb, to) = (addr(&sim, b, 43000), addr(&sim, server, 80));
        connect(&mut sim, b, Some(lb), to);
        sim.run_for(Duration::from_millis(100));
        // ... which a reaches through the box's public address.
        let wan = match sim.node(box_).kind {
            netsim::NodeKind::Nat(ref x) => x.wan,
            _ => unreachable!(),
        };
        connect(&mut sim, a, None, (wan, 43000).into());
        sim.run_for(Duration::from_millis(500));
        let ca = client(&sim, a);
        if connects {
            assert_eq!(ca.connected.len(), 1, "{filter}");
        } else {
            assert!(ca.connected.is_empty(), "{filter}");
            assert_eq!(ca.resets.len(), 1, "{filter}: refused by the box");
            assert_eq!(ca.resets[0].1, "refused");
        }
    }
}

/// Unlisten (what a sans-IO core's `StreamCommand::Unlisten` needs): connections the
/// listener accepted keep working, new SYNs to its address are refused, and the address
/// can be listened on again.
#[test]
fn unlisten_refuses_new_connections_and_keeps_accepted_ones() {
    let mut sim = Sim::new(SimConfig::default());
    let s = host(&mut sim, "server", None);
    let c = host(&mut sim, "client", None);
    for h in [s, c] {
        sim.add_app(h, || Box::<Client>::default());
    }
    let at = addr(&sim, s, 5000);
    let listener = sim
        .with_app::<Client, _>(s, 0, |_, cx| cx.tcp_listen(at).unwrap())
        .unwrap();
    let first = connect(&mut sim, c, None, at);
    sim.run_for(Duration::from_millis(100));
    assert_eq!(client(&sim, c).connected.len(), 1);
    sim.with_app::<Client, _>(s, 0, |_, cx| {
        cx.tcp_unlisten(listener).unwrap();
        assert_eq!(cx.tcp_unlisten(listener), Err(netsim::NetError::BadHandle));
        assert_eq!(
            cx.tcp_listener_addr(listener),
            Err(netsim::NetError::BadHandle)
        );
    });
    sim.with_app::<Client, _>(c, 0, |_, cx| cx.tcp_send(first, b"still here").unwrap());
    let second = connect(&mut sim, c, None, at);
    sim.run_for(Duration::from_millis(100));
    assert_eq!(client(&sim, s).data, b"still here");
    let resets = &client(&sim, c).resets;
    assert_eq!(resets.len(), 1, "{resets:?}");
    assert_eq!(resets[0].0, second);
    // The address is free again.
    sim.with_app::<Client, _>(s, 0, |_, cx| cx.tcp_listen(at).unwrap());
    connect(&mut sim, c, None, at);
    sim.run_for(Duration::from_millis(100));
    assert_eq!(client(&sim, c).connected.len(), 2);
}
