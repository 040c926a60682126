//! Engines on real sockets and the real clock: the thin loops that move datagrams,
//! stream bytes and timeouts in and transmits, commands and events out. [`UdpDriver`]
//! runs a datagram-only engine (`jamisim node dht`, conformance tests against the
//! official programs); [`DeviceDriver`] one with TCP streams as well (ICE-TCP). The
//! simulator runs the same engines on netsim instead.

mod device;
mod tcp;

pub use device::{
    DeviceDriver, StreamOptions, StreamStats, CLOSE_LINGER, MAX_LISTENERS, MAX_STREAMS, MAX_UNSENT,
};

use crate::device::{Device, DeviceEvent};
use crate::dht::engine::{Dht, Event, Transmit};
use crate::dht::secure::SecureDht;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Unix time in milliseconds: the engine's clock on real sockets.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The sans-IO interface a driver moves bytes and time through (DESIGN.md §2).
pub trait Engine {
    /// What the core tells its user.
    type Event;
    fn handle_datagram(&mut self, now: u64, from: SocketAddr, bytes: &[u8]);
    fn handle_timeout(&mut self, now: u64);
    fn poll_transmit(&mut self) -> Option<Transmit>;
    fn poll_event(&mut self) -> Option<Self::Event>;
    fn poll_timeout(&self) -> Option<u64>;
}

macro_rules! engine_impl {
    ($t:ty, $ev:ty) => {
        impl Engine for $t {
            type Event = $ev;
            fn handle_datagram(&mut self, now: u64, from: SocketAddr, bytes: &[u8]) {
                <$t>::handle_datagram(self, now, from, bytes)
            }
            fn handle_timeout(&mut self, now: u64) {
                <$t>::handle_timeout(self, now)
            }
            fn poll_transmit(&mut self) -> Option<Transmit> {
                <$t>::poll_transmit(self)
            }
            fn poll_event(&mut self) -> Option<$ev> {
                <$t>::poll_event(self)
            }
            fn poll_timeout(&self) -> Option<u64> {
                <$t>::poll_timeout(self)
            }
        }
    };
}
engine_impl!(Dht, Event);
engine_impl!(SecureDht, Event);
engine_impl!(Device, DeviceEvent);

/// A DHT engine (plain or with the secure layer) or a whole [`Device`], bound to a UDP
/// socket.
pub struct UdpDriver<E: Engine = Dht> {
    pub dht: E,
    sock: UdpSocket,
    buf: Vec<u8>,
}

impl<E: Engine> UdpDriver<E> {
    pub fn bind(dht: E, addr: SocketAddr) -> io::Result<UdpDriver<E>> {
        let sock = UdpSocket::bind(addr)?;
        Ok(UdpDriver {
            dht,
            sock,
            buf: vec![0; 65536],
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.local_addr()
    }

    /// Send what the engine wants sent and hand its events to `on_event`.
    fn flush(&mut self, on_event: &mut dyn FnMut(&mut E, E::Event)) {
        while let Some(t) = self.dht.poll_transmit() {
            // A send error (unreachable, no route) is a lost datagram, as on the wire.
            let _ = self.sock.send_to(&t.bytes, t.to);
        }
        while let Some(e) = self.dht.poll_event() {
            on_event(&mut self.dht, e);
        }
    }

    /// Run one turn: wait at most `max_wait` for a datagram or the engine's next timeout.
    pub fn turn(
        &mut self,
        max_wait: Duration,
        on_event: &mut dyn FnMut(&mut E, E::Event),
    ) -> io::Result<()> {
        self.flush(on_event);
        let now = unix_ms();
        let until = self
            .dht
            .poll_timeout()
            .unwrap_or(now + max_wait.as_millis() as u64);
        let wait = until
            .saturating_sub(now)
            .clamp(1, max_wait.as_millis().max(1) as u64);
        self.sock
            .set_read_timeout(Some(Duration::from_millis(wait)))?;
        match self.sock.recv_from(&mut self.buf) {
            Ok((n, from)) => {
                let data = self.buf[..n].to_vec();
                self.dht.handle_datagram(unix_ms(), from, &data);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
            Err(e) => return Err(e),
        }
        let now = unix_ms();
        if self.dht.poll_timeout().is_some_and(|t| t <= now) {
            self.dht.handle_timeout(now);
        }
        self.flush(on_event);
        Ok(())
    }

    /// Run turns for `d`.
    pub fn run_for(
        &mut self,
        d: Duration,
        on_event: &mut dyn FnMut(&mut E, E::Event),
    ) -> io::Result<()> {
        run_for_with(d, |w| self.turn(w, on_event))
    }

    /// Run until `done` says so (checked after each event) or `timeout` passes; returns
    /// whether `done` was satisfied.
    pub fn run_until(
        &mut self,
        timeout: Duration,
        done: impl FnMut(&E::Event) -> bool,
    ) -> io::Result<bool> {
        run_until_with(timeout, done, |w, on_event| self.turn(w, on_event))
    }
}

/// Turns of at most 50 ms for `d`.
fn run_for_with(d: Duration, mut turn: impl FnMut(Duration) -> io::Result<()>) -> io::Result<()> {
    let end = unix_ms() + d.as_millis() as u64;
    while unix_ms() < end {
        let left = Duration::from_millis(end.saturating_sub(unix_ms()).max(1));
        turn(left.min(Duration::from_millis(50)))?;
    }
    Ok(())
}

/// Turns of 50 ms until `done` holds for an event or `timeout` passes.
fn run_until_with<E, T>(
    timeout: Duration,
    mut done: impl FnMut(&T) -> bool,
    mut turn: impl FnMut(Duration, &mut dyn FnMut(&mut E, T)) -> io::Result<()>,
) -> io::Result<bool> {
    let end = unix_ms() + timeout.as_millis() as u64;
    let mut hit = false;
    while !hit && unix_ms() < end {
        turn(Duration::from_millis(50), &mut |_, e| {
            if done(&e) {
                hit = true;
            }
        })?;
    }
    Ok(hit)
}
