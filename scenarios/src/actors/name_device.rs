//! `name-device`: registers `name` on the name server at `server`:`port` at `register_at`
//! and looks it up at each `lookup_at`, with an account key drawn from the seed.

use super::ActorKind;
use crate::model::Params;
use crate::world::World;
use anyhow::{anyhow, Result};
use netsim::{AppId, NodeId};

inventory::submit! {
    ActorKind {
        name: "name-device",
        params: &["server", "port", "name", "register_at", "lookup_at"],
        build,
    }
}

fn build(w: &mut World, host: &str, node: NodeId, p: &Params<'_>) -> Result<AppId> {
    let server = w.sock(p.str("server")?, p.port("port", 80)?)?;
    let name = p.str("name")?.to_string();
    let register_at = p.opt_duration("register_at")?;
    let mut lookup_at = Vec::new();
    for s in p.strs("lookup_at")? {
        lookup_at.push(netsim::parse_duration(s).map_err(|e| anyhow!("`lookup_at`: {e}"))?);
    }
    // The device's account key: from the scenario seed and the host name.
    let key_seed = w.host_seed(host, 0x6e61_6d65);
    Ok(w.sim.add_app(node, move || {
        Box::new(crate::names::NameDeviceApp::new(
            server,
            name.clone(),
            register_at,
            lookup_at.clone(),
            key_seed,
        ))
    }))
}
