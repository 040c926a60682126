//! Checks: what a scenario asserts once its timeline has run. Each produces a pass/fail
//! with a detail line a person can act on, and may add a summary word, plots and tables
//! to the report. Each kind is one module that registers itself with
//! `inventory::submit!` (a new protocol adds a file, never an arm to a central match),
//! beside the test that breaks its model and sees it fail.

use crate::model::{CheckSpec, Params};
use crate::world::World;
use anyhow::{bail, Result};
use reports::{CheckResult, Series, Table};

mod deterministic;
mod dht_connected;
mod dht_flood;
mod dht_gets;
mod goodput;
mod ice_connect;
mod jami_announced;
mod message_delivered;
mod multicast;
mod name_owner;
mod nat_type;
mod never_learns;
mod never_sees;
mod online;
mod path;
mod peer_address;
mod proxy_put;
mod queue_drops;
mod tcp_echo;
mod tcp_path;
mod tcp_punch;
mod udp_delivery;
mod udp_echo;

/// What the checks of one run produced.
#[derive(Default, Debug)]
pub struct Outcome {
    pub checks: Vec<CheckResult>,
    pub summary: Vec<String>,
    pub series: Vec<Series>,
    pub tables: Vec<Table>,
}

impl Outcome {
    pub(crate) fn push(&mut self, what: &str, description: String, passed: bool, detail: String) {
        self.checks.push(CheckResult {
            what: what.to_string(),
            description,
            passed,
            detail,
        });
    }
}

/// Evaluate one check; a malformed check is a failed check that says why.
pub fn evaluate(w: &World, c: &CheckSpec, out: &mut Outcome) {
    if let Err(e) = eval(w, c, out) {
        out.push(
            &c.what,
            format!("{} (invalid check)", c.what),
            false,
            format!("{e:#}"),
        );
    }
}

/// One kind of check.
pub struct CheckKind {
    /// The name a scenario gives in `what = "..."`.
    pub name: &'static str,
    /// The keys it accepts besides `what`.
    pub params: &'static [&'static str],
    /// Evaluates the check on the world after the run (`what` is its name, for the kinds
    /// that register one function under two names).
    pub eval: fn(w: &World, what: &str, p: &Params<'_>, out: &mut Outcome) -> Result<()>,
}

inventory::collect!(CheckKind);

/// Every registered check name, sorted.
pub fn names() -> Vec<&'static str> {
    let mut v: Vec<&str> = inventory::iter::<CheckKind>
        .into_iter()
        .map(|k| k.name)
        .collect();
    v.sort_unstable();
    v
}

fn eval(w: &World, c: &CheckSpec, out: &mut Outcome) -> Result<()> {
    let p = Params::new(format!("check `{}`", c.what), &c.params);
    let Some(kind) = inventory::iter::<CheckKind>
        .into_iter()
        .find(|k| k.name == c.what)
    else {
        bail!("unknown check `{}` (known: {})", c.what, names().join(", "));
    };
    p.only(kind.params)?;
    (kind.eval)(w, &c.what, &p, out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_kind_registers_once() {
        let names = super::names();
        assert!(names.len() >= 21, "{names:?}");
        let mut unique = names.clone();
        unique.dedup();
        assert_eq!(unique, names, "a check is registered twice");
        for both in ["udp_echo", "udp_blocked", "tcp_echo", "tcp_refused"] {
            assert!(names.contains(&both), "{both}");
        }
    }
}
