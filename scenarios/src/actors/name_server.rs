//! `name-server`: our Jami name server (node::nameserver's domain logic) over simulated
//! TCP on `port`; with `persist` it keeps its records on the host's disk across crashes.

use super::ActorKind;
use crate::model::Params;
use crate::world::World;
use anyhow::Result;
use netsim::{AppId, NodeId};

inventory::submit! { ActorKind { name: "name-server", params: &["port", "persist"], build } }

fn build(w: &mut World, _host: &str, node: NodeId, p: &Params<'_>) -> Result<AppId> {
    let (port, persist) = (p.port("port", 80)?, p.bool("persist", true)?);
    Ok(w.sim.add_app(node, move || {
        Box::new(crate::names::NameServerApp::new(port, persist))
    }))
}
