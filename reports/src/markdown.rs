//! `report.md`: the text version, readable in a terminal or a code review.
//! Failures come first because that is what a reader opens the file for.

use std::fmt::Write as _;

use crate::model::{RunReport, ScenarioResult, SeriesKind, Table};
use crate::summary::{self, fmt_rate, fmt_secs, fmt_si, MatrixView, NameGroup};

/// Renders the whole report as GitHub-flavoured Markdown.
pub fn render_markdown(r: &RunReport) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = write_all(&mut out, r);
    out
}

fn write_all(o: &mut String, r: &RunReport) -> std::fmt::Result {
    writeln!(o, "# jamisim run {}\n", inline(&r.run_id))?;
    writeln!(o, "- Commit: {}", code(&r.commit))?;
    writeln!(o, "- Command: {}", code(&r.command))?;
    if !r.started_utc.is_empty() {
        writeln!(o, "- Started: {}", inline(&r.started_utc))?;
    }
    writeln!(o, "- Wall time: {}", fmt_secs(r.wall_seconds))?;
    if let Some((i, n)) = r.shard {
        writeln!(o, "- Shard: {i} of {n}")?;
    }
    let t = summary::totals(r);
    writeln!(
        o,
        "\n**Totals:** {} scenario runs, {} passed, {} failed ({} distinct scenarios in {} suites)\n",
        t.runs, t.passed, t.failed, t.distinct, t.suites
    )?;

    if !r.notes.is_empty() {
        writeln!(o, "## Notes\n")?;
        for n in &r.notes {
            writeln!(o, "- {}", inline(n))?;
        }
        writeln!(o)?;
    }

    let failures = summary::failures(r);
    if !failures.is_empty() {
        writeln!(o, "## Failures\n")?;
        for s in failures {
            write_failure(o, s)?;
        }
    }

    for g in summary::group(r) {
        writeln!(o, "## Suite {}\n", code(g.suite))?;
        writeln!(
            o,
            "| Scenario | Seeds | Passed | Failed | Sim time | Wall time | Result |"
        )?;
        writeln!(o, "|---|---|---:|---:|---:|---:|---|")?;
        for c in g.cases() {
            writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} |",
                cell(c.name),
                c.seeds_text(),
                c.passed(),
                c.failed(),
                fmt_secs(c.sim_seconds()),
                fmt_secs(c.wall_seconds()),
                cell(&group_cell(c)),
            )?;
        }
        writeln!(o)?;
        for b in &g.bases {
            let view = summary::matrix_view(b);
            let tables = summary::tables(b);
            let charts = summary::charts(b);
            if matches!(view, MatrixView::None) && tables.is_empty() && charts.is_empty() {
                continue;
            }
            writeln!(o, "### {}\n", inline(b.base))?;
            if !b.about.is_empty() {
                writeln!(o, "{}\n", inline(b.about))?;
            }
            write_matrix(o, &view)?;
            for (t, from) in tables {
                write_table(o, t, from)?;
            }
            if !charts.is_empty() {
                writeln!(o, "Plotted in index.html:\n")?;
                writeln!(o, "| Chart | Series | Kind | Points | Summary |")?;
                writeln!(o, "|---|---|---|---:|---|")?;
                for ch in &charts {
                    for s in &ch.series {
                        let (kind, stats) = series_stats(s);
                        writeln!(
                            o,
                            "| {} | {} | {} | {} | {} |",
                            cell(ch.title),
                            cell(&s.label),
                            kind,
                            s.points.len(),
                            cell(&stats)
                        )?;
                    }
                }
                writeln!(o)?;
            }
        }
    }

    write_perf(o, r)
}

fn write_failure(o: &mut String, s: &ScenarioResult) -> std::fmt::Result {
    writeln!(o, "### ❌ {} (seed {})\n", inline(&s.name), s.seed)?;
    if let Some(e) = &s.error {
        writeln!(o, "- Error: {}", inline(e))?;
    }
    for c in summary::failed_checks(s) {
        write!(
            o,
            "- Check {} failed: {}",
            code(&c.what),
            inline(&c.description)
        )?;
        if !c.detail.is_empty() {
            write!(o, " — {}", inline(&c.detail))?;
        }
        writeln!(o)?;
    }
    if s.error.is_none() && summary::failed_checks(s).next().is_none() {
        writeln!(o, "- Marked failed without a failing check")?;
    }
    if !s.replay.is_empty() {
        writeln!(o, "- Replay: {}", code(&s.replay))?;
    }
    if let Some(c) = &s.capsule {
        writeln!(o, "- Capsule: {}", code(c))?;
    }
    if let Some(t) = &s.trace_path {
        writeln!(o, "- Trace: {}", code(t))?;
    }
    writeln!(o)
}

fn write_matrix(o: &mut String, view: &MatrixView<'_, '_>) -> std::fmt::Result {
    match view {
        MatrixView::None => Ok(()),
        MatrixView::Grid {
            row_key,
            col_key,
            rows,
            cols,
            cells,
        } => {
            write!(o, "| {} ↓ / {} → |", cell(row_key), cell(col_key))?;
            for c in cols {
                write!(o, " {} |", cell(c))?;
            }
            writeln!(o)?;
            writeln!(o, "|---|{}", "---|".repeat(cols.len()))?;
            for (r, row) in rows.iter().zip(cells) {
                write!(o, "| **{}** |", cell(r))?;
                for c in row {
                    match c {
                        Some(g) => write!(o, " {} |", cell(&group_cell(g)))?,
                        None => write!(o, " — |")?,
                    }
                }
                writeln!(o)?;
            }
            writeln!(o)
        }
        MatrixView::List { key, rows } => {
            writeln!(o, "| {} | Result |", cell(key))?;
            writeln!(o, "|---|---|")?;
            for (k, g) in rows {
                writeln!(o, "| {} | {} |", cell(k), cell(&group_cell(g)))?;
            }
            writeln!(o)
        }
    }
}

fn write_table(o: &mut String, t: &Table, from: &ScenarioResult) -> std::fmt::Result {
    writeln!(
        o,
        "**{}** (from {} seed {})\n",
        inline(&t.title),
        inline(&from.name),
        from.seed
    )?;
    let width = t
        .rows
        .iter()
        .map(Vec::len)
        .chain([t.columns.len()])
        .max()
        .unwrap_or(0);
    if width == 0 {
        return writeln!(o, "(empty table)\n");
    }
    write!(o, "|")?;
    for i in 0..width {
        write!(
            o,
            " {} |",
            cell(t.columns.get(i).map_or("", String::as_str))
        )?;
    }
    writeln!(o, "\n|{}", "---|".repeat(width))?;
    for row in &t.rows {
        write!(o, "|")?;
        for i in 0..width {
            let text = match row.get(i) {
                Some(c) => match c.status {
                    Some(true) => format!("{} ✅", c.text),
                    Some(false) => format!("{} ❌", c.text),
                    None => c.text.clone(),
                },
                None => String::new(),
            };
            write!(o, " {} |", cell(&text))?;
        }
        writeln!(o)?;
    }
    writeln!(o)
}

fn write_perf(o: &mut String, r: &RunReport) -> std::fmt::Result {
    let p = summary::perf(r);
    writeln!(o, "## Performance\n")?;
    writeln!(o, "- Events: {} total", p.events)?;
    writeln!(
        o,
        "- Events per wall second: {}",
        fmt_rate(p.events_per_sec(), "/s")
    )?;
    writeln!(
        o,
        "- Simulated seconds per wall second: {}",
        fmt_rate(p.sim_per_wall(), "×")
    )?;
    writeln!(
        o,
        "- Simulated {} in {} of scenario wall time (rates use this sum)",
        fmt_secs(p.sim_seconds),
        fmt_secs(p.wall_seconds)
    )?;
    if let Some(b) = p.busiest {
        writeln!(
            o,
            "- Most events: {} seed {} ({} events in {} = {}; {} real time)",
            inline(&b.name),
            b.seed,
            b.events,
            fmt_secs(b.wall_seconds),
            fmt_rate(crate::summary::rate(b.events as f64, b.wall_seconds), "/s"),
            fmt_rate(crate::summary::rate(b.sim_seconds, b.wall_seconds), "×")
        )?;
    }
    writeln!(o)?;
    writeln!(o, "| Suite | Runs | Events | Events/s | Sim s / wall s |")?;
    writeln!(o, "|---|---:|---:|---:|---:|")?;
    for s in &p.per_suite {
        writeln!(
            o,
            "| {} | {} | {} | {} | {} |",
            cell(s.suite),
            s.runs,
            s.events,
            fmt_rate(s.events_per_sec(), "/s"),
            fmt_rate(s.sim_per_wall(), "×")
        )?;
    }
    writeln!(o)
}

/// Summary text plus pass marker, e.g. "relay ✅" or "relay 2/3 ❌".
fn group_cell(g: &NameGroup<'_>) -> String {
    let mark = if g.all_ok() { "✅" } else { "❌" };
    [g.summary_text(), g.ratio_text(), mark.to_string()]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// One-line description of a series for the text report.
fn series_stats(s: &crate::model::Series) -> (&'static str, String) {
    match s.kind {
        SeriesKind::Cdf => {
            let mut v: Vec<f64> = s
                .points
                .iter()
                .map(|p| p.1)
                .filter(|v| v.is_finite())
                .collect();
            v.sort_by(f64::total_cmp);
            let q = |f: f64| v[((v.len() - 1) as f64 * f).round() as usize];
            let stats = if v.is_empty() {
                "no samples".to_string()
            } else {
                format!(
                    "p50 {}, p90 {}, p99 {}, max {}",
                    fmt_si(q(0.5)),
                    fmt_si(q(0.9)),
                    fmt_si(q(0.99)),
                    fmt_si(v[v.len() - 1])
                )
            };
            ("CDF", stats)
        }
        SeriesKind::Line => {
            let last = s
                .points
                .iter()
                .rev()
                .find(|p| p.0.is_finite() && p.1.is_finite());
            let stats = match last {
                Some((x, y)) => format!("last ({}, {})", fmt_si(*x), fmt_si(*y)),
                None => "no points".to_string(),
            };
            ("line", stats)
        }
    }
}

/// Makes text safe inside a table cell: no line breaks, no column splits,
/// no raw HTML.
fn cell(s: &str) -> String {
    inline(s).replace('|', "\\|")
}

/// Makes text safe as inline Markdown: one line, and `<` backslash-escaped
/// so names like `<script>` are shown, not interpreted as HTML.
fn inline(s: &str) -> String {
    s.replace('<', "\\<").replace(['\r', '\n'], " ")
}

/// A code span that survives backticks in the content.
fn code(s: &str) -> String {
    let s = s.replace(['\r', '\n'], " ");
    if s.is_empty() {
        return "(none)".into();
    }
    let mut longest = 0;
    let mut run = 0;
    for ch in s.chars() {
        run = if ch == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest + 1);
    let pad = if s.starts_with('`') || s.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{s}{pad}{fence}")
}
