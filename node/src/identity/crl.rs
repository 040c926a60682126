//! Certificate revocation lists as OpenDHT's `RevocationList::sign` writes them and
//! Jami uses them to revoke devices (PROTOCOLS §4.5).
//!
//! Checked against GnuTLS (the calls OpenDHT makes): X.509 v2 CRL signed by the
//! issuer with RSA **SHA-512** whatever the key size, `thisUpdate` = now,
//! `nextUpdate` = the issuer certificate's expiry (OpenDHT's default validity),
//! one CRL Number extension (8 random bytes on the first signature, then the previous
//! number + 1), entries = serial + revocation date without entry extensions, no
//! Authority Key Identifier. Carried as DER (archive `ringAccountCRL`, DHT values).

use der::asn1::{BitString, OctetString};
use der::{Decode, Encode};
use rand::CryptoRng;
use x509_cert::crl::{CertificateList, RevokedCert, TbsCertList};
use x509_cert::ext::Extension;
use x509_cert::serial_number::SerialNumber;
use x509_cert::Version;

use super::cert::{minimal_int, x509_time, CertError, CertSigner, Certificate, SignatureAlgorithm};
use super::name;
use crate::crypto::HashAlg;

const OID_CRL_NUMBER: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("2.5.29.20");

type Result<T> = std::result::Result<T, CertError>;

/// A parsed (or freshly signed) CRL; the DER is kept verbatim.
#[derive(Clone, PartialEq, Eq)]
pub struct RevocationList {
    der: Vec<u8>,
    inner: CertificateList,
}

impl std::fmt::Debug for RevocationList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RevocationList(issuer UID={:?}, {} revoked)",
            self.issuer_uid(),
            self.revoked().len()
        )
    }
}

/// One revoked certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    /// Serial content bytes as encoded (two's complement).
    pub serial: Vec<u8>,
    /// Revocation time, unix seconds.
    pub at: u64,
}

impl RevocationList {
    /// Parses a DER CRL.
    pub fn from_der(der: &[u8]) -> Result<Self> {
        let inner = CertificateList::from_der(der).map_err(|e| CertError::Decode(e.to_string()))?;
        Ok(Self {
            der: der.to_vec(),
            inner,
        })
    }

    /// OpenDHT `RevocationList::unpack`: an `X509 CRL` PEM block, else DER.
    pub fn from_pem_or_der(bytes: &[u8]) -> Result<Self> {
        const BEGIN: &[u8] = b"-----BEGIN X509 CRL-----";
        match bytes.windows(BEGIN.len()).position(|w| w == BEGIN) {
            Some(start) => {
                let (label, der) = der::pem::decode_vec(&bytes[start..])
                    .map_err(|e| CertError::Decode(format!("bad PEM: {e}")))?;
                if label != "X509 CRL" {
                    return Err(CertError::Decode(format!("unexpected PEM label {label}")));
                }
                Self::from_der(&der)
            }
            None => Self::from_der(bytes),
        }
    }

    /// Signs a new list: `revoked` entries, CRL number = `previous` + 1 or else 8
    /// random bytes, valid from `now` until the issuer certificate expires.
    pub fn sign<R: CryptoRng + ?Sized>(
        issuer_key: CertSigner<'_>,
        issuer: &Certificate,
        revoked: &[Revoked],
        previous: Option<&RevocationList>,
        now: u64,
        rng: &mut R,
    ) -> Result<Self> {
        let number = match previous.and_then(RevocationList::number) {
            Some(n) => next_number(&n),
            None => {
                let mut raw = [0u8; 8];
                rng.fill_bytes(&mut raw);
                raw.to_vec()
            }
        };
        let entries = revoked
            .iter()
            .map(|r| {
                Ok(RevokedCert {
                    serial_number: serial_from_content(&r.serial)?,
                    revocation_date: x509_time(r.at)?,
                    crl_entry_extensions: None,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let alg = issuer_key.algorithm(HashAlg::Sha512);
        let tbs = TbsCertList {
            version: Version::V2,
            signature: alg.identifier()?,
            issuer: issuer.subject().clone(),
            this_update: x509_time(now)?,
            next_update: Some(x509_time(issuer.not_after())?),
            revoked_certificates: (!entries.is_empty()).then_some(entries),
            crl_extensions: Some(vec![Extension {
                extn_id: OID_CRL_NUMBER,
                critical: false,
                extn_value: OctetString::new(integer_der(&number)?)?,
            }]),
        };
        let (_, signature) = issuer_key.sign(HashAlg::Sha512, &tbs.to_der()?)?;
        let inner = CertificateList {
            tbs_cert_list: tbs,
            signature_algorithm: alg.identifier()?,
            signature: BitString::from_bytes(&signature)?,
        };
        Ok(Self {
            der: inner.to_der()?,
            inner,
        })
    }

    /// OpenDHT `Certificate::revoke` on the issuer side: this list plus `cert`
    /// revoked at `now`, re-signed with the next CRL number.
    pub fn revoke<R: CryptoRng + ?Sized>(
        &self,
        cert: &Certificate,
        issuer_key: CertSigner<'_>,
        issuer: &Certificate,
        now: u64,
        rng: &mut R,
    ) -> Result<Self> {
        let mut entries = self.revoked();
        entries.push(Revoked {
            serial: cert.serial().to_vec(),
            at: now,
        });
        Self::sign(issuer_key, issuer, &entries, Some(self), now, rng)
    }

    /// DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// `data` of the CRL value put at the account id (§4.2): msgpack bin of the DER.
    pub fn to_value_data(&self) -> Vec<u8> {
        let mut w = crate::dht::msgpack::Writer::new();
        w.bin(&self.der);
        w.into_bytes()
    }

    /// Reads such a value's `data` (msgpack bin, or raw PEM/DER).
    pub fn from_value_data(data: &[u8]) -> Result<Self> {
        match crate::dht::msgpack::parse(data)
            .ok()
            .and_then(|n| n.as_bin())
        {
            Some(inner) => Self::from_pem_or_der(inner),
            None => Self::from_pem_or_der(data),
        }
    }

    /// Issuer CN (`getIssuerName`).
    pub fn issuer_name(&self) -> Option<String> {
        name::first(&self.inner.tbs_cert_list.issuer, name::OID_CN)
    }

    /// Issuer UID (`getIssuerUID`): the account id for Jami CRLs.
    pub fn issuer_uid(&self) -> Option<String> {
        name::first(&self.inner.tbs_cert_list.issuer, name::OID_UID)
    }

    /// `thisUpdate`, unix seconds.
    pub fn this_update(&self) -> u64 {
        self.inner
            .tbs_cert_list
            .this_update
            .to_unix_duration()
            .as_secs()
    }

    /// `nextUpdate`, unix seconds, if present.
    pub fn next_update(&self) -> Option<u64> {
        self.inner
            .tbs_cert_list
            .next_update
            .map(|t| t.to_unix_duration().as_secs())
    }

    /// CRL Number content bytes (two's complement, as encoded), if present.
    pub fn number(&self) -> Option<Vec<u8>> {
        let ext = self
            .inner
            .tbs_cert_list
            .crl_extensions
            .as_ref()?
            .iter()
            .find(|e| e.extn_id == OID_CRL_NUMBER)?;
        let int = der::asn1::Int::from_der(ext.extn_value.as_bytes()).ok()?;
        Some(int.as_bytes().to_vec())
    }

    /// The revoked entries.
    pub fn revoked(&self) -> Vec<Revoked> {
        self.inner
            .tbs_cert_list
            .revoked_certificates
            .iter()
            .flatten()
            .map(|r| Revoked {
                serial: r.serial_number.as_bytes().to_vec(),
                at: r.revocation_date.to_unix_duration().as_secs(),
            })
            .collect()
    }

    /// GnuTLS `crt_check_revocation`: same issuer name and a matching serial.
    pub fn is_revoked(&self, cert: &Certificate) -> bool {
        self.inner.tbs_cert_list.issuer == *cert.issuer_der_name()
            && self.revoked().iter().any(|r| r.serial == cert.serial())
    }

    /// `isSignedBy(issuer)`: issuer name matches and the signature verifies.
    pub fn verify_signed_by(&self, issuer: &Certificate) -> Result<()> {
        if self.inner.tbs_cert_list.issuer != *issuer.subject() {
            return Err(CertError::IssuerMismatch);
        }
        let tbs = self.inner.tbs_cert_list.to_der()?;
        let sig = self
            .inner
            .signature
            .as_bytes()
            .ok_or(CertError::BadSignature)?;
        issuer.key_verify(
            SignatureAlgorithm::from_oid(self.inner.signature_algorithm.oid),
            &tbs,
            sig,
        )
    }
}

/// The DER INTEGER holding the two's complement `content` (made minimal).
fn integer_der(content: &[u8]) -> Result<Vec<u8>> {
    let int = der::asn1::Int::new(minimal_int(content))?;
    Ok(int.to_der()?)
}

fn serial_from_content(content: &[u8]) -> Result<SerialNumber> {
    Ok(SerialNumber::from_der(&integer_der(content)?)?)
}

/// OpenDHT's increment: the number's bytes read big-endian as a u64, plus one,
/// written back as 8 bytes (minimal DER: redundant leading bytes dropped).
fn next_number(current: &[u8]) -> Vec<u8> {
    let tail = &current[current.len().saturating_sub(8)..];
    let mut be = [0u8; 8];
    be[8 - tail.len()..].copy_from_slice(tail);
    minimal_int(&u64::from_be_bytes(be).wrapping_add(1).to_be_bytes()).to_vec()
}

#[cfg(test)]
mod unit {
    use super::*;
    use crate::crypto::PrivateKey;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    const NOW: u64 = 1_790_000_000;

    struct Setup {
        key: PrivateKey,
        ca: Certificate,
        devices: Vec<Certificate>,
    }

    fn setup() -> &'static Setup {
        static S: std::sync::OnceLock<Setup> = std::sync::OnceLock::new();
        S.get_or_init(|| {
            let mut rng = ChaCha20Rng::seed_from_u64(30);
            let key = PrivateKey::generate(1024, &mut rng).expect("key");
            let ca = Certificate::generate(&key, "Jami", None, true, NOW, &mut rng).expect("ca");
            let devices = (0..2)
                .map(|_| {
                    let k = PrivateKey::generate(1024, &mut rng).expect("key");
                    Certificate::generate_from_request(
                        &k.public_key(),
                        "Jami device",
                        "00",
                        (CertSigner::Rsa(&key), &ca),
                        NOW,
                        &mut rng,
                    )
                    .expect("device")
                })
                .collect();
            Setup { key, ca, devices }
        })
    }

    #[test]
    fn revoke_signs_and_counts_up() {
        let s = setup();
        let mut rng = ChaCha20Rng::seed_from_u64(31);
        let signer = CertSigner::Rsa(&s.key);
        let empty = RevocationList::sign(signer, &s.ca, &[], None, NOW, &mut rng).expect("crl");
        assert!(empty.revoked().is_empty());
        empty.verify_signed_by(&s.ca).expect("signed");
        assert_eq!(empty.next_update(), Some(s.ca.not_after()));
        let first = empty
            .revoke(&s.devices[0], signer, &s.ca, NOW + 5, &mut rng)
            .expect("revoke");
        first.verify_signed_by(&s.ca).expect("signed");
        assert!(first.is_revoked(&s.devices[0]));
        assert!(!first.is_revoked(&s.devices[1]));
        assert_eq!(first.this_update(), NOW + 5);
        assert_eq!(first.revoked()[0].at, NOW + 5);
        assert_eq!(first.issuer_uid(), s.ca.uid().map(str::to_string));
        let n0 = empty.number().expect("number");
        let n1 = first.number().expect("number");
        assert_eq!(n1, next_number(&n0));
        let parsed = RevocationList::from_der(first.der()).expect("parse");
        assert_eq!(parsed, first);
        let data = first.to_value_data();
        assert_eq!(data[0], 0xc5, "msgpack bin16");
        assert_eq!(
            RevocationList::from_value_data(&data).expect("value"),
            first
        );
        // Not signed by a device certificate.
        assert_eq!(
            first.verify_signed_by(&s.devices[0]),
            Err(CertError::IssuerMismatch)
        );
    }

    #[test]
    fn crl_number_increments_like_opendht() {
        assert_eq!(next_number(&[0x01]), vec![0x02]);
        assert_eq!(next_number(&[0x7f]), vec![0x00, 0x80]);
        assert_eq!(
            next_number(&[0xf1, 2, 3, 4, 5, 6, 7, 8]),
            vec![0xf1, 2, 3, 4, 5, 6, 7, 9]
        );
        assert_eq!(next_number(&[0xff; 8]), vec![0x00]);
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = RevocationList::from_value_data(&bytes);
            if let Ok(crl) = RevocationList::from_pem_or_der(&bytes) {
                let _ = crl.verify_signed_by(&setup().ca);
                let _ = crl.number();
            }
        }

        #[test]
        fn mutated_crls_never_panic(pos in 0usize..1024, byte in any::<u8>()) {
            let s = setup();
            let mut rng = ChaCha20Rng::seed_from_u64(32);
            let crl = RevocationList::sign(CertSigner::Rsa(&s.key), &s.ca, &[Revoked { serial: vec![5], at: NOW }], None, NOW, &mut rng).expect("crl");
            let mut der = crl.der().to_vec();
            let p = pos % der.len();
            der[p] = byte;
            if let Ok(c) = RevocationList::from_der(&der) {
                let _ = c.verify_signed_by(&s.ca);
                let _ = c.revoked();
                let _ = c.is_revoked(&s.devices[0]);
            }
        }
    }
}
