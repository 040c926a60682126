//! The event loop's speed on its own: UDP ping-pong through a NAT (the workload of the
//! `netsim/ping-pong-events` criterion bench), as a plain binary to profile.
//!
//! ```sh
//! cargo run --release -p benches --example pingpong -- 2000000 [untraced]
//! ```

use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let datagrams: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(2_000_000);
    let trace = args.next().as_deref() != Some("untraced");
    let mut sim = benches::ping_pong::world(datagrams, trace);
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
