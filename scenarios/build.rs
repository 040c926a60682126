//! Embed the scenario suites (suites/<suite>/*.toml) in the binary so `jamisim run`
//! works from any directory.

use std::fmt::Write;
use std::path::Path;

fn main() {
    let root = Path::new("suites");
    println!("cargo:rerun-if-changed=suites");
    let mut files = Vec::new();
    if let Ok(suites) = std::fs::read_dir(root) {
        for s in suites.flatten() {
            println!("cargo:rerun-if-changed={}", s.path().display());
            if let Ok(entries) = std::fs::read_dir(s.path()) {
                for e in entries.flatten() {
                    let p = e.path();
                    if p.extension().and_then(|x| x.to_str()) == Some("toml") {
                        println!("cargo:rerun-if-changed={}", p.display());
                        files.push(p);
                    }
                }
            }
        }
    }
    files.sort();
    let mut out = String::from("/// (suite, path, contents) of every built-in scenario file.\npub static SUITE_FILES: &[(&str, &str, &str)] = &[\n");
    for p in &files {
        let suite = p
            .parent()
            .and_then(|d| d.file_name())
            .and_then(|n| n.to_str())
            .unwrap_or("");
        let abs = std::fs::canonicalize(p).expect("suite file exists");
        writeln!(
            out,
            "    ({suite:?}, {:?}, include_str!({:?})),",
            p.display().to_string(),
            abs.display().to_string()
        )
        .unwrap();
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("suites.rs");
    std::fs::write(dest, out).expect("write suites.rs");
}
