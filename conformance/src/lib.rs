//! Conformance harness: finds the official Jami/OpenDHT programs and decides
//! whether a test runs, skips, or (in CI with `JAMISIM_REQUIRE_PEERS=1`) fails.

pub mod coturn;
pub mod dhtnode;
pub mod jamid;
pub mod nameserver;
pub mod natlab;
pub mod netns;
pub mod ours;
pub mod python;

pub use python::{PythonOpenDht, ScriptOutput, TempDir};

/// Set to `1` to turn every "official program missing" skip into a failure.
pub const REQUIRE_PEERS_ENV: &str = "JAMISIM_REQUIRE_PEERS";

/// The skip line printed when python3-opendht is unavailable.
pub const PYTHON_OPENDHT_SKIP: &str =
    "SKIP: python3-opendht not installed (apt-get install python3-opendht)";

/// Whether missing official programs must fail the run instead of skipping.
pub fn peers_required() -> bool {
    std::env::var(REQUIRE_PEERS_ENV).is_ok_and(|v| v.trim() == "1")
}

/// The shared skip rule: print `message` to stderr, or panic with it when
/// [`REQUIRE_PEERS_ENV`] is `1`.
pub fn skip_or_fail(message: &str) {
    skip_or_fail_with(message, peers_required());
}

/// [`skip_or_fail`] with the requirement given explicitly (testable without env races).
pub fn skip_or_fail_with(message: &str, required: bool) {
    if required {
        panic!("{message}");
    }
    eprintln!("{message}");
}

/// The official python3-opendht, or `None` after applying the skip rule.
///
/// Usage: `let Some(py) = conformance::python_opendht_or_skip() else { return };`
pub fn python_opendht_or_skip() -> Option<PythonOpenDht> {
    let found = PythonOpenDht::find();
    if found.is_none() {
        skip_or_fail(PYTHON_OPENDHT_SKIP);
    }
    if let Some(py) = &found {
        if py.version() != python::EXPECTED_VERSION {
            eprintln!(
                "note: python3-opendht reports version {:?}, suite targets {}",
                py.version(),
                python::EXPECTED_VERSION
            );
        }
    }
    found
}

/// The skip line printed when dhtnode is unavailable.
pub const DHTNODE_SKIP: &str = "SKIP: dhtnode not installed (apt-get install dhtnode)";

/// Whether `program arg` runs here (the program is installed), output discarded.
fn runs(program: &str, arg: &str) -> bool {
    std::process::Command::new(program)
        .arg(arg)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok()
}

/// Whether `program` is installed (`program arg` runs) and we are root, as an official
/// program run in a network namespace of its own needs; applies the skip rule (with
/// `skip`, or the root line naming `what`) when not.
fn namespaced_program_or_skip(program: &str, arg: &str, skip: &str, what: &str) -> bool {
    let ok = runs(program, arg);
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !ok {
        skip_or_fail(skip);
    } else if !root {
        skip_or_fail(&format!(
            "SKIP: {what} checks need root to create a network namespace"
        ));
    }
    ok && root
}

/// Whether the official `dhtnode` and the tools to give it a namespace (`ip`, root)
/// are here; applies the skip rule when not.
pub fn dhtnode_or_skip() -> bool {
    namespaced_program_or_skip("dhtnode", "--help", DHTNODE_SKIP, "dhtnode")
}

/// The skip line printed when the official Jami daemon is unavailable.
pub const JAMID_SKIP: &str =
    "SKIP: jamid not installed (apt-get install jami-daemon dbus; expects /usr/libexec/jamid)";

/// Whether the official `jamid`, `dbus-daemon` and `dhtnode` (its bootstrap) are here and
/// we are root (jamid must run in a network namespace of its own); applies the skip
/// rule when not.
pub fn jamid_or_skip() -> bool {
    if !std::path::Path::new(jamid::JAMID).exists() {
        skip_or_fail(JAMID_SKIP);
        return false;
    }
    if !runs("dbus-daemon", "--version") {
        skip_or_fail("SKIP: dbus-daemon not installed (apt-get install dbus); jamid needs a bus");
        return false;
    }
    // dhtnode_or_skip checks root and the DHT bootstrap node the accounts need.
    dhtnode_or_skip()
}

/// The skip line printed when coturn is unavailable.
pub const COTURN_SKIP: &str = "SKIP: turnserver not installed (apt-get install coturn)";

/// Whether the official coturn `turnserver` is here and we are root (it runs in a
/// network namespace of its own); applies the skip rule when not.
pub fn coturn_or_skip() -> bool {
    namespaced_program_or_skip("turnserver", "--version", COTURN_SKIP, "coturn")
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn skip_prints_when_not_required() {
        skip_or_fail_with(PYTHON_OPENDHT_SKIP, false);
    }

    #[test]
    #[should_panic(expected = "SKIP: python3-opendht not installed")]
    fn skip_panics_when_required() {
        skip_or_fail_with(PYTHON_OPENDHT_SKIP, true);
    }
}
