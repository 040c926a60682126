//! `stun-server`: a STUN server with RFC 5780's second port (`port`, `alt_port`).

use super::ActorKind;
use crate::model::Params;
use crate::world::World;
use anyhow::Result;
use netsim::apps::stun_server::StunServer;
use netsim::{AppId, NodeId};

inventory::submit! { ActorKind { name: "stun-server", params: &["port", "alt_port"], build } }

fn build(w: &mut World, _host: &str, node: NodeId, p: &Params<'_>) -> Result<AppId> {
    let (a, b) = (p.port("port", 3478)?, p.port("alt_port", 3479)?);
    Ok(w.sim.add_app(node, move || Box::new(StunServer::new(a, b))))
}
