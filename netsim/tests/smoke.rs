//! End-to-end smoke tests of the simulator's basic paths.

use netsim::apps::echo::Echo;
use netsim::{App, Ctx, HostOpts, NatConfig, Sim, SimConfig, SockId, TcpEvent};
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Default)]
struct Pinger {
    to: Option<SocketAddr>,
    replies: Vec<SocketAddr>,
    tcp_to: Option<SocketAddr>,
    tcp_echoed: Vec<u8>,
}

impl App for Pinger {
    fn start(&mut self, cx: &mut Ctx<'_>) {
        if let Some(to) = self.to {
            let s = cx.udp_bind("0.0.0.0:0".parse().unwrap()).unwrap();
            cx.udp_send(s, to, b"ping").unwrap();
        }
        if let Some(to) = self.tcp_to {
            cx.tcp_connect(to).unwrap();
        }
    }
    fn on_udp(
        &mut self,
        _cx: &mut Ctx<'_>,
        _s: SockId,
        from: SocketAddr,
        _to: SocketAddr,
        _d: &[u8],
    ) {
        self.replies.push(from);
    }
    fn on_tcp(&mut self, cx: &mut Ctx<'_>, ev: TcpEvent) {
        match ev {
            TcpEvent::Connected { conn } => {
                let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
                cx.tcp_send(conn, &data).unwrap();
            }
            TcpEvent::Data { data, .. } => self.tcp_echoed.extend_from_slice(&data),
            _ => {}
        }
    }
    netsim::app_any!();
}

#[test]
fn udp_and_tcp_cross_a_nat_and_back() {
    let mut sim = Sim::new(SimConfig {
        seed: 1,
        ..Default::default()
    });
    let server = sim.add_host("server", HostOpts::default());
    let (up, down) = netsim::LinkParams::preset("wifi").unwrap();
    let nat = sim.add_nat("home", NatConfig::default(), None, up.clone(), down.clone());
    let client = sim.add_host(
        "client",
        HostOpts {
            behind: Some(nat),
            ..Default::default()
        },
    );
    let server_ip = sim.host(server).unwrap().addrs[0];
    sim.add_app(server, || Box::new(Echo::new(7)));
    let to = SocketAddr::new(server_ip, 7);
    let app = sim.add_app(client, move || {
        Box::new(Pinger {
            to: Some(to),
            tcp_to: Some(to),
            ..Default::default()
        })
    });
    sim.run_for(Duration::from_secs(10));
    let p = sim.app::<Pinger>(client, app).unwrap();
    assert_eq!(p.replies, vec![to]);
    assert_eq!(p.tcp_echoed.len(), 100_000);
    let echo = sim.app::<Echo>(server, 0).unwrap();
    let seen = echo.udp_peers.iter().next().unwrap().ip();
    let wan = sim.nat_mut(nat).unwrap().wan;
    assert_eq!(
        seen,
        std::net::IpAddr::V4(wan),
        "the server sees the NAT's address"
    );
}

/// Counts its starts in a file on the host's disk.
#[derive(Default)]
struct Boots {
    seen: u32,
}

impl App for Boots {
    fn start(&mut self, cx: &mut Ctx<'_>) {
        let n = cx.disk().get("boots").map(|v| v[0]).unwrap_or(0) + 1;
        cx.disk().insert("boots".into(), vec![n]);
        self.seen = n as u32;
    }
    netsim::app_any!();
}

#[test]
fn a_restarted_host_keeps_its_disk_and_loses_its_sockets() {
    let mut sim = Sim::new(SimConfig::default());
    let h = sim.add_host("h", HostOpts::default());
    let app = sim.add_app(h, || Box::new(Boots::default()));
    sim.add_app(h, || Box::new(Echo::new(7)));
    assert_eq!(
        sim.host(h).unwrap().open_sockets(),
        2,
        "echo binds UDP and listens on TCP (IPv4 only here)"
    );
    sim.crash(h);
    assert!(
        sim.app::<Boots>(h, app).is_none(),
        "a crashed host runs nothing"
    );
    assert_eq!(sim.host(h).unwrap().open_sockets(), 0);
    sim.run_for(Duration::from_secs(1));
    sim.restart(h);
    assert_eq!(
        sim.app::<Boots>(h, app).unwrap().seen,
        2,
        "the second boot read the first one's file"
    );
}

#[test]
fn a_partition_drops_until_its_guard_is_dropped_and_a_clog_delays() {
    let mut sim = Sim::new(SimConfig::default());
    let server = sim.add_host("server", HostOpts::default());
    let client = sim.add_host("client", HostOpts::default());
    let to = SocketAddr::new(sim.host(server).unwrap().addrs[0], 7);
    sim.add_app(server, || Box::new(Echo::new(7)));
    let guard = sim.partition(&[client], None);
    let app = sim.add_app(client, move || {
        Box::new(Pinger {
            to: Some(to),
            ..Default::default()
        })
    });
    sim.run_for(Duration::from_secs(1));
    assert!(
        sim.app::<Pinger>(client, app).unwrap().replies.is_empty(),
        "partitioned"
    );
    drop(guard);
    let app2 = sim.add_app(client, move || {
        Box::new(Pinger {
            to: Some(to),
            ..Default::default()
        })
    });
    sim.run_for(Duration::from_secs(1));
    assert_eq!(
        sim.app::<Pinger>(client, app2).unwrap().replies.len(),
        1,
        "healed"
    );
    let clog = sim.clog(&[server]);
    let app3 = sim.add_app(client, move || {
        Box::new(Pinger {
            to: Some(to),
            ..Default::default()
        })
    });
    sim.run_for(Duration::from_secs(5));
    assert!(
        sim.app::<Pinger>(client, app3).unwrap().replies.is_empty(),
        "held while clogged"
    );
    drop(clog);
    sim.run_for(Duration::from_secs(1));
    assert_eq!(
        sim.app::<Pinger>(client, app3).unwrap().replies.len(),
        1,
        "released, not lost"
    );
}

#[test]
fn ipv6_passes_a_nat_untranslated_but_filtered() {
    let mut sim = Sim::new(SimConfig::default());
    let server = sim.add_host(
        "server",
        HostOpts {
            ipv6: true,
            ..Default::default()
        },
    );
    let nat = sim.add_nat(
        "home",
        NatConfig::default(),
        None,
        Default::default(),
        Default::default(),
    );
    let client = sim.add_host(
        "client",
        HostOpts {
            behind: Some(nat),
            ipv6: true,
            ..Default::default()
        },
    );
    let server_v6 = *sim
        .host(server)
        .unwrap()
        .addrs
        .iter()
        .find(|a| a.is_ipv6())
        .unwrap();
    let client_v6 = *sim
        .host(client)
        .unwrap()
        .addrs
        .iter()
        .find(|a| a.is_ipv6())
        .unwrap();
    sim.add_app(server, || Box::new(Echo::new(7)));
    sim.add_app(client, || Box::new(Echo::new(7)));
    let to = SocketAddr::new(server_v6, 7);
    let c = sim.add_app(client, move || {
        Box::new(V6Pinger {
            to,
            replies: Vec::new(),
        })
    });
    // Unsolicited: the server cannot reach the client's echo through the filter.
    let back = SocketAddr::new(client_v6, 7);
    let s = sim.add_app(server, move || {
        Box::new(V6Pinger {
            to: back,
            replies: Vec::new(),
        })
    });
    sim.run_for(Duration::from_secs(2));
    assert_eq!(
        sim.app::<V6Pinger>(client, c).unwrap().replies,
        vec![to],
        "outbound v6 works, source untranslated"
    );
    assert!(
        sim.app::<V6Pinger>(server, s).unwrap().replies.is_empty(),
        "inbound v6 is filtered"
    );
    assert!(sim
        .app::<Echo>(server, 0)
        .unwrap()
        .udp_peers
        .iter()
        .all(|p| p.ip() == client_v6));
}

struct V6Pinger {
    to: SocketAddr,
    replies: Vec<SocketAddr>,
}

impl App for V6Pinger {
    fn start(&mut self, cx: &mut Ctx<'_>) {
        let s = cx.udp_bind("[::]:0".parse().unwrap()).unwrap();
        cx.udp_send(s, self.to, b"ping6").unwrap();
    }
    fn on_udp(
        &mut self,
        _cx: &mut Ctx<'_>,
        _s: SockId,
        from: SocketAddr,
        _to: SocketAddr,
        _d: &[u8],
    ) {
        self.replies.push(from);
    }
    netsim::app_any!();
}
