//! `deterministic`: the runner runs the case a second time with the same seed and
//! compares the traces; nothing is left to evaluate here.

use super::{CheckKind, Outcome};
use crate::model::Params;
use crate::world::World;
use anyhow::Result;

inventory::submit! { CheckKind { name: "deterministic", params: &[], eval } }

fn eval(_w: &World, _what: &str, _p: &Params<'_>, _out: &mut Outcome) -> Result<()> {
    Ok(())
}
