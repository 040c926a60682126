//! `jami_announced`: the `jami-device` on `host` put its certificate and device
//! announcement through the proxy.

use super::{CheckKind, Outcome};
use crate::model::Params;
use crate::world::World;
use anyhow::Result;

inventory::submit! { CheckKind { name: "jami_announced", params: &["host"], eval } }

fn eval(w: &World, _what: &str, p: &Params<'_>, out: &mut Outcome) -> Result<()> {
    let host = p.str("host")?;
    let (_, app) = w.actor_state::<crate::jami::JamiDeviceApp>(host, "jami-device")?;
    let got: Vec<String> = app
        .exchanges
        .iter()
        .map(|e| format!("{} {:?} echoed {}", e.what, e.status, e.echoed))
        .collect();
    out.push(
        "jami_announced",
        format!("{host} puts its certificate and device announcement through the proxy"),
        app.announced(),
        got.join("; "),
    );
    Ok(())
}
