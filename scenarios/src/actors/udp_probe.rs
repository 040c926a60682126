//! `udp-probe`: sends `datagrams` to an echo at `to`:`port` and counts the answers.

use super::ActorKind;
use crate::model::Params;
use crate::world::World;
use anyhow::{anyhow, Result};
use netsim::apps::probe::UdpProbe;
use netsim::{AppId, NodeId};

inventory::submit! { ActorKind { name: "udp-probe", params: &["to", "port", "datagrams"], build } }

fn build(w: &mut World, _host: &str, node: NodeId, p: &Params<'_>) -> Result<AppId> {
    let to = w.sock(p.str("to")?, p.port("port", 7)?)?;
    let count = u32::try_from(p.int("datagrams", 20)?).map_err(|_| anyhow!("bad `datagrams`"))?;
    Ok(w.sim
        .add_app(node, move || Box::new(UdpProbe::new(to, count))))
}
