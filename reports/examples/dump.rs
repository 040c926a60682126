#[path = "../tests/common/mod.rs"]
mod common;
fn main() {
    let dir = std::path::Path::new("/tmp/report-dump");
    reports::write_report(dir, &common::sample_report()).unwrap();
}
