//! SIP MESSAGE over one `sip` channel (PROTOCOLS §6.7), sans-IO: what jamid's
//! `JamiAccount::sendSIPMessage` writes and what its `SIPVoIPLink` answers.
//!
//! Outgoing: a MESSAGE with the headers, in the order, pjsip and jamid put them (Via with
//! a `z9hG4bKPj…` branch, Max-Forwards 70, From with a tag, To, Call-ID, CSeq, Date in
//! `ctime` form, `Message-ID: <16 hex digits of the token>`, User-Agent, Content-Type,
//! Content-Length); the final response ends it, no response within pjsip's Timer F
//! (32 s) fails it. Incoming: a MESSAGE gets a stateless `200 OK` (copied Via, Call-ID,
//! From, To with the branch as tag, CSeq), then one event unless its Message-ID was
//! already seen.
//!
//! Time is `now` in milliseconds since the Unix epoch; randomness comes from a seeded
//! ChaCha20 (tokens, tags, branches, Call-IDs).

use super::message::{param, split_list, uri_user, SipMessage, StartLine};
use super::stream::{StreamDecoder, StreamError, MAX_MESSAGE_LEN};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// pjsip's Timer F for a non-INVITE client transaction (64 × T1 = 32 s): with no final
/// response by then the MESSAGE failed.
pub const TRANSACTION_TIMEOUT_MS: u64 = 32_000;
/// jamid's message tokens are drawn in [1, 2^53] (`JAMI_ID_MAX_VAL`), so they survive
/// a trip through JSON numbers.
pub const TOKEN_MAX: u64 = 1 << 53;
/// Message-IDs remembered for de-duplication; the oldest are forgotten first (jamid
/// keeps its treated ids on disk; a bounded window is enough for retransmissions).
pub const MAX_SEEN_IDS: usize = 4096;
/// MESSAGEs awaiting their response: one per message in flight; beyond that a sender
/// is flooding a peer that does not answer.
pub const MAX_PENDING: usize = 1024;

/// Who we are and who the channel leads to.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    /// Our account id (40 hex).
    pub own_account: String,
    /// Display name put in From (omitted when empty).
    pub display_name: String,
    /// The peer's account id (40 hex).
    pub peer_account: String,
    /// Our address as the channel reports it (`ip:port`), for Via.
    pub local_addr: String,
    /// The peer's address as the channel reports it (`ip:port`), for the request URI.
    pub remote_addr: String,
    pub user_agent: String,
}

/// A message a peer sent us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// Account id from the From URI's user part.
    pub from: String,
    /// The Message-ID header (empty when absent).
    pub message_id: String,
    /// Content-Type as jamid rebuilds it: `type/subtype[;name=value…]`.
    pub mime: String,
    pub body: Vec<u8>,
}

/// Why a MESSAGE we sent failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendFailure {
    Timeout,
    Status(u16),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SipEvent {
    Received(ReceivedMessage),
    /// The peer answered 2xx to the MESSAGE carrying `token`.
    Delivered { token: u64 },
    Failed { token: u64, reason: SendFailure },
    /// Something was dropped; `reason` is the log line.
    Dropped { reason: String },
}

/// Why a message could not be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("invalid MIME type {0:?} (want type/subtype[;name=value])")]
    Mime(String),
    #[error("message of {0} bytes exceeds {MAX_MESSAGE_LEN}: jamid could not receive it")]
    TooLarge(usize),
    #[error("too many messages awaiting a response")]
    Busy,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelStats {
    pub sent: u64,
    pub delivered: u64,
    pub failed: u64,
    pub received: u64,
    pub duplicates: u64,
    /// Requests answered 4xx.
    pub refused: u64,
    /// Messages the stream decoder dropped (malformed or oversized).
    pub dropped: u64,
    /// Responses matching no MESSAGE of ours.
    pub stray_responses: u64,
}

struct Pending {
    token: u64,
    deadline: u64,
}

/// Messaging state of one `sip` channel.
pub struct SipChannel {
    cfg: ChannelConfig,
    rng: ChaCha20Rng,
    decoder: StreamDecoder,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<SipEvent>,
    /// By Via branch.
    pending: BTreeMap<String, Pending>,
    seen: BTreeSet<String>,
    seen_order: VecDeque<String>,
    pub stats: ChannelStats,
}

impl SipChannel {
    pub fn new(cfg: ChannelConfig, seed: u64) -> Self {
        SipChannel {
            cfg,
            rng: ChaCha20Rng::seed_from_u64(seed),
            decoder: StreamDecoder::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            pending: BTreeMap::new(),
            seen: BTreeSet::new(),
            seen_order: VecDeque::new(),
            stats: ChannelStats::default(),
        }
    }

    /// The stream decoder's counters.
    pub fn decoder(&self) -> &StreamDecoder {
        &self.decoder
    }

    /// A fresh message token, as jamid's message engine draws them.
    pub fn new_token(&mut self) -> u64 {
        self.rng.random_range(1..=TOKEN_MAX)
    }

    /// Send `body` as `mime` with a fresh token; returns the token.
    pub fn send_message(&mut self, now: u64, mime: &str, body: &[u8]) -> Result<u64, SendError> {
        let token = self.new_token();
        self.send_with_token(now, token, mime, body)?;
        Ok(token)
    }

    /// Send with a given token (jamid uses one token for the SIP and DHT copies).
    pub fn send_with_token(
        &mut self,
        now: u64,
        token: u64,
        mime: &str,
        body: &[u8],
    ) -> Result<(), SendError> {
        if self.pending.len() >= MAX_PENDING {
            return Err(SendError::Busy);
        }
        let content_type = content_type(mime).ok_or_else(|| SendError::Mime(mime.into()))?;
        let branch = format!("z9hG4bKPj{}", self.uuid());
        let msg = self.message_request(now, token, &branch, &content_type, body);
        let bytes = msg.encode();
        if bytes.len() > MAX_MESSAGE_LEN {
            return Err(SendError::TooLarge(bytes.len()));
        }
        self.transmits.push_back(bytes);
        self.pending.insert(
            branch,
            Pending {
                token,
                deadline: now + TRANSACTION_TIMEOUT_MS,
            },
        );
        self.stats.sent += 1;
        Ok(())
    }

    fn message_request(
        &mut self,
        now: u64,
        token: u64,
        branch: &str,
        content_type: &str,
        body: &[u8],
    ) -> SipMessage {
        let c = &self.cfg;
        let target = format!("sips:{}@{};transport=tls", c.peer_account, c.remote_addr);
        let from = if c.display_name.is_empty() {
            format!("<sip:{}@ring.dht>", c.own_account)
        } else {
            format!("\"{}\" <sip:{}@ring.dht>", c.display_name, c.own_account)
        };
        let via = format!("SIP/2.0/TLS {};rport;branch={branch}", c.local_addr);
        let to = format!("<{target}>");
        let ua = c.user_agent.clone();
        let (tag, call_id) = (self.uuid(), self.uuid());
        // pjsip_endpt_create_request draws the CSeq from pj_rand() below 0x10000.
        let cseq = self.rng.random_range(1..0x10000u32);
        let mut m = SipMessage::request("MESSAGE", &target);
        m.push("Via", via)
            .push("Max-Forwards", "70")
            .push("From", format!("{from};tag={tag}"))
            .push("To", to)
            .push("Call-ID", call_id)
            .push("CSeq", format!("{cseq} MESSAGE"))
            .push("Date", ctime(now / 1000))
            .push("Message-ID", format!("{token:016x}"))
            .push("User-Agent", ua)
            .push("Content-Type", content_type);
        m.body = body.to_vec();
        m
    }

    /// A pjsip unique string (libuuid form, 36 characters).
    fn uuid(&mut self) -> String {
        let b: [u8; 16] = self.rng.random();
        let h = hex::encode(b);
        format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
    }

    /// Bytes read from the channel.
    pub fn handle_stream_data(&mut self, now: u64, bytes: &[u8]) {
        self.decoder.push(bytes);
        while let Some(r) = self.decoder.next() {
            match r {
                Ok(m) => self.handle_message(now, m),
                Err(e) => self.dropped(e),
            }
        }
    }

    fn dropped(&mut self, e: StreamError) {
        self.drop_message(&e.to_string());
    }

    fn handle_message(&mut self, _now: u64, m: SipMessage) {
        // pjsip's basic header check: without these a message is logged and dropped,
        // requests unanswered (`sip_transport.c`, PJSIP_EMISSINGHDR).
        let call_id_ok = m.header("Call-ID").is_some_and(|c| !c.is_empty());
        let (Some(top), Some(cseq), Some(from), Some(_), true) = (
            m.values("Via").first().copied(),
            m.header("CSeq").and_then(parse_cseq),
            m.header("From"),
            m.header("To"),
            call_id_ok,
        ) else {
            return self.drop_message("missing or malformed Via, From, To, Call-ID or CSeq");
        };
        match &m.start {
            StartLine::Status { code, .. } => {
                let code = *code;
                if code < 200 {
                    return;
                }
                let pending = param(top, "branch")
                    .filter(|_| cseq.1.eq_ignore_ascii_case("MESSAGE"))
                    .and_then(|b| self.pending.remove(b));
                let Some(p) = pending else {
                    self.stats.stray_responses += 1;
                    return;
                };
                if (200..300).contains(&code) {
                    self.stats.delivered += 1;
                    self.events.push_back(SipEvent::Delivered { token: p.token });
                } else {
                    self.stats.failed += 1;
                    self.events.push_back(SipEvent::Failed {
                        token: p.token,
                        reason: SendFailure::Status(code),
                    });
                }
            }
            StartLine::Request { method, .. } => {
                let method = method.to_ascii_uppercase();
                if !method.eq_ignore_ascii_case(&cseq.1) {
                    return self.drop_message("CSeq method differs from the request method");
                }
                let from = uri_user(from).map(str::to_owned);
                match method.as_str() {
                    "ACK" => {}
                    "MESSAGE" => self.handle_request_message(m, from),
                    // jamid's SIPVoIPLink: 405 for the other methods pjsip knows (calls
                    // are not handled here, so INVITE too); 200 for OPTIONS and for
                    // methods pjsip does not know (NOTIFY, INFO, ...).
                    "INVITE" | "CANCEL" | "BYE" | "REGISTER" => {
                        self.respond(&m, 405, "Method Not Allowed")
                    }
                    _ => self.respond(&m, 200, "OK"),
                }
            }
        }
    }

    fn drop_message(&mut self, why: &str) {
        let reason = format!("sip channel to {}: dropped a message: {why}", self.cfg.peer_account);
        tracing::warn!("{reason}");
        self.stats.dropped += 1;
        self.events.push_back(SipEvent::Dropped { reason });
    }

    /// A MESSAGE: `200 OK` at once (RFC 3428 §7, as jamid), then its payloads.
    fn handle_request_message(&mut self, m: SipMessage, from: Option<String>) {
        let ct = m.header("Content-Type").map(str::to_owned);
        let mime = match ct.as_deref().map(content_type) {
            // A Content-Type pjsip cannot parse is a syntax error: dropped unanswered.
            Some(None) => return self.drop_message("unparseable Content-Type"),
            Some(Some(mime)) => Some(mime),
            None => None,
        };
        self.respond(&m, 200, "OK");
        let Some(mime) = mime else {
            // pjsip builds no body without a Content-Type; jamid sees no payload.
            return self.drop_message("MESSAGE without Content-Type");
        };
        let Some(from) = from else {
            return self.drop_message("MESSAGE whose From has no user part");
        };
        // jamid's payload map: one body per MIME type, the first one wins.
        let mut payloads: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        if mime.to_ascii_lowercase().starts_with("multipart/") {
            let parts = match super::multipart::split(&mime, &m.body) {
                Ok(p) => p,
                Err(e) => return self.drop_message(&format!("bad multipart body: {e}")),
            };
            for p in parts {
                let Some(t) = p.content_type.as_deref().and_then(content_type) else {
                    return self.drop_message("multipart part without a valid Content-Type");
                };
                payloads.entry(t).or_insert(p.body);
            }
        } else {
            payloads.insert(mime, m.body.clone());
        }
        if payloads.is_empty() {
            return self.drop_message("MESSAGE without payload");
        }
        if payloads.values().any(|b| std::str::from_utf8(b).is_err()) {
            // SIPAccountBase::onTextMessage drops the whole message.
            return self.drop_message("payload is not UTF-8");
        }
        let message_id = m
            .header("Message-ID")
            .or_else(|| m.header("imdn.Message-ID"))
            .unwrap_or_default()
            .to_owned();
        if !message_id.is_empty() && !self.remember(&message_id) {
            self.stats.duplicates += 1;
            return;
        }
        self.stats.received += 1;
        for (mime, body) in payloads {
            self.events.push_back(SipEvent::Received(ReceivedMessage {
                from: from.clone(),
                message_id: message_id.clone(),
                mime,
                body,
            }));
        }
    }

    /// Remember a Message-ID; false if it was already seen.
    fn remember(&mut self, id: &str) -> bool {
        if !self.seen.insert(id.to_owned()) {
            return false;
        }
        self.seen_order.push_back(id.to_owned());
        if self.seen_order.len() > MAX_SEEN_IDS {
            if let Some(old) = self.seen_order.pop_front() {
                self.seen.remove(&old);
            }
        }
        true
    }

    /// pjsip's stateless response (`pjsip_endpt_create_response`): the Vias (the top one
    /// with `received` and `rport` filled in, as pjsip's transport layer does on
    /// receipt), Call-ID, From, To (tagged with the top Via's branch when untagged),
    /// CSeq. Only called for requests that passed the mandatory header check.
    fn respond(&mut self, req: &SipMessage, code: u16, reason: &str) {
        if code >= 300 {
            self.stats.refused += 1;
        }
        let vias = req.values("Via");
        let (Some(top), Some(call_id), Some(from), Some(to), Some(cseq)) = (
            vias.first(),
            req.header("Call-ID"),
            req.header("From"),
            req.header("To"),
            req.header("CSeq"),
        ) else {
            return;
        };
        let mut r = SipMessage::response(code, reason);
        let (ip, port) = split_host_port(&self.cfg.remote_addr);
        r.push("Via", received_via(top, ip, port));
        for v in &vias[1..] {
            r.push("Via", *v);
        }
        let to = match (param(to, "tag"), param(top, "branch")) {
            (None, Some(branch)) => format!("{to};tag={branch}"),
            _ => to.to_owned(),
        };
        r.push("Call-ID", call_id).push("From", from).push("To", to).push("CSeq", cseq);
        self.transmits.push_back(r.encode());
    }

    pub fn handle_timeout(&mut self, now: u64) {
        let expired: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(b, _)| b.clone())
            .collect();
        for b in expired {
            if let Some(p) = self.pending.remove(&b) {
                self.stats.failed += 1;
                self.events.push_back(SipEvent::Failed {
                    token: p.token,
                    reason: SendFailure::Timeout,
                });
            }
        }
    }

    pub fn poll_timeout(&self) -> Option<u64> {
        self.pending.values().map(|p| p.deadline).min()
    }

    /// Bytes to write on the channel.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<SipEvent> {
        self.events.pop_front()
    }
}

/// Normalise a MIME type as jamid's `createMessageBody` / `parseMessageBody` do:
/// `type/subtype` then `;name=value` parameters, trimmed. `None` if it is not of that
/// form.
pub fn content_type(mime: &str) -> Option<String> {
    let mut parts = mime.split(';');
    let main = parts.next()?.trim();
    let (ty, sub) = main.split_once('/')?;
    let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b));
    if !token(ty) || !token(sub) {
        return None;
    }
    let mut out = format!("{ty}/{sub}");
    for p in parts.filter(|p| !p.trim().is_empty()) {
        let (k, v) = p.split_once('=')?;
        let (k, v) = (k.trim(), v.trim());
        if !token(k) || v.is_empty() || v.contains(['\r', '\n']) {
            return None;
        }
        out.push_str(&format!(";{k}={v}"));
    }
    Some(out)
}

/// `ctime()` without its newline, in UTC: `Mon Dec  7 16:41:35 2026`, as jamid puts it
/// in the Date header.
pub fn ctime(unix_seconds: u64) -> String {
    let days = (unix_seconds / 86_400) as i64;
    let secs = unix_seconds % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const WD: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{} {} {:>2} {:02}:{:02}:{:02} {}",
        WD[(days.rem_euclid(7)) as usize],
        MON[(month - 1) as usize],
        day,
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        year
    )
}

/// A CSeq value: sequence number and method.
fn parse_cseq(v: &str) -> Option<(u32, String)> {
    let mut it = v.split_whitespace();
    let (n, m, None) = (it.next()?.parse().ok()?, it.next()?, it.next()) else {
        return None;
    };
    Some((n, m.to_owned()))
}

/// `ip:port` or `[v6]:port` → (ip, port).
fn split_host_port(addr: &str) -> (&str, Option<u16>) {
    match addr.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && (h.starts_with('[') || !h.contains(':')) => {
            (h.trim_start_matches('[').trim_end_matches(']'), p.parse().ok())
        }
        _ => (addr, None),
    }
}

/// A Via as pjsip prints it after receipt: `received=<source ip>`, `rport=<source
/// port>` when `rport` came without a value, parameters in pjsip's order (ttl, rport,
/// maddr, received, branch, then the others).
pub fn received_via(via: &str, src_ip: &str, src_port: Option<u16>) -> String {
    let mut parts = via.split(';');
    let sent = parts.next().unwrap_or_default().trim();
    let (mut ttl, mut rport, mut maddr, mut branch) = (None, None, None, None);
    let mut others = Vec::new();
    for p in parts.map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = p.split_once('=').map_or((p, None), |(k, v)| (k.trim(), Some(v.trim())));
        match k.to_ascii_lowercase().as_str() {
            "ttl" => ttl = v,
            "rport" => rport = Some(v),
            "maddr" => maddr = v,
            "received" => {}
            "branch" => branch = v,
            _ => others.push(p),
        }
    }
    let mut out = sent.to_owned();
    if let Some(t) = ttl {
        out.push_str(&format!(";ttl={t}"));
    }
    match (rport, src_port) {
        (Some(Some(v)), _) if !v.is_empty() => out.push_str(&format!(";rport={v}")),
        (Some(_), Some(port)) => out.push_str(&format!(";rport={port}")),
        (Some(_), None) => out.push_str(";rport"),
        (None, _) => {}
    }
    if let Some(m) = maddr {
        out.push_str(&format!(";maddr={m}"));
    }
    out.push_str(&format!(";received={src_ip}"));
    if let Some(b) = branch {
        out.push_str(&format!(";branch={b}"));
    }
    for o in others {
        out.push(';');
        out.push_str(o);
    }
    out
}

/// Whether a header value list holds `item` (case-insensitive), e.g. `Allow`.
pub fn list_has(value: &str, item: &str) -> bool {
    split_list(value).iter().any(|v| v.eq_ignore_ascii_case(item))
}
