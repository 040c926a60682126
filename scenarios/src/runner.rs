//! The runner: select cases, expand seeds, shard, run in parallel with a progress bar,
//! and write traces, pcaps, failure capsules and the report.

use crate::checks::{self, Outcome};
use crate::expand::{self, Case};
use crate::steps;
use crate::world::{BuildOpts, World};
use crate::SUITE_FILES;
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use netsim::Sabotage;
use reports::{CheckResult, RunReport, ScenarioResult};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Traces larger than this are written only for failing cases (`jamisim replay` writes
/// any trace in full).
pub const MAX_KEPT_TRACE_BYTES: usize = 8 * 1024 * 1024;

/// What `jamisim run` was asked to do.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Suite names, scenario ids (`suite/name`, `suite/name[a=x]`) or scenario files.
    pub targets: Vec<String>,
    /// Seeds to run each case with; empty means each scenario's own seed.
    pub seeds: Vec<u64>,
    /// (index, count), 1-based: run only every count-th job starting at index.
    pub shard: Option<(u32, u32)>,
    pub out: PathBuf,
    pub jobs: usize,
    pub progress: bool,
    /// Write a pcap per host for every case.
    pub capture: bool,
    pub commit: String,
    pub command: String,
    pub run_id: String,
    pub started_utc: String,
    /// Run only the case with exactly this id (replay of one case from a file).
    pub only_id: Option<String>,
    /// Deliberately broken models (tests only).
    pub sabotage: Sabotage,
    /// Stream each case's whole trace to its `trace.txt` as it runs (replays), instead
    /// of keeping its last part in memory.
    pub full_trace: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            targets: Vec::new(),
            seeds: Vec::new(),
            shard: None,
            out: PathBuf::from("reports/runs/latest"),
            jobs: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            progress: false,
            capture: false,
            commit: "unknown".into(),
            command: String::new(),
            run_id: "run".into(),
            started_utc: String::new(),
            only_id: None,
            sabotage: Sabotage::default(),
            full_trace: false,
        }
    }
}

/// Resolve targets to cases, in a stable order: suites (less their opt-in cases, see
/// `model::OPT_IN_TAGS`), scenario ids, `@tag`s and scenario files.
pub fn select(targets: &[String]) -> Result<Vec<Case>> {
    let mut builtin = Vec::new();
    for (suite, path, text) in SUITE_FILES {
        builtin.extend(expand::cases(suite, path, text)?);
    }
    if targets.is_empty() {
        builtin.retain(|c| !c.spec.scenario.opt_in());
        return Ok(builtin);
    }
    let mut out: Vec<Case> = Vec::new();
    for t in targets {
        let before = out.len();
        let p = Path::new(t);
        if t.ends_with(".toml") && p.exists() {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {t}"))?;
            let suite = p
                .parent()
                .and_then(|d| d.file_name())
                .and_then(|n| n.to_str())
                .unwrap_or("file");
            out.extend(expand::cases(suite, t, &text)?);
        } else {
            // A suite leaves out its opt-in cases; a tag (`@large`) or a name takes them.
            let tag = t.strip_prefix('@');
            out.extend(
                builtin
                    .iter()
                    .filter(|c| match tag {
                        Some(tag) => c.spec.scenario.tags.iter().any(|x| x == tag),
                        None => {
                            (c.suite == *t && !c.spec.scenario.opt_in())
                                || c.base == *t
                                || c.id == *t
                        }
                    })
                    .cloned(),
            );
        }
        if out.len() == before {
            let suites = crate::suites().join(", ");
            bail!("`{t}` matches no suite, scenario or file (suites: {suites}; `jamisim list` shows scenarios)");
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    out.retain(|c| seen.insert((c.file.clone(), c.id.clone())));
    Ok(out)
}

/// What one run of one case leaves behind.
pub struct CaseRun {
    pub result: ScenarioResult,
    /// The trace text kept in memory: all of it, or its last part when
    /// `trace_cut_lines` lines were cut from the front.
    pub trace: Option<String>,
    pub trace_cut_lines: u64,
    /// The whole trace was streamed to this file.
    pub trace_file: Option<PathBuf>,
    pub pcaps: Vec<(String, Vec<u8>)>,
}

fn replay_command(case: &Case, seed: u64) -> String {
    let builtin = SUITE_FILES.iter().any(|(_, p, _)| *p == case.file);
    if builtin {
        format!("jamisim replay '{}' --seed {seed}", case.id)
    } else {
        format!(
            "jamisim replay --file '{}' '{}' --seed {seed}",
            case.file, case.id
        )
    }
}

/// Build, run and check one case with one seed.
pub fn run_case(case: &Case, seed: u64, opts: &BuildOpts) -> CaseRun {
    let wall = Instant::now();
    let mut result = ScenarioResult {
        suite: case.suite.clone(),
        name: case.id.clone(),
        base: case.base.clone(),
        about: case.spec.scenario.about.clone(),
        file: case.file.clone(),
        matrix: case.matrix.clone(),
        seed,
        replay: replay_command(case, seed),
        ..Default::default()
    };
    let attempt =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| simulate(case, seed, opts)));
    let mut trace = None;
    let mut trace_cut_lines = 0;
    let mut pcaps = Vec::new();
    match attempt {
        Ok(Ok((w, outcome))) => {
            let mut outcome = outcome;
            if case.spec.check.iter().any(|c| c.what == "deterministic") {
                determinism(case, seed, opts, &w, &mut outcome);
            }
            result.checks = outcome.checks;
            result.summary = outcome.summary.join(", ");
            result.series = outcome.series;
            result.tables = outcome.tables;
            result.sim_seconds = w.sim.now().as_secs_f64();
            result.events = w.sim.core.events;
            result.trace_hash = w.sim.trace_hash();
            trace = w.sim.trace_text().map(str::to_string);
            trace_cut_lines = w.sim.trace_cut_lines();
            pcaps = w
                .sim
                .pcaps()
                .into_iter()
                .map(|(h, p)| (h.to_string(), p.bytes().to_vec()))
                .collect();
        }
        Ok(Err(e)) => result.error = Some(format!("{e:#}")),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            result.error = Some(format!("the simulation panicked: {msg}"));
        }
    }
    result.passed = result.error.is_none()
        && !result.checks.is_empty()
        && result.checks.iter().all(|c| c.passed);
    if result.error.is_none() && result.checks.is_empty() {
        result.error = Some("the scenario has no checks".into());
    }
    result.wall_seconds = wall.elapsed().as_secs_f64();
    CaseRun {
        result,
        trace,
        trace_cut_lines,
        trace_file: opts.trace_file.clone(),
        pcaps,
    }
}

fn simulate(case: &Case, seed: u64, opts: &BuildOpts) -> Result<(World, Outcome)> {
    let mut w = World::build(case, seed, opts)?;
    steps::run(&mut w, &case.spec.step)?;
    let mut outcome = Outcome::default();
    for c in &case.spec.check {
        checks::evaluate(&w, c, &mut outcome);
    }
    Ok((w, outcome))
}

/// Run the case again with the same seed: the trace must be byte-identical.
fn determinism(case: &Case, seed: u64, opts: &BuildOpts, first: &World, out: &mut Outcome) {
    let again = simulate(
        case,
        seed,
        &BuildOpts {
            keep_trace: false,
            capture: false,
            trace_file: None,
            ..opts.clone()
        },
    );
    let (passed, detail) = match again {
        Ok((w2, _)) => {
            let (a, b) = (first.sim.trace_hash(), w2.sim.trace_hash());
            let lines = first.sim.core.trace.as_ref().map(|t| t.lines).unwrap_or(0);
            (
                a == b,
                format!(
                    "trace sha256 {} vs {} over {lines} lines",
                    &a[..16.min(a.len())],
                    &b[..16.min(b.len())]
                ),
            )
        }
        Err(e) => (false, format!("second run failed: {e:#}")),
    };
    out.checks.push(CheckResult {
        what: "deterministic".into(),
        description: format!("seed {seed} run twice gives a byte-identical trace"),
        passed,
        detail,
    });
}

fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Run everything the options select and write the report. Returns the report.
pub fn run(opts: &RunOptions) -> Result<RunReport> {
    let wall = Instant::now();
    let mut cases = select(&opts.targets)?;
    if let Some(id) = &opts.only_id {
        cases.retain(|c| &c.id == id);
        if cases.is_empty() {
            bail!("no scenario case `{id}` (see `jamisim list`)");
        }
    }
    let mut jobs: Vec<(usize, u64)> = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        if opts.seeds.is_empty() {
            jobs.push((i, c.spec.scenario.seed));
        } else {
            jobs.extend(opts.seeds.iter().map(|&s| (i, s)));
        }
    }
    if let Some((idx, n)) = opts.shard {
        if n == 0 || idx == 0 || idx > n {
            bail!("--shard {idx}/{n}: the index must be in 1..={n}");
        }
        jobs = jobs
            .into_iter()
            .enumerate()
            .filter(|(k, _)| (*k as u32) % n == idx - 1)
            .map(|(_, j)| j)
            .collect();
    }
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("creating {}", opts.out.display()))?;
    let pb = if opts.progress {
        ProgressBar::new(jobs.len() as u64)
    } else {
        ProgressBar::hidden()
    };
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40.cyan/blue} {pos}/{len} {wide_msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let build = BuildOpts {
        capture: opts.capture,
        keep_trace: true,
        sabotage: opts.sabotage.clone(),
        ..BuildOpts::default()
    };
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<ScenarioResult>>> = Mutex::new(vec![None; jobs.len()]);
    let first_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..opts.jobs.max(1).min(jobs.len().max(1)) {
            scope.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::SeqCst);
                let Some(&(ci, seed)) = jobs.get(k) else {
                    break;
                };
                let case = &cases[ci];
                let mut build = build.clone();
                if opts.full_trace {
                    let dir = opts.out.join(case_dir(case, seed));
                    if std::fs::create_dir_all(&dir).is_ok() {
                        build.trace_file = Some(dir.join("trace.txt"));
                        build.keep_trace = false;
                    }
                }
                let mut run = run_case(case, seed, &build);
                if let Err(e) = write_artifacts(&opts.out, case, seed, &mut run, &opts.commit) {
                    first_error.lock().expect("no poisoning").get_or_insert(e);
                }
                let mark = if run.result.passed { "ok  " } else { "FAIL" };
                pb.set_message(format!("{mark} {} seed={seed}", case.id));
                if !run.result.passed && opts.progress {
                    pb.println(format!(
                        "FAIL {} seed={seed}\n     replay: {}",
                        case.id, run.result.replay
                    ));
                }
                pb.inc(1);
                results.lock().expect("no poisoning")[k] = Some(run.result);
            });
        }
    });
    pb.finish_and_clear();
    if let Some(e) = first_error.into_inner().expect("no poisoning") {
        return Err(e);
    }
    let scenarios: Vec<ScenarioResult> = results
        .into_inner()
        .expect("no poisoning")
        .into_iter()
        .flatten()
        .collect();
    let mut report = RunReport {
        run_id: opts.run_id.clone(),
        commit: opts.commit.clone(),
        command: opts.command.clone(),
        started_utc: opts.started_utc.clone(),
        wall_seconds: wall.elapsed().as_secs_f64(),
        shard: opts.shard,
        scenarios,
        notes: Vec::new(),
    };
    let untraced: Vec<&str> = report
        .scenarios
        .iter()
        .filter(|s| s.trace_path.is_none() && s.error.is_none())
        .map(|s| s.name.as_str())
        .collect();
    if !untraced.is_empty() {
        let note = format!(
            "Traces over {} MiB are kept only for failures; replay to get them: {}",
            MAX_KEPT_TRACE_BYTES / (1024 * 1024),
            untraced.join(", ")
        );
        report.notes.push(note);
    }
    reports::write_report(&opts.out, &report)?;
    Ok(report)
}

/// Where a case's artifacts go, relative to the run's directory.
fn case_dir(case: &Case, seed: u64) -> PathBuf {
    PathBuf::from("scenarios")
        .join(slug(&case.id))
        .join(format!("seed-{seed}"))
}

/// Write a case's trace and pcaps, and a capsule when it failed; record their paths.
fn write_artifacts(
    out: &Path,
    case: &Case,
    seed: u64,
    run: &mut CaseRun,
    commit: &str,
) -> Result<()> {
    let rel = case_dir(case, seed);
    let dir = out.join(&rel);
    if run.trace.is_some() || !run.pcaps.is_empty() || !run.result.passed {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if run.trace_file.is_some() {
        run.result.trace_path = Some(rel.join("trace.txt").display().to_string());
    } else if let Some(t) = &run.trace {
        // Big traces of passing cases are not kept (the hash is); a replay writes them.
        // A failing case keeps what memory kept: the trace's last part at most.
        if (t.len() <= MAX_KEPT_TRACE_BYTES && run.trace_cut_lines == 0) || !run.result.passed {
            let mut f = std::io::BufWriter::new(std::fs::File::create(dir.join("trace.txt"))?);
            if run.trace_cut_lines > 0 {
                writeln!(
                    f,
                    "# the first {} lines of this trace are cut (only its last {} MiB are kept); `{}` writes it whole",
                    run.trace_cut_lines,
                    t.len().div_ceil(1024 * 1024),
                    run.result.replay
                )?;
            }
            f.write_all(t.as_bytes())?;
            f.flush()?;
            run.result.trace_path = Some(rel.join("trace.txt").display().to_string());
        }
    }
    for (host, bytes) in &run.pcaps {
        let name = format!("{}.pcap", slug(host));
        std::fs::write(dir.join(&name), bytes)?;
        run.result.pcaps.push(rel.join(name).display().to_string());
    }
    if !run.result.passed {
        let capsule = serde_json::json!({
            "scenario": case.id,
            "file": case.file,
            "seed": seed,
            "commit": commit,
            "replay": run.result.replay,
            "error": run.result.error,
            "failed_checks": run.result.checks.iter().filter(|c| !c.passed).collect::<Vec<_>>(),
            "trace": run.result.trace_path,
            "trace_lines_cut": run.trace_cut_lines,
            "trace_sha256": run.result.trace_hash,
        });
        std::fs::write(
            dir.join("capsule.json"),
            serde_json::to_string_pretty(&capsule)?,
        )?;
        run.result.capsule = Some(rel.display().to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(targets: &[&str]) -> Vec<String> {
        let t: Vec<String> = targets.iter().map(|s| s.to_string()).collect();
        select(&t).unwrap().into_iter().map(|c| c.id).collect()
    }

    #[test]
    fn large_cases_run_only_when_asked_for() {
        let large = "dht/scale-10k".to_string();
        assert!(!ids(&[]).contains(&large), "not in a bare run");
        assert!(!ids(&["dht"]).contains(&large), "not in its suite's run");
        assert!(ids(&["dht"]).contains(&"dht/scale-1000".to_string()));
        assert_eq!(ids(&["@large"]), vec![large.clone()], "its tag selects it");
        assert_eq!(ids(&["dht/scale-10k"]), vec![large], "and so does its name");
    }

    /// A failing case whose trace memory cut keeps what was kept, says so at the top
    /// of `trace.txt` with the replay command, and counts the cut lines in the capsule.
    #[test]
    fn a_cut_trace_is_kept_with_a_note_and_the_replay_command() {
        let case = select(&["dht/scale-1000".to_string()]).unwrap().remove(0);
        let mut run = CaseRun {
            result: ScenarioResult {
                replay: "jamisim replay 'dht/scale-1000' --seed 3".into(),
                passed: false,
                ..Default::default()
            },
            trace: Some("   9.000000000s last line\n".into()),
            trace_cut_lines: 1234,
            trace_file: None,
            pcaps: Vec::new(),
        };
        let out = std::env::temp_dir().join(format!("jamisim-cut-{}", std::process::id()));
        write_artifacts(&out, &case, 3, &mut run, "abc").unwrap();
        let dir = out.join(case_dir(&case, 3));
        let text = std::fs::read_to_string(dir.join("trace.txt")).unwrap();
        let capsule = std::fs::read_to_string(dir.join("capsule.json")).unwrap();
        let _ = std::fs::remove_dir_all(&out);
        let first = text.lines().next().unwrap();
        assert!(first.starts_with("# the first 1234 lines"), "{first}");
        assert!(first.contains("jamisim replay 'dht/scale-1000' --seed 3"));
        assert!(text.ends_with("last line\n"));
        assert!(capsule.contains("\"trace_lines_cut\": 1234"), "{capsule}");
    }
}
