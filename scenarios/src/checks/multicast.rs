//! `multicast`: `sender`'s multicast reaches the hosts of `reaches` and none of `not_reaches`.

use super::{CheckKind, Outcome};
use crate::model::Params;
use crate::world::World;
use anyhow::Result;
use netsim::apps::probe::Multicast;

inventory::submit! { CheckKind { name: "multicast", params: &["sender", "reaches", "not_reaches"], eval } }

fn eval(w: &World, _what: &str, p: &Params<'_>, out: &mut Outcome) -> Result<()> {
    let sender = p.str("sender")?;
    let from = w.addr_of(sender)?;
    let heard = |h: &str| -> Result<bool> {
        let (_, m) = w.actor_state::<Multicast>(h, "multicast")?;
        Ok(m.heard_from.contains(&from))
    };
    let (mut missing, mut leaked) = (Vec::new(), Vec::new());
    for h in p.strs("reaches")? {
        if !heard(h)? {
            missing.push(h);
        }
    }
    for h in p.strs("not_reaches")? {
        if heard(h)? {
            leaked.push(h);
        }
    }
    out.push(
        "multicast",
        format!("{sender}'s multicast reaches its segment and nothing else"),
        missing.is_empty() && leaked.is_empty(),
        format!(
            "missed by: [{}]; heard outside the segment by: [{}]",
            missing.join(", "),
            leaked.join(", ")
        ),
    );
    Ok(())
}
