//! The device key signing TLS 1.3 CertificateVerify: RSA-PSS (RFC 8446 allows only PSS
//! for RSA there) with SHA-512, SHA-384 or SHA-256, salt = hash length, salt drawn from
//! the lent seeded RNG so the simulator's handshakes are reproducible.
//!
//! RUSTSEC-2023-0071 (Marvin timing side channel in the `rsa` crate's private-key
//! operations): acceptable for this reference/test node, see `crypto.rs`.

use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{RandomizedSigner, SignatureEncoding};
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use rustls::sign::{Signer, SigningKey};
use rustls::{Error, SignatureAlgorithm, SignatureScheme};
use sha2::{Sha256, Sha384, Sha512};

use super::rng;
use crate::crypto::{PrivateKey, Rng06};

/// Schemes we sign with, most preferred first: RSA-PSS-RSAE-SHA384 as GnuTLS 3.7 with
/// SECURE192 picks, SHA-512, and SHA-256 only for peers that offer nothing else.
const SIGN_SCHEMES: [SignatureScheme; 3] = [
    SignatureScheme::RSA_PSS_SHA384,
    SignatureScheme::RSA_PSS_SHA512,
    SignatureScheme::RSA_PSS_SHA256,
];

/// The device's RSA key as a rustls signing key.
#[derive(Debug)]
pub(crate) struct DeviceSigningKey {
    key: RsaPrivateKey,
}

impl DeviceSigningKey {
    pub(crate) fn new(key: &PrivateKey) -> Result<Self, Error> {
        let der = key
            .to_pkcs8_der()
            .map_err(|e| Error::General(format!("device key: {e}")))?;
        let key = RsaPrivateKey::from_pkcs8_der(&der)
            .map_err(|e| Error::General(format!("device key: {e}")))?;
        Ok(Self { key })
    }
}

/// PSS needs emLen ≥ hLen + sLen + 2 with sLen = hLen (RFC 8017 §9.1.1): a 1024-bit key
/// cannot sign PSS-SHA-512.
fn fits(scheme: SignatureScheme, modulus_bytes: usize) -> bool {
    let h = match scheme {
        SignatureScheme::RSA_PSS_SHA512 => 64,
        SignatureScheme::RSA_PSS_SHA384 => 48,
        _ => 32,
    };
    modulus_bytes >= 2 * h + 2
}

impl SigningKey for DeviceSigningKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        let size = self.key.size();
        SIGN_SCHEMES
            .iter()
            .find(|s| offered.contains(s) && fits(**s, size))
            .map(|&scheme| {
                Box::new(PssSigner {
                    key: self.key.clone(),
                    scheme,
                }) as Box<dyn Signer>
            })
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::RSA
    }
}

#[derive(Debug)]
struct PssSigner {
    key: RsaPrivateKey,
    scheme: SignatureScheme,
}

impl Signer for PssSigner {
    // RUSTSEC-2023-0071: non-constant-time RSA private operation (see module doc).
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        let key = self.key.clone();
        rng::with_lent(|r| {
            let mut r = Rng06(r);
            match self.scheme {
                SignatureScheme::RSA_PSS_SHA512 => rsa::pss::SigningKey::<Sha512>::new(key)
                    .try_sign_with_rng(&mut r, message)
                    .map(|s| s.to_vec()),
                SignatureScheme::RSA_PSS_SHA384 => rsa::pss::SigningKey::<Sha384>::new(key)
                    .try_sign_with_rng(&mut r, message)
                    .map(|s| s.to_vec()),
                _ => rsa::pss::SigningKey::<Sha256>::new(key)
                    .try_sign_with_rng(&mut r, message)
                    .map(|s| s.to_vec()),
            }
        })
        .ok_or(Error::FailedToGetRandomBytes)?
        .map_err(|e| Error::General(format!("RSA-PSS signing: {e}")))
    }

    fn scheme(&self) -> SignatureScheme {
        self.scheme
    }
}
