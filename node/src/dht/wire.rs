//! OpenDHT 2.4.12 UDP messages (PROTOCOLS §1.2–1.6), byte-exact.
//!
//! [`encode`] writes the keys in the order `network_engine.cpp` packs them, so
//! our datagrams are indistinguishable from a 2.4.12 node's. [`decode`] mirrors
//! `ParsedMessage::msgpack_unpack`: key order is irrelevant, the last
//! duplicate envelope/argument key wins, absent ids/hashes/tokens decode as
//! zero/empty (the node layer answers those like OpenDHT: drop, 203, 401), and
//! anything OpenDHT would throw on is a [`WireError`].

use super::infohash::{InfoHash, HASH_LEN};
use super::msgpack::{self, Kind, MsgpackError, Node, Writer};
use super::value::unpack_blob;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use thiserror::Error;

/// User agent sent by 2.4.x nodes.
pub const USER_AGENT: &str = "RNG1";
/// Values are inlined only if fewer than this many…
pub const MAX_INLINE_VALUES: usize = 50;
/// …and their packed sizes sum to less than this (`MAX_PACKET_VALUE_SIZE`).
pub const MAX_PACKET_VALUE_SIZE: usize = 600;
/// Bytes of one value carried by one part datagram (`MTU`).
pub const PART_SIZE: usize = 1280;
/// `MAX_VALUE_SIZE`; declared part sizes above this + 32 are ignored.
pub const MAX_VALUE_SIZE: u64 = 64 * 1024;
/// Seconds allowed between two parts (`RX_TIMEOUT`).
pub const RX_TIMEOUT_SECS: u64 = 3;
/// Seconds allowed for a whole fragmented message (`RX_MAX_PACKET_TIME`).
pub const RX_MAX_PACKET_TIME_SECS: u64 = 10;
/// Numeric address families as Linux OpenDHT sends them in `w`.
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;

const NODE4_LEN: usize = HASH_LEN + 6;
const NODE6_LEN: usize = HASH_LEN + 18;

/// Why a datagram was rejected (OpenDHT drops it silently).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    #[error("malformed msgpack: {0}")]
    Msgpack(#[from] MsgpackError),
    #[error("top level is not a map")]
    NotAMap,
    #[error("key `{0}` has the wrong type or is out of range")]
    BadField(&'static str),
    #[error("missing mandatory key `{0}`")]
    Missing(&'static str),
    #[error("not a query, reply, error or value part")]
    UnknownKind,
    #[error("node info blob length is not a multiple of 26/38 (OpenDHT error 423)")]
    BadNodeInfoLength,
    #[error("empty field selection in `fileds`")]
    EmptyFieldSelection,
}

/// One datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Transaction id (`t`); for legacy listener pushes, the listen socket id.
    pub tid: u32,
    /// Network id (`n`); emitted only when non-zero.
    pub network: u32,
    /// `s` ("is client"); parsed, never emitted by 2.4.12.
    pub is_client: bool,
    pub body: MessageBody,
}

/// The message kinds of 2.4.12.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageBody {
    Ping {
        id: InfoHash,
    },
    Find(Find),
    Get(Get),
    Listen(Listen),
    Put(Put),
    Refresh(Refresh),
    Update(Update),
    /// Every `r` message: pong, find/get answers, listen/update confirmations,
    /// put/refresh acknowledgements (the wire does not say which; match by tid).
    Reply(Reply),
    /// Legacy (listener version 0) refreshed/expired push: `u`.
    LegacyUpdate(LegacyUpdate),
    Error(ErrorMsg),
    /// `y:"p"`: value bytes by index in the header's `values` list.
    ValueParts(BTreeMap<u32, ValuePart>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Find {
    pub id: InfoHash,
    pub target: InfoHash,
    /// `w`: wanted families (absent = the transport's family).
    pub want: Option<Vec<u16>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Get {
    pub id: InfoHash,
    /// Zero when absent (OpenDHT answers 203).
    pub h: InfoHash,
    pub query: Option<Query>,
    pub want: Option<Vec<u16>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    pub id: InfoHash,
    /// `ve`; 1 in 2.4.x, 0 when absent (legacy listener).
    pub version: i32,
    pub h: InfoHash,
    pub token: Vec<u8>,
    pub sid: u32,
    pub query: Option<Query>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Put {
    pub id: InfoHash,
    pub h: InfoHash,
    pub values: Vec<ValueSlot>,
    /// `c`: creation time (Unix seconds), sent only when in the past.
    pub created: Option<i64>,
    pub token: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refresh {
    pub id: InfoHash,
    pub h: InfoHash,
    pub vid: u64,
    pub token: Vec<u8>,
}

/// `q:"update"`, storing node → listener. Two shapes: with `values` (new
/// values: `id, ve, h, sid, values, c, token`) or without (refreshed/expired
/// ids: `id, sid, token, re|exp`, no `h`, no `ve`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub id: InfoHash,
    pub version: i32,
    pub h: Option<InfoHash>,
    pub sid: u32,
    pub values: Option<Vec<ValueSlot>>,
    pub created: Option<i64>,
    pub token: Vec<u8>,
    pub refreshed: Vec<u64>,
    pub expired: Vec<u64>,
}

/// Reply body (`r`). Fields are emitted in the order
/// `id, vid, sa, n4, n6, token, values, fileds`, each only when present.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reply {
    pub id: InfoHash,
    /// Put/refresh acknowledgement.
    pub vid: Option<u64>,
    /// The requester's IP as the responder saw it.
    pub sa: Option<IpAddr>,
    /// `n4` entries (IPv4 addresses only).
    pub nodes4: Vec<NodeInfo>,
    /// `n6` entries (IPv6 addresses only).
    pub nodes6: Vec<NodeInfo>,
    /// Emitted when non-empty.
    pub token: Vec<u8>,
    /// Emitted when non-empty.
    pub values: Vec<ValueSlot>,
    /// `fileds` (sic): field-selected answer.
    pub fields: Option<FieldsReply>,
}

impl Reply {
    /// `{id, sa}`: pong, listen confirmation, update acknowledgement.
    pub fn ack(id: InfoHash, sa: IpAddr) -> Self {
        Reply {
            id,
            sa: Some(sa),
            ..Reply::default()
        }
    }

    /// `{id, vid, sa}`: put/refresh acknowledgement.
    pub fn value_id(id: InfoHash, vid: u64, sa: IpAddr) -> Self {
        Reply {
            id,
            vid: Some(vid),
            sa: Some(sa),
            ..Reply::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyUpdate {
    pub id: InfoHash,
    pub token: Vec<u8>,
    pub refreshed: Vec<u64>,
    pub expired: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorMsg {
    pub code: u16,
    pub msg: String,
    /// Sender id, carried in `r` when present.
    pub id: Option<InfoHash>,
}

/// One fragment of one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValuePart {
    /// `o`: byte offset in the packed value.
    pub offset: u64,
    /// `d`: the bytes.
    pub data: Vec<u8>,
}

/// An entry of a `values` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueSlot {
    /// The exact packed value bytes (parse with `Value::unpack`; OpenDHT
    /// silently skips entries that do not parse).
    Inline(Vec<u8>),
    /// Packed size of a value whose bytes follow in `y:"p"` parts.
    Size(u64),
}

/// A node address as carried in `n4`/`n6`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeInfo {
    pub id: InfoHash,
    pub addr: SocketAddr,
}

/// `Value::Field` numbers.
pub mod field {
    pub const ID: u8 = 1;
    pub const VALUE_TYPE: u8 = 2;
    pub const OWNER_PK: u8 = 3;
    pub const SEQ_NUM: u8 = 4;
    pub const USER_TYPE: u8 = 5;
}

/// Query `q`: `{s: [fields], w: [filters]}`; both keys are mandatory.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Query {
    pub select: Vec<u8>,
    pub filters: Vec<FieldFilter>,
}

/// One `w` element `{f, v}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldFilter {
    Id(u64),
    ValueType(u64),
    OwnerPk(InfoHash),
    UserType(Vec<u8>),
}

/// `fileds: {f: [fields], v: [flattened values]}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldsReply {
    pub fields: Vec<u8>,
    pub values: Vec<FieldEntry>,
}

/// A flattened field value as 2.4.12 packs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldEntry {
    /// Id, ValueType, SeqNum.
    Uint(u64),
    /// OwnerPk (packed public key, or a zero InfoHash).
    Bin(Vec<u8>),
    /// UserType.
    Str(Vec<u8>),
    /// Anything else, kept verbatim (already-encoded msgpack).
    Raw(Vec<u8>),
}

// ---------------------------------------------------------------- encoding

/// Serialise exactly as OpenDHT 2.4.12 would.
pub fn encode(m: &Message) -> Vec<u8> {
    let mut w = Writer::new();
    let net = usize::from(m.network != 0);
    match &m.body {
        MessageBody::Ping { id } => {
            query_head(&mut w, net, 1).str("id").bin(&id.0);
            query_tail(&mut w, m, "ping");
        }
        MessageBody::Find(f) => encode_find(&mut w, m, f),
        MessageBody::Get(g) => encode_get(&mut w, m, g),
        MessageBody::Listen(l) => encode_listen(&mut w, m, l),
        MessageBody::Put(p) => encode_put(&mut w, m, p),
        MessageBody::Refresh(r) => {
            query_head(&mut w, net, 4).str("id").bin(&r.id.0);
            w.str("h").bin(&r.h.0).str("vid").uint(r.vid);
            w.str("token").bin(&r.token);
            query_tail(&mut w, m, "refresh");
        }
        MessageBody::Update(u) if u.values.is_some() => encode_update_values(&mut w, m, u),
        MessageBody::Update(u) => encode_update_ids(&mut w, m, u),
        MessageBody::Reply(r) => {
            w.map_len(4 + net).str("r");
            encode_reply(&mut w, r);
            w.str("t").uint(u64::from(m.tid)).str("y").str("r");
            ua_net(&mut w, m);
        }
        MessageBody::LegacyUpdate(u) => {
            w.map_len(4 + net).str("u");
            let n = 1 + [
                !u.token.is_empty(),
                !u.refreshed.is_empty(),
                !u.expired.is_empty(),
            ]
            .iter()
            .filter(|b| **b)
            .count();
            w.map_len(n).str("id").bin(&u.id.0);
            ids_tail(&mut w, &u.token, &u.refreshed, &u.expired);
            w.str("y").str("r");
            ua_net(&mut w, m);
            w.str("t").uint(u64::from(m.tid));
        }
        MessageBody::Error(e) => {
            w.map_len(4 + usize::from(e.id.is_some()) + net);
            w.str("e").array_len(2).uint(u64::from(e.code)).str(&e.msg);
            if let Some(id) = e.id {
                w.str("r").map_len(1).str("id").bin(&id.0);
            }
            w.str("t").uint(u64::from(m.tid)).str("y").str("e");
            ua_net(&mut w, m);
        }
        MessageBody::ValueParts(parts) => {
            w.map_len(3 + net);
            if m.network != 0 {
                w.str("n").uint(u64::from(m.network));
            }
            w.str("y").str("p").str("t").uint(u64::from(m.tid));
            w.str("p").map_len(parts.len());
            for (i, p) in parts {
                w.uint(u64::from(*i)).map_len(2);
                w.str("o").uint(p.offset).str("d").bin(&p.data);
            }
        }
    }
    w.into_bytes()
}

/// `{a: {<n entries>` — the start of every query.
fn query_head(w: &mut Writer, net: usize, entries: usize) -> &mut Writer {
    w.map_len(5 + net).str("a").map_len(entries)
}

/// `q, t, y:"q", v[, n]` — the end of every query but the id-only update.
fn query_tail(w: &mut Writer, m: &Message, q: &str) {
    w.str("q").str(q).str("t").uint(u64::from(m.tid));
    w.str("y").str("q");
    ua_net(w, m);
}

fn ua_net(w: &mut Writer, m: &Message) {
    w.str("v").str(USER_AGENT);
    if m.network != 0 {
        w.str("n").uint(u64::from(m.network));
    }
}

fn encode_find(w: &mut Writer, m: &Message, f: &Find) {
    let net = usize::from(m.network != 0);
    query_head(w, net, 2 + usize::from(f.want.is_some()));
    w.str("id").bin(&f.id.0).str("target").bin(&f.target.0);
    encode_want(w, &f.want);
    query_tail(w, m, "find");
}

fn encode_get(w: &mut Writer, m: &Message, g: &Get) {
    let net = usize::from(m.network != 0);
    let n = 2 + usize::from(g.query.is_some()) + usize::from(g.want.is_some());
    query_head(w, net, n)
        .str("id")
        .bin(&g.id.0)
        .str("h")
        .bin(&g.h.0);
    if let Some(q) = &g.query {
        w.str("q");
        encode_query(w, q);
    }
    encode_want(w, &g.want);
    query_tail(w, m, "get");
}

fn encode_listen(w: &mut Writer, m: &Message, l: &Listen) {
    let net = usize::from(m.network != 0);
    query_head(w, net, 5 + usize::from(l.query.is_some()));
    w.str("id").bin(&l.id.0).str("ve").int(i64::from(l.version));
    w.str("h").bin(&l.h.0).str("token").bin(&l.token);
    w.str("sid").uint(u64::from(l.sid));
    if let Some(q) = &l.query {
        w.str("q");
        encode_query(w, q);
    }
    query_tail(w, m, "listen");
}

fn encode_put(w: &mut Writer, m: &Message, p: &Put) {
    let net = usize::from(m.network != 0);
    query_head(w, net, 4 + usize::from(p.created.is_some()));
    w.str("id").bin(&p.id.0).str("h").bin(&p.h.0);
    encode_values(w, &p.values);
    if let Some(c) = p.created {
        w.str("c").int(c);
    }
    w.str("token").bin(&p.token);
    query_tail(w, m, "put");
}

fn encode_update_values(w: &mut Writer, m: &Message, u: &Update) {
    let net = usize::from(m.network != 0);
    query_head(w, net, 6 + usize::from(u.created.is_some()));
    w.str("id").bin(&u.id.0).str("ve").int(i64::from(u.version));
    w.str("h").bin(&u.h.unwrap_or_default().0);
    w.str("sid").uint(u64::from(u.sid));
    encode_values(w, u.values.as_deref().unwrap_or_default());
    if let Some(c) = u.created {
        w.str("c").int(c);
    }
    w.str("token").bin(&u.token);
    query_tail(w, m, "update");
}

/// `tellListenerRefreshed/Expired` (version ≥ 1): `a, y, v[, n], q, t`.
fn encode_update_ids(w: &mut Writer, m: &Message, u: &Update) {
    let net = usize::from(m.network != 0);
    let n = 2 + [
        !u.token.is_empty(),
        !u.refreshed.is_empty(),
        !u.expired.is_empty(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    query_head(w, net, n).str("id").bin(&u.id.0);
    w.str("sid").uint(u64::from(u.sid));
    ids_tail(w, &u.token, &u.refreshed, &u.expired);
    w.str("y").str("q");
    ua_net(w, m);
    w.str("q").str("update").str("t").uint(u64::from(m.tid));
}

fn ids_tail(w: &mut Writer, token: &[u8], refreshed: &[u64], expired: &[u64]) {
    if !token.is_empty() {
        w.str("token").bin(token);
    }
    for (key, ids) in [("re", refreshed), ("exp", expired)] {
        if !ids.is_empty() {
            w.str(key).array_len(ids.len());
            for id in ids {
                w.uint(*id);
            }
        }
    }
}

fn encode_reply(w: &mut Writer, r: &Reply) {
    let n4 = pack_nodes(&r.nodes4, NODE4_LEN);
    let n6 = pack_nodes(&r.nodes6, NODE6_LEN);
    let count = 1 + [
        r.vid.is_some(),
        r.sa.is_some(),
        !n4.is_empty(),
        !n6.is_empty(),
        !r.token.is_empty(),
        !r.values.is_empty(),
        r.fields.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    w.map_len(count).str("id").bin(&r.id.0);
    if let Some(vid) = r.vid {
        w.str("vid").uint(vid);
    }
    match r.sa {
        Some(IpAddr::V4(a)) => {
            w.str("sa").bin(&a.octets());
        }
        Some(IpAddr::V6(a)) => {
            w.str("sa").bin(&a.octets());
        }
        None => {}
    }
    for (key, blob) in [("n4", &n4), ("n6", &n6)] {
        if !blob.is_empty() {
            w.str(key).bin(blob);
        }
    }
    if !r.token.is_empty() {
        w.str("token").bin(&r.token);
    }
    if !r.values.is_empty() {
        encode_values(w, &r.values);
    }
    if let Some(f) = &r.fields {
        w.str("fileds")
            .map_len(2)
            .str("f")
            .array_len(f.fields.len());
        for x in &f.fields {
            w.uint(u64::from(*x));
        }
        w.str("v").array_len(f.values.len());
        for v in &f.values {
            match v {
                FieldEntry::Uint(u) => w.uint(*u),
                FieldEntry::Bin(b) => w.bin(b),
                FieldEntry::Str(s) => w.str_bytes(s),
                FieldEntry::Raw(r) => w.raw(r),
            };
        }
    }
}

/// Concatenated node infos of one family (entries of the other family skipped).
fn pack_nodes(nodes: &[NodeInfo], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(nodes.len() * len);
    for n in nodes {
        match (n.addr, len) {
            (SocketAddr::V4(a), NODE4_LEN) => {
                out.extend_from_slice(&n.id.0);
                out.extend_from_slice(&a.ip().octets());
                out.extend_from_slice(&a.port().to_be_bytes());
            }
            (SocketAddr::V6(a), NODE6_LEN) => {
                out.extend_from_slice(&n.id.0);
                out.extend_from_slice(&a.ip().octets());
                out.extend_from_slice(&a.port().to_be_bytes());
            }
            _ => {}
        }
    }
    out
}

fn encode_values(w: &mut Writer, values: &[ValueSlot]) {
    w.str("values").array_len(values.len());
    for v in values {
        match v {
            ValueSlot::Inline(b) => w.raw(b),
            ValueSlot::Size(s) => w.uint(*s),
        };
    }
}

fn encode_want(w: &mut Writer, want: &Option<Vec<u16>>) {
    if let Some(list) = want {
        w.str("w").array_len(list.len());
        for af in list {
            w.uint(u64::from(*af));
        }
    }
}

fn encode_query(w: &mut Writer, q: &Query) {
    w.map_len(2).str("s").array_len(q.select.len());
    for f in &q.select {
        w.uint(u64::from(*f));
    }
    w.str("w").array_len(q.filters.len());
    for f in &q.filters {
        w.map_len(2).str("f");
        match f {
            FieldFilter::Id(v) => w.uint(u64::from(field::ID)).str("v").uint(*v),
            FieldFilter::ValueType(v) => w.uint(u64::from(field::VALUE_TYPE)).str("v").uint(*v),
            FieldFilter::OwnerPk(h) => w.uint(u64::from(field::OWNER_PK)).str("v").bin(&h.0),
            FieldFilter::UserType(b) => w.uint(u64::from(field::USER_TYPE)).str("v").bin(b),
        };
    }
}

// ---------------------------------------------------------------- decoding

/// Envelope keys collected from the top-level map (last duplicate wins).
#[derive(Default)]
struct Envelope<'n, 'a> {
    y: Option<&'n Node<'a>>,
    r: Option<&'n Node<'a>>,
    u: Option<&'n Node<'a>>,
    e: Option<&'n Node<'a>>,
    p: Option<&'n Node<'a>>,
    a: Option<&'n Node<'a>>,
    q: Option<&'a [u8]>,
    tid: u32,
    network: u32,
    is_client: bool,
}

/// Argument/reply keys (`ParsedMessage` fields), last duplicate wins.
#[derive(Default)]
struct Args<'n, 'a> {
    sid: u32,
    id: InfoHash,
    h: Option<InfoHash>,
    target: InfoHash,
    query: Option<Query>,
    token: Vec<u8>,
    vid: Option<u64>,
    n4: Vec<u8>,
    n6: Vec<u8>,
    sa: Option<&'n Node<'a>>,
    created: Option<i64>,
    values: Option<&'n Node<'a>>,
    expired: Vec<u64>,
    refreshed: Vec<u64>,
    fields: Option<&'n Node<'a>>,
    want: Option<&'n Node<'a>>,
    version: i32,
}

/// Parse one datagram. Trailing bytes after the map are ignored, as
/// msgpack-c's `unpack` does.
pub fn decode(buf: &[u8]) -> Result<Message, WireError> {
    let (root, _) = msgpack::parse_prefix(buf)?;
    let env = envelope(&root)?;
    let body = classify(&env)?;
    Ok(Message {
        tid: env.tid,
        network: env.network,
        is_client: env.is_client,
        body,
    })
}

fn envelope<'n, 'a>(root: &'n Node<'a>) -> Result<Envelope<'n, 'a>, WireError> {
    let map = root.as_map().ok_or(WireError::NotAMap)?;
    let mut env = Envelope::default();
    for (k, v) in map {
        let Kind::Str(key) = k.kind else { continue };
        match key {
            b"y" => env.y = Some(v),
            b"r" => env.r = Some(v),
            b"u" => env.u = Some(v),
            b"e" => env.e = Some(v),
            b"p" => env.p = Some(v),
            b"a" => env.a = Some(v),
            b"t" => env.tid = tid(v).ok_or(WireError::BadField("t"))?,
            b"v" => {
                v.as_str_bytes().ok_or(WireError::BadField("v"))?;
            }
            b"n" => env.network = u32_of(v).ok_or(WireError::BadField("n"))?,
            b"s" => env.is_client = v.as_bool().ok_or(WireError::BadField("s"))?,
            b"q" => env.q = Some(v.as_str_bytes().ok_or(WireError::BadField("q"))?),
            _ => {}
        }
    }
    Ok(env)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum QueryKind {
    Ping,
    Find,
    Get,
    Listen,
    Put,
    Refresh,
    Update,
}

fn classify(env: &Envelope<'_, '_>) -> Result<MessageBody, WireError> {
    if env.e.is_none() && env.r.is_none() {
        if let Some(p) = env.p {
            return Ok(MessageBody::ValueParts(value_parts(p)?));
        }
    }
    let query = if env.e.is_some() || env.r.is_some() || env.u.is_some() {
        None
    } else {
        if let Some(y) = env.y {
            if y.as_str_bytes() != Some(b"q".as_slice()) {
                return Err(WireError::UnknownKind);
            }
        }
        Some(match env.q {
            Some(b"ping") => QueryKind::Ping,
            Some(b"find") => QueryKind::Find,
            Some(b"get") => QueryKind::Get,
            Some(b"listen") => QueryKind::Listen,
            Some(b"put") => QueryKind::Put,
            Some(b"refresh") => QueryKind::Refresh,
            Some(b"update") => QueryKind::Update,
            _ => return Err(WireError::UnknownKind),
        })
    };
    let req = env
        .a
        .or(env.r)
        .or(env.u)
        .ok_or(WireError::Missing("a"))
        .or_else(|e| {
            if env.e.is_some() {
                Ok(&EMPTY_MAP)
            } else {
                Err(e)
            }
        })?;
    let args = args(req)?;
    if let Some(e) = env.e {
        return error_body(e, env.r.map(|_| args.id));
    }
    let values = args.values.map(values_list).transpose()?;
    let want = args.want.map(want_list).transpose()?;
    Ok(match query {
        None if env.r.is_some() => MessageBody::Reply(reply_body(args, values)?),
        None => MessageBody::LegacyUpdate(LegacyUpdate {
            id: args.id,
            token: args.token,
            refreshed: args.refreshed,
            expired: args.expired,
        }),
        Some(kind) => query_body(kind, args, values, want),
    })
}

/// Stand-in for an error without `r` (OpenDHT then reads no id).
static EMPTY_MAP: Node<'static> = Node {
    kind: Kind::Map(Vec::new()),
    raw: &[0x80],
};

fn query_body(
    kind: QueryKind,
    a: Args<'_, '_>,
    values: Option<Vec<ValueSlot>>,
    want: Option<Vec<u16>>,
) -> MessageBody {
    let h = a.h.unwrap_or_default();
    match kind {
        QueryKind::Ping => MessageBody::Ping { id: a.id },
        QueryKind::Find => MessageBody::Find(Find {
            id: a.id,
            target: a.target,
            want,
        }),
        QueryKind::Get => MessageBody::Get(Get {
            id: a.id,
            h,
            query: a.query,
            want,
        }),
        QueryKind::Listen => MessageBody::Listen(Listen {
            id: a.id,
            version: a.version,
            h,
            token: a.token,
            sid: a.sid,
            query: a.query,
        }),
        QueryKind::Put => MessageBody::Put(Put {
            id: a.id,
            h,
            values: values.unwrap_or_default(),
            created: a.created,
            token: a.token,
        }),
        QueryKind::Refresh => MessageBody::Refresh(Refresh {
            id: a.id,
            h,
            vid: a.vid.unwrap_or(0),
            token: a.token,
        }),
        QueryKind::Update => MessageBody::Update(Update {
            id: a.id,
            version: a.version,
            h: a.h,
            sid: a.sid,
            values,
            created: a.created,
            token: a.token,
            refreshed: a.refreshed,
            expired: a.expired,
        }),
    }
}

fn reply_body(a: Args<'_, '_>, values: Option<Vec<ValueSlot>>) -> Result<Reply, WireError> {
    let sa = match a.sa {
        None => None,
        Some(n) => sa_addr(n.as_bin().ok_or(WireError::BadField("sa"))?),
    };
    // OpenDHT ignores `fileds` when `values` is present.
    let fields = match (&values, a.fields) {
        (None, Some(f)) => Some(fields_reply(f)?),
        _ => None,
    };
    Ok(Reply {
        id: a.id,
        vid: a.vid,
        sa,
        nodes4: unpack_nodes(&a.n4, NODE4_LEN)?,
        nodes6: unpack_nodes(&a.n6, NODE6_LEN)?,
        token: a.token,
        values: values.unwrap_or_default(),
        fields,
    })
}

fn error_body(e: &Node<'_>, id: Option<InfoHash>) -> Result<MessageBody, WireError> {
    let items = e.as_array().ok_or(WireError::BadField("e"))?;
    let code = items
        .first()
        .and_then(|c| c.as_u64())
        .and_then(|c| u16::try_from(c).ok())
        .ok_or(WireError::BadField("e"))?;
    let msg = items
        .get(1)
        .and_then(Node::as_str_bytes)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .unwrap_or_default();
    Ok(MessageBody::Error(ErrorMsg { code, msg, id }))
}

fn args<'n, 'a>(req: &'n Node<'a>) -> Result<Args<'n, 'a>, WireError> {
    let map = req.as_map().ok_or(WireError::BadField("a"))?;
    let mut a = Args::default();
    for (k, v) in map {
        let Kind::Str(key) = k.kind else { continue };
        match key {
            b"sid" => a.sid = tid(v).ok_or(WireError::BadField("sid"))?,
            b"id" => a.id = hash(v, "id")?,
            b"h" => a.h = Some(hash(v, "h")?),
            b"target" => a.target = hash(v, "target")?,
            b"q" => a.query = Some(query(v)?),
            b"token" => a.token = blob(v, "token")?,
            b"vid" => a.vid = Some(v.as_u64().ok_or(WireError::BadField("vid"))?),
            b"n4" => a.n4 = blob(v, "n4")?,
            b"n6" => a.n6 = blob(v, "n6")?,
            b"sa" => a.sa = Some(v),
            b"c" => a.created = Some(v.as_i64().ok_or(WireError::BadField("c"))?),
            b"values" => a.values = Some(v),
            b"exp" => a.expired = ids(v).ok_or(WireError::BadField("exp"))?,
            b"re" => a.refreshed = ids(v).ok_or(WireError::BadField("re"))?,
            b"fileds" => a.fields = Some(v),
            b"w" => a.want = Some(v),
            b"ve" => {
                a.version = v
                    .as_i64()
                    .and_then(|x| i32::try_from(x).ok())
                    .ok_or(WireError::BadField("ve"))?
            }
            _ => {}
        }
    }
    Ok(a)
}

/// `unpackTid`: a uint32, or 4 bytes read big-endian (very old peers).
fn tid(n: &Node<'_>) -> Option<u32> {
    match &n.kind {
        Kind::Uint(u) => u32::try_from(*u).ok(),
        Kind::Bin(b) | Kind::Str(b) => <[u8; 4]>::try_from(*b).ok().map(u32::from_be_bytes),
        Kind::Array(items) if items.len() == 4 => {
            let mut out = 0u32;
            for i in items {
                let byte = match i.kind {
                    Kind::Uint(u) if u <= 0xff => u as u8,
                    Kind::Int(x) if x >= -128 => x as i8 as u8,
                    _ => return None,
                };
                out = (out << 8) | u32::from(byte);
            }
            Some(out)
        }
        _ => None,
    }
}

fn u32_of(n: &Node<'_>) -> Option<u32> {
    n.as_u64().and_then(|u| u32::try_from(u).ok())
}

fn hash(n: &Node<'_>, key: &'static str) -> Result<InfoHash, WireError> {
    n.as_bin()
        .and_then(InfoHash::from_slice)
        .ok_or(WireError::BadField(key))
}

fn blob(n: &Node<'_>, key: &'static str) -> Result<Vec<u8>, WireError> {
    unpack_blob(n).ok_or(WireError::BadField(key))
}

fn ids(n: &Node<'_>) -> Option<Vec<u64>> {
    n.as_array()?.iter().map(Node::as_u64).collect()
}

fn sa_addr(b: &[u8]) -> Option<IpAddr> {
    if let Ok(a) = <[u8; 4]>::try_from(b) {
        return Some(IpAddr::V4(Ipv4Addr::from(a)));
    }
    <[u8; 16]>::try_from(b)
        .ok()
        .map(|a| IpAddr::V6(Ipv6Addr::from(a)))
}

fn query(n: &Node<'_>) -> Result<Query, WireError> {
    if n.as_map().is_none() {
        return Err(WireError::BadField("q"));
    }
    let filters = n.get("w").ok_or(WireError::Missing("q.w"))?;
    let select = n.get("s").ok_or(WireError::Missing("q.s"))?;
    let filters = filters
        .as_array()
        .ok_or(WireError::BadField("q.w"))?
        .iter()
        .map(field_filter)
        .collect::<Result<_, _>>()?;
    Ok(Query {
        select: field_list(select).ok_or(WireError::BadField("q.s"))?,
        filters,
    })
}

fn field_list(n: &Node<'_>) -> Option<Vec<u8>> {
    n.as_array()?
        .iter()
        .map(|f| f.as_u64().and_then(|x| u8::try_from(x).ok()))
        .collect()
}

fn field_filter(n: &Node<'_>) -> Result<FieldFilter, WireError> {
    let bad = WireError::BadField("q.w");
    if n.as_map().is_none() {
        return Err(bad);
    }
    let f = n.get("f").and_then(Node::as_u64).ok_or(bad.clone())?;
    let v = n.get("v").ok_or(bad.clone())?;
    match u8::try_from(f).unwrap_or(0) {
        field::ID => v.as_u64().map(FieldFilter::Id).ok_or(bad),
        field::VALUE_TYPE => v.as_u64().map(FieldFilter::ValueType).ok_or(bad),
        field::OWNER_PK => hash(v, "q.w").map(FieldFilter::OwnerPk),
        field::USER_TYPE => unpack_blob(v).map(FieldFilter::UserType).ok_or(bad),
        _ => Err(bad),
    }
}

fn values_list(n: &Node<'_>) -> Result<Vec<ValueSlot>, WireError> {
    let items = n.as_array().ok_or(WireError::BadField("values"))?;
    Ok(items
        .iter()
        .map(|v| match v.kind {
            Kind::Uint(size) => ValueSlot::Size(size),
            _ => ValueSlot::Inline(v.raw.to_vec()),
        })
        .collect())
}

/// `w`: entries that are not a u16 are skipped, as OpenDHT does.
fn want_list(n: &Node<'_>) -> Result<Vec<u16>, WireError> {
    let items = n.as_array().ok_or(WireError::BadField("w"))?;
    Ok(items
        .iter()
        .filter_map(|i| i.as_u64().and_then(|x| u16::try_from(x).ok()))
        .collect())
}

fn fields_reply(n: &Node<'_>) -> Result<FieldsReply, WireError> {
    if n.as_map().is_none() {
        return Err(WireError::BadField("fileds"));
    }
    let f = n.get("f").ok_or(WireError::Missing("fileds.f"))?;
    let fields = field_list(f).ok_or(WireError::BadField("fileds.f"))?;
    if fields.is_empty() {
        return Err(WireError::EmptyFieldSelection);
    }
    let values = match n.get("v") {
        None => Vec::new(),
        Some(v) => v
            .as_array()
            .ok_or(WireError::BadField("fileds.v"))?
            .iter()
            .map(|x| match x.kind {
                Kind::Uint(u) => FieldEntry::Uint(u),
                Kind::Bin(b) => FieldEntry::Bin(b.to_vec()),
                Kind::Str(s) => FieldEntry::Str(s.to_vec()),
                _ => FieldEntry::Raw(x.raw.to_vec()),
            })
            .collect(),
    };
    Ok(FieldsReply { fields, values })
}

fn value_parts(p: &Node<'_>) -> Result<BTreeMap<u32, ValuePart>, WireError> {
    let bad = WireError::BadField("p");
    let map = p.as_map().ok_or(bad.clone())?;
    let mut parts = BTreeMap::new();
    for (k, v) in map {
        let index = u32_of(k).ok_or(bad.clone())?;
        if v.as_map().is_none() {
            return Err(bad);
        }
        let (Some(o), Some(d)) = (v.get("o"), v.get("d")) else {
            continue;
        };
        let offset = o.as_u64().ok_or(bad.clone())?;
        let data = unpack_blob(d).ok_or(bad.clone())?;
        parts.entry(index).or_insert(ValuePart { offset, data });
    }
    Ok(parts)
}

fn unpack_nodes(blob: &[u8], len: usize) -> Result<Vec<NodeInfo>, WireError> {
    if !blob.len().is_multiple_of(len) {
        return Err(WireError::BadNodeInfoLength);
    }
    Ok(blob.chunks_exact(len).filter_map(node_info).collect())
}

fn node_info(c: &[u8]) -> Option<NodeInfo> {
    let id = InfoHash::from_slice(c.get(..HASH_LEN)?)?;
    let rest = c.get(HASH_LEN..)?;
    let addr = match rest.len() {
        6 => {
            let ip: [u8; 4] = rest.get(..4)?.try_into().ok()?;
            let port = u16::from_be_bytes(rest.get(4..)?.try_into().ok()?);
            SocketAddr::V4(SocketAddrV4::new(ip.into(), port))
        }
        _ => {
            let ip: [u8; 16] = rest.get(..16)?.try_into().ok()?;
            let port = u16::from_be_bytes(rest.get(16..)?.try_into().ok()?);
            SocketAddr::V6(SocketAddrV6::new(ip.into(), port, 0, 0))
        }
    };
    Some(NodeInfo { id, addr })
}

impl Message {
    /// The `values` list of a put, update or reply.
    pub fn values(&self) -> Option<&Vec<ValueSlot>> {
        match &self.body {
            MessageBody::Put(p) => Some(&p.values),
            MessageBody::Update(u) => u.values.as_ref(),
            MessageBody::Reply(r) => Some(&r.values),
            _ => None,
        }
    }

    fn values_mut(&mut self) -> Option<&mut Vec<ValueSlot>> {
        match &mut self.body {
            MessageBody::Put(p) => Some(&mut p.values),
            MessageBody::Update(u) => u.values.as_mut(),
            MessageBody::Reply(r) => Some(&mut r.values),
            _ => None,
        }
    }

    /// Wanted families as OpenDHT's bitmask: bit 0 = IPv4, bit 1 = IPv6;
    /// `None` when `w` is absent (use the transport's family).
    pub fn want_mask(want: &Option<Vec<u16>>) -> Option<u8> {
        want.as_ref().map(|w| {
            w.iter().fold(0, |m, af| match *af {
                AF_INET => m | 1,
                AF_INET6 => m | 2,
                _ => m,
            })
        })
    }
}

// ---------------------------------------------------------- fragmentation

/// Decide how packed values travel (`packValueHeader`): inline when fewer
/// than 50 totalling under 600 bytes, else as sizes with the blobs returned
/// for [`value_parts_messages`].
pub fn pack_values(packed: Vec<Vec<u8>>) -> (Vec<ValueSlot>, Vec<Vec<u8>>) {
    let total: usize = packed.iter().map(Vec::len).sum();
    if packed.len() < MAX_INLINE_VALUES && total < MAX_PACKET_VALUE_SIZE {
        (
            packed.into_iter().map(ValueSlot::Inline).collect(),
            Vec::new(),
        )
    } else {
        let sizes = packed
            .iter()
            .map(|b| ValueSlot::Size(b.len() as u64))
            .collect();
        (sizes, packed)
    }
}

/// The `y:"p"` datagrams carrying `blobs` (`sendValueParts`): one per
/// ≤ 1280-byte chunk, indexed by the value's position.
pub fn value_parts_messages(tid: u32, network: u32, blobs: &[Vec<u8>]) -> Vec<Message> {
    let mut out = Vec::new();
    for (i, v) in blobs.iter().enumerate() {
        let index = u32::try_from(i).unwrap_or(u32::MAX);
        let mut start = 0;
        loop {
            let end = (start + PART_SIZE).min(v.len());
            let data = v.get(start..end).unwrap_or_default().to_vec();
            let part = ValuePart {
                offset: start as u64,
                data,
            };
            out.push(Message {
                tid,
                network,
                is_client: false,
                body: MessageBody::ValueParts(BTreeMap::from([(index, part)])),
            });
            start = end;
            if start >= v.len() {
                break;
            }
        }
    }
    out
}

/// A message waiting for its value parts (receiver side of §1.6). Timeouts
/// ([`RX_TIMEOUT_SECS`], [`RX_MAX_PACKET_TIME_SECS`]) are the caller's job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialMessage {
    msg: Message,
    from: SocketAddr,
    /// index → (declared size, bytes so far)
    parts: BTreeMap<u32, (u64, Vec<u8>)>,
}

impl PartialMessage {
    /// Start reassembly. Returns the message back when it expects no parts
    /// (declared sizes above 64 KiB + 32 are ignored, as OpenDHT does).
    #[allow(clippy::result_large_err)] // ownership goes back to the caller, not an error
    pub fn start(msg: Message, from: SocketAddr) -> Result<Self, Message> {
        let mut parts = BTreeMap::new();
        for (i, slot) in msg.values().into_iter().flatten().enumerate() {
            if let (ValueSlot::Size(s), Ok(i)) = (slot, u32::try_from(i)) {
                if *s <= MAX_VALUE_SIZE + 32 {
                    parts.insert(i, (*s, Vec::new()));
                }
            }
        }
        if parts.is_empty() {
            return Err(msg);
        }
        Ok(PartialMessage { msg, from, parts })
    }

    pub fn tid(&self) -> u32 {
        self.msg.tid
    }

    pub fn from(&self) -> SocketAddr {
        self.from
    }

    /// Append the parts of a `y:"p"` message. Only parts from the same
    /// source, for a known unfinished index, at exactly the current length
    /// are taken. Returns whether anything was appended.
    pub fn append(&mut self, part: &Message, from: SocketAddr) -> bool {
        let MessageBody::ValueParts(incoming) = &part.body else {
            return false;
        };
        if from != self.from || part.tid != self.msg.tid {
            return false;
        }
        let mut appended = false;
        for (i, p) in incoming {
            let Some((size, buf)) = self.parts.get_mut(i) else {
                continue;
            };
            if buf.len() as u64 >= *size || p.offset != buf.len() as u64 {
                continue;
            }
            buf.extend_from_slice(&p.data);
            appended = true;
        }
        appended
    }

    pub fn is_complete(&self) -> bool {
        self.parts
            .values()
            .all(|(size, buf)| buf.len() as u64 >= *size)
    }

    /// The full message with every reassembled value inline (sizes that were
    /// ignored are dropped), or `self` back if parts are still missing.
    #[allow(clippy::result_large_err)] // ownership goes back to the caller, not an error
    pub fn finish(mut self) -> Result<Message, Self> {
        if !self.is_complete() {
            return Err(self);
        }
        let mut parts = std::mem::take(&mut self.parts);
        if let Some(values) = self.msg.values_mut() {
            let old = std::mem::take(values);
            for (i, slot) in old.into_iter().enumerate() {
                let idx = u32::try_from(i).unwrap_or(u32::MAX);
                match slot {
                    ValueSlot::Inline(b) => values.push(ValueSlot::Inline(b)),
                    ValueSlot::Size(_) => {
                        if let Some((_, buf)) = parts.remove(&idx) {
                            values.push(ValueSlot::Inline(buf));
                        }
                    }
                }
            }
        }
        Ok(self.msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id20() -> InfoHash {
        let mut b = [0u8; 20];
        for (i, x) in b.iter_mut().enumerate() {
            *x = i as u8 + 1;
        }
        InfoHash(b)
    }

    #[test]
    fn b3_ping_pong() {
        let ping = Message {
            tid: 0x1234,
            network: 0,
            is_client: false,
            body: MessageBody::Ping { id: id20() },
        };
        let bytes = encode(&ping);
        assert_eq!(
            hex::encode(&bytes),
            "85a16181a26964c4140102030405060708090a0b0c0d0e0f1011121314a171a470696e67a174cd1234a179a171a176a4524e4731"
        );
        assert_eq!(decode(&bytes), Ok(ping));
        let pong = Message {
            tid: 0x1234,
            network: 0,
            is_client: false,
            body: MessageBody::Reply(Reply::ack(id20(), IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)))),
        };
        let bytes = encode(&pong);
        assert_eq!(
            hex::encode(&bytes),
            "84a17282a26964c4140102030405060708090a0b0c0d0e0f1011121314a27361c404c0000201a174cd1234a179a172a176a4524e4731"
        );
        assert_eq!(decode(&bytes), Ok(pong));
    }

    #[test]
    fn tid_tolerances() {
        let mut w = Writer::new();
        w.map_len(4).str("a").map_len(1).str("id").bin(&id20().0);
        w.str("q")
            .str("ping")
            .str("t")
            .bin(&[0, 0, 0x12, 0x34])
            .str("y")
            .str("q");
        assert_eq!(decode(&w.buf).map(|m| m.tid), Ok(0x1234));
        let mut w = Writer::new();
        w.map_len(3)
            .str("a")
            .map_len(0)
            .str("q")
            .str("nope")
            .str("y")
            .str("q");
        assert_eq!(decode(&w.buf), Err(WireError::UnknownKind));
    }

    fn ping_bytes(network: u32) -> Vec<u8> {
        encode(&Message {
            tid: 1,
            network,
            is_client: false,
            body: MessageBody::Ping { id: id20() },
        })
    }

    #[test]
    fn network_id_goes_last_except_in_parts() {
        let b = ping_bytes(5);
        assert_eq!(b.first(), Some(&0x86));
        assert!(hex::encode(&b).ends_with("a176a4524e4731a16e05"));
        let part = Message {
            tid: 1,
            network: 5,
            is_client: false,
            body: MessageBody::ValueParts(BTreeMap::from([(
                0,
                ValuePart {
                    offset: 0,
                    data: vec![1],
                },
            )])),
        };
        assert!(hex::encode(encode(&part)).starts_with("84a16e05a179a170a17401a170"));
    }

    #[test]
    fn rejections() {
        let mut short_id = Writer::new();
        short_id
            .map_len(3)
            .str("a")
            .map_len(1)
            .str("id")
            .bin(&[1; 19]);
        short_id.str("q").str("ping").str("y").str("q");
        assert_eq!(decode(&short_id.buf), Err(WireError::BadField("id")));

        let mut n4 = Writer::new();
        n4.map_len(2).str("r").map_len(2).str("id").bin(&id20().0);
        n4.str("n4").bin(&[0; 27]).str("y").str("r");
        assert_eq!(decode(&n4.buf), Err(WireError::BadNodeInfoLength));

        let mut y = Writer::new();
        y.map_len(3)
            .str("a")
            .map_len(0)
            .str("q")
            .str("ping")
            .str("y")
            .str("x");
        assert_eq!(decode(&y.buf), Err(WireError::UnknownKind));

        let mut sa = Writer::new();
        sa.map_len(1).str("r").map_len(1).str("sa").str("abcd");
        assert_eq!(decode(&sa.buf), Err(WireError::BadField("sa")));

        let mut e = Writer::new();
        e.map_len(1).str("e").map_len(0);
        assert_eq!(decode(&e.buf), Err(WireError::BadField("e")));

        let mut f = Writer::new();
        f.map_len(1).str("r").map_len(1).str("fileds").map_len(2);
        f.str("f").array_len(0).str("v").array_len(0);
        assert_eq!(decode(&f.buf), Err(WireError::EmptyFieldSelection));

        let mut big_tid = Writer::new();
        big_tid.map_len(1).str("t").uint(1 << 32);
        assert_eq!(decode(&big_tid.buf), Err(WireError::BadField("t")));

        assert_eq!(decode(&[0x90]), Err(WireError::NotAMap));
        // Trailing bytes are ignored, as msgpack-c does.
        let mut b = ping_bytes(0);
        b.push(0xc0);
        assert!(decode(&b).is_ok());
    }

    #[test]
    fn fragmentation_round_trip() {
        let blob: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        let (slots, pending) = pack_values(vec![blob.clone()]);
        assert_eq!(slots, vec![ValueSlot::Size(3000)]);
        let parts = value_parts_messages(7, 0, &pending);
        assert_eq!(parts.len(), 3);
        let from: SocketAddr = "127.0.0.1:4222".parse().expect("addr");
        let put = Message {
            tid: 7,
            network: 0,
            is_client: false,
            body: MessageBody::Put(Put {
                id: id20(),
                h: id20(),
                values: slots,
                created: None,
                token: vec![1; 32],
            }),
        };
        let Ok(mut pm) = PartialMessage::start(put, from) else {
            panic!("expected parts")
        };
        // Out of order is dropped; wrong source is dropped.
        assert!(!pm.append(&parts[1], from));
        assert!(!pm.append(&parts[0], "127.0.0.1:1".parse().expect("addr")));
        for p in &parts {
            assert!(pm.append(p, from));
        }
        let full = pm.finish().expect("complete");
        assert_eq!(full.values(), Some(&vec![ValueSlot::Inline(blob)]));
    }
}
