//! `tcp-probe`: opens a TCP connection to an echo at `to`:`port` and sends `bytes`.

use super::ActorKind;
use crate::model::Params;
use crate::world::World;
use anyhow::{anyhow, Result};
use netsim::apps::probe::TcpProbe;
use netsim::{AppId, NodeId};

inventory::submit! { ActorKind { name: "tcp-probe", params: &["to", "port", "bytes"], build } }

fn build(w: &mut World, _host: &str, node: NodeId, p: &Params<'_>) -> Result<AppId> {
    let to = w.sock(p.str("to")?, p.port("port", 7)?)?;
    let bytes = usize::try_from(p.int("bytes", 100_000)?).map_err(|_| anyhow!("bad `bytes`"))?;
    Ok(w.sim
        .add_app(node, move || Box::new(TcpProbe::new(to, bytes))))
}
