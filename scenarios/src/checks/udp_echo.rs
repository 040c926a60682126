//! `udp_echo` / `udp_blocked`: the `udp-probe` on `host` got echoes back, or none at all.

use super::{CheckKind, Outcome};
use crate::model::Params;
use crate::world::World;
use anyhow::Result;
use netsim::apps::probe::UdpProbe;

inventory::submit! { CheckKind { name: "udp_echo", params: &["host"], eval } }
inventory::submit! { CheckKind { name: "udp_blocked", params: &["host"], eval } }

fn eval(w: &World, what: &str, p: &Params<'_>, out: &mut Outcome) -> Result<()> {
    let host = p.str("host")?;
    let (_, probe) = w.actor_state::<UdpProbe>(host, "udp-probe")?;
    let want_echo = what == "udp_echo";
    let passed = probe.sent > 0
        && if want_echo {
            probe.echoed > 0
        } else {
            probe.echoed == 0
        };
    let desc = if want_echo {
        format!("UDP from {host} to {} is echoed", probe.to)
    } else {
        format!("UDP from {host} to {} never arrives", probe.to)
    };
    out.push(
        what,
        desc,
        passed,
        format!("sent {} datagrams, {} echoed", probe.sent, probe.echoed),
    );
    out.summary
        .push(format!("udp {}/{}", probe.echoed, probe.sent));
    Ok(())
}
