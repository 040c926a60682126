//! `tcp_punch`: the best direct TCP path the two `tcp-punch` peers of `between` found is
//! the one the oracle predicts (or `expect`: host, srflx, so, none).

use super::{CheckKind, Outcome};
use crate::model::Params;
use crate::world::World;
use anyhow::{anyhow, bail, Result};
use netsim::apps::tcp_punch::TcpPunchPeer;
use netsim::oracle::{self, TcpPath};

inventory::submit! { CheckKind { name: "tcp_punch", params: &["between", "expect"], eval } }

fn eval(w: &World, _what: &str, p: &Params<'_>, out: &mut Outcome) -> Result<()> {
    let between = p.strs("between")?;
    let [a, b] = between[..] else {
        bail!("`between` must name two hosts")
    };
    let (pa, ra) = w.actor_state::<TcpPunchPeer>(a, "tcp-punch")?;
    let (pb, rb) = w.actor_state::<TcpPunchPeer>(b, "tcp-punch")?;
    let predicted = oracle::tcp_path(&w.sim, pa.node, pb.node);
    let expect = match p.opt_str("expect")?.unwrap_or("oracle") {
        "oracle" => predicted,
        x => x.parse::<TcpPath>().map_err(|e| anyhow!("`expect`: {e}"))?,
    };
    let achieved = ra.achieved().min(rb.achieved());
    let side = |r: &TcpPunchPeer| {
        let ok: Vec<String> = r.succeeded.keys().map(|k| k.to_string()).collect();
        let failed: Vec<String> = r
            .failed
            .iter()
            .map(|(k, to, why)| format!("{k} to {to}: {why}"))
            .collect();
        format!(
            "ok [{}], failed [{}], local {:?}",
            ok.join(","),
            failed.join("; "),
            r.local.as_ref().map(|l| (l.srflx, l.so))
        )
    };
    out.push(
        "tcp_punch",
        format!("best direct TCP path {a} <-> {b} is {expect}"),
        achieved == expect,
        format!(
            "achieved {achieved}; {a}: {}; {b}: {}; oracle: {predicted}",
            side(ra),
            side(rb)
        ),
    );
    out.summary.push(format!("tcp {achieved}"));
    Ok(())
}
