//! Rendering tests: snapshots of the text outputs, and structural checks of
//! the HTML and JUnit that snapshots would not catch on their own.

mod common;

use common::{sample_report, SAMPLE_CHARTS};
use reports::{render_html, render_junit, render_markdown};

#[test]
fn markdown_snapshot() {
    insta::assert_snapshot!(render_markdown(&sample_report()));
}

#[test]
fn junit_snapshot() {
    insta::assert_snapshot!(render_junit(&sample_report()));
}

#[test]
fn markdown_lists_failure_first_with_replay() {
    let md = render_markdown(&sample_report());
    let fail = md.find("## Failures").expect("failures section");
    let suite = md.find("## Suite").expect("suite section");
    assert!(fail < suite, "failures must come before suite tables");
    assert!(md.contains("`jamisim replay netsim/reconnect --seed 7`"));
    // 2x2 grid: header row with both column values, a row per first value.
    assert!(md.contains("| a ↓ / b → | eim | apdf |"));
    assert!(md.contains("| **apdm** | direct (srflx) ✅ | relay ✅ |"));
    // Two seeds of basic collapse into one row.
    assert!(md.contains("| netsim/basic | 1, 2 | 2 | 0 |"));
}

#[test]
fn html_is_self_contained_escaped_and_has_charts() {
    let mut r = sample_report();
    r.scenarios[0].name = "netsim/<script>alert(\"x&y\")</script>".into();
    let html = render_html(&r);

    assert!(html.starts_with("<!DOCTYPE html>"));
    assert_eq!(
        html.matches("<svg").count(),
        SAMPLE_CHARTS,
        "one <svg> per chart"
    );
    assert_eq!(html.matches("</svg>").count(), SAMPLE_CHARTS);

    // No external references; the SVG namespace is an identifier, not a fetch.
    let stripped = html.replace("http://www.w3.org/2000/svg", "");
    assert!(!stripped.contains("http://"), "external http reference");
    assert!(!stripped.contains("https://"), "external https reference");
    assert!(!html.contains("<script"), "raw script tag leaked");
    assert!(html.contains("netsim/&lt;script&gt;alert(&quot;x&amp;y&quot;)&lt;/script&gt;"));

    assert!(html.contains("jamisim replay netsim/reconnect --seed 7"));
    assert!(html.contains("capsules/netsim-reconnect-7"));
    // Plot labels survive as SVG text; the first series uses the first colour.
    let texts = svg_texts(&html);
    assert!(
        texts.iter().any(|t| t == "time (s)"),
        "axis label: {texts:?}"
    );
    assert!(texts.iter().any(|t| t == "Throughput"), "chart caption");
    assert!(
        texts.iter().any(|t| t == "a → b"),
        "legend of a multi-series chart"
    );
    assert!(
        !texts.iter().any(|t| t == "ICE"),
        "no legend for a single series"
    );
    assert!(html.to_ascii_lowercase().contains("stroke=\"#1f77b4\""));
    // Matrix grid cells are coloured.
    assert!(html.contains("<td class=\"pass\">relay ✓</td>"));
    assert!(html.contains("<td class=\"fail\">timeout ✗</td>"));
}

#[test]
fn cdf_charts_pool_every_case_and_seed() {
    // The four hole-punch cases each carry 40 latency samples under one label: the
    // chart is one curve over all 160, and says it is pooled.
    let r = sample_report();
    let md = render_markdown(&r);
    assert!(
        md.contains("| Connect latency | ICE | CDF | 160 |"),
        "pooled samples: {md}"
    );
    let html = render_html(&r);
    assert!(
        html.contains("Connect latency — pooled over 4 runs"),
        "caption"
    );
    // Line charts stay one run's: the Throughput legend still has its two series.
    assert!(md.contains("| Throughput | a → b | line | 31 |"), "{md}");
}

#[test]
fn html_handles_large_runs_and_odd_data() {
    let mut r = sample_report();
    let template = r.scenarios[2].clone();
    for i in 0..3000u64 {
        let mut s = template.clone();
        s.name = format!("netsim/hole-punch[a=x{},b=y{}]", i % 60, i / 60);
        s.matrix = vec![
            ("a".into(), format!("x{}", i % 60)),
            ("b".into(), format!("y{}", i / 60)),
        ];
        s.seed = i;
        s.passed = i % 97 != 0;
        s.sim_seconds = f64::NAN;
        s.series[0].points.push((f64::NAN, f64::INFINITY));
        r.scenarios.push(s);
    }
    let html = render_html(&r);
    // Charts are per base scenario, not per result.
    assert_eq!(html.matches("<svg").count(), SAMPLE_CHARTS);
    assert!(
        html.len() < 4_000_000,
        "html too large: {} bytes",
        html.len()
    );
    assert!(html.contains("<details>"), "long lists are folded");
    assert!(!html.contains("NaN"));
}

#[test]
fn junit_counts() {
    let xml = render_junit(&sample_report());
    assert!(xml.starts_with("<?xml"));
    let root = xml.lines().find(|l| l.contains("<testsuites")).unwrap();
    assert!(root.contains("tests=\"8\""), "{root}");
    assert!(root.contains("failures=\"1\""), "{root}");
    let suites: Vec<&str> = xml.lines().filter(|l| l.contains("<testsuite ")).collect();
    assert_eq!(suites.len(), 2, "one testsuite per suite");
    assert!(suites
        .iter()
        .any(|l| l.contains("name=\"netsim\"") && l.contains("tests=\"7\"")));
    assert!(xml.contains("name=\"netsim/reconnect [seed=7]\""));
    assert!(xml.contains("replay: jamisim replay netsim/reconnect --seed 7"));
    assert!(xml.contains("no connection within 30 s"));
    assert_eq!(xml.matches("<testcase ").count(), 8);
}

/// Contents of the `<text>` elements plotters wrote, trimmed.
fn svg_texts(html: &str) -> Vec<String> {
    html.split("<text")
        .skip(1)
        .filter_map(|t| {
            let body = &t[t.find('>')? + 1..];
            Some(body[..body.find("</text>")?].trim().to_string())
        })
        .collect()
}
