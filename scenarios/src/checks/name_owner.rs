//! `name_owner`: devices raced to register one name: exactly one got it (the others were
//! told it is taken), and every lookup any device made afterwards, including after a name
//! server crash and restart, returned the winner's address.

use super::{CheckKind, Outcome};
use crate::model::Params;
use crate::world::World;
use anyhow::Result;

inventory::submit! { CheckKind { name: "name_owner", params: &["devices", "lookers", "server", "min_replayed"], eval } }

fn eval(w: &World, _what: &str, p: &Params<'_>, out: &mut Outcome) -> Result<()> {
    use crate::names::{NameDeviceApp, NameServerApp, Request};
    let devices = p.strs("devices")?;
    let (mut regs, mut lookups) = (Vec::new(), Vec::new());
    for h in devices.iter().chain(p.strs("lookers")?.iter()) {
        let (_, app) = w.actor_state::<NameDeviceApp>(h, "name-device")?;
        for e in &app.done {
            match e.request {
                Request::Register => regs.push((h.to_string(), app.address(), e.status)),
                Request::Lookup => lookups.push((
                    h.to_string(),
                    e.at,
                    e.status,
                    e.addr
                        .as_deref()
                        .map(|a| a.trim_start_matches("0x").to_string()),
                )),
            }
        }
    }
    let winners: Vec<&(String, String, Option<u16>)> =
        regs.iter().filter(|r| r.2 == Some(200)).collect();
    let others_told_taken = regs
        .iter()
        .filter(|r| r.2 != Some(200))
        .all(|r| r.2 == Some(409));
    let one_owner = regs.len() == devices.len() && winners.len() == 1 && others_told_taken;
    let owner = winners.first().map(|w| w.1.clone());
    let lookups_ok = !lookups.is_empty()
        && lookups
            .iter()
            .all(|l| l.2 == Some(200) && l.3.is_some() && l.3 == owner);
    let (_, server) = w.actor_state::<NameServerApp>(p.str("server")?, "name-server")?;
    let min_replayed = p.int("min_replayed", 0)? as u64;
    let replayed_ok = server.replayed >= min_replayed;
    let winner = winners.first().map(|w| w.0.as_str()).unwrap_or("nobody");
    out.push(
        "name_owner",
        format!(
            "{} devices race for one name: one owner, every lookup returns it{}",
            devices.len(),
            if min_replayed > 0 { " (also after the name server restarted)" } else { "" }
        ),
        one_owner && lookups_ok && replayed_ok,
        format!(
            "registrations {:?}; owner {winner}; {} lookups, {} returned the owner; server replayed {} records after its last start",
            regs.iter().map(|r| (r.0.as_str(), r.2)).collect::<Vec<_>>(),
            lookups.len(),
            lookups.iter().filter(|l| l.2 == Some(200) && l.3 == owner).count(),
            server.replayed
        ),
    );
    out.summary.push(format!("name owner: {winner}"));
    Ok(())
}
