//! The DHT fallback for messages (PROTOCOLS §6.7, jamid `JamiAccount::sendMessage` and
//! the inbox listener of `doRegister_`), sans-IO over [`InboxDht`] (the node's
//! [`SecureDht`]).
//!
//! Sending: for each device of the peer, an ImMessage (type 3; id = token, `datatype` =
//! MIME, `msg` = body) encrypted to that device at SHA-1("inbox:" + its short id), and a
//! listen at the same key for the receipt: an ImMessage with the same id, put there by
//! the recipient, encrypted to us and signed by one of the devices we wrote to. The
//! first receipt delivers the message; none within [`GIVE_UP_MS`] (1 min) fails it.
//!
//! Receiving: a listen at our own inbox. A decrypted ImMessage whose sender certificate
//! chain checks out (looked up at the owner's short id) is reported once per id, and we
//! answer with an empty ImMessage of the same id at our inbox, encrypted to the sender.
//! Values not encrypted to us, of another type, malformed, or with a bad chain are
//! refused and counted.

use crate::crypto::inbox_key;
use crate::dht::engine::{Event, OpId};
use crate::dht::infohash::InfoHash;
use crate::dht::payload::{ImMessage, IM_MESSAGE_TYPE};
use crate::dht::value::{Body, Value, ValueData};
use crate::identity::verify_device_chain;
use crate::presence::{device_chain, InboxDht};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// jamid's sender gives up after one minute without a receipt.
pub const GIVE_UP_MS: u64 = 60_000;
/// Largest body sent or accepted: the encrypted, signed value carrying it (owner key,
/// signature, RSA-wrapped AES key: about 2 KB more) must stay under OpenDHT's 64 KiB
/// value size limit.
pub const MAX_BODY: usize = 60_000;
/// Messages awaiting a receipt at once.
pub const MAX_SENDS: usize = 256;
/// Sender certificate lookups in flight at once: each costs a DHT get, and a flood of
/// forged senders must not turn into a flood of gets.
pub const MAX_LOOKUPS: usize = 64;
/// Message ids remembered for de-duplication (jamid's `treatedMessages_`), oldest
/// forgotten first.
pub const MAX_SEEN_IDS: usize = 4096;

/// A message received through the DHT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhtMessage {
    pub from_account: InfoHash,
    pub from_device: InfoHash,
    pub id: u64,
    /// `datatype`, `text/plain` when empty (as jamid does).
    pub mime: String,
    pub body: String,
}

impl DhtMessage {
    /// The id as jamid names it (`to_hex_string`: 16 hex digits), the same as the SIP
    /// copy's Message-ID: jamid sends both under one token and treats an id once, so a
    /// device composing both paths de-duplicates on this.
    pub fn message_id(&self) -> String {
        format!("{:016x}", self.id)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Refusal {
    /// An ImMessage that was not encrypted to us.
    NotEncrypted,
    Malformed,
    /// No certificate chain found for the sender, or it does not verify.
    BadSender,
    /// A receipt for one of our messages signed by a device we did not write to.
    ForgedReceipt,
    TooLarge,
    /// Too many sender lookups in flight.
    Busy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FallbackEvent {
    Received(DhtMessage),
    /// A device we wrote to confirmed the message.
    Delivered {
        token: u64,
        device: InfoHash,
    },
    /// No receipt in time, or no put could be done.
    Failed {
        token: u64,
        timed_out: bool,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FallbackStats {
    pub sent: u64,
    pub delivered: u64,
    pub failed: u64,
    pub received: u64,
    pub duplicates: u64,
    pub receipts_sent: u64,
    pub refused: BTreeMap<Refusal, u64>,
}

/// Why a message could not be sent through the DHT.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FallbackError {
    #[error("body of {0} bytes exceeds {MAX_BODY}")]
    TooLarge(usize),
    #[error("too many messages awaiting a receipt")]
    Busy,
    #[error("no device to send to")]
    NoDevice,
}

enum Op {
    Inbox,
    Receipt {
        token: u64,
    },
    Put {
        token: u64,
    },
    Sender {
        msg: Box<ImMessage>,
        dev: InfoHash,
        done: bool,
    },
    ReceiptPut,
}

struct Send {
    devices: BTreeSet<InfoHash>,
    listens: Vec<OpId>,
    puts_left: usize,
    puts_ok: usize,
    deadline: u64,
}

/// The DHT message path of one device.
pub struct DhtFallback {
    me: InfoHash,
    inbox: InfoHash,
    ops: BTreeMap<OpId, Op>,
    sends: BTreeMap<u64, Send>,
    lookups: usize,
    seen: BTreeSet<u64>,
    seen_order: VecDeque<u64>,
    events: VecDeque<FallbackEvent>,
    pub stats: FallbackStats,
}

impl DhtFallback {
    /// For our device of short id `me`; starts listening at its inbox.
    pub fn new<D: InboxDht + ?Sized>(dht: &mut D, now: u64, me: InfoHash) -> Self {
        let inbox = InfoHash(inbox_key(&me.0));
        let mut ops = BTreeMap::new();
        ops.insert(dht.listen(now, inbox), Op::Inbox);
        DhtFallback {
            me,
            inbox,
            ops,
            sends: BTreeMap::new(),
            lookups: 0,
            seen: BTreeSet::new(),
            seen_order: VecDeque::new(),
            events: VecDeque::new(),
            stats: FallbackStats::default(),
        }
    }

    /// Our inbox key.
    pub fn inbox(&self) -> InfoHash {
        self.inbox
    }

    /// The listens waiting for `token`'s receipt (one per device written to).
    pub fn receipt_listens(&self, token: u64) -> &[OpId] {
        self.sends.get(&token).map_or(&[], |s| &s.listens)
    }

    /// Send `body` as `mime` under `token` to each of `devices` (short ids).
    #[allow(clippy::too_many_arguments)]
    pub fn send<D: InboxDht + ?Sized>(
        &mut self,
        dht: &mut D,
        now: u64,
        token: u64,
        devices: &[InfoHash],
        mime: &str,
        body: &str,
    ) -> Result<(), FallbackError> {
        if body.len() > MAX_BODY {
            return Err(FallbackError::TooLarge(body.len()));
        }
        if self.sends.len() >= MAX_SENDS {
            return Err(FallbackError::Busy);
        }
        let devices: BTreeSet<InfoHash> =
            devices.iter().copied().filter(|d| *d != self.me).collect();
        if devices.is_empty() {
            return Err(FallbackError::NoDevice);
        }
        let msg = ImMessage {
            id: token,
            msg: body.into(),
            date: (now / 1000) as i64,
            datatype: mime.into(),
            ..ImMessage::default()
        };
        let mut listens = Vec::new();
        for dev in &devices {
            let key = InfoHash(inbox_key(&dev.0));
            let l = dht.listen(now, key);
            self.ops.insert(l, Op::Receipt { token });
            listens.push(l);
            let p = dht.put_encrypted(now, key, *dev, value_id("msg", token, dev), im_body(&msg));
            self.ops.insert(p, Op::Put { token });
        }
        self.sends.insert(
            token,
            Send {
                puts_left: devices.len(),
                puts_ok: 0,
                devices,
                listens,
                deadline: now + GIVE_UP_MS,
            },
        );
        self.stats.sent += 1;
        Ok(())
    }

    pub fn poll_event(&mut self) -> Option<FallbackEvent> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<u64> {
        self.sends.values().map(|s| s.deadline).min()
    }

    pub fn handle_timeout<D: InboxDht + ?Sized>(&mut self, dht: &mut D, now: u64) {
        let due: Vec<u64> = self
            .sends
            .iter()
            .filter(|(_, s)| s.deadline <= now)
            .map(|(t, _)| *t)
            .collect();
        for token in due {
            self.finish(dht, token);
            self.stats.failed += 1;
            self.events.push_back(FallbackEvent::Failed {
                token,
                timed_out: true,
            });
        }
    }

    /// Feed one of the node's DHT events; returns whether it was ours.
    pub fn handle_event<D: InboxDht + ?Sized>(&mut self, dht: &mut D, now: u64, e: &Event) -> bool {
        let Some(op) = e.op() else {
            return false;
        };
        let Some(kind) = self.ops.get_mut(&op) else {
            return false;
        };
        match (kind, e) {
            (Op::Inbox, Event::Values { values, .. }) => {
                for v in values {
                    self.inbox_value(dht, now, v);
                }
            }
            (Op::Receipt { token }, Event::Values { values, .. }) => {
                let token = *token;
                for v in values {
                    self.receipt_value(dht, token, v);
                }
            }
            (Op::Put { token }, Event::PutDone { .. } | Event::Failed { .. }) => {
                let token = *token;
                self.ops.remove(&op);
                let ok = matches!(e, Event::PutDone { .. });
                if let Some(s) = self.sends.get_mut(&token) {
                    s.puts_left -= 1;
                    s.puts_ok += usize::from(ok);
                    if s.puts_left == 0 && s.puts_ok == 0 {
                        self.finish(dht, token);
                        self.stats.failed += 1;
                        self.events.push_back(FallbackEvent::Failed {
                            token,
                            timed_out: false,
                        });
                    }
                }
            }
            (Op::Sender { msg, dev, done }, Event::Values { values, .. }) => {
                if *done {
                    return true;
                }
                let dev = *dev;
                if let Some(chain) = values.iter().find_map(|v| device_chain(v, &dev)) {
                    *done = true;
                    let msg = (**msg).clone();
                    self.sender_chain(dht, now, msg, dev, &chain);
                }
            }
            (Op::Sender { done, .. }, Event::GetDone { .. } | Event::Failed { .. }) => {
                let done = *done;
                self.ops.remove(&op);
                self.lookups -= 1;
                if !done {
                    self.refuse(Refusal::BadSender);
                }
            }
            (Op::ReceiptPut, Event::PutDone { .. } | Event::Failed { .. }) => {
                self.ops.remove(&op);
            }
            _ => {}
        }
        true
    }

    /// A value at our inbox.
    fn inbox_value<D: InboxDht + ?Sized>(&mut self, dht: &mut D, now: u64, v: &Value) {
        let Some((msg, owner)) = self.im_message(v) else {
            return;
        };
        let dev = InfoHash(crate::crypto::short_id(&owner));
        if self.seen.contains(&msg.id) {
            self.stats.duplicates += 1;
            return;
        }
        if msg.msg.len() > MAX_BODY {
            return self.refuse(Refusal::TooLarge);
        }
        let local = dht.local_values(&dev);
        if let Some(chain) = local.iter().find_map(|c| device_chain(c, &dev)) {
            return self.sender_chain(dht, now, msg, dev, &chain);
        }
        if self.lookups >= MAX_LOOKUPS {
            return self.refuse(Refusal::Busy);
        }
        self.lookups += 1;
        let op = dht.get(now, dev);
        self.ops.insert(
            op,
            Op::Sender {
                msg: Box::new(msg),
                dev,
                done: false,
            },
        );
    }

    /// The ImMessage in a value at an inbox and its owner's key, if the value is an
    /// ImMessage; refusals counted.
    fn im_message(&mut self, v: &Value) -> Option<(ImMessage, Vec<u8>)> {
        let s = match &v.data {
            // Encrypted to someone else (SecureDht counts those): not ours to judge.
            ValueData::Encrypted(_) => return None,
            ValueData::Plain(b) => {
                if b.type_id == IM_MESSAGE_TYPE {
                    self.refuse(Refusal::NotEncrypted);
                }
                return None;
            }
            ValueData::Signed(s) => s,
        };
        if s.body.type_id != IM_MESSAGE_TYPE {
            return None; // Trust requests and the like share the inbox.
        }
        if s.to != Some(self.me) {
            self.refuse(Refusal::NotEncrypted);
            return None;
        }
        // The message id is the payload's: OpenDHT packs an ImMessage into a value with no
        // id (`Value{TYPE, obj}`), so the put draws a random value id.
        match ImMessage::unpack(&s.body.data) {
            Ok(m) => Some((m, s.owner.clone())),
            Err(_) => {
                self.refuse(Refusal::Malformed);
                None
            }
        }
    }

    /// The sender's chain was found: check it, report, confirm.
    fn sender_chain<D: InboxDht + ?Sized>(
        &mut self,
        dht: &mut D,
        now: u64,
        msg: ImMessage,
        dev: InfoHash,
        chain: &[crate::identity::Certificate],
    ) {
        let Ok(info) = verify_device_chain(chain) else {
            return self.refuse(Refusal::BadSender);
        };
        if !self.remember(msg.id) {
            self.stats.duplicates += 1;
            return;
        }
        let receipt = ImMessage {
            id: msg.id,
            date: (now / 1000) as i64,
            ..ImMessage::default()
        };
        let op = dht.put_encrypted(
            now,
            self.inbox,
            dev,
            value_id("receipt", msg.id, &self.me),
            im_body(&receipt),
        );
        self.ops.insert(op, Op::ReceiptPut);
        self.stats.receipts_sent += 1;
        self.stats.received += 1;
        let mime = if msg.datatype.is_empty() {
            "text/plain".to_owned()
        } else {
            msg.datatype
        };
        self.events.push_back(FallbackEvent::Received(DhtMessage {
            from_account: InfoHash(info.account_id),
            from_device: dev,
            id: msg.id,
            mime,
            body: msg.msg,
        }));
    }

    /// A value at a recipient's inbox while we wait for the receipt of `token`.
    fn receipt_value<D: InboxDht + ?Sized>(&mut self, dht: &mut D, token: u64, v: &Value) {
        if !self.sends.contains_key(&token) {
            return;
        }
        let Some((msg, owner)) = self.im_message(v) else {
            return;
        };
        if msg.id != token {
            return;
        }
        let dev = InfoHash(crate::crypto::short_id(&owner));
        if !self.sends[&token].devices.contains(&dev) {
            return self.refuse(Refusal::ForgedReceipt);
        }
        self.finish(dht, token);
        self.stats.delivered += 1;
        self.events
            .push_back(FallbackEvent::Delivered { token, device: dev });
    }

    /// Stop listening for `token`'s receipts.
    fn finish<D: InboxDht + ?Sized>(&mut self, dht: &mut D, token: u64) {
        if let Some(s) = self.sends.remove(&token) {
            for l in s.listens {
                dht.cancel(l);
                self.ops.remove(&l);
            }
        }
    }

    fn remember(&mut self, id: u64) -> bool {
        if !self.seen.insert(id) {
            return false;
        }
        self.seen_order.push_back(id);
        if self.seen_order.len() > MAX_SEEN_IDS {
            if let Some(old) = self.seen_order.pop_front() {
                self.seen.remove(&old);
            }
        }
        true
    }

    fn refuse(&mut self, r: Refusal) {
        tracing::warn!("dht message fallback: refused a value: {r:?}");
        *self.stats.refused.entry(r).or_default() += 1;
    }
}

fn im_body(m: &ImMessage) -> Body {
    Body {
        type_id: IM_MESSAGE_TYPE,
        data: m.pack(),
        utype: String::new(),
    }
}

/// The DHT value id of a message or receipt. OpenDHT draws a random one (the token is in
/// the payload); it must differ between the message and its receipt, which share a key
/// (the recipient's inbox) and would otherwise collide as an edit by another owner.
/// Derived from the token, so runs stay deterministic without an RNG here.
fn value_id(kind: &str, token: u64, device: &InfoHash) -> u64 {
    let h = InfoHash::get(format!("{kind}:{token}:{device}"));
    u64::from_be_bytes(h.0[..8].try_into().expect("8 bytes")).max(1)
}
