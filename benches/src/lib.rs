//! Helpers for the criterion benchmarks in benches/: a counting allocator (memory per
//! node) and put-then-get round trips on real sockets (our node against `dhtnode`).

pub mod alloc_count;
pub mod dht_rtt;
