//! Traffic generators and sinks for link-capacity and load scenarios.

use crate::app::{App, Ctx};
use crate::sim::SockId;
use crate::time::SimTime;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// IPv4 + UDP header bytes, which links charge on top of the payload.
pub const UDP4_OVERHEAD: usize = 28;

/// Sends fixed-size UDP datagrams at a constant bit rate (counted at the IP layer).
pub struct RateSender {
    pub to: SocketAddr,
    pub rate_bps: u64,
    pub payload: usize,
    pub start_after: Duration,
    pub duration: Duration,
    sock: Option<SockId>,
    started: Option<SimTime>,
    pub sent: u64,
}

impl RateSender {
    pub fn new(
        to: SocketAddr,
        rate_bps: u64,
        payload: usize,
        start_after: Duration,
        duration: Duration,
    ) -> Self {
        RateSender {
            to,
            rate_bps,
            payload,
            start_after,
            duration,
            sock: None,
            started: None,
            sent: 0,
        }
    }
    fn interval(&self) -> Duration {
        let bits = ((self.payload + UDP4_OVERHEAD) * 8) as u64;
        Duration::from_nanos(bits * 1_000_000_000 / self.rate_bps.max(1))
    }
}

impl App for RateSender {
    fn start(&mut self, cx: &mut Ctx<'_>) {
        self.sock = cx.udp_bind(SocketAddr::from(([0, 0, 0, 0], 0))).ok();
        cx.set_timer(self.start_after, 0);
    }
    fn on_timer(&mut self, cx: &mut Ctx<'_>, _token: u64) {
        let now = cx.now();
        let started = *self.started.get_or_insert(now);
        if now.since(started) >= self.duration {
            return;
        }
        if let Some(s) = self.sock {
            let mut buf = vec![0u8; self.payload];
            buf[..8.min(self.payload)]
                .copy_from_slice(&self.sent.to_be_bytes()[..8.min(self.payload)]);
            let _ = cx.udp_send(s, self.to, &buf);
            self.sent += 1;
        }
        cx.set_timer(self.interval(), 0);
    }
    crate::app_any!();
}

/// Counts what arrives on a port, in bins of simulated time, for goodput checks and plots.
pub struct Sink {
    pub port: u16,
    pub bin: Duration,
    /// Bin index -> bytes at the IP layer.
    pub bins: BTreeMap<u64, u64>,
    pub packets: u64,
    pub first: Option<SimTime>,
    pub last: Option<SimTime>,
}

impl Sink {
    pub fn new(port: u16) -> Self {
        Sink {
            port,
            bin: Duration::from_millis(500),
            bins: BTreeMap::new(),
            packets: 0,
            first: None,
            last: None,
        }
    }

    /// Mean received rate in bit/s at the IP layer over [from, to).
    pub fn rate_bps(&self, from: SimTime, to: SimTime) -> f64 {
        let b = self.bin.as_nanos() as u64;
        let (lo, hi) = (from.as_nanos() / b, to.as_nanos() / b);
        let bytes: u64 = self.bins.range(lo..hi).map(|(_, v)| v).sum();
        let secs = ((hi - lo) * b) as f64 / 1e9;
        if secs <= 0.0 {
            0.0
        } else {
            bytes as f64 * 8.0 / secs
        }
    }

    /// (time in s, rate in bit/s) per bin, for plots.
    pub fn series(&self) -> Vec<(f64, f64)> {
        let b = self.bin.as_secs_f64();
        self.bins
            .iter()
            .map(|(&i, &v)| (i as f64 * b, v as f64 * 8.0 / b))
            .collect()
    }
}

impl App for Sink {
    fn start(&mut self, cx: &mut Ctx<'_>) {
        let _ = cx.udp_bind(SocketAddr::from(([0, 0, 0, 0], self.port)));
    }
    fn on_udp(
        &mut self,
        cx: &mut Ctx<'_>,
        _s: SockId,
        _from: SocketAddr,
        _to: SocketAddr,
        data: &[u8],
    ) {
        // Global time: a sink measures the network, not its host's drifting clock.
        let now = cx.sim_now();
        let i = now.as_nanos() / self.bin.as_nanos() as u64;
        *self.bins.entry(i).or_default() += (data.len() + UDP4_OVERHEAD) as u64;
        self.packets += 1;
        self.first.get_or_insert(now);
        self.last = Some(now);
    }
    crate::app_any!();
}
