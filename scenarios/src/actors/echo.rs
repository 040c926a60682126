//! `echo`: sends back every UDP datagram and TCP byte it gets on `port`.

use super::ActorKind;
use crate::model::Params;
use crate::world::World;
use anyhow::Result;
use netsim::apps::echo::Echo;
use netsim::{AppId, NodeId};

inventory::submit! { ActorKind { name: "echo", params: &["port"], build } }

fn build(w: &mut World, _host: &str, node: NodeId, p: &Params<'_>) -> Result<AppId> {
    let port = p.port("port", 7)?;
    Ok(w.sim.add_app(node, move || Box::new(Echo::new(port))))
}
