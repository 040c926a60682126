//! Every signal jamid emits on its bus, recorded in order from the moment we connect, so
//! a test can wait for a signal without racing the call that triggers it: take a
//! [`SignalLog::mark`] before the call, then wait for a match after that mark.

use anyhow::{bail, Context, Result};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};
use zbus::export::serde;
use zbus::message::Message;

/// One signal as received.
#[derive(Debug, Clone)]
pub struct Signal {
    /// Short interface name: `ConfigurationManager`, `PresenceManager`, `CallManager`…
    pub interface: String,
    pub member: String,
    /// When it reached us (for timings).
    pub at: Instant,
    msg: Message,
}

impl Signal {
    pub(crate) fn from_message(msg: Message) -> Option<Signal> {
        let header = msg.header();
        let interface = header.interface()?.as_str();
        let interface = interface
            .strip_prefix("cx.ring.Ring.")
            .unwrap_or(interface)
            .to_string();
        let member = header.member()?.to_string();
        Some(Signal {
            interface,
            member,
            at: Instant::now(),
            msg,
        })
    }

    /// The arguments decoded as a tuple matching the D-Bus signature, e.g.
    /// `(String, String, i32, String)` for `registrationStateChanged`.
    pub fn args<T>(&self) -> Result<T>
    where
        T: for<'d> serde::Deserialize<'d> + zbus::zvariant::Type,
    {
        self.msg
            .body()
            .deserialize::<T>()
            .with_context(|| format!("decoding the arguments of {}", self.member))
    }
}

/// The ordered record of signals plus a condition variable to wait on.
#[derive(Default)]
pub struct SignalLog {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    signals: Vec<Signal>,
    closed: bool,
}

impl SignalLog {
    pub(crate) fn push(&self, s: Signal) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.signals.push(s);
        self.changed.notify_all();
    }

    /// The bus connection ended: wake every waiter.
    pub(crate) fn close(&self) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.closed = true;
        self.changed.notify_all();
    }

    /// How many signals have arrived so far; pass it as `since` to wait only for later ones.
    pub fn mark(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .signals
            .len()
    }

    /// A copy of every signal from index `since` on.
    pub fn since(&self, since: usize) -> Vec<Signal> {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.signals.get(since..).unwrap_or_default().to_vec()
    }

    /// The first signal named `member`, at or after index `since`, for which `pred` holds.
    pub fn wait(
        &self,
        member: &str,
        since: usize,
        timeout: Duration,
        mut pred: impl FnMut(&Signal) -> bool,
    ) -> Result<Signal> {
        let deadline = Instant::now() + timeout;
        let mut next = since;
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            while next < st.signals.len() {
                let s = &st.signals[next];
                next += 1;
                if s.member == member && pred(s) {
                    return Ok(s.clone());
                }
            }
            if st.closed {
                bail!("the bus closed before signal {member} arrived");
            }
            let now = Instant::now();
            if now >= deadline {
                bail!("no matching {member} signal within {timeout:?}");
            }
            st = self
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Block until a signal arrives after index `since` or `timeout` passes (used to
    /// re-check a condition that signals may change).
    pub fn wait_any(&self, since: usize, timeout: Duration) {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.signals.len() > since || st.closed {
            return;
        }
        let _ = self.changed.wait_timeout(st, timeout);
    }
}
