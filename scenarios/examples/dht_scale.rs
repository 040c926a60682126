//! The large-DHT bench: a network shaped like `dht/scale-1000` (every node bootstraps
//! from `n-0` and `n-1`, puts its value, later gets another node's) at any size and
//! for any simulated time, one seed after another. It prints, per seed, the share of
//! gets that found their value, the simulated events and the CPU time they took, and,
//! with `--why`, what each failing get has in common (a node that never joined, a
//! value stored on none of the key's true closest nodes...). Run it under
//! `/usr/bin/time -v` for the peak RSS.
//!
//! ```sh
//! cargo run --release -p scenarios --example dht_scale -- --nodes 10000 --seeds 1,2,3,4,5 --duration 3720
//! ```

use anyhow::{bail, Context, Result};
use node::dht::InfoHash;
use scenarios::glue::DhtApp;
use scenarios::world::{BuildOpts, World};
use std::time::Instant;

struct Args {
    nodes: usize,
    seeds: Vec<u64>,
    put_at: u64,
    get_at: u64,
    duration: u64,
    why: bool,
}

fn parse() -> Result<Args> {
    let mut a = Args {
        nodes: 1000,
        seeds: vec![1],
        put_at: 30,
        get_at: 60,
        duration: 90,
        why: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut val = || it.next().with_context(|| format!("{k} needs a value"));
        match k.as_str() {
            "--nodes" => a.nodes = val()?.parse()?,
            "--seeds" => {
                a.seeds = val()?
                    .split(',')
                    .map(|s| s.parse())
                    .collect::<Result<_, _>>()?
            }
            "--put" => a.put_at = val()?.parse()?,
            "--get" => a.get_at = val()?.parse()?,
            "--duration" => a.duration = val()?.parse()?,
            "--why" => a.why = true,
            _ => bail!(
                "unknown argument {k} (--nodes N --seeds 1,2 --put S --get S --duration S --why)"
            ),
        }
    }
    Ok(a)
}

/// The scenario text, as `dht/scale-1000` with `n` nodes.
pub fn scenario(n: usize, put_at: u64, get_at: u64, duration: u64) -> String {
    format!(
        r#"
[scenario]
name = "scale-{n}"
duration = "{duration}s"

[[host]]
name = "n-{{i}}"
count = {n}
link = "internet"

[[actor]]
host = "n-{{i}}"
count = {n}
run = "dht-node"
bootstrap = ["n-0", "n-1"]
put_at = "{put_at}s"
get_at = "{get_at}s"
get_random = 1
population = "n-{{i}}"
population_count = {n}

[[check]]
what = "dht_gets"
min_ratio = 0.99
"#
    )
}

fn cpu_seconds() -> f64 {
    // utime + stime of this process, from /proc (Linux; 0 elsewhere).
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn main() -> Result<()> {
    let a = parse()?;
    let text = scenario(a.nodes, a.put_at, a.get_at, a.duration);
    let case = scenarios::expand::cases("dht", "dht_scale.toml", &text)?
        .into_iter()
        .next()
        .context("one case")?;
    let (mut total_found, mut total_gets) = (0usize, 0usize);
    for &seed in &a.seeds {
        let (c0, w0) = (cpu_seconds(), Instant::now());
        let mut w = World::build(&case, seed, &BuildOpts::default())?;
        scenarios::steps::run(&mut w, &case.spec.step)?;
        let (cpu, wall) = (cpu_seconds() - c0, w0.elapsed().as_secs_f64());
        let (found, gets) = tally(&w, a.why);
        total_found += found;
        total_gets += gets;
        println!(
            "seed {seed}: {found}/{gets} gets found ({:.2}%), {} events, {:.1} s simulated, {cpu:.1} s CPU, {wall:.1} s wall, {:.2} M events/s",
            100.0 * found as f64 / gets.max(1) as f64,
            w.sim.core.events,
            w.sim.now().as_secs_f64(),
            w.sim.core.events as f64 / cpu.max(1e-9) / 1e6,
        );
    }
    println!(
        "all seeds: {total_found}/{total_gets} gets found ({:.3}%)",
        100.0 * total_found as f64 / total_gets.max(1) as f64
    );
    Ok(())
}

/// (gets that found their value, gets); with `why`, a line per kind of failure.
fn tally(w: &World, why: bool) -> (usize, usize) {
    let apps: Vec<(&str, &DhtApp)> = w
        .actors
        .iter()
        .filter(|a| a.run == "dht-node")
        .filter_map(|a| Some((a.host.as_str(), w.sim.app::<DhtApp>(a.node, a.app)?)))
        .collect();
    let (mut found, mut total) = (0, 0);
    let mut kinds: std::collections::BTreeMap<String, usize> = Default::default();
    let by_host: std::collections::BTreeMap<&str, &DhtApp> = apps.iter().copied().collect();
    for (host, app) in &apps {
        for g in app.gets.values() {
            total += 1;
            if g.found_at.is_some() {
                found += 1;
                continue;
            }
            if !why {
                continue;
            }
            let owner = by_host.get(g.key_owner.as_str());
            let kind = if app.connected_at.is_none() {
                "getter never connected".to_string()
            } else if owner.is_some_and(|o| o.connected_at.is_none()) {
                "owner never connected".to_string()
            } else {
                let key = DhtApp::key_of(&g.key_owner);
                let mut ids: Vec<(InfoHash, &DhtApp)> = apps
                    .iter()
                    .map(|(h, a)| (InfoHash::get(format!("node:{h}")), *a))
                    .collect();
                ids.sort_by(|x, y| node::dht::infohash::xor_cmp(&x.0, &y.0, &key));
                let holders = ids[..8]
                    .iter()
                    .filter(|(_, a)| a.engine().is_some_and(|e| !e.local_values(&key).is_empty()))
                    .count();
                let anywhere = apps
                    .iter()
                    .filter(|(_, a)| a.engine().is_some_and(|e| !e.local_values(&key).is_empty()))
                    .count();
                let stored: Vec<usize> = owner
                    .map(|o| o.puts_done.iter().map(|p| p.1).collect())
                    .unwrap_or_default();
                let _ = host;
                format!("both connected: value on {holders} of the 8 closest, {anywhere} nodes in all; put stored on {stored:?}, get done {}", g.done_at.is_some())
            };
            *kinds.entry(kind).or_default() += 1;
        }
    }
    for (k, n) in kinds {
        println!("  {n:6}  {k}");
    }
    (found, total)
}
