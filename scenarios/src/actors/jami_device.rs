//! `jami-device`: a forging Jami device behind the proxy at `proxy`:`port`: announces its
//! certificate and device at `announce_at`, spoiled as `forge` says (signer, issuer,
//! revoked), to show that peers refuse it. An honest device behind a proxy is a
//! `dht-node` with `jami = true` and `proxy`.

use super::ActorKind;
use crate::jami::{device_puts, Forgery, JamiDeviceApp};
use crate::model::Params;
use crate::world::World;
use anyhow::{anyhow, Result};
use netsim::{AppId, NodeId};

inventory::submit! {
    ActorKind {
        name: "jami-device",
        params: &["proxy", "port", "announce_at", "forge"],
        build,
    }
}

fn build(w: &mut World, host: &str, node: NodeId, p: &Params<'_>) -> Result<AppId> {
    let proxy = w.sock(p.str("proxy")?, p.port("port", 8000)?)?;
    let at = p.duration("announce_at", "10s")?;
    let forge: Forgery = p
        .opt_str("forge")?
        .unwrap_or("none")
        .parse()
        .map_err(|e: String| anyhow!(e))?;
    let me = w.jami_identity(host, "")?;
    let other = match forge {
        Forgery::None => me.clone(),
        _ => w.jami_identity(host, "forger")?,
    };
    let puts = device_puts(&me, &other, forge)?;
    Ok(w.sim.add_app(node, move || {
        Box::new(JamiDeviceApp::new(proxy, at, puts.clone()))
    }))
}
