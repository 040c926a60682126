//! `sink`: counts the UDP traffic it receives on `port` (for goodput checks).

use super::ActorKind;
use crate::model::Params;
use crate::world::World;
use anyhow::Result;
use netsim::apps::traffic::Sink;
use netsim::{AppId, NodeId};

inventory::submit! { ActorKind { name: "sink", params: &["port"], build } }

fn build(w: &mut World, _host: &str, node: NodeId, p: &Params<'_>) -> Result<AppId> {
    let port = p.port("port", 9000)?;
    Ok(w.sim.add_app(node, move || Box::new(Sink::new(port))))
}
