//! The device announcement (PROTOCOLS §4.2) as jamid 13.7 writes it: a value of type 0
//! (OpenDHT `USER_DATA`, 10-minute expiry) signed by the **account** key, put at the raw
//! 20 bytes of the Jami ID, whose `data` is the msgpack map `{"dev": bin(20) device
//! short id, "pk": bin(DER SPKI of the device key)}` (`jami_contact.h`,
//! `MSGPACK_DEFINE_MAP(dev, pk)`; built in `ArchiveAccountManager::makeReceipt`).
//!
//! Checking one is two steps: the value alone ([`check_announcement`]), then the device
//! certificate chain found at `dev` (type 8) and the account's CRLs ([`check_device`]).

use crate::crypto::short_id;
use crate::dht::infohash::InfoHash;
use crate::dht::msgpack::{self, Kind, Writer};
use crate::dht::secure::{self, SecureError, CERTIFICATE_TYPE};
use crate::dht::value::{Body, Value, ValueData};
use crate::identity::{chain, verify_device_chain, AccountIdentity, Certificate, DeviceIdentity};
use crate::identity::{DeviceInfo, RevocationList};

/// `DeviceAnnouncement::TYPE` = `ValueType::USER_DATA`.
pub const ANNOUNCEMENT_TYPE: u16 = 0;
/// `USER_DATA` storage expiration: an announcement not refreshed is gone after this.
pub const ANNOUNCEMENT_EXPIRATION_MS: u64 = 10 * 60_000;

/// Why an announcement (or the device behind it) is not believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, thiserror::Error)]
pub enum Rejection {
    #[error("not a type-0 value")]
    WrongType,
    #[error("announcement is not signed")]
    NotSigned,
    #[error("signature does not verify")]
    BadSignature,
    #[error("data is not a DeviceAnnouncement map")]
    Malformed,
    #[error("signed by a key other than the account's")]
    WrongAccount,
    #[error("device key does not match the announced device id")]
    KeyMismatch,
    #[error("no certificate found for the announced device")]
    NoCertificate,
    #[error("device certificate chain does not verify")]
    BadChain,
    #[error("device certificate is not issued by the announcing account")]
    NotIssuedByAccount,
    #[error("device certificate is revoked by the account")]
    Revoked,
}

/// The `data` of an announcement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceAnnouncement {
    /// Device short id (SHA-1 of its SPKI): where its certificate is announced.
    pub dev: InfoHash,
    /// Device public key (DER SPKI); jamid always writes it, a null one decodes to `None`.
    pub pk: Option<Vec<u8>>,
}

impl DeviceAnnouncement {
    /// What `makeReceipt` announces for `device`.
    pub fn for_device(device: &DeviceIdentity) -> Self {
        Self::for_certificate(device.certificate())
    }

    /// The same from the device certificate alone.
    pub fn for_certificate(device: &Certificate) -> Self {
        DeviceAnnouncement {
            dev: InfoHash(device.short_id()),
            pk: Some(device.spki_der().to_vec()),
        }
    }

    /// msgpack-c's bytes for `MSGPACK_DEFINE_MAP(dev, pk)` (null `pk` packs as nil).
    pub fn pack(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.map_len(2).str("dev").bin(&self.dev.0).str("pk");
        match &self.pk {
            Some(pk) => w.bin(pk),
            None => w.nil(),
        };
        w.into_bytes()
    }

    /// msgpack-c's map conversion: keys in any order, first occurrence wins, unknown
    /// keys ignored; `dev` must be a 20-byte bin (InfoHash's own rule), `pk` a bin or nil.
    pub fn unpack(data: &[u8]) -> Result<Self, Rejection> {
        let node = msgpack::parse(data).map_err(|_| Rejection::Malformed)?;
        let map = node.as_map().ok_or(Rejection::Malformed)?;
        let mut dev = None;
        let mut pk = None;
        for (k, v) in map {
            let key = k
                .as_str_bytes()
                .or_else(|| k.as_bin())
                .ok_or(Rejection::Malformed)?;
            match key {
                b"dev" if dev.is_none() => {
                    let b = v.as_bin().filter(|b| b.len() == 20);
                    dev = Some(InfoHash::from_slice(b.ok_or(Rejection::Malformed)?));
                }
                b"pk" if pk.is_none() => {
                    pk = Some(match v.kind {
                        Kind::Nil => None,
                        _ => Some(v.as_bin().ok_or(Rejection::Malformed)?.to_vec()),
                    })
                }
                _ => {}
            }
        }
        Ok(DeviceAnnouncement {
            dev: dev.flatten().unwrap_or_default(),
            pk: pk.flatten(),
        })
    }
}

/// The signed value our device puts at its account id: seq 0, signed by the account
/// key. jamid packs it into the receipt with id 0 and OpenDHT gives it a random id when
/// it is first put (so each jamid run announces under a new id).
pub fn announcement_value(
    account: &AccountIdentity,
    device: &Certificate,
    id: u64,
) -> Result<Value, SecureError> {
    let body = Body {
        type_id: ANNOUNCEMENT_TYPE,
        data: DeviceAnnouncement::for_certificate(device).pack(),
        utype: String::new(),
    };
    secure::sign(account.account_key(), id, 0, body, None)
}

/// An announcement that passed [`check_announcement`]: who claims which device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The Jami ID it was found at (= its signer's short id).
    pub account: InfoHash,
    pub value_id: u64,
    /// The signer's key (DER SPKI): the account key.
    pub owner: Vec<u8>,
    pub announcement: DeviceAnnouncement,
}

/// The value alone: signed, signature valid, a DeviceAnnouncement, signed by the key
/// whose short id is `account` (jamid's `dev.from == to`), and `pk` (if any) is the key
/// of `dev`.
pub fn check_announcement(account: &InfoHash, v: &Value) -> Result<Claim, Rejection> {
    let ValueData::Signed(s) = &v.data else {
        return Err(Rejection::NotSigned);
    };
    if s.body.type_id != ANNOUNCEMENT_TYPE {
        return Err(Rejection::WrongType);
    }
    if !secure::signature_ok(v) {
        return Err(Rejection::BadSignature);
    }
    let announcement = DeviceAnnouncement::unpack(&s.body.data)?;
    if short_id(&s.owner) != account.0 {
        return Err(Rejection::WrongAccount);
    }
    if let Some(pk) = &announcement.pk {
        if short_id(pk) != announcement.dev.0 {
            return Err(Rejection::KeyMismatch);
        }
    }
    Ok(Claim {
        account: *account,
        value_id: v.id,
        owner: s.owner.clone(),
        announcement,
    })
}

/// The device chain in a type-8 value found at `dev`, if it is that device's.
pub fn device_chain(v: &Value, dev: &InfoHash) -> Option<Vec<Certificate>> {
    let b = v.body().filter(|b| b.type_id == CERTIFICATE_TYPE)?;
    let certs = chain::from_value_data(&b.data).ok()?;
    (certs.first()?.short_id() == dev.0).then_some(certs)
}

/// The device behind a claim: its chain verifies, its issuer is the announcing account
/// key, its key is the announced one, and no CRL signed by the account revokes it
/// (CRLs signed by anyone else are ignored).
pub fn check_device(
    claim: &Claim,
    chain: &[Certificate],
    crls: &[RevocationList],
) -> Result<DeviceInfo, Rejection> {
    let device = chain.first().ok_or(Rejection::NoCertificate)?;
    let a = &claim.announcement;
    if device.short_id() != a.dev.0 || a.pk.as_deref().is_some_and(|pk| pk != device.spki_der()) {
        return Err(Rejection::KeyMismatch);
    }
    let info = verify_device_chain(chain).map_err(|_| Rejection::BadChain)?;
    let account = &chain[1];
    if info.account_id != claim.account.0 || account.spki_der() != claim.owner.as_slice() {
        return Err(Rejection::NotIssuedByAccount);
    }
    let revoked = crls
        .iter()
        .any(|crl| crl.verify_signed_by(account).is_ok() && crl.is_revoked(device));
    if revoked {
        return Err(Rejection::Revoked);
    }
    Ok(info)
}
