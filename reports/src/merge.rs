//! Combining shard reports into one run report.
//!
//! Shards of the same commit and command are disjoint slices of one run, so
//! merging sorts by (name, seed) to get an order that does not depend on how
//! the work was split. Anything suspicious (different commits, missing
//! shards, one case+seed with two different outcomes) becomes a note rather
//! than an error: the merged report should still be written.

use std::collections::BTreeSet;

use crate::model::{RunReport, ScenarioResult};

/// Merges shard reports; see the module docs for the rules.
pub fn merge(reports: Vec<RunReport>) -> RunReport {
    let mut it = reports.into_iter();
    let Some(first) = it.next() else {
        return RunReport::default();
    };
    let rest: Vec<RunReport> = it.collect();
    let all = || std::iter::once(&first).chain(rest.iter());

    let mut notes: Vec<String> = Vec::new();
    let mut push_note = |n: String| {
        if !notes.contains(&n) {
            notes.push(n);
        }
    };
    for r in all() {
        for n in &r.notes {
            push_note(n.clone());
        }
    }

    let commits: BTreeSet<&str> = all().map(|r| r.commit.as_str()).collect();
    if commits.len() > 1 {
        let list: Vec<&str> = commits.into_iter().collect();
        push_note(format!(
            "merged shards were built from different commits: {}",
            list.join(", ")
        ));
    }
    if let Some(n) = shard_note(all().map(|r| r.shard)) {
        push_note(n);
    }

    let started_utc = all()
        .map(|r| r.started_utc.as_str())
        .filter(|s| !s.is_empty())
        .min()
        .unwrap_or("")
        .to_string();
    let wall_seconds = all()
        .map(|r| r.wall_seconds)
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);

    let mut scenarios: Vec<ScenarioResult> = Vec::new();
    let run_id = first.run_id.clone();
    let commit = first.commit.clone();
    let command = first.command.clone();
    for r in std::iter::once(first).chain(rest) {
        scenarios.extend(r.scenarios);
    }
    // Stable, so equal keys keep shard order.
    scenarios.sort_by(|a, b| (&a.name, a.seed).cmp(&(&b.name, b.seed)));
    let (scenarios, conflicts) = dedup(scenarios);
    for (name, seed) in conflicts {
        push_note(format!(
            "{name} seed {seed} appears more than once with different results (non-deterministic?)"
        ));
    }

    RunReport {
        run_id,
        commit,
        command,
        started_utc,
        wall_seconds,
        shard: None,
        scenarios,
        notes,
    }
}

/// Drops exact duplicates within each run of equal (name, seed); returns the
/// keys that still have more than one distinct result.
fn dedup(sorted: Vec<ScenarioResult>) -> (Vec<ScenarioResult>, Vec<(String, u64)>) {
    let mut out: Vec<ScenarioResult> = Vec::with_capacity(sorted.len());
    let mut conflicts = Vec::new();
    let mut key_start = 0;
    for s in sorted {
        let same_key = |o: &ScenarioResult| o.name == s.name && o.seed == s.seed;
        if !out.last().is_some_and(same_key) {
            key_start = out.len();
        }
        if out[key_start..].contains(&s) {
            continue;
        }
        if out.len() > key_start {
            let key = (s.name.clone(), s.seed);
            if conflicts.last() != Some(&key) {
                conflicts.push(key);
            }
        }
        out.push(s);
    }
    (out, conflicts)
}

/// Says which shards are missing, when the inputs were shards of one split.
fn shard_note(shards: impl Iterator<Item = Option<(u32, u32)>>) -> Option<String> {
    let shards: Vec<(u32, u32)> = shards.flatten().collect();
    let counts: BTreeSet<u32> = shards.iter().map(|s| s.1).collect();
    if counts.len() > 1 {
        let list: Vec<String> = counts.iter().map(u32::to_string).collect();
        return Some(format!(
            "merged shards come from different splits (shard counts {})",
            list.join(", ")
        ));
    }
    let count = *counts.first()?;
    let have: BTreeSet<u32> = shards.iter().map(|s| s.0).collect();
    if (have.len() as u64) < u64::from(count) {
        let list: Vec<String> = have.iter().map(u32::to_string).collect();
        return Some(format!(
            "only {} of {} shards merged (have shard {})",
            have.len(),
            count,
            list.join(", ")
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(name: &str, seed: u64, passed: bool) -> ScenarioResult {
        ScenarioResult {
            name: name.into(),
            seed,
            passed,
            ..Default::default()
        }
    }

    #[test]
    fn notes_conflicts_commits_and_missing_shards() {
        let a = RunReport {
            commit: "aaa".into(),
            shard: Some((0, 3)),
            wall_seconds: 2.0,
            notes: vec!["n".into()],
            scenarios: vec![res("x", 1, true), res("y", 1, true)],
            ..Default::default()
        };
        let b = RunReport {
            commit: "bbb".into(),
            shard: Some((1, 3)),
            wall_seconds: 5.0,
            notes: vec!["n".into()],
            scenarios: vec![res("x", 1, false), res("y", 1, true)],
            ..Default::default()
        };
        let m = merge(vec![a, b]);
        assert_eq!(m.commit, "aaa");
        assert_eq!(m.wall_seconds, 5.0);
        assert_eq!(m.shard, None);
        assert_eq!(m.scenarios.len(), 3, "exact duplicate y/1 dropped");
        assert_eq!(m.notes.iter().filter(|n| *n == "n").count(), 1);
        assert!(m.notes.iter().any(|n| n.contains("different commits")));
        assert!(m.notes.iter().any(|n| n.contains("only 2 of 3 shards")));
        assert!(m.notes.iter().any(|n| n.starts_with("x seed 1 appears")));
        assert_eq!(merge(vec![]), RunReport::default());
    }
}
