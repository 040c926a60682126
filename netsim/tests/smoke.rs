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
    fn on_udp(&mut self, _cx: &mut Ctx<'_>, _s: SockId, from: SocketAddr, _to: SocketAddr, _d: &[u8]) {
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
    let mut sim = Sim::new(SimConfig { seed: 1, ..Default::default() });
    let server = sim.add_host("server", HostOpts::default());
    let (up, down) = netsim::LinkParams::preset("wifi").unwrap();
    let nat = sim.add_nat("home", NatConfig::default(), None, up.clone(), down.clone());
    let client = sim.add_host("client", HostOpts { behind: Some(nat), ..Default::default() });
    let server_ip = sim.host(server).unwrap().addrs[0];
    sim.add_app(server, || Box::new(Echo::new(7)));
    let to = SocketAddr::new(server_ip, 7);
    let app = sim.add_app(client, move || Box::new(Pinger { to: Some(to), tcp_to: Some(to), ..Default::default() }));
    sim.run_for(Duration::from_secs(10));
    let p = sim.app::<Pinger>(client, app).unwrap();
    assert_eq!(p.replies, vec![to]);
    assert_eq!(p.tcp_echoed.len(), 100_000);
    let echo = sim.app::<Echo>(server, 0).unwrap();
    let seen = echo.udp_peers.iter().next().unwrap().ip();
    let wan = sim.nat_mut(nat).unwrap().wan;
    assert_eq!(seen, std::net::IpAddr::V4(wan), "the server sees the NAT's address");
}
