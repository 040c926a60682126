//! `proxy_put`: the `dht-node` device on `host` (one with `proxy`: behind Tor, say) had
//! its own value (`put_at`) stored: through the proxy, the proxy answered 200.

use super::{CheckKind, Outcome};
use crate::glue::DhtApp;
use crate::model::Params;
use crate::world::World;
use anyhow::{anyhow, Result};

inventory::submit! { CheckKind { name: "proxy_put", params: &["host"], eval } }

fn eval(w: &World, _what: &str, p: &Params<'_>, out: &mut Outcome) -> Result<()> {
    let host = p.str("host")?;
    let (_, app) = w.actor_state::<DhtApp>(host, "dht-node")?;
    let backend = app
        .device()
        .map(|d| d.backend())
        .ok_or_else(|| anyhow!("the `dht-node` on `{host}` runs no device"))?;
    let proxied = matches!(backend, node::device::DhtBackend::Proxy(_));
    let stored = app.puts_done.iter().any(|(_, n)| *n > 0);
    out.push(
        "proxy_put",
        format!("{host} puts its value through the DHT proxy"),
        proxied && stored,
        format!(
            "backend {backend:?}, puts done (host, stored on): {:?}",
            app.puts_done
        ),
    );
    Ok(())
}
