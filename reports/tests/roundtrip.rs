//! Sharding and persistence: merged shards equal the unsharded run, and
//! results.json survives write_report/read_results.

mod common;

use common::sample_report;
use reports::{merge, read_results, write_report, RunReport};

fn tempdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("reports-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn merging_shards_equals_unsharded_run() {
    let full = sample_report();
    let mut shards: Vec<RunReport> = (0..2u32)
        .map(|i| RunReport {
            shard: Some((i, 2)),
            wall_seconds: 1.0 + i as f64,
            scenarios: full
                .scenarios
                .iter()
                .enumerate()
                .filter(|(k, _)| *k as u32 % 2 == i)
                .map(|(_, s)| s.clone())
                .collect(),
            ..full.clone()
        })
        .collect();
    // A retried shard repeats results; exact duplicates must disappear.
    let dup = shards[0].scenarios[0].clone();
    shards[1].scenarios.push(dup);
    shards.reverse();

    let merged = merge(shards);
    let mut expected = full.scenarios.clone();
    expected.sort_by(|a, b| (&a.name, a.seed).cmp(&(&b.name, b.seed)));
    assert_eq!(merged.scenarios, expected);
    assert_eq!(merged.shard, None);
    assert_eq!(merged.wall_seconds, 2.0);
    assert_eq!(merged.notes, full.notes, "notes deduplicated, no warnings");
}

#[test]
fn results_json_round_trips_and_other_files_survive() {
    let dir = tempdir("roundtrip");
    std::fs::create_dir_all(dir.join("traces")).unwrap();
    std::fs::write(dir.join("traces/t.jsonl"), "{}").unwrap();

    let mut r = sample_report();
    r.shard = Some((1, 4));
    write_report(&dir, &r).unwrap();
    for f in ["report.md", "index.html", "junit.xml", "results.json"] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    assert!(
        dir.join("traces/t.jsonl").is_file(),
        "runner files must be kept"
    );
    assert_eq!(read_results(&dir.join("results.json")).unwrap(), r);

    // Non-finite numbers become null in JSON and must still read back.
    r.wall_seconds = f64::NAN;
    r.scenarios[0].series.push(reports::Series {
        points: vec![(f64::INFINITY, 1.0)],
        ..Default::default()
    });
    write_report(&dir, &r).unwrap();
    let back = read_results(&dir.join("results.json")).unwrap();
    assert!(back.wall_seconds.is_nan());
    assert!(back.scenarios[0].series.last().unwrap().points[0]
        .0
        .is_nan());

    assert!(read_results(&dir.join("missing.json")).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}
