//! `udp-sender`: constant-rate UDP to `to`:`port` (`rate`, `size`, `start`, `duration`).

use super::ActorKind;
use crate::model::Params;
use crate::world::World;
use anyhow::{anyhow, Result};
use netsim::apps::traffic::RateSender;
use netsim::link::parse_rate;
use netsim::{AppId, NodeId};

inventory::submit! {
    ActorKind {
        name: "udp-sender",
        params: &["to", "port", "rate", "size", "start", "duration"],
        build,
    }
}

fn build(w: &mut World, _host: &str, node: NodeId, p: &Params<'_>) -> Result<AppId> {
    let to = w.sock(p.str("to")?, p.port("port", 9000)?)?;
    let rate = parse_rate(p.str("rate")?).map_err(|e| anyhow!(e))?;
    let size = usize::try_from(p.int("size", 1172)?).map_err(|_| anyhow!("bad `size`"))?;
    let (start, dur) = (p.duration("start", "1s")?, p.duration("duration", "10s")?);
    Ok(w.sim.add_app(node, move || {
        Box::new(RateSender::new(to, rate, size, start, dur))
    }))
}
