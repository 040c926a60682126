//! A node identity (OpenDHT `crypto::Identity`): a private key plus its certificate
//! chain, leaf first. [`NodeIdentity::generate`] makes what `dhtnode -i` makes: a
//! throwaway EC P-384 CA "DHT Node CA" issuing an RSA "DHT Node" certificate.
//!
//! On disk (the node's `--identity DIR`): `DIR/dht.key` (PKCS#8 PEM, as before) and
//! `DIR/dht.crt` (PEM chain). A directory holding only `dht.key` (older jamisim) gets
//! a certificate for that key on first load.

use std::path::Path;

use rand::CryptoRng;

use super::cert::{CertError, CertSigner, Certificate};
use super::chain;
use super::ec::EcCaKey;
use crate::crypto::{CryptoError, InfoHash, PkId, PrivateKey};

/// Key file name inside an identity directory.
pub const KEY_FILE: &str = "dht.key";
/// Certificate chain file name inside an identity directory.
pub const CERT_FILE: &str = "dht.crt";

/// Why an identity could not be made, loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("key: {0}")]
    Key(#[from] CryptoError),
    #[error("certificate: {0}")]
    Cert(#[from] CertError),
    /// The leaf certificate is not for this private key.
    #[error("certificate does not match the private key")]
    KeyMismatch,
}

/// A private key and the certificate chain of its public key.
#[derive(Debug, Clone)]
pub struct NodeIdentity {
    key: PrivateKey,
    chain: Vec<Certificate>,
}

impl NodeIdentity {
    /// Pairs a key with its chain; the leaf must carry the key's public half.
    pub fn new(key: PrivateKey, chain: Vec<Certificate>) -> Result<Self, IdentityError> {
        let leaf = chain.first().ok_or(CertError::Empty)?;
        if leaf.public_key() != Some(&key.public_key()) {
            return Err(IdentityError::KeyMismatch);
        }
        Ok(Self { key, chain })
    }

    /// `dhtnode -i`: a fresh RSA key of `bits` bits certified by a fresh EC CA.
    pub fn generate<R: CryptoRng + ?Sized>(
        bits: usize,
        now: u64,
        rng: &mut R,
    ) -> Result<Self, IdentityError> {
        let key = PrivateKey::generate(bits, rng)?;
        Self::certify(key, now, rng)
    }

    /// Certifies an existing key the way [`generate`](Self::generate) does.
    pub fn certify<R: CryptoRng + ?Sized>(
        key: PrivateKey,
        now: u64,
        rng: &mut R,
    ) -> Result<Self, IdentityError> {
        let ca_key = EcCaKey::generate(rng);
        let ca = Certificate::generate_ec_ca(&ca_key, "DHT Node CA", now, rng)?;
        let leaf = Certificate::generate(
            &key,
            "DHT Node",
            Some((CertSigner::EcP384(&ca_key), &ca)),
            false,
            now,
            rng,
        )?;
        Self::new(key, vec![leaf, ca])
    }

    /// The private key.
    pub fn key(&self) -> &PrivateKey {
        &self.key
    }

    /// The leaf certificate.
    pub fn certificate(&self) -> &Certificate {
        &self.chain[0]
    }

    /// The whole chain, leaf first.
    pub fn chain(&self) -> &[Certificate] {
        &self.chain
    }

    /// Short id of the key (DHT certificate key, `getId`).
    pub fn short_id(&self) -> InfoHash {
        self.certificate().short_id()
    }

    /// Long id of the key (`getLongId`).
    pub fn long_id(&self) -> PkId {
        self.certificate().long_id()
    }

    /// SecureDht node id = SHA-1("node:" + hex short id).
    pub fn node_id(&self) -> InfoHash {
        self.certificate().node_id()
    }

    /// The chain as PEM (the `dht.crt` file, and what a type-8 value wraps).
    pub fn chain_pem(&self) -> String {
        chain::encode_pem_chain(&self.chain)
    }

    /// `data` of the certificate announcement value (type 8, value id 1).
    pub fn certificate_value_data(&self) -> Vec<u8> {
        chain::to_value_data(&self.chain)
    }

    /// Rebuilds an identity from the two files' contents.
    pub fn from_pem(key: &[u8], chain_pem: &[u8]) -> Result<Self, IdentityError> {
        Self::new(
            PrivateKey::from_pem_or_der(key)?,
            chain::decode_chain(chain_pem)?,
        )
    }

    /// Loads `DIR/dht.key` + `DIR/dht.crt`; creates what is missing (a new RSA key of
    /// `bits` bits, and/or a certificate for the key) and writes it back.
    pub fn load_or_create<R: CryptoRng + ?Sized>(
        dir: &Path,
        bits: usize,
        now: u64,
        rng: &mut R,
    ) -> Result<Self, IdentityError> {
        let key_path = dir.join(KEY_FILE);
        let cert_path = dir.join(CERT_FILE);
        let key = if key_path.exists() {
            PrivateKey::from_pem_or_der(&read(&key_path)?)?
        } else {
            let key = PrivateKey::generate(bits, rng)?;
            create_dir(dir)?;
            write(&key_path, key.to_pkcs8_pem()?.as_bytes())?;
            key
        };
        if cert_path.exists() {
            return Self::new(key, chain::decode_chain(&read(&cert_path)?)?);
        }
        let id = Self::certify(key, now, rng)?;
        write(&cert_path, id.chain_pem().as_bytes())?;
        Ok(id)
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError + '_ {
    move |source| IdentityError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn read(path: &Path) -> Result<Vec<u8>, IdentityError> {
    std::fs::read(path).map_err(io_err(path))
}

fn write(path: &Path, data: &[u8]) -> Result<(), IdentityError> {
    std::fs::write(path, data).map_err(io_err(path))
}

fn create_dir(dir: &Path) -> Result<(), IdentityError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))
}

#[cfg(test)]
mod unit {
    use super::*;
    use crate::crypto::HashAlg;
    use crate::identity::cert::{KeyAlgorithm, SignatureAlgorithm};
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    const NOW: u64 = 1_790_000_000;

    fn temp_dir(tag: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("jamisim-identity-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn generated_identity_looks_like_dhtnode_i() {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let id = NodeIdentity::generate(1024, NOW, &mut rng).expect("identity");
        let [leaf, ca] = id.chain() else {
            panic!("two certificates")
        };
        assert_eq!(leaf.name(), Some("DHT Node"));
        assert_eq!(ca.name(), Some("DHT Node CA"));
        assert_eq!(ca.key_algorithm(), KeyAlgorithm::EcP384);
        assert_eq!(
            leaf.signature_algorithm(),
            SignatureAlgorithm::Ecdsa(HashAlg::Sha256)
        );
        assert!(ca.is_ca() && !leaf.is_ca());
        chain::verify_chain(id.chain()).expect("valid chain");
        assert_eq!(id.short_id(), id.key().public_key().short_id());
        assert_eq!(id.node_id(), id.key().public_key().node_id());
        let again = NodeIdentity::from_pem(
            id.key().to_pkcs8_pem().expect("pem").as_bytes(),
            id.chain_pem().as_bytes(),
        )
        .expect("reload");
        assert_eq!(again.chain(), id.chain());
    }

    #[test]
    fn mismatched_key_is_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(10);
        let id = NodeIdentity::generate(1024, NOW, &mut rng).expect("identity");
        let other = PrivateKey::generate(1024, &mut rng).expect("key");
        assert!(matches!(
            NodeIdentity::new(other, id.chain().to_vec()),
            Err(IdentityError::KeyMismatch)
        ));
    }

    #[test]
    fn directory_store_creates_reloads_and_upgrades_key_only_dirs() {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let dir = temp_dir("store");
        let first = NodeIdentity::load_or_create(&dir, 1024, NOW, &mut rng).expect("create");
        let second = NodeIdentity::load_or_create(&dir, 1024, NOW, &mut rng).expect("load");
        assert_eq!(first.chain(), second.chain());
        // An older directory with only the key keeps its key (and so its node id).
        std::fs::remove_file(dir.join(CERT_FILE)).expect("rm crt");
        let upgraded = NodeIdentity::load_or_create(&dir, 1024, NOW, &mut rng).expect("upgrade");
        assert_eq!(upgraded.node_id(), first.node_id());
        assert!(dir.join(CERT_FILE).exists());
        std::fs::write(dir.join(CERT_FILE), b"garbage").expect("write");
        assert!(NodeIdentity::load_or_create(&dir, 1024, NOW, &mut rng).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
