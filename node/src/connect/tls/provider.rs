//! The rustls `CryptoProvider` and clock for Jami sessions: TLS 1.3 only, the ciphers
//! GnuTLS' SECURE192 allows, our seeded key exchanges and randoms, and the virtual clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::ring::cipher_suite::{
    TLS13_AES_256_GCM_SHA384, TLS13_CHACHA20_POLY1305_SHA256,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::UnixTime;
use rustls::time_provider::TimeProvider;

use super::kx::KX_GROUPS;
use super::rng::LentRandom;

static LENT_RANDOM: LentRandom = LentRandom;

/// AES-256-GCM-SHA384 first (SECURE192, 256-bit), ChaCha20-Poly1305 second. The record
/// layer draws no randomness (TLS 1.3 nonces come from the key schedule), so ring's
/// AEADs are deterministic as they are.
// `default_provider` is deprecated for lacking post-quantum groups; we take only its
// signature tables and key loader from it and bring our own groups.
#[allow(deprecated)]
pub(crate) fn jami_provider() -> CryptoProvider {
    let ring = rustls::crypto::ring::default_provider();
    CryptoProvider {
        cipher_suites: vec![TLS13_AES_256_GCM_SHA384, TLS13_CHACHA20_POLY1305_SHA256],
        kx_groups: KX_GROUPS.to_vec(),
        // Unused: our verifiers check handshake signatures themselves (`verify.rs`).
        signature_verification_algorithms: ring.signature_verification_algorithms,
        secure_random: &LENT_RANDOM,
        // Unused: the device key is wrapped by `sign.rs`, not loaded from DER by rustls.
        key_provider: ring.key_provider,
    }
}

/// rustls' wall clock, set from the `now` (Unix milliseconds) of every session input.
#[derive(Debug, Default)]
pub(crate) struct VirtualClock(AtomicU64);

impl VirtualClock {
    pub(crate) fn set(&self, now_ms: u64) {
        self.0.store(now_ms, Ordering::Relaxed);
    }
}

impl TimeProvider for VirtualClock {
    fn current_time(&self) -> Option<UnixTime> {
        Some(UnixTime::since_unix_epoch(Duration::from_millis(
            self.0.load(Ordering::Relaxed),
        )))
    }
}

/// Shared handle type the configs take.
pub(crate) type Clock = Arc<VirtualClock>;
