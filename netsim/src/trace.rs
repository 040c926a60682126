//! The run trace: one line per event, stamped with simulated time. Its SHA-256 is what
//! determinism tests compare; keeping the text is optional (large runs hash only).
//! Kept text is bounded: past [`DEFAULT_KEEP_BYTES`] (or the run's own limit) only the
//! last part stays in memory, and the count of lines cut says how much came before. A
//! run that wants every line streams them to a file instead ([`Trace::to_file`]).

use crate::packet::{Body, Packet};
use crate::time::SimTime;
use sha2::{Digest, Sha256};
use std::io::Write as _;
use std::net::{SocketAddr, SocketAddrV4};

/// Trace text kept in memory by default: a 10,000-node run writes about 12 MB of trace
/// per simulated second, so an unbounded trace would grow past any machine's memory;
/// the last 64 MiB show how a failure came about, and a replay streams the rest.
pub const DEFAULT_KEEP_BYTES: usize = 64 * 1024 * 1024;

pub struct Trace {
    hasher: Sha256,
    text: Option<String>,
    /// Most bytes of text kept (the last ones).
    keep: usize,
    /// Lines and bytes dropped from the front of `text`.
    pub cut_lines: u64,
    pub cut_bytes: u64,
    file: Option<std::io::BufWriter<std::fs::File>>,
    /// Lines not hashed yet, the last one being written from `start` (UTF-8:
    /// formatted text or ASCII). Hashing [`HASH_BATCH`] bytes at once lets SHA-256 read
    /// whole blocks in place: line by line it copied each line into its block buffer.
    line: Vec<u8>,
    start: usize,
    pub lines: u64,
}

/// Bytes of trace lines hashed at once.
const HASH_BATCH: usize = 16 * 1024;

impl Trace {
    pub fn new(keep_text: bool) -> Self {
        Self::with_limit(keep_text, DEFAULT_KEEP_BYTES)
    }

    /// Keep at most the last `keep` bytes of text (cut at a line boundary).
    pub fn with_limit(keep_text: bool, keep: usize) -> Self {
        Trace {
            hasher: Sha256::new(),
            text: keep_text.then(String::new),
            keep: keep.max(1),
            cut_lines: 0,
            cut_bytes: 0,
            file: None,
            line: Vec::with_capacity(HASH_BATCH + 256),
            start: 0,
            lines: 0,
        }
    }

    /// Every line also goes to `path` as it is written (a replay's whole trace, in
    /// bounded memory).
    pub fn to_file(mut self, path: &std::path::Path) -> std::io::Result<Self> {
        self.file = Some(std::io::BufWriter::new(std::fs::File::create(path)?));
        Ok(self)
    }

    pub fn line(&mut self, now: SimTime, msg: &str) {
        self.line_args(now, format_args!("{msg}"));
    }

    /// A line formatted straight into the trace (no intermediate string).
    pub fn line_args(&mut self, now: SimTime, msg: std::fmt::Arguments<'_>) {
        self.start = self.line.len();
        let _ = writeln!(self.line, "{now} {msg}");
        self.commit();
    }

    /// `{now} {verb}  {host} {packet} #{id}`, the line of every packet a host sends or
    /// receives, the same text as `line_args` would write. UDP over IPv4 (nearly every
    /// line of a large run) is written digit by digit without the formatter machinery,
    /// which cost more than the rest of the event loop on the ping-pong bench.
    pub fn packet_line(&mut self, now: SimTime, verb: &str, host: &str, pkt: &Packet) {
        let (Body::Udp(data), SocketAddr::V4(src), SocketAddr::V4(dst), true) = (
            &pkt.body,
            pkt.src,
            pkt.dst,
            verb.len() + host.len() <= LINE_NAMES,
        ) else {
            return self.line_args(now, format_args!("{verb}  {host} {pkt} #{}", pkt.id));
        };
        // Written into a stack buffer, then copied once: growing the line byte by byte
        // checked its capacity at every digit.
        let mut l = LineBuf::default();
        l.time(now);
        l.bytes(b" ");
        l.bytes(verb.as_bytes());
        l.bytes(b"  ");
        l.bytes(host.as_bytes());
        l.bytes(b" udp ");
        l.v4(&src);
        l.bytes(b" > ");
        l.v4(&dst);
        l.bytes(b" len=");
        l.num(data.len() as u64);
        l.bytes(b" #");
        l.num(pkt.id);
        l.bytes(b"\n");
        self.start = self.line.len();
        self.line.extend_from_slice(&l.buf[..l.len]);
        self.commit();
    }

    /// Hash, stream and keep the line just written.
    fn commit(&mut self) {
        let line = &self.line[self.start..];
        if let Some(f) = &mut self.file {
            let _ = f.write_all(line);
        }
        if let Some(t) = &mut self.text {
            t.push_str(std::str::from_utf8(line).unwrap_or(""));
            // Cut in batches (half the limit at a time) so each byte moves at most twice.
            if t.len() > self.keep + self.keep / 2 {
                let from = t.len() - self.keep;
                let at = t.as_bytes()[from..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map(|p| from + p + 1)
                    .unwrap_or(t.len());
                self.cut_lines += t.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() as u64;
                self.cut_bytes += at as u64;
                t.drain(..at);
            }
        }
        self.lines += 1;
        if self.line.len() >= HASH_BATCH {
            self.hasher.update(&self.line);
            self.line.clear();
        }
    }

    /// Flush the file a trace streams to, if any.
    pub fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.file {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }

    /// Hex SHA-256 of every line so far.
    pub fn hash_hex(&self) -> String {
        let mut h = self.hasher.clone();
        h.update(&self.line);
        let d = h.finalize();
        d.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The kept text: every line, or the last ones when `cut_lines` > 0.
    pub fn text(&self) -> Option<&str> {
        self.text.as_deref()
    }
}

/// Verb and host name bytes a fast packet line takes (longer ones are formatted).
const LINE_NAMES: usize = 64;

/// One packet line: time (up to 31), names, two addresses (21 each), two numbers
/// (20 each) and the fixed text fit in 256 bytes.
struct LineBuf {
    buf: [u8; 256],
    len: usize,
}

impl Default for LineBuf {
    fn default() -> Self {
        LineBuf {
            buf: [0; 256],
            len: 0,
        }
    }
}

impl LineBuf {
    fn bytes(&mut self, b: &[u8]) {
        self.buf[self.len..self.len + b.len()].copy_from_slice(b);
        self.len += b.len();
    }

    /// Digits written in place, last first (copying them from a scratch buffer called
    /// `memcpy` per number).
    fn num(&mut self, mut n: u64) {
        let end = self.len + n.checked_ilog10().unwrap_or(0) as usize + 1;
        let mut i = end;
        loop {
            i -= 1;
            self.buf[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.len = end;
    }

    /// As `SimTime`'s `Display`: seconds right-aligned on 4, 9 digits of fraction, `s`.
    fn time(&mut self, t: SimTime) {
        let ns = t.as_nanos();
        let (secs, mut frac) = (ns / 1_000_000_000, ns % 1_000_000_000);
        let digits = secs.checked_ilog10().unwrap_or(0) as usize + 1;
        for _ in digits..4 {
            self.buf[self.len] = b' ';
            self.len += 1;
        }
        self.num(secs);
        self.buf[self.len] = b'.';
        for k in (1..=9).rev() {
            self.buf[self.len + k] = b'0' + (frac % 10) as u8;
            frac /= 10;
        }
        self.buf[self.len + 10] = b's';
        self.len += 11;
    }

    fn v4(&mut self, a: &SocketAddrV4) {
        for (k, o) in a.ip().octets().into_iter().enumerate() {
            if k > 0 {
                self.bytes(b".");
            }
            self.num(u64::from(o));
        }
        self.bytes(b":");
        self.num(u64::from(a.port()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The packet line written by hand is the text `line_args` writes.
        #[test]
        fn packet_lines_match_the_formatted_text(ns in 0u64..20_000_000_000_000, src in proptest::array::uniform4(0u8..), dst in proptest::array::uniform4(0u8..), ports in (0u16.., 0u16..), len in 0usize..70_000, id in 0u64.., tcp in proptest::bool::ANY) {
            let now = SimTime::from_nanos(ns);
            let (s, d) = (SocketAddr::from((src, ports.0)), SocketAddr::from((dst, ports.1)));
            let body = if tcp {
                Body::Tcp(crate::packet::TcpSegment { flags: 0x12, seq: 1, ack: 2, window: 3, data: bytes::Bytes::new() })
            } else {
                Body::Udp(bytes::Bytes::from(vec![0u8; len]))
            };
            let pkt = Packet { id, src: s, dst: d, ttl: 64, body };
            let (mut a, mut b) = (Trace::new(true), Trace::new(true));
            a.packet_line(now, "recv", "n-12", &pkt);
            b.line_args(now, format_args!("recv  n-12 {pkt} #{}", pkt.id));
            proptest::prop_assert_eq!(a.text(), b.text());
            proptest::prop_assert_eq!(a.hash_hex(), b.hash_hex());
        }
    }

    #[test]
    fn kept_text_is_bounded_and_ends_with_the_last_lines() {
        let mut t = Trace::with_limit(true, 1000);
        for i in 0..10_000 {
            t.line(SimTime::ZERO, &format!("event {i}"));
        }
        let text = t.text().unwrap();
        assert!(text.len() <= 1500, "{} bytes kept", text.len());
        assert!(text.ends_with("event 9999\n"));
        assert!(
            text.starts_with(&format!("{} event", SimTime::ZERO)),
            "cut at a line start"
        );
        let kept = text.lines().count() as u64;
        assert_eq!(kept + t.cut_lines, 10_000);
        assert_eq!(t.lines, 10_000);
    }

    #[test]
    fn the_hash_is_the_sha256_of_the_whole_text() {
        // Lines are hashed in batches; the hash must not depend on where they fall.
        let mut t = Trace::new(true);
        for i in 0..5000 {
            t.line(SimTime::from_nanos(i * 7), &format!("line {i}"));
            if i % 1234 == 0 {
                let whole = Sha256::digest(t.text().unwrap().as_bytes());
                let hex: String = whole.iter().map(|b| format!("{b:02x}")).collect();
                assert_eq!(t.hash_hex(), hex, "after {i} lines");
            }
        }
        let whole = Sha256::digest(t.text().unwrap().as_bytes());
        let hex: String = whole.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(t.hash_hex(), hex);
    }

    #[test]
    fn the_hash_covers_every_line_whatever_is_kept() {
        let (mut a, mut b) = (Trace::with_limit(true, 100), Trace::new(true));
        for i in 0..1000 {
            a.line(SimTime::ZERO, &format!("x {i}"));
            b.line(SimTime::ZERO, &format!("x {i}"));
        }
        assert_eq!(a.hash_hex(), b.hash_hex());
        assert_eq!(b.cut_lines, 0);
        assert!(a.cut_lines > 0);
    }

    #[test]
    fn a_streamed_trace_has_every_line() {
        let path = std::env::temp_dir().join(format!("netsim-trace-{}.txt", std::process::id()));
        let mut t = Trace::with_limit(true, 100).to_file(&path).unwrap();
        for i in 0..1000 {
            t.line(SimTime::ZERO, &format!("y {i}"));
        }
        t.flush().unwrap();
        let whole = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(whole.lines().count(), 1000);
        assert!(whole.ends_with(t.text().unwrap()));
    }
}
