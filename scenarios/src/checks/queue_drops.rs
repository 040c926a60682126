//! `queue_drops`: `host`'s uplink queue dropped at least `min` packets (queues are bounded).

use super::{CheckKind, Outcome};
use crate::model::Params;
use crate::world::World;
use anyhow::{anyhow, Result};

inventory::submit! { CheckKind { name: "queue_drops", params: &["host", "min"], eval } }

fn eval(w: &World, _what: &str, p: &Params<'_>, out: &mut Outcome) -> Result<()> {
    let host = p.str("host")?;
    let id = w.node(host)?;
    let link = w
        .sim
        .uplink(id)
        .ok_or_else(|| anyhow!("`{host}` has no link"))?;
    let l = &w.sim.core.links[link];
    let dir = if l.ends[0] == id { 0 } else { 1 };
    let stats = &l.dirs[dir].stats;
    let min = p.int("min", 1)?.max(0) as u64;
    out.push(
        "queue_drops",
        format!("{host}'s uplink queue drops at least {min} packets"),
        stats.queue_drops >= min,
        format!(
            "{} queue drops of {} packets offered",
            stats.queue_drops, stats.sent_packets
        ),
    );
    Ok(())
}
