//! ECDSA over P-256 / P-384, only as far as certificates need it: `dhtnode -i`
//! identities are an RSA leaf issued by an EC P-384 CA ("DHT Node CA"), so chains
//! must verify ECDSA issuers, and [`EcCaKey`] can play such a CA.

use der::asn1::{AnyRef, ObjectIdentifier};
use der::Encode;
use p256::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use rand::CryptoRng;
use spki::SubjectPublicKeyInfoRef;

use crate::crypto::{HashAlg, Rng06};

/// id-ecPublicKey (1.2.840.10045.2.1).
pub const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// prime256v1 / secp256r1.
pub const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
/// secp384r1.
pub const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");

/// An EC public key from a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EcPublicKey {
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
}

impl EcPublicKey {
    /// Reads an `id-ecPublicKey` SPKI on a supported named curve; `None` otherwise.
    pub fn from_spki(spki: &SubjectPublicKeyInfoRef<'_>) -> Option<Self> {
        if spki.algorithm.oid != OID_EC_PUBLIC_KEY {
            return None;
        }
        let curve: ObjectIdentifier = spki.algorithm.parameters?.decode_as().ok()?;
        let point = spki.subject_public_key.as_bytes()?;
        match curve {
            c if c == OID_P256 => p256::ecdsa::VerifyingKey::from_sec1_bytes(point)
                .ok()
                .map(Self::P256),
            c if c == OID_P384 => p384::ecdsa::VerifyingKey::from_sec1_bytes(point)
                .ok()
                .map(Self::P384),
            _ => None,
        }
    }

    /// Verifies a DER ECDSA signature over `data` hashed with `hash`.
    pub fn verify(&self, hash: HashAlg, data: &[u8], signature_der: &[u8]) -> bool {
        let digest = hash.digest(data);
        match self {
            Self::P256(k) => p256::ecdsa::Signature::from_der(signature_der)
                .is_ok_and(|s| k.verify_prehash(&digest, &s).is_ok()),
            Self::P384(k) => p384::ecdsa::Signature::from_der(signature_der)
                .is_ok_and(|s| k.verify_prehash(&digest, &s).is_ok()),
        }
    }
}

/// A P-384 signing key, the kind GnuTLS `generateEC()` makes (SEC_PARAM_ULTRA).
/// Used for throwaway CAs like dhtnode's; not persisted.
#[derive(Clone)]
pub struct EcCaKey {
    inner: p384::ecdsa::SigningKey,
}

impl std::fmt::Debug for EcCaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EcCaKey(P-384)")
    }
}

impl EcCaKey {
    /// A fresh random key.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self {
            inner: p384::ecdsa::SigningKey::random(&mut Rng06(rng)),
        }
    }

    /// DER SubjectPublicKeyInfo (uncompressed point, namedCurve secp384r1).
    pub fn spki_der(&self) -> Vec<u8> {
        let point = self.inner.verifying_key().to_encoded_point(false);
        let params = OID_P384.to_der().unwrap_or_default();
        let spki = spki::SubjectPublicKeyInfo {
            algorithm: spki::AlgorithmIdentifier {
                oid: OID_EC_PUBLIC_KEY,
                parameters: AnyRef::try_from(params.as_slice()).ok(),
            },
            subject_public_key: der::asn1::BitStringRef::from_bytes(point.as_bytes())
                .unwrap_or_else(|_| unreachable!("an EC point is a valid bit string")),
        };
        spki.to_der().unwrap_or_default()
    }

    /// DER ECDSA signature of `data` hashed with `hash` (deterministic, RFC 6979).
    pub fn sign(&self, hash: HashAlg, data: &[u8]) -> Option<Vec<u8>> {
        let sig: p384::ecdsa::Signature = self.inner.sign_prehash(&hash.digest(data)).ok()?;
        Some(sig.to_der().as_bytes().to_vec())
    }
}

#[cfg(test)]
mod unit {
    use super::*;
    use der::Decode;
    use rand::SeedableRng;

    #[test]
    fn generated_p384_key_round_trips_and_verifies() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let key = EcCaKey::generate(&mut rng);
        let der = key.spki_der();
        let spki = SubjectPublicKeyInfoRef::from_der(&der).expect("spki");
        let public = EcPublicKey::from_spki(&spki).expect("P-384 key");
        let sig = key.sign(HashAlg::Sha384, b"tbs").expect("sign");
        assert!(public.verify(HashAlg::Sha384, b"tbs", &sig));
        assert!(!public.verify(HashAlg::Sha384, b"tbS", &sig));
        assert!(!public.verify(HashAlg::Sha256, b"tbs", &sig));
        assert!(!public.verify(HashAlg::Sha384, b"tbs", &sig[1..]));
    }
}
