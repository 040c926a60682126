//! The event loop's speed on its own: UDP ping-pong through a NAT (the workload of the
//! `netsim/ping-pong-events` criterion bench), as a plain binary to profile.
//!
//! ```sh
//! cargo run --release -p netsim --example pingpong -- 2000000 [untraced]
//! ```

use netsim::apps::echo::Echo;
use netsim::{App, Ctx, HostOpts, NatConfig, Sim, SimConfig, SockId};
use std::net::SocketAddr;
use std::time::Instant;

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

fn main() {
    let mut args = std::env::args().skip(1);
    let datagrams: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(2_000_000);
    let trace = args.next().as_deref() != Some("untraced");
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
    let t = Instant::now();
    while sim.step() {}
    let s = t.elapsed().as_secs_f64();
    println!(
        "{} events in {s:.2} s: {:.2} M events/s (trace {})",
        sim.core.events,
        sim.core.events as f64 / s / 1e6,
        if trace { "on" } else { "off" }
    );
}
