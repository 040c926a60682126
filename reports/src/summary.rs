//! Aggregation shared by the Markdown and HTML renderers, so both show the
//! same numbers. Everything keeps report order (first seen) or sorts through
//! `BTreeMap`, which keeps the output deterministic.

use std::collections::BTreeMap;

use crate::model::{RunReport, ScenarioResult, Series, Table};

/// Counts for the totals line.
pub(crate) struct Totals {
    pub runs: usize,
    pub passed: usize,
    pub failed: usize,
    pub distinct: usize,
    pub suites: usize,
}

pub(crate) fn totals(r: &RunReport) -> Totals {
    let passed = r.scenarios.iter().filter(|s| s.ok()).count();
    let mut names: Vec<&str> = r.scenarios.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let mut suites: Vec<&str> = r.scenarios.iter().map(|s| s.suite.as_str()).collect();
    suites.sort_unstable();
    suites.dedup();
    Totals {
        runs: r.scenarios.len(),
        passed,
        failed: r.scenarios.len() - passed,
        distinct: names.len(),
        suites: suites.len(),
    }
}

/// All seeds of one scenario case (same `name`), collapsed into one row.
pub(crate) struct NameGroup<'a> {
    pub name: &'a str,
    pub runs: Vec<&'a ScenarioResult>,
}

impl NameGroup<'_> {
    pub fn passed(&self) -> usize {
        self.runs.iter().filter(|s| s.ok()).count()
    }
    pub fn failed(&self) -> usize {
        self.runs.len() - self.passed()
    }
    pub fn all_ok(&self) -> bool {
        self.failed() == 0
    }
    pub fn sim_seconds(&self) -> f64 {
        finite_sum(self.runs.iter().map(|s| s.sim_seconds))
    }
    pub fn wall_seconds(&self) -> f64 {
        finite_sum(self.runs.iter().map(|s| s.wall_seconds))
    }
    pub fn events(&self) -> u64 {
        self.runs.iter().map(|s| s.events).sum()
    }

    /// "7", "1, 2, 3" or, for many seeds, "100 seeds (1…100)".
    pub fn seeds_text(&self) -> String {
        let mut seeds: Vec<u64> = self.runs.iter().map(|s| s.seed).collect();
        seeds.sort_unstable();
        seeds.dedup();
        match seeds.as_slice() {
            [] => String::new(),
            s if s.len() <= 5 => s
                .iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            s => format!("{} seeds ({}…{})", s.len(), s[0], s[s.len() - 1]),
        }
    }

    /// Distinct summaries in first-seen order; seeds usually agree, and when
    /// they don't the reader should see every variant (capped at 3).
    pub fn summary_text(&self) -> String {
        let mut seen: Vec<&str> = Vec::new();
        for s in &self.runs {
            if !s.summary.is_empty() && !seen.contains(&s.summary.as_str()) {
                seen.push(&s.summary);
            }
        }
        let more = seen.len().saturating_sub(3);
        let mut out = seen.iter().take(3).copied().collect::<Vec<_>>().join(" / ");
        if more > 0 {
            out.push_str(&format!(" / +{more} more"));
        }
        out
    }

    /// Pass marker for one cell: "" with one seed, "2/3" with several.
    pub fn ratio_text(&self) -> String {
        if self.runs.len() > 1 {
            format!("{}/{}", self.passed(), self.runs.len())
        } else {
            String::new()
        }
    }
}

/// All cases of one scenario file (same `base`).
pub(crate) struct BaseGroup<'a> {
    pub base: &'a str,
    pub about: &'a str,
    pub cases: Vec<NameGroup<'a>>,
}

/// One suite with its rows collapsed by name and by base.
pub(crate) struct SuiteGroup<'a> {
    pub suite: &'a str,
    pub bases: Vec<BaseGroup<'a>>,
}

impl SuiteGroup<'_> {
    pub fn cases(&self) -> impl Iterator<Item = &NameGroup<'_>> {
        self.bases.iter().flat_map(|b| b.cases.iter())
    }
    pub fn runs(&self) -> impl Iterator<Item = &ScenarioResult> {
        self.cases().flat_map(|c| c.runs.iter().copied())
    }
}

/// Suites sorted by name; bases and cases in first-seen order. Lookups go
/// through maps so runs with thousands of results stay linear-ish.
pub(crate) fn group(r: &RunReport) -> Vec<SuiteGroup<'_>> {
    let mut suites: BTreeMap<&str, Vec<BaseGroup<'_>>> = BTreeMap::new();
    let mut base_ix: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    let mut case_ix: BTreeMap<(&str, &str, &str), usize> = BTreeMap::new();
    for s in &r.scenarios {
        let bases = suites.entry(s.suite.as_str()).or_default();
        let bi = *base_ix.entry((&s.suite, s.base_id())).or_insert_with(|| {
            bases.push(BaseGroup {
                base: s.base_id(),
                about: &s.about,
                cases: Vec::new(),
            });
            bases.len() - 1
        });
        let base = &mut bases[bi];
        if base.about.is_empty() {
            base.about = &s.about;
        }
        let ci = *case_ix
            .entry((&s.suite, s.base_id(), &s.name))
            .or_insert_with(|| {
                base.cases.push(NameGroup {
                    name: &s.name,
                    runs: Vec::new(),
                });
                base.cases.len() - 1
            });
        base.cases[ci].runs.push(s);
    }
    suites
        .into_iter()
        .map(|(suite, bases)| SuiteGroup { suite, bases })
        .collect()
}

/// How the cases of one base are laid out.
pub(crate) enum MatrixView<'g, 'a> {
    /// No matrix parameters.
    None,
    /// Exactly two parameters everywhere, with the same names: a grid.
    Grid {
        row_key: String,
        col_key: String,
        rows: Vec<String>,
        cols: Vec<String>,
        /// `cells[row][col]`; None where that combination was not run.
        cells: Vec<Vec<Option<&'g NameGroup<'a>>>>,
    },
    /// One parameter, or an irregular matrix: one line per case.
    List {
        key: String,
        rows: Vec<(String, &'g NameGroup<'a>)>,
    },
}

pub(crate) fn matrix_view<'g, 'a>(b: &'g BaseGroup<'a>) -> MatrixView<'g, 'a> {
    let first = |c: &NameGroup<'_>| c.runs[0].matrix.clone();
    let Some(m0) = b.cases.first().map(first) else {
        return MatrixView::None;
    };
    if b.cases.iter().all(|c| first(c).is_empty()) {
        return MatrixView::None;
    }
    let keys: Vec<&String> = m0.iter().map(|(k, _)| k).collect();
    let same_keys = b.cases.iter().all(|c| {
        let m = first(c);
        m.len() == keys.len() && m.iter().zip(&keys).all(|((k, _), k0)| k == *k0)
    });
    if same_keys && keys.len() == 2 {
        let mut rows: Vec<String> = Vec::new();
        let mut cols: Vec<String> = Vec::new();
        for c in &b.cases {
            let m = first(c);
            push_unique(&mut rows, &m[0].1);
            push_unique(&mut cols, &m[1].1);
        }
        let mut cells = vec![vec![None; cols.len()]; rows.len()];
        for c in &b.cases {
            let m = first(c);
            let ri = rows.iter().position(|v| *v == m[0].1);
            let ci = cols.iter().position(|v| *v == m[1].1);
            if let (Some(ri), Some(ci)) = (ri, ci) {
                // Keep the first case if two names share the same parameters.
                cells[ri][ci].get_or_insert(c);
            }
        }
        return MatrixView::Grid {
            row_key: keys[0].clone(),
            col_key: keys[1].clone(),
            rows,
            cols,
            cells,
        };
    }
    let single = same_keys && keys.len() == 1;
    let label = |m: &[(String, String)]| {
        if single {
            m[0].1.clone()
        } else {
            m.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    MatrixView::List {
        key: if single {
            keys[0].clone()
        } else {
            "parameters".to_string()
        },
        rows: b.cases.iter().map(|c| (label(&first(c)), c)).collect(),
    }
}

fn push_unique(v: &mut Vec<String>, s: &str) {
    if !v.iter().any(|x| x == s) {
        v.push(s.to_string());
    }
}

/// Tables of a base, each title once, taken from the first result (report
/// order, i.e. first case and lowest seed after `merge`) that has it.
pub(crate) fn tables<'a>(b: &BaseGroup<'a>) -> Vec<(&'a Table, &'a ScenarioResult)> {
    let mut out: Vec<(&Table, &ScenarioResult)> = Vec::new();
    for s in b.cases.iter().flat_map(|c| c.runs.iter().copied()) {
        for t in &s.tables {
            if !out.iter().any(|(o, _)| o.title == t.title) {
                out.push((t, s));
            }
        }
    }
    out
}

/// One plot: every series with this chart title from the source result; CDF series
/// pool the samples of every result of the base (every case and seed), one curve per
/// label, so a CDF is over seeds rather than one run's draw.
pub(crate) struct Chart<'a> {
    pub title: &'a str,
    pub series: Vec<std::borrow::Cow<'a, Series>>,
    pub from: &'a ScenarioResult,
    /// Results whose samples a pooled (CDF) chart holds; 1 otherwise.
    pub pooled: usize,
}

/// Charts of a base, each title once. Line series come from the first result that has
/// the title (seeds of one case give near-identical curves); CDF series are pooled.
pub(crate) fn charts<'a>(b: &BaseGroup<'a>) -> Vec<Chart<'a>> {
    use std::borrow::Cow;
    let mut out: Vec<Chart<'a>> = Vec::new();
    // Per chart, the last result (by position) whose samples went in.
    let mut last: Vec<usize> = Vec::new();
    for (ri, s) in b
        .cases
        .iter()
        .flat_map(|c| c.runs.iter().copied())
        .enumerate()
    {
        for se in &s.series {
            let at = out.iter().position(|c| c.title == se.chart);
            let Some(i) = at else {
                out.push(Chart {
                    title: &se.chart,
                    series: vec![Cow::Borrowed(se)],
                    from: s,
                    pooled: 1,
                });
                last.push(ri);
                continue;
            };
            let c = &mut out[i];
            if se.kind == crate::model::SeriesKind::Cdf {
                if last[i] != ri {
                    last[i] = ri;
                    c.pooled += 1;
                }
                match c.series.iter_mut().find(|x| x.label == se.label) {
                    Some(x) => x.to_mut().points.extend_from_slice(&se.points),
                    None => c.series.push(Cow::Borrowed(se)),
                }
            } else if std::ptr::eq(c.from, s) {
                c.series.push(Cow::Borrowed(se));
            }
        }
    }
    out
}

/// Throughput figures for the Performance section.
pub(crate) struct Perf<'a> {
    pub events: u64,
    pub sim_seconds: f64,
    /// Sum of per-scenario wall time (what the simulator itself spent).
    pub wall_seconds: f64,
    pub per_suite: Vec<SuitePerf<'a>>,
    pub busiest: Option<&'a ScenarioResult>,
    /// Slowest results by wall time, longest first (at most 10).
    pub slowest: Vec<&'a ScenarioResult>,
}

pub(crate) struct SuitePerf<'a> {
    pub suite: &'a str,
    pub runs: usize,
    pub events: u64,
    pub sim_seconds: f64,
    pub wall_seconds: f64,
}

impl SuitePerf<'_> {
    pub fn events_per_sec(&self) -> Option<f64> {
        rate(self.events as f64, self.wall_seconds)
    }
    pub fn sim_per_wall(&self) -> Option<f64> {
        rate(self.sim_seconds, self.wall_seconds)
    }
}

impl Perf<'_> {
    pub fn events_per_sec(&self) -> Option<f64> {
        rate(self.events as f64, self.wall_seconds)
    }
    pub fn sim_per_wall(&self) -> Option<f64> {
        rate(self.sim_seconds, self.wall_seconds)
    }
}

pub(crate) fn perf(r: &RunReport) -> Perf<'_> {
    let groups = group(r);
    let per_suite = groups
        .iter()
        .map(|g| SuitePerf {
            suite: g.suite,
            runs: g.runs().count(),
            events: g.runs().map(|s| s.events).sum(),
            sim_seconds: finite_sum(g.runs().map(|s| s.sim_seconds)),
            wall_seconds: finite_sum(g.runs().map(|s| s.wall_seconds)),
        })
        .collect();
    // max_by_key keeps the last maximum; reverse so ties go to the first.
    let busiest = r.scenarios.iter().rev().max_by_key(|s| s.events);
    let mut slowest: Vec<&ScenarioResult> = r
        .scenarios
        .iter()
        .filter(|s| s.wall_seconds.is_finite())
        .collect();
    slowest.sort_by(|a, b| b.wall_seconds.total_cmp(&a.wall_seconds));
    slowest.truncate(10);
    Perf {
        events: r.scenarios.iter().map(|s| s.events).sum(),
        sim_seconds: finite_sum(r.scenarios.iter().map(|s| s.sim_seconds)),
        wall_seconds: finite_sum(r.scenarios.iter().map(|s| s.wall_seconds)),
        per_suite,
        busiest,
        slowest,
    }
}

/// Failed results in report order.
pub(crate) fn failures(r: &RunReport) -> Vec<&ScenarioResult> {
    r.scenarios.iter().filter(|s| !s.ok()).collect()
}

/// Sums the finite values only, so one NaN does not hide every total.
pub(crate) fn finite_sum(it: impl Iterator<Item = f64>) -> f64 {
    it.filter(|v| v.is_finite()).sum()
}

pub(crate) fn rate(num: f64, den: f64) -> Option<f64> {
    (den > 0.0 && num.is_finite() && den.is_finite()).then(|| num / den)
}

/// Seconds with a precision that suits the magnitude.
pub(crate) fn fmt_secs(s: f64) -> String {
    if !s.is_finite() {
        "n/a".into()
    } else if s.abs() < 1.0 {
        format!("{:.3} s", s)
    } else if s.abs() < 100.0 {
        format!("{:.2} s", s)
    } else {
        format!("{:.0} s", s)
    }
}

/// Large counts with an SI suffix: 1234567 -> "1.23 M".
pub(crate) fn fmt_si(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    let (div, suffix) = match v.abs() {
        a if a >= 1e9 => (1e9, " G"),
        a if a >= 1e6 => (1e6, " M"),
        a if a >= 1e3 => (1e3, " k"),
        _ => (1.0, ""),
    };
    let x = v / div;
    if suffix.is_empty() {
        format!("{:.1}", x)
    } else {
        format!("{:.2}{}", x, suffix)
    }
}

/// `fmt_si` for an optional rate, "n/a" when there was no wall time.
pub(crate) fn fmt_rate(v: Option<f64>, unit: &str) -> String {
    match v {
        Some(v) => format!("{}{}", fmt_si(v), unit),
        None => "n/a".into(),
    }
}

/// Failed checks of a result, in order.
pub(crate) fn failed_checks(s: &ScenarioResult) -> impl Iterator<Item = &crate::CheckResult> {
    s.checks.iter().filter(|c| !c.passed)
}
