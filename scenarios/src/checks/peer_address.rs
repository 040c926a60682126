//! `peer_address`: every packet `host` received came from `equals`'s address (what a peer
//! behind a VPN or Tor exposes).

use super::{CheckKind, Outcome};
use crate::model::Params;
use crate::world::World;
use anyhow::{anyhow, Result};

inventory::submit! { CheckKind { name: "peer_address", params: &["host", "equals"], eval } }

fn eval(w: &World, _what: &str, p: &Params<'_>, out: &mut Outcome) -> Result<()> {
    let host = p.str("host")?;
    let expect = p.str("equals")?;
    let want = w.addr_of(expect)?;
    let h = w
        .sim
        .host(w.host_node(host)?)
        .ok_or_else(|| anyhow!("not a host"))?;
    let seen: Vec<String> = h.seen_sources.iter().map(|a| a.to_string()).collect();
    let passed = !h.seen_sources.is_empty() && h.seen_sources.iter().all(|a| *a == want);
    out.push(
        "peer_address",
        format!("{host} sees only {expect}'s address {want}"),
        passed,
        format!("source addresses seen by {host}: [{}]", seen.join(", ")),
    );
    Ok(())
}
