//! The connection request that starts every device-to-device connection (PROTOCOLS §6.1):
//! jamid's `PeerConnectionRequest`, packed as a msgpack map, carried in a type-0 value with
//! user type `peer_request`, encrypted to the target device and put at
//! SHA-1("peer:" + target short id hex). The receiver de-duplicates by id ("treated
//! messages"); the requester waits 30 s for the answer, which reuses the request id.
//!
//! [`PeerRequests`] is the sans-IO bookkeeping of both sides: ids, the bounded treated set,
//! pending requests and their answer deadlines. Time is an argument, ids come from the
//! caller's seeded RNG; the DHT put/listen itself is the secure DHT's job.

use crate::crypto::{self, PrivateKey, PublicKey};
use crate::dht::infohash::InfoHash;
use crate::dht::msgpack::{self, Kind, Node, Writer};
use crate::dht::secure::{self, SecureError};
use crate::dht::value::{Body, Value, ValueData};
use rand::RngExt;
use rand_chacha::ChaCha20Rng;
use std::collections::{BTreeMap, VecDeque};

/// Value user type the listener filters on (`dht::Value::UserTypeFilter("peer_request")`).
pub const PEER_REQUEST_UTYPE: &str = "peer_request";
/// `PeerConnectionRequest::TYPE` is `ValueType::USER_DATA`.
pub const PEER_REQUEST_TYPE: u16 = 0;
/// How long the requester waits for the answer (jamid `DHT_MSG_TIMEOUT`, 30 s).
pub const ANSWER_TIMEOUT_MS: u64 = 30_000;
/// Request ids are drawn in [1, 2^53] (jamid `JAMI_ID_MAX_VAL`, so they survive JSON).
pub const MAX_REQUEST_ID: u64 = 1 << 53;
/// How many treated ids we remember. jamid keeps them forever on disk; we keep a window:
/// encrypted values live 10 minutes on the DHT (§10 item 11), so a replay of an evicted id
/// needs a flood of this many fresh requests within that window, which is counted.
pub const MAX_TREATED: usize = 16_384;
/// How long a treated id is kept: the 10-minute life of an encrypted value plus margin for
/// a value re-announced near its expiry.
pub const TREATED_TTL_MS: u64 = 20 * 60_000;
/// Outgoing requests awaiting an answer at once. jamid has no limit; ours bounds memory
/// and stops a runaway caller, and is far above what a node opens in 30 s.
pub const MAX_PENDING_REQUESTS: usize = 1_024;

/// Why a received connection request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("malformed msgpack: {0}")]
    Msgpack(#[from] msgpack::MsgpackError),
    #[error("request has the wrong shape: {0}")]
    Shape(&'static str),
    #[error("value is not a connection request (type {type_id}, utype {utype:?})")]
    NotARequest { type_id: u16, utype: String },
    #[error("value is not signed and encrypted to us")]
    NotForUs,
    #[error("secure layer: {0}")]
    Secure(#[from] SecureError),
    #[error("request id {0} outside [1, 2^53]")]
    BadId(u64),
    #[error("request id {0:#x} already treated")]
    Replayed(u64),
    #[error("answer {0:#x} matches no pending request from that device")]
    UnexpectedAnswer(u64),
    #[error("too many pending requests ({MAX_PENDING_REQUESTS})")]
    TooManyPending,
}

/// jamid's `PeerConnectionRequest` (`MSGPACK_DEFINE_MAP(id, ice_msg, isAnswer, connType)`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerConnectionRequest {
    /// Request id, reused by the answer.
    pub id: u64,
    /// ICE ufrag, password and candidates, one per line (§6.2).
    pub ice_msg: String,
    pub is_answer: bool,
    /// Push wake-up hint ("", "videoCall", a MIME type...); answers leave it empty.
    pub conn_type: String,
}

impl PeerConnectionRequest {
    /// msgpack-c bytes, fields in declaration order.
    pub fn pack(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.map_len(4);
        w.str("id").uint(self.id);
        w.str("ice_msg").str(&self.ice_msg);
        w.str("isAnswer").bool(self.is_answer);
        w.str("connType").str(&self.conn_type);
        w.into_bytes()
    }

    /// msgpack-c's `MSGPACK_DEFINE_MAP` conversion: keys must be strings (the first of a
    /// repeated key wins), absent fields keep their defaults, a present field of the wrong
    /// type is an error. Text must be UTF-8 (jamid only ever writes ASCII there).
    pub fn unpack(bytes: &[u8]) -> Result<Self, RequestError> {
        let n = msgpack::parse(bytes)?;
        let map = n.as_map().ok_or(RequestError::Shape("not a map"))?;
        let mut out = PeerConnectionRequest::default();
        let mut seen = [false; 4];
        for (k, v) in map {
            let key = k
                .as_str_bytes()
                .ok_or(RequestError::Shape("non-string key"))?;
            let slot = match key {
                b"id" => 0,
                b"ice_msg" => 1,
                b"isAnswer" => 2,
                b"connType" => 3,
                _ => continue,
            };
            if std::mem::replace(&mut seen[slot], true) {
                continue;
            }
            match slot {
                0 => out.id = v.as_u64().ok_or(RequestError::Shape("id"))?,
                1 => out.ice_msg = text(v, "ice_msg")?,
                2 => out.is_answer = v.as_bool().ok_or(RequestError::Shape("isAnswer"))?,
                _ => out.conn_type = text(v, "connType")?,
            }
        }
        Ok(out)
    }

    /// The value body jamid puts: type 0, `data` = the packed map, utype `peer_request`.
    pub fn to_body(&self) -> Body {
        Body {
            type_id: PEER_REQUEST_TYPE,
            data: self.pack(),
            utype: PEER_REQUEST_UTYPE.into(),
        }
    }

    /// The answer to this request: same id, `isAnswer`, our ICE message, no `connType`.
    pub fn answer(&self, ice_msg: String) -> PeerConnectionRequest {
        PeerConnectionRequest {
            id: self.id,
            ice_msg,
            is_answer: true,
            conn_type: String::new(),
        }
    }
}

fn text(n: &Node<'_>, field: &'static str) -> Result<String, RequestError> {
    let b = match n.kind {
        Kind::Str(b) | Kind::Bin(b) => b,
        _ => return Err(RequestError::Shape(field)),
    };
    String::from_utf8(b.to_vec()).map_err(|_| RequestError::Shape(field))
}

/// DHT key the requests for device `short_id` are put at: SHA-1("peer:" + hex(short id)).
pub fn peer_key(short_id: &InfoHash) -> InfoHash {
    InfoHash(crypto::peer_key_short(&short_id.0))
}

/// Encrypt `req` from `sender` to `recipient` as the value jamid's `putEncrypted` makes.
/// Returns the DHT key and the value (type 0, opaque cypher).
pub fn seal(
    req: &PeerConnectionRequest,
    sender: &PrivateKey,
    recipient: &PublicKey,
    value_id: u64,
    rng: &mut ChaCha20Rng,
) -> Result<(InfoHash, Value), SecureError> {
    let v = secure::encrypt(sender, value_id, 0, req.to_body(), recipient, rng)?;
    Ok((peer_key(&InfoHash(recipient.short_id())), v))
}

/// A request or answer taken from a value addressed to us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub req: PeerConnectionRequest,
    /// Sender's short id (`from`), under which its certificate is looked up.
    pub from: InfoHash,
    /// Sender's public key, DER SubjectPublicKeyInfo (`owner`).
    pub owner: Vec<u8>,
}

/// Read a request out of a value the secure layer already decrypted and verified (what a
/// listen on the peer key delivers): it must be signed, addressed to `me`, type 0 with
/// user type `peer_request`. The signature is checked again, so a value that did not go
/// through the secure layer cannot slip in.
pub fn from_value(me: &InfoHash, v: &Value) -> Result<Received, RequestError> {
    let ValueData::Signed(s) = &v.data else {
        return Err(RequestError::NotForUs);
    };
    if s.to.as_ref() != Some(me) {
        return Err(RequestError::NotForUs);
    }
    if !secure::signature_ok(v) {
        return Err(RequestError::Secure(SecureError::BadSignature));
    }
    if s.body.type_id != PEER_REQUEST_TYPE || s.body.utype != PEER_REQUEST_UTYPE {
        return Err(RequestError::NotARequest {
            type_id: s.body.type_id,
            utype: s.body.utype.clone(),
        });
    }
    let req = PeerConnectionRequest::unpack(&s.body.data)?;
    if req.id == 0 || req.id > MAX_REQUEST_ID {
        return Err(RequestError::BadId(req.id));
    }
    Ok(Received {
        req,
        from: InfoHash(crypto::short_id(&s.owner)),
        owner: s.owner.clone(),
    })
}

/// Decrypt an encrypted value with our key, then [`from_value`].
pub fn open(key: &PrivateKey, v: &Value) -> Result<Received, RequestError> {
    let plain = secure::decrypt(key, v)?;
    from_value(&InfoHash(key.public_key().short_id()), &plain)
}

/// Counters of refused input (each refusal is counted once, under its reason).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestStats {
    /// Undecryptable, unsigned, wrongly signed or not addressed to us.
    pub forged: u64,
    /// Decrypted but not a well-formed `peer_request`.
    pub malformed: u64,
    /// Id already treated.
    pub replayed: u64,
    /// Answer for no pending request of that device.
    pub unexpected_answers: u64,
    /// Requests we sent that got no answer within [`ANSWER_TIMEOUT_MS`].
    pub timeouts: u64,
    /// Treated ids forgotten early because [`MAX_TREATED`] was reached.
    pub treated_evicted: u64,
}

/// What a valid incoming value was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A new request from `from`: check its certificate, then answer or ignore it.
    Request(Received),
    /// The answer to our pending request `req.id`.
    Answer(Received),
}

/// Output events of [`PeerRequests`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestEvent {
    /// Our request `id` to device `peer` got no answer in time.
    TimedOut { id: u64, peer: InfoHash },
}

#[derive(Debug, Clone)]
struct Pending {
    peer: InfoHash,
    deadline: u64,
}

/// Sans-IO bookkeeping of connection requests on one device.
#[derive(Debug, Default)]
pub struct PeerRequests {
    /// id → time first treated.
    treated: BTreeMap<u64, u64>,
    /// Treated ids in arrival order, for expiry and eviction.
    treated_order: VecDeque<(u64, u64)>,
    /// Our requests awaiting an answer, by id.
    pending: BTreeMap<u64, Pending>,
    events: VecDeque<RequestEvent>,
    pub stats: RequestStats,
}

impl PeerRequests {
    pub fn new() -> Self {
        Self::default()
    }

    /// Start a request to device `peer`: draws a fresh id and starts the answer timer.
    /// The caller puts `to_body()` encrypted at [`peer_key`] of `peer`.
    pub fn request(
        &mut self,
        now: u64,
        rng: &mut ChaCha20Rng,
        peer: InfoHash,
        ice_msg: String,
        conn_type: String,
    ) -> Result<PeerConnectionRequest, RequestError> {
        if self.pending.len() >= MAX_PENDING_REQUESTS {
            return Err(RequestError::TooManyPending);
        }
        let id = loop {
            let id = rng.random_range(1..=MAX_REQUEST_ID);
            if !self.pending.contains_key(&id) {
                break id;
            }
        };
        self.pending.insert(
            id,
            Pending {
                peer,
                deadline: now + ANSWER_TIMEOUT_MS,
            },
        );
        Ok(PeerConnectionRequest {
            id,
            ice_msg,
            is_answer: false,
            conn_type,
        })
    }

    /// Stop waiting for the answer to `id` (connection abandoned).
    pub fn cancel(&mut self, id: u64) -> bool {
        self.pending.remove(&id).is_some()
    }

    /// Number of our requests still awaiting an answer.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Number of ids currently remembered as treated.
    pub fn treated_len(&self) -> usize {
        self.treated.len()
    }

    /// A value encrypted to us, as found at our peer key.
    pub fn handle_encrypted(
        &mut self,
        now: u64,
        key: &PrivateKey,
        v: &Value,
    ) -> Result<Incoming, RequestError> {
        match open(key, v) {
            Ok(r) => self.handle_received(now, r),
            Err(e) => Err(self.count(e)),
        }
    }

    /// A value the secure layer already decrypted for `me`.
    pub fn handle_value(
        &mut self,
        now: u64,
        me: &InfoHash,
        v: &Value,
    ) -> Result<Incoming, RequestError> {
        match from_value(me, v) {
            Ok(r) => self.handle_received(now, r),
            Err(e) => Err(self.count(e)),
        }
    }

    fn count(&mut self, e: RequestError) -> RequestError {
        match &e {
            RequestError::Msgpack(_)
            | RequestError::Shape(_)
            | RequestError::NotARequest { .. }
            | RequestError::BadId(_) => self.stats.malformed += 1,
            RequestError::Secure(SecureError::Malformed(_)) => self.stats.malformed += 1,
            _ => self.stats.forged += 1,
        }
        e
    }

    /// jamid's listen callback: de-duplicate by id first (requests and answers alike),
    /// then route answers to the pending request of the same device.
    fn handle_received(&mut self, now: u64, r: Received) -> Result<Incoming, RequestError> {
        self.expire_treated(now);
        let id = r.req.id;
        if self.treated.contains_key(&id) {
            self.stats.replayed += 1;
            return Err(RequestError::Replayed(id));
        }
        self.remember(now, id);
        if !r.req.is_answer {
            return Ok(Incoming::Request(r));
        }
        match self.pending.get(&id) {
            Some(p) if p.peer == r.from => {
                self.pending.remove(&id);
                Ok(Incoming::Answer(r))
            }
            _ => {
                self.stats.unexpected_answers += 1;
                Err(RequestError::UnexpectedAnswer(id))
            }
        }
    }

    fn remember(&mut self, now: u64, id: u64) {
        if self.treated.len() >= MAX_TREATED {
            if let Some((old, _)) = self.treated_order.pop_front() {
                self.treated.remove(&old);
                self.stats.treated_evicted += 1;
            }
        }
        self.treated.insert(id, now);
        self.treated_order.push_back((id, now));
    }

    fn expire_treated(&mut self, now: u64) {
        while let Some(&(id, at)) = self.treated_order.front() {
            if now < at.saturating_add(TREATED_TTL_MS) {
                break;
            }
            self.treated_order.pop_front();
            self.treated.remove(&id);
        }
    }

    /// Earliest answer deadline.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.pending.values().map(|p| p.deadline).min()
    }

    /// Expire pending requests whose deadline passed.
    pub fn handle_timeout(&mut self, now: u64) {
        let expired: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(p) = self.pending.remove(&id) {
                self.stats.timeouts += 1;
                self.events
                    .push_back(RequestEvent::TimedOut { id, peer: p.peer });
            }
        }
        self.expire_treated(now);
    }

    pub fn poll_event(&mut self) -> Option<RequestEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
