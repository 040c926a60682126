//! `rendezvous`: tells hole-punching peers each other's addresses (`port`).

use super::ActorKind;
use crate::model::Params;
use crate::world::World;
use anyhow::Result;
use netsim::apps::punch::Rendezvous;
use netsim::{AppId, NodeId};

inventory::submit! { ActorKind { name: "rendezvous", params: &["port"], build } }

fn build(w: &mut World, _host: &str, node: NodeId, p: &Params<'_>) -> Result<AppId> {
    let port = p.port("port", 7000)?;
    Ok(w.sim.add_app(node, move || Box::new(Rendezvous::new(port))))
}
