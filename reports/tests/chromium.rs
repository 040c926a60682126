//! Renders index.html in headless Chromium and checks, on the screenshot's
//! pixels, that the plot lines are actually visible: string checks on the
//! SVG cannot tell whether a browser draws it.
//!
//! Skips (with a message) when Chromium is not installed, unless
//! `JAMISIM_REQUIRE_PEERS=1`, which turns the skip into a failure for CI
//! machines that are supposed to have it.

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SKIP: &str = "SKIP: chromium not installed (apt-get install chromium)";
/// The first series colour, #1f77b4.
const BLUE: [u8; 3] = [0x1f, 0x77, 0xb4];
const TOLERANCE: i16 = 8;
const MIN_BLUE_PIXELS: usize = 300;

fn find_chromium() -> Option<PathBuf> {
    let fixed = Path::new("/usr/bin/chromium");
    if fixed.is_file() {
        return Some(fixed.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("chromium"))
        .find(|p| p.is_file())
}

fn fresh_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("reports-chromium-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create temp dir");
    d
}

/// Runs the command with stderr into `log` (a pipe nobody reads could fill
/// up and stall it), killing it if it takes longer than `limit`.
fn run_with_timeout(cmd: &mut Command, log: &Path, limit: Duration) -> std::process::ExitStatus {
    let log_file = std::fs::File::create(log).expect("create chromium log");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .expect("spawn chromium");
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn count_blue(png_path: &Path) -> (usize, u32, u32) {
    let file = std::fs::File::open(png_path).expect("open screenshot");
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().expect("png header");
    let mut buf = vec![0; reader.output_buffer_size().expect("png size")];
    let info = reader.next_frame(&mut buf).expect("png frame");
    let channels = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => panic!("unexpected screenshot colour type {other:?}"),
    };
    let blue = buf[..info.buffer_size()]
        .chunks_exact(channels)
        .filter(|px| {
            px.iter()
                .zip(BLUE)
                .all(|(a, b)| (*a as i16 - b as i16).abs() <= TOLERANCE)
        })
        .count();
    (blue, info.width, info.height)
}

#[test]
fn plots_are_visible_in_chromium() {
    let Some(chromium) = find_chromium() else {
        if std::env::var("JAMISIM_REQUIRE_PEERS").as_deref() == Ok("1") {
            panic!("{SKIP}");
        }
        // Straight to stderr: the test harness captures eprintln! output of
        // passing tests, and a silent skip would look like a pass.
        let _ = writeln!(std::io::stderr(), "{SKIP}");
        return;
    };

    let report_dir = fresh_dir("report");
    let profile = fresh_dir("profile");
    let shots = fresh_dir("shot");
    reports::write_report(&report_dir, &common::sample_report()).expect("write report");
    let shot = shots.join("shot.png");
    let log = shots.join("chromium.log");
    let url = format!("file://{}", report_dir.join("index.html").display());

    let status = run_with_timeout(
        Command::new(&chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("--window-size=1280,4000")
            .arg(format!("--screenshot={}", shot.display()))
            .arg(&url),
        &log,
        Duration::from_secs(60),
    );
    if !shot.is_file() {
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        panic!("chromium ({status}) wrote no screenshot; end of its stderr:\n{tail}");
    }

    // Keep a copy for people to look at; failing to copy is not a test failure.
    let _ = std::fs::copy(&shot, "/tmp/report-shot.png");

    let (blue, w, h) = count_blue(&shot);
    let _ = writeln!(
        std::io::stderr(),
        "chromium screenshot {w}x{h}: {blue} pixels of #1f77b4 (copy in /tmp/report-shot.png)"
    );
    assert!(
        blue >= MIN_BLUE_PIXELS,
        "only {blue} pixels of the first series colour; plots not visible?"
    );

    for d in [report_dir, profile, shots] {
        let _ = std::fs::remove_dir_all(d);
    }
}
