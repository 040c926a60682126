//! Helpers for the criterion benchmarks in benches/: a counting allocator (memory per
//! node), put-then-get round trips on real sockets (our node against `dhtnode`), the
//! simulator's UDP ping-pong workload, TLS session pairs in memory (ours and bare rustls)
//! and our devices on threads with timestamped events.

pub mod alloc_count;
pub mod device_peer;
pub mod dht_rtt;
pub mod ping_pong;
pub mod tls_pair;
