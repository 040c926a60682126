//! The `jamisim` command line as a user meets it: a run writes every report file, and a
//! failing case prints a replay command that reproduces it exactly.

use std::path::Path;
use std::process::Command;

fn jamisim(args: &[&str], cwd: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_jamisim"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("jamisim runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

const FAILING: &str = r#"
[scenario]
name = "too-optimistic"
about = "expects more than the link carries"
duration = "6s"

[[host]]
name = "sender"
link = { preset = "internet", bandwidth = "1Mbit", queue = "32KiB", loss = 0.01 }

[[host]]
name = "receiver"

[[actor]]
host = "receiver"
run = "sink"

[[actor]]
host = "sender"
run = "udp-sender"
to = "receiver"
rate = "3Mbit"

[[check]]
what = "goodput"
host = "receiver"
rate = "3Mbit"
from = "2s"
to = "5s"
"#;

#[test]
fn run_writes_the_report_and_replays_a_failure() {
    let dir = std::env::temp_dir().join(format!("jamisim-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("too-optimistic.toml");
    std::fs::write(&file, FAILING).unwrap();

    let (code, text) = jamisim(
        &[
            "run",
            "netsim/vpn",
            file.to_str().unwrap(),
            "--out",
            "out",
            "--quiet",
            "--seed",
            "4",
        ],
        &dir,
    );
    assert_eq!(code, 1, "a failed check makes the run fail:\n{text}");
    for f in ["report.md", "index.html", "junit.xml", "results.json"] {
        assert!(dir.join("out").join(f).exists(), "{f} missing");
    }
    let replay = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("replay: "))
        .unwrap_or_else(|| panic!("no replay line in:\n{text}"))
        .to_string();
    assert!(
        replay.contains("--seed 4") && replay.contains("too-optimistic"),
        "{replay}"
    );
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("out/results.json")).unwrap())
            .unwrap();
    let failed = results["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["passed"] == false)
        .unwrap()
        .clone();
    assert!(dir
        .join("out")
        .join(failed["capsule"].as_str().unwrap())
        .join("capsule.json")
        .exists());

    // Run the printed command as a shell would (it quotes the id).
    let words: Vec<String> = replay
        .split_whitespace()
        .skip(1)
        .map(|w| w.trim_matches('\'').to_string())
        .collect();
    let mut args: Vec<&str> = words.iter().map(String::as_str).collect();
    args.extend(["--out", "replayed"]);
    let (code, text) = jamisim(&args, &dir);
    assert_eq!(code, 1, "the replay fails the same way:\n{text}");
    let again: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("replayed/results.json")).unwrap())
            .unwrap();
    let replayed = &again["scenarios"][0];
    assert_eq!(replayed["name"], failed["name"]);
    assert_eq!(
        replayed["trace_hash"], failed["trace_hash"],
        "same seed, same trace"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn list_and_bad_targets() {
    let dir = std::env::temp_dir();
    let (code, text) = jamisim(&["list", "netsim"], &dir);
    assert_eq!(code, 0);
    assert!(text.contains("netsim/hole-punch[a=none,b=none]"), "{text}");
    let (code, text) = jamisim(&["run", "no-such-suite", "--quiet"], &dir);
    assert_eq!(code, 2);
    assert!(text.contains("matches no suite"), "{text}");
}
