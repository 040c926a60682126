//! OpenDHT 2.4.12-compatible crypto: RSA identities, key ids, value signatures,
//! value encryption and the symmetric (AES-GCM / Argon2i) helpers.
//!
//! Sans-IO: every operation that needs randomness takes the caller's RNG
//! (`rand` 0.10 [`CryptoRng`], the generation used by the workspace), so the
//! simulator can stay deterministic. The `rsa` 0.9 crate wants `rand_core` 0.6
//! traits; [`Rng06`] bridges the two generations internally.
//!
//! Security note (RUSTSEC-2023-0071, "Marvin" timing side channel): the `rsa`
//! crate's private-key operations (PKCS#1 v1.5 decryption and signing) are not
//! constant time and no patched release exists. That is acceptable for a
//! test/reference node whose keys protect nothing of value; it is NOT acceptable
//! for production secrets.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes128Gcm, Aes256Gcm, AesGcm, Nonce};
use rand::CryptoRng;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rsa::traits::PublicKeyParts;
use rsa::{Pkcs1v15Encrypt, Pkcs1v15Sign, RsaPrivateKey, RsaPublicKey};
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha384, Sha512};

/// Jami's default RSA modulus size.
pub const DEFAULT_RSA_BITS: usize = 4096;
/// AES-GCM nonce length used by OpenDHT (`GCM_IV_SIZE`).
pub const GCM_IV_LEN: usize = 12;
/// AES-GCM tag length used by OpenDHT (`GCM_DIGEST_SIZE`).
pub const GCM_TAG_LEN: usize = 16;
/// Salt prepended by the password form of `aesEncrypt` (`PASSWORD_SALT_LENGTH`).
pub const PASSWORD_SALT_LEN: usize = 16;
/// PBKDF2 iterations for password-protected key files we write (readers take any count).
pub const PBKDF2_ITERATIONS: u32 = 100_000;
/// PKCS#1 v1.5 encryption padding overhead: a block carries at most k − 11 bytes.
pub const PKCS1_V15_OVERHEAD: usize = 11;

/// 20-byte DHT key / short key id (OpenDHT `InfoHash`).
pub type InfoHash = [u8; 20];
/// 32-byte long key id (OpenDHT `PkId`).
pub type PkId = [u8; 32];

type Aes192Gcm = AesGcm<aes_gcm::aes::Aes192, aes_gcm::aead::consts::U12>;

/// Everything that can go wrong while decoding or processing key material and
/// ciphertexts. Network bytes always end up here, never in a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// Key bytes are neither a usable PEM nor DER encoding of an RSA key.
    #[error("invalid key encoding: {0}")]
    InvalidKey(String),
    /// Certificate bytes could not be parsed far enough to find the public key.
    #[error("invalid certificate: {0}")]
    InvalidCertificate(&'static str),
    /// A password-protected key did not decrypt with the given password.
    #[error("wrong password or unsupported key encryption")]
    WrongPassword,
    /// Key generation failed (e.g. unsupported size).
    #[error("key generation failed: {0}")]
    KeyGeneration(String),
    /// Serialising a key failed.
    #[error("key encoding failed: {0}")]
    Encoding(String),
    /// RSA ciphertext shorter than one modulus block.
    #[error("ciphertext too short: {len} bytes, need at least {min}")]
    CiphertextTooShort { len: usize, min: usize },
    /// RSA block did not decrypt (wrong key or corrupted padding).
    #[error("RSA decryption failed")]
    RsaDecrypt,
    /// RSA encryption failed (message too long for the key).
    #[error("RSA encryption failed: {0}")]
    RsaEncrypt(String),
    /// RSA signing failed.
    #[error("RSA signing failed: {0}")]
    Sign(String),
    /// AES key is not 16, 24 or 32 bytes long.
    #[error("invalid AES key length {0} (want 16, 24 or 32)")]
    AesKeyLength(usize),
    /// AES-GCM authentication failed (wrong key or tampered data).
    #[error("AES-GCM decryption failed")]
    AesDecrypt,
    /// AES-GCM encryption failed (input too large).
    #[error("AES-GCM encryption failed")]
    AesEncrypt,
    /// Argon2 rejected its parameters (e.g. salt shorter than 8 bytes).
    #[error("key stretching failed: {0}")]
    KeyStretch(String),
}

/// Result alias for this module.
pub type Result<T> = std::result::Result<T, CryptoError>;

/// Hash of an RSA PKCS#1 v1.5 signature. Values use SHA-512; certificates use the
/// GnuTLS "preferred" hash of the key ([`HashAlg::preferred_for_rsa_bits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlg {
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlg {
    /// GnuTLS `_gnutls_pk_bits_to_sha_hash` for RSA: up to 3072 bits SHA-256, up to
    /// 7680 SHA-384, above SHA-512 (checked with python3-opendht: 3072 → sha256WithRSA,
    /// 4096 → sha384WithRSA).
    pub fn preferred_for_rsa_bits(bits: usize) -> Self {
        match bits {
            0..=3072 => Self::Sha256,
            3073..=7680 => Self::Sha384,
            _ => Self::Sha512,
        }
    }

    /// The digest of `data`.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => Sha256::digest(data).to_vec(),
            Self::Sha384 => Sha384::digest(data).to_vec(),
            Self::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    fn pkcs1v15(self) -> Pkcs1v15Sign {
        match self {
            Self::Sha256 => Pkcs1v15Sign::new::<Sha256>(),
            Self::Sha384 => Pkcs1v15Sign::new::<Sha384>(),
            Self::Sha512 => Pkcs1v15Sign::new::<Sha512>(),
        }
    }
}

/// Adapts a `rand_core` 0.10 RNG to the `rand_core` 0.6 traits `rsa` 0.9 needs.
pub(crate) struct Rng06<'a, R: ?Sized>(pub(crate) &'a mut R);

impl<R: CryptoRng + ?Sized> rand_core_06::RngCore for Rng06<'_, R> {
    fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }
    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.fill_bytes(dest)
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> std::result::Result<(), rand_core_06::Error> {
        self.0.fill_bytes(dest);
        Ok(())
    }
}

impl<R: CryptoRng + ?Sized> rand_core_06::CryptoRng for Rng06<'_, R> {}

// ---------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------

/// An RSA private key (OpenDHT `crypto::PrivateKey`, RSA only).
#[derive(Clone)]
pub struct PrivateKey {
    inner: RsaPrivateKey,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secret material.
        write!(f, "PrivateKey({})", hex(&self.public_key().short_id()))
    }
}

impl PrivateKey {
    /// Generates a fresh RSA key of `bits` bits (Jami: [`DEFAULT_RSA_BITS`]).
    pub fn generate<R: CryptoRng + ?Sized>(bits: usize, rng: &mut R) -> Result<Self> {
        RsaPrivateKey::new(&mut Rng06(rng), bits)
            .map(|inner| Self { inner })
            .map_err(|e| CryptoError::KeyGeneration(e.to_string()))
    }

    /// Loads a PKCS#8 DER private key.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self> {
        RsaPrivateKey::from_pkcs8_der(der)
            .map(|inner| Self { inner })
            .map_err(|e| CryptoError::InvalidKey(e.to_string()))
    }

    /// Loads a private key the way OpenDHT does: PEM (PKCS#8 `PRIVATE KEY`, or
    /// legacy PKCS#1 `RSA PRIVATE KEY`) or else DER (PKCS#8, then PKCS#1).
    /// Password-protected keys are not supported.
    pub fn from_pem_or_der(bytes: &[u8]) -> Result<Self> {
        if let Some(block) = find_pem_block(bytes, "PRIVATE KEY") {
            return Self::from_pkcs8_der(&pem_decode(block)?);
        }
        if let Some(block) = find_pem_block(bytes, "RSA PRIVATE KEY") {
            return RsaPrivateKey::from_pkcs1_der(&pem_decode(block)?)
                .map(|inner| Self { inner })
                .map_err(|e| CryptoError::InvalidKey(e.to_string()));
        }
        Self::from_pkcs8_der(bytes).or_else(|_| {
            RsaPrivateKey::from_pkcs1_der(bytes)
                .map(|inner| Self { inner })
                .map_err(|e| CryptoError::InvalidKey(e.to_string()))
        })
    }

    /// Loads a private key that may be password protected: an `ENCRYPTED PRIVATE
    /// KEY` PEM block (PKCS#8 PBES2, as OpenDHT `serialize(password)` writes) or DER
    /// is decrypted with `password`; anything else goes to [`from_pem_or_der`](Self::from_pem_or_der).
    pub fn from_pem_or_der_with_password(bytes: &[u8], password: &str) -> Result<Self> {
        let der = match find_pem_block(bytes, "ENCRYPTED PRIVATE KEY") {
            Some(block) => pem_decode(block)?,
            None => bytes.to_vec(),
        };
        let plain = match pkcs8::EncryptedPrivateKeyInfo::try_from(der.as_slice()) {
            Ok(info) => info
                .decrypt(password)
                .map_err(|_| CryptoError::WrongPassword)?
                .as_bytes()
                .to_vec(),
            // GnuTLS omits the NULL parameters of the PBKDF2 PRF, which the strict
            // `pkcs5` parser refuses; fall back to our own walk of the structure.
            Err(_) => match gnutls_pbes2(&der) {
                Some((params, data)) => params
                    .decrypt(password, data)
                    .map_err(|_| CryptoError::WrongPassword)?,
                None => return Self::from_pem_or_der(bytes),
            },
        };
        Self::from_pkcs8_der(&plain)
    }

    /// Password-protected PKCS#8 PEM (`ENCRYPTED PRIVATE KEY`): PBES2 with
    /// PBKDF2-HMAC-SHA256 and AES-256-CBC, the scheme OpenDHT uses
    /// (`GNUTLS_PKCS_PBES2_AES_256`).
    pub fn to_pkcs8_encrypted_pem<R: CryptoRng + ?Sized>(
        &self,
        password: &str,
        rng: &mut R,
    ) -> Result<String> {
        let mut salt = [0u8; 16];
        let mut iv = [0u8; 16];
        rng.fill_bytes(&mut salt);
        rng.fill_bytes(&mut iv);
        let params =
            pkcs8::pkcs5::pbes2::Parameters::pbkdf2_sha256_aes256cbc(PBKDF2_ITERATIONS, &salt, &iv)
                .map_err(|e| CryptoError::Encoding(e.to_string()))?;
        let der = self.to_pkcs8_der()?;
        let info = pkcs8::PrivateKeyInfo::try_from(der.as_slice())
            .map_err(|e| CryptoError::Encoding(e.to_string()))?;
        let encrypted = info
            .encrypt_with_params(params, password)
            .map_err(|e| CryptoError::Encoding(e.to_string()))?;
        encrypted
            .to_pem("ENCRYPTED PRIVATE KEY", LineEnding::LF)
            .map(|s| s.to_string())
            .map_err(|e| CryptoError::Encoding(e.to_string()))
    }

    /// PKCS#8 DER encoding (unencrypted).
    pub fn to_pkcs8_der(&self) -> Result<Vec<u8>> {
        self.inner
            .to_pkcs8_der()
            .map(|d| d.as_bytes().to_vec())
            .map_err(|e| CryptoError::Encoding(e.to_string()))
    }

    /// PKCS#8 PEM encoding (unencrypted, `-----BEGIN PRIVATE KEY-----`, LF).
    pub fn to_pkcs8_pem(&self) -> Result<String> {
        self.inner
            .to_pkcs8_pem(LineEnding::LF)
            .map(|s| s.to_string())
            .map_err(|e| CryptoError::Encoding(e.to_string()))
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey::from_rsa(self.inner.to_public_key())
    }

    /// RSA PKCS#1 v1.5 / SHA-512 signature (OpenDHT `PrivateKey::sign`).
    // RUSTSEC-2023-0071: non-constant-time RSA private operation; fine for a
    // test/reference node, not for production secrets.
    pub fn sign(&self, data: &[u8]) -> Result<Vec<u8>> {
        self.sign_with(HashAlg::Sha512, data)
    }

    /// RSA PKCS#1 v1.5 signature of `data` hashed with `hash` (certificates, CRLs).
    // RUSTSEC-2023-0071: see `sign`.
    pub fn sign_with(&self, hash: HashAlg, data: &[u8]) -> Result<Vec<u8>> {
        self.inner
            .sign(hash.pkcs1v15(), &hash.digest(data))
            .map_err(|e| CryptoError::Sign(e.to_string()))
    }

    /// Decrypts an OpenDHT cypher (§2.4): one RSA PKCS#1 v1.5 block, or an RSA
    /// block carrying an AES key followed by `IV ‖ AES-GCM ciphertext ‖ tag`.
    // RUSTSEC-2023-0071: PKCS#1 v1.5 decryption with the `rsa` crate leaks timing
    // (Marvin). Acceptable for a test/reference node only.
    pub fn decrypt(&self, cypher: &[u8]) -> Result<Vec<u8>> {
        let k = self.inner.size();
        if cypher.len() < k {
            return Err(CryptoError::CiphertextTooShort {
                len: cypher.len(),
                min: k,
            });
        }
        let (block, rest) = cypher.split_at(k);
        let first = self
            .inner
            .decrypt(Pkcs1v15Encrypt, block)
            .map_err(|_| CryptoError::RsaDecrypt)?;
        if rest.is_empty() {
            return Ok(first);
        }
        aes_decrypt(rest, &first)
    }

    /// RSA modulus size in bytes (k).
    pub fn size(&self) -> usize {
        self.inner.size()
    }
}

/// An RSA public key plus its canonical DER SubjectPublicKeyInfo, from which
/// all OpenDHT ids are derived.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    inner: RsaPublicKey,
    spki_der: Vec<u8>,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", hex(&self.short_id()))
    }
}

impl PublicKey {
    fn from_rsa(inner: RsaPublicKey) -> Self {
        // Re-encoding an RSA SPKI cannot fail for a key the crate accepted.
        let spki_der = inner
            .to_public_key_der()
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_default();
        Self { inner, spki_der }
    }

    /// Loads a DER SubjectPublicKeyInfo (the form carried in value `owner`).
    pub fn from_spki_der(der: &[u8]) -> Result<Self> {
        RsaPublicKey::from_public_key_der(der)
            .map(Self::from_rsa)
            .map_err(|e| CryptoError::InvalidKey(e.to_string()))
    }

    /// Loads a `PUBLIC KEY` PEM block if present, else DER SPKI (OpenDHT accepts both).
    pub fn from_pem_or_der(bytes: &[u8]) -> Result<Self> {
        match find_pem_block(bytes, "PUBLIC KEY") {
            Some(block) => Self::from_spki_der(&pem_decode(block)?),
            None => Self::from_spki_der(bytes),
        }
    }

    /// The RSA public key of an X.509 certificate (first PEM block of a chain, or DER).
    pub fn from_certificate(cert: &[u8]) -> Result<Self> {
        Self::from_spki_der(&certificate_spki_der(cert)?)
    }

    /// DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// `PUBLIC KEY` PEM.
    pub fn to_pem(&self) -> Result<String> {
        self.inner
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| CryptoError::Encoding(e.to_string()))
    }

    /// Short id (`getId`) = SHA-1(DER SPKI).
    pub fn short_id(&self) -> InfoHash {
        short_id(&self.spki_der)
    }

    /// Long id (`getLongId`) = SHA-256(DER SPKI).
    pub fn long_id(&self) -> PkId {
        long_id(&self.spki_der)
    }

    /// DHT node id of a node running with this key's identity (§1.7).
    pub fn node_id(&self) -> InfoHash {
        node_id_from_short_id(&self.short_id())
    }

    /// RSA modulus size in bytes (k).
    pub fn size(&self) -> usize {
        self.inner.size()
    }

    /// Verifies an RSA PKCS#1 v1.5 / SHA-512 signature; any failure is `false`.
    pub fn verify(&self, data: &[u8], signature: &[u8]) -> bool {
        self.verify_with(HashAlg::Sha512, data, signature)
    }

    /// Verifies an RSA PKCS#1 v1.5 signature made with `hash`; any failure is `false`.
    pub fn verify_with(&self, hash: HashAlg, data: &[u8], signature: &[u8]) -> bool {
        self.inner
            .verify(hash.pkcs1v15(), &hash.digest(data), signature)
            .is_ok()
    }

    /// RSA modulus size in bits.
    pub fn bits(&self) -> usize {
        self.inner.n().bits()
    }

    /// OpenDHT `PublicKey::encrypt` (§2.4): one PKCS#1 v1.5 block when the
    /// plaintext fits in k − 11 bytes, else `RSA(aes_key) ‖ IV ‖ GCM ct ‖ tag`.
    pub fn encrypt<R: CryptoRng + ?Sized>(&self, plaintext: &[u8], rng: &mut R) -> Result<Vec<u8>> {
        let max_block = self.size().saturating_sub(PKCS1_V15_OVERHEAD);
        if plaintext.len() <= max_block {
            return self.encrypt_block(plaintext, rng);
        }
        let key_len = aes_key_len_for(max_block)?;
        let mut aes_key = vec![0u8; key_len];
        rng.fill_bytes(&mut aes_key);
        let mut out = self.encrypt_block(&aes_key, rng)?;
        out.extend_from_slice(&aes_encrypt(plaintext, &aes_key, rng)?);
        Ok(out)
    }

    fn encrypt_block<R: CryptoRng + ?Sized>(&self, data: &[u8], rng: &mut R) -> Result<Vec<u8>> {
        self.inner
            .encrypt(&mut Rng06(rng), Pkcs1v15Encrypt, data)
            .map_err(|e| CryptoError::RsaEncrypt(e.to_string()))
    }
}

/// Largest AES key size in {32, 24, 16} bytes that fits in one RSA block.
fn aes_key_len_for(max_block: usize) -> Result<usize> {
    [32usize, 24, 16]
        .into_iter()
        .find(|&n| n <= max_block)
        .ok_or_else(|| CryptoError::RsaEncrypt("key too small to wrap an AES key".into()))
}

// ---------------------------------------------------------------------------------------------
// Free-function API (what the value layer calls)
// ---------------------------------------------------------------------------------------------

/// Signs `data` (RSA PKCS#1 v1.5, SHA-512).
pub fn sign(key: &PrivateKey, data: &[u8]) -> Result<Vec<u8>> {
    key.sign(data)
}

/// Verifies a value signature given the owner's DER SPKI; malformed keys or
/// signatures simply fail verification.
pub fn verify(pubkey_spki_der: &[u8], data: &[u8], signature: &[u8]) -> bool {
    PublicKey::from_spki_der(pubkey_spki_der).is_ok_and(|k| k.verify(data, signature))
}

/// Encrypts `plaintext` for `pubkey` exactly like OpenDHT (§2.4).
pub fn encrypt_for<R: CryptoRng + ?Sized>(
    pubkey: &PublicKey,
    plaintext: &[u8],
    rng: &mut R,
) -> Result<Vec<u8>> {
    pubkey.encrypt(plaintext, rng)
}

/// Decrypts an OpenDHT cypher (both forms of §2.4).
pub fn decrypt(key: &PrivateKey, cypher: &[u8]) -> Result<Vec<u8>> {
    key.decrypt(cypher)
}

/// Short id = SHA-1 of a DER SubjectPublicKeyInfo (any key algorithm).
pub fn short_id(spki_der: &[u8]) -> InfoHash {
    Sha1::digest(spki_der).into()
}

/// Long id = SHA-256 of a DER SubjectPublicKeyInfo (any key algorithm).
pub fn long_id(spki_der: &[u8]) -> PkId {
    Sha256::digest(spki_der).into()
}

/// `InfoHash::get(prefix + hex(id))`, the pattern behind node/inbox/peer keys.
fn prefixed_hash(prefix: &str, id: &[u8]) -> InfoHash {
    let mut h = Sha1::new();
    h.update(prefix.as_bytes());
    h.update(hex(id).as_bytes());
    h.finalize().into()
}

/// Node id of an identity = SHA-1("node:" + hex(short id)) (§1.7).
pub fn node_id_from_short_id(short_id: &InfoHash) -> InfoHash {
    prefixed_hash("node:", short_id)
}

/// Inbox key = SHA-1("inbox:" + hex(short id)) (B1).
pub fn inbox_key(short_id: &InfoHash) -> InfoHash {
    prefixed_hash("inbox:", short_id)
}

/// Legacy (Jami 2023) peer key = SHA-1("peer:" + hex(short id)) (B1).
pub fn peer_key_short(short_id: &InfoHash) -> InfoHash {
    prefixed_hash("peer:", short_id)
}

/// Later dhtnet peer key = SHA-1("peer:" + hex(long id)) (B1).
pub fn peer_key_long(long_id: &PkId) -> InfoHash {
    prefixed_hash("peer:", long_id)
}

/// Lowercase hex, as OpenDHT's `toString()` prints ids.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Symmetric helpers (§2.5)
// ---------------------------------------------------------------------------------------------

/// `aesEncrypt(data, key)`: `IV(12, random) ‖ AES-GCM ciphertext ‖ tag(16)`, no AAD.
pub fn aes_encrypt<R: CryptoRng + ?Sized>(data: &[u8], key: &[u8], rng: &mut R) -> Result<Vec<u8>> {
    let mut iv = [0u8; GCM_IV_LEN];
    rng.fill_bytes(&mut iv);
    let nonce = Nonce::from_slice(&iv);
    let payload = Payload {
        msg: data,
        aad: &[],
    };
    let ct = match key.len() {
        16 => Aes128Gcm::new_from_slice(key).map(|c| c.encrypt(nonce, payload)),
        24 => Aes192Gcm::new_from_slice(key).map(|c| c.encrypt(nonce, payload)),
        32 => Aes256Gcm::new_from_slice(key).map(|c| c.encrypt(nonce, payload)),
        n => return Err(CryptoError::AesKeyLength(n)),
    }
    .map_err(|_| CryptoError::AesKeyLength(key.len()))?
    .map_err(|_| CryptoError::AesEncrypt)?;
    let mut out = Vec::with_capacity(GCM_IV_LEN + ct.len());
    out.extend_from_slice(&iv);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// `aesDecrypt(data, key)` for `IV ‖ ciphertext ‖ tag`. Like OpenDHT, input of
/// exactly `IV ‖ tag` (an encrypted empty plaintext) is refused.
pub fn aes_decrypt(data: &[u8], key: &[u8]) -> Result<Vec<u8>> {
    if !matches!(key.len(), 16 | 24 | 32) {
        return Err(CryptoError::AesKeyLength(key.len()));
    }
    // OpenDHT 2.4.12 rejects `len <= IV + tag`, i.e. an empty plaintext too; do the same.
    if data.len() <= GCM_IV_LEN + GCM_TAG_LEN {
        return Err(CryptoError::AesDecrypt);
    }
    let (iv, ct) = data.split_at(GCM_IV_LEN);
    let nonce = Nonce::from_slice(iv);
    let payload = Payload { msg: ct, aad: &[] };
    match key.len() {
        16 => Aes128Gcm::new_from_slice(key).map(|c| c.decrypt(nonce, payload)),
        24 => Aes192Gcm::new_from_slice(key).map(|c| c.decrypt(nonce, payload)),
        _ => Aes256Gcm::new_from_slice(key).map(|c| c.decrypt(nonce, payload)),
    }
    .map_err(|_| CryptoError::AesKeyLength(key.len()))?
    .map_err(|_| CryptoError::AesDecrypt)
}

/// OpenDHT `stretchKey`: SHA-256(Argon2i v0x13, t=16, m=65536 KiB, p=1, 32 bytes).
/// Costs 64 MiB and a fraction of a second; the salt must be ≥ 8 bytes.
pub fn stretch_key(password: &[u8], salt: &[u8]) -> Result<[u8; 32]> {
    let params = argon2::Params::new(65536, 16, 1, Some(32))
        .map_err(|e| CryptoError::KeyStretch(e.to_string()))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2i, argon2::Version::V0x13, params);
    let mut raw = [0u8; 32];
    argon
        .hash_password_into(password, salt, &mut raw)
        .map_err(|e| CryptoError::KeyStretch(e.to_string()))?;
    Ok(Sha256::digest(raw).into())
}

/// `aesEncrypt(data, password)`: `salt(16) ‖ aesEncrypt(data, stretch_key(password, salt))`.
pub fn aes_encrypt_password<R: CryptoRng + ?Sized>(
    data: &[u8],
    password: &[u8],
    rng: &mut R,
) -> Result<Vec<u8>> {
    let mut salt = [0u8; PASSWORD_SALT_LEN];
    rng.fill_bytes(&mut salt);
    let key = stretch_key(password, &salt)?;
    let mut out = salt.to_vec();
    out.extend_from_slice(&aes_encrypt(data, &key, rng)?);
    Ok(out)
}

/// `aesDecrypt(data, password)` for `salt(16) ‖ IV ‖ ciphertext ‖ tag`.
pub fn aes_decrypt_password(data: &[u8], password: &[u8]) -> Result<Vec<u8>> {
    if data.len() <= PASSWORD_SALT_LEN + GCM_IV_LEN + GCM_TAG_LEN {
        return Err(CryptoError::AesDecrypt);
    }
    let (salt, rest) = data.split_at(PASSWORD_SALT_LEN);
    aes_decrypt(rest, &stretch_key(password, salt)?)
}

// ---------------------------------------------------------------------------------------------
// PEM / certificate helpers
// ---------------------------------------------------------------------------------------------

/// Finds the first complete `-----BEGIN {label}-----` … `-----END {label}-----`
/// block anywhere in `bytes` (tolerates leading garbage such as a msgpack bin
/// header, like GnuTLS does).
fn find_pem_block<'a>(bytes: &'a [u8], label: &str) -> Option<&'a [u8]> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = find(bytes, begin.as_bytes())?;
    let stop = start + find(&bytes[start..], end.as_bytes())? + end.len();
    Some(&bytes[start..stop])
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn pem_decode(block: &[u8]) -> Result<Vec<u8>> {
    rsa::pkcs8::der::pem::decode_vec(block)
        .map(|(_, der)| der)
        .map_err(|e| CryptoError::InvalidKey(e.to_string()))
}

/// DER SubjectPublicKeyInfo of the leaf certificate in `cert` (first
/// `CERTIFICATE` PEM block of a chain, else DER). Works for any key algorithm,
/// so ids of EC certificates can be computed too. Only walks the TBS structure;
/// it does not validate the certificate.
pub fn certificate_spki_der(cert: &[u8]) -> Result<Vec<u8>> {
    let der = match find_pem_block(cert, "CERTIFICATE") {
        Some(block) => rsa::pkcs8::der::pem::decode_vec(block)
            .map(|(_, d)| d)
            .map_err(|_| CryptoError::InvalidCertificate("bad PEM"))?,
        None => cert.to_vec(),
    };
    let (cert_body, _) =
        der_enter(&der, 0x30).ok_or(CryptoError::InvalidCertificate("no Certificate"))?;
    let (mut tbs, _) =
        der_enter(cert_body, 0x30).ok_or(CryptoError::InvalidCertificate("no TBSCertificate"))?;
    // Optional [0] EXPLICIT version.
    if tbs.first() == Some(&0xa0) {
        tbs = der_skip(tbs).ok_or(CryptoError::InvalidCertificate("bad version"))?;
    }
    // serialNumber, signature, issuer, validity, subject.
    for what in [
        "bad serial",
        "bad signature alg",
        "bad issuer",
        "bad validity",
        "bad subject",
    ] {
        tbs = der_skip(tbs).ok_or(CryptoError::InvalidCertificate(what))?;
    }
    if tbs.first() != Some(&0x30) {
        return Err(CryptoError::InvalidCertificate("no SubjectPublicKeyInfo"));
    }
    let (_, rest) = der_enter(tbs, 0x30).ok_or(CryptoError::InvalidCertificate("bad SPKI"))?;
    Ok(tbs[..tbs.len() - rest.len()].to_vec())
}

const OID_PBES2: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x05, 0x0d];
const OID_PBKDF2: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x05, 0x0c];
const OID_HMAC_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x09];
const OID_AES128_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x02];
const OID_AES256_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2a];

/// Lenient parse of an `EncryptedPrivateKeyInfo` using PBES2 / PBKDF2-HMAC-SHA256 /
/// AES-CBC as GnuTLS writes it (PRF without NULL parameters). Returns the PBES2
/// parameters and the encrypted data, or `None` for anything else.
fn gnutls_pbes2(der: &[u8]) -> Option<(pkcs8::pkcs5::pbes2::Parameters<'_>, &[u8])> {
    let (info, _) = der_enter(der, 0x30)?;
    let (alg, rest) = der_enter(info, 0x30)?;
    let (data, _) = der_enter(rest, 0x04)?;
    let (oid, alg_rest) = der_enter(alg, 0x06)?;
    if oid != OID_PBES2 {
        return None;
    }
    let (params, _) = der_enter(alg_rest, 0x30)?;
    let (kdf, scheme) = der_enter(params, 0x30)?;
    let (kdf_oid, kdf_rest) = der_enter(kdf, 0x06)?;
    if kdf_oid != OID_PBKDF2 {
        return None;
    }
    let (kdf_params, _) = der_enter(kdf_rest, 0x30)?;
    let (salt, after_salt) = der_enter(kdf_params, 0x04)?;
    let (iter_bytes, mut after_iter) = der_enter(after_salt, 0x02)?;
    if iter_bytes.is_empty() || iter_bytes.len() > 4 || iter_bytes[0] & 0x80 != 0 {
        return None;
    }
    let iterations = iter_bytes
        .iter()
        .fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
    // Optional keyLength INTEGER, then the PRF, which must be HMAC-SHA256.
    if after_iter.first() == Some(&0x02) {
        after_iter = der_skip(after_iter)?;
    }
    let (prf, _) = der_enter(after_iter, 0x30)?;
    let (prf_oid, _) = der_enter(prf, 0x06)?;
    if prf_oid != OID_HMAC_SHA256 {
        return None;
    }
    let (enc, _) = der_enter(scheme, 0x30)?;
    let (enc_oid, enc_rest) = der_enter(enc, 0x06)?;
    let (iv, _) = der_enter(enc_rest, 0x04)?;
    let iv: &[u8; 16] = iv.try_into().ok()?;
    use pkcs8::pkcs5::pbes2::Parameters;
    let params = if enc_oid == OID_AES256_CBC {
        Parameters::pbkdf2_sha256_aes256cbc(iterations, salt, iv).ok()?
    } else if enc_oid == OID_AES128_CBC {
        Parameters::pbkdf2_sha256_aes128cbc(iterations, salt, iv).ok()?
    } else {
        return None;
    };
    Some((params, data))
}

/// Parses one DER TLV header; returns (content, remaining bytes after the TLV).
fn der_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (len_bytes, after) = rest.split_at(n);
        rest = after;
        len_bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    if rest.len() < len {
        return None;
    }
    let (content, after) = rest.split_at(len);
    Some((tag, content, after))
}

fn der_enter(input: &[u8], want_tag: u8) -> Option<(&[u8], &[u8])> {
    match der_tlv(input)? {
        (tag, content, after) if tag == want_tag => Some((content, after)),
        _ => None,
    }
}

fn der_skip(input: &[u8]) -> Option<&[u8]> {
    der_tlv(input).map(|(_, _, after)| after)
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn aes_key_len_rule() {
        assert_eq!(aes_key_len_for(245).ok(), Some(32));
        assert_eq!(aes_key_len_for(30).ok(), Some(24));
        assert_eq!(aes_key_len_for(16).ok(), Some(16));
        assert!(aes_key_len_for(15).is_err());
    }

    #[test]
    fn lenient_pbes2_walk_handles_every_truncation() {
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
        let key = PrivateKey::generate(1024, &mut rng).expect("keygen");
        let pem = key.to_pkcs8_encrypted_pem("pw", &mut rng).expect("pem");
        let block = find_pem_block(pem.as_bytes(), "ENCRYPTED PRIVATE KEY").expect("block");
        let der = pem_decode(block).expect("der");
        assert!(gnutls_pbes2(&der).is_some());
        for len in 0..der.len() {
            let _ = gnutls_pbes2(&der[..len]);
        }
    }

    #[test]
    fn der_tlv_rejects_truncation() {
        assert!(der_tlv(&[0x30, 0x82, 0x01]).is_none());
        assert!(der_tlv(&[0x30, 0x05, 0x00]).is_none());
        assert_eq!(
            der_tlv(&[0x04, 0x01, 0xaa, 0xbb]),
            Some((0x04, &[0xaa][..], &[0xbb][..]))
        );
    }
}
