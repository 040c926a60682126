//! Simulated time. The simulator never reads a wall clock: time only moves when the
//! event loop jumps to the next event, so a run is a pure function of its seed.

use std::fmt;
use std::ops::{Add, AddAssign, Sub};
use std::time::Duration;

/// A point in simulated time, in nanoseconds since the start of the run.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug)]
pub struct SimTime(u64);

impl SimTime {
    pub const ZERO: SimTime = SimTime(0);
    pub const MAX: SimTime = SimTime(u64::MAX);

    pub const fn from_nanos(ns: u64) -> Self {
        SimTime(ns)
    }
    pub fn from_secs_f64(s: f64) -> Self {
        SimTime((s.max(0.0) * 1e9) as u64)
    }
    pub const fn as_nanos(self) -> u64 {
        self.0
    }
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }
    /// Time elapsed since `earlier`, zero if `earlier` is later.
    pub fn since(self, earlier: SimTime) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for SimTime {
    type Output = SimTime;
    fn add(self, d: Duration) -> SimTime {
        SimTime(
            self.0
                .saturating_add(d.as_nanos().min(u64::MAX as u128) as u64),
        )
    }
}

impl AddAssign<Duration> for SimTime {
    fn add_assign(&mut self, d: Duration) {
        *self = *self + d;
    }
}

impl Sub<SimTime> for SimTime {
    type Output = Duration;
    fn sub(self, rhs: SimTime) -> Duration {
        self.since(rhs)
    }
}

impl fmt::Display for SimTime {
    /// `12.000345678s`: fixed width to the nanosecond so traces line up and diff cleanly.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // As `{:>4}.{:09}s` would, without the formatter machinery (one per trace line).
        let mut buf = [0u8; 20];
        let at = crate::packet::decimal(self.0 / 1_000_000_000, &mut buf);
        let mut out = [b' '; 36];
        let secs = &buf[at..];
        let pad = 4usize.saturating_sub(secs.len());
        out[pad..pad + secs.len()].copy_from_slice(secs);
        let mut len = pad + secs.len();
        out[len] = b'.';
        len += 1;
        let mut frac = self.0 % 1_000_000_000;
        for k in (0..9).rev() {
            out[len + k] = b'0' + (frac % 10) as u8;
            frac /= 10;
        }
        len += 9;
        out[len] = b's';
        len += 1;
        f.write_str(std::str::from_utf8(&out[..len]).unwrap_or(""))
    }
}

/// A host's own clock: simulated time seen through a constant offset and a rate error
/// (drift, in parts per million). Applications only ever see their host's clock.
#[derive(Copy, Clone, Debug, Default, PartialEq)]
pub struct HostClock {
    pub offset: Duration,
    pub drift_ppm: f64,
}

impl HostClock {
    /// The host's reading at global time `t`.
    pub fn local(&self, t: SimTime) -> SimTime {
        let scaled = t.as_nanos() as f64 * (1.0 + self.drift_ppm / 1e6);
        SimTime::from_nanos(scaled.max(0.0).round() as u64) + self.offset
    }
    /// How much global time passes while this host's clock advances by `d`.
    pub fn global_duration(&self, d: Duration) -> Duration {
        let rate = 1.0 + self.drift_ppm / 1e6;
        if rate <= 0.0 {
            return d;
        }
        Duration::from_nanos((d.as_nanos() as f64 / rate).round() as u64)
    }
}

/// Parse "250ms", "1.5s", "2m", "30us", "100ns" into a Duration (scenario files use these).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("duration `{s}` needs a unit (ns, us, ms, s, m, h)"))?;
    let (num, unit) = s.split_at(split);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("duration `{s}`: `{num}` is not a number"))?;
    let secs = match unit.trim() {
        "ns" => v / 1e9,
        "us" | "µs" => v / 1e6,
        "ms" => v / 1e3,
        "s" => v,
        "m" | "min" => v * 60.0,
        "h" => v * 3600.0,
        u => return Err(format!("duration `{s}`: unknown unit `{u}`")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("duration `{s}` is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_fixed_width() {
        assert_eq!(
            SimTime::from_nanos(1_500_000_000).to_string(),
            "   1.500000000s"
        );
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("12").is_err());
        assert!(parse_duration("1x").is_err());
    }

    #[test]
    fn drift_scales_clock_and_timers() {
        let c = HostClock {
            offset: Duration::ZERO,
            drift_ppm: 1000.0,
        };
        assert_eq!(
            c.local(SimTime::from_nanos(1_000_000_000)).as_nanos(),
            1_001_000_000
        );
        let g = c.global_duration(Duration::from_millis(1001));
        assert_eq!(g, Duration::from_millis(1000));
    }
}

#[cfg(test)]
mod display_tests {
    use super::*;

    #[test]
    fn fast_display_matches_the_format_string() {
        for ns in [
            0u64,
            1,
            999_999_999,
            1_000_000_000,
            12_000_345_678,
            99_999 * 1_000_000_000 + 5,
        ] {
            let want = format!("{:>4}.{:09}s", ns / 1_000_000_000, ns % 1_000_000_000);
            assert_eq!(SimTime(ns).to_string(), want);
        }
    }
}
