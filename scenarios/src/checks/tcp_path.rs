//! `tcp_path`: the `tcp-probe` on `host` connects exactly when `expect` says (by default
//! when the oracle says a TCP path exists).

use super::{CheckKind, Outcome};
use crate::model::Params;
use crate::world::World;
use anyhow::{anyhow, bail, Result};
use netsim::apps::probe::TcpProbe;
use netsim::oracle;

inventory::submit! { CheckKind { name: "tcp_path", params: &["host", "expect"], eval } }

fn eval(w: &World, _what: &str, p: &Params<'_>, out: &mut Outcome) -> Result<()> {
    let host = p.str("host")?;
    let (a, probe) = w.actor_state::<TcpProbe>(host, "tcp-probe")?;
    let target = w
        .host_at(probe.to.ip())
        .ok_or_else(|| anyhow!("no host has {}", probe.to.ip()))?;
    let predicted = oracle::tcp_reachable(&w.sim, a.node, target);
    let expect = match p.opt_str("expect")?.unwrap_or("oracle") {
        "oracle" => predicted,
        "yes" => true,
        "no" => false,
        x => bail!("`expect` must be oracle, yes or no, not `{x}`"),
    };
    out.push(
        "tcp_path",
        format!(
            "{host} {} open a TCP connection to {}",
            if expect { "can" } else { "cannot" },
            probe.to
        ),
        probe.connected == expect,
        format!(
            "connected: {}, reset: {}, oracle: {predicted}",
            probe.connected,
            probe.reset.as_deref().unwrap_or("no")
        ),
    );
    out.summary.push(format!(
        "{host}: {}",
        if probe.connected {
            "connects"
        } else {
            "no path"
        }
    ));
    Ok(())
}
