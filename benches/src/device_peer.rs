//! One of our devices (node::device::Device with its services) in a
//! node::driver::DeviceDriver on a thread of its own, as `jamisim node device` runs it,
//! with commands in and timestamped events out, for the benches that time it.
//!
//! Times are taken on the device's thread: a command's instant just before it runs, an
//! event's as the driver hands it out. So a measure is the device's own work and the
//! network's, not the bench thread's wake-ups.

use anyhow::{bail, Context, Result};
use conformance::netns::Netns;
use node::connect::manager::ManagerConfig;
use node::contacts::ContactList;
use node::device::{Device, DeviceEvent, JamiIdentity};
use node::dht::engine::{Config, Event};
use node::dht::InfoHash;
use node::driver::{unix_ms, DeviceDriver};
use node::identity::{AccountIdentity, DeviceIdentity};
use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Longest a driver turn waits with nothing to do: the latency of a command (events
/// and timers wake it at once). Commands are timed from when they run, not from this.
const IDLE_TURN: Duration = Duration::from_millis(1);

/// Set to print every event a bench waits through (for a failing run).
pub const TRACE_ENV: &str = "JAMISIM_BENCH_TRACE";

type Job = Box<dyn FnOnce(&mut Device, u64) + Send>;

/// How the device runs.
pub struct PeerSetup {
    pub account: AccountIdentity,
    pub device: DeviceIdentity,
    /// Our ICE host candidates' address.
    pub host_ip: IpAddr,
    /// The DHT node to join.
    pub bootstrap: SocketAddr,
    pub seed: u64,
}

/// A running device; stops when dropped.
pub struct Peer {
    /// Its account id (what others connect and send to).
    pub account: InfoHash,
    /// Its device's short id.
    pub device: InfoHash,
    jobs: Sender<Option<Job>>,
    events: Receiver<(Instant, DeviceEvent)>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl Peer {
    /// Start the device on a thread (inside `ns` when given) and wait until it has
    /// joined the DHT.
    pub fn start(ns: Option<&Netns>, setup: PeerSetup) -> Result<Peer> {
        let account = InfoHash(setup.account.account_id());
        let device = InfoHash(setup.device.short_id());
        let (jobs, jobs_rx) = channel::<Option<Job>>();
        let (tx, events) = channel();
        let body = move || run(setup, jobs_rx, tx);
        let thread = match ns {
            Some(ns) => ns.spawn(body),
            None => std::thread::spawn(body),
        };
        let mut p = Peer {
            account,
            device,
            jobs,
            events,
            thread: Some(thread),
        };
        p.wait(Duration::from_secs(20), |e| {
            matches!(e, DeviceEvent::Dht(Event::Connected))
        })
        .context("our device joins the DHT")?;
        Ok(p)
    }

    /// Run `f` on the device now; returns the instant just before it ran, and its result.
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Device, u64) -> T + Send + 'static,
    ) -> Result<(Instant, T)> {
        let (tx, rx) = channel();
        let job: Job = Box::new(move |d, now| {
            let at = Instant::now();
            let _ = tx.send((at, f(d, now)));
        });
        if self.jobs.send(Some(job)).is_err() {
            bail!("the device thread is gone");
        }
        rx.recv_timeout(Duration::from_secs(10))
            .context("the device did not run the command")
    }

    /// Drop the events that arrived so far.
    pub fn drain(&mut self) {
        while self.events.try_recv().is_ok() {}
    }

    /// The first event for which `want` holds, with the instant it came out of the
    /// driver; earlier ones are dropped.
    pub fn wait(
        &mut self,
        timeout: Duration,
        mut want: impl FnMut(&DeviceEvent) -> bool,
    ) -> Result<Instant> {
        let end = Instant::now() + timeout;
        let trace = std::env::var_os(TRACE_ENV).is_some();
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok((at, e)) => {
                    if trace {
                        eprintln!("  device {}: {e:?}", &self.device.to_string()[..8]);
                    }
                    if want(&e) {
                        return Ok(at);
                    }
                }
                Err(_) => bail!("no awaited event within {timeout:?}"),
            }
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.jobs.send(None);
        if let Some(t) = self.thread.take() {
            if let Ok(Err(e)) = t.join() {
                eprintln!("our device stopped with an error: {e:#}");
            }
        }
    }
}

fn run(
    setup: PeerSetup,
    jobs: Receiver<Option<Job>>,
    tx: Sender<(Instant, DeviceEvent)>,
) -> Result<()> {
    let jami = JamiIdentity {
        account: &setup.account,
        device: &setup.device,
        announcement_id: 0x5eed_0000 ^ setup.seed,
    };
    let cfg = Config::verifying(InfoHash::get("replaced"), setup.seed);
    let mut dev = Device::new(cfg, Some(jami), unix_ms())?;
    let mcfg = ManagerConfig {
        host_ips: vec![setup.host_ip],
        seed: setup.seed ^ 0x5e7,
        ..ManagerConfig::default()
    };
    if !dev.enable_services(unix_ms(), mcfg, ContactList::new()) {
        bail!("services need the device identity");
    }
    // The DHT on loopback, as in the conformance tests; ICE on `host_ip`.
    let mut d = DeviceDriver::bind(dev, SocketAddr::from(([127, 0, 0, 1], 0)))?;
    d.dht.bootstrap(unix_ms(), setup.bootstrap);
    loop {
        loop {
            match jobs.try_recv() {
                Ok(Some(job)) => job(&mut d.dht, unix_ms()),
                Ok(None) => return Ok(()),
                Err(std::sync::mpsc::TryRecvError::Empty) => break,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => return Ok(()),
            }
        }
        d.turn(IDLE_TURN, &mut |_, e| {
            let _ = tx.send((Instant::now(), e));
        })?;
    }
}
