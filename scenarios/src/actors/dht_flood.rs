//! `dht-flood`: sends DHT requests at `rate` per second to `to`:`port` from `from` to
//! `until`, from many forged sources (the rate-limit check's attacker).

use super::ActorKind;
use crate::model::Params;
use crate::world::World;
use anyhow::{anyhow, Result};
use netsim::{AppId, NodeId};

inventory::submit! {
    ActorKind { name: "dht-flood", params: &["to", "port", "rate", "from", "until"], build }
}

fn build(w: &mut World, _host: &str, node: NodeId, p: &Params<'_>) -> Result<AppId> {
    let to = w.sock(p.str("to")?, p.port("port", 4222)?)?;
    let rate = u32::try_from(p.int("rate", 10_000)?).map_err(|_| anyhow!("bad `rate`"))?;
    let (from, until) = (p.duration("from", "5s")?, p.duration("until", "25s")?);
    Ok(w.sim.add_app(node, move || {
        Box::new(crate::glue::DhtFlood::new(to, rate, from, until))
    }))
}
