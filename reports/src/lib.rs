//! Run reports for jamisim: turns the results of a run into files people
//! read (`report.md`, `index.html`), files CI reads (`junit.xml`), and the
//! raw data (`results.json`) that `merge` combines across shards.
//!
//! This crate only reads results; it knows nothing about the simulator, so
//! the runner can evolve without touching the renderers.

mod html;
mod junit;
mod markdown;
mod merge;
pub mod model;
pub mod plot;
mod summary;

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};

pub use html::render_html;
pub use junit::render_junit;
pub use markdown::render_markdown;
pub use merge::merge;
pub use model::{Cell, CheckResult, RunReport, ScenarioResult, Series, SeriesKind, Table};

/// Writes `report.md`, `index.html`, `junit.xml` and `results.json` into
/// `dir`, creating it. Other files in `dir` (traces, pcaps, capsules put
/// there by the runner) are left alone.
pub fn write_report(dir: &Path, report: &RunReport) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating report dir {}", dir.display()))?;
    let json = serde_json::to_string_pretty(report).context("serializing results")?;
    write_file(dir, "results.json", &json)?;
    write_file(dir, "report.md", &render_markdown(report))?;
    write_file(dir, "index.html", &render_html(report))?;
    write_file(dir, "junit.xml", &render_junit(report))?;
    Ok(())
}

/// Reads a `results.json` written by [`write_report`].
pub fn read_results(path: &Path) -> Result<RunReport> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Writes through a temporary name and renames, so a reader (or a crash)
/// never sees a half-written report.
fn write_file(dir: &Path, name: &str, contents: &str) -> Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let dest = dir.join(name);
    fs::write(&tmp, contents).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, &dest).with_context(|| format!("renaming to {}", dest.display()))
}
