//! X.509 certificates as OpenDHT 2.4.12 writes and reads them (PROTOCOLS §2.6).
//!
//! Generation mirrors `dht::crypto::Certificate::generate`: X.509 v3, validity
//! `now … now + 3650 days`, 8 random serial bytes (so the serial is negative half the
//! time, as GnuTLS writes it), subject `CN=<name>, UID=<hex short id>`, Subject Key
//! Identifier = short id, and for a CA `basicConstraints CA=TRUE` + `keyUsage
//! keyCertSign|cRLSign` (both critical), else `keyUsage digitalSignature|
//! dataEncipherment`. The signature hash is GnuTLS's preferred hash of the *subject*
//! key (RSA ≤ 3072 bits: SHA-256, 4096: SHA-384). OpenDHT writes no Authority Key
//! Identifier, and neither do we.

use der::asn1::{Any, BitString, GeneralizedTime, ObjectIdentifier, OctetString, UtcTime};
use der::{Decode, Encode};
use rand::CryptoRng;
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned, SubjectPublicKeyInfoRef};
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages, SubjectKeyIdentifier};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};
use x509_cert::{TbsCertificate, Version};

use super::ec::{EcCaKey, EcPublicKey};
use super::name;
use crate::crypto::{self, CryptoError, HashAlg, InfoHash, PkId, PrivateKey, PublicKey};

/// OpenDHT's default certificate lifetime: 10 × 365 days.
pub const VALIDITY_SECS: u64 = 10 * 365 * 24 * 60 * 60;

const OID_SKI: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.14");
const OID_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.15");
const OID_BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");
const OID_RSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const OID_RSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const OID_RSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");
const OID_ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const OID_ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const OID_ECDSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.4");

/// Why a certificate could not be decoded, built or verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// The bytes are not a DER/PEM X.509 certificate.
    #[error("malformed certificate: {0}")]
    Decode(String),
    /// No certificate at all in the input.
    #[error("no certificate found")]
    Empty,
    /// GnuTLS `FAIL_IF_UNSORTED`: certificate `index` is not issued by the next one.
    #[error("certificate chain is not sorted leaf first (entry {index} not issued by entry {})", index + 1)]
    Unsorted { index: usize },
    /// The certificate names another issuer.
    #[error("issuer name does not match the issuer certificate's subject")]
    IssuerMismatch,
    /// The issuer certificate is not a CA (OpenDHT `isCA()`).
    #[error("issuer certificate is not a CA")]
    IssuerNotCa,
    /// The signature does not verify with the issuer's key.
    #[error("certificate signature does not verify")]
    BadSignature,
    /// Link `index` → `index + 1` of a chain failed (`index` = the top for its self-signature).
    #[error("chain entry {index}: {reason}")]
    Link {
        index: usize,
        reason: Box<CertError>,
    },
    /// Signature or key algorithm this implementation does not handle.
    #[error("unsupported algorithm: {0}")]
    Unsupported(String),
    /// Building a certificate failed.
    #[error("cannot encode certificate: {0}")]
    Encode(String),
    /// Key operation failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

impl From<der::Error> for CertError {
    fn from(e: der::Error) -> Self {
        Self::Encode(e.to_string())
    }
}

type Result<T> = std::result::Result<T, CertError>;

/// Signature algorithm of a certificate (or CRL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureAlgorithm {
    /// RSA PKCS#1 v1.5 with the given hash.
    Rsa(HashAlg),
    /// ECDSA with the given hash.
    Ecdsa(HashAlg),
    /// Anything else (e.g. sha1WithRSA): parses, never verifies.
    Other(ObjectIdentifier),
}

impl SignatureAlgorithm {
    pub(crate) fn from_oid(oid: ObjectIdentifier) -> Self {
        match oid {
            o if o == OID_RSA_SHA256 => Self::Rsa(HashAlg::Sha256),
            o if o == OID_RSA_SHA384 => Self::Rsa(HashAlg::Sha384),
            o if o == OID_RSA_SHA512 => Self::Rsa(HashAlg::Sha512),
            o if o == OID_ECDSA_SHA256 => Self::Ecdsa(HashAlg::Sha256),
            o if o == OID_ECDSA_SHA384 => Self::Ecdsa(HashAlg::Sha384),
            o if o == OID_ECDSA_SHA512 => Self::Ecdsa(HashAlg::Sha512),
            o => Self::Other(o),
        }
    }

    /// AlgorithmIdentifier as GnuTLS writes it (RSA with NULL parameters, ECDSA without).
    pub(crate) fn identifier(self) -> Result<AlgorithmIdentifierOwned> {
        let (oid, null) = match self {
            Self::Rsa(HashAlg::Sha256) => (OID_RSA_SHA256, true),
            Self::Rsa(HashAlg::Sha384) => (OID_RSA_SHA384, true),
            Self::Rsa(HashAlg::Sha512) => (OID_RSA_SHA512, true),
            Self::Ecdsa(HashAlg::Sha256) => (OID_ECDSA_SHA256, false),
            Self::Ecdsa(HashAlg::Sha384) => (OID_ECDSA_SHA384, false),
            Self::Ecdsa(HashAlg::Sha512) => (OID_ECDSA_SHA512, false),
            Self::Other(o) => return Err(CertError::Unsupported(o.to_string())),
        };
        Ok(AlgorithmIdentifierOwned {
            oid,
            parameters: null.then(Any::null),
        })
    }
}

/// Algorithm of a certificate's subject key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    Rsa {
        bits: usize,
    },
    EcP256,
    EcP384,
    /// Parsed for its ids only.
    Other,
}

/// The subject key in a usable form.
#[derive(Debug, Clone, PartialEq, Eq)]
enum CertKey {
    Rsa(PublicKey),
    Ec(EcPublicKey),
    Other,
}

/// A key that signs certificates (and CRLs): RSA, or a P-384 CA key like dhtnode's.
#[derive(Debug, Clone, Copy)]
pub enum CertSigner<'a> {
    Rsa(&'a PrivateKey),
    EcP384(&'a EcCaKey),
}

impl CertSigner<'_> {
    pub(crate) fn sign(&self, hash: HashAlg, data: &[u8]) -> Result<(SignatureAlgorithm, Vec<u8>)> {
        match self {
            Self::Rsa(k) => Ok((SignatureAlgorithm::Rsa(hash), k.sign_with(hash, data)?)),
            Self::EcP384(k) => k
                .sign(hash, data)
                .map(|s| (SignatureAlgorithm::Ecdsa(hash), s))
                .ok_or_else(|| CertError::Encode("ECDSA signing failed".into())),
        }
    }

    pub(crate) fn algorithm(&self, hash: HashAlg) -> SignatureAlgorithm {
        match self {
            Self::Rsa(_) => SignatureAlgorithm::Rsa(hash),
            Self::EcP384(_) => SignatureAlgorithm::Ecdsa(hash),
        }
    }

    /// GnuTLS preferred hash of this key (used when the issuer's key decides).
    pub(crate) fn preferred_hash(&self) -> HashAlg {
        match self {
            Self::Rsa(k) => HashAlg::preferred_for_rsa_bits(k.public_key().bits()),
            Self::EcP384(_) => HashAlg::Sha384,
        }
    }
}

/// One parsed X.509 certificate (the DER is kept verbatim).
#[derive(Clone)]
pub struct Certificate {
    der: Vec<u8>,
    inner: x509_cert::Certificate,
    spki_der: Vec<u8>,
    key: CertKey,
    is_ca: bool,
    subject_cn: Option<String>,
    subject_uid: Option<String>,
    issuer_cn: Option<String>,
    issuer_uid: Option<String>,
}

impl PartialEq for Certificate {
    fn eq(&self, other: &Self) -> bool {
        self.der == other.der
    }
}
impl Eq for Certificate {}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Certificate({} CN={:?} ca={})",
            crypto::hex(&self.short_id()),
            self.subject_cn,
            self.is_ca
        )
    }
}

impl Certificate {
    /// Parses one DER certificate (the whole input must be that certificate).
    pub fn from_der(der: &[u8]) -> Result<Self> {
        let inner =
            x509_cert::Certificate::from_der(der).map_err(|e| CertError::Decode(e.to_string()))?;
        Self::from_parsed(der.to_vec(), inner)
    }

    /// The leaf of a PEM chain (leading garbage tolerated) or a DER certificate.
    pub fn from_pem_or_der(bytes: &[u8]) -> Result<Self> {
        super::chain::decode_chain(bytes)?
            .into_iter()
            .next()
            .ok_or(CertError::Empty)
    }

    pub(crate) fn from_parsed(der: Vec<u8>, inner: x509_cert::Certificate) -> Result<Self> {
        let tbs = &inner.tbs_certificate;
        let spki_der = tbs
            .subject_public_key_info
            .to_der()
            .map_err(|e| CertError::Decode(e.to_string()))?;
        let key = match PublicKey::from_spki_der(&spki_der) {
            Ok(k) => CertKey::Rsa(k),
            Err(_) => SubjectPublicKeyInfoRef::from_der(&spki_der)
                .ok()
                .and_then(|s| EcPublicKey::from_spki(&s))
                .map_or(CertKey::Other, CertKey::Ec),
        };
        let is_ca = opendht_is_ca(tbs);
        Ok(Self {
            subject_cn: name::first(&tbs.subject, name::OID_CN),
            subject_uid: name::first(&tbs.subject, name::OID_UID),
            issuer_cn: name::first(&tbs.issuer, name::OID_CN),
            issuer_uid: name::first(&tbs.issuer, name::OID_UID),
            der,
            inner,
            spki_der,
            key,
            is_ca,
        })
    }

    /// OpenDHT `Certificate::generate(key, name, ca, is_ca)`: self-signed when `ca`
    /// is `None`, else issued by `ca` (which must be a CA, as OpenDHT requires).
    pub fn generate<R: CryptoRng + ?Sized>(
        key: &PrivateKey,
        name: &str,
        ca: Option<(CertSigner<'_>, &Certificate)>,
        is_ca: bool,
        now: u64,
        rng: &mut R,
    ) -> Result<Self> {
        let public = key.public_key();
        let hash = HashAlg::preferred_for_rsa_bits(public.bits());
        let (signer, issuer) = match ca {
            Some((signer, cert)) => (signer, Some(cert)),
            None => (CertSigner::Rsa(key), None),
        };
        build(
            CertSpec {
                subject_spki_der: public.spki_der(),
                name,
                uid: &crypto::hex(&public.short_id()),
                extensions: opendht_extensions(&public.short_id(), is_ca)?,
                hash,
                now,
            },
            signer,
            issuer,
            rng,
        )
    }

    /// OpenDHT `Certificate::generate(request, ca)`: a certificate for a request's
    /// subject (Jami devices: CN "Jami device", UID = device short id). The request
    /// carries no extensions, so neither does the certificate; the hash is the
    /// issuer's preferred one (SHA-384 for an RSA-4096 account key).
    pub fn generate_from_request<R: CryptoRng + ?Sized>(
        subject: &PublicKey,
        name: &str,
        uid: &str,
        ca: (CertSigner<'_>, &Certificate),
        now: u64,
        rng: &mut R,
    ) -> Result<Self> {
        let (signer, issuer) = ca;
        build(
            CertSpec {
                subject_spki_der: subject.spki_der(),
                name,
                uid,
                extensions: Vec::new(),
                hash: signer.preferred_hash(),
                now,
            },
            signer,
            Some(issuer),
            rng,
        )
    }

    /// A self-signed P-384 CA, as `generateEcIdentity(name)` makes (e.g. "DHT Node CA").
    pub fn generate_ec_ca<R: CryptoRng + ?Sized>(
        key: &EcCaKey,
        name: &str,
        now: u64,
        rng: &mut R,
    ) -> Result<Self> {
        let spki = key.spki_der();
        let id = crypto::short_id(&spki);
        build(
            CertSpec {
                subject_spki_der: &spki,
                name,
                uid: &crypto::hex(&id),
                extensions: opendht_extensions(&id, true)?,
                hash: HashAlg::Sha384,
                now,
            },
            CertSigner::EcP384(key),
            None,
            rng,
        )
    }

    /// DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// One `CERTIFICATE` PEM block (64-column lines, LF), as GnuTLS exports it.
    pub fn to_pem(&self) -> String {
        super::chain::pem_block(&self.der)
    }

    /// Subject common name (OpenDHT `getName()`).
    pub fn name(&self) -> Option<&str> {
        self.subject_cn.as_deref()
    }

    /// Subject UID (OpenDHT `getUID()`): the hex short id for OpenDHT/Jami certificates.
    pub fn uid(&self) -> Option<&str> {
        self.subject_uid.as_deref()
    }

    /// Issuer common name (`getIssuerName()`).
    pub fn issuer_name(&self) -> Option<&str> {
        self.issuer_cn.as_deref()
    }

    /// Issuer UID (`getIssuerUID()`): for Jami device certificates, the account id.
    pub fn issuer_uid(&self) -> Option<&str> {
        self.issuer_uid.as_deref()
    }

    /// Serial number content bytes, two's complement big-endian as encoded (GnuTLS
    /// `get_serial`); negative serials are kept as they are.
    pub fn serial(&self) -> &[u8] {
        self.inner.tbs_certificate.serial_number.as_bytes()
    }

    /// Start of validity, unix seconds.
    pub fn not_before(&self) -> u64 {
        self.inner
            .tbs_certificate
            .validity
            .not_before
            .to_unix_duration()
            .as_secs()
    }

    /// End of validity, unix seconds.
    pub fn not_after(&self) -> u64 {
        self.inner
            .tbs_certificate
            .validity
            .not_after
            .to_unix_duration()
            .as_secs()
    }

    /// Whether `now` (unix seconds) lies within the validity period.
    pub fn is_valid_at(&self, now: u64) -> bool {
        (self.not_before()..=self.not_after()).contains(&now)
    }

    /// OpenDHT `isCA()`: basicConstraints CA=TRUE and a keyUsage extension that, when
    /// critical, includes keyCertSign.
    pub fn is_ca(&self) -> bool {
        self.is_ca
    }

    /// Subject Key Identifier extension, if present.
    pub fn subject_key_id(&self) -> Option<Vec<u8>> {
        self.extension(OID_SKI)
            .and_then(|e| SubjectKeyIdentifier::from_der(e.extn_value.as_bytes()).ok())
            .map(|s| s.0.as_bytes().to_vec())
    }

    /// The subject's RSA key; `None` for EC and other keys.
    pub fn public_key(&self) -> Option<&PublicKey> {
        match &self.key {
            CertKey::Rsa(k) => Some(k),
            _ => None,
        }
    }

    /// Algorithm of the subject key.
    pub fn key_algorithm(&self) -> KeyAlgorithm {
        match &self.key {
            CertKey::Rsa(k) => KeyAlgorithm::Rsa { bits: k.bits() },
            CertKey::Ec(EcPublicKey::P256(_)) => KeyAlgorithm::EcP256,
            CertKey::Ec(EcPublicKey::P384(_)) => KeyAlgorithm::EcP384,
            CertKey::Other => KeyAlgorithm::Other,
        }
    }

    /// DER SubjectPublicKeyInfo of the subject key.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// Short id (`getId`) = SHA-1 of the subject SPKI.
    pub fn short_id(&self) -> InfoHash {
        crypto::short_id(&self.spki_der)
    }

    /// Long id (`getLongId`) = SHA-256 of the subject SPKI.
    pub fn long_id(&self) -> PkId {
        crypto::long_id(&self.spki_der)
    }

    /// DHT node id of a node running with this certificate's identity (§1.7).
    pub fn node_id(&self) -> InfoHash {
        crypto::node_id_from_short_id(&self.short_id())
    }

    /// How the certificate is signed.
    pub fn signature_algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::from_oid(self.inner.signature_algorithm.oid)
    }

    /// Subject and issuer names are byte-identical.
    pub fn is_self_issued(&self) -> bool {
        self.inner.tbs_certificate.subject == self.inner.tbs_certificate.issuer
    }

    /// Checks that `issuer` issued this certificate: names match, `issuer` is a CA
    /// (unless it is this very certificate) and the signature verifies with its key.
    pub fn verify_issued_by(&self, issuer: &Certificate) -> Result<()> {
        if self.inner.tbs_certificate.issuer != issuer.inner.tbs_certificate.subject {
            return Err(CertError::IssuerMismatch);
        }
        if !issuer.is_ca && issuer != self {
            return Err(CertError::IssuerNotCa);
        }
        self.verify_signature_by(issuer)
    }

    /// Only the signature check of [`verify_issued_by`](Self::verify_issued_by).
    pub fn verify_signature_by(&self, issuer: &Certificate) -> Result<()> {
        let tbs = self.inner.tbs_certificate.to_der()?;
        let sig = self
            .inner
            .signature
            .as_bytes()
            .ok_or(CertError::BadSignature)?;
        verify_with_key(&issuer.key, self.signature_algorithm(), &tbs, sig)
    }

    pub(crate) fn subject(&self) -> &Name {
        &self.inner.tbs_certificate.subject
    }

    pub(crate) fn subject_der_name(&self) -> &Name {
        &self.inner.tbs_certificate.subject
    }

    pub(crate) fn issuer_der_name(&self) -> &Name {
        &self.inner.tbs_certificate.issuer
    }

    pub(crate) fn key_verify(
        &self,
        alg: SignatureAlgorithm,
        data: &[u8],
        signature: &[u8],
    ) -> Result<()> {
        verify_with_key(&self.key, alg, data, signature)
    }

    fn extension(&self, oid: ObjectIdentifier) -> Option<&Extension> {
        self.inner
            .tbs_certificate
            .extensions
            .as_ref()?
            .iter()
            .find(|e| e.extn_id == oid)
    }
}

fn verify_with_key(
    key: &CertKey,
    alg: SignatureAlgorithm,
    data: &[u8],
    signature: &[u8],
) -> Result<()> {
    let ok = match (alg, key) {
        (SignatureAlgorithm::Rsa(h), CertKey::Rsa(k)) => k.verify_with(h, data, signature),
        (SignatureAlgorithm::Ecdsa(h), CertKey::Ec(k)) => k.verify(h, data, signature),
        (SignatureAlgorithm::Other(o), _) => return Err(CertError::Unsupported(o.to_string())),
        (_, CertKey::Other) => return Err(CertError::Unsupported("issuer key".into())),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(CertError::BadSignature)
    }
}

/// OpenDHT `Certificate::isCA()` over the parsed extensions.
fn opendht_is_ca(tbs: &TbsCertificate) -> bool {
    let Some(exts) = tbs.extensions.as_ref() else {
        return false;
    };
    let ca = exts
        .iter()
        .find(|e| e.extn_id == OID_BASIC_CONSTRAINTS)
        .and_then(|e| BasicConstraints::from_der(e.extn_value.as_bytes()).ok())
        .is_some_and(|bc| bc.ca);
    if !ca {
        return false;
    }
    let Some(ku_ext) = exts.iter().find(|e| e.extn_id == OID_KEY_USAGE) else {
        return false;
    };
    let Ok(ku) = KeyUsage::from_der(ku_ext.extn_value.as_bytes()) else {
        return false;
    };
    !ku_ext.critical || ku.key_cert_sign()
}

/// The extensions `Certificate::generate` writes, in GnuTLS's order.
pub(crate) fn opendht_extensions(short_id: &InfoHash, is_ca: bool) -> Result<Vec<Extension>> {
    let mut exts = vec![extension(
        OID_SKI,
        false,
        &SubjectKeyIdentifier(OctetString::new(short_id.to_vec())?),
    )?];
    let usage = if is_ca {
        exts.push(extension(
            OID_BASIC_CONSTRAINTS,
            true,
            &BasicConstraints {
                ca: true,
                path_len_constraint: None,
            },
        )?);
        KeyUsages::KeyCertSign | KeyUsages::CRLSign
    } else {
        KeyUsages::DigitalSignature | KeyUsages::DataEncipherment
    };
    exts.push(extension(OID_KEY_USAGE, true, &KeyUsage(usage))?);
    Ok(exts)
}

fn extension(oid: ObjectIdentifier, critical: bool, value: &impl Encode) -> Result<Extension> {
    Ok(Extension {
        extn_id: oid,
        critical,
        extn_value: OctetString::new(value.to_der()?)?,
    })
}

/// Everything of a new certificate except who signs it.
pub(crate) struct CertSpec<'a> {
    pub subject_spki_der: &'a [u8],
    pub name: &'a str,
    pub uid: &'a str,
    pub extensions: Vec<Extension>,
    pub hash: HashAlg,
    pub now: u64,
}

/// Time as GnuTLS encodes it: UTCTime through 2049, GeneralizedTime after.
pub(crate) fn x509_time(unix_secs: u64) -> Result<Time> {
    let d = std::time::Duration::from_secs(unix_secs);
    Ok(match UtcTime::from_unix_duration(d) {
        Ok(t) => Time::UtcTime(t),
        Err(_) => Time::GeneralTime(GeneralizedTime::from_unix_duration(d)?),
    })
}

/// Two's complement bytes without redundant leading 0x00 / 0xff (DER INTEGER content).
pub(crate) fn minimal_int(mut b: &[u8]) -> &[u8] {
    while b.len() > 1 && ((b[0] == 0 && b[1] < 0x80) || (b[0] == 0xff && b[1] >= 0x80)) {
        b = &b[1..];
    }
    b
}

/// 8 random bytes as a DER INTEGER (`setRandomSerial`), minimally encoded.
pub(crate) fn random_serial<R: CryptoRng + ?Sized>(rng: &mut R) -> Result<SerialNumber> {
    let mut raw = [0u8; 8];
    rng.fill_bytes(&mut raw);
    let content = minimal_int(&raw);
    let mut der = vec![0x02, content.len() as u8];
    der.extend_from_slice(content);
    Ok(SerialNumber::from_der(&der)?)
}

pub(crate) fn build<R: CryptoRng + ?Sized>(
    spec: CertSpec<'_>,
    signer: CertSigner<'_>,
    issuer: Option<&Certificate>,
    rng: &mut R,
) -> Result<Certificate> {
    if let Some(ca) = issuer {
        if !ca.is_ca() {
            return Err(CertError::IssuerNotCa);
        }
    }
    let subject = name::build(spec.name, Some(spec.uid))?;
    let issuer_name = issuer.map_or_else(|| subject.clone(), |c| c.subject().clone());
    let algorithm = signer.algorithm(spec.hash).identifier()?;
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: random_serial(rng)?,
        signature: algorithm.clone(),
        issuer: issuer_name,
        validity: Validity {
            not_before: x509_time(spec.now)?,
            not_after: x509_time(spec.now.saturating_add(VALIDITY_SECS))?,
        },
        subject,
        subject_public_key_info: SubjectPublicKeyInfoOwned::from_der(spec.subject_spki_der)?,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: (!spec.extensions.is_empty()).then_some(spec.extensions),
    };
    let (_, signature) = signer.sign(spec.hash, &tbs.to_der()?)?;
    let cert = x509_cert::Certificate {
        tbs_certificate: tbs,
        signature_algorithm: algorithm,
        signature: BitString::from_bytes(&signature)?,
    };
    let der = cert.to_der()?;
    Certificate::from_parsed(der, cert)
}

#[cfg(test)]
mod unit {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;
    use std::sync::OnceLock;

    const NOW: u64 = 1_790_000_000;

    fn key(n: usize) -> &'static PrivateKey {
        static KEYS: OnceLock<Vec<PrivateKey>> = OnceLock::new();
        &KEYS.get_or_init(|| {
            let mut rng = ChaCha20Rng::seed_from_u64(42);
            (0..3)
                .map(|_| PrivateKey::generate(1024, &mut rng).expect("keygen"))
                .collect()
        })[n]
    }

    #[test]
    fn self_signed_ca_has_opendht_fields() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let k = key(0);
        let c = Certificate::generate(k, "my CA", None, true, NOW, &mut rng).expect("cert");
        let id = k.public_key().short_id();
        assert_eq!(c.name(), Some("my CA"));
        assert_eq!(c.uid(), Some(crypto::hex(&id).as_str()));
        assert_eq!(c.issuer_name(), Some("my CA"));
        assert_eq!(c.subject_key_id(), Some(id.to_vec()));
        assert_eq!(c.short_id(), id);
        assert_eq!(c.long_id(), k.public_key().long_id());
        assert_eq!(c.public_key(), Some(&k.public_key()));
        assert_eq!(c.key_algorithm(), KeyAlgorithm::Rsa { bits: 1024 });
        assert!(c.is_ca());
        assert!(c.is_self_issued());
        assert_eq!(c.not_before(), NOW);
        assert_eq!(c.not_after(), NOW + VALIDITY_SECS);
        assert!(c.is_valid_at(NOW) && !c.is_valid_at(NOW - 1));
        assert!((1..=8).contains(&c.serial().len()));
        assert_eq!(
            c.signature_algorithm(),
            SignatureAlgorithm::Rsa(HashAlg::Sha256)
        );
        c.verify_issued_by(&c).expect("self-signed verifies");
        let again = Certificate::from_der(c.der()).expect("parse");
        assert_eq!(again, c);
        assert_eq!(again.uid(), c.uid());
    }

    #[test]
    fn issued_leaf_verifies_only_with_its_issuer() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let ca = Certificate::generate(key(0), "CA", None, true, NOW, &mut rng).expect("ca");
        let leaf = Certificate::generate(
            key(1),
            "leaf",
            Some((CertSigner::Rsa(key(0)), &ca)),
            false,
            NOW,
            &mut rng,
        )
        .expect("leaf");
        assert!(!leaf.is_ca());
        assert_eq!(leaf.issuer_name(), Some("CA"));
        assert_eq!(leaf.issuer_uid(), ca.uid());
        leaf.verify_issued_by(&ca).expect("issued by ca");
        assert_eq!(leaf.verify_issued_by(&leaf), Err(CertError::IssuerMismatch));
        let other = Certificate::generate(key(2), "CA", None, true, NOW, &mut rng).expect("other");
        // Same CN but another UID: the names differ.
        assert_eq!(
            leaf.verify_issued_by(&other),
            Err(CertError::IssuerMismatch)
        );
        // A leaf cannot issue.
        let bad = Certificate::generate(
            key(2),
            "x",
            Some((CertSigner::Rsa(key(1)), &leaf)),
            false,
            NOW,
            &mut rng,
        );
        assert_eq!(bad.err(), Some(CertError::IssuerNotCa));
    }

    #[test]
    fn forged_signature_is_rejected() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let ca = Certificate::generate(key(0), "CA", None, true, NOW, &mut rng).expect("ca");
        // Signed by key 2 while claiming `ca` as issuer.
        let forged = Certificate::generate(
            key(1),
            "leaf",
            Some((CertSigner::Rsa(key(2)), &ca)),
            false,
            NOW,
            &mut rng,
        )
        .expect("leaf");
        assert_eq!(forged.verify_issued_by(&ca), Err(CertError::BadSignature));
    }

    #[test]
    fn serials_are_minimal_der_and_sometimes_negative() {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let mut negative = 0;
        for _ in 0..2000 {
            let s = random_serial(&mut rng).expect("serial");
            let b = s.as_bytes();
            assert!(!b.is_empty() && b.len() <= 8);
            if b.len() > 1 {
                let redundant = (b[0] == 0 && b[1] < 0x80) || (b[0] == 0xff && b[1] >= 0x80);
                assert!(!redundant, "{b:02x?}");
            }
            negative += usize::from(b[0] >= 0x80);
        }
        assert!((800..1200).contains(&negative), "{negative}");
    }

    #[test]
    fn times_switch_to_generalized_after_2049() {
        assert!(matches!(x509_time(NOW), Ok(Time::UtcTime(_))));
        // 2050-01-01T00:00:00Z
        assert!(matches!(x509_time(2_524_608_000), Ok(Time::GeneralTime(_))));
    }

    #[test]
    fn ec_ca_issues_rsa_leaf_like_dhtnode() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let ec = EcCaKey::generate(&mut rng);
        let ca = Certificate::generate_ec_ca(&ec, "DHT Node CA", NOW, &mut rng).expect("ec ca");
        assert_eq!(ca.key_algorithm(), KeyAlgorithm::EcP384);
        assert!(ca.is_ca() && ca.public_key().is_none());
        ca.verify_issued_by(&ca).expect("ec self-signed");
        let leaf = Certificate::generate(
            key(0),
            "DHT Node",
            Some((CertSigner::EcP384(&ec), &ca)),
            false,
            NOW,
            &mut rng,
        )
        .expect("leaf");
        assert_eq!(
            leaf.signature_algorithm(),
            SignatureAlgorithm::Ecdsa(HashAlg::Sha256)
        );
        leaf.verify_issued_by(&ca).expect("ECDSA issuer");
    }
}
