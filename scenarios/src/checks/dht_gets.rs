//! `dht_gets`: at least `min_ratio` of the gets of the `dht-node`s (all, or `hosts`) found
//! their value; plots get latency and lookup rounds as CDFs.

use super::{CheckKind, Outcome};
use crate::glue::DhtApp;
use crate::model::Params;
use crate::world::World;
use anyhow::Result;
use reports::{Series, SeriesKind};

inventory::submit! { CheckKind { name: "dht_gets", params: &["hosts", "min_ratio"], eval } }

fn eval(w: &World, _what: &str, p: &Params<'_>, out: &mut Outcome) -> Result<()> {
    let min = p.float("min_ratio", 0.99)?;
    let only: Vec<&str> = p.strs("hosts")?;
    let (mut total, mut found) = (0usize, 0usize);
    let (mut latencies, mut hops) = (Vec::new(), Vec::new());
    for a in w
        .actors
        .iter()
        .filter(|a| a.run == "dht-node" && (only.is_empty() || only.contains(&a.host.as_str())))
    {
        let Some(app) = w.sim.app::<DhtApp>(a.node, a.app) else {
            continue;
        };
        for g in app.gets.values() {
            total += 1;
            if let Some(t) = g.found_at {
                found += 1;
                latencies.push((0.0, (t - g.started).as_secs_f64() * 1000.0));
                hops.push((0.0, g.hops as f64));
            }
        }
    }
    let ratio = if total == 0 {
        0.0
    } else {
        found as f64 / total as f64
    };
    out.push(
        "dht_gets",
        format!("at least {:.1}% of gets find their value", min * 100.0),
        total > 0 && ratio >= min,
        format!(
            "{found} of {total} gets found the value ({:.2}%)",
            ratio * 100.0
        ),
    );
    out.summary.push(format!("{:.1}% found", ratio * 100.0));
    let mut sorted: Vec<f64> = latencies.iter().map(|p| p.1).collect();
    sorted.sort_by(|a, b| a.total_cmp(b));
    if let Some(median) = sorted.get(sorted.len() / 2) {
        out.summary.push(format!("median {median:.0} ms"));
    }
    out.series.push(Series {
        chart: "DHT get latency".into(),
        label: "time to value".into(),
        kind: SeriesKind::Cdf,
        x_label: "ms".into(),
        y_label: "fraction of gets".into(),
        points: latencies,
    });
    out.series.push(Series {
        chart: "DHT lookup rounds".into(),
        label: "rounds until the value was found".into(),
        kind: SeriesKind::Cdf,
        x_label: "rounds".into(),
        y_label: "fraction of gets".into(),
        points: hops,
    });
    Ok(())
}
