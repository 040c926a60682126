//! `path`: the best path the two `punch` peers of `between` achieve (host, srflx, relay,
//! none) is `expect` (by default the oracle's); with `relay`, TURN relaying works too.

use super::{CheckKind, Outcome};
use crate::model::Params;
use crate::world::World;
use anyhow::{bail, Result};
use netsim::apps::punch::PunchPeer;
use netsim::oracle::{self, PathKind};

inventory::submit! { CheckKind { name: "path", params: &["between", "expect", "relay"], eval } }

fn eval(w: &World, _what: &str, p: &Params<'_>, out: &mut Outcome) -> Result<()> {
    let between = p.strs("between")?;
    let [a, b] = between[..] else {
        bail!("`between` must name two hosts")
    };
    let (pa, ra) = w.actor_state::<PunchPeer>(a, "punch")?;
    let (pb, rb) = w.actor_state::<PunchPeer>(b, "punch")?;
    let predicted = oracle::udp_path(&w.sim, pa.node, pb.node);
    let expect = match p.opt_str("expect")?.unwrap_or("oracle") {
        "oracle" => predicted,
        "host" => PathKind::Host,
        "srflx" => PathKind::Srflx,
        "relay" => PathKind::Relay,
        "none" => PathKind::None,
        x => bail!("`expect` must be oracle, host, srflx, relay or none, not `{x}`"),
    };
    let direct = ra.achieved().min(rb.achieved());
    let direct = if direct.is_direct() {
        direct
    } else {
        PathKind::None
    };
    let relay_ok = ra.relay_ok && rb.relay_ok;
    let achieved = if direct.is_direct() {
        direct
    } else if relay_ok {
        PathKind::Relay
    } else {
        PathKind::None
    };
    let detail = format!(
        "{a}: {} (checks {}/{} answered, srflx {:?}, relay {:?}); {b}: {} (checks {}/{}); oracle: {predicted}",
        ra.achieved(),
        ra.checks_answered,
        ra.checks_sent,
        ra.local.srflx,
        ra.local.relay,
        rb.achieved(),
        rb.checks_answered,
        rb.checks_sent
    );
    out.push(
        "path",
        format!("best path {a} <-> {b} is {expect}"),
        achieved == expect,
        detail.clone(),
    );
    if p.bool("relay", false)? {
        out.push(
            "relay",
            format!("TURN relaying works between {a} and {b}"),
            relay_ok,
            detail,
        );
    }
    out.summary.push(achieved.to_string());
    Ok(())
}
