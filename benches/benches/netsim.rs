//! Simulator speed, beside a real baseline measured in the same run.
//!
//! - `netsim/udp-events`: events per second for UDP ping-pong through a NAT, and the
//!   same number of datagrams over the kernel's real loopback (`baseline/loopback-udp`):
//!   the ratio says how a simulated datagram (with NAT, links, trace) compares with a
//!   real one.
//! - `netsim/scale-1000`: the 1,000-host UDP workload of the `netsim` suite; criterion
//!   reports events/s, and the bench prints simulated seconds per wall second.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use scenarios::world::BuildOpts;
use std::hint::black_box;
use std::net::UdpSocket;
use std::time::Instant;

const DATAGRAMS: u64 = 20_000;

fn simulated_ping_pong(trace: bool) -> u64 {
    let mut sim = benches::ping_pong::world(DATAGRAMS, trace);
    while sim.step() {}
    sim.core.events
}

fn loopback_ping_pong() -> u64 {
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (aa, ba) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    let mut buf = [0u8; 100];
    for _ in 0..DATAGRAMS / 2 {
        a.send_to(&buf, ba).unwrap();
        let (n, _) = b.recv_from(&mut buf).unwrap();
        b.send_to(&buf[..n], aa).unwrap();
        a.recv_from(&mut buf).unwrap();
    }
    DATAGRAMS
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("udp");
    g.throughput(Throughput::Elements(DATAGRAMS));
    g.bench_function("netsim/datagrams-traced", |b| {
        b.iter(|| black_box(simulated_ping_pong(true)))
    });
    g.bench_function("netsim/datagrams-untraced", |b| {
        b.iter(|| black_box(simulated_ping_pong(false)))
    });
    g.bench_function("baseline/loopback-udp", |b| {
        b.iter(|| black_box(loopback_ping_pong()))
    });
    g.finish();

    let events = simulated_ping_pong(true);
    let mut g = c.benchmark_group("events");
    g.throughput(Throughput::Elements(events));
    g.bench_function("netsim/ping-pong-events", |b| {
        b.iter(|| black_box(simulated_ping_pong(true)))
    });
    g.finish();

    let case = scenarios::select(&["netsim/scale-1000".to_string()])
        .unwrap()
        .remove(0);
    let opts = BuildOpts {
        keep_trace: false,
        ..Default::default()
    };
    let probe = scenarios::run_case(&case, 1, &opts);
    assert!(
        probe.result.passed,
        "scale scenario must pass: {:?}",
        probe.result.checks
    );
    let mut g = c.benchmark_group("scale-1000");
    g.sample_size(10);
    g.throughput(Throughput::Elements(probe.result.events));
    g.bench_function("netsim/1000-hosts-10s", |b| {
        b.iter(|| black_box(scenarios::run_case(&case, 1, &opts).result.events))
    });
    g.finish();

    // Simulated seconds per wall second for the 1,000-host workload (median of 5).
    let mut ratios: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            let r = scenarios::run_case(&case, 1, &opts);
            r.result.sim_seconds / t.elapsed().as_secs_f64()
        })
        .collect();
    ratios.sort_by(|a, b| a.total_cmp(b));
    let per_host_bytes = std::mem::size_of::<netsim::host::Host>();
    println!(
        "scale-1000: {:.1} simulated s per wall s; {} events per run; {} bytes of host state per host (excluding buffers)",
        ratios[2], probe.result.events, per_host_bytes
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
