//! The official Jami daemon (`jamid` 13.7 from Debian's jami-daemon), run headless by a
//! test: its own private D-Bus bus (a `dbus-daemon` with no service directory, so the
//! bus can never auto-spawn a jamid of its own), its own HOME and XDG directories, and
//! its network inside a namespace the test created. Driven over D-Bus with zbus.
//!
//! The bus is a path socket in the test's directory: jamid (inside the namespace) and
//! our client (in the test's namespace) both reach it, since unix path sockets are not
//! network-namespaced. Dropping a [`Jamid`] stops exactly the two processes it started.

mod account;
mod bus;
mod signals;

pub use account::{internet_refs, AccountSetup, Details, INTERNET_HOSTS, NO_NAME_SERVER};
pub use bus::PrivateBus;
pub use signals::{Signal, SignalLog};

use crate::netns::Netns;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use zbus::blocking::{Connection, MessageIterator};
use zbus::export::serde;
use zbus::zvariant::{DynamicType, Type};

/// Where Debian installs the daemon.
pub const JAMID: &str = "/usr/libexec/jamid";
/// The daemon's well-known bus name.
pub const BUS_NAME: &str = "cx.ring.Ring";

/// How long jamid gets to exit after SIGTERM before SIGKILL. Its shutdown ("Stopping
/// schedulers and worker threads") waits for running jobs, and a new account computes
/// 3072-bit DH parameters for about 5 s on two cores.
pub const TERM_GRACE: Duration = Duration::from_secs(10);

/// Held by a test while its jamids run: one jamid scenario at a time in a test binary.
/// Each new account generates RSA-4096 keys and 3072-bit DH parameters; three daemons
/// doing that at once on two cores take longer than two scenarios in a row.
pub fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running jamid with its private bus.
pub struct Jamid {
    /// The directory holding the bus socket, HOME, XDG dirs and logs.
    pub dir: PathBuf,
    /// jamid's stderr/stdout (`-c -d`: console debug log).
    pub log: PathBuf,
    jamid: Child,
    bus: PrivateBus,
    conn: Option<Connection>,
    signals: Arc<SignalLog>,
    reader: Option<JoinHandle<()>>,
}

/// What [`Jamid::stop`] observed.
#[derive(Debug, Clone, Copy)]
pub struct Stopped {
    /// From SIGTERM to jamid's exit (or to the SIGKILL).
    pub jamid_exit: Duration,
    /// jamid ignored SIGTERM for [`TERM_GRACE`] and was killed.
    pub killed: bool,
}

/// A `registeredNameFound` answer. On failure the field that was asked for is empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameLookup {
    /// One of the `LOOKUP_*` codes.
    pub status: i32,
    pub address: String,
    pub name: String,
}

/// `registeredNameFound` status: the name/address pair was found.
pub const LOOKUP_FOUND: i32 = 0;
/// `registeredNameFound` status: the name is not valid, or the server's answer failed
/// verification (jamid's `invalidResponse`: wrong signature, key not matching the address).
pub const LOOKUP_INVALID_NAME: i32 = 1;
/// `registeredNameFound` status: the server answered that there is no such pair.
pub const LOOKUP_NOT_FOUND: i32 = 2;
/// `registeredNameFound` status: any other failure (e.g. no name server reachable).
pub const LOOKUP_ERROR: i32 = 3;

/// `nameRegistrationEnded` status: the name is registered.
pub const REGISTER_SUCCESS: i32 = 0;
/// `nameRegistrationEnded` status: wrong account password.
pub const REGISTER_WRONG_PASSWORD: i32 = 1;
/// `nameRegistrationEnded` status: invalid name.
pub const REGISTER_INVALID_NAME: i32 = 2;
/// `nameRegistrationEnded` status: the name is taken.
pub const REGISTER_ALREADY_TAKEN: i32 = 3;
/// `nameRegistrationEnded` status: network or server error.
pub const REGISTER_NETWORK_ERROR: i32 = 4;

/// Poll `done` every 20 ms until it gives a value or `timeout` passes.
pub(crate) fn poll<T>(
    timeout: Duration,
    mut done: impl FnMut() -> Result<Option<T>>,
) -> Result<Option<T>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = done()? {
            return Ok(Some(v));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn send_term(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        // SAFETY: kill(2) on the pid of a child we spawned and have not reaped yet, so
        // the pid cannot belong to any other process.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    }
}

/// Wait for `child` until `deadline`, then SIGKILL it; true when it had to be killed.
fn reap(child: &mut Child, deadline: Instant) -> bool {
    let left = deadline.saturating_duration_since(Instant::now());
    let exited = poll(left, || Ok(child.try_wait()?.map(|_| ()))).unwrap_or(None);
    let killed = exited.is_none();
    if killed {
        let _ = child.kill();
    }
    let _ = child.wait();
    killed
}

pub(crate) fn terminate(child: &mut Child, grace: Duration) -> bool {
    send_term(child);
    reap(child, Instant::now() + grace)
}

impl Jamid {
    /// Start a bus and jamid with `dir` (an empty directory, e.g. a [`crate::TempDir`])
    /// as its home, and wait until jamid owns `cx.ring.Ring` on that bus.
    ///
    /// Gives the namespace its host link first ([`Netns::add_host_link`]): without a
    /// non-loopback address jamid gathers no ICE host candidate.
    pub fn start(ns: &Netns, dir: &Path) -> Result<Jamid> {
        ns.add_host_link()?;
        Self::start_linked(ns, dir)
    }

    /// [`Jamid::start`] in a namespace that has its own non-loopback link and default
    /// route already (e.g. a host of [`crate::natlab`]). `dir` may hold the accounts of
    /// an earlier run: jamid loads them.
    pub fn start_linked(ns: &Netns, dir: &Path) -> Result<Jamid> {
        let dir = dir.to_path_buf();
        for sub in ["config", "data", "cache", "run"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        // XDG_RUNTIME_DIR must be private to its owner.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.join("run"), std::fs::Permissions::from_mode(0o700))?;
        // A null ALSA device: audio calls send RTP only if ALSA has a device, and it is
        // read once at start.
        std::fs::write(
            dir.join(".asoundrc"),
            "pcm.!default {\n  type null\n}\nctl.!default {\n  type hw\n  card 0\n}\n",
        )?;
        let mut bus = PrivateBus::start(&dir)?;
        let log = dir.join("jamid.log");
        let logf = match std::fs::File::create(&log) {
            Ok(f) => f,
            Err(e) => {
                bus.stop();
                return Err(e.into());
            }
        };
        let spawned = ns
            .command(JAMID)
            .args(["-c", "-d", "-p"])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", &dir)
            .env("DBUS_SESSION_BUS_ADDRESS", bus.address())
            .env("XDG_CONFIG_HOME", dir.join("config"))
            .env("XDG_DATA_HOME", dir.join("data"))
            .env("XDG_CACHE_HOME", dir.join("cache"))
            .env("XDG_RUNTIME_DIR", dir.join("run"))
            .stdin(Stdio::null())
            .stdout(logf.try_clone()?)
            .stderr(logf)
            .spawn();
        let jamid = match spawned {
            Ok(c) => c,
            Err(e) => {
                bus.stop();
                return Err(anyhow::Error::from(e).context("starting jamid"));
            }
        };
        let mut me = Jamid {
            dir,
            log,
            jamid,
            bus,
            conn: None,
            signals: Arc::new(SignalLog::default()),
            reader: None,
        };
        me.connect()?;
        Ok(me)
    }

    /// Connect to the bus, start recording signals, and wait for jamid's bus name.
    fn connect(&mut self) -> Result<()> {
        let conn = self.bus.connect()?;
        let rule = zbus::MatchRule::builder()
            .msg_type(zbus::message::Type::Signal)
            .path_namespace("/cx/ring/Ring")?
            .build();
        let iter = MessageIterator::for_match_rule(rule, &conn, None)?;
        let log = self.signals.clone();
        self.reader = Some(std::thread::spawn(move || {
            for msg in iter {
                match msg {
                    Ok(m) => {
                        if let Some(s) = Signal::from_message(m) {
                            log.push(s);
                        }
                    }
                    Err(_) => break,
                }
            }
            log.close();
        }));
        self.conn = Some(conn);
        let owned = poll(Duration::from_secs(20), || {
            if let Ok(Some(status)) = self.jamid.try_wait() {
                bail!("jamid exited with {status}: {}", self.log_tail(2000));
            }
            let has: bool = self.call_at(
                "org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus",
                "NameHasOwner",
                &(BUS_NAME,),
            )?;
            Ok(has.then_some(()))
        })?;
        if owned.is_none() {
            bail!(
                "jamid did not take {BUS_NAME} within 20 s: {}",
                self.log_tail(2000)
            );
        }
        Ok(())
    }

    /// The bus address (`unix:path=…`), for other clients.
    pub fn bus_address(&self) -> &str {
        self.bus.address()
    }

    /// The PIDs this instance started: jamid, then its dbus-daemon.
    pub fn pids(&self) -> [u32; 2] {
        [self.jamid.id(), self.bus.pid()]
    }

    /// jamid's log so far.
    pub fn log_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    fn log_tail(&self, n: usize) -> String {
        let t = self.log_text();
        let start = t.len().saturating_sub(n);
        let start = (start..t.len())
            .find(|i| t.is_char_boundary(*i))
            .unwrap_or(t.len());
        t[start..].to_string()
    }

    /// Every signal received so far, with waiting helpers.
    pub fn signals(&self) -> &SignalLog {
        &self.signals
    }

    fn conn(&self) -> Result<&Connection> {
        self.conn.as_ref().context("not connected")
    }

    fn call_at<B, R>(
        &self,
        dest: &str,
        path: &str,
        iface: &str,
        method: &str,
        body: &B,
    ) -> Result<R>
    where
        B: serde::Serialize + DynamicType,
        R: for<'d> serde::Deserialize<'d> + Type,
    {
        let reply = self
            .conn()?
            .call_method(Some(dest), path, Some(iface), method, body)
            .with_context(|| format!("D-Bus call {iface}.{method}"))?;
        reply
            .body()
            .deserialize::<R>()
            .with_context(|| format!("decoding the reply of {method}"))
    }

    /// Call `method` of jamid's `interface` (short name: `ConfigurationManager`,
    /// `PresenceManager`, `CallManager`…) with the argument tuple `body`.
    pub fn call<B, R>(&self, interface: &str, method: &str, body: &B) -> Result<R>
    where
        B: serde::Serialize + DynamicType,
        R: for<'d> serde::Deserialize<'d> + Type,
    {
        self.call_at(
            BUS_NAME,
            &format!("/cx/ring/Ring/{interface}"),
            &format!("cx.ring.Ring.{interface}"),
            method,
            body,
        )
    }

    fn config<B, R>(&self, method: &str, body: &B) -> Result<R>
    where
        B: serde::Serialize + DynamicType,
        R: for<'d> serde::Deserialize<'d> + Type,
    {
        self.call("ConfigurationManager", method, body)
    }

    /// `getAccountTemplate(kind)`; `kind` is `RING` for Jami accounts.
    pub fn account_template(&self, kind: &str) -> Result<Details> {
        self.config("getAccountTemplate", &(kind,))
    }

    /// `addAccount(details)`: the daemon-local account id (16 hex).
    pub fn add_account(&self, details: &Details) -> Result<String> {
        self.config("addAccount", &(details,))
    }

    /// A Jami account on loopback only: the `RING` template with `setup`'s overrides.
    pub fn create_account(&self, setup: &AccountSetup) -> Result<String> {
        let template = self.account_template("RING")?;
        self.add_account(&setup.details(&template))
    }

    pub fn account_list(&self) -> Result<Vec<String>> {
        self.config("getAccountList", &())
    }

    pub fn account_details(&self, account: &str) -> Result<Details> {
        self.config("getAccountDetails", &(account,))
    }

    pub fn set_account_details(&self, account: &str, details: &Details) -> Result<()> {
        self.config("setAccountDetails", &(account, details))
    }

    /// `getVolatileAccountDetails`: `Account.registrationStatus`, `Account.deviceID`,
    /// `Account.deviceAnnounced`, `Account.registeredName`…
    pub fn volatile_details(&self, account: &str) -> Result<Details> {
        self.config("getVolatileAccountDetails", &(account,))
    }

    pub fn remove_account(&self, account: &str) -> Result<()> {
        self.config("removeAccount", &(account,))
    }

    /// The account's Jami id: `Account.username`, 40 hex (SHA-1 of the account key).
    pub fn account_uri(&self, account: &str) -> Result<String> {
        let d = self.account_details(account)?;
        d.get("Account.username")
            .cloned()
            .context("no Account.username")
    }

    /// The device id: `Account.deviceID` from the volatile details, 64 hex.
    pub fn device_id(&self, account: &str) -> Result<String> {
        let d = self.volatile_details(account)?;
        d.get("Account.deviceID")
            .cloned()
            .context("no Account.deviceID")
    }

    /// Wait until volatile detail `key` of `account` equals `value`; re-checked on every
    /// signal and every 250 ms. Returns the time waited.
    pub fn wait_for_volatile(
        &self,
        account: &str,
        key: &str,
        value: &str,
        timeout: Duration,
    ) -> Result<Duration> {
        let t0 = Instant::now();
        let mut last = String::new();
        loop {
            let mark = self.signals.mark();
            let d = self.volatile_details(account)?;
            last = d.get(key).cloned().unwrap_or(last);
            if last == value {
                return Ok(t0.elapsed());
            }
            if key == "Account.registrationStatus" && last.starts_with("ERROR") {
                bail!("account {account} registration failed: {last}");
            }
            let left = timeout.saturating_sub(t0.elapsed());
            if left.is_zero() {
                bail!("{key} of {account} is {last:?}, not {value:?}, after {timeout:?}");
            }
            self.signals
                .wait_any(mark, left.min(Duration::from_millis(250)));
        }
    }

    /// Wait until the account is `REGISTERED` (on the DHT); fails early on an `ERROR_*`
    /// state. Returns the time waited.
    pub fn wait_for_registration(&self, account: &str, timeout: Duration) -> Result<Duration> {
        self.wait_for_volatile(account, "Account.registrationStatus", "REGISTERED", timeout)
    }

    /// Wait until the device announcement is on the DHT (`Account.deviceAnnounced`).
    /// Peers cannot reach this device before that: a trust request sent earlier is
    /// dropped.
    pub fn wait_for_announced(&self, account: &str, timeout: Duration) -> Result<Duration> {
        self.wait_for_volatile(account, "Account.deviceAnnounced", "true", timeout)
    }

    /// `exportToFile(account, path, password)`: writes the account archive (gzip JSON
    /// when the account has no password). `password` is the account's current password;
    /// a wrong one gives `false` (after the key derivation, about 2.5 s).
    pub fn export_to_file(&self, account: &str, path: &Path, password: &str) -> Result<bool> {
        let p = path.to_str().context("archive path is not UTF-8")?;
        self.config("exportToFile", &(account, p, password))
    }

    /// `exportOnRing(account, password)` then its `exportOnRingEnded`: `(status, pin)`.
    pub fn export_on_ring(
        &self,
        account: &str,
        password: &str,
        timeout: Duration,
    ) -> Result<(i32, String)> {
        let mark = self.signals.mark();
        let ok: bool = self.config("exportOnRing", &(account, password))?;
        if !ok {
            bail!("exportOnRing refused");
        }
        let s = self.signals.wait("exportOnRingEnded", mark, timeout, |s| {
            s.args::<(String, i32, String)>()
                .is_ok_and(|(a, _, _)| a == account)
        })?;
        let (_, status, pin) = s.args::<(String, i32, String)>()?;
        Ok((status, pin))
    }

    fn name_query(
        &self,
        method: &str,
        account: &str,
        name_server: &str,
        query: &str,
        timeout: Duration,
    ) -> Result<NameLookup> {
        let mark = self.signals.mark();
        let ok: bool = self.config(method, &(account, name_server, query))?;
        if !ok {
            bail!("{method}({account:?}, {name_server:?}, {query:?}) returned false");
        }
        let by_name = method == "lookupName";
        let s = self
            .signals
            .wait("registeredNameFound", mark, timeout, |s| {
                s.args::<(String, i32, String, String)>()
                    .is_ok_and(|(a, _, addr, name)| {
                        a == account
                            && if by_name {
                                name.eq_ignore_ascii_case(query)
                            } else {
                                addr.eq_ignore_ascii_case(query)
                            }
                    })
            })?;
        let (_, status, address, name) = s.args::<(String, i32, String, String)>()?;
        Ok(NameLookup {
            status,
            address,
            name,
        })
    }

    /// `lookupName(account, nameServer, name)` and its `registeredNameFound`.
    /// `name_server` `""` means the account's `RingNS.uri`.
    pub fn lookup_name(
        &self,
        account: &str,
        name_server: &str,
        name: &str,
        timeout: Duration,
    ) -> Result<NameLookup> {
        self.name_query("lookupName", account, name_server, name, timeout)
    }

    /// `lookupAddress(account, nameServer, address)` and its `registeredNameFound`.
    pub fn lookup_address(
        &self,
        account: &str,
        name_server: &str,
        address: &str,
        timeout: Duration,
    ) -> Result<NameLookup> {
        self.name_query("lookupAddress", account, name_server, address, timeout)
    }

    /// `registerName(account, password, name)` and its `nameRegistrationEnded` status
    /// (one of the `REGISTER_*` codes).
    pub fn register_name(
        &self,
        account: &str,
        password: &str,
        name: &str,
        timeout: Duration,
    ) -> Result<i32> {
        let mark = self.signals.mark();
        let ok: bool = self.config("registerName", &(account, password, name))?;
        if !ok {
            bail!("registerName({account:?}, _, {name:?}) returned false");
        }
        let s = self
            .signals
            .wait("nameRegistrationEnded", mark, timeout, |s| {
                s.args::<(String, i32, String)>()
                    .is_ok_and(|(a, _, _)| a == account)
            })?;
        Ok(s.args::<(String, i32, String)>()?.1)
    }

    /// `PresenceManager.subscribeBuddy(account, uri, flag)`: follow (or stop following)
    /// `uri`'s presence; answers come as `newBuddyNotification`.
    pub fn subscribe_buddy(&self, account: &str, uri: &str, flag: bool) -> Result<()> {
        self.call("PresenceManager", "subscribeBuddy", &(account, uri, flag))
    }

    /// `PresenceManager.getSubscriptions(account)`.
    pub fn subscriptions(&self, account: &str) -> Result<Vec<Details>> {
        self.call("PresenceManager", "getSubscriptions", &(account,))
    }

    /// The first `newBuddyNotification(account, uri, online, _)` after `since`.
    pub fn wait_for_presence(
        &self,
        account: &str,
        uri: &str,
        online: bool,
        since: usize,
        timeout: Duration,
    ) -> Result<Signal> {
        self.signals
            .wait("newBuddyNotification", since, timeout, |s| {
                s.args::<(String, String, bool, String)>()
                    .is_ok_and(|(a, u, on, _)| a == account && u == uri && on == online)
            })
    }

    /// Stop jamid (SIGTERM, SIGKILL after `grace`) and then its bus; only the two
    /// processes started here are signalled. Dropping does the same with [`TERM_GRACE`].
    pub fn stop(self, grace: Duration) -> Stopped {
        Jamid::stop_all(vec![self], grace)
            .pop()
            .expect("one result per daemon")
    }

    /// Stop several daemons at once: SIGTERM to every jamid first, so their shutdowns
    /// overlap, then as [`Jamid::stop`].
    pub fn stop_all(mut all: Vec<Jamid>, grace: Duration) -> Vec<Stopped> {
        let t0 = Instant::now();
        for j in &mut all {
            send_term(&mut j.jamid);
        }
        all.iter_mut()
            .map(|j| {
                let killed = reap(&mut j.jamid, t0 + grace);
                let jamid_exit = t0.elapsed();
                j.finish();
                Stopped { jamid_exit, killed }
            })
            .collect()
    }

    /// After jamid is gone: stop its bus and the signal reader.
    fn finish(&mut self) {
        self.bus.stop();
        self.conn = None;
        // The reader ends when the bus closes; never let a stuck one hang the test.
        if let Some(r) = self.reader.take() {
            if poll(Duration::from_secs(2), || Ok(r.is_finished().then_some(())))
                .is_ok_and(|d| d.is_some())
            {
                let _ = r.join();
            }
        }
    }
}

impl Drop for Jamid {
    fn drop(&mut self) {
        terminate(&mut self.jamid, TERM_GRACE);
        self.finish();
    }
}
