//! Identities as OpenDHT and Jami write them (PROTOCOLS §2.6, §4): X.509 certificates
//! and PEM chains, the node identity of `dhtnode -i`, the Jami CA → account → device
//! chain, revocation lists and the account archive.
//!
//! Sans-IO except [`store`]: generation takes the current time (`now`, unix seconds)
//! and the caller's RNG, so the simulator stays deterministic.

pub mod account;
pub mod archive;
pub mod cert;
pub mod chain;
pub mod crl;
pub mod ec;
pub mod eth;
pub mod link;
pub mod name;
pub mod store;

pub use account::{verify_device_chain, AccountError, AccountIdentity, DeviceIdentity, DeviceInfo};
pub use archive::{AccountArchive, ArchiveError};
pub use cert::{
    CertError, CertSigner, Certificate, KeyAlgorithm, SignatureAlgorithm, VALIDITY_SECS,
};
pub use chain::{decode_chain, encode_pem_chain, verify_chain};
pub use crl::{RevocationList, Revoked};
pub use store::{IdentityError, NodeIdentity};
