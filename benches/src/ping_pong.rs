//! The event loop's workload on its own: UDP ping-pong through a NAT, one datagram in
//! flight. Shared by the `netsim/udp-events` criterion bench and the `pingpong` example
//! (a plain binary to profile).

use netsim::apps::echo::Echo;
use netsim::{App, Ctx, HostOpts, NatConfig, Sim, SimConfig, SockId};
use std::net::SocketAddr;

/// Sends the next datagram as soon as the echo of the previous one arrives.
struct PingPong {
    to: SocketAddr,
    left: u64,
}

impl App for PingPong {
    fn start(&mut self, cx: &mut Ctx<'_>) {
        let s = cx.udp_bind("0.0.0.0:0".parse().unwrap()).unwrap();
        cx.udp_send(s, self.to, &[0u8; 100]).unwrap();
    }
    fn on_udp(&mut self, cx: &mut Ctx<'_>, s: SockId, _f: SocketAddr, _t: SocketAddr, d: &[u8]) {
        if self.left > 0 {
            self.left -= 1;
            cx.udp_send(s, self.to, d).unwrap();
        }
    }
    netsim::app_any!();
}

/// A client behind a NAT and an echo server, set to exchange `datagrams` datagrams
/// (both directions counted); run it with `while sim.step() {}`.
pub fn world(datagrams: u64, trace: bool) -> Sim {
    let mut sim = Sim::new(SimConfig {
        seed: 1,
        trace,
        keep_trace: false,
        ..Default::default()
    });
    let server = sim.add_host("server", HostOpts::default());
    let (up, down) = netsim::LinkParams::preset("lan").unwrap();
    let nat = sim.add_nat("nat", NatConfig::default(), None, up, down);
    let client = sim.add_host(
        "client",
        HostOpts {
            behind: Some(nat),
            ..Default::default()
        },
    );
    let to = SocketAddr::new(sim.host(server).unwrap().addrs[0], 7);
    sim.add_app(server, || Box::new(Echo::new(7)));
    sim.add_app(client, move || {
        Box::new(PingPong {
            to,
            left: datagrams / 2,
        })
    });
    sim
}
