//! Input framing of the `dht_engine` target: a sequence of datagrams, each with the peer
//! it comes from, how much virtual time passed before it, and whether the harness should
//! patch in the transaction id / token the engine last gave that peer (the fuzzer cannot
//! guess those, and without them replies and token-checked requests are dropped early).

use std::net::SocketAddr;

/// Peers the datagrams come from: the bootstrap node, another IPv4 node, an IPv6 node and
/// a second port on the bootstrap host.
pub const PEERS: [&str; 4] = [
    "192.0.2.1:4222",
    "198.51.100.7:4222",
    "[2001:db8::1]:4222",
    "192.0.2.1:5000",
];

/// Most datagrams one input may carry (bounds the work per execution).
pub const MAX_RECORDS: usize = 64;

/// One datagram of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub from: SocketAddr,
    /// Virtual milliseconds to advance before delivering it.
    pub advance_ms: u64,
    /// Patch the transaction id / token before delivering.
    pub patch: bool,
    pub bytes: Vec<u8>,
}

/// Splits fuzz bytes into records: `[flags][len_hi][len_lo][bytes…]`, repeated. Flags: bits
/// 0–1 the peer, bit 2 patch, bits 3–7 time steps of 500 ms. A short tail is taken as is.
pub fn parse(mut data: &[u8]) -> Vec<Record> {
    let mut out = Vec::new();
    while let Some((&flags, rest)) = data.split_first() {
        if out.len() == MAX_RECORDS {
            break;
        }
        let (len, rest) = match rest {
            [hi, lo, rest @ ..] => (usize::from(u16::from_be_bytes([*hi, *lo])), rest),
            _ => (rest.len(), &[][..]),
        };
        let (bytes, rest) = rest.split_at(len.min(rest.len()));
        out.push(Record {
            from: peer(flags),
            advance_ms: u64::from(flags >> 3) * 500,
            patch: flags & 0x04 != 0,
            bytes: bytes.to_vec(),
        });
        data = rest;
    }
    out
}

/// Inverse of [`parse`] for seed writing: `peer` indexes [`PEERS`].
pub fn record(peer: usize, patch: bool, steps: u8, bytes: &[u8]) -> Vec<u8> {
    let flags = (peer as u8 & 0x03) | (u8::from(patch) << 2) | (steps.min(31) << 3);
    let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    let mut out = vec![flags];
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&bytes[..usize::from(len)]);
    out
}

fn peer(flags: u8) -> SocketAddr {
    PEERS[usize::from(flags & 0x03)]
        .parse()
        .expect("fixed peer addresses parse")
}
