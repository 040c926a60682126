//! `turn-server`: a TURN relay with one long-term user (`port`, `user`, `password`,
//! `realm`, `lifetime`).

use super::ActorKind;
use crate::model::Params;
use crate::world::World;
use anyhow::Result;
use netsim::apps::turn::{TurnConfig, TurnServer};
use netsim::{AppId, NodeId};

inventory::submit! {
    ActorKind {
        name: "turn-server",
        params: &["port", "user", "password", "realm", "lifetime"],
        build,
    }
}

fn build(w: &mut World, _host: &str, node: NodeId, p: &Params<'_>) -> Result<AppId> {
    let cfg = TurnConfig {
        port: p.port("port", 3478)?,
        realm: p.opt_str("realm")?.unwrap_or("netsim").to_string(),
        users: vec![(
            p.opt_str("user")?.unwrap_or("user").to_string(),
            p.opt_str("password")?.unwrap_or("pass").to_string(),
        )],
        lifetime: p.duration("lifetime", "600s")?,
        ..TurnConfig::default()
    };
    Ok(w.sim
        .add_app(node, move || Box::new(TurnServer::new(cfg.clone()))))
}
