//! Presence over [`SecureDht`] (PROTOCOLS §9.5), sans-IO: [`DeviceAnnouncer`] keeps our
//! device's announcement on the DHT; [`PresenceTracker`] listens at contacts' account
//! ids and says a contact is online while at least one of its devices has a live
//! announcement whose device chain checks out.
//!
//! jamid itself counts every signed type-0 value that unpacks as an announcement
//! (`JamiAccount::trackPresence`: adds minus expirations, no chain check); this tracker is
//! stricter on purpose: an announcement only counts once the device certificate found at
//! `dev` is issued by the account and not revoked.
//!
//! Both take the node's [`SecureDht`] as an argument and the caller hands them the
//! node's events and timeouts; they own no clock or socket.

use super::announcement::{
    announcement_value, check_announcement, check_device, device_chain, Claim, Rejection,
    ANNOUNCEMENT_EXPIRATION_MS,
};
use crate::dht::engine::{Event, OpId};
use crate::dht::infohash::InfoHash;
use crate::dht::secure::{PlainDht, SecureDht, SecureError};
use crate::dht::value::{Body, Value, ValueData};
use crate::identity::{AccountIdentity, Certificate, DeviceIdentity, DeviceInfo, RevocationList};
use std::collections::{BTreeMap, VecDeque};

/// What the tracker needs of a DHT: our own node's ([`SecureDht`]), or the DHT reached
/// through a proxy (a phone's jamid with `Account.proxyEnabled`), whose answers come
/// back as the same [`Event`]s.
pub trait PresenceDht {
    fn listen(&mut self, now: u64, key: InfoHash) -> OpId;
    fn get(&mut self, now: u64, key: InfoHash) -> OpId;
    fn cancel(&mut self, op: OpId);
    /// Values already at hand for `key` (a node's own storage; none through a proxy).
    fn local_values(&self, key: &InfoHash) -> Vec<Value>;
}

impl<D: PlainDht> PresenceDht for SecureDht<D> {
    fn listen(&mut self, now: u64, key: InfoHash) -> OpId {
        PlainDht::listen(&mut **self, now, key)
    }
    fn get(&mut self, now: u64, key: InfoHash) -> OpId {
        PlainDht::get(&mut **self, now, key)
    }
    fn cancel(&mut self, op: OpId) {
        PlainDht::cancel(&mut **self, op)
    }
    fn local_values(&self, key: &InfoHash) -> Vec<Value> {
        PlainDht::local_values(&**self, key)
    }
}

/// What the parts that write to devices' inboxes need of a DHT (trust requests,
/// messages over the DHT): presence's operations plus OpenDHT's `putEncrypted` (sign,
/// encrypt for `to`'s key, put).
pub trait InboxDht: PresenceDht {
    fn put_encrypted(&mut self, now: u64, key: InfoHash, to: InfoHash, id: u64, body: Body)
        -> OpId;
}

impl<D: PlainDht> InboxDht for SecureDht<D> {
    fn put_encrypted(
        &mut self,
        now: u64,
        key: InfoHash,
        to: InfoHash,
        id: u64,
        body: Body,
    ) -> OpId {
        SecureDht::put_encrypted(self, now, key, to, id, body)
    }
}

/// OpenDHT refreshes a permanent put this long before the value type's expiry (10 s).
pub const REANNOUNCE_MS: u64 = ANNOUNCEMENT_EXPIRATION_MS - 10_000;
/// How often a tracked account is fetched again: a listen reports each value once, so a
/// re-get is how a still-announced device proves it is still there.
pub const RECHECK_MS: u64 = ANNOUNCEMENT_EXPIRATION_MS / 2;
/// A device's certificate lookup that found nothing is tried again after 1, 2 and 4 s
/// before the device is refused: a device puts its certificate and its announcement at
/// once, and the announcement (put on fewer, closer nodes, or straight on us) can be seen
/// first. Refused on the first miss, the device stayed unknown until the next recheck,
/// minutes later (the real-NAT lab's rare "B not found": 1 attempt in about 180).
pub const CERT_RETRY_MS: u64 = 1_000;
pub const CERT_ATTEMPTS: u8 = 4;

/// Keeps our device announced at our account id (a "permanent" put: put again before
/// the 10-minute expiry).
pub struct DeviceAnnouncer {
    key: InfoHash,
    value: Value,
    next_at: Option<u64>,
    /// The current put (cancelled by the next).
    op: Option<OpId>,
    /// Puts issued so far.
    pub puts: u64,
}

impl DeviceAnnouncer {
    /// The announcement of `device` for `account`, as value `id` (jamid takes a random
    /// one when it first puts its receipt's announcement).
    pub fn new(
        account: &AccountIdentity,
        device: &DeviceIdentity,
        id: u64,
    ) -> Result<Self, SecureError> {
        Ok(DeviceAnnouncer {
            key: InfoHash(account.account_id()),
            value: announcement_value(account, device.certificate(), id)?,
            next_at: None,
            op: None,
            puts: 0,
        })
    }

    /// The signed value we put.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The account id it is put at.
    pub fn key(&self) -> InfoHash {
        self.key
    }

    /// The put under way (its events are the announcer's, not the user's).
    pub fn current_op(&self) -> Option<OpId> {
        self.op
    }

    /// Put now (permanently: the put follows the key's neighbourhood as the table
    /// grows, as jamid's does) and schedule the refresh, which replaces it.
    pub fn announce<D: PlainDht>(&mut self, dht: &mut SecureDht<D>, now: u64) -> OpId {
        self.puts += 1;
        self.next_at = Some(now + REANNOUNCE_MS);
        if let Some(old) = self.op.take() {
            PlainDht::cancel(&mut **dht, old);
        }
        let op = PlainDht::put_permanent(&mut **dht, now, self.key, self.value.clone());
        self.op = Some(op);
        op
    }

    pub fn poll_timeout(&self) -> Option<u64> {
        self.next_at
    }

    pub fn handle_timeout<D: PlainDht>(&mut self, dht: &mut SecureDht<D>, now: u64) {
        if self.next_at.is_some_and(|t| t <= now) {
            self.announce(dht, now);
        }
    }
}

/// What the tracker tells its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PresenceEvent {
    /// First live, verified device of an account.
    Online(InfoHash),
    /// Its last device expired or was revoked.
    Offline(InfoHash),
    /// A device of `account` passed every check.
    DeviceVerified {
        account: InfoHash,
        device: DeviceInfo,
    },
    /// Something at a tracked account id was refused.
    Rejected {
        account: InfoHash,
        reason: Rejection,
    },
}

/// What the tracker accepted and refused, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PresenceStats {
    pub verified: u64,
    /// Certificate lookups tried again after one found nothing.
    pub certificate_retries: u64,
    pub rejected: BTreeMap<Rejection, u64>,
}

impl PresenceStats {
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }
}

enum Op {
    /// The listen (or a periodic re-get) at an account id.
    Account(InfoHash),
    /// Certificate lookup at `dev` for an announcement.
    Certificate {
        account: InfoHash,
        claim: Box<Claim>,
        done: bool,
    },
}

struct Device {
    dev: InfoHash,
    /// Set once verified: what was checked (kept to re-check against new CRLs).
    verified: Option<Verified>,
    expires_at: u64,
    /// Certificate lookups made so far, and when to try again after one found nothing.
    lookups: u8,
    retry: Option<(u64, Box<Claim>)>,
}

struct Verified {
    info: DeviceInfo,
    claim: Claim,
    chain: Vec<Certificate>,
}

struct Contact {
    listen: OpId,
    /// By announcement value id.
    devices: BTreeMap<u64, Device>,
    crls: Vec<RevocationList>,
    online: bool,
    next_check: u64,
}

/// Online/offline state of the accounts we track.
#[derive(Default)]
pub struct PresenceTracker {
    contacts: BTreeMap<InfoHash, Contact>,
    ops: BTreeMap<OpId, Op>,
    events: VecDeque<PresenceEvent>,
    pub stats: PresenceStats,
}

impl PresenceTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Listen at `account`'s id (jamid's `subscribeBuddy`).
    pub fn track<D: PresenceDht + ?Sized>(&mut self, dht: &mut D, now: u64, account: InfoHash) {
        if self.contacts.contains_key(&account) {
            return;
        }
        let listen = dht.listen(now, account);
        self.ops.insert(listen, Op::Account(account));
        self.contacts.insert(
            account,
            Contact {
                listen,
                devices: BTreeMap::new(),
                crls: Vec::new(),
                online: false,
                next_check: now + RECHECK_MS,
            },
        );
    }

    pub fn untrack<D: PresenceDht + ?Sized>(&mut self, dht: &mut D, account: &InfoHash) {
        if let Some(c) = self.contacts.remove(account) {
            dht.cancel(c.listen);
        }
        self.ops.retain(|_, op| match op {
            Op::Account(a) | Op::Certificate { account: a, .. } => a != account,
        });
    }

    pub fn is_online(&self, account: &InfoHash) -> bool {
        self.contacts.get(account).is_some_and(|c| c.online)
    }

    /// The listen at `account`'s id, while tracked.
    pub fn listen_op(&self, account: &InfoHash) -> Option<OpId> {
        self.contacts.get(account).map(|c| c.listen)
    }

    /// The CRLs found at a tracked account's id (whoever signed them; the TLS verifier
    /// honours only the device issuer's).
    pub fn crls(&self, account: &InfoHash) -> &[RevocationList] {
        self.contacts.get(account).map_or(&[], |c| &c.crls[..])
    }

    /// Verified, live devices of `account`.
    pub fn devices(&self, account: &InfoHash) -> Vec<DeviceInfo> {
        self.contacts
            .get(account)
            .map(|c| {
                c.devices
                    .values()
                    .filter_map(|d| d.verified.as_ref().map(|v| v.info))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn poll_event(&mut self) -> Option<PresenceEvent> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<u64> {
        self.contacts
            .values()
            .flat_map(|c| {
                let expiries = c.devices.values().filter(|d| d.verified.is_some());
                let retries = c.devices.values().filter_map(|d| d.retry.as_ref());
                std::iter::once(c.next_check)
                    .chain(expiries.map(|d| d.expires_at))
                    .chain(retries.map(|r| r.0))
            })
            .min()
    }

    /// Expire devices not seen again in time; re-fetch accounts due for a check.
    pub fn handle_timeout<D: PresenceDht + ?Sized>(&mut self, dht: &mut D, now: u64) {
        let accounts: Vec<InfoHash> = self.contacts.keys().copied().collect();
        for account in accounts {
            let Some(c) = self.contacts.get_mut(&account) else {
                continue;
            };
            c.devices
                .retain(|_, d| d.verified.is_none() || d.expires_at > now);
            let retries: Vec<Claim> = c
                .devices
                .values_mut()
                .filter(|d| d.retry.as_ref().is_some_and(|r| r.0 <= now))
                .filter_map(|d| d.retry.take().map(|r| *r.1))
                .collect();
            let due = c.next_check <= now;
            if due {
                c.next_check = now + RECHECK_MS;
            }
            self.update(&account);
            for claim in retries {
                self.look_up_certificate(dht, now, claim);
            }
            if due {
                // What we store ourselves first: a get reports it only once the
                // search has started, possibly after it finished.
                let local = dht.local_values(&account);
                self.account_values(dht, now, account, &local);
                let op = dht.get(now, account);
                self.ops.insert(op, Op::Account(account));
            }
        }
    }

    /// Feed one of the node's events; returns whether it belonged to the tracker.
    pub fn handle_event<D: PresenceDht + ?Sized>(
        &mut self,
        dht: &mut D,
        now: u64,
        e: &Event,
    ) -> bool {
        let Some(op) = e.op() else {
            return false;
        };
        let Some(kind) = self.ops.get_mut(&op) else {
            return false;
        };
        match (kind, e) {
            (Op::Account(account), Event::Values { values, .. }) => {
                let account = *account;
                self.account_values(dht, now, account, values);
            }
            (Op::Account(account), Event::Expired { ids, .. }) => {
                let account = *account;
                if let Some(c) = self.contacts.get_mut(&account) {
                    for id in ids {
                        c.devices.remove(id);
                    }
                }
                self.update(&account);
            }
            (Op::Account(account), Event::GetDone { .. } | Event::Failed { .. }) => {
                let listening = self.contacts.get(account).is_some_and(|c| c.listen == op);
                if !listening {
                    self.ops.remove(&op);
                }
            }
            (
                Op::Certificate {
                    account,
                    claim,
                    done,
                },
                Event::Values { values, .. },
            ) => {
                if *done {
                    return true;
                }
                let dev = claim.announcement.dev;
                let Some(chain) = values.iter().find_map(|v| device_chain(v, &dev)) else {
                    return true;
                };
                *done = true;
                let (account, claim) = (*account, claim.clone());
                self.check_chain(now, account, *claim, chain);
            }
            (
                Op::Certificate {
                    account,
                    claim,
                    done,
                },
                Event::GetDone { .. } | Event::Failed { .. },
            ) => {
                let (account, id, done) = (*account, claim.value_id, *done);
                let claim = claim.clone();
                self.ops.remove(&op);
                if !done {
                    self.missed_certificate(now, account, id, claim);
                }
            }
            _ => {}
        }
        true
    }

    fn account_values<D: PresenceDht + ?Sized>(
        &mut self,
        dht: &mut D,
        now: u64,
        account: InfoHash,
        values: &[Value],
    ) {
        for v in values {
            match &v.data {
                ValueData::Signed(_) => match check_announcement(&account, v) {
                    Ok(claim) => self.claimed(dht, now, claim),
                    Err(Rejection::WrongType) => {}
                    Err(r) => self.reject(account, r),
                },
                ValueData::Plain(b) if b.type_id == 0 => {
                    if let Ok(crl) = RevocationList::from_value_data(&b.data) {
                        self.add_crl(account, crl);
                    }
                }
                _ => {}
            }
        }
    }

    /// A valid-looking announcement: refresh a device we already verified, or look up
    /// its certificate.
    fn claimed<D: PresenceDht + ?Sized>(&mut self, dht: &mut D, now: u64, claim: Claim) {
        let account = claim.account;
        let Some(c) = self.contacts.get_mut(&account) else {
            return;
        };
        if let Some(d) = c.devices.get_mut(&claim.value_id) {
            if d.dev == claim.announcement.dev {
                if d.verified.is_some() {
                    d.expires_at = now + ANNOUNCEMENT_EXPIRATION_MS;
                }
                return;
            }
        }
        c.devices.insert(
            claim.value_id,
            Device {
                dev: claim.announcement.dev,
                verified: None,
                expires_at: now + ANNOUNCEMENT_EXPIRATION_MS,
                lookups: 0,
                retry: None,
            },
        );
        self.look_up_certificate(dht, now, claim);
    }

    /// The claimed device's certificate: stored here, or a get at its id.
    fn look_up_certificate<D: PresenceDht + ?Sized>(
        &mut self,
        dht: &mut D,
        now: u64,
        claim: Claim,
    ) {
        let account = claim.account;
        let dev = claim.announcement.dev;
        let local = dht.local_values(&dev);
        if let Some(chain) = local.iter().find_map(|v| device_chain(v, &dev)) {
            return self.check_chain(now, account, claim, chain);
        }
        if let Some(d) = self
            .contacts
            .get_mut(&account)
            .and_then(|c| c.devices.get_mut(&claim.value_id))
        {
            d.lookups = d.lookups.saturating_add(1);
        }
        let op = dht.get(now, dev);
        self.ops.insert(
            op,
            Op::Certificate {
                account,
                claim: Box::new(claim),
                done: false,
            },
        );
    }

    fn check_chain(&mut self, now: u64, account: InfoHash, claim: Claim, chain: Vec<Certificate>) {
        let crls = self
            .contacts
            .get(&account)
            .map(|c| c.crls.clone())
            .unwrap_or_default();
        match check_device(&claim, &chain, &crls) {
            Ok(info) => self.verified(now, account, claim, chain, info),
            Err(r) => self.reject_device(account, claim.value_id, r),
        }
    }

    fn verified(
        &mut self,
        now: u64,
        account: InfoHash,
        claim: Claim,
        chain: Vec<Certificate>,
        info: DeviceInfo,
    ) {
        let Some(c) = self.contacts.get_mut(&account) else {
            return;
        };
        if !c.devices.contains_key(&claim.value_id) {
            // Expired while its certificate was being looked up.
            return;
        }
        c.devices.insert(
            claim.value_id,
            Device {
                dev: claim.announcement.dev,
                verified: Some(Verified { info, claim, chain }),
                expires_at: now + ANNOUNCEMENT_EXPIRATION_MS,
                lookups: 0,
                retry: None,
            },
        );
        self.stats.verified += 1;
        self.events.push_back(PresenceEvent::DeviceVerified {
            account,
            device: info,
        });
        self.update(&account);
    }

    /// A CRL found at the account id. Kept whoever signed it: `check_device` only
    /// honours CRLs signed by the device's issuer. Verified devices are checked again.
    fn add_crl(&mut self, account: InfoHash, crl: RevocationList) {
        let Some(c) = self.contacts.get_mut(&account) else {
            return;
        };
        if c.crls.iter().any(|k| k.der() == crl.der()) {
            return;
        }
        c.crls.push(crl);
        let crls = c.crls.clone();
        let revoked: Vec<(u64, Rejection)> = c
            .devices
            .iter()
            .filter_map(|(id, d)| {
                let v = d.verified.as_ref()?;
                check_device(&v.claim, &v.chain, &crls)
                    .err()
                    .map(|r| (*id, r))
            })
            .collect();
        for (id, r) in revoked {
            self.reject_device(account, id, r);
        }
    }

    /// A lookup found no certificate: try again later, or refuse the device.
    fn missed_certificate(&mut self, now: u64, account: InfoHash, id: u64, claim: Box<Claim>) {
        let Some(d) = self
            .contacts
            .get_mut(&account)
            .and_then(|c| c.devices.get_mut(&id))
        else {
            return;
        };
        if d.lookups >= CERT_ATTEMPTS {
            return self.reject_device(account, id, Rejection::NoCertificate);
        }
        let wait = CERT_RETRY_MS << (d.lookups.saturating_sub(1)).min(8);
        d.retry = Some((now + wait, claim));
        self.stats.certificate_retries += 1;
    }

    fn reject_device(&mut self, account: InfoHash, value_id: u64, r: Rejection) {
        if let Some(c) = self.contacts.get_mut(&account) {
            c.devices.remove(&value_id);
        }
        self.reject(account, r);
        self.update(&account);
    }

    fn reject(&mut self, account: InfoHash, reason: Rejection) {
        *self.stats.rejected.entry(reason).or_default() += 1;
        self.events
            .push_back(PresenceEvent::Rejected { account, reason });
    }

    /// Emit Online/Offline on a change.
    fn update(&mut self, account: &InfoHash) {
        let Some(c) = self.contacts.get_mut(account) else {
            return;
        };
        let online = c.devices.values().any(|d| d.verified.is_some());
        if online != c.online {
            c.online = online;
            self.events.push_back(if online {
                PresenceEvent::Online(*account)
            } else {
                PresenceEvent::Offline(*account)
            });
        }
    }
}
