//! Shared by the suite tests: run a built-in suite and fail with every failing case's
//! checks and replay command.

use scenarios::{runner, RunOptions};

pub fn run_suite_all_passing(suite: &str) -> reports::RunReport {
    let dir = std::env::temp_dir().join(format!(
        "jamisim-{}-suite-{}",
        suite.replace('/', "-"),
        std::process::id()
    ));
    let report = runner::run(&RunOptions {
        targets: vec![suite.into()],
        out: dir.clone(),
        ..Default::default()
    })
    .expect("suite runs");
    let failures: Vec<String> = report
        .scenarios
        .iter()
        .filter(|s| !s.passed)
        .map(|s| {
            let why: Vec<String> = s
                .checks
                .iter()
                .filter(|c| !c.passed)
                .map(|c| format!("{}: {}", c.description, c.detail))
                .collect();
            format!(
                "{} seed {}: {} {} ({})",
                s.name,
                s.seed,
                s.error.clone().unwrap_or_default(),
                why.join("; "),
                s.replay
            )
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    for f in ["report.md", "index.html", "junit.xml", "results.json"] {
        assert!(dir.join(f).exists(), "{f} written");
    }
    let _ = std::fs::remove_dir_all(&dir);
    report
}
