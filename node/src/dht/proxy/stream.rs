//! The DHT through an OpenDHT 2.4 proxy (PROTOCOLS §3), sans-IO: what a jamid with
//! `Account.proxyEnabled` (or behind Tor, where no UDP passes) uses instead of its own
//! node. Each operation is an HTTP/1.1 request on its own TCP stream, asked for with
//! [`StreamCommand`]s (one connection per request, as OpenDHT's client does for its
//! streams): `GET /key/<k>` streams a get's values and ends with it, `GET
//! /key/<k>/listen` streams values and expiries until cancelled, `POST /key/<k>` puts.
//! The answers come back as the engine's [`Event`]s under the op ids given out, so
//! [`SecureDht`](crate::dht::secure::SecureDht) runs on top unchanged ([`ProxyDht`]):
//! same filter, same signed and encrypted puts, same certificate announcement.
//!
//! Failures are events, never panics: a refused or reset stream, a non-200 answer, a
//! malformed response or a deadline ends a get with `GetDone { nodes_answered: 0 }` and
//! a put with `Failed`; a listen is opened again after [`LISTEN_RETRY_MS`].

use super::http1::{LineSplitter, Part, ResponseDecoder};
use super::json;
use crate::device::streams::{StreamCommand, StreamId};
use crate::dht::engine::{Event, OpId};
use crate::dht::secure::{PlainDht, SecureDht};
use crate::dht::{InfoHash, Value};
use std::collections::{BTreeMap, VecDeque};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

/// [`SecureDht`] over a proxy.
pub type ProxyDht = SecureDht<ProxyEngine>;

/// The proxy client's stream ids start here, so a device can tell them from its
/// connection manager's (which count up from small numbers).
pub const STREAM_BASE: u64 = 1 << 62;
/// Deadline of a request: connect, send and the whole answer of a get or put; the head
/// of a listen (OpenDHT's client default, see [`super::client::DEFAULT_TIMEOUT`]).
pub const REQUEST_TIMEOUT_MS: u64 = 10_000;
/// A listen the proxy ended (or never answered) is opened again after this long.
pub const LISTEN_RETRY_MS: u64 = 5_000;
/// `GET /node/info` is asked again this often until the proxy answers.
pub const PROBE_RETRY_MS: u64 = 10_000;
/// Operations at once: each holds a TCP connection on the proxy, so a runaway user
/// cannot open thousands (more are refused with `Failed` / an empty `GetDone`).
pub const MAX_OPS: usize = 512;

/// What the proxy client counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Requests sent (each on its own stream).
    pub requests: u64,
    /// Answers with status 200.
    pub ok: u64,
    /// Requests that failed: refused, reset, timed out, or answered with another status.
    pub failed: u64,
    /// Responses we could not read (malformed head, bad chunking, oversized).
    pub malformed: u64,
    /// Body lines that were no value (skipped, as OpenDHT's client does).
    pub bad_lines: u64,
    /// Listens opened again after the proxy ended them.
    pub relistens: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    /// `GET /node/info`: whether the proxy is there.
    Probe,
    Get,
    Listen,
    Put {
        value: Value,
        permanent: bool,
    },
}

/// One operation and the request serving it now.
struct Op {
    key: InfoHash,
    kind: Kind,
    /// The stream of the current request; `None` while a listen waits to retry.
    stream: Option<StreamId>,
    decoder: ResponseDecoder,
    lines: LineSplitter,
    status: Option<u16>,
    /// Body of a non-200 answer (the proxy's `{"err": ...}`), for the failure reason.
    error_body: Vec<u8>,
    /// Fail (or, for a listen, re-open) at this time.
    deadline: Option<u64>,
    /// A listen re-opens at this time.
    retry_at: Option<u64>,
}

/// The plain DHT as seen through a proxy at `server`.
pub struct ProxyEngine {
    server: SocketAddr,
    host: String,
    now: u64,
    next_op: OpId,
    next_stream: u64,
    ops: BTreeMap<OpId, Op>,
    by_stream: BTreeMap<StreamId, OpId>,
    commands: VecDeque<StreamCommand>,
    events: VecDeque<Event>,
    /// The proxy answered once (`Connected` was reported).
    reachable: bool,
    probe: Option<OpId>,
    probe_at: Option<u64>,
    pub stats: ProxyStats,
}

impl ProxyEngine {
    /// A client of the proxy at `server`; it asks `GET /node/info` at once and reports
    /// [`Event::Connected`] when the proxy answers.
    pub fn new(server: SocketAddr, now: u64) -> ProxyEngine {
        let mut e = ProxyEngine {
            server,
            host: server.to_string(),
            now,
            next_op: 0,
            next_stream: STREAM_BASE,
            ops: BTreeMap::new(),
            by_stream: BTreeMap::new(),
            commands: VecDeque::new(),
            events: VecDeque::new(),
            reachable: false,
            probe: None,
            probe_at: None,
            stats: ProxyStats::default(),
        };
        e.start_probe(now);
        e
    }

    /// The proxy's address.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// Requests in flight (and listens waiting to re-open).
    pub fn ops(&self) -> usize {
        self.ops.len()
    }

    /// Whether `id` is one of ours.
    pub fn owns(id: StreamId) -> bool {
        id.0 >= STREAM_BASE
    }

    fn start_probe(&mut self, now: u64) {
        self.probe_at = None;
        let op = self.start(now, InfoHash([0; 20]), Kind::Probe);
        self.probe = Some(op);
    }

    fn start(&mut self, now: u64, key: InfoHash, kind: Kind) -> OpId {
        self.now = self.now.max(now);
        self.next_op += 1;
        let op = self.next_op;
        if self.ops.len() >= MAX_OPS {
            self.stats.failed += 1;
            self.events.push_back(match kind {
                Kind::Put { .. } => Event::Failed {
                    op,
                    key,
                    reason: format!("more than {MAX_OPS} proxy requests at once"),
                },
                _ => Event::GetDone {
                    op,
                    key,
                    nodes_answered: 0,
                    hops: 0,
                },
            });
            return op;
        }
        self.ops.insert(
            op,
            Op {
                key,
                kind,
                stream: None,
                decoder: ResponseDecoder::new(),
                lines: LineSplitter::default(),
                status: None,
                error_body: Vec::new(),
                deadline: None,
                retry_at: None,
            },
        );
        self.connect(now, op);
        op
    }

    /// Open a stream for `op`'s request (sent once connected).
    fn connect(&mut self, now: u64, op: OpId) {
        let Some(o) = self.ops.get_mut(&op) else {
            return;
        };
        let id = StreamId(self.next_stream);
        self.next_stream += 1;
        o.stream = Some(id);
        o.decoder = ResponseDecoder::new();
        o.lines = LineSplitter::default();
        o.status = None;
        o.error_body.clear();
        o.deadline = Some(now + REQUEST_TIMEOUT_MS);
        o.retry_at = None;
        self.by_stream.insert(id, op);
        let local = match self.server {
            SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
        };
        self.commands.push_back(StreamCommand::Connect {
            id,
            local,
            remote: self.server,
        });
    }

    /// The request bytes of `op`.
    fn request(&self, o: &Op) -> Vec<u8> {
        let (method, path, body) = match &o.kind {
            Kind::Probe => ("GET", "/node/info".to_string(), None),
            Kind::Get => ("GET", format!("/key/{}", o.key), None),
            Kind::Listen => ("GET", format!("/key/{}/listen", o.key), None),
            Kind::Put { value, permanent } => {
                let mut j = json::to_json(value);
                if *permanent {
                    if let serde_json::Value::Object(m) = &mut j {
                        m.insert("permanent".into(), true.into());
                    }
                }
                ("POST", format!("/key/{}", o.key), Some(j.to_string()))
            }
        };
        let mut r = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nConnection: close\r\n",
            self.host
        );
        if let Some(b) = body {
            r.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            ));
        } else {
            r.push_str("\r\n");
        }
        r.into_bytes()
    }

    // ---- stream inputs (the device routes ids >= STREAM_BASE here) -------------------

    pub fn handle_stream_connected(&mut self, now: u64, id: StreamId) {
        self.now = self.now.max(now);
        let Some(o) = self.by_stream.get(&id).and_then(|op| self.ops.get(op)) else {
            return;
        };
        let bytes = self.request(o);
        self.stats.requests += 1;
        self.commands.push_back(StreamCommand::Write { id, bytes });
    }

    pub fn handle_stream_data(&mut self, now: u64, id: StreamId, bytes: &[u8]) {
        self.now = self.now.max(now);
        let Some(&op) = self.by_stream.get(&id) else {
            return;
        };
        let parts = match self.ops.get_mut(&op).map(|o| o.decoder.feed(bytes)) {
            Some(Ok(p)) => p,
            Some(Err(e)) => {
                self.stats.malformed += 1;
                return self.failed(now, op, &format!("proxy answer: {e}"));
            }
            None => return,
        };
        self.parts(now, op, parts);
    }

    pub fn handle_stream_closed(&mut self, now: u64, id: StreamId) {
        self.now = self.now.max(now);
        let Some(op) = self.by_stream.remove(&id) else {
            return;
        };
        let Some(o) = self.ops.get_mut(&op) else {
            return;
        };
        o.stream = None;
        match o.decoder.close() {
            Ok(parts) => self.parts(now, op, parts),
            Err(_) if o.status.is_none() => {
                self.failed(now, op, "the proxy closed the connection without an answer")
            }
            Err(e) => {
                self.stats.malformed += 1;
                self.failed(now, op, &format!("proxy answer: {e}"))
            }
        }
    }

    pub fn poll_stream_command(&mut self) -> Option<StreamCommand> {
        self.commands.pop_front()
    }

    // ---- decoding ----------------------------------------------------------------------

    fn parts(&mut self, now: u64, op: OpId, parts: Vec<Part>) {
        for p in parts {
            let Some(o) = self.ops.get_mut(&op) else {
                return;
            };
            match p {
                Part::Head { status } => {
                    o.status = Some(status);
                    if status == 200 {
                        self.stats.ok += 1;
                        if o.kind == Kind::Listen {
                            // A listen may stay quiet for hours.
                            o.deadline = None;
                        }
                        if !self.reachable {
                            self.reachable = true;
                            self.probe_at = None;
                            self.events.push_back(Event::Connected);
                        }
                    }
                }
                Part::Body(b) if o.status == Some(200) => {
                    let lines = o.lines.push(&b);
                    self.lines(op, lines);
                }
                Part::Body(b) => {
                    let room = 512usize.saturating_sub(o.error_body.len());
                    o.error_body.extend_from_slice(&b[..b.len().min(room)]);
                }
                Part::End => {
                    let last = o.lines.finish();
                    if o.status == Some(200) {
                        self.lines(op, last.into_iter().collect());
                        self.done(now, op);
                    } else {
                        let why = format!(
                            "the proxy answered {}: {}",
                            o.status.unwrap_or(0),
                            String::from_utf8_lossy(&o.error_body).trim()
                        );
                        self.failed(now, op, &why);
                    }
                    return;
                }
            }
        }
    }

    /// Value lines of a 200 answer.
    fn lines(&mut self, op: OpId, lines: Vec<Vec<u8>>) {
        let Some(o) = self.ops.get_mut(&op) else {
            return;
        };
        let key = o.key;
        let (mut values, mut expired) = (Vec::new(), Vec::new());
        for line in lines {
            let text = String::from_utf8_lossy(&line);
            let t = text.trim();
            if t.is_empty() || t == "{}" {
                continue;
            }
            match (&o.kind, json::from_str(t)) {
                // A put's answer is the value as stored; `/node/info` is no value.
                (Kind::Put { .. } | Kind::Probe, _) => {}
                (_, Ok(pv)) if pv.expired => expired.push(pv.value.id),
                (_, Ok(pv)) => values.push(pv.value),
                (_, Err(_)) => self.stats.bad_lines += 1,
            }
        }
        if !values.is_empty() {
            self.events.push_back(Event::Values { op, key, values });
        }
        if !expired.is_empty() {
            self.events.push_back(Event::Expired {
                op,
                key,
                ids: expired,
            });
        }
    }

    /// The answer ended well.
    fn done(&mut self, now: u64, op: OpId) {
        let Some(o) = self.ops.remove(&op) else {
            return;
        };
        if let Some(id) = o.stream {
            self.by_stream.remove(&id);
            self.commands.push_back(StreamCommand::Close { id });
        }
        match o.kind {
            Kind::Probe => self.probe = None,
            Kind::Get => self.events.push_back(Event::GetDone {
                op,
                key: o.key,
                nodes_answered: 1,
                hops: 0,
            }),
            Kind::Put { .. } => self.events.push_back(Event::PutDone {
                op,
                key: o.key,
                stored_on: 1,
            }),
            Kind::Listen => {
                // The proxy ended the listen: open it again later.
                self.ops.insert(op, o);
                self.retry_listen(now, op);
            }
        }
    }

    /// The request failed: report it (a listen waits and re-opens).
    fn failed(&mut self, now: u64, op: OpId, reason: &str) {
        self.stats.failed += 1;
        let Some(o) = self.ops.remove(&op) else {
            return;
        };
        if let Some(id) = o.stream {
            self.by_stream.remove(&id);
            self.commands.push_back(StreamCommand::Close { id });
        }
        let key = o.key;
        match o.kind {
            Kind::Probe => {
                self.probe = None;
                if !self.reachable {
                    self.probe_at = Some(now + PROBE_RETRY_MS);
                }
            }
            Kind::Get => self.events.push_back(Event::GetDone {
                op,
                key,
                nodes_answered: 0,
                hops: 0,
            }),
            Kind::Put { .. } => self.events.push_back(Event::Failed {
                op,
                key,
                reason: reason.to_string(),
            }),
            Kind::Listen => {
                self.ops.insert(op, o);
                self.retry_listen(now, op);
            }
        }
    }

    fn retry_listen(&mut self, now: u64, op: OpId) {
        if let Some(o) = self.ops.get_mut(&op) {
            o.stream = None;
            o.deadline = None;
            o.retry_at = Some(now + LISTEN_RETRY_MS);
        }
    }
}

impl PlainDht for ProxyEngine {
    fn get(&mut self, now: u64, key: InfoHash) -> OpId {
        self.start(now, key, Kind::Get)
    }
    fn listen(&mut self, now: u64, key: InfoHash) -> OpId {
        self.start(now, key, Kind::Listen)
    }
    fn put(&mut self, now: u64, key: InfoHash, value: Value) -> OpId {
        self.start(
            now,
            key,
            Kind::Put {
                value,
                permanent: false,
            },
        )
    }
    /// A put with `"permanent": true`: the proxy keeps it on the DHT (24 h in OpenDHT;
    /// the announcers above refresh theirs far sooner).
    fn put_permanent(&mut self, now: u64, key: InfoHash, value: Value) -> OpId {
        self.start(
            now,
            key,
            Kind::Put {
                value,
                permanent: true,
            },
        )
    }
    fn cancel(&mut self, op: OpId) {
        if let Some(o) = self.ops.remove(&op) {
            if let Some(id) = o.stream {
                self.by_stream.remove(&id);
                self.commands.push_back(StreamCommand::Close { id });
            }
        }
    }
    fn reserve_op(&mut self) -> OpId {
        self.next_op += 1;
        self.next_op
    }
    fn local_values(&self, _key: &InfoHash) -> Vec<Value> {
        Vec::new()
    }
    fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }
    fn handle_timeout(&mut self, now: u64) {
        self.now = self.now.max(now);
        if self.probe_at.is_some_and(|t| t <= now) {
            self.start_probe(now);
        }
        let late: Vec<OpId> = self
            .ops
            .iter()
            .filter(|(_, o)| o.deadline.is_some_and(|t| t <= now))
            .map(|(op, _)| *op)
            .collect();
        for op in late {
            self.failed(now, op, "no answer from the proxy in time");
        }
        let retry: Vec<OpId> = self
            .ops
            .iter()
            .filter(|(_, o)| o.retry_at.is_some_and(|t| t <= now))
            .map(|(op, _)| *op)
            .collect();
        for op in retry {
            self.stats.relistens += 1;
            self.connect(now, op);
        }
    }
    fn poll_timeout(&self) -> Option<u64> {
        self.ops
            .values()
            .flat_map(|o| [o.deadline, o.retry_at])
            .chain([self.probe_at])
            .flatten()
            .min()
    }
    fn now(&self) -> u64 {
        self.now
    }
    fn reachable(&self) -> bool {
        self.reachable
    }
}

#[cfg(test)]
mod tests;
