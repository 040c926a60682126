//! `tcp_echo` / `tcp_refused`: the `tcp-probe` on `host` got every byte echoed, or was
//! refused with a reset.

use super::{CheckKind, Outcome};
use crate::model::Params;
use crate::world::World;
use anyhow::Result;
use netsim::apps::probe::TcpProbe;

inventory::submit! { CheckKind { name: "tcp_echo", params: &["host"], eval } }
inventory::submit! { CheckKind { name: "tcp_refused", params: &["host"], eval } }

fn eval(w: &World, what: &str, p: &Params<'_>, out: &mut Outcome) -> Result<()> {
    let host = p.str("host")?;
    let (_, probe) = w.actor_state::<TcpProbe>(host, "tcp-probe")?;
    let detail = format!(
        "connected: {}, echoed {}/{} bytes, reset: {}",
        probe.connected,
        probe.echoed,
        probe.bytes,
        probe.reset.as_deref().unwrap_or("no")
    );
    if what == "tcp_echo" {
        let passed = probe.connected && probe.echoed == probe.bytes;
        out.push(
            what,
            format!("TCP from {host} to {} carries every byte", probe.to),
            passed,
            detail,
        );
        out.summary
            .push(format!("tcp {}", if passed { "ok" } else { "failed" }));
    } else {
        let passed = !probe.connected && probe.reset.is_some();
        out.push(
            what,
            format!("TCP from {host} to {} is refused", probe.to),
            passed,
            detail,
        );
    }
    Ok(())
}
