//! TLS channel throughput after the handshake, beside a bare rustls stream measured in the
//! same run:
//!
//! - `tls-throughput/ours`: node::connect::tls sessions (seeded provider, Jami verifier,
//!   RSA-PSS device keys, AES-256-GCM) back to back in memory, 1 MiB client → server per
//!   iteration in 16 KiB writes, every byte checked on arrival.
//! - `tls-throughput/baseline-rustls`: two plain rustls connections (ring's default
//!   provider restricted to the same suite, no certificate checks) moving the same bytes
//!   the same way.
//!
//! The difference is the cost of our sans-IO wrapper (RNG lending, event queue, copies).

use benches::tls_pair::{devices, payload, BarePair, OursPair, PAYLOAD};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn throughput(cr: &mut Criterion) {
    let (a, b) = devices();
    let data = payload();
    let mut group = cr.benchmark_group("tls-throughput");
    group.throughput(Throughput::Bytes(PAYLOAD as u64));
    group.sample_size(20);
    let mut ours = OursPair::new(&a, &b);
    group.bench_function("ours", |bench| bench.iter(|| ours.send(&data)));
    let mut bare = BarePair::new(&a);
    group.bench_function("baseline-rustls", |bench| bench.iter(|| bare.send(&data)));
    group.finish();
}

criterion_group!(benches, throughput);
criterion_main!(benches);
