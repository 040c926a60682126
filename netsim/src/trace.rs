//! The run trace: one line per event, stamped with simulated time. Its SHA-256 is what
//! determinism tests compare; keeping the text is optional (large runs hash only).
//! Kept text is bounded: past [`DEFAULT_KEEP_BYTES`] (or the run's own limit) only the
//! last part stays in memory, and the count of lines cut says how much came before. A
//! run that wants every line streams them to a file instead ([`Trace::to_file`]).

use crate::time::SimTime;
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::io::Write as _;

/// Trace text kept in memory by default: a 10,000-node run writes about 12 MB of trace
/// per simulated second, so an unbounded trace would grow past any machine's memory;
/// the last 64 MiB show how a failure came about, and a replay streams the rest.
pub const DEFAULT_KEEP_BYTES: usize = 64 * 1024 * 1024;

pub struct Trace {
    hasher: Sha256,
    text: Option<String>,
    /// Most bytes of text kept (the last ones).
    keep: usize,
    /// Lines and bytes dropped from the front of `text`.
    pub cut_lines: u64,
    pub cut_bytes: u64,
    file: Option<std::io::BufWriter<std::fs::File>>,
    line: String,
    pub lines: u64,
}

impl Trace {
    pub fn new(keep_text: bool) -> Self {
        Self::with_limit(keep_text, DEFAULT_KEEP_BYTES)
    }

    /// Keep at most the last `keep` bytes of text (cut at a line boundary).
    pub fn with_limit(keep_text: bool, keep: usize) -> Self {
        Trace {
            hasher: Sha256::new(),
            text: keep_text.then(String::new),
            keep: keep.max(1),
            cut_lines: 0,
            cut_bytes: 0,
            file: None,
            line: String::new(),
            lines: 0,
        }
    }

    /// Every line also goes to `path` as it is written (a replay's whole trace, in
    /// bounded memory).
    pub fn to_file(mut self, path: &std::path::Path) -> std::io::Result<Self> {
        self.file = Some(std::io::BufWriter::new(std::fs::File::create(path)?));
        Ok(self)
    }

    pub fn line(&mut self, now: SimTime, msg: &str) {
        self.line_args(now, format_args!("{msg}"));
    }

    /// A line formatted straight into the trace (no intermediate string).
    pub fn line_args(&mut self, now: SimTime, msg: std::fmt::Arguments<'_>) {
        self.line.clear();
        let _ = writeln!(self.line, "{now} {msg}");
        self.hasher.update(self.line.as_bytes());
        if let Some(f) = &mut self.file {
            let _ = f.write_all(self.line.as_bytes());
        }
        if let Some(t) = &mut self.text {
            t.push_str(&self.line);
            // Cut in batches (half the limit at a time) so each byte moves at most twice.
            if t.len() > self.keep + self.keep / 2 {
                let from = t.len() - self.keep;
                let at = t.as_bytes()[from..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map(|p| from + p + 1)
                    .unwrap_or(t.len());
                self.cut_lines += t.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() as u64;
                self.cut_bytes += at as u64;
                t.drain(..at);
            }
        }
        self.lines += 1;
    }

    /// Flush the file a trace streams to, if any.
    pub fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.file {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }

    /// Hex SHA-256 of every line so far.
    pub fn hash_hex(&self) -> String {
        let d = self.hasher.clone().finalize();
        d.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The kept text: every line, or the last ones when `cut_lines` > 0.
    pub fn text(&self) -> Option<&str> {
        self.text.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_text_is_bounded_and_ends_with_the_last_lines() {
        let mut t = Trace::with_limit(true, 1000);
        for i in 0..10_000 {
            t.line(SimTime::ZERO, &format!("event {i}"));
        }
        let text = t.text().unwrap();
        assert!(text.len() <= 1500, "{} bytes kept", text.len());
        assert!(text.ends_with("event 9999\n"));
        assert!(
            text.starts_with(&format!("{} event", SimTime::ZERO)),
            "cut at a line start"
        );
        let kept = text.lines().count() as u64;
        assert_eq!(kept + t.cut_lines, 10_000);
        assert_eq!(t.lines, 10_000);
    }

    #[test]
    fn the_hash_covers_every_line_whatever_is_kept() {
        let (mut a, mut b) = (Trace::with_limit(true, 100), Trace::new(true));
        for i in 0..1000 {
            a.line(SimTime::ZERO, &format!("x {i}"));
            b.line(SimTime::ZERO, &format!("x {i}"));
        }
        assert_eq!(a.hash_hex(), b.hash_hex());
        assert_eq!(b.cut_lines, 0);
        assert!(a.cut_lines > 0);
    }

    #[test]
    fn a_streamed_trace_has_every_line() {
        let path = std::env::temp_dir().join(format!("netsim-trace-{}.txt", std::process::id()));
        let mut t = Trace::with_limit(true, 100).to_file(&path).unwrap();
        for i in 0..1000 {
            t.line(SimTime::ZERO, &format!("y {i}"));
        }
        t.flush().unwrap();
        let whole = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(whole.lines().count(), 1000);
        assert!(whole.ends_with(t.text().unwrap()));
    }
}
