//! The official OpenDHT node (`dhtnode` from Debian's OpenDHT 2.4.12), started by the
//! test inside a namespace of its own and stopped by it.

use crate::netns::Netns;
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Stdio};
use std::time::{Duration, Instant};

/// A running `dhtnode` (killed on drop; only this process is touched).
pub struct DhtNode {
    child: Child,
    stdin: Option<ChildStdin>,
    pub port: u16,
    pub log: PathBuf,
    /// Node id as dhtnode printed it (40 hex digits).
    pub id: String,
}

impl DhtNode {
    /// Start `dhtnode -p PORT [-b BOOTSTRAP]` (interactive, so it takes commands on
    /// stdin) in `ns`, with its output in a temp file, and wait until it reports its
    /// node id (it is then bound and running).
    /// `identity` adds `-i`: dhtnode generates a key and certificate, so it can sign
    /// (`s`) and encrypt (`e`).
    pub fn start(
        ns: &Netns,
        port: u16,
        bootstrap: Option<SocketAddr>,
        identity: bool,
    ) -> Result<DhtNode> {
        Self::start_with(ns, port, bootstrap, identity, &[])
    }

    /// An identity node (`dhtnode -i`) on `plain_port` and, bootstrapped from it, a
    /// second dhtnode serving OpenDHT's proxy on HTTP `http_port` (its own node on UDP
    /// `proxy_udp_port`): the official proxy in front of the official DHT.
    pub fn start_proxied(
        ns: &Netns,
        plain_port: u16,
        proxy_udp_port: u16,
        http_port: u16,
    ) -> Result<(DhtNode, DhtNode)> {
        let official = DhtNode::start(ns, plain_port, None, true).context("dhtnode -i")?;
        let proxy = DhtNode::start_with(
            ns,
            proxy_udp_port,
            Some(SocketAddr::from(([127, 0, 0, 1], plain_port))),
            false,
            &["--proxyserver", &http_port.to_string()],
        )
        .context("dhtnode --proxyserver")?;
        Ok((official, proxy))
    }

    /// [`DhtNode::start`] with more command-line arguments (e.g. `--proxyserver PORT`,
    /// `--proxyclient HOST:PORT`).
    pub fn start_with(
        ns: &Netns,
        port: u16,
        bootstrap: Option<SocketAddr>,
        identity: bool,
        extra_args: &[&str],
    ) -> Result<DhtNode> {
        let log = std::env::temp_dir().join(format!("jamisim-dhtnode-{}-{port}.log", ns.name()));
        let logf = std::fs::File::create(&log).context("creating the dhtnode log")?;
        let mut cmd = ns.command("dhtnode");
        cmd.args(["-p", &port.to_string()]);
        if identity {
            cmd.arg("-i");
        }
        if let Some(b) = bootstrap {
            cmd.args(["-b", &b.to_string()]);
        }
        cmd.args(extra_args);
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(logf.try_clone()?)
            .stderr(logf)
            .spawn()
            .context("starting dhtnode")?;
        let stdin = child.stdin.take();
        let mut node = DhtNode {
            child,
            stdin,
            port,
            log,
            id: String::new(),
        };
        // Generating an RSA-4096 identity takes a few seconds on two cores.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = node.log_text();
            if let Some(rest) = text.split("OpenDHT node ").nth(1) {
                node.id = rest.chars().take_while(|c| c.is_ascii_hexdigit()).collect();
                return Ok(node);
            }
            if let Ok(Some(status)) = node.child.try_wait() {
                bail!("dhtnode exited with {status}: {}", text.trim());
            }
            if Instant::now() > deadline {
                bail!(
                    "dhtnode did not start within 10 s (log: {})",
                    node.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Send a line to dhtnode's command prompt (its interactive commands).
    pub fn command(&mut self, line: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().context("dhtnode stdin closed")?;
        writeln!(stdin, "{line}")?;
        stdin.flush()?;
        Ok(())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait until dhtnode's output contains `needle` (after `from` bytes), up to `timeout`.
    pub fn wait_for(&self, from: usize, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.log_text();
            if let Some(tail) = text.get(from..) {
                if tail.contains(needle) {
                    return Some(tail.to_string());
                }
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The public key id `dhtnode -i` printed at start (`Public key ID <40 hex>`).
    pub fn public_key_id(&self) -> Option<node::dht::InfoHash> {
        self.log_text()
            .split("Public key ID ")
            .nth(1)
            .and_then(|r| r.get(..40))
            .and_then(|h| h.parse().ok())
    }

    /// Bytes of output so far (to wait for what comes after a command).
    pub fn log_len(&self) -> usize {
        self.log_text().len()
    }
}

impl Drop for DhtNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}
