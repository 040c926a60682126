//! `goodput`: `host`'s sink receives `rate` within `tolerance` between `from` and `to`;
//! plots the received rate against the link capacity.

use super::{CheckKind, Outcome};
use crate::model::Params;
use crate::world::World;
use anyhow::{anyhow, Result};
use netsim::apps::traffic::Sink;
use netsim::link::parse_rate;
use netsim::SimTime;
use reports::{Series, SeriesKind};

inventory::submit! { CheckKind { name: "goodput", params: &["host", "rate", "tolerance", "from", "to"], eval } }

fn eval(w: &World, _what: &str, p: &Params<'_>, out: &mut Outcome) -> Result<()> {
    let host = p.str("host")?;
    let (_, sink) = w.actor_state::<Sink>(host, "sink")?;
    let want = parse_rate(p.str("rate")?).map_err(|e| anyhow!(e))? as f64;
    let tol = p.float("tolerance", 0.02)?;
    let from = SimTime::ZERO + p.duration("from", "2s")?;
    let to = SimTime::ZERO + p.duration("to", "10s")?;
    let got = sink.rate_bps(from, to);
    let err = (got - want).abs() / want;
    out.push(
        "goodput",
        format!(
            "{host} receives {:.3} Mbit/s ± {:.1}% between {} and {}",
            want / 1e6,
            tol * 100.0,
            from,
            to
        ),
        err <= tol,
        format!(
            "measured {:.4} Mbit/s ({:+.2}%)",
            got / 1e6,
            (got - want) / want * 100.0
        ),
    );
    out.summary.push(format!("{:.3} Mbit/s", got / 1e6));
    out.series.push(Series {
        chart: format!("Goodput at {host}"),
        label: "received (IP layer)".into(),
        kind: SeriesKind::Line,
        x_label: "time (s)".into(),
        y_label: "Mbit/s".into(),
        points: sink
            .series()
            .into_iter()
            .map(|(t, r)| (t, r / 1e6))
            .collect(),
    });
    let horizon = w.duration.as_secs_f64();
    out.series.push(Series {
        chart: format!("Goodput at {host}"),
        label: "link capacity".into(),
        kind: SeriesKind::Line,
        x_label: "time (s)".into(),
        y_label: "Mbit/s".into(),
        points: vec![(0.0, want / 1e6), (horizon, want / 1e6)],
    });
    Ok(())
}
