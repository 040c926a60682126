//! `never_learns`: the IP-exposure audit (the FAQ's "When do public IPs get exposed?").
//! Every address of `address_of` that another host learned, from the source of a packet
//! it received or from a candidate inside an `ice_msg` its device decrypted, is listed
//! in a table; the check fails if any host of `hosts` (`"*"`: every host but the owners)
//! learned one. With `learns = true` it asserts the opposite, as the FAQ does for the
//! classic set-up: each host of `hosts` learned at least one of the addresses (a
//! connection's `ice_msg` carries the device's LAN and public addresses).

use super::{CheckKind, Outcome};
use crate::glue::DhtApp;
use crate::model::Params;
use crate::world::World;
use anyhow::{anyhow, Result};
use netsim::NodeKind;
use std::collections::BTreeMap;
use std::net::IpAddr;

inventory::submit! { CheckKind { name: "never_learns", params: &["hosts", "address_of", "learns"], eval } }

/// How a host learnt an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Via {
    Packet,
    Candidate,
}

/// Every (host, address, via) of `owners`' addresses learnt by a host other than the owners.
fn learned(w: &World, owners: &[&str]) -> Result<BTreeMap<(String, IpAddr), Vec<Via>>> {
    let mut secret = Vec::new();
    for o in owners {
        secret.extend(w.addrs_of(o)?);
    }
    // A gateway's entry and exit may be one address.
    secret.sort();
    secret.dedup();
    let mut out: BTreeMap<(String, IpAddr), Vec<Via>> = BTreeMap::new();
    for (name, &id) in &w.nodes {
        let NodeKind::Host(h) = &w.sim.node(id).kind else {
            continue;
        };
        if owners.contains(&name.as_str()) {
            continue;
        }
        for a in &secret {
            if h.seen_sources.contains(a) {
                out.entry((name.clone(), *a)).or_default().push(Via::Packet);
            }
        }
        // Candidates its device decrypted (devices with Jami services only).
        let candidates = w
            .actor_state::<DhtApp>(name, "dht-node")
            .ok()
            .and_then(|(_, app)| app.device())
            .and_then(|d| d.services())
            .map(|s| {
                s.learned_addresses()
                    .values()
                    .flatten()
                    .map(|sa| sa.ip())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        for ip in candidates {
            if secret.contains(&ip) {
                let v = out.entry((name.clone(), ip)).or_default();
                if !v.contains(&Via::Candidate) {
                    v.push(Via::Candidate);
                }
            }
        }
    }
    Ok(out)
}

fn eval(w: &World, _what: &str, p: &Params<'_>, out: &mut Outcome) -> Result<()> {
    let owners = p.strs("address_of")?;
    let hosts = super::never_sees::watched_hosts(w, &p.strs("hosts")?, &owners);
    for h in &hosts {
        w.host_node(h).map_err(|e| anyhow!("`hosts`: {e}"))?;
    }
    let table = learned(w, &owners)?;
    let mut rows = vec![
        "| host | address | learnt from |".to_string(),
        "|---|---|---|".to_string(),
    ];
    let mut leaks = Vec::new();
    let learns = p.bool("learns", false)?;
    let mut report = reports::Table {
        title: format!(
            "IP exposure: what other hosts learnt of {}",
            owners.join(", ")
        ),
        columns: vec!["host".into(), "address".into(), "learnt from".into()],
        rows: Vec::new(),
    };
    for ((h, a), via) in &table {
        let via: Vec<&str> = via
            .iter()
            .map(|v| match v {
                Via::Packet => "packet source",
                Via::Candidate => "ICE candidate",
            })
            .collect();
        rows.push(format!("| {h} | {a} | {} |", via.join(", ")));
        // Red where the scenario says this host must not learn it.
        let watched = hosts.contains(h);
        report.rows.push(vec![
            reports::Cell::text(h.clone()),
            reports::Cell {
                text: a.to_string(),
                status: (watched && !learns).then_some(false),
            },
            reports::Cell::text(via.join(", ")),
        ]);
        if hosts.contains(h) {
            leaks.push(format!("{h} learnt {a} ({})", via.join(", ")));
        }
    }
    out.tables.push(report);
    if learns {
        let silent: Vec<&String> = hosts
            .iter()
            .filter(|h| !table.keys().any(|(k, _)| k == *h))
            .collect();
        out.push(
            "never_learns",
            format!(
                "{} learn an address of {}",
                hosts.join(", "),
                owners.join(", ")
            ),
            silent.is_empty(),
            format!(
                "{}what others learnt of {}:\n{}",
                if silent.is_empty() {
                    String::new()
                } else {
                    format!("learnt nothing: {silent:?}; ")
                },
                owners.join(", "),
                rows.join("\n")
            ),
        );
        return Ok(());
    }
    out.push(
        "never_learns",
        format!(
            "{} never learn an address of {}",
            hosts.join(", "),
            owners.join(", ")
        ),
        leaks.is_empty(),
        if leaks.is_empty() {
            format!(
                "what others learnt of {}:\n{}",
                owners.join(", "),
                rows.join("\n")
            )
        } else {
            format!("{}\n{}", leaks.join("; "), rows.join("\n"))
        },
    );
    Ok(())
}
