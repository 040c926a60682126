//! `dht_connected`: the `dht-node` on `host` joins the DHT (or, with `expect = false`, cannot).

use super::{CheckKind, Outcome};
use crate::glue::DhtApp;
use crate::model::Params;
use crate::world::World;
use anyhow::Result;

inventory::submit! { CheckKind { name: "dht_connected", params: &["host", "expect"], eval } }

fn eval(w: &World, _what: &str, p: &Params<'_>, out: &mut Outcome) -> Result<()> {
    let host = p.str("host")?;
    let (_, app) = w.actor_state::<DhtApp>(host, "dht-node")?;
    let want = p.bool("expect", true)?;
    let got = app.connected_at.is_some();
    out.push(
        "dht_connected",
        format!(
            "{host} {} the DHT",
            if want { "joins" } else { "cannot join" }
        ),
        got == want,
        format!(
            "connected at {:?}; routing table {} nodes",
            app.connected_at,
            app.engine().map(|d| d.routing_table().len()).unwrap_or(0)
        ),
    );
    Ok(())
}
