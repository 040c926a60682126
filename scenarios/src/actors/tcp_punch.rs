//! `tcp-punch`: a TCP hole-punching peer (`pair` names the two ends): it learns its
//! mapped address from `stun`, meets its peer through `rendezvous`, and tries each direct
//! TCP path (host, passive srflx, simultaneous open staggered by `so_stagger`).

use super::ActorKind;
use crate::model::Params;
use crate::world::World;
use anyhow::Result;
use netsim::apps::tcp_punch::{TcpPunchConfig, TcpPunchPeer};
use netsim::{AppId, NodeId};

inventory::submit! {
    ActorKind { name: "tcp-punch", params: &["pair", "rendezvous", "stun", "so_stagger"], build }
}

fn build(w: &mut World, _host: &str, node: NodeId, p: &Params<'_>) -> Result<AppId> {
    let cfg = TcpPunchConfig {
        pair: p.str("pair")?.to_string(),
        rendezvous: w.sock(p.str("rendezvous")?, 7000)?,
        stun: w.sock(p.str("stun")?, 3478)?,
        so_stagger: p.duration("so_stagger", "500ms")?,
    };
    Ok(w.sim
        .add_app(node, move || Box::new(TcpPunchPeer::new(cfg.clone()))))
}
