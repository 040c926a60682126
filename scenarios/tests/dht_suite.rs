//! The `dht` suite: our OpenDHT-compatible node on LANs, behind every NAT type, through
//! a VPN, over Tor (where plain UDP must fail), under churn and at 1,000 nodes.

use scenarios::{runner, RunOptions};

#[test]
fn every_dht_scenario_passes() {
    let dir = std::env::temp_dir().join(format!("jamisim-dht-suite-{}", std::process::id()));
    let report = runner::run(&RunOptions {
        targets: vec!["dht".into()],
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
                "{} seed {}: {} {}",
                s.name,
                s.seed,
                s.error.clone().unwrap_or_default(),
                why.join("; ")
            )
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(report.scenarios.len() >= 15);
    let scale = report
        .scenarios
        .iter()
        .find(|s| s.name == "dht/scale-1000")
        .expect("the 1,000-node case ran");
    assert!(
        scale
            .series
            .iter()
            .any(|s| s.chart == "DHT get latency" && s.points.len() >= 990),
        "latency plotted for every get"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
