//! The programs a scenario can `run` on a host. Each kind is one module that registers
//! itself with `inventory::submit!`: a new protocol adds a file here, never an arm to a
//! central match. The registry checks the keys each kind declares, so a typo in a
//! scenario is an error that lists the keys that kind knows.

use crate::model::Params;
use crate::world::World;
use anyhow::{bail, Result};
use netsim::{AppId, NodeId};

mod dht_flood;
mod dht_node;
mod echo;
mod jami_device;
mod multicast;
mod name_device;
mod name_server;
mod nat_discovery;
mod punch;
mod rendezvous;
mod sink;
mod stun_server;
mod tcp_probe;
mod tcp_punch;
mod turn_server;
mod udp_probe;
mod udp_sender;

/// One kind of actor.
pub struct ActorKind {
    /// The name a scenario gives in `run = "..."`.
    pub name: &'static str,
    /// The keys it accepts besides `host` and `run`.
    pub params: &'static [&'static str],
    /// Adds the program to the host (`host` is its name, `node` its id) and returns its app.
    pub build: fn(w: &mut World, host: &str, node: NodeId, p: &Params<'_>) -> Result<AppId>,
}

inventory::collect!(ActorKind);

/// The kind registered under `name`.
pub fn find(name: &str) -> Option<&'static ActorKind> {
    inventory::iter::<ActorKind>
        .into_iter()
        .find(|k| k.name == name)
}

/// Every registered name, sorted.
pub fn names() -> Vec<&'static str> {
    let mut v: Vec<&str> = inventory::iter::<ActorKind>
        .into_iter()
        .map(|k| k.name)
        .collect();
    v.sort_unstable();
    v
}

/// Starts actor `run` on `host` with the scenario's keys `p`.
pub fn build(w: &mut World, host: &str, node: NodeId, run: &str, p: &Params<'_>) -> Result<AppId> {
    let Some(kind) = find(run) else {
        bail!("unknown actor `{run}` (known: {})", names().join(", "));
    };
    p.only(kind.params)?;
    (kind.build)(w, host, node, p)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_kind_registers_once_with_its_keys() {
        let names = super::names();
        assert!(names.len() >= 17, "{names:?}");
        let mut unique = names.clone();
        unique.dedup();
        assert_eq!(unique, names, "a kind is registered twice");
        assert!(super::find("dht-node").is_some_and(|k| k.params.contains(&"bootstrap")));
        assert!(super::find("no-such-actor").is_none());
    }
}
