//! Name server domain logic (PROTOCOLS.md §5), free of HTTP and IO: name and address
//! rules, the signed registration check, and the [`Store`] the registry keeps its
//! records in. The HTTP layer only maps [`NsError`] to a status code and a body.

use crate::crypto::{self, PublicKey};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// Shortest and longest name (`^[a-zA-Z0-9-_]{3,32}$` in both jamid and the reference server).
pub const NAME_MIN: usize = 3;
pub const NAME_MAX: usize = 32;

/// A registrable name: 3–32 of `[a-zA-Z0-9-_]`, kept lower-cased (jamid lower-cases
/// before it asks; the server lower-cases too so lookups never depend on case).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(String);

impl Name {
    pub fn parse(s: &str) -> Result<Name, NsError> {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if (NAME_MIN..=NAME_MAX).contains(&s.len()) && s.chars().all(ok_char) {
            Ok(Name(s.to_ascii_lowercase()))
        } else {
            Err(NsError::InvalidName)
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A Jami account address: the 20-byte short id (SHA-1 of the account key's DER SPKI).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Addr(pub [u8; 20]);

impl Addr {
    /// Accepts 40 hex digits of either case, optionally after `ring:` and/or `0x`
    /// (the reference server's formatting rule).
    pub fn parse(s: &str) -> Result<Addr, NsError> {
        let s = s.strip_prefix("ring:").unwrap_or(s);
        let s = s
            .strip_prefix("0x")
            .or_else(|| s.strip_prefix("0X"))
            .unwrap_or(s);
        let mut out = [0u8; 20];
        hex::decode_to_slice(s, &mut out).map_err(|_| NsError::InvalidAddress)?;
        Ok(Addr(out))
    }
    /// 40 lowercase hex digits, no prefix (what jamid sends and compares with).
    pub fn hex(&self) -> String {
        crypto::hex(&self.0)
    }
    /// `0x` + 40 lowercase hex digits, as the server answers `addr`.
    pub fn wire(&self) -> String {
        format!("0x{}", self.hex())
    }
}

/// One registration as stored and served back. `publickey` and `signature` are kept
/// exactly as the client sent them (base64 text), because jamid re-verifies them on
/// every lookup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub name: String,
    /// 40 lowercase hex digits, no prefix.
    pub addr: String,
    pub owner: String,
    pub publickey: String,
    pub signature: String,
}

/// Every way a request can fail, with the status code §5 gives it and the client's reading.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NsError {
    #[error("invalid name")]
    InvalidName,
    #[error("invalid address")]
    InvalidAddress,
    #[error("invalid request body")]
    InvalidBody,
    #[error("missing field {0}")]
    Missing(&'static str),
    #[error("invalid public key")]
    InvalidPublicKey,
    #[error("public key does not match address")]
    KeyMismatch,
    #[error("signature verification failed")]
    BadSignature,
    #[error("address already has a name")]
    AddressTaken,
    #[error("name already taken")]
    NameTaken,
    #[error("name not registered")]
    NameNotFound,
    #[error("address not registered")]
    AddressNotFound,
    #[error("storage error: {0}")]
    Storage(String),
    /// Our own signing/encoding failed while building a registration.
    #[error("crypto error: {0}")]
    Crypto(String),
}

impl NsError {
    /// HTTP status (§5): jamid reads 400 as incomplete, 401 as bad signature,
    /// 403/409 as already taken, other 4xx on lookups as not found.
    pub fn status(&self) -> u16 {
        match self {
            NsError::InvalidName
            | NsError::InvalidAddress
            | NsError::InvalidBody
            | NsError::Missing(_)
            | NsError::InvalidPublicKey => 400,
            NsError::KeyMismatch | NsError::BadSignature => 401,
            NsError::AddressTaken => 403,
            NsError::NameTaken => 409,
            NsError::NameNotFound | NsError::AddressNotFound => 404,
            NsError::Storage(_) | NsError::Crypto(_) => 500,
        }
    }
}

/// The registration body jamid POSTs to `/name/<name>`.
#[derive(Debug, Default, Deserialize)]
struct RawRegistration {
    addr: Option<String>,
    owner: Option<String>,
    signature: Option<String>,
    publickey: Option<String>,
}

/// Parses and verifies a registration body for `name`: the public key (base64 of a
/// PEM or DER key) must hash to `addr`, and `signature` (base64) must be its RSA
/// PKCS#1 v1.5 / SHA-512 signature over the lower-cased name bytes. Never panics.
pub fn verify_registration(name: &Name, body: &[u8]) -> Result<Record, NsError> {
    let raw: RawRegistration = serde_json::from_slice(body).map_err(|_| NsError::InvalidBody)?;
    let addr = Addr::parse(raw.addr.as_deref().ok_or(NsError::Missing("addr"))?)?;
    let sig_b64 = raw.signature.ok_or(NsError::Missing("signature"))?;
    let pk_b64 = raw.publickey.ok_or(NsError::Missing("publickey"))?;
    let pk_bytes = B64
        .decode(pk_b64.trim())
        .map_err(|_| NsError::InvalidPublicKey)?;
    let key = PublicKey::from_pem_or_der(&pk_bytes).map_err(|_| NsError::InvalidPublicKey)?;
    if key.short_id() != addr.0 {
        return Err(NsError::KeyMismatch);
    }
    let sig = B64
        .decode(sig_b64.trim())
        .map_err(|_| NsError::BadSignature)?;
    if !key.verify(name.as_str().as_bytes(), &sig) {
        return Err(NsError::BadSignature);
    }
    Ok(Record {
        name: name.as_str().to_string(),
        addr: addr.hex(),
        owner: raw.owner.unwrap_or_default(),
        publickey: pk_b64,
        signature: sig_b64,
    })
}

/// Builds the body jamid sends to register `name` for `key` (also what our node's
/// client sends): the signature over the lower-cased name, the key as base64 PEM.
pub fn registration_body(
    key: &crypto::PrivateKey,
    name: &Name,
    owner: &str,
) -> Result<String, NsError> {
    let sig = key
        .sign(name.as_str().as_bytes())
        .map_err(|e| NsError::Crypto(e.to_string()))?;
    let pem = key
        .public_key()
        .to_pem()
        .map_err(|e| NsError::Crypto(e.to_string()))?;
    Ok(serde_json::json!({
        "addr": crypto::hex(&key.public_key().short_id()),
        "owner": owner,
        "signature": B64.encode(sig),
        "publickey": B64.encode(pem),
    })
    .to_string())
}

/// Outcome of [`Store::insert_if_free`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Insert {
    /// The record is now stored.
    Inserted,
    /// The same name was already registered to the same address (idempotent success).
    AlreadyOwned,
}

/// Persistent name records. `insert_if_free` is the one write and must be atomic:
/// of any number of concurrent registrations of one name exactly one wins.
pub trait Store: Send + Sync {
    fn by_name(&self, name: &Name) -> Result<Option<Record>, NsError>;
    fn by_addr(&self, addr: &Addr) -> Result<Option<Record>, NsError>;
    /// Stores `rec` unless its name belongs to another address ([`NsError::NameTaken`])
    /// or its address already has another name ([`NsError::AddressTaken`]).
    fn insert_if_free(&self, rec: &Record) -> Result<Insert, NsError>;
}

/// The registry: the rules of §5 over a [`Store`].
pub struct Registry<S> {
    store: S,
}

impl<S: Store> Registry<S> {
    pub fn new(store: S) -> Self {
        Self { store }
    }
    pub fn store(&self) -> &S {
        &self.store
    }
    /// `GET /name/<name>`.
    pub fn lookup_name(&self, name: &str) -> Result<Record, NsError> {
        let name = Name::parse(name).map_err(|_| NsError::NameNotFound)?;
        self.store.by_name(&name)?.ok_or(NsError::NameNotFound)
    }
    /// `GET /addr/<addr>`.
    pub fn lookup_addr(&self, addr: &str) -> Result<Record, NsError> {
        let addr = Addr::parse(addr)?;
        self.store.by_addr(&addr)?.ok_or(NsError::AddressNotFound)
    }
    /// `POST /name/<name>`.
    pub fn register(&self, name: &str, body: &[u8]) -> Result<Insert, NsError> {
        let name = Name::parse(name)?;
        let rec = verify_registration(&name, body)?;
        self.store.insert_if_free(&rec)
    }
}
