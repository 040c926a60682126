//! The Jami account chain (PROTOCOLS §4.1): "Jami CA" (self-signed RSA CA) →
//! "Jami" (the account key, itself a CA) → "Jami device" (one per device).
//!
//! Jami ID = short id (SHA-1 of the DER SPKI) of the account key. A device is known
//! by its short id (DHT keys, certificate UID, receipts) and its long id (SHA-256,
//! the "device id" of swarms and channels). Device certificates are issued from a
//! request, so they carry no extensions, and the account key's preferred hash signs
//! them (SHA-384 for RSA-4096), as jamid 13.7 does.

use rand::CryptoRng;

use super::cert::{CertError, CertSigner, Certificate};
use super::chain;
use crate::crypto::{self, InfoHash, PkId, PrivateKey, PublicKey, DEFAULT_RSA_BITS};

/// CN of the account's CA certificate.
pub const CA_NAME: &str = "Jami CA";
/// CN of the account certificate.
pub const ACCOUNT_NAME: &str = "Jami";
/// CN of device certificates.
pub const DEVICE_NAME: &str = "Jami device";

/// Jami key size (CA, account and device keys).
pub const JAMI_RSA_BITS: usize = DEFAULT_RSA_BITS;

/// Why an account or device identity is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    #[error(transparent)]
    Cert(#[from] CertError),
    #[error(transparent)]
    Crypto(#[from] crypto::CryptoError),
    /// A private key does not belong to the certificate it is paired with.
    #[error("{0} key does not match its certificate")]
    KeyMismatch(&'static str),
    /// A device chain must be device → account → CA at least; a self-signed device
    /// certificate is refused (§4.6).
    #[error("device certificate is self-signed or has no issuer")]
    NoAccount,
}

type Result<T> = std::result::Result<T, AccountError>;

/// The account key with its chain (account certificate → CA) and, when known, the
/// CA key (it lives in the archive; only needed to re-issue the account certificate).
#[derive(Debug, Clone)]
pub struct AccountIdentity {
    account_key: PrivateKey,
    chain: Vec<Certificate>,
    ca_key: Option<PrivateKey>,
}

impl AccountIdentity {
    /// A new account the way jamid creates one: CA, then account certificate (a CA).
    pub fn generate<R: CryptoRng + ?Sized>(bits: usize, now: u64, rng: &mut R) -> Result<Self> {
        let ca_key = PrivateKey::generate(bits, rng)?;
        let ca = Certificate::generate(&ca_key, CA_NAME, None, true, now, rng)?;
        let account_key = PrivateKey::generate(bits, rng)?;
        let account = Certificate::generate(
            &account_key,
            ACCOUNT_NAME,
            Some((CertSigner::Rsa(&ca_key), &ca)),
            true,
            now,
            rng,
        )?;
        Self::new(account_key, vec![account, ca], Some(ca_key))
    }

    /// Pairs the account key with its chain (account first); checks key ownership.
    pub fn new(
        account_key: PrivateKey,
        chain: Vec<Certificate>,
        ca_key: Option<PrivateKey>,
    ) -> Result<Self> {
        let account = chain.first().ok_or(CertError::Empty)?;
        if account.public_key() != Some(&account_key.public_key()) {
            return Err(AccountError::KeyMismatch("account"));
        }
        if let (Some(k), Some(ca)) = (&ca_key, chain.get(1)) {
            if ca.public_key() != Some(&k.public_key()) {
                return Err(AccountError::KeyMismatch("CA"));
            }
        }
        Ok(Self {
            account_key,
            chain,
            ca_key,
        })
    }

    /// Jami ID: SHA-1 of the account key's DER SPKI.
    pub fn account_id(&self) -> InfoHash {
        self.chain[0].short_id()
    }

    /// `jami:<40 hex>`.
    pub fn uri(&self) -> String {
        format!("jami:{}", crypto::hex(&self.account_id()))
    }

    /// The account private key (signs devices, announcements, CRLs, receipts).
    pub fn account_key(&self) -> &PrivateKey {
        &self.account_key
    }

    /// The account certificate.
    pub fn certificate(&self) -> &Certificate {
        &self.chain[0]
    }

    /// Account certificate then its issuers (the archive's `ringAccountCert`).
    pub fn chain(&self) -> &[Certificate] {
        &self.chain
    }

    /// The CA private key, if this identity came with it.
    pub fn ca_key(&self) -> Option<&PrivateKey> {
        self.ca_key.as_ref()
    }

    /// Issues a device certificate for `device` (CN "Jami device", UID = its short id).
    pub fn issue_device<R: CryptoRng + ?Sized>(
        &self,
        device: &PublicKey,
        now: u64,
        rng: &mut R,
    ) -> Result<Certificate> {
        Ok(Certificate::generate_from_request(
            device,
            DEVICE_NAME,
            &crypto::hex(&device.short_id()),
            (CertSigner::Rsa(&self.account_key), &self.chain[0]),
            now,
            rng,
        )?)
    }

    /// A new device: fresh key of `bits` bits, certificate, chain device → account → CA.
    pub fn new_device<R: CryptoRng + ?Sized>(
        &self,
        bits: usize,
        now: u64,
        rng: &mut R,
    ) -> Result<DeviceIdentity> {
        let key = PrivateKey::generate(bits, rng)?;
        let cert = self.issue_device(&key.public_key(), now, rng)?;
        let mut chain = vec![cert];
        chain.extend(self.chain.iter().cloned());
        DeviceIdentity::new(key, chain)
    }
}

/// A device key with its chain device → account → CA (`ring_device.key` /
/// `ring_device.crt`); the identity its DHT node and TLS sessions run with.
#[derive(Debug, Clone)]
pub struct DeviceIdentity {
    key: PrivateKey,
    chain: Vec<Certificate>,
    account_id: InfoHash,
}

impl DeviceIdentity {
    /// Pairs a device key with its chain; the chain must be a valid device chain.
    pub fn new(key: PrivateKey, chain: Vec<Certificate>) -> Result<Self> {
        let info = verify_device_chain(&chain)?;
        if chain[0].public_key() != Some(&key.public_key()) {
            return Err(AccountError::KeyMismatch("device"));
        }
        Ok(Self {
            key,
            chain,
            account_id: info.account_id,
        })
    }

    /// Reads `ring_device.key` (PKCS#8 PEM) and `ring_device.crt` (PEM chain) contents.
    pub fn from_pem(key: &[u8], chain_pem: &[u8]) -> Result<Self> {
        Self::new(
            PrivateKey::from_pem_or_der(key)?,
            chain::decode_chain(chain_pem)?,
        )
    }

    /// The device private key.
    pub fn key(&self) -> &PrivateKey {
        &self.key
    }

    /// The device certificate.
    pub fn certificate(&self) -> &Certificate {
        &self.chain[0]
    }

    /// Device → account → CA.
    pub fn chain(&self) -> &[Certificate] {
        &self.chain
    }

    /// The Jami ID of the owning account.
    pub fn account_id(&self) -> InfoHash {
        self.account_id
    }

    /// Short device id (SHA-1): DHT `inbox:`/`peer:` keys, certificate lookups.
    pub fn short_id(&self) -> InfoHash {
        self.chain[0].short_id()
    }

    /// Device id (SHA-256, 64 hex): swarm files, channels, commit author.
    pub fn device_id(&self) -> PkId {
        self.chain[0].long_id()
    }

    /// Node id of the device's DHT node: SHA-1("node:" + hex short id).
    pub fn node_id(&self) -> InfoHash {
        self.chain[0].node_id()
    }

    /// The chain as PEM (`ring_device.crt`, TLS certificate, type-8 value).
    pub fn chain_pem(&self) -> String {
        chain::encode_pem_chain(&self.chain)
    }

    /// `data` of the certificate announcement put at the device short id.
    pub fn certificate_value_data(&self) -> Vec<u8> {
        chain::to_value_data(&self.chain)
    }
}

/// What a verified device chain says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Jami ID = short id of the device certificate's issuer.
    pub account_id: InfoHash,
    pub device_short_id: InfoHash,
    pub device_id: PkId,
}

/// The check peers apply to a device chain (§4.6): the device certificate is not
/// self-signed, every link verifies, and the account is the device's issuer.
pub fn verify_device_chain(chain: &[Certificate]) -> Result<DeviceInfo> {
    let device = chain.first().ok_or(CertError::Empty)?;
    let account = chain.get(1).ok_or(AccountError::NoAccount)?;
    if device.is_self_issued() {
        return Err(AccountError::NoAccount);
    }
    chain::verify_chain(chain)?;
    Ok(DeviceInfo {
        account_id: account.short_id(),
        device_short_id: device.short_id(),
        device_id: device.long_id(),
    })
}

#[cfg(test)]
mod unit {
    use super::*;
    use crate::crypto::HashAlg;
    use crate::identity::cert::SignatureAlgorithm;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    const NOW: u64 = 1_790_000_000;

    #[test]
    fn small_account_and_device_have_jami_shape() {
        let mut rng = ChaCha20Rng::seed_from_u64(20);
        let account = AccountIdentity::generate(1024, NOW, &mut rng).expect("account");
        let [acc, ca] = account.chain() else {
            panic!("two certificates")
        };
        assert_eq!((acc.name(), ca.name()), (Some("Jami"), Some("Jami CA")));
        assert!(acc.is_ca() && ca.is_ca());
        assert_eq!(
            account.account_id(),
            account.account_key().public_key().short_id()
        );
        assert_eq!(account.uri().len(), 5 + 40);
        let device = account.new_device(1024, NOW, &mut rng).expect("device");
        let cert = device.certificate();
        assert_eq!(cert.name(), Some("Jami device"));
        assert_eq!(cert.uid(), Some(crypto::hex(&device.short_id()).as_str()));
        assert_eq!(
            cert.issuer_uid(),
            Some(crypto::hex(&account.account_id()).as_str())
        );
        assert!(
            !cert.is_ca() && cert.subject_key_id().is_none(),
            "no extensions"
        );
        assert_eq!(device.account_id(), account.account_id());
        assert_eq!(device.device_id(), device.key().public_key().long_id());
        let again = DeviceIdentity::from_pem(
            device.key().to_pkcs8_pem().expect("pem").as_bytes(),
            device.chain_pem().as_bytes(),
        )
        .expect("reload");
        assert_eq!(again.chain(), device.chain());
    }

    #[test]
    fn foreign_or_self_signed_devices_are_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(21);
        let a = AccountIdentity::generate(1024, NOW, &mut rng).expect("a");
        let b = AccountIdentity::generate(1024, NOW, &mut rng).expect("b");
        let dev = a.new_device(1024, NOW, &mut rng).expect("device");
        // Device of A presented with B's account chain.
        let mut mixed = vec![dev.certificate().clone()];
        mixed.extend(b.chain().iter().cloned());
        assert!(verify_device_chain(&mixed).is_err());
        let key = PrivateKey::generate(1024, &mut rng).expect("key");
        let selfsigned =
            Certificate::generate(&key, DEVICE_NAME, None, false, NOW, &mut rng).expect("cert");
        assert_eq!(
            verify_device_chain(&[selfsigned]),
            Err(AccountError::NoAccount)
        );
        assert!(matches!(
            DeviceIdentity::new(key, dev.chain().to_vec()),
            Err(AccountError::KeyMismatch("device"))
        ));
    }

    /// The real sizes (RSA-4096 everywhere): SHA-384 signatures like jamid 13.7.
    #[test]
    fn full_size_account_signs_with_sha384() {
        let mut rng = ChaCha20Rng::seed_from_u64(22);
        let account = AccountIdentity::generate(JAMI_RSA_BITS, NOW, &mut rng).expect("account");
        let device = account
            .new_device(JAMI_RSA_BITS, NOW, &mut rng)
            .expect("device");
        for c in device.chain() {
            assert_eq!(
                c.signature_algorithm(),
                SignatureAlgorithm::Rsa(HashAlg::Sha384)
            );
            assert_eq!(c.public_key().map(PublicKey::bits), Some(4096));
        }
    }
}
