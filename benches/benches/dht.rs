//! DHT speed, beside a real baseline measured in the same run.
//!
//! - `dht-rtt/ours` against `dht-rtt/baseline-dhtnode`: a put of a small value at a fresh
//!   random key followed by a get of it, on loopback, by one client (our engine, the same
//!   code for both) bootstrapped to one server: our node, or the official `dhtnode`
//!   (OpenDHT 2.4.12). Every iteration checks that the server stored the value and sent
//!   it back. Both run inside a network namespace the bench creates (dhtnode must not run
//!   in the host's); without root or dhtnode the baseline is skipped with a SKIP line.
//!   Iterations are paced to at most one per 4 ms: both servers limit a source address
//!   to 1,024 requests per second, and this measures latency, not the limiter. The
//!   printed ratio comes from 400 further round trips alternating between the two, so
//!   that both see the same machine load.
//! - `scale-1000` (printed, too slow for criterion's 10 samples): the `dht/scale-1000`
//!   scenario's simulated seconds per wall second (median of 3 runs), and live heap per
//!   node once the network formed and at the end, counted by this binary's global
//!   allocator, with the share of the nodes' own state (engine and app).

use benches::alloc_count::{live_bytes, rss_bytes, CountingAlloc};
use benches::dht_rtt::{loopback_socket, median, Client, OurServer};
use conformance::dhtnode::DhtNode;
use conformance::netns::Netns;
use criterion::{criterion_group, criterion_main, Criterion};
use netsim::SimTime;
use node::dht::InfoHash;
use rand::RngExt;
use scenarios::checks::{self, Outcome};
use scenarios::glue::{DhtApp, DhtWorkload};
use scenarios::world::{BuildOpts, World};
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const DHTNODE_PORT: u16 = 4222;
/// At most one round trip per this long (3 requests each: under 1,024 per second).
const MIN_CYCLE: Duration = Duration::from_millis(4);
/// The scale scenario's nodes bootstrap at 0 s and put at 30 s: formed, no workload yet.
const FORMED: Duration = Duration::from_secs(29);

/// One paced put-then-get at a fresh random key; returns its time.
fn one_round_trip(name: &str, client: &mut Client) -> Duration {
    let mut rng = rand::rng();
    let key = InfoHash(rng.random());
    let data: [u8; 16] = rng.random();
    let id = rng.random::<u64>() | 1;
    let began = Instant::now();
    let took = client
        .put_then_get(key, id, black_box(&data))
        .unwrap_or_else(|e| panic!("{name}: {e:#}"));
    client.idle_until(began + MIN_CYCLE).expect("client socket");
    took
}

/// Criterion's measurement of put-then-get through `client`.
fn bench_round_trips(c: &mut Criterion, name: &str, client: &mut Client) {
    let mut g = c.benchmark_group("dht-rtt");
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    g.bench_function(name, |b| {
        b.iter_custom(|iters| (0..iters).map(|_| one_round_trip(name, client)).sum())
    });
    g.finish();
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// "median 160 µs (p90 255 µs, n=400)"; sorts `v`.
fn describe(v: &mut [Duration]) -> String {
    let m = median(v).expect("round trips ran");
    format!(
        "median {:.0} µs (p90 {:.0} µs, n={})",
        us(m),
        us(v[v.len() * 9 / 10]),
        v.len()
    )
}

fn round_trips(c: &mut Criterion, pairs: usize) {
    let have_dhtnode = conformance::dhtnode_or_skip();
    let ns = match Netns::create("jsbench") {
        Ok(ns) => Some(ns),
        Err(e) => {
            println!("note: no network namespace ({e:#}); our side runs on the host's loopback");
            None
        }
    };
    let seed: u64 = rand::rng().random();
    let server = OurServer::start(ns.as_ref()).expect("our server starts");
    let sock = loopback_socket(ns.as_ref()).expect("client socket");
    let mut ours = Client::connect(sock, server.addr, seed).expect("client joins our server");
    let mut official = match (&ns, have_dhtnode) {
        (Some(ns), true) => {
            let node = DhtNode::start(ns, DHTNODE_PORT, None, false).expect("dhtnode starts");
            let addr = SocketAddr::from(([127, 0, 0, 1], node.port));
            let sock = loopback_socket(Some(ns)).expect("client socket");
            let client = Client::connect(sock, addr, seed ^ 1).expect("client joins dhtnode");
            Some((node, client))
        }
        _ => {
            println!("SKIP baseline dht-rtt/baseline-dhtnode: needs the official dhtnode and root (for its network namespace)");
            None
        }
    };

    bench_round_trips(c, "ours", &mut ours);
    if let Some((_, client)) = official.as_mut() {
        bench_round_trips(c, "baseline-dhtnode", client);
    }

    // The ratio from alternating round trips, so that both see the same machine load.
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..pairs {
        a.push(one_round_trip("ours", &mut ours));
        if let Some((_, client)) = official.as_mut() {
            b.push(one_round_trip("baseline-dhtnode", client));
        }
    }
    let ours_line = describe(&mut a);
    if b.is_empty() {
        println!("dht-rtt summary: put-then-get, ours {ours_line}; no dhtnode baseline");
    } else {
        let ratio = us(median(&mut a).unwrap_or_default()) / us(median(&mut b).unwrap_or_default());
        println!(
            "dht-rtt summary (alternating): put-then-get, ours {ours_line}; dhtnode {}; ours/dhtnode = {ratio:.2} (below 1: ours faster)",
            describe(&mut b)
        );
    }
}

/// Memory per node of a built world, and of its nodes' own state.
struct Snapshot {
    heap: usize,
    node_state: usize,
    table_entries: usize,
    stored_keys: usize,
}

/// Live heap since `heap0` per DHT node; then the nodes' own share (engine and app),
/// found by replacing every node's app by an empty one and counting what is freed. The
/// world is no use afterwards.
fn snapshot(w: &mut World, heap0: usize) -> Snapshot {
    let heap = live_bytes().saturating_sub(heap0);
    let actors: Vec<(usize, usize)> = w
        .actors
        .iter()
        .filter(|a| a.run == "dht-node")
        .map(|a| (a.node, a.app))
        .collect();
    let (mut table_entries, mut stored_keys) = (0, 0);
    let before = live_bytes();
    for &(node, app) in &actors {
        let Some(a) = w.sim.app_mut::<DhtApp>(node, app) else {
            continue;
        };
        if let Some(d) = a.engine() {
            table_entries += d.routing_table().len();
            stored_keys += d.storage().key_count();
        }
        let empty = DhtApp::new(DhtWorkload::default());
        drop(std::mem::replace(a, empty));
    }
    let freed = before.saturating_sub(live_bytes());
    let n = actors.len().max(1);
    Snapshot {
        heap: heap / n,
        node_state: (freed + actors.len() * std::mem::size_of::<DhtApp>()) / n,
        table_entries: table_entries / n,
        stored_keys: stored_keys / n,
    }
}

fn build(case: &scenarios::Case) -> World {
    let opts = BuildOpts {
        keep_trace: false,
        ..Default::default()
    };
    World::build(case, case.spec.scenario.seed, &opts).expect("scale scenario builds")
}

/// The network once formed: memory per node, and resident-size growth per node.
fn formed(case: &scenarios::Case) -> (Snapshot, Option<usize>) {
    let (heap0, rss0) = (live_bytes(), rss_bytes());
    let mut w = build(case);
    w.sim.run_until(SimTime::ZERO + FORMED);
    let nodes = w.actors.len().max(1);
    let rss = rss_bytes()
        .zip(rss0)
        .map(|(a, b)| a.saturating_sub(b) / nodes);
    (snapshot(&mut w, heap0), rss)
}

/// A whole run (build, simulate, checks pass): simulated seconds per wall second of
/// build plus simulation, and memory per node at the end when asked.
fn full_run(case: &scenarios::Case, measure: bool) -> (f64, Option<Snapshot>) {
    let heap0 = live_bytes();
    let t = Instant::now();
    let mut w = build(case);
    scenarios::steps::run(&mut w, &case.spec.step).expect("scale scenario runs");
    let speed = w.sim.now().as_secs_f64() / t.elapsed().as_secs_f64();
    let mut outcome = Outcome::default();
    for c in &case.spec.check {
        checks::evaluate(&w, c, &mut outcome);
    }
    assert!(
        outcome.checks.iter().all(|c| c.passed),
        "scale scenario must pass: {:?}",
        outcome.checks
    );
    (speed, measure.then(|| snapshot(&mut w, heap0)))
}

fn scale_figures() {
    let case = scenarios::select(&["dht/scale-1000".to_string()])
        .expect("dht/scale-1000 exists")
        .remove(0);
    // First, while the process is fresh, so that its resident-size growth means something.
    let (at_formed, rss) = formed(&case);
    let (first, at_end) = full_run(&case, true);
    let at_end = at_end.expect("measured");
    let mut speeds = [first, full_run(&case, false).0, full_run(&case, false).0];
    speeds.sort_by(|a, b| a.total_cmp(b));
    println!(
        "scale-1000 speed: {:.1} simulated s per wall s (median of 3 runs: {:.1} {:.1} {:.1})",
        speeds[1], speeds[0], speeds[1], speeds[2]
    );
    let rss = rss
        .map(|r| format!("{r} B"))
        .unwrap_or_else(|| "unknown".into());
    for (when, s) in [
        (format!("formed ({} s)", FORMED.as_secs()), &at_formed),
        ("end (90 s)".to_string(), &at_end),
    ] {
        println!(
            "scale-1000 memory per node, {when}: {} B live heap, of which the node's own state (engine, app) {} B; {} routing-table entries, {} stored keys",
            s.heap, s.node_state, s.table_entries, s.stored_keys
        );
    }
    println!("scale-1000 resident-size growth per node once formed: {rss}");
}

fn bench(c: &mut Criterion) {
    // `cargo test --benches` runs each bench once: the 30 s of scale runs and most of the
    // alternating round trips only run under `cargo bench`.
    let full = std::env::args().any(|a| a == "--bench");
    if full {
        scale_figures();
    } else {
        println!("scale-1000 figures: only under `cargo bench`");
    }
    round_trips(c, if full { 400 } else { 3 });
}

criterion_group!(benches, bench);
criterion_main!(benches);
