//! # scenarios: suites as data, the runner and the checks
//!
//! A scenario is a TOML file: topology (NATs, LANs, VPN/Tor gateways, hosts and their
//! links), actors (programs on hosts), a timeline of steps (faults, link changes,
//! crashes) and checks. The runner expands matrices and seeds, shards, runs cases in
//! parallel (each simulation is single-threaded and deterministic), and writes the
//! report with a replay command for every failure.

pub mod actors;
pub mod checks;
pub mod expand;
pub mod glue;
pub mod http;
pub mod jami;
pub mod model;
pub mod names;
pub mod runner;
pub mod services;
pub mod steps;
pub mod streams;
pub mod world;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/suites.rs"));
}

pub use embedded::SUITE_FILES;
pub use expand::Case;
pub use runner::{run, run_case, select, RunOptions};

/// Names of the built-in suites, in order.
pub fn suites() -> Vec<&'static str> {
    let mut v: Vec<&str> = SUITE_FILES.iter().map(|(s, _, _)| *s).collect();
    v.dedup();
    v
}
