//! A `jamisim node ...` process as a script uses it: JSON lines out, commands in.
//! (Each test file uses part of it.)
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub struct CliNode {
    pub child: Child,
    pub stdin: ChildStdin,
    pub lines: mpsc::Receiver<serde_json::Value>,
    pub addr: String,
    /// The `started` line.
    pub started: serde_json::Value,
}

impl CliNode {
    /// `jamisim ARGS` (a command that prints JSON lines, `started` first).
    pub fn spawn(args: &[&str]) -> CliNode {
        let mut child = Command::new(env!("CARGO_BIN_EXE_jamisim"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("jamisim starts");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&l) {
                    let _ = tx.send(v);
                }
            }
        });
        let started = lines
            .recv_timeout(Duration::from_secs(10))
            .expect("a started line");
        assert_eq!(started["event"], "started");
        // A node using a proxy has no UDP address of its own.
        let addr = started["addr"].as_str().unwrap_or_default().to_string();
        CliNode {
            child,
            stdin,
            lines,
            addr,
            started,
        }
    }

    pub fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// The next line whose `event` is `event`, skipping others.
    pub fn wait(&self, event: &str, timeout: Duration) -> Option<serde_json::Value> {
        self.wait_for(timeout, |v| v["event"] == event)
    }

    /// The next line `pick` accepts, skipping others.
    pub fn wait_for(
        &self,
        timeout: Duration,
        pick: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        let deadline = std::time::Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(v) if pick(&v) => return Some(v),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
        None
    }
}

impl Drop for CliNode {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "x");
        std::thread::sleep(Duration::from_millis(100));
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
