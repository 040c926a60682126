//! `multicast`: joins `group`:`port` and, with `announce`, sends to it.

use super::ActorKind;
use crate::model::Params;
use crate::world::World;
use anyhow::{bail, Context, Result};
use netsim::apps::probe::Multicast;
use netsim::{AppId, NodeId};
use std::net::IpAddr;

inventory::submit! { ActorKind { name: "multicast", params: &["group", "port", "announce"], build } }

fn build(w: &mut World, _host: &str, node: NodeId, p: &Params<'_>) -> Result<AppId> {
    let group: IpAddr = p
        .opt_str("group")?
        .unwrap_or("239.255.42.99")
        .parse()
        .context("`group`")?;
    if !group.is_multicast() {
        bail!("`group` {group} is not a multicast address");
    }
    let (port, announce) = (p.port("port", 4242)?, p.bool("announce", false)?);
    Ok(w.sim.add_app(node, move || {
        Box::new(Multicast::new(group, port, announce))
    }))
}
