//! Trust requests over the DHT (PROTOCOLS §4.6), sans-IO: [`ContactManager`] sends
//! requests and confirmations to every announced device of a peer account, listens on
//! our device's inbox, checks each request's sender device chain and applies jamid's
//! contact rules ([`ContactList`]).
//!
//! Like the presence tracker it takes the node's DHT as an argument ([`InboxDht`]) and
//! is handed the node's events; it owns no clock or socket, and its value ids come from
//! a seeded RNG.

use super::contact::{ContactEvent, ContactList, RequestOutcome};
use crate::crypto::short_id;
use crate::dht::engine::{Event, OpId};
use crate::dht::infohash::InfoHash;
use crate::dht::payload::{TrustRequest, TRUST_REQUEST_TYPE};
use crate::dht::secure;
use crate::dht::value::{Body, Value, ValueData};
use crate::identity::{verify_device_chain, AccountError, Certificate, RevocationList};
use crate::presence::{check_announcement, check_device, device_chain, Claim, InboxDht};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// `DHT_TYPE_NS`: the only service jamid's inbox listener answers.
pub const SERVICE: &str = "cx.ring";
/// Largest vCard sent with a request; a larger one is dropped (sent empty), as jamid
/// does when it re-sends a request: the encrypted value would pass OpenDHT's 64 KiB
/// value limit and no node would store it.
pub const MAX_PAYLOAD: usize = 64_000;
/// Sender certificate lookups in flight at once: each costs a DHT get, and a flood of
/// requests from fresh keys must not turn into unbounded searches.
pub const MAX_PENDING_CHECKS: usize = 64;
/// Outgoing sends (device lookups) in flight at once.
pub const MAX_SENDS: usize = 64;
/// How many (sender device, value id) pairs are remembered to drop copies and replays:
/// a value reaches a listener from several nodes and again on each refresh.
pub const MAX_SEEN: usize = 4096;

/// `SHA-1("inbox:" + device short id hex)`: where a device receives trust requests.
pub fn inbox_key(device: &InfoHash) -> InfoHash {
    InfoHash(crate::crypto::inbox_key(&device.0))
}

/// Why an inbox value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, thiserror::Error)]
pub enum Refusal {
    #[error("value could not be decrypted with our key")]
    Undecryptable,
    #[error("value is not signed, or not addressed to our device")]
    NotSigned,
    #[error("signature does not verify")]
    BadSignature,
    #[error("data is not a TrustRequest")]
    Malformed,
    #[error("already received (copy or replay)")]
    Replay,
    #[error("too many sender checks in flight")]
    Busy,
    #[error("no certificate found for the sender device")]
    NoCertificate,
    #[error("sender certificate key is not the signing key")]
    KeyMismatch,
    #[error("sender device certificate is self-signed")]
    SelfSigned,
    #[error("sender device chain does not verify")]
    BadChain,
    #[error("sender account is banned")]
    Banned,
    #[error("incoming request list is full")]
    Full,
}

/// What the manager tells its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustEvent {
    Contact(ContactEvent),
    /// A request (or confirmation) to `to` was put at `devices` verified devices.
    Sent {
        to: InfoHash,
        confirm: bool,
        devices: usize,
    },
    /// An inbox value was refused.
    Refused {
        reason: Refusal,
    },
}

/// Counters of the inbox and the sends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustStats {
    /// Requests whose sender chain checked out.
    pub verified: u64,
    /// Well-formed requests for another service (ignored, as jamid does).
    pub other_service: u64,
    /// Signed values of other types at the inbox (messages, device sync).
    pub other_types: u64,
    pub refused: BTreeMap<Refusal, u64>,
    /// Encrypted puts made (one per device per send).
    pub puts: u64,
    pub puts_failed: u64,
}

impl TrustStats {
    pub fn refused_total(&self) -> u64 {
        self.refused.values().sum()
    }
}

/// A request being checked: its sender's certificate is being looked up.
#[derive(Debug, Clone)]
struct Pending {
    dev: InfoHash,
    owner: Vec<u8>,
    request: TrustRequest,
}

struct Send {
    to: InfoHash,
    request: TrustRequest,
    devices: BTreeSet<InfoHash>,
    crls: Vec<RevocationList>,
    /// Gets not finished yet (the account get, then each certificate lookup).
    open: usize,
    puts: usize,
}

enum Op {
    Inbox,
    /// forEachDevice's get at the account id.
    Devices(u64),
    /// Certificate of a device announced by a send's target.
    DeviceCert {
        send: u64,
        claim: Box<Claim>,
        done: bool,
    },
    /// Certificate of an incoming request's sender.
    SenderCert {
        pending: Box<Pending>,
        done: bool,
    },
    Put,
}

/// Contacts and trust requests of one device.
pub struct ContactManager {
    device: InfoHash,
    list: ContactList,
    inbox: Option<OpId>,
    ops: BTreeMap<OpId, Op>,
    sends: BTreeMap<u64, Send>,
    next_send: u64,
    seen: BTreeSet<(InfoHash, u64)>,
    seen_order: VecDeque<(InfoHash, u64)>,
    pending: usize,
    /// The vCard of each request we sent and that is not confirmed yet, for re-sending
    /// when the peer comes online (jamid caches it in `cache/<acc>/requests/<uri>`).
    /// One per contact the user asked for: grows only with user commands.
    sent_payloads: BTreeMap<InfoHash, Vec<u8>>,
    events: VecDeque<TrustEvent>,
    rng: ChaCha20Rng,
    pub stats: TrustStats,
}

fn secs(now_ms: u64) -> i64 {
    i64::try_from(now_ms / 1000).unwrap_or(i64::MAX)
}

impl ContactManager {
    /// For our device `device` (short id), with the contacts loaded from disk.
    pub fn new(device: InfoHash, list: ContactList, seed: u64) -> Self {
        ContactManager {
            device,
            list,
            inbox: None,
            ops: BTreeMap::new(),
            sends: BTreeMap::new(),
            next_send: 1,
            seen: BTreeSet::new(),
            seen_order: VecDeque::new(),
            pending: 0,
            sent_payloads: BTreeMap::new(),
            events: VecDeque::new(),
            rng: ChaCha20Rng::seed_from_u64(seed ^ 0x7275_7374),
            stats: TrustStats::default(),
        }
    }

    pub fn contacts(&self) -> &ContactList {
        &self.list
    }

    /// For saving: the caller writes the files when `dirty` is set, then clears it.
    pub fn contacts_mut(&mut self) -> &mut ContactList {
        &mut self.list
    }

    /// Our inbox key.
    pub fn inbox(&self) -> InfoHash {
        inbox_key(&self.device)
    }

    /// Listen on our inbox (jamid does this once the account is on the DHT).
    pub fn start<D: InboxDht + ?Sized>(&mut self, dht: &mut D, now: u64) {
        if self.inbox.is_none() {
            let op = dht.listen(now, self.inbox());
            self.ops.insert(op, Op::Inbox);
            self.inbox = Some(op);
        }
    }

    /// `sendTrustRequest`: add `to` as an unconfirmed contact with `conversation_id`,
    /// then put the request at every verified device of `to`. A payload over
    /// [`MAX_PAYLOAD`] is dropped. Returns false when too many sends are in flight.
    pub fn send_request<D: InboxDht + ?Sized>(
        &mut self,
        dht: &mut D,
        now: u64,
        to: InfoHash,
        conversation_id: &str,
        mut payload: Vec<u8>,
    ) -> bool {
        if payload.len() > MAX_PAYLOAD {
            payload.clear();
        }
        self.list.add_contact(secs(now), to, false, conversation_id);
        self.flush();
        self.sent_payloads.insert(to, payload.clone());
        let request = TrustRequest {
            service: SERVICE.to_string(),
            conversation_id: conversation_id.to_string(),
            payload,
            confirm: false,
        };
        self.start_send(dht, now, to, request)
    }

    /// `acceptTrustRequest`: the requester becomes a confirmed contact and all its
    /// devices get a confirmation carrying the request's conversation. False without a
    /// request from `from`.
    pub fn accept<D: InboxDht + ?Sized>(&mut self, dht: &mut D, now: u64, from: InfoHash) -> bool {
        let Some(conversation_id) = self.list.accept_request(secs(now), &from) else {
            return false;
        };
        self.flush();
        self.confirm(dht, now, from, conversation_id);
        true
    }

    /// `discardTrustRequest`: forget the request; nothing is sent.
    pub fn decline(&mut self, from: &InfoHash) -> bool {
        self.list.discard_request(from)
    }

    /// jamid's `onTrackedBuddyOnline`: a contact we asked and that has not confirmed
    /// yet gets the request again (same conversation, same vCard) when its presence
    /// comes up — a request sent while it had no announced device reached no one.
    /// Returns whether a request was sent.
    pub fn contact_online<D: InboxDht + ?Sized>(
        &mut self,
        dht: &mut D,
        now: u64,
        account: InfoHash,
    ) -> bool {
        let Some(c) = self.list.contact(&account) else {
            return false;
        };
        if !c.is_active() || c.confirmed || c.conversation_id.is_empty() {
            return false;
        }
        let conversation_id = c.conversation_id.clone();
        let payload = self
            .sent_payloads
            .get(&account)
            .cloned()
            .unwrap_or_default();
        self.send_request(dht, now, account, &conversation_id, payload)
    }

    /// `removeContact(uri, ban)`: its pending request goes too; a banned account's
    /// requests are dropped from then on. Nothing is sent.
    pub fn remove(&mut self, now: u64, account: InfoHash, ban: bool) -> bool {
        let changed = self.list.remove_contact(secs(now), account, ban);
        self.flush();
        changed
    }

    pub fn poll_event(&mut self) -> Option<TrustEvent> {
        self.events.pop_front()
    }

    fn flush(&mut self) {
        for e in self.list.drain_events() {
            if let ContactEvent::Confirmed { from, .. } = &e {
                self.sent_payloads.remove(from);
            }
            self.events.push_back(TrustEvent::Contact(e));
        }
    }

    fn refuse(&mut self, reason: Refusal) {
        *self.stats.refused.entry(reason).or_default() += 1;
        self.events.push_back(TrustEvent::Refused { reason });
    }

    fn confirm<D: InboxDht + ?Sized>(
        &mut self,
        dht: &mut D,
        now: u64,
        to: InfoHash,
        conversation_id: String,
    ) {
        let request = TrustRequest {
            service: SERVICE.to_string(),
            conversation_id,
            payload: Vec::new(),
            confirm: true,
        };
        self.start_send(dht, now, to, request);
    }

    /// forEachDevice: get the account's announcements, then each device certificate.
    fn start_send<D: InboxDht + ?Sized>(
        &mut self,
        dht: &mut D,
        now: u64,
        to: InfoHash,
        request: TrustRequest,
    ) -> bool {
        if self.sends.len() >= MAX_SENDS {
            return false;
        }
        let id = self.next_send;
        self.next_send += 1;
        self.sends.insert(
            id,
            Send {
                to,
                request,
                devices: BTreeSet::new(),
                crls: Vec::new(),
                open: 1,
                puts: 0,
            },
        );
        let local = dht.local_values(&to);
        self.send_values(dht, now, id, &local);
        let op = dht.get(now, to);
        self.ops.insert(op, Op::Devices(id));
        true
    }

    /// Values found at a send's account id: CRLs and device announcements.
    fn send_values<D: InboxDht + ?Sized>(
        &mut self,
        dht: &mut D,
        now: u64,
        id: u64,
        values: &[Value],
    ) {
        for v in values {
            let Some(s) = self.sends.get_mut(&id) else {
                return;
            };
            match &v.data {
                ValueData::Plain(b) if b.type_id == 0 => {
                    if let Ok(crl) = RevocationList::from_value_data(&b.data) {
                        s.crls.push(crl);
                    }
                }
                ValueData::Signed(_) => {
                    let Ok(claim) = check_announcement(&s.to, v) else {
                        continue;
                    };
                    let dev = claim.announcement.dev;
                    if !s.devices.insert(dev) {
                        continue;
                    }
                    s.open += 1;
                    let local = dht.local_values(&dev);
                    if let Some(chain) = local.iter().find_map(|v| device_chain(v, &dev)) {
                        self.device_found(dht, now, id, &claim, &chain);
                        self.send_step_done(id);
                    } else {
                        let op = dht.get(now, dev);
                        let claim = Box::new(claim);
                        self.ops.insert(
                            op,
                            Op::DeviceCert {
                                send: id,
                                claim,
                                done: false,
                            },
                        );
                    }
                }
                _ => {}
            }
        }
    }

    /// A device of a send's target: put the request in its inbox if it checks out.
    fn device_found<D: InboxDht + ?Sized>(
        &mut self,
        dht: &mut D,
        now: u64,
        id: u64,
        claim: &Claim,
        chain: &[Certificate],
    ) {
        let Some(s) = self.sends.get_mut(&id) else {
            return;
        };
        if check_device(claim, chain, &s.crls).is_err() {
            return;
        }
        let dev = claim.announcement.dev;
        let body = Body {
            type_id: TRUST_REQUEST_TYPE,
            data: s.request.pack(),
            utype: String::new(),
        };
        s.puts += 1;
        let value_id = self.rng.random_range(1..u64::MAX);
        let op = dht.put_encrypted(now, inbox_key(&dev), dev, value_id, body);
        self.ops.insert(op, Op::Put);
        self.stats.puts += 1;
    }

    fn send_step_done(&mut self, id: u64) {
        let Some(s) = self.sends.get_mut(&id) else {
            return;
        };
        s.open -= 1;
        if s.open == 0 {
            let s = self.sends.remove(&id).expect("present");
            self.events.push_back(TrustEvent::Sent {
                to: s.to,
                confirm: s.request.confirm,
                devices: s.puts,
            });
        }
    }

    /// Feed one of the node's events; returns whether it belonged to the manager.
    pub fn handle_event<D: InboxDht + ?Sized>(&mut self, dht: &mut D, now: u64, e: &Event) -> bool {
        let Some(op) = e.op() else {
            return false;
        };
        let Some(kind) = self.ops.get_mut(&op) else {
            return false;
        };
        let finished = matches!(e, Event::GetDone { .. } | Event::Failed { .. });
        match (kind, e) {
            (Op::Inbox, Event::Values { values, .. }) => {
                for v in values {
                    self.inbox_value(dht, now, v);
                }
            }
            (Op::Devices(id), Event::Values { values, .. }) => {
                let id = *id;
                self.send_values(dht, now, id, values);
            }
            (Op::Devices(id), _) if finished => {
                let id = *id;
                self.ops.remove(&op);
                self.send_step_done(id);
            }
            (Op::DeviceCert { send, claim, done }, Event::Values { values, .. }) => {
                let dev = claim.announcement.dev;
                if *done {
                    return true;
                }
                if let Some(chain) = values.iter().find_map(|v| device_chain(v, &dev)) {
                    *done = true;
                    let (id, claim) = (*send, claim.clone());
                    self.device_found(dht, now, id, &claim, &chain);
                }
            }
            (Op::DeviceCert { send, .. }, _) if finished => {
                let id = *send;
                self.ops.remove(&op);
                self.send_step_done(id);
            }
            (Op::SenderCert { pending, done }, Event::Values { values, .. }) => {
                if *done {
                    return true;
                }
                let dev = pending.dev;
                if let Some(chain) = values.iter().find_map(|v| device_chain(v, &dev)) {
                    *done = true;
                    let pending = pending.clone();
                    self.pending -= 1;
                    self.sender_found(dht, now, &pending, &chain);
                }
            }
            (Op::SenderCert { done, .. }, _) if finished => {
                let done = *done;
                self.ops.remove(&op);
                if !done {
                    self.pending -= 1;
                    self.refuse(Refusal::NoCertificate);
                }
            }
            (Op::Put, Event::PutDone { .. }) => {
                self.ops.remove(&op);
            }
            (Op::Put, Event::Failed { .. }) => {
                self.ops.remove(&op);
                self.stats.puts_failed += 1;
            }
            _ => {}
        }
        true
    }

    /// One value at our inbox (decrypted by the secure layer when it was for us).
    fn inbox_value<D: InboxDht + ?Sized>(&mut self, dht: &mut D, now: u64, v: &Value) {
        let s = match &v.data {
            ValueData::Encrypted(_) => return self.refuse(Refusal::Undecryptable),
            ValueData::Plain(_) => return self.refuse(Refusal::NotSigned),
            ValueData::Signed(s) => s,
        };
        if s.to != Some(self.device) {
            return self.refuse(Refusal::NotSigned);
        }
        if s.body.type_id != TRUST_REQUEST_TYPE {
            self.stats.other_types += 1;
            return;
        }
        if !secure::signature_ok(v) {
            return self.refuse(Refusal::BadSignature);
        }
        let Ok(request) = TrustRequest::unpack(&s.body.data) else {
            return self.refuse(Refusal::Malformed);
        };
        if request.service != SERVICE {
            self.stats.other_service += 1;
            return;
        }
        let dev = InfoHash(short_id(&s.owner));
        if !self.remember(dev, v.id) {
            return self.refuse(Refusal::Replay);
        }
        let pending = Pending {
            dev,
            owner: s.owner.clone(),
            request,
        };
        let local = dht.local_values(&dev);
        if let Some(chain) = local.iter().find_map(|v| device_chain(v, &dev)) {
            return self.sender_found(dht, now, &pending, &chain);
        }
        if self.pending >= MAX_PENDING_CHECKS {
            return self.refuse(Refusal::Busy);
        }
        self.pending += 1;
        let op = dht.get(now, dev);
        let pending = Box::new(pending);
        self.ops.insert(
            op,
            Op::SenderCert {
                pending,
                done: false,
            },
        );
    }

    /// Remember a (device, value id) pair; false when already seen.
    fn remember(&mut self, dev: InfoHash, id: u64) -> bool {
        if !self.seen.insert((dev, id)) {
            return false;
        }
        self.seen_order.push_back((dev, id));
        if self.seen_order.len() > MAX_SEEN {
            if let Some(old) = self.seen_order.pop_front() {
                self.seen.remove(&old);
            }
        }
        true
    }

    /// jamid's `foundPeerDevice` then `onTrustRequest`.
    fn sender_found<D: InboxDht + ?Sized>(
        &mut self,
        dht: &mut D,
        now: u64,
        p: &Pending,
        chain: &[Certificate],
    ) {
        let account = match check_sender(chain, &p.owner) {
            Ok(a) => a,
            Err(r) => return self.refuse(r),
        };
        self.stats.verified += 1;
        let r = &p.request;
        let outcome = self.list.on_trust_request(
            secs(now),
            account,
            &p.owner,
            r.confirm,
            &r.conversation_id,
            r.payload.clone(),
        );
        self.flush();
        match outcome {
            RequestOutcome::Banned => self.refuse(Refusal::Banned),
            RequestOutcome::Full => self.refuse(Refusal::Full),
            RequestOutcome::Known {
                confirm_with: Some(c),
            } => self.confirm(dht, now, account, c),
            _ => {}
        }
    }
}

/// The sender check of §4.6 (`foundPeerDevice`): the certificate is the signing key's,
/// not self-signed, and its chain verifies up to its top. Returns the account (issuer).
pub fn check_sender(chain: &[Certificate], owner: &[u8]) -> Result<InfoHash, Refusal> {
    let device = chain.first().ok_or(Refusal::NoCertificate)?;
    if device.spki_der() != owner {
        return Err(Refusal::KeyMismatch);
    }
    if device.is_self_issued() || chain.len() < 2 {
        return Err(Refusal::SelfSigned);
    }
    match verify_device_chain(chain) {
        Ok(info) => Ok(InfoHash(info.account_id)),
        Err(AccountError::NoAccount) => Err(Refusal::SelfSigned),
        Err(_) => Err(Refusal::BadChain),
    }
}
