//! TLS 1.3 over the ICE stream (PROTOCOLS §6.4) with Jami's certificate rules.
//!
//! rustls does the protocol; what is ours: the roles and settings jamid uses (GnuTLS
//! SECURE192: TLS 1.3, secp384r1 then X25519, AES-256-GCM then ChaCha20-Poly1305,
//! RSA-PSS SHA-384 preferred, mandatory client certificates), the peer check (chain verifies
//! device → account → CA, identical to the announced one, not revoked, right account),
//! and determinism: every random byte rustls asks for, every ephemeral key and every
//! PSS salt comes from the session's seeded ChaCha, and its clock is the `now` we pass.

mod kx;
mod provider;
mod rng;
mod session;
mod sign;
mod verify;

#[cfg(test)]
mod tests;

pub use session::{
    Role, TlsError, TlsEvent, TlsSession, TlsStats, HANDSHAKE_TIMEOUT_MS, MAX_BUFFERED_PLAINTEXT,
};
pub use verify::{ExpectedPeer, PeerCheck, Refusal, RefusalKind, MAX_PEER_CHAIN};
