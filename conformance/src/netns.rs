//! Network namespaces the tests create for the official programs: loopback only, IPv6
//! off (jamid's bundled pjlib hangs on this kernel's IPv6 address dumps), deleted when
//! dropped. Programs started inside cannot reach anything outside the namespace.

use anyhow::{bail, Context, Result};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A namespace this process created; `ip netns delete` on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running `ip` (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Netns {
    /// Create `<prefix>-<pid>-<n>` with `lo` up and IPv6 disabled.
    pub fn create(prefix: &str) -> Result<Netns> {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let name = format!("{prefix}-{}-{n}", std::process::id());
        ip(&["netns", "add", &name]).context("creating a network namespace (needs root)")?;
        let ns = Netns { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"])?;
        let sysctl = ns
            .command("sysctl")
            .args([
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
                "net.ipv6.conf.lo.disable_ipv6=1",
            ])
            .status()
            .context("running sysctl in the namespace")?;
        if !sysctl.success() {
            bail!("could not disable IPv6 in {}", ns.name);
        }
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Give the namespace a non-loopback link (idempotent): a veth pair with both ends
    /// inside, `jp0` at 198.51.100.1/24, and a default route through it that leads
    /// nowhere. jamid's ICE excludes loopback, so without this it has no host candidate.
    pub fn add_host_link(&self) -> Result<()> {
        if ip(&["-n", &self.name, "link", "show", "jp0"]).is_ok() {
            return Ok(());
        }
        ip(&[
            "-n", &self.name, "link", "add", "jp0", "type", "veth", "peer", "name", "jp1",
        ])?;
        ip(&[
            "-n",
            &self.name,
            "addr",
            "add",
            "198.51.100.1/24",
            "dev",
            "jp0",
        ])?;
        ip(&["-n", &self.name, "link", "set", "jp0", "up"])?;
        ip(&["-n", &self.name, "link", "set", "jp1", "up"])?;
        ip(&[
            "-n",
            &self.name,
            "route",
            "add",
            "default",
            "via",
            "198.51.100.254",
            "dev",
            "jp0",
            "onlink",
        ])
    }

    /// Join this namespace and `other` with a veth pair, a two-host LAN: `lan0` here at
    /// `here`/24, `lan1` there at `there`/24, and on both sides a route for 239.0.0.0/8
    /// over it, without which joining or sending to a multicast group fails (ENODEV,
    /// ENETUNREACH). For LAN multicast (local peer discovery).
    pub fn link_lan(&self, other: &Netns, here: &str, there: &str) -> Result<()> {
        ip(&[
            "-n",
            &self.name,
            "link",
            "add",
            "lan0",
            "type",
            "veth",
            "peer",
            "name",
            "lan1",
            "netns",
            &other.name,
        ])?;
        for (ns, dev, addr) in [(self, "lan0", here), (other, "lan1", there)] {
            ip(&[
                "-n",
                &ns.name,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                dev,
            ])?;
            ip(&["-n", &ns.name, "link", "set", dev, "up"])?;
            ip(&["-n", &ns.name, "route", "add", "239.0.0.0/8", "dev", dev])?;
        }
        Ok(())
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Run `f` on a new thread inside the namespace: sockets it opens live there.
    /// Runs `fut` on a tokio runtime of its own, on a thread inside this namespace (our
    /// async clients and servers, reachable only there).
    pub fn spawn_async<F>(&self, fut: F) -> std::thread::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime")
                .block_on(fut)
        })
    }

    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let name = self.name.clone();
        std::thread::spawn(move || {
            if let Err(e) = enter(&name) {
                panic!("entering {name}: {e:#}");
            }
            f()
        })
    }
}

/// Move the calling thread into the namespace called `name` (for good: use a thread
/// of its own, as [`Netns::spawn`] does).
pub fn enter(name: &str) -> Result<()> {
    let path = format!("/run/netns/{name}");
    let f = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
    // SAFETY: setns on a valid namespace fd affects only the calling thread's network
    // namespace; no memory is shared or invalidated.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        bail!("setns({path}): {}", std::io::Error::last_os_error());
    }
    Ok(())
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "delete", &self.name]);
    }
}
