//! `junit.xml` for CI systems: one testsuite per suite, one testcase per
//! (scenario, seed). Errors are reported as failures so the counts match
//! the report's "failed" total; the failure text carries the replay command
//! because that is what someone reading a CI page needs next.

use std::collections::BTreeMap;
use std::time::Duration;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use crate::model::{RunReport, ScenarioResult};
use crate::summary;

/// Renders the report as JUnit XML.
pub fn render_junit(r: &RunReport) -> String {
    let mut report = Report::new(format!("jamisim {}", r.run_id));
    if let Some(t) = secs(r.wall_seconds) {
        report.set_time(t);
    }
    let mut suites: BTreeMap<&str, Vec<&ScenarioResult>> = BTreeMap::new();
    for s in &r.scenarios {
        suites.entry(&s.suite).or_default().push(s);
    }
    for (name, results) in suites {
        let mut suite = TestSuite::new(name);
        suite.add_property(("commit", r.commit.as_str()));
        suite.add_property(("run_id", r.run_id.as_str()));
        if let Some(t) = secs(summary::finite_sum(results.iter().map(|s| s.wall_seconds))) {
            suite.set_time(t);
        }
        suite.add_test_cases(results.into_iter().map(test_case));
        report.add_test_suite(suite);
    }
    match report.to_string() {
        Ok(s) => s,
        // quick-junit only fails on I/O into its own buffer; still, never
        // panic: emit a minimal document that says what went wrong.
        Err(e) => format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites tests=\"0\" failures=\"0\" errors=\"1\"><!-- {} --></testsuites>\n",
            e.to_string().replace("--", "- -")
        ),
    }
}

fn test_case(s: &ScenarioResult) -> TestCase {
    let status = if s.ok() {
        TestCaseStatus::success()
    } else {
        let mut st = TestCaseStatus::non_success(NonSuccessKind::Failure);
        st.set_message(failure_message(s));
        st.set_type(if s.error.is_some() {
            "error"
        } else {
            "check failed"
        });
        st.set_description(failure_text(s));
        st
    };
    let mut tc = TestCase::new(format!("{} [seed={}]", s.name, s.seed), status);
    tc.set_classname(s.base_id());
    if let Some(t) = secs(s.wall_seconds) {
        tc.set_time(t);
    }
    tc.set_assertions(s.checks.len());
    let mut out = format!(
        "summary: {}\nsim_seconds: {}\nevents: {}\ntrace_hash: {}\n",
        s.summary, s.sim_seconds, s.events, s.trace_hash
    );
    if !s.replay.is_empty() {
        out.push_str(&format!("replay: {}\n", s.replay));
    }
    tc.set_system_out(out);
    tc
}

/// One line: the error and each failed check with its detail.
fn failure_message(s: &ScenarioResult) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(e) = &s.error {
        parts.push(first_line(e).to_string());
    }
    parts.extend(summary::failed_checks(s).map(|c| {
        if c.detail.is_empty() {
            c.description.clone()
        } else {
            format!("{}: {}", c.description, first_line(&c.detail))
        }
    }));
    if parts.is_empty() {
        "scenario marked failed".into()
    } else {
        parts.join("; ")
    }
}

/// Multi-line body: every failed check with its detail, the error, then how
/// to reproduce.
fn failure_text(s: &ScenarioResult) -> String {
    let mut t = String::new();
    if let Some(e) = &s.error {
        t.push_str(&format!("error: {e}\n"));
    }
    for c in summary::failed_checks(s) {
        t.push_str(&format!("check {} failed: {}\n", c.what, c.description));
        if !c.detail.is_empty() {
            t.push_str(&format!("  {}\n", c.detail));
        }
    }
    if !s.replay.is_empty() {
        t.push_str(&format!("replay: {}\n", s.replay));
    }
    if let Some(c) = &s.capsule {
        t.push_str(&format!("capsule: {c}\n"));
    }
    t
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// `Duration::from_secs_f64` panics on negative or non-finite input.
fn secs(v: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(v).ok()
}
