//! TLS 1.3 key exchanges whose ephemeral keys come from the session's seeded RNG
//! (rustls' ring groups draw from ring's `SystemRandom`, which would make the simulator's
//! handshakes differ run to run). secp384r1 (p384) first, then X25519 (x25519-dalek): the
//! order of jamid's priority string, where SECURE192 lists SECP384R1 and `+GROUP-X25519`
//! appends X25519 (two GnuTLS 3.7 peers with it negotiate ECDHE-SECP384R1), so our key
//! share is the one a GnuTLS server with %SERVER_PRECEDENCE picks (no HelloRetryRequest).

use rustls::crypto::{ActiveKeyExchange, SharedSecret, SupportedKxGroup};
use rustls::{Error, NamedGroup, PeerMisbehaved};

use super::rng;

/// X25519 over the lent RNG.
#[derive(Debug)]
pub(crate) struct X25519;

/// secp384r1 ECDHE over the lent RNG.
#[derive(Debug)]
pub(crate) struct Secp384r1;

/// The groups offered, in preference order.
pub(crate) static KX_GROUPS: &[&dyn SupportedKxGroup] = &[&Secp384r1, &X25519];

fn no_rng() -> Error {
    Error::FailedToGetRandomBytes
}

impl SupportedKxGroup for X25519 {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, Error> {
        let mut secret = [0u8; 32];
        rng::fill(&mut secret).map_err(|_| no_rng())?;
        let secret = x25519_dalek::StaticSecret::from(secret);
        let public = x25519_dalek::PublicKey::from(&secret);
        Ok(Box::new(X25519Active {
            secret,
            public: public.to_bytes(),
        }))
    }

    fn name(&self) -> NamedGroup {
        NamedGroup::X25519
    }
}

struct X25519Active {
    secret: x25519_dalek::StaticSecret,
    public: [u8; 32],
}

impl ActiveKeyExchange for X25519Active {
    fn complete(self: Box<Self>, peer: &[u8]) -> Result<SharedSecret, Error> {
        let peer: [u8; 32] = peer
            .try_into()
            .map_err(|_| PeerMisbehaved::InvalidKeyShare)?;
        let shared = self
            .secret
            .diffie_hellman(&x25519_dalek::PublicKey::from(peer));
        // RFC 8446 §7.4.2: an all-zero X25519 result (small-order peer point) is refused.
        if !shared.was_contributory() {
            return Err(PeerMisbehaved::InvalidKeyShare.into());
        }
        Ok(SharedSecret::from(&shared.as_bytes()[..]))
    }

    fn pub_key(&self) -> &[u8] {
        &self.public
    }

    fn group(&self) -> NamedGroup {
        NamedGroup::X25519
    }
}

impl SupportedKxGroup for Secp384r1 {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, Error> {
        let secret = rng::with_lent(|r| p384::SecretKey::random(&mut crate::crypto::Rng06(r)))
            .ok_or_else(no_rng)?;
        let public = p384::EncodedPoint::from(secret.public_key())
            .as_bytes()
            .to_vec();
        Ok(Box::new(Secp384r1Active { secret, public }))
    }

    fn name(&self) -> NamedGroup {
        NamedGroup::secp384r1
    }
}

struct Secp384r1Active {
    secret: p384::SecretKey,
    /// Uncompressed SEC1 point (RFC 8446 §4.2.8.2).
    public: Vec<u8>,
}

/// Length of an uncompressed P-384 point: 0x04 ‖ X ‖ Y.
const P384_UNCOMPRESSED_LEN: usize = 1 + 2 * 48;

impl ActiveKeyExchange for Secp384r1Active {
    fn complete(self: Box<Self>, peer: &[u8]) -> Result<SharedSecret, Error> {
        // TLS 1.3 allows only the uncompressed form.
        if peer.len() != P384_UNCOMPRESSED_LEN || peer[0] != 0x04 {
            return Err(PeerMisbehaved::InvalidKeyShare.into());
        }
        let peer =
            p384::PublicKey::from_sec1_bytes(peer).map_err(|_| PeerMisbehaved::InvalidKeyShare)?;
        let shared =
            p384::ecdh::diffie_hellman(self.secret.to_nonzero_scalar(), peer.as_affine());
        Ok(SharedSecret::from(&shared.raw_secret_bytes()[..]))
    }

    fn pub_key(&self) -> &[u8] {
        &self.public
    }

    fn group(&self) -> NamedGroup {
        NamedGroup::secp384r1
    }
}

#[cfg(test)]
mod unit {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn agree(group: &dyn SupportedKxGroup, seed: u64) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        rng::lend(&mut rng, || {
            let a = group.start().expect("a");
            let b = group.start().expect("b");
            let (pa, pb) = (a.pub_key().to_vec(), b.pub_key().to_vec());
            let sa = a.complete(&pb).expect("a completes");
            let sb = b.complete(&pa).expect("b completes");
            assert_eq!(sa.secret_bytes(), sb.secret_bytes(), "both sides agree");
            (pa, pb, sa.secret_bytes().to_vec())
        })
    }

    #[test]
    fn groups_agree_and_are_seeded() {
        for group in KX_GROUPS {
            let first = agree(*group, 1);
            assert_eq!(first, agree(*group, 1), "same seed, same keys");
            assert_ne!(first.0, agree(*group, 2).0, "other seed, other keys");
        }
        assert_eq!(agree(&Secp384r1, 3).0.len(), P384_UNCOMPRESSED_LEN);
    }

    #[test]
    fn bad_peer_shares_are_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        rng::lend(&mut rng, || {
            let x = X25519.start().expect("x");
            assert!(x.complete(&[0u8; 31]).is_err(), "short share");
            let x = X25519.start().expect("x");
            assert!(x.complete(&[0u8; 32]).is_err(), "small-order point");
            let p = Secp384r1.start().expect("p");
            let compressed = {
                let q = Secp384r1.start().expect("q");
                let mut c = q.pub_key()[..49].to_vec();
                c[0] = 0x02;
                c
            };
            assert!(p.complete(&compressed).is_err(), "compressed point");
            let p = Secp384r1.start().expect("p");
            assert!(p.complete(&[4u8; P384_UNCOMPRESSED_LEN]).is_err(), "off-curve");
        });
        assert!(X25519.start().is_err(), "no RNG lent: no key");
    }
}
