//! OpenDHT's `SecureDht` layer (PROTOCOLS §2.3–2.6) over the sans-IO engine: signed puts
//! that continue the owner's `seq`, encrypted puts to a recipient whose certificate is
//! looked up on the DHT (type 8), certificate announcement, and the get/listen filter
//! that decrypts values addressed to us and drops values whose signature fails.
//!
//! Still sans-IO: [`SecureDht`] has the engine's inputs and outputs and adds no clock or
//! socket of its own; randomness comes from the seed in [`Config`].

use super::engine::{Config, Dht, Event, OpId, Transmit};
use super::infohash::InfoHash;
use super::msgpack::{self, Writer};
use super::value::{Body, SignedValue, Value, ValueData};
use crate::crypto::{self, CryptoError, PrivateKey, PublicKey};
use crate::identity::NodeIdentity as Identity;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;

/// Value type of certificate announcements (§1.12).
pub const CERTIFICATE_TYPE: u16 = 8;
/// Value id OpenDHT uses for a node's own certificate announcement.
pub const CERTIFICATE_VALUE_ID: u64 = 1;
/// How often we announce our certificate again: holders change as nodes come and go,
/// and OpenDHT keeps its announcement as a permanent put.
pub const CERTIFICATE_REANNOUNCE_MS: u64 = 10 * 60_000;

/// Why a secure operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecureError {
    #[error("crypto: {0}")]
    Crypto(#[from] CryptoError),
    #[error("decrypted value is malformed: {0}")]
    Malformed(#[from] super::value::ValueError),
    #[error("decrypted value is not signed")]
    NotSigned,
    #[error("value is addressed to someone else")]
    NotForUs,
    #[error("signature does not verify")]
    BadSignature,
    #[error("value is not encrypted")]
    NotEncrypted,
}

/// Sign `body` as `key`'s value `id` with sequence number `seq` (and recipient `to`).
pub fn sign(
    key: &PrivateKey,
    id: u64,
    seq: u16,
    body: Body,
    to: Option<InfoHash>,
) -> Result<Value, SecureError> {
    let mut v = Value {
        id,
        data: ValueData::Signed(SignedValue {
            seq,
            owner: key.public_key().spki_der().to_vec(),
            to,
            body,
            sig: Vec::new(),
            received_body: None,
        }),
        priority: 0,
    };
    let bytes = v.signed_body_bytes().unwrap_or_default();
    let sig = key.sign(&bytes)?;
    if let ValueData::Signed(s) = &mut v.data {
        s.sig = sig;
    }
    Ok(v)
}

/// §2.4: sign with `to` = the recipient's short id, pack `{body, sig}` and encrypt it
/// for the recipient. The result travels as type 0 with the same id.
pub fn encrypt(
    key: &PrivateKey,
    id: u64,
    seq: u16,
    body: Body,
    recipient: &PublicKey,
    rng: &mut ChaCha20Rng,
) -> Result<Value, SecureError> {
    let signed = sign(key, id, seq, body, Some(InfoHash(recipient.short_id())))?;
    let mut w = Writer::new();
    signed.pack_dat(&mut w);
    let cypher = recipient.encrypt(&w.into_bytes(), rng)?;
    Ok(Value {
        id,
        data: ValueData::Encrypted(cypher),
        priority: 0,
    })
}

/// The receiving side of §2.4: decrypt, parse, require `to` = our short id and a valid
/// signature by the owner.
pub fn decrypt(key: &PrivateKey, v: &Value) -> Result<Value, SecureError> {
    let ValueData::Encrypted(cypher) = &v.data else {
        return Err(SecureError::NotEncrypted);
    };
    let plain = key.decrypt(cypher)?;
    let inner = Value::unpack_dat(v.id, v.priority, &plain)?;
    let ValueData::Signed(s) = &inner.data else {
        return Err(SecureError::NotSigned);
    };
    if s.to != Some(InfoHash(key.public_key().short_id())) {
        return Err(SecureError::NotForUs);
    }
    if !signature_ok(&inner) {
        return Err(SecureError::BadSignature);
    }
    Ok(inner)
}

/// Whether a signed value's signature verifies (over the body bytes as received when
/// known, else their canonical form). Plain and encrypted values have none to check.
pub fn signature_ok(v: &Value) -> bool {
    match &v.data {
        ValueData::Signed(s) => {
            let canonical;
            let body = match &s.received_body {
                Some(b) => b.as_slice(),
                None => {
                    canonical = v.signed_body_bytes().unwrap_or_default();
                    &canonical
                }
            };
            crypto::verify(&s.owner, body, &s.sig)
        }
        _ => true,
    }
}

/// Our certificate announcement (§2.6): value 1, type 8, `data` = msgpack bin of the PEM
/// chain (the bin header is part of `data`, as OpenDHT writes it).
pub fn certificate_value(pem_chain: &[u8]) -> Value {
    let mut w = Writer::new();
    w.bin(pem_chain);
    Value::plain(CERTIFICATE_VALUE_ID, CERTIFICATE_TYPE, w.into_bytes())
}

/// The certificate (PEM chain or DER) inside a type-8 value's `data`: the msgpack bin
/// OpenDHT writes, or raw PEM/DER from a lenient writer.
pub fn certificate_bytes(data: &[u8]) -> Vec<u8> {
    match msgpack::parse(data).ok().and_then(|n| n.as_bin()) {
        Some(b) => b.to_vec(),
        None => data.to_vec(),
    }
}

/// `findCertificate` acceptance rule: a type-8 value whose certificate's key has the
/// short id we looked up. Returns that key.
pub fn certificate_key(v: &Value, short_id: &InfoHash) -> Option<PublicKey> {
    let b = v.body().filter(|b| b.type_id == CERTIFICATE_TYPE)?;
    let key = PublicKey::from_certificate(&certificate_bytes(&b.data)).ok()?;
    (key.short_id() == short_id.0).then_some(key)
}

/// The type-8 storage policy (§1.12): a certificate is storable only at its key's short
/// id. Every other value passes.
pub fn storable_at(key: &InfoHash, v: &Value) -> bool {
    match v.body() {
        Some(b) if b.type_id == CERTIFICATE_TYPE => {
            crypto::certificate_spki_der(&certificate_bytes(&b.data))
                .is_ok_and(|spki| crypto::short_id(&spki) == key.0)
        }
        _ => true,
    }
}

/// Multi-step operations waiting for their first step (a get).
enum Step {
    /// putSigned: collect our highest `seq` for `id`, then sign with seq + 1.
    SignedPut {
        key: InfoHash,
        id: u64,
        body: Body,
        next_seq: u16,
    },
    /// putEncrypted: find the recipient's certificate, then encrypt and put.
    EncryptedPut {
        key: InfoHash,
        to: InfoHash,
        id: u64,
        body: Body,
        recipient: Option<PublicKey>,
    },
}

/// Counters of what the secure layer refused.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecureStats {
    /// Values dropped from gets/listens because their signature did not verify.
    pub bad_signatures: u64,
    /// Encrypted values we could not decrypt (not for us, or forged).
    pub undecryptable: u64,
}

/// The plain DHT under a [`SecureDht`]: our own UDP node ([`Dht`]), or the DHT reached
/// through a proxy ([`super::proxy::stream::ProxyEngine`]). The secure layer (filter,
/// signed and encrypted puts, certificate announcement) is the same over both.
pub trait PlainDht {
    fn get(&mut self, now: u64, key: InfoHash) -> OpId;
    fn listen(&mut self, now: u64, key: InfoHash) -> OpId;
    fn put(&mut self, now: u64, key: InfoHash, value: Value) -> OpId;
    /// A put kept on the DHT until cancelled (or replaced).
    fn put_permanent(&mut self, now: u64, key: InfoHash, value: Value) -> OpId;
    fn cancel(&mut self, op: OpId);
    /// An op id for an operation that needs no request (its events come from above).
    fn reserve_op(&mut self) -> OpId;
    /// Values already at hand for `key` (a node's storage; none through a proxy).
    fn local_values(&self, key: &InfoHash) -> Vec<Value>;
    fn poll_event(&mut self) -> Option<Event>;
    fn handle_timeout(&mut self, now: u64);
    fn poll_timeout(&self) -> Option<u64>;
    /// The latest time given as input.
    fn now(&self) -> u64;
    /// Someone would hear our certificate announcement now.
    fn reachable(&self) -> bool;
}

impl PlainDht for Dht {
    fn get(&mut self, now: u64, key: InfoHash) -> OpId {
        Dht::get(self, now, key)
    }
    fn listen(&mut self, now: u64, key: InfoHash) -> OpId {
        Dht::listen(self, now, key)
    }
    fn put(&mut self, now: u64, key: InfoHash, value: Value) -> OpId {
        Dht::put(self, now, key, value)
    }
    fn put_permanent(&mut self, now: u64, key: InfoHash, value: Value) -> OpId {
        Dht::put_permanent(self, now, key, value)
    }
    fn cancel(&mut self, op: OpId) {
        Dht::cancel(self, op)
    }
    fn reserve_op(&mut self) -> OpId {
        Dht::reserve_op(self)
    }
    fn local_values(&self, key: &InfoHash) -> Vec<Value> {
        Dht::local_values(self, key)
    }
    fn poll_event(&mut self) -> Option<Event> {
        Dht::poll_event(self)
    }
    fn handle_timeout(&mut self, now: u64) {
        Dht::handle_timeout(self, now)
    }
    fn poll_timeout(&self) -> Option<u64> {
        Dht::poll_timeout(self)
    }
    fn now(&self) -> u64 {
        Dht::now(self)
    }
    fn reachable(&self) -> bool {
        // A node that answered us, or (for the first node of a network) one that asked
        // us something.
        !self.routing_table().is_empty()
    }
}

/// The engine plus OpenDHT's secure layer. Derefs to the plain DHT ([`Dht`] by default)
/// for everything plain.
pub struct SecureDht<D = Dht> {
    dht: D,
    identity: Option<Identity>,
    rng: ChaCha20Rng,
    steps: BTreeMap<OpId, Step>,
    /// Inner op → the op id the user was given; 0 marks our own ops (the certificate
    /// announcement), whose events nobody asked for. Op ids start at 1.
    alias: BTreeMap<OpId, OpId>,
    /// Public keys found by certificate lookups, by short id.
    keys: BTreeMap<[u8; 20], PublicKey>,
    events: VecDeque<Event>,
    announce_at: Option<u64>,
    /// The put of our certificate (replaced at each announcement).
    cert_op: Option<OpId>,
    pub secure_stats: SecureStats,
}

impl<D> std::ops::Deref for SecureDht<D> {
    type Target = D;
    fn deref(&self) -> &D {
        &self.dht
    }
}

impl<D> std::ops::DerefMut for SecureDht<D> {
    fn deref_mut(&mut self) -> &mut D {
        &mut self.dht
    }
}

impl SecureDht<Dht> {
    /// With an identity the node id must be the one its key implies (OpenDHT does this);
    /// `cfg.id` is overridden accordingly.
    pub fn new(mut cfg: Config, identity: Option<Identity>, now: u64) -> SecureDht {
        if let Some(i) = &identity {
            cfg.id = InfoHash(i.key().public_key().node_id());
        }
        let seed = cfg.seed;
        SecureDht::over(Dht::new(cfg, now), identity, seed)
    }

    pub fn handle_datagram(&mut self, now: u64, from: SocketAddr, bytes: &[u8]) {
        self.dht.handle_datagram(now, from, bytes);
        self.process(now);
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.dht.poll_transmit()
    }
}

impl<D: PlainDht> SecureDht<D> {
    /// The secure layer over `dht` (randomness for encryption from `seed`).
    pub fn over(dht: D, identity: Option<Identity>, seed: u64) -> SecureDht<D> {
        let rng = ChaCha20Rng::seed_from_u64(seed ^ 0x5ec0_5ec0_5ec0_5ec0);
        let mut keys = BTreeMap::new();
        if let Some(i) = &identity {
            let pk = i.key().public_key();
            keys.insert(pk.short_id(), pk);
        }
        SecureDht {
            dht,
            identity,
            rng,
            steps: BTreeMap::new(),
            alias: BTreeMap::new(),
            keys,
            events: VecDeque::new(),
            announce_at: None,
            cert_op: None,
            secure_stats: SecureStats::default(),
        }
    }

    /// Our public key's short id (what `e` takes as the recipient), if we have an identity.
    pub fn public_key_id(&self) -> Option<InfoHash> {
        self.identity
            .as_ref()
            .map(|i| InfoHash(i.key().public_key().short_id()))
    }

    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }

    /// putSigned: sign `body` as value `id` with our next `seq` for it (one more than the
    /// highest we find on the DHT for the same id and owner), then put.
    pub fn put_signed(&mut self, now: u64, key: InfoHash, id: u64, body: Body) -> OpId {
        let op = self.dht.get(now, key);
        self.steps.insert(
            op,
            Step::SignedPut {
                key,
                id,
                body,
                next_seq: 0,
            },
        );
        op
    }

    /// putEncrypted: encrypt `body` for the owner of short id `to` (certificate looked up
    /// on the DHT unless known), then put. Fails with [`Event::Failed`] when no
    /// certificate is found.
    pub fn put_encrypted(
        &mut self,
        now: u64,
        key: InfoHash,
        to: InfoHash,
        id: u64,
        body: Body,
    ) -> OpId {
        let recipient = self.keys.get(&to.0).cloned();
        let known = recipient.is_some();
        let step = Step::EncryptedPut {
            key,
            to,
            id,
            body,
            recipient,
        };
        if known {
            // Known key: no lookup needed (OpenDHT caches found certificates too).
            let op = self.dht.reserve_op();
            self.finish(now, op, step);
            return op;
        }
        let op = self.dht.get(now, to);
        self.steps.insert(op, step);
        op
    }

    /// A public key found on the DHT or our own, by short id.
    pub fn known_key(&self, short_id: &InfoHash) -> Option<&PublicKey> {
        self.keys.get(&short_id.0)
    }

    // ---- the engine's interface ----------------------------------------------------

    pub fn handle_timeout(&mut self, now: u64) {
        if self.announce_at.is_some_and(|t| t <= now) {
            self.announce(now);
        }
        self.dht.handle_timeout(now);
        self.process(now);
    }

    pub fn poll_timeout(&self) -> Option<u64> {
        match (self.dht.poll_timeout(), self.announce_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Engine events, filtered and completed by the secure layer. Commands given
    /// through `Deref` (plain `get`, `put`, ...) pass through here too.
    pub fn poll_event(&mut self) -> Option<Event> {
        if self.events.is_empty() {
            self.process(self.dht.now());
        }
        self.events.pop_front()
    }

    fn announce(&mut self, now: u64) {
        if let Some(i) = &self.identity {
            let key = InfoHash(i.key().public_key().short_id());
            let v = certificate_value(i.chain_pem().as_bytes());
            // Permanent, as OpenDHT announces it: it follows the key's neighbourhood as
            // the table grows; the next announcement replaces it.
            if let Some(old) = self.cert_op.take() {
                self.dht.cancel(old);
            }
            let op = self.dht.put_permanent(now, key, v);
            self.cert_op = Some(op);
            // Nobody asked for it: its events are ours.
            self.alias.insert(op, 0);
        }
        self.announce_at = Some(now + CERTIFICATE_REANNOUNCE_MS);
    }

    /// Move engine events through the filter and the pending steps.
    fn process(&mut self, now: u64) {
        // Announce once there is someone to tell.
        if self.announce_at.is_none() && self.identity.is_some() && self.dht.reachable() {
            self.announce(now);
        }
        while let Some(e) = self.dht.poll_event() {
            match e {
                Event::Connected => self.events.push_back(Event::Connected),
                Event::Values { op, key, values } => {
                    let values = filter(self.identity.as_ref(), values, &mut self.secure_stats);
                    if let Some(step) = self.steps.get_mut(&op) {
                        step_values(step, &values, &mut self.keys, self.identity.as_ref());
                    } else if !values.is_empty() {
                        if let Some(user) = self.user_op(op) {
                            self.events.push_back(Event::Values {
                                op: user,
                                key,
                                values,
                            });
                        }
                    }
                }
                Event::GetDone { op, .. } if self.steps.contains_key(&op) => {
                    let step = self.steps.remove(&op).expect("checked");
                    self.finish(now, op, step);
                }
                other => {
                    let op = event_op(&other);
                    let user = op.map(|o| self.user_op(o));
                    if let (Event::PutDone { .. }, Some(o)) = (&other, op) {
                        self.alias.remove(&o);
                    }
                    match user {
                        Some(None) => {}
                        Some(Some(u)) => self.events.push_back(with_op(other, u)),
                        None => self.events.push_back(other),
                    }
                }
            }
        }
    }

    /// The op id the user knows for an inner op; `None` for our own internal ops.
    fn user_op(&self, op: OpId) -> Option<OpId> {
        match self.alias.get(&op) {
            Some(0) => None,
            Some(u) => Some(*u),
            None => Some(op),
        }
    }

    /// The first step (a get) finished: do the put, or fail.
    fn finish(&mut self, now: u64, op: OpId, step: Step) {
        let (key, value) = match step {
            Step::SignedPut {
                key,
                id,
                body,
                next_seq,
            } => {
                let Some(i) = &self.identity else {
                    return self.fail(op, key, "signing needs an identity");
                };
                match sign(i.key(), id, next_seq, body, None) {
                    Ok(v) => (key, v),
                    Err(e) => return self.fail(op, key, &e.to_string()),
                }
            }
            Step::EncryptedPut {
                key,
                to,
                id,
                body,
                recipient,
            } => {
                let Some(recipient) = recipient else {
                    return self.fail(op, key, &format!("no certificate found for {to}"));
                };
                let Some(i) = &self.identity else {
                    return self.fail(op, key, "encrypting needs an identity (values are signed)");
                };
                match encrypt(i.key(), id, 0, body, &recipient, &mut self.rng) {
                    Ok(v) => (key, v),
                    Err(e) => return self.fail(op, key, &e.to_string()),
                }
            }
        };
        let put = self.dht.put(now, key, value);
        self.alias.insert(put, op);
    }

    fn fail(&mut self, op: OpId, key: InfoHash, reason: &str) {
        self.events.push_back(Event::Failed {
            op,
            key,
            reason: reason.to_string(),
        });
    }
}

/// SecureDht's get filter: decrypt what is addressed to us, drop forged signatures
/// (counted in `stats`). Also used by the proxy client's secure layer.
pub fn filter(me: Option<&Identity>, values: Vec<Value>, stats: &mut SecureStats) -> Vec<Value> {
    let mut out = Vec::with_capacity(values.len());
    for v in values {
        match &v.data {
            ValueData::Encrypted(_) => match me.map(|i| decrypt(i.key(), &v)) {
                Some(Ok(plain)) => out.push(plain),
                // Not ours (or forged): still reported, as the opaque value it is.
                _ => {
                    stats.undecryptable += 1;
                    out.push(v);
                }
            },
            ValueData::Signed(_) if !signature_ok(&v) => {
                stats.bad_signatures += 1;
            }
            _ => out.push(v),
        }
    }
    out
}

/// putSigned's `seq`: one more than the highest of `owner`'s values with id `id` among
/// `values` (0 when there is none).
pub fn next_seq_of(values: &[Value], id: u64, owner: &[u8]) -> u16 {
    values
        .iter()
        .filter_map(|v| match &v.data {
            ValueData::Signed(s) if v.id == id && s.owner == owner => Some(s.seq.saturating_add(1)),
            _ => None,
        })
        .max()
        .unwrap_or(0)
}

/// Feed values found by a step's get into it.
fn step_values(
    step: &mut Step,
    values: &[Value],
    keys: &mut BTreeMap<[u8; 20], PublicKey>,
    me: Option<&Identity>,
) {
    match step {
        Step::SignedPut { id, next_seq, .. } => {
            if let Some(i) = me {
                let owner = i.key().public_key().spki_der().to_vec();
                *next_seq = (*next_seq).max(next_seq_of(values, *id, &owner));
            }
        }
        Step::EncryptedPut { to, recipient, .. } => {
            if recipient.is_none() {
                if let Some(k) = values.iter().find_map(|v| certificate_key(v, to)) {
                    keys.insert(to.0, k.clone());
                    *recipient = Some(k);
                }
            }
        }
    }
}

fn event_op(e: &Event) -> Option<OpId> {
    match e {
        Event::Values { op, .. }
        | Event::Expired { op, .. }
        | Event::GetDone { op, .. }
        | Event::PutDone { op, .. }
        | Event::Failed { op, .. } => Some(*op),
        Event::Connected => None,
    }
}

fn with_op(mut e: Event, user: OpId) -> Event {
    match &mut e {
        Event::Values { op, .. }
        | Event::Expired { op, .. }
        | Event::GetDone { op, .. }
        | Event::PutDone { op, .. }
        | Event::Failed { op, .. } => *op = user,
        Event::Connected => {}
    }
    e
}
