//! `udp_delivery`: across every `udp-probe`, at least `min_ratio` of the datagrams came back.

use super::{CheckKind, Outcome};
use crate::model::Params;
use crate::world::World;
use anyhow::Result;
use netsim::apps::probe::UdpProbe;

inventory::submit! { CheckKind { name: "udp_delivery", params: &["min_ratio"], eval } }

fn eval(w: &World, _what: &str, p: &Params<'_>, out: &mut Outcome) -> Result<()> {
    let min = p.float("min_ratio", 0.99)?;
    let (mut sent, mut echoed, mut probes) = (0u64, 0u64, 0u64);
    for a in w.actors.iter().filter(|a| a.run == "udp-probe") {
        if let Some(pr) = w.sim.app::<UdpProbe>(a.node, a.app) {
            sent += pr.sent as u64;
            echoed += pr.echoed as u64;
            probes += 1;
        }
    }
    let ratio = if sent == 0 {
        0.0
    } else {
        echoed as f64 / sent as f64
    };
    out.push(
        "udp_delivery",
        format!("at least {:.1}% of UDP probes come back", min * 100.0),
        ratio >= min,
        format!(
            "{echoed} of {sent} datagrams echoed ({:.2}%) across {probes} probes",
            ratio * 100.0
        ),
    );
    out.summary.push(format!("{:.2}% echoed", ratio * 100.0));
    Ok(())
}
