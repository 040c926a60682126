//! Hand-built run report shared by the integration tests: a passing
//! scenario with two seeds, a failing one with a replay command and capsule,
//! a 2×2 matrix, a table, line and CDF series, and a second suite.
#![allow(dead_code)]

use reports::{Cell, CheckResult, RunReport, ScenarioResult, Series, SeriesKind, Table};

pub fn check(what: &str, passed: bool, detail: &str) -> CheckResult {
    CheckResult {
        what: what.into(),
        description: format!("{what} holds"),
        passed,
        detail: detail.into(),
    }
}

fn base_result(suite: &str, base: &str, matrix: &[(&str, &str)], seed: u64) -> ScenarioResult {
    let name = if matrix.is_empty() {
        base.to_string()
    } else {
        let m: Vec<String> = matrix.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("{base}[{}]", m.join(","))
    };
    ScenarioResult {
        suite: suite.into(),
        replay: format!("jamisim replay {name} --seed {seed}"),
        name,
        base: base.into(),
        about: String::new(),
        file: format!(
            "scenarios/{}.toml",
            base.trim_start_matches(&format!("{suite}/"))
        ),
        matrix: matrix
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        seed,
        passed: true,
        sim_seconds: 30.0,
        wall_seconds: 0.25,
        events: 12_000,
        trace_hash: format!("{:064x}", seed),
        ..Default::default()
    }
}

fn line(chart: &str, label: &str, slope: f64) -> Series {
    Series {
        chart: chart.into(),
        label: label.into(),
        kind: SeriesKind::Line,
        x_label: "time (s)".into(),
        y_label: "throughput (kbit/s)".into(),
        points: (0..=30)
            .map(|i| (i as f64, slope * i as f64 + (i % 5) as f64 * 10.0))
            .collect(),
    }
}

pub fn sample_report() -> RunReport {
    let mut scenarios = Vec::new();

    for seed in [1, 2] {
        let mut s = base_result("netsim", "netsim/basic", &[], seed);
        s.about = "two nodes on one LAN exchange a message".into();
        s.summary = "delivered".into();
        s.checks = vec![check("delivered", true, "")];
        scenarios.push(s);
    }

    let nats = [
        ("eim", "eim", "direct (host)"),
        ("eim", "apdf", "direct (srflx)"),
    ];
    let nats2 = [("apdm", "eim", "direct (srflx)"), ("apdm", "apdf", "relay")];
    for (i, (a, b, summary)) in nats.iter().chain(nats2.iter()).enumerate() {
        let mut s = base_result("netsim", "netsim/hole-punch", &[("a", a), ("b", b)], 7);
        s.about = "ICE between two NATed peers & a TURN server".into();
        s.summary = summary.to_string();
        s.checks = vec![check("connected", true, "")];
        s.events = 20_000 + i as u64 * 1_000;
        s.series = vec![
            line("Throughput", "a → b", 40.0),
            Series {
                chart: "Connect latency".into(),
                label: "ICE".into(),
                kind: SeriesKind::Cdf,
                x_label: "latency (ms)".into(),
                y_label: String::new(),
                points: (0..40)
                    .map(|k| (0.0, 50.0 + ((k * 37) % 40) as f64 * 5.0))
                    .collect(),
            },
            line("Throughput", "b → a", 25.0),
        ];
        if i == 0 {
            s.tables = vec![Table {
                title: "Candidates".into(),
                columns: vec!["type".into(), "address".into(), "selected".into()],
                rows: vec![
                    vec![
                        Cell::text("host"),
                        Cell::text("10.0.0.2:4000"),
                        Cell {
                            text: "no".into(),
                            status: Some(false),
                        },
                    ],
                    vec![
                        Cell::text("srflx"),
                        Cell::text("198.51.100.7:61000"),
                        Cell {
                            text: "yes".into(),
                            status: Some(true),
                        },
                    ],
                ],
            }];
        }
        scenarios.push(s);
    }

    let mut f = base_result("netsim", "netsim/reconnect", &[], 7);
    f.about = "peer reconnects after a link flap".into();
    f.passed = false;
    f.summary = "timeout".into();
    f.checks = vec![
        check(
            "reconnected",
            false,
            "no connection within 30 s (last state: checking)",
        ),
        check("no-crash", true, ""),
    ];
    f.capsule = Some("capsules/netsim-reconnect-7".into());
    f.trace_path = Some("traces/netsim-reconnect-7.jsonl".into());
    f.events = 90_000;
    f.series = vec![line("Backoff", "retry delay", 3.0)];
    scenarios.push(f);

    let mut c = base_result("conformance", "conformance/stun-binding", &[], 1);
    c.summary = "ok".into();
    c.sim_seconds = 1.0;
    c.wall_seconds = 0.05;
    c.events = 300;
    c.checks = vec![check("xor-mapped-address", true, "")];
    scenarios.push(c);

    RunReport {
        run_id: "20261125-110000".into(),
        commit: "0123abcd".into(),
        command: "jamisim run --suite netsim --suite conformance --seeds 1..2".into(),
        started_utc: "2026-11-25T11:00:00Z".into(),
        wall_seconds: 3.5,
        shard: None,
        scenarios,
        notes: vec!["skipped 1 scenario needing a real network: netsim/wan-live".into()],
    }
}

/// Charts `render_html` should draw for `sample_report`: Throughput and
/// Connect latency for hole-punch (once, not per case), Backoff for reconnect.
pub const SAMPLE_CHARTS: usize = 3;
