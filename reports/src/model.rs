//! The data a run hands to the reporters, and the shape of `results.json`.
//!
//! Every struct uses `#[serde(default)]` so a `results.json` written by an
//! older or newer build (missing or extra fields) still loads for `merge`.
//! `serde_json` writes non-finite floats as `null`; the float fields read
//! `null` back as NaN so a file we wrote can always be read again.

use serde::{Deserialize, Deserializer, Serialize};

/// One invocation of jamisim (or one shard of it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default)]
pub struct RunReport {
    /// e.g. "20261125-110000".
    pub run_id: String,
    /// Git commit of the build, or "unknown".
    pub commit: String,
    /// The jamisim command line that produced it.
    pub command: String,
    /// "2026-11-25T11:00:00Z".
    pub started_utc: String,
    /// Wall time of the whole run.
    #[serde(deserialize_with = "de_f64")]
    pub wall_seconds: f64,
    /// (index, count) when the run was a shard.
    pub shard: Option<(u32, u32)>,
    pub scenarios: Vec<ScenarioResult>,
    /// Free text lines shown at the top (e.g. skipped things).
    pub notes: Vec<String>,
}

/// One scenario case run with one seed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default)]
pub struct ScenarioResult {
    /// "netsim".
    pub suite: String,
    /// Full id, e.g. "netsim/hole-punch[a=eim-apdf,b=apdm-eif]".
    pub name: String,
    /// Id without the matrix part: "netsim/hole-punch".
    pub base: String,
    /// One-line description from the scenario file.
    pub about: String,
    /// Scenario file path as given.
    pub file: String,
    /// Matrix parameters of this case, in order.
    pub matrix: Vec<(String, String)>,
    pub seed: u64,
    pub passed: bool,
    /// The scenario could not run (bad file, panic...); counts as failure.
    pub error: Option<String>,
    /// Short cell text, e.g. "direct (srflx)" or "relay".
    pub summary: String,
    pub checks: Vec<CheckResult>,
    #[serde(deserialize_with = "de_f64")]
    pub sim_seconds: f64,
    #[serde(deserialize_with = "de_f64")]
    pub wall_seconds: f64,
    /// Simulator events processed.
    pub events: u64,
    /// Hex sha256 of the trace.
    pub trace_hash: String,
    /// Relative to the report dir.
    pub trace_path: Option<String>,
    /// Relative paths.
    pub pcaps: Vec<String>,
    /// Exact command reproducing this run.
    pub replay: String,
    /// Relative path of the failure capsule dir (only for failures).
    pub capsule: Option<String>,
    /// Things to plot.
    pub series: Vec<Series>,
    /// Things to tabulate.
    pub tables: Vec<Table>,
}

impl ScenarioResult {
    /// A result counts as good only if it passed *and* ran without error.
    pub fn ok(&self) -> bool {
        self.passed && self.error.is_none()
    }

    /// Grouping key for matrix cases; falls back to `name` when the
    /// producer left `base` empty, so such results are never lumped together.
    pub fn base_id(&self) -> &str {
        if self.base.is_empty() {
            &self.name
        } else {
            &self.base
        }
    }
}

/// One assertion of a scenario.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default)]
pub struct CheckResult {
    pub what: String,
    pub description: String,
    pub passed: bool,
    pub detail: String,
}

/// A named set of points; series sharing `chart` in one result share a plot.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default)]
pub struct Series {
    pub chart: String,
    /// Legend entry.
    pub label: String,
    pub kind: SeriesKind,
    pub x_label: String,
    pub y_label: String,
    #[serde(deserialize_with = "de_points")]
    pub points: Vec<(f64, f64)>,
}

/// How `Series::points` are interpreted.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Default)]
pub enum SeriesKind {
    /// (x, y) points joined by a line.
    #[default]
    Line,
    /// Raw samples in `.1` (x ignored), plotted as an empirical CDF.
    Cdf,
}

/// A small table produced by a scenario.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default)]
pub struct Table {
    pub title: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

/// A table cell; `status` colours it: Some(true) good, Some(false) bad.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default)]
pub struct Cell {
    pub text: String,
    pub status: Option<bool>,
}

impl Cell {
    /// A plain, uncoloured cell.
    pub fn text(text: impl Into<String>) -> Self {
        Cell {
            text: text.into(),
            status: None,
        }
    }
}

/// Reads a float that may have been written as `null` (NaN/inf) back as NaN.
fn de_f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// Same as [`de_f64`] for point lists.
fn de_points<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(f64, f64)>, D::Error> {
    let raw = Vec::<(Option<f64>, Option<f64>)>::deserialize(d)?;
    Ok(raw
        .into_iter()
        .map(|(x, y)| (x.unwrap_or(f64::NAN), y.unwrap_or(f64::NAN)))
        .collect())
}
