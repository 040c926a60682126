//! Write tokens and request rate limiting, as OpenDHT 2.4 does them: a token is
//! SHA-256(secret ‖ requester IP ‖ port), accepted for the current and the previous
//! secret; incoming requests are limited per source IP and globally over a sliding
//! one-second window. Randomness and time are inputs.

use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};

/// Tokens from a rotating secret.
#[derive(Clone, Debug)]
pub struct Tokens {
    secret: u64,
    old_secret: u64,
    /// When to rotate next (caller's milliseconds).
    pub rotate_at: u64,
}

impl Tokens {
    pub fn new(secret: u64, old_secret: u64, rotate_at: u64) -> Self {
        Tokens {
            secret,
            old_secret,
            rotate_at,
        }
    }

    fn make(secret: u64, addr: &SocketAddr) -> [u8; 32] {
        let mut h = Sha256::new();
        // OpenDHT hashes the secret in host byte order (little-endian on every platform
        // Jami ships on), then the address bytes and the port in network order.
        h.update(secret.to_le_bytes());
        match addr.ip() {
            IpAddr::V4(a) => h.update(a.octets()),
            IpAddr::V6(a) => h.update(a.octets()),
        }
        h.update(addr.port().to_be_bytes());
        h.finalize().into()
    }

    /// The token to hand to `addr` in replies.
    pub fn token_for(&self, addr: &SocketAddr) -> [u8; 32] {
        Self::make(self.secret, addr)
    }

    /// Whether `token` was handed to `addr` under the current or previous secret.
    pub fn check(&self, addr: &SocketAddr, token: &[u8]) -> bool {
        token.len() == 32
            && (token == Self::make(self.secret, addr)
                || token == Self::make(self.old_secret, addr))
    }

    /// Rotate to `fresh`; the caller draws it and the next rotation time (15–45 min).
    pub fn rotate(&mut self, fresh: u64, next_at: u64) {
        self.old_secret = self.secret;
        self.secret = fresh;
        self.rotate_at = next_at;
    }
}

/// Requests accepted per second from all sources (`MAX_REQUESTS_PER_SEC`).
pub const GLOBAL_RATE: usize = 8 * 1024;
/// And from one source IP.
pub const PER_IP_RATE: usize = GLOBAL_RATE / 8;

/// Sliding one-second window limiter.
#[derive(Clone, Debug)]
pub struct RateLimiter {
    limit: usize,
    times: VecDeque<u64>,
}

impl RateLimiter {
    pub fn new(limit: usize) -> Self {
        RateLimiter {
            limit,
            times: VecDeque::new(),
        }
    }

    /// Count one request at `now` (ms); false when it is over the limit.
    pub fn allow(&mut self, now: u64) -> bool {
        while self.times.front().is_some_and(|&t| t + 1000 <= now) {
            self.times.pop_front();
        }
        if self.times.len() >= self.limit {
            return false;
        }
        self.times.push_back(now);
        true
    }

    fn idle(&self, now: u64) -> bool {
        self.times.back().is_none_or(|&t| t + 1000 <= now)
    }
}

/// The global limiter plus one per source IP (idle ones are forgotten, so a flood from
/// many addresses costs bounded memory).
#[derive(Clone, Debug)]
pub struct RequestLimits {
    global: RateLimiter,
    per_ip: BTreeMap<IpAddr, RateLimiter>,
    /// When idle per-IP limiters may next be swept out.
    next_sweep: u64,
    pub dropped: u64,
}

/// Per-IP limiters kept before idle ones are swept out (at most once a second). A
/// limiter idle for a second holds nothing: sweeping keeps a node's memory to the
/// sources of the last second. Sweeping only past `4 * GLOBAL_RATE`, as before, let
/// every node of a 10,000-node network keep a limiter for each node it ever heard.
pub const SWEEP_ABOVE: usize = 64;

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            global: RateLimiter::new(GLOBAL_RATE),
            per_ip: BTreeMap::new(),
            next_sweep: 0,
            dropped: 0,
        }
    }
}

impl RequestLimits {
    pub fn allow(&mut self, ip: IpAddr, now: u64) -> bool {
        let many = self.per_ip.len() > SWEEP_ABOVE;
        if (many && now >= self.next_sweep) || self.per_ip.len() > 4 * GLOBAL_RATE {
            self.per_ip.retain(|_, l| !l.idle(now));
            self.next_sweep = now + 1000;
        }
        let ok = self
            .per_ip
            .entry(ip)
            .or_insert_with(|| RateLimiter::new(PER_IP_RATE))
            .allow(now)
            && self.global.allow(now);
        if !ok {
            self.dropped += 1;
        }
        ok
    }

    /// Source IPs currently tracked (memory bound checks).
    pub fn tracked(&self) -> usize {
        self.per_ip.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_bind_to_address_and_survive_one_rotation() {
        let a: SocketAddr = "192.0.2.1:4222".parse().unwrap();
        let b: SocketAddr = "192.0.2.1:4223".parse().unwrap();
        let mut t = Tokens::new(1, 0, 0);
        let tok = t.token_for(&a);
        assert!(t.check(&a, &tok));
        assert!(!t.check(&b, &tok), "another port gets another token");
        assert!(!t.check(&a, &tok[..31]), "tokens are exactly 32 bytes");
        t.rotate(2, 0);
        assert!(t.check(&a, &tok), "the previous secret still counts");
        t.rotate(3, 0);
        assert!(!t.check(&a, &tok));
    }

    #[test]
    fn per_ip_limit_then_global_limit() {
        let mut l = RequestLimits::default();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let ok = (0..2000).filter(|_| l.allow(ip, 5)).count();
        assert_eq!(ok, PER_IP_RATE);
        assert!(l.allow(ip, 1005), "the window slides");
        let mut l = RequestLimits::default();
        let ok = (0..20_000u32)
            .filter(|i| l.allow(IpAddr::from(i.to_be_bytes()), 5))
            .count();
        assert_eq!(ok, GLOBAL_RATE);
    }

    #[test]
    fn a_node_keeps_limiters_only_for_recent_sources() {
        // One request each from 5,000 sources over 100 s (a node of a large network
        // hearing from everyone in turn): a limiter per source of the last second
        // stays, not one per source ever heard.
        let mut l = RequestLimits::default();
        for i in 0..5_000u32 {
            assert!(l.allow(
                IpAddr::from((0x0a00_0000 + i).to_be_bytes()),
                u64::from(i) * 20
            ));
        }
        assert!(
            l.tracked() <= SWEEP_ABOVE + 51,
            "{} limiters kept",
            l.tracked()
        );
    }
}
