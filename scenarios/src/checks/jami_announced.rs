//! `jami_announced`: the Jami device on `host` got its device announcement stored — a
//! `dht-node` device (on UDP, or through its proxy), or the forging `jami-device`, whose
//! certificate and announcement puts the proxy must all have taken.

use super::{CheckKind, Outcome};
use crate::glue::DhtApp;
use crate::model::Params;
use crate::world::World;
use anyhow::{anyhow, Result};

inventory::submit! { CheckKind { name: "jami_announced", params: &["host"], eval } }

fn eval(w: &World, _what: &str, p: &Params<'_>, out: &mut Outcome) -> Result<()> {
    let host = p.str("host")?;
    let what = format!("{host} gets its device announcement stored on the DHT");
    if let Ok((_, app)) = w.actor_state::<DhtApp>(host, "dht-node") {
        let d = app
            .device()
            .ok_or_else(|| anyhow!("the `dht-node` on `{host}` runs no device"))?;
        let backend = match d.backend() {
            node::device::DhtBackend::Udp => "its UDP node".to_string(),
            node::device::DhtBackend::Proxy(p) => format!("the proxy at {p}"),
        };
        out.push(
            "jami_announced",
            what,
            d.announcements_stored() > 0,
            format!(
                "{} put(s) through {backend}, {} stored",
                d.announcements(),
                d.announcements_stored()
            ),
        );
        return Ok(());
    }
    let (_, app) = w.actor_state::<crate::jami::JamiDeviceApp>(host, "jami-device")?;
    let got: Vec<String> = app
        .exchanges
        .iter()
        .map(|e| format!("{} {:?} echoed {}", e.what, e.status, e.echoed))
        .collect();
    out.push("jami_announced", what, app.announced(), got.join("; "));
    Ok(())
}
