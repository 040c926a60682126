//! The official coturn TURN server (`turnserver`, Debian package coturn), started by the
//! test on loopback inside a namespace of its own with jamid's default credentials
//! (ring/ring, realm ring; PROTOCOLS §6.3) and the options nat-lab.sh uses.

use crate::netns::Netns;
use crate::TempDir;
use anyhow::{bail, Context, Result};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// Listening port (RFC 5766 default, jamid's default `TURN.server` port).
pub const PORT: u16 = 3478;

/// A running `turnserver` (killed on drop; only this process is touched).
pub struct Coturn {
    child: Child,
    dir: TempDir,
    pub log: PathBuf,
    ip: std::net::Ipv4Addr,
}

impl Coturn {
    /// Starts coturn on 127.0.0.1:3478 (UDP and TCP, relays on 127.0.0.1 with TCP
    /// allocations allowed) with user `user:password` in `realm`, and waits until it
    /// listens on both transports.
    pub fn start(ns: &Netns, user: &str, password: &str, realm: &str) -> Result<Coturn> {
        Self::start_at(ns, std::net::Ipv4Addr::LOCALHOST, user, password, realm)
    }

    /// [`Coturn::start`] listening and relaying on `ip` (e.g. the STUN address of
    /// [`crate::natlab`]'s internet).
    pub fn start_at(
        ns: &Netns,
        ip: std::net::Ipv4Addr,
        user: &str,
        password: &str,
        realm: &str,
    ) -> Result<Coturn> {
        let dir = TempDir::new("coturn").context("coturn directory")?;
        let log = dir.path().join("turnserver.log");
        let logf = std::fs::File::create(&log).context("creating the coturn log")?;
        // An empty config file, so /etc/turnserver.conf is not read.
        dir.write("turnserver.conf", b"").context("coturn config")?;
        let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
        let child = ns
            .command("turnserver")
            .args([
                "-n",
                "-c",
                &path("turnserver.conf"),
                &format!("--listening-ip={ip}"),
                &format!("--relay-ip={ip}"),
                &format!("--listening-port={PORT}"),
                "--min-port=49152",
                "--max-port=65535",
                &format!("--realm={realm}"),
                "--lt-cred-mech",
                "--fingerprint",
                &format!("--user={user}:{password}"),
                &format!("--userdb={}", path("turndb")),
                &format!("--pidfile={}", path("turnserver.pid")),
                "--no-tls",
                "--no-dtls",
                "--no-cli",
                "--no-multicast-peers",
                // Our echo peers live on loopback, which coturn refuses by default.
                "--allow-loopback-peers",
                "--log-file=stdout",
                "--simple-log",
                "--verbose",
            ])
            .stdin(Stdio::null())
            .stdout(logf.try_clone()?)
            .stderr(logf)
            .spawn()
            .context("starting turnserver")?;
        let mut server = Coturn {
            child,
            dir,
            log,
            ip,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while !server.listening(ns) {
            if let Ok(Some(status)) = server.child.try_wait() {
                bail!("turnserver exited with {status}: {}", server.log_text());
            }
            if Instant::now() > deadline {
                bail!(
                    "turnserver did not listen within 15 s: {}",
                    server.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    fn listening(&self, ns: &Netns) -> bool {
        let ss = |flags: &str| {
            ns.command("ss")
                .arg(flags)
                .output()
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout).contains(&format!("{}:{PORT}", self.ip))
                })
                .unwrap_or(false)
        };
        ss("-uln") && ss("-tln")
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, PORT))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Where the log, database and pid file live.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
