//! The run trace: one line per event, stamped with simulated time. Its SHA-256 is what
//! determinism tests compare; keeping the text is optional (large runs hash only).

use crate::time::SimTime;
use sha2::{Digest, Sha256};

pub struct Trace {
    hasher: Sha256,
    text: Option<String>,
    pub lines: u64,
}

impl Trace {
    pub fn new(keep_text: bool) -> Self {
        Trace {
            hasher: Sha256::new(),
            text: keep_text.then(String::new),
            lines: 0,
        }
    }

    pub fn line(&mut self, now: SimTime, msg: &str) {
        let line = format!("{now} {msg}\n");
        self.hasher.update(line.as_bytes());
        if let Some(t) = &mut self.text {
            t.push_str(&line);
        }
        self.lines += 1;
    }

    /// Hex SHA-256 of every line so far.
    pub fn hash_hex(&self) -> String {
        let d = self.hasher.clone().finalize();
        d.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn text(&self) -> Option<&str> {
        self.text.as_deref()
    }
}
