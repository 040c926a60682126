//! The timeline: steps applied at their simulated times (faults, link changes, crashes).

use crate::model::{LinkSel, Params, StepSpec};
use crate::world::World;
use anyhow::{anyhow, bail, Context, Result};
use netsim::{Clog, HostClock, LinkSpec, Partition, SimTime};
use std::collections::BTreeMap;

pub const STEP_KINDS: &[&str] = &[
    "partition",
    "heal",
    "clog",
    "unclog",
    "crash",
    "restart",
    "set_link",
    "drift",
    "churn",
];

/// Run the world through its steps and then to the end of its duration.
pub fn run(w: &mut World, steps: &[StepSpec]) -> Result<()> {
    let expanded = expand_churn(w.seed, steps)?;
    let steps = &expanded[..];
    let mut timed: Vec<(SimTime, usize)> = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        let at = netsim::parse_duration(&s.at).map_err(|e| anyhow!("step #{} `at`: {e}", i + 1))?;
        timed.push((SimTime::ZERO + at, i));
    }
    timed.sort(); // stable by index for steps at the same time
    let mut partitions: BTreeMap<String, Partition> = BTreeMap::new();
    let mut clogs: BTreeMap<String, Clog> = BTreeMap::new();
    for (at, i) in timed {
        w.sim.run_until(at);
        let s = &steps[i];
        apply(w, s, &mut partitions, &mut clogs)
            .with_context(|| format!("step #{} (`{}` at {})", i + 1, s.action, s.at))?;
    }
    let end = SimTime::ZERO + w.duration;
    w.sim.run_until(end);
    Ok(())
}

fn nodes(w: &World, names: &[&str]) -> Result<Vec<netsim::NodeId>> {
    names.iter().map(|n| w.node(n)).collect()
}

fn apply(
    w: &mut World,
    s: &StepSpec,
    partitions: &mut BTreeMap<String, Partition>,
    clogs: &mut BTreeMap<String, Clog>,
) -> Result<()> {
    let p = Params::new(format!("step `{}`", s.action), &s.params);
    match s.action.as_str() {
        "partition" => {
            p.only(&["name", "nodes", "from"])?;
            let a = nodes(w, &p.strs("nodes")?)?;
            let b = nodes(w, &p.strs("from")?)?;
            let g = w
                .sim
                .partition(&a, if b.is_empty() { None } else { Some(&b) });
            partitions.insert(p.opt_str("name")?.unwrap_or("default").to_string(), g);
        }
        "heal" => {
            p.only(&["name"])?;
            let name = p.opt_str("name")?.unwrap_or("default");
            let guard = partitions
                .remove(name)
                .ok_or_else(|| anyhow!("no partition named `{name}`"))?;
            drop(guard); // dropping the guard is what heals
        }
        "clog" => {
            p.only(&["name", "nodes"])?;
            let a = nodes(w, &p.strs("nodes")?)?;
            let g = w.sim.clog(&a);
            clogs.insert(p.opt_str("name")?.unwrap_or("default").to_string(), g);
        }
        "unclog" => {
            p.only(&["name"])?;
            let name = p.opt_str("name")?.unwrap_or("default");
            let guard = clogs
                .remove(name)
                .ok_or_else(|| anyhow!("no clog named `{name}`"))?;
            drop(guard);
        }
        "crash" | "restart" => {
            p.only(&["host"])?;
            let h = w.host_node(p.str("host")?)?;
            if s.action == "crash" {
                w.sim.crash(h);
            } else {
                w.sim.restart(h);
            }
        }
        "set_link" => {
            let host = p.str("host")?;
            let mut t = s.params.clone();
            t.remove("host");
            let spec: LinkSpec = toml::Value::Table(t).try_into().context("link settings")?;
            let (up, down) = LinkSel::Spec(spec)
                .spec()
                .resolve("internet")
                .map_err(|e| anyhow!(e))?;
            let h = w.node(host)?;
            let link = w
                .sim
                .uplink(h)
                .ok_or_else(|| anyhow!("`{host}` has no link"))?;
            w.sim.set_link(link, Some(h), up);
            let parent = w
                .sim
                .node(h)
                .parent
                .ok_or_else(|| anyhow!("`{host}` has no parent"))?;
            w.sim.set_link(link, Some(parent), down);
        }
        "drift" => {
            p.only(&["host", "ppm", "offset"])?;
            let h = w.host_node(p.str("host")?)?;
            let clock = HostClock {
                drift_ppm: p.float("ppm", 0.0)?,
                offset: p.duration("offset", "0s")?,
            };
            w.sim.set_clock(h, clock);
        }
        other => bail!("unknown step `{other}` (known: {})", STEP_KINDS.join(", ")),
    }
    Ok(())
}

/// Expand `churn` steps into crashes and restarts of a seeded random subset:
/// `population = "n-{i}"`, `population_count`, `fraction`, `down_for`, and `keep`
/// (hosts that never leave, e.g. the bootstrap nodes).
fn expand_churn(seed: u64, steps: &[StepSpec]) -> Result<Vec<StepSpec>> {
    let mut out = Vec::new();
    for (k, s) in steps.iter().enumerate() {
        if s.action != "churn" {
            out.push(s.clone());
            continue;
        }
        let p = Params::new("step `churn`", &s.params);
        p.only(&[
            "population",
            "population_count",
            "fraction",
            "down_for",
            "keep",
        ])?;
        let keep = p.strs("keep")?;
        let pop = p.str("population")?;
        let n = usize::try_from(p.int("population_count", 1)?)
            .map_err(|_| anyhow!("bad `population_count`"))?;
        let fraction = p.float("fraction", 0.1)?;
        let down = p.duration("down_for", "30s")?;
        let at = netsim::parse_duration(&s.at).map_err(|e| anyhow!("churn `at`: {e}"))?;
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(
            seed ^ (k as u64).wrapping_mul(0x9e37_79b9),
        );
        let mut picked = std::collections::BTreeSet::new();
        let want = ((n as f64) * fraction).round() as usize;
        let eligible: Vec<usize> = (0..n)
            .filter(|&i| !keep.contains(&crate::expand::instantiate(pop, i).as_str()))
            .collect();
        while picked.len() < want.min(eligible.len()) {
            picked.insert(eligible[rand::RngExt::random_range(&mut rng, 0..eligible.len())]);
        }
        for i in picked {
            let host = toml::Value::String(crate::expand::instantiate(pop, i));
            let mut crash = toml::Table::new();
            crash.insert("host".into(), host.clone());
            let mut restart = toml::Table::new();
            restart.insert("host".into(), host);
            out.push(StepSpec {
                at: s.at.clone(),
                action: "crash".into(),
                params: crash,
            });
            out.push(StepSpec {
                at: format!("{}ms", (at + down).as_millis()),
                action: "restart".into(),
                params: restart,
            });
        }
    }
    Ok(out)
}
