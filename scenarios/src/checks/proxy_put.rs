//! `proxy_put`: the `proxy-put` on `host` got 200 and its value echoed by the DHT proxy.

use super::{CheckKind, Outcome};
use crate::model::Params;
use crate::world::World;
use anyhow::Result;

inventory::submit! { CheckKind { name: "proxy_put", params: &["host"], eval } }

fn eval(w: &World, _what: &str, p: &Params<'_>, out: &mut Outcome) -> Result<()> {
    let host = p.str("host")?;
    let (_, app) = w.actor_state::<crate::glue::ProxyPutApp>(host, "proxy-put")?;
    out.push(
        "proxy_put",
        format!("{host} puts its value through the DHT proxy"),
        app.status == Some(200) && app.echoed,
        format!("status {:?}, value echoed: {}", app.status, app.echoed),
    );
    Ok(())
}
