//! The device receipt (`ringAccountReceipt` in a device's `config.yml`): the account's
//! signed word that a device belongs to it, with the announcement the device puts on
//! the DHT. jamid 13.7 makes it once, when the device is created
//! (`ArchiveAccountManager::makeReceipt`), and checks it on every start
//! (`AccountManager::useIdentity`).
//!
//! Text: jamid concatenates strings rather than using a JSON writer, so the layout is
//! fixed — `{"id":"<account>","dev":"<device short id>","eth":"<address>","announce":"<b64>"}`,
//! no spaces, no trailing newline, nothing escaped — where `announce` is standard padded
//! base64 of the packed announcement value (id 0). Signature: the account key's RSA
//! PKCS#1 v1.5 / SHA-512 over those exact bytes (`ringAccountReceiptSignature`).

use base64ct::{Base64, Encoding};

use super::announcement::{announcement_value, check_announcement, DeviceAnnouncement, Rejection};
use crate::crypto::PublicKey;
use crate::dht::infohash::InfoHash;
use crate::dht::value::Value;
use crate::identity::{AccountIdentity, Certificate};

/// Why a receipt could not be made, or is not believed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    #[error("eth address is not 40 lowercase hex digits")]
    BadEth,
    #[error("signing failed: {0}")]
    Sign(String),
    #[error("receipt signature does not verify with the account key")]
    BadSignature,
    #[error("receipt is not a JSON object")]
    NotJson,
    #[error("receipt field {0} is missing or malformed")]
    Field(&'static str),
    #[error("receipt names another account than the key that signed it")]
    WrongAccount,
    #[error("receipt announcement refused: {0}")]
    Announce(Rejection),
    #[error("receipt announcement names another device than the receipt")]
    DeviceMismatch,
}

/// A verified receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// Jami ID (`id`).
    pub account: InfoHash,
    /// Device short id (`dev`).
    pub dev: InfoHash,
    /// The account's eth address (`eth`); jamid reads it without checking it, so do we.
    pub eth: String,
    /// The signed announcement (id 0: the device gives it an id when it puts it).
    pub announce: Value,
    /// Its data.
    pub announcement: DeviceAnnouncement,
}

impl Receipt {
    /// What jamid's `makeReceipt` writes for `device`, and the account's signature of it.
    /// `eth` is the address of the archive's eth key, as jamid's `Address::hex()` prints it.
    pub fn make(
        account: &AccountIdentity,
        device: &Certificate,
        eth: &str,
    ) -> Result<(Vec<u8>, Vec<u8>), ReceiptError> {
        // jamid writes `eth` unescaped; anything but its own hex would break the JSON.
        let hex = |c: u8| c.is_ascii_digit() || (b'a'..=b'f').contains(&c);
        if eth.len() != 40 || !eth.bytes().all(hex) {
            return Err(ReceiptError::BadEth);
        }
        let sign_err = |e: &dyn std::fmt::Display| ReceiptError::Sign(e.to_string());
        let value = announcement_value(account, device, 0).map_err(|e| sign_err(&e))?;
        let json = text(
            &InfoHash(account.account_id()),
            &InfoHash(device.short_id()),
            eth,
            &value.pack(),
        );
        let signature = account
            .account_key()
            .sign(&json)
            .map_err(|e| sign_err(&e))?;
        Ok((json, signature))
    }

    /// jamid's checks (`useIdentity`, `parseAnnounce`): the signature by `account` over
    /// the exact bytes first, then `id` is that key's id, `announce` is an announcement
    /// signed by it, and it announces `dev`. Whether `dev` is the device at hand (jamid:
    /// its certificate's id) is the caller's check.
    pub fn verify(
        json: &[u8],
        signature: &[u8],
        account: &PublicKey,
    ) -> Result<Receipt, ReceiptError> {
        if !account.verify(json, signature) {
            return Err(ReceiptError::BadSignature);
        }
        let root: serde_json::Value =
            serde_json::from_slice(json).map_err(|_| ReceiptError::NotJson)?;
        let root = root.as_object().ok_or(ReceiptError::NotJson)?;
        let field = |name: &'static str| {
            root.get(name)
                .and_then(|v| v.as_str())
                .ok_or(ReceiptError::Field(name))
        };
        let hash = |name| field(name)?.parse().map_err(|_| ReceiptError::Field(name));
        let id: InfoHash = hash("id")?;
        let dev: InfoHash = hash("dev")?;
        let eth = field("eth")?.to_owned();
        if id.0 != account.short_id() {
            return Err(ReceiptError::WrongAccount);
        }
        let packed = Base64::decode_vec(field("announce")?)
            .map_err(|_| ReceiptError::Announce(Rejection::Malformed))?;
        let announce =
            Value::unpack(&packed).map_err(|_| ReceiptError::Announce(Rejection::Malformed))?;
        let claim = check_announcement(&id, &announce).map_err(ReceiptError::Announce)?;
        if claim.announcement.dev != dev {
            return Err(ReceiptError::DeviceMismatch);
        }
        Ok(Receipt {
            account: id,
            dev,
            eth,
            announce,
            announcement: claim.announcement,
        })
    }

    /// The text jamid would write for this receipt (its bytes again, for one jamid wrote).
    pub fn to_json(&self) -> Vec<u8> {
        text(&self.account, &self.dev, &self.eth, &self.announce.pack())
    }
}

/// jamid's concatenation; `InfoHash` prints lowercase hex like OpenDHT's `toString()`.
fn text(account: &InfoHash, dev: &InfoHash, eth: &str, packed: &[u8]) -> Vec<u8> {
    let announce = Base64::encode_string(packed);
    format!(r#"{{"id":"{account}","dev":"{dev}","eth":"{eth}","announce":"{announce}"}}"#)
        .into_bytes()
}
