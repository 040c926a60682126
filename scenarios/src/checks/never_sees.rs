//! `never_sees`: no packet received by `hosts` (`"*"`: every host but the owners) carries an
//! address of `address_of`.

use super::{CheckKind, Outcome};
use crate::model::Params;
use crate::world::World;
use anyhow::{anyhow, Result};
use netsim::NodeKind;

inventory::submit! { CheckKind { name: "never_sees", params: &["hosts", "address_of"], eval } }

fn eval(w: &World, _what: &str, p: &Params<'_>, out: &mut Outcome) -> Result<()> {
    let owners = p.strs("address_of")?;
    let mut secret = Vec::new();
    for o in &owners {
        secret.extend(w.addrs_of(o)?);
    }
    let hosts = watched_hosts(w, &p.strs("hosts")?, &owners);
    let mut leaks = Vec::new();
    for h in &hosts {
        let host = w
            .sim
            .host(w.host_node(h)?)
            .ok_or_else(|| anyhow!("not a host"))?;
        for a in &secret {
            if host.seen_sources.contains(a) {
                leaks.push(format!("{h} saw {a}"));
            }
        }
    }
    let shown: Vec<String> = secret.iter().map(|a| a.to_string()).collect();
    out.push(
        "never_sees",
        format!(
            "no packet to {} carries the address of {}",
            hosts.join(", "),
            owners.join(", ")
        ),
        leaks.is_empty(),
        if leaks.is_empty() {
            format!("checked {} hosts for [{}]", hosts.len(), shown.join(", "))
        } else {
            leaks.join("; ")
        },
    );
    Ok(())
}

/// The hosts a leak check watches: `wanted`, where "*" means every host that does not own
/// one of the secret addresses (`owners`).
pub(super) fn watched_hosts(w: &World, wanted: &[&str], owners: &[&str]) -> Vec<String> {
    if wanted.contains(&"*") {
        w.nodes
            .iter()
            .filter(|(n, &id)| {
                matches!(w.sim.node(id).kind, NodeKind::Host(_)) && !owners.contains(&n.as_str())
            })
            .map(|(n, _)| n.clone())
            .collect()
    } else {
        wanted.iter().map(|s| s.to_string()).collect()
    }
}
