//! Links: latency, jitter, loss (random and Gilbert-Elliott bursts), bandwidth with a
//! bounded drop-tail queue, reordering and duplication, one state per direction.

use crate::time::{parse_duration, SimTime};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Packet loss model of one link direction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "model", rename_all = "kebab-case")]
pub enum Loss {
    #[default]
    None,
    /// Each packet is lost independently with probability `p`.
    Random { p: f64 },
    /// Two-state burst loss: a good and a bad state with their own loss rates and the
    /// per-packet probabilities of switching state.
    GilbertElliott {
        p_good_to_bad: f64,
        p_bad_to_good: f64,
        loss_good: f64,
        loss_bad: f64,
    },
}

impl Loss {
    /// Long-run average loss rate, for reports and sanity checks.
    pub fn mean_rate(&self) -> f64 {
        match *self {
            Loss::None => 0.0,
            Loss::Random { p } => p,
            Loss::GilbertElliott {
                p_good_to_bad,
                p_bad_to_good,
                loss_good,
                loss_bad,
            } => {
                let denom = p_good_to_bad + p_bad_to_good;
                if denom <= 0.0 {
                    return loss_good;
                }
                let pi_bad = p_good_to_bad / denom;
                pi_bad * loss_bad + (1.0 - pi_bad) * loss_good
            }
        }
    }
}

/// Properties of one direction of a link.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkParams {
    pub latency: Duration,
    /// Uniform extra delay in `0..=jitter`; packets stay in order unless `reorder` says otherwise.
    pub jitter: Duration,
    pub loss: Loss,
    /// Bits per second; `None` is unlimited (no serialisation delay, no queue).
    pub bandwidth_bps: Option<u64>,
    /// Bytes the queue in front of the bottleneck holds before it drops (drop-tail).
    pub queue_bytes: usize,
    /// Probability that a packet may overtake earlier ones (it skips the in-order clamp).
    pub reorder: f64,
    /// Probability that a packet is delivered twice.
    pub duplicate: f64,
}

impl Default for LinkParams {
    fn default() -> Self {
        LinkParams {
            latency: Duration::from_millis(1),
            jitter: Duration::ZERO,
            loss: Loss::None,
            bandwidth_bps: None,
            queue_bytes: 256 * 1024,
            reorder: 0.0,
            duplicate: 0.0,
        }
    }
}

/// The named presets a scenario can ask for, as (uplink, downlink) from the host's side.
pub const PRESETS: &[&str] = &[
    "lan",
    "wifi",
    "cellular",
    "congested",
    "satellite",
    "internet",
];

impl LinkParams {
    /// Named link presets. Figures are typical, not measured: they give scenarios a
    /// recognisable character (cellular is lossy in bursts, satellite is far away).
    pub fn preset(name: &str) -> Option<(LinkParams, LinkParams)> {
        let base = LinkParams::default();
        let p = match name {
            "lan" => LinkParams {
                latency: Duration::from_micros(200),
                bandwidth_bps: Some(1_000_000_000),
                ..base
            },
            "internet" => LinkParams {
                latency: Duration::from_millis(10),
                jitter: Duration::from_millis(1),
                bandwidth_bps: Some(1_000_000_000),
                ..base
            },
            "wifi" => LinkParams {
                latency: Duration::from_millis(3),
                jitter: Duration::from_millis(2),
                loss: Loss::Random { p: 0.002 },
                bandwidth_bps: Some(100_000_000),
                ..base
            },
            "cellular" => {
                let up = LinkParams {
                    latency: Duration::from_millis(40),
                    jitter: Duration::from_millis(10),
                    loss: Loss::GilbertElliott {
                        p_good_to_bad: 0.005,
                        p_bad_to_good: 0.3,
                        loss_good: 0.001,
                        loss_bad: 0.3,
                    },
                    bandwidth_bps: Some(5_000_000),
                    queue_bytes: 128 * 1024,
                    ..base
                };
                let down = LinkParams {
                    bandwidth_bps: Some(20_000_000),
                    ..up.clone()
                };
                return Some((up, down));
            }
            "congested" => LinkParams {
                latency: Duration::from_millis(60),
                jitter: Duration::from_millis(20),
                loss: Loss::Random { p: 0.02 },
                bandwidth_bps: Some(1_000_000),
                queue_bytes: 32 * 1024,
                reorder: 0.01,
                ..base
            },
            "satellite" => LinkParams {
                latency: Duration::from_millis(300),
                jitter: Duration::from_millis(15),
                loss: Loss::Random { p: 0.005 },
                bandwidth_bps: Some(10_000_000),
                queue_bytes: 512 * 1024,
                ..base
            },
            _ => return None,
        };
        Some((p.clone(), p))
    }
}

/// Overrides a scenario may put on top of a preset (all optional, strings with units).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    pub preset: Option<String>,
    pub latency: Option<String>,
    pub jitter: Option<String>,
    pub loss: Option<f64>,
    pub burst_loss: Option<Loss>,
    /// e.g. "2Mbit", "500kbit", "1Gbit"
    pub bandwidth: Option<String>,
    pub queue: Option<String>,
    pub reorder: Option<f64>,
    pub duplicate: Option<f64>,
}

/// Parse "2Mbit", "500kbit", "1.5 Gbit", "64000bit" into bits per second.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase().replace(' ', "");
    let t = t.trim_end_matches("/s").trim_end_matches("ps");
    let (num, mult) = if let Some(n) = t.strip_suffix("gbit") {
        (n, 1e9)
    } else if let Some(n) = t.strip_suffix("mbit") {
        (n, 1e6)
    } else if let Some(n) = t.strip_suffix("kbit") {
        (n, 1e3)
    } else if let Some(n) = t.strip_suffix("bit") {
        (n, 1.0)
    } else {
        return Err(format!("rate `{s}` needs a unit (bit, kbit, Mbit, Gbit)"));
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("rate `{s}`: `{num}` is not a number"))?;
    if !(v.is_finite() && v > 0.0) {
        return Err(format!("rate `{s}` must be positive"));
    }
    Ok((v * mult).round() as u64)
}

/// Parse "64KiB", "1MiB", "1500B", "32kB" into bytes.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim().replace(' ', "");
    let (num, mult) = [
        ("KiB", 1024.0),
        ("MiB", 1048576.0),
        ("kB", 1000.0),
        ("MB", 1e6),
        ("B", 1.0),
    ]
    .iter()
    .find_map(|(u, m)| t.strip_suffix(u).map(|n| (n.to_string(), *m)))
    .ok_or_else(|| format!("size `{s}` needs a unit (B, kB, KiB, MB, MiB)"))?;
    let v: f64 = num
        .parse()
        .map_err(|_| format!("size `{s}`: `{num}` is not a number"))?;
    if !(v.is_finite() && v >= 0.0) {
        return Err(format!("size `{s}` is out of range"));
    }
    Ok((v * mult).round() as usize)
}

impl LinkSpec {
    /// Resolve to (uplink, downlink) parameters. Without a preset the base is `default`.
    pub fn resolve(&self, default: &str) -> Result<(LinkParams, LinkParams), String> {
        let name = self.preset.as_deref().unwrap_or(default);
        let (mut up, mut down) = LinkParams::preset(name).ok_or_else(|| {
            format!(
                "unknown link preset `{name}` (known: {})",
                PRESETS.join(", ")
            )
        })?;
        for p in [&mut up, &mut down] {
            if let Some(l) = &self.latency {
                p.latency = parse_duration(l)?;
            }
            if let Some(j) = &self.jitter {
                p.jitter = parse_duration(j)?;
            }
            if let Some(l) = self.loss {
                if !(0.0..=1.0).contains(&l) {
                    return Err(format!("loss {l} is not a probability"));
                }
                p.loss = Loss::Random { p: l };
            }
            if let Some(b) = &self.burst_loss {
                p.loss = b.clone();
            }
            if let Some(b) = &self.bandwidth {
                p.bandwidth_bps = Some(parse_rate(b)?);
            }
            if let Some(q) = &self.queue {
                p.queue_bytes = parse_size(q)?;
            }
            if let Some(r) = self.reorder {
                p.reorder = r;
            }
            if let Some(d) = self.duplicate {
                p.duplicate = d;
            }
        }
        Ok((up, down))
    }
}

/// Why a link did not carry a packet.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum LinkDrop {
    Loss,
    Queue,
}

/// Counters of one direction, for checks and reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub sent_packets: u64,
    pub sent_bytes: u64,
    pub delivered_packets: u64,
    pub delivered_bytes: u64,
    pub lost: u64,
    pub queue_drops: u64,
    pub duplicated: u64,
}

/// One direction of a link: parameters plus queue and loss-model state.
#[derive(Clone, Debug)]
pub struct LinkDir {
    pub params: LinkParams,
    /// When the transmitter finishes the last queued packet.
    busy_until: SimTime,
    /// Arrival time of the last in-order packet, so jitter does not reorder.
    last_arrival: SimTime,
    ge_bad: bool,
    pub stats: LinkStats,
}

impl LinkDir {
    pub fn new(params: LinkParams) -> Self {
        LinkDir {
            params,
            busy_until: SimTime::ZERO,
            last_arrival: SimTime::ZERO,
            ge_bad: false,
            stats: LinkStats::default(),
        }
    }

    /// Bytes waiting in front of the transmitter at `now`.
    pub fn backlog_bytes(&self, now: SimTime) -> usize {
        match self.params.bandwidth_bps {
            Some(bps) if self.busy_until > now => {
                ((self.busy_until - now).as_secs_f64() * bps as f64 / 8.0) as usize
            }
            _ => 0,
        }
    }

    /// Offer a packet of `len` bytes at `now`: returns its arrival times at the far end
    /// (two when duplicated) or why it was dropped. Every random draw comes from `rng`.
    pub fn transmit(
        &mut self,
        now: SimTime,
        len: usize,
        rng: &mut ChaCha8Rng,
    ) -> Result<Vec<SimTime>, LinkDrop> {
        self.stats.sent_packets += 1;
        self.stats.sent_bytes += len as u64;
        // Queue first: a packet that does not fit never reaches the wire.
        let depart = match self.params.bandwidth_bps {
            Some(bps) if bps > 0 => {
                if self.backlog_bytes(now) + len > self.params.queue_bytes {
                    self.stats.queue_drops += 1;
                    return Err(LinkDrop::Queue);
                }
                let start = self.busy_until.max(now);
                let tx = Duration::from_nanos((len as u64 * 8 * 1_000_000_000) / bps);
                self.busy_until = start + tx;
                self.busy_until
            }
            _ => now,
        };
        if self.lose(rng) {
            self.stats.lost += 1;
            return Err(LinkDrop::Loss);
        }
        let mut arrivals = Vec::with_capacity(1);
        let jitter = self.draw_jitter(rng);
        let mut at = depart + self.params.latency + jitter;
        let may_reorder =
            self.params.reorder > 0.0 && rng.random_bool(self.params.reorder.min(1.0));
        if !may_reorder {
            at = at.max(self.last_arrival);
            self.last_arrival = at;
        }
        arrivals.push(at);
        if self.params.duplicate > 0.0 && rng.random_bool(self.params.duplicate.min(1.0)) {
            self.stats.duplicated += 1;
            let extra = self.draw_jitter(rng);
            arrivals.push(at + extra);
        }
        self.stats.delivered_packets += arrivals.len() as u64;
        self.stats.delivered_bytes += (len * arrivals.len()) as u64;
        Ok(arrivals)
    }

    fn draw_jitter(&self, rng: &mut ChaCha8Rng) -> Duration {
        let j = self.params.jitter.as_nanos() as u64;
        if j == 0 {
            Duration::ZERO
        } else {
            Duration::from_nanos(rng.random_range(0..=j))
        }
    }

    fn lose(&mut self, rng: &mut ChaCha8Rng) -> bool {
        match self.params.loss {
            Loss::None => false,
            Loss::Random { p } => p > 0.0 && rng.random_bool(p.min(1.0)),
            Loss::GilbertElliott {
                p_good_to_bad,
                p_bad_to_good,
                loss_good,
                loss_bad,
            } => {
                let flip = if self.ge_bad {
                    p_bad_to_good
                } else {
                    p_good_to_bad
                };
                if flip > 0.0 && rng.random_bool(flip.min(1.0)) {
                    self.ge_bad = !self.ge_bad;
                }
                let p = if self.ge_bad { loss_bad } else { loss_good };
                p > 0.0 && rng.random_bool(p.min(1.0))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn rates_and_sizes_parse() {
        assert_eq!(parse_rate("2Mbit").unwrap(), 2_000_000);
        assert_eq!(parse_rate("500 kbit").unwrap(), 500_000);
        assert_eq!(parse_size("64KiB").unwrap(), 65536);
        assert!(parse_rate("2M").is_err());
    }

    #[test]
    fn bandwidth_serialises_and_queue_drops() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut d = LinkDir::new(LinkParams {
            latency: Duration::from_millis(10),
            bandwidth_bps: Some(8_000_000), // 1 byte per microsecond
            queue_bytes: 3000,
            ..LinkParams::default()
        });
        let t0 = SimTime::ZERO;
        let a = d.transmit(t0, 1000, &mut rng).unwrap();
        assert_eq!(a[0].as_nanos(), 1_000_000 + 10_000_000);
        let b = d.transmit(t0, 1000, &mut rng).unwrap();
        assert_eq!(b[0].as_nanos(), 2_000_000 + 10_000_000);
        d.transmit(t0, 1000, &mut rng).unwrap();
        assert_eq!(d.transmit(t0, 1000, &mut rng), Err(LinkDrop::Queue));
        assert_eq!(d.stats.queue_drops, 1);
    }

    #[test]
    fn gilbert_elliott_mean_matches_long_run() {
        let loss = Loss::GilbertElliott {
            p_good_to_bad: 0.01,
            p_bad_to_good: 0.2,
            loss_good: 0.0,
            loss_bad: 0.5,
        };
        let mut d = LinkDir::new(LinkParams {
            loss: loss.clone(),
            ..LinkParams::default()
        });
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let n = 200_000;
        for _ in 0..n {
            let _ = d.transmit(SimTime::ZERO, 100, &mut rng);
        }
        let measured = d.stats.lost as f64 / n as f64;
        assert!(
            (measured - loss.mean_rate()).abs() < 0.004,
            "{measured} vs {}",
            loss.mean_rate()
        );
    }
}
