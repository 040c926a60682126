//! `index.html`: one self-contained page (inline CSS and SVG, no scripts, no
//! external URLs) so it can be opened from `file://`, attached to CI, or
//! mailed around. Per-seed rows are collapsed and long lists folded into
//! `<details>` so runs with thousands of results stay readable.

use std::fmt::Write as _;

use crate::model::{RunReport, ScenarioResult, Table};
use crate::plot;
use crate::summary::{self, fmt_rate, fmt_secs, fmt_si, BaseGroup, MatrixView, NameGroup};

/// Failures shown expanded; the rest go into a `<details>`.
const FAILURES_OPEN: usize = 20;
/// Suite tables longer than this start folded.
const ROWS_OPEN: usize = 40;

const CSS: &str = r#"
:root{--pass:#137333;--pass-bg:#e6f4ea;--fail:#b3261e;--fail-bg:#fce8e6;--line:#d9dde3;--muted:#5f6368}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#1f2328;background:#f6f8fa}
main{max-width:1440px;margin:0 auto;padding:20px 28px 60px}
h1{font-size:26px;margin:0 0 6px}
h2{font-size:20px;margin:34px 0 10px;padding-bottom:4px;border-bottom:2px solid var(--line)}
h3{font-size:16px;margin:22px 0 6px}
code,pre{font:12.5px/1.4 ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace}
pre{background:#1f2328;color:#f6f8fa;padding:8px 12px;border-radius:6px;overflow-x:auto;white-space:pre-wrap;word-break:break-all;margin:6px 0}
.meta{color:var(--muted)}
.meta code{color:#1f2328;background:#eaeef2;padding:1px 5px;border-radius:4px}
.badges{margin:14px 0 4px;display:flex;flex-wrap:wrap;gap:8px}
.badge{display:inline-block;padding:5px 12px;border-radius:999px;background:#eaeef2;font-weight:600}
.badge.pass{background:var(--pass-bg);color:var(--pass)}
.badge.fail{background:var(--fail-bg);color:var(--fail)}
nav{margin:8px 0;color:var(--muted)}
nav a{margin-right:12px}
a{color:#0b57d0}
table{border-collapse:collapse;background:#fff;margin:8px 0 14px}
th,td{border:1px solid var(--line);padding:4px 9px;text-align:left;vertical-align:top}
th{background:#eef1f4}
td.num{text-align:right;font-variant-numeric:tabular-nums}
td.pass,td.good{background:var(--pass-bg);color:var(--pass)}
td.fail,td.bad{background:var(--fail-bg);color:var(--fail)}
td.missing{color:var(--muted);text-align:center}
table.matrix td{min-width:120px;font-weight:600}
table.matrix th.corner{font-weight:400;color:var(--muted)}
.notes li{color:#8a5300}
.failure{background:#fff;border:1px solid var(--line);border-left:5px solid var(--fail);border-radius:6px;padding:8px 14px;margin:10px 0}
.failure h3{margin:4px 0}
.failure .err{color:var(--fail);font-weight:600}
.seed{color:var(--muted);font-weight:400}
.scenario{background:#fff;border:1px solid var(--line);border-radius:8px;padding:6px 18px 12px;margin:16px 0}
.about{color:var(--muted);margin-top:0}
.charts{display:flex;flex-wrap:wrap;gap:14px}
figure{margin:0;border:1px solid var(--line);border-radius:6px;padding:4px;background:#fff}
figure svg{display:block;max-width:100%;height:auto}
figcaption{color:var(--muted);font-size:12px;padding:2px 6px}
.warn{color:#8a5300}
.stats{display:flex;flex-wrap:wrap;gap:12px;margin:10px 0}
.stat{background:#fff;border:1px solid var(--line);border-radius:8px;padding:10px 16px;min-width:170px}
.stat b{display:block;font-size:22px}
.stat span{color:var(--muted)}
.bar{display:inline-block;width:160px;height:10px;background:#eaeef2;border-radius:5px;margin-right:8px;vertical-align:middle}
.bar i{display:block;height:100%;background:#8fb3dc;border-radius:5px}
details>summary{cursor:pointer;color:#0b57d0;margin:6px 0}
footer{margin-top:40px;color:var(--muted);font-size:12px}
"#;

/// Renders the whole report as one HTML page.
pub fn render_html(r: &RunReport) -> String {
    let mut out = String::with_capacity(64 * 1024);
    // Writing into a String cannot fail.
    let _ = write_all(&mut out, r);
    out
}

fn write_all(o: &mut String, r: &RunReport) -> std::fmt::Result {
    let title = format!("jamisim run {}", r.run_id);
    writeln!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{}</title><style>{CSS}</style></head><body><main>",
        esc(&title)
    )?;
    write_header(o, r)?;

    if !r.notes.is_empty() {
        writeln!(o, "<h2 id=\"notes\">Notes</h2><ul class=\"notes\">")?;
        for n in &r.notes {
            writeln!(o, "<li>{}</li>", esc(n))?;
        }
        writeln!(o, "</ul>")?;
    }

    let failures = summary::failures(r);
    if !failures.is_empty() {
        writeln!(o, "<h2 id=\"failures\">Failures ({})</h2>", failures.len())?;
        for s in failures.iter().take(FAILURES_OPEN) {
            write_failure(o, s)?;
        }
        if failures.len() > FAILURES_OPEN {
            writeln!(
                o,
                "<details><summary>{} more failures</summary>",
                failures.len() - FAILURES_OPEN
            )?;
            for s in &failures[FAILURES_OPEN..] {
                write_failure(o, s)?;
            }
            writeln!(o, "</details>")?;
        }
    }

    for (gi, g) in summary::group(r).iter().enumerate() {
        writeln!(
            o,
            "<h2 id=\"suite-{gi}\">Suite <code>{}</code></h2>",
            esc(g.suite)
        )?;
        let cases: Vec<&NameGroup<'_>> = g.cases().collect();
        let failed = cases.iter().filter(|c| !c.all_ok()).count();
        let folded = cases.len() > ROWS_OPEN;
        if folded {
            writeln!(
                o,
                "<details><summary>{} scenarios ({} with failures)</summary>",
                cases.len(),
                failed
            )?;
        }
        writeln!(
            o,
            "<table><tr><th>Scenario</th><th>Seeds</th><th>Passed</th><th>Failed</th>\
             <th>Sim time</th><th>Wall time</th><th>Events</th><th>Result</th></tr>"
        )?;
        for c in &cases {
            writeln!(
                o,
                "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num{}\">{}</td>\
                 <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>{}</tr>",
                esc(c.name),
                esc(&c.seeds_text()),
                c.passed(),
                if c.failed() > 0 { " fail" } else { "" },
                c.failed(),
                fmt_secs(c.sim_seconds()),
                fmt_secs(c.wall_seconds()),
                c.events(),
                result_td(c)
            )?;
        }
        writeln!(o, "</table>")?;
        if folded {
            writeln!(o, "</details>")?;
        }
        for b in &g.bases {
            write_base(o, b)?;
        }
    }

    write_perf(o, r)?;
    writeln!(
        o,
        "<footer>Generated by jamisim reports. Full data: results.json · JUnit: junit.xml · Text: report.md</footer>\
         </main></body></html>"
    )
}

fn write_header(o: &mut String, r: &RunReport) -> std::fmt::Result {
    writeln!(o, "<header><h1>jamisim run {}</h1>", esc(&r.run_id))?;
    write!(
        o,
        "<div class=\"meta\">commit <code>{}</code>",
        esc(&r.commit)
    )?;
    if !r.started_utc.is_empty() {
        write!(o, " · started {}", esc(&r.started_utc))?;
    }
    write!(o, " · wall time {}", fmt_secs(r.wall_seconds))?;
    if let Some((i, n)) = r.shard {
        write!(o, " · shard {i} of {n}")?;
    }
    writeln!(o, "<br>command <code>{}</code></div>", esc(&r.command))?;
    let t = summary::totals(r);
    let p = summary::perf(r);
    writeln!(
        o,
        "<div class=\"badges\"><span class=\"badge\">{} runs · {} scenarios · {} suites</span>\
         <span class=\"badge pass\">{} passed</span><span class=\"badge {}\">{} failed</span>\
         <span class=\"badge\">{} events/s</span></div>",
        t.runs,
        t.distinct,
        t.suites,
        t.passed,
        if t.failed > 0 { "fail" } else { "pass" },
        t.failed,
        fmt_rate(p.events_per_sec(), "")
    )?;
    write!(o, "<nav>")?;
    if t.failed > 0 {
        write!(o, "<a href=\"#failures\">Failures</a>")?;
    }
    for (gi, g) in summary::group(r).iter().enumerate() {
        write!(o, "<a href=\"#suite-{gi}\">{}</a>", esc(g.suite))?;
    }
    writeln!(o, "<a href=\"#performance\">Performance</a></nav></header>")
}

fn write_failure(o: &mut String, s: &ScenarioResult) -> std::fmt::Result {
    writeln!(
        o,
        "<div class=\"failure\"><h3>✗ {} <span class=\"seed\">seed {}</span></h3>",
        esc(&s.name),
        s.seed
    )?;
    if let Some(e) = &s.error {
        writeln!(o, "<p class=\"err\">Error: {}</p>", esc(e))?;
    }
    let failed: Vec<_> = summary::failed_checks(s).collect();
    if !failed.is_empty() {
        writeln!(o, "<ul>")?;
        for c in failed {
            write!(
                o,
                "<li><code>{}</code> {}",
                esc(&c.what),
                esc(&c.description)
            )?;
            if !c.detail.is_empty() {
                write!(o, " — <span class=\"err\">{}</span>", esc(&c.detail))?;
            }
            writeln!(o, "</li>")?;
        }
        writeln!(o, "</ul>")?;
    } else if s.error.is_none() {
        writeln!(o, "<p>Marked failed without a failing check.</p>")?;
    }
    if !s.replay.is_empty() {
        writeln!(o, "Replay:<pre><code>{}</code></pre>", esc(&s.replay))?;
    }
    let mut links = Vec::new();
    if let Some(c) = &s.capsule {
        links.push(format!("capsule {}", link(c)));
    }
    if let Some(t) = &s.trace_path {
        links.push(format!("trace {}", link(t)));
    }
    for p in &s.pcaps {
        links.push(format!("pcap {}", link(p)));
    }
    if !links.is_empty() {
        writeln!(o, "<p>{}</p>", links.join(" · "))?;
    }
    writeln!(o, "</div>")
}

fn write_base(o: &mut String, b: &BaseGroup<'_>) -> std::fmt::Result {
    let view = summary::matrix_view(b);
    let tables = summary::tables(b);
    let charts = summary::charts(b);
    if matches!(view, MatrixView::None) && tables.is_empty() && charts.is_empty() {
        return Ok(());
    }
    writeln!(o, "<section class=\"scenario\"><h3>{}</h3>", esc(b.base))?;
    if !b.about.is_empty() {
        writeln!(o, "<p class=\"about\">{}</p>", esc(b.about))?;
    }
    write_matrix(o, &view)?;
    for (t, from) in tables {
        write_table(o, t, from)?;
    }
    if !charts.is_empty() {
        writeln!(o, "<div class=\"charts\">")?;
        for ch in charts {
            let series: Vec<&crate::model::Series> = ch.series.iter().map(|s| s.as_ref()).collect();
            match plot::chart_svg(ch.title, &series) {
                Ok(Some(svg)) if ch.pooled > 1 => writeln!(
                    o,
                    "<figure>{svg}<figcaption>{} — pooled over {} runs (cases × seeds)</figcaption></figure>",
                    esc(ch.title),
                    ch.pooled
                )?,
                Ok(Some(svg)) => writeln!(
                    o,
                    "<figure>{svg}<figcaption>{} — {} seed {}</figcaption></figure>",
                    esc(ch.title),
                    esc(&ch.from.name),
                    ch.from.seed
                )?,
                Ok(None) => {}
                Err(e) => writeln!(
                    o,
                    "<p class=\"warn\">Chart “{}” could not be drawn: {}</p>",
                    esc(ch.title),
                    esc(&e.to_string())
                )?,
            }
        }
        writeln!(o, "</div>")?;
    }
    writeln!(o, "</section>")
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
            write!(
                o,
                "<table class=\"matrix\"><tr><th class=\"corner\">{} ↓ / {} →</th>",
                esc(row_key),
                esc(col_key)
            )?;
            for c in cols {
                write!(o, "<th>{}</th>", esc(c))?;
            }
            writeln!(o, "</tr>")?;
            for (r, row) in rows.iter().zip(cells) {
                write!(o, "<tr><th>{}</th>", esc(r))?;
                for c in row {
                    match c {
                        Some(g) => write!(o, "{}", result_td(g))?,
                        None => write!(o, "<td class=\"missing\">—</td>")?,
                    }
                }
                writeln!(o, "</tr>")?;
            }
            writeln!(o, "</table>")
        }
        MatrixView::List { key, rows } => {
            writeln!(
                o,
                "<table class=\"matrix\"><tr><th>{}</th><th>Result</th></tr>",
                esc(key)
            )?;
            for (k, g) in rows {
                writeln!(o, "<tr><th>{}</th>{}</tr>", esc(k), result_td(g))?;
            }
            writeln!(o, "</table>")
        }
    }
}

fn write_table(o: &mut String, t: &Table, from: &ScenarioResult) -> std::fmt::Result {
    writeln!(
        o,
        "<h4>{} <span class=\"seed\">from {} seed {}</span></h4><table>",
        esc(&t.title),
        esc(&from.name),
        from.seed
    )?;
    if !t.columns.is_empty() {
        write!(o, "<tr>")?;
        for c in &t.columns {
            write!(o, "<th>{}</th>", esc(c))?;
        }
        writeln!(o, "</tr>")?;
    }
    for row in &t.rows {
        write!(o, "<tr>")?;
        for c in row {
            let class = match c.status {
                Some(true) => " class=\"good\"",
                Some(false) => " class=\"bad\"",
                None => "",
            };
            write!(o, "<td{class}>{}</td>", esc(&c.text))?;
        }
        writeln!(o, "</tr>")?;
    }
    writeln!(o, "</table>")
}

fn write_perf(o: &mut String, r: &RunReport) -> std::fmt::Result {
    let p = summary::perf(r);
    writeln!(
        o,
        "<h2 id=\"performance\">Performance</h2><div class=\"stats\">"
    )?;
    let stat = |o: &mut String, v: String, what: &str| {
        writeln!(
            o,
            "<div class=\"stat\"><b>{}</b><span>{}</span></div>",
            esc(&v),
            what
        )
    };
    stat(
        o,
        fmt_rate(p.events_per_sec(), ""),
        "events per wall second",
    )?;
    stat(o, fmt_rate(p.sim_per_wall(), "×"), "simulated s per wall s")?;
    stat(o, fmt_si(p.events as f64), "events in total")?;
    stat(o, fmt_secs(p.wall_seconds), "scenario wall time (sum)")?;
    writeln!(o, "</div>")?;
    if let Some(b) = p.busiest {
        writeln!(
            o,
            "<p>Most events: {} seed {} ({} events in {} = {}; {} real time).</p>",
            esc(&b.name),
            b.seed,
            b.events,
            fmt_secs(b.wall_seconds),
            esc(&fmt_rate(
                crate::summary::rate(b.events as f64, b.wall_seconds),
                "/s"
            )),
            esc(&fmt_rate(
                crate::summary::rate(b.sim_seconds, b.wall_seconds),
                "×"
            ))
        )?;
    }
    let max_rate = p
        .per_suite
        .iter()
        .filter_map(|s| s.events_per_sec())
        .fold(0.0, f64::max);
    writeln!(
        o,
        "<table><tr><th>Suite</th><th>Runs</th><th>Events</th><th>Events/s</th>\
         <th>Sim s / wall s</th><th>Wall time</th></tr>"
    )?;
    for s in &p.per_suite {
        let width = match s.events_per_sec() {
            Some(v) if max_rate > 0.0 => (v / max_rate * 100.0).clamp(0.0, 100.0),
            _ => 0.0,
        };
        writeln!(
            o,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td><span class=\"bar\"><i style=\"width:{:.0}%\"></i></span>{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(s.suite),
            s.runs,
            s.events,
            width,
            fmt_rate(s.events_per_sec(), "/s"),
            fmt_rate(s.sim_per_wall(), "×"),
            fmt_secs(s.wall_seconds)
        )?;
    }
    writeln!(o, "</table>")?;
    if p.slowest.len() > 1 {
        writeln!(
            o,
            "<details><summary>Slowest {} runs</summary><table><tr><th>Scenario</th><th>Seed</th>\
             <th>Wall time</th><th>Events</th></tr>",
            p.slowest.len()
        )?;
        for s in &p.slowest {
            writeln!(
                o,
                "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                esc(&s.name),
                s.seed,
                fmt_secs(s.wall_seconds),
                s.events
            )?;
        }
        writeln!(o, "</table></details>")?;
    }
    Ok(())
}

/// A coloured result cell: summary text and, with several seeds, "k/n".
fn result_td(g: &NameGroup<'_>) -> String {
    let (class, mark) = if g.all_ok() {
        ("pass", "✓")
    } else {
        ("fail", "✗")
    };
    let text = [g.summary_text(), g.ratio_text(), mark.to_string()]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    format!("<td class=\"{class}\">{}</td>", esc(&text))
}

/// A link to a file the runner put next to the report. Anything that looks
/// like a URL (has a scheme) is shown as text, keeping the page offline-only.
fn link(path: &str) -> String {
    if path.contains(':') {
        format!("<code>{}</code>", esc(path))
    } else {
        format!("<a href=\"{0}\"><code>{0}</code></a>", esc(path))
    }
}

/// Escapes text for element content and quoted attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
