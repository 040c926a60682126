//! `proxy-put`: puts one value through the DHT proxy at `proxy`:`port` at `put_at`.

use super::ActorKind;
use crate::model::Params;
use crate::world::World;
use anyhow::Result;
use netsim::{AppId, NodeId};

inventory::submit! { ActorKind { name: "proxy-put", params: &["proxy", "port", "put_at"], build } }

fn build(w: &mut World, _host: &str, node: NodeId, p: &Params<'_>) -> Result<AppId> {
    let proxy = w.sock(p.str("proxy")?, p.port("port", 8000)?)?;
    let at = p.duration("put_at", "10s")?;
    Ok(w.sim.add_app(node, move || {
        Box::new(crate::glue::ProxyPutApp::new(proxy, at))
    }))
}
