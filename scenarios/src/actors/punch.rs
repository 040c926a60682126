//! `punch`: a UDP hole-punching peer (`pair` names the two ends), with srflx from `stun`
//! and an optional TURN relay (`turn`, `user`, `password`) as the fallback.

use super::ActorKind;
use crate::model::Params;
use crate::world::World;
use anyhow::Result;
use netsim::apps::punch::{PunchConfig, PunchPeer};
use netsim::{AppId, NodeId};

inventory::submit! {
    ActorKind {
        name: "punch",
        params: &["pair", "rendezvous", "stun", "turn", "check_for", "interval", "user", "password"],
        build,
    }
}

fn build(w: &mut World, _host: &str, node: NodeId, p: &Params<'_>) -> Result<AppId> {
    let turn = match p.opt_str("turn")? {
        Some(t) => Some((
            w.sock(t, 3478)?,
            p.opt_str("user")?.unwrap_or("user").to_string(),
            p.opt_str("password")?.unwrap_or("pass").to_string(),
        )),
        None => None,
    };
    let cfg = PunchConfig {
        pair: p.str("pair")?.to_string(),
        rendezvous: w.sock(p.str("rendezvous")?, 7000)?,
        stun: w.sock(p.str("stun")?, 3478)?,
        turn,
        check_interval: p.duration("interval", "50ms")?,
        check_for: p.duration("check_for", "8s")?,
    };
    Ok(w.sim
        .add_app(node, move || Box::new(PunchPeer::new(cfg.clone()))))
}
