//! 160-bit DHT keys and node ids (OpenDHT `InfoHash`).

use sha1::{Digest, Sha1};
use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;
use thiserror::Error;

/// Length in bytes of an [`InfoHash`].
pub const HASH_LEN: usize = 20;

/// A 20-byte DHT key or node id, printed as 40 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct InfoHash(pub [u8; HASH_LEN]);

/// Text that is not exactly 40 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("an InfoHash is 40 hex digits")]
pub struct ParseInfoHashError;

impl InfoHash {
    /// The all-zero hash: OpenDHT's "unset" value (ids equal to it are dropped).
    pub const ZERO: InfoHash = InfoHash([0; HASH_LEN]);

    /// `InfoHash::get(x)` = SHA-1(x), how OpenDHT derives keys from strings/bytes.
    pub fn get(data: impl AsRef<[u8]>) -> Self {
        InfoHash(Sha1::digest(data.as_ref()).into())
    }

    /// From a byte slice that must be exactly 20 bytes long.
    pub fn from_slice(b: &[u8]) -> Option<Self> {
        <[u8; HASH_LEN]>::try_from(b).ok().map(InfoHash)
    }

    /// A random hash drawn from caller-supplied bytes (keeps this module sans-IO).
    pub fn random(fill: &mut impl FnMut(&mut [u8])) -> Self {
        let mut h = [0u8; HASH_LEN];
        fill(&mut h);
        InfoHash(h)
    }

    pub fn is_zero(&self) -> bool {
        self.0 == [0; HASH_LEN]
    }

    pub fn as_bytes(&self) -> &[u8; HASH_LEN] {
        &self.0
    }

    /// XOR distance to `other`.
    pub fn distance(&self, other: &InfoHash) -> InfoHash {
        let mut d = [0u8; HASH_LEN];
        for (o, (a, b)) in d.iter_mut().zip(self.0.iter().zip(other.0.iter())) {
            *o = a ^ b;
        }
        InfoHash(d)
    }

    /// Number of leading bits shared with `other` (160 when equal).
    pub fn common_bits(&self, other: &InfoHash) -> u32 {
        let d = self.distance(other);
        let mut bits = 0;
        for b in d.0 {
            if b == 0 {
                bits += 8;
            } else {
                return bits + b.leading_zeros();
            }
        }
        bits
    }

    /// Bit `n` counted from the most significant bit of byte 0.
    pub fn bit(&self, n: usize) -> bool {
        self.0
            .get(n / 8)
            .is_some_and(|b| b & (0x80 >> (n % 8)) != 0)
    }
}

/// Orders `a` and `b` by XOR distance to `target` (OpenDHT `InfoHash::xorCmp`).
pub fn xor_cmp(a: &InfoHash, b: &InfoHash, target: &InfoHash) -> Ordering {
    a.distance(target).cmp(&b.distance(target))
}

impl fmt::Display for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for InfoHash {
    type Err = ParseInfoHashError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut h = [0u8; HASH_LEN];
        hex::decode_to_slice(s, &mut h).map_err(|_| ParseInfoHashError)?;
        Ok(InfoHash(h))
    }
}

impl From<[u8; HASH_LEN]> for InfoHash {
    fn from(b: [u8; HASH_LEN]) -> Self {
        InfoHash(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> InfoHash {
        s.parse().unwrap_or_default()
    }

    #[test]
    fn text_round_trip_b2() {
        let s = "01b20304d5060708090a010203e05060708090ae";
        assert_eq!(h(s).to_string(), s);
        assert_eq!(InfoHash::ZERO.to_string(), "0".repeat(40));
        assert!("01b2".parse::<InfoHash>().is_err());
        assert!("zz".repeat(20).parse::<InfoHash>().is_err());
    }

    #[test]
    fn derived_ids_b1() {
        let short = "0e441e08abfa43a77e5cd0fcd330317826119432";
        let long = "3a0e81a9446e3d3f84eed15b472b0a9451b8d3394e17d6205b3bb66818cc18a8";
        let cases = [
            (
                format!("node:{short}"),
                "924efe8c27ddc61f0082179a9e0b05436e8cd2f9",
            ),
            (
                format!("inbox:{short}"),
                "7a9ef0b247c6b9ade57892ba5156d939b6d146bf",
            ),
            (
                format!("peer:{short}"),
                "3b95496df531ff1b63c03c0288eea0c7097f66ff",
            ),
            (
                format!("peer:{long}"),
                "c2a9edcd3aa3de1b40e83fd0d62f316e33dd79b8",
            ),
        ];
        for (input, out) in cases {
            assert_eq!(InfoHash::get(input).to_string(), out);
        }
    }

    #[test]
    fn xor_ordering() {
        let t = InfoHash::ZERO;
        let mut a = [0u8; 20];
        a[19] = 1;
        let mut b = [0u8; 20];
        b[0] = 1;
        assert_eq!(xor_cmp(&InfoHash(a), &InfoHash(b), &t), Ordering::Less);
        assert_eq!(InfoHash(a).common_bits(&t), 159);
        assert!(InfoHash(b).bit(7));
        let mut n = 0u8;
        let r = InfoHash::random(&mut |buf: &mut [u8]| {
            for x in buf.iter_mut() {
                n += 1;
                *x = n;
            }
        });
        assert_eq!(r.0[19], 20);
    }
}
