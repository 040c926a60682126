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
        // The path is resolved when the crate compiles, from its own manifest directory:
        // an absolute path written here pointed at whichever checkout last ran this
        // script, so two checkouts sharing one CARGO_TARGET_DIR (a clone and a worktree,
        // or a CI cache) compiled the other's suites, or failed once it was deleted.
        let rel = p.display().to_string();
        writeln!(
            out,
            "    ({suite:?}, {rel:?}, include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/\", {rel:?}))),"
        )
        .unwrap();
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("suites.rs");
    std::fs::write(dest, out).expect("write suites.rs");
}
