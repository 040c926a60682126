//! `nat_type`: the RFC 5780 client on `host` classifies its NAT as `expect` (by default
//! what the oracle predicts from the topology), with `hairpin` likewise.

use super::{CheckKind, Outcome};
use crate::model::Params;
use crate::world::World;
use anyhow::{anyhow, bail, Result};
use netsim::apps::discovery::NatDiscovery;
use netsim::oracle;
use reports::{Cell, Table};

inventory::submit! { CheckKind { name: "nat_type", params: &["host", "expect", "hairpin"], eval } }

fn eval(w: &World, _what: &str, p: &Params<'_>, out: &mut Outcome) -> Result<()> {
    let host = p.str("host")?;
    let (a, d) = w.actor_state::<NatDiscovery>(host, "nat-discovery")?;
    let expect = p.opt_str("expect")?.unwrap_or("oracle");
    let predicted = oracle::expected_discovery(&w.sim, a.node);
    let (want_type, want_hairpin) = match expect {
        "oracle" => match predicted {
            Some((t, h)) => (Some(t), Some(h)),
            None => (None, None),
        },
        "none" => (None, None),
        s => (Some(s.parse().map_err(|e: String| anyhow!(e))?), None),
    };
    let want_hairpin = match p.opt_str("hairpin")? {
        Some("oracle") | None => want_hairpin,
        Some("yes") => Some(true),
        Some("no") => Some(false),
        Some(x) => bail!("`hairpin` must be oracle, yes or no, not `{x}`"),
    };
    let Some(r) = &d.result else {
        out.push(
            "nat_type",
            format!("{host} classifies its NAT"),
            false,
            "discovery did not finish".into(),
        );
        return Ok(());
    };
    let got = r.nat.then(|| d.nat_type()).flatten();
    let type_ok = got == want_type;
    let hairpin_ok = match want_hairpin {
        Some(h) if r.nat => r.hairpin == h,
        _ => true,
    };
    let show =
        |t: Option<netsim::NatType>| t.map(|t| t.to_string()).unwrap_or_else(|| "no NAT".into());
    out.push(
        "nat_type",
        format!(
            "{host} classifies its NAT as {}{}",
            show(want_type),
            match want_hairpin {
                Some(true) => " with hairpinning",
                Some(false) => " without hairpinning",
                None => "",
            }
        ),
        type_ok && hairpin_ok,
        format!(
            "measured {} hairpin={} port_preserved={} mapped={}",
            show(got),
            r.hairpin,
            r.port_preserved,
            r.mapped
        ),
    );
    out.summary.push(format!(
        "{}{}",
        show(got),
        if r.hairpin { " +hairpin" } else { "" }
    ));
    out.tables.push(Table {
        title: "NAT discovery (RFC 5780)".into(),
        columns: vec![
            "host".into(),
            "configured".into(),
            "measured".into(),
            "hairpin".into(),
            "port preserved".into(),
        ],
        rows: vec![vec![
            Cell::text(host),
            Cell::text(show(want_type)),
            Cell {
                text: show(got),
                status: Some(type_ok),
            },
            Cell {
                text: r.hairpin.to_string(),
                status: Some(hairpin_ok),
            },
            Cell::text(r.port_preserved.to_string()),
        ]],
    });
    Ok(())
}
