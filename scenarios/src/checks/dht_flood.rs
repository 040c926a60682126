//! `dht_flood`: the `dht-node` on `host` drops `flooder`'s request flood above its rate
//! limit and keeps its pending requests and tracked sources bounded.

use super::{CheckKind, Outcome};
use crate::glue::DhtApp;
use crate::model::Params;
use crate::world::World;
use anyhow::{anyhow, Result};

inventory::submit! { CheckKind { name: "dht_flood", params: &["host", "flooder", "max_pending", "max_sources"], eval } }

fn eval(w: &World, _what: &str, p: &Params<'_>, out: &mut Outcome) -> Result<()> {
    let host = p.str("host")?;
    let (_, app) = w.actor_state::<DhtApp>(host, "dht-node")?;
    let (_, flood) = w.actor_state::<crate::glue::DhtFlood>(p.str("flooder")?, "dht-flood")?;
    let d = app
        .engine()
        .ok_or_else(|| anyhow!("`{host}` runs no engine"))?;
    let (max_pending, max_sources) = (
        p.int("max_pending", 1000)? as usize,
        p.int("max_sources", 10_000)? as usize,
    );
    let limited = d.stats.rate_limited;
    let bounded = d.pending_requests() <= max_pending && d.tracked_sources() <= max_sources;
    out.push(
            "dht_flood",
            format!("{host} drops a request flood above its rate limit and stays bounded"),
            limited > 0 && flood.answers < flood.sent && bounded,
            format!(
                "flood sent {} requests, {} answered, {} dropped by the limiter; {} requests pending, {} sources tracked, {} bytes stored",
                flood.sent,
                flood.answers,
                limited,
                d.pending_requests(),
                d.tracked_sources(),
                d.storage().total_bytes()
            ),
        );
    out.summary.push(format!("{limited} dropped"));
    Ok(())
}
