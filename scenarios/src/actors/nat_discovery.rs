//! `nat-discovery`: the RFC 5780 client against the STUN server on `server`:`port`.

use super::ActorKind;
use crate::model::Params;
use crate::world::World;
use anyhow::Result;
use netsim::apps::discovery::NatDiscovery;
use netsim::{AppId, NodeId};

inventory::submit! { ActorKind { name: "nat-discovery", params: &["server", "port"], build } }

fn build(w: &mut World, _host: &str, node: NodeId, p: &Params<'_>) -> Result<AppId> {
    let server = w.sock(p.str("server")?, p.port("port", 3478)?)?;
    Ok(w.sim
        .add_app(node, move || Box::new(NatDiscovery::new(server))))
}
