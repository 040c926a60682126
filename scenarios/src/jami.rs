//! Jami accounts on netsim hosts: identities drawn from the scenario seed, and a device
//! that reaches the DHT only through a DHT proxy over TCP (behind Tor, say) and
//! announces itself there the way jamid does — its device certificate at its key id
//! (what SecureDht announces), its signed device announcement at its account id. Peers
//! on the plain DHT see it online through `node::presence`'s tracker (see
//! [`crate::glue::DhtApp`]'s `track`).

use crate::glue::{drain_presence, Seen, EPOCH_MS};
use crate::http::{parse_head, Chunked};
use netsim::{App, ConnId, Ctx, SimTime, TcpEvent};
use node::dht::engine::{Event, OpId};
use node::dht::proxy::json;
use node::dht::secure::certificate_value;
use node::dht::{InfoHash, Value};
use node::identity::{AccountIdentity, CertSigner, DeviceIdentity, RevocationList, Revoked};
use node::presence::{announcement_value, PresenceDht, PresenceTracker};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// RSA size of simulated accounts: jamid uses 4096 bits, but a simulation measures
/// topology, not key strength, and 1024-bit keys keep a case under a second.
pub const SIM_KEY_BITS: usize = 1024;

/// Certificates are made at simulated time zero (identity times are unix seconds).
const NOW_S: u64 = EPOCH_MS / 1000;

/// One Jami account with one device.
#[derive(Clone, Debug)]
pub struct JamiIdentity {
    pub account: AccountIdentity,
    pub device: DeviceIdentity,
}

impl JamiIdentity {
    /// The identity of `host`'s account (`role` tells apart several accounts of one
    /// host): keys drawn from the scenario seed, so a seed replays the same ids.
    pub fn derive(seed: u64, host: &str, role: &str) -> anyhow::Result<JamiIdentity> {
        let mut h: u64 = seed ^ 0x6a61_6d69_6964;
        for b in host.bytes().chain([0]).chain(role.bytes()) {
            h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
        let mut rng = ChaCha20Rng::seed_from_u64(h);
        let account = AccountIdentity::generate(SIM_KEY_BITS, NOW_S, &mut rng)?;
        let device = account.new_device(SIM_KEY_BITS, NOW_S, &mut rng)?;
        Ok(JamiIdentity { account, device })
    }

    pub fn account_id(&self) -> InfoHash {
        InfoHash(self.account.account_id())
    }

    /// The value id of this device's announcement (from its short id, so a restart
    /// announces under the same id).
    pub fn announcement_id(&self) -> u64 {
        u64::from_be_bytes(self.device.short_id()[..8].try_into().unwrap_or_default()) | 1
    }
}

/// How a device's announcement is spoiled on purpose, to show peers refuse it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forgery {
    None,
    /// The announcement at our account id is signed by another account's key.
    Signer,
    /// Our device certificate is issued by another account.
    Issuer,
    /// The account revokes the device and publishes its CRL at the account id.
    Revoked,
}

impl std::str::FromStr for Forgery {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "none" => Forgery::None,
            "signer" => Forgery::Signer,
            "issuer" => Forgery::Issuer,
            "revoked" => Forgery::Revoked,
            o => {
                return Err(format!(
                    "`forge` is none, signer, issuer or revoked, not `{o}`"
                ))
            }
        })
    }
}

/// The values a device puts, in order, at their keys.
pub fn device_puts(
    me: &JamiIdentity,
    other: &JamiIdentity,
    forge: Forgery,
) -> anyhow::Result<Vec<(&'static str, InfoHash, Value)>> {
    let mut rng = ChaCha20Rng::seed_from_u64(u64::from_be_bytes(
        me.account_id().0[..8].try_into().unwrap_or_default(),
    ));
    let mut chain = me.device.chain().to_vec();
    if forge == Forgery::Issuer {
        let cert = other
            .account
            .issue_device(&me.device.key().public_key(), NOW_S, &mut rng)?;
        chain = std::iter::once(cert)
            .chain(other.account.chain().iter().cloned())
            .collect();
    }
    let pem = node::identity::chain::encode_pem_chain(&chain);
    let signer = if forge == Forgery::Signer {
        &other.account
    } else {
        &me.account
    };
    let id = me.announcement_id();
    let mut puts = vec![
        (
            "certificate",
            InfoHash(me.device.short_id()),
            certificate_value(pem.as_bytes()),
        ),
        (
            "announcement",
            me.account_id(),
            announcement_value(signer, &chain[0], id)?,
        ),
    ];
    if forge == Forgery::Revoked {
        let crl = RevocationList::sign(
            CertSigner::Rsa(me.account.account_key()),
            me.account.certificate(),
            &[Revoked {
                serial: chain[0].serial().to_vec(),
                at: NOW_S,
            }],
            None,
            NOW_S,
            &mut rng,
        )?;
        puts.push((
            "crl",
            me.account_id(),
            Value::plain(id ^ 2, 0, crl.to_value_data()),
        ));
    }
    Ok(puts)
}

/// One HTTP exchange with the proxy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyExchange {
    pub what: &'static str,
    pub at: Duration,
    /// `None`: the connection failed or closed without an answer.
    pub status: Option<u16>,
    /// The proxy echoed the value we put.
    pub echoed: bool,
}

/// The DHT as the presence tracker sees it through a proxy: its gets and listens are
/// queued here and become HTTP requests (`GET /key/<k>`, `GET /key/<k>/listen`); their
/// answers come back as engine [`Event`]s. Nothing is stored locally.
#[derive(Default)]
struct ProxyDht {
    next_op: OpId,
    queued: Vec<(OpId, bool, InfoHash)>,
    cancelled: Vec<OpId>,
}

impl PresenceDht for ProxyDht {
    fn listen(&mut self, _now: u64, key: InfoHash) -> OpId {
        self.next_op += 1;
        self.queued.push((self.next_op, true, key));
        self.next_op
    }
    fn get(&mut self, _now: u64, key: InfoHash) -> OpId {
        self.next_op += 1;
        self.queued.push((self.next_op, false, key));
        self.next_op
    }
    fn cancel(&mut self, op: OpId) {
        self.cancelled.push(op);
    }
    fn local_values(&self, _key: &InfoHash) -> Vec<Value> {
        Vec::new()
    }
}

/// The complete lines of a stream's body (with `all`, the unterminated rest too) as the
/// engine events a DHT get or listen would give.
fn lines_to_events(s: &mut Stream, all: bool) -> Vec<Event> {
    let mut out = Vec::new();
    loop {
        let line: Vec<u8> = match s.partial.iter().position(|&b| b == b'\n') {
            Some(n) => s.partial.drain(..=n).collect(),
            None if all && !s.partial.is_empty() => std::mem::take(&mut s.partial),
            None => return out,
        };
        // A line that is not a value (`{}`, garbage) is skipped, as OpenDHT's client does.
        let Ok(pv) = json::from_str(String::from_utf8_lossy(&line).trim()) else {
            continue;
        };
        out.push(if pv.expired {
            Event::Expired {
                op: s.op,
                key: s.key,
                ids: vec![pv.value.id],
            }
        } else {
            Event::Values {
                op: s.op,
                key: s.key,
                values: vec![pv.value],
            }
        });
    }
}

/// One tracker request in flight on its own connection.
struct Stream {
    op: OpId,
    listen: bool,
    key: InfoHash,
    buf: Vec<u8>,
    /// Set once the head arrived: status, and the body decoder when chunked.
    head: Option<(u16, Option<Chunked>)>,
    /// Body bytes not yet ending in a newline.
    partial: Vec<u8>,
}

/// A Jami device that reaches the DHT only through a proxy: from `announce_at` it POSTs
/// its certificate, then its device announcement (permanent), one connection each.
/// With `track`, it also follows contacts' presence through the proxy, as a phone's
/// jamid does: `node::presence`'s tracker over listen streams and gets.
pub struct JamiDeviceApp {
    proxy: SocketAddr,
    announce_at: Duration,
    puts: Vec<(&'static str, InfoHash, Value)>,
    open: BTreeMap<ConnId, (usize, Vec<u8>)>,
    pub exchanges: Vec<ProxyExchange>,
    track: Vec<(String, InfoHash)>,
    track_at: Duration,
    dht: ProxyDht,
    streams: BTreeMap<ConnId, Stream>,
    pub presence: PresenceTracker,
    pub seen: BTreeMap<InfoHash, Seen>,
    /// Tracker requests that got no usable answer (refused, reset, non-200).
    pub failed_requests: u64,
}

const T_ANNOUNCE: u64 = 0;
const T_TRACK: u64 = 1;
const T_TRACKER: u64 = 2;

impl JamiDeviceApp {
    pub fn new(
        proxy: SocketAddr,
        announce_at: Duration,
        puts: Vec<(&'static str, InfoHash, Value)>,
    ) -> Self {
        JamiDeviceApp {
            proxy,
            announce_at,
            puts,
            open: BTreeMap::new(),
            exchanges: Vec::new(),
            track: Vec::new(),
            track_at: Duration::ZERO,
            dht: ProxyDht::default(),
            streams: BTreeMap::new(),
            presence: PresenceTracker::new(),
            seen: BTreeMap::new(),
            failed_requests: 0,
        }
    }

    /// Also track these hosts' accounts (host, account id) from `at` on.
    pub fn tracking(mut self, track: Vec<(String, InfoHash)>, at: Duration) -> Self {
        self.track = track;
        self.track_at = at;
        self
    }

    fn now_ms(cx: &Ctx<'_>) -> u64 {
        EPOCH_MS + cx.now().as_nanos() / 1_000_000
    }

    /// Turn the tracker's queued operations into requests, its news into records.
    fn pump(&mut self, cx: &mut Ctx<'_>) {
        for op in std::mem::take(&mut self.dht.cancelled) {
            let conns: Vec<ConnId> = self
                .streams
                .iter()
                .filter(|(_, s)| s.op == op)
                .map(|(c, _)| *c)
                .collect();
            for c in conns {
                self.streams.remove(&c);
                cx.tcp_close(c);
            }
        }
        for (op, listen, key) in std::mem::take(&mut self.dht.queued) {
            match cx.tcp_connect(self.proxy) {
                Ok(conn) => {
                    self.streams.insert(
                        conn,
                        Stream {
                            op,
                            listen,
                            key,
                            buf: Vec::new(),
                            head: None,
                            partial: Vec::new(),
                        },
                    );
                }
                Err(_) => self.request_failed(cx, op, key),
            }
        }
        drain_presence(cx, &mut self.presence, &mut self.seen);
        if let Some(t) = self.presence.poll_timeout() {
            cx.set_timer(
                Duration::from_millis(t.saturating_sub(Self::now_ms(cx))),
                T_TRACKER,
            );
        }
    }

    /// A request that got no answer ends like a get that found nothing.
    fn request_failed(&mut self, cx: &mut Ctx<'_>, op: OpId, key: InfoHash) {
        self.failed_requests += 1;
        let now = Self::now_ms(cx);
        let done = Event::GetDone {
            op,
            key,
            nodes_answered: 0,
            hops: 0,
        };
        self.presence.handle_event(&mut self.dht, now, &done);
    }

    /// Bytes of a tracker stream: once the head is in, each complete JSON line is a
    /// value (or an expiry) for the tracker.
    fn stream_data(&mut self, cx: &mut Ctx<'_>, conn: ConnId, data: &[u8]) {
        let now = Self::now_ms(cx);
        let Some(s) = self.streams.get_mut(&conn) else {
            return;
        };
        let body = match &mut s.head {
            None => {
                s.buf.extend_from_slice(data);
                match parse_head(&s.buf) {
                    // A head that never ends is a broken answer, not a reason to buffer.
                    Ok(None) if s.buf.len() > crate::http::MAX_BODY => {
                        s.head = Some((0, None));
                        Vec::new()
                    }
                    Ok(None) => return,
                    Ok(Some((status, len, chunked))) => {
                        let rest = s.buf.split_off(len);
                        let mut dec = chunked.then(Chunked::default);
                        let body = match dec.as_mut() {
                            Some(d) => d.feed(&rest).unwrap_or_default(),
                            None => rest,
                        };
                        s.head = Some((status, dec));
                        body
                    }
                    Err(_) => {
                        s.head = Some((0, None));
                        Vec::new()
                    }
                }
            }
            Some((_, Some(dec))) => dec.feed(data).unwrap_or_default(),
            Some((_, None)) => data.to_vec(),
        };
        if s.head.as_ref().is_some_and(|(status, _)| *status == 200) {
            s.partial.extend_from_slice(&body);
            let events = lines_to_events(s, false);
            if s.partial.len() > crate::http::MAX_BODY {
                // No value is that long: drop the line rather than grow without bound.
                s.partial.clear();
            }
            for e in events {
                self.presence.handle_event(&mut self.dht, now, &e);
            }
        }
    }

    /// A tracker connection closed: the last line counts, and a get is done. (A listen
    /// the proxy ends is not re-opened here: the tracker's periodic re-get covers it.)
    fn stream_closed(&mut self, cx: &mut Ctx<'_>, conn: ConnId) {
        let Some(mut s) = self.streams.remove(&conn) else {
            return;
        };
        if s.head.as_ref().is_none_or(|(st, _)| *st != 200) {
            return self.request_failed(cx, s.op, s.key);
        }
        let now = Self::now_ms(cx);
        let mut events = lines_to_events(&mut s, true);
        if !s.listen {
            events.push(Event::GetDone {
                op: s.op,
                key: s.key,
                nodes_answered: 1,
                hops: 0,
            });
        }
        for e in events {
            self.presence.handle_event(&mut self.dht, now, &e);
        }
    }

    /// Every put was answered 200 with our value.
    pub fn announced(&self) -> bool {
        self.exchanges.len() == self.puts.len()
            && self
                .exchanges
                .iter()
                .all(|e| e.status == Some(200) && e.echoed)
    }

    /// Start the next put, if any is left and the last one succeeded. One at a time, in
    /// order: as with jamid, the certificate is on the DHT before the announcement that
    /// makes peers look for it.
    fn next_put(&mut self, cx: &mut Ctx<'_>) {
        let i = self.exchanges.len();
        if i >= self.puts.len() || self.exchanges.last().is_some_and(|e| e.status != Some(200)) {
            return;
        }
        match cx.tcp_connect(self.proxy) {
            Ok(conn) => {
                self.open.insert(conn, (i, Vec::new()));
            }
            Err(_) => self.exchanges.push(ProxyExchange {
                what: self.puts[i].0,
                at: cx.sim_now().since(SimTime::ZERO),
                status: None,
                echoed: false,
            }),
        }
    }

    fn finish(&mut self, cx: &mut Ctx<'_>, conn: netsim::ConnId) {
        let Some((i, buf)) = self.open.remove(&conn) else {
            return;
        };
        let (what, _, value) = &self.puts[i];
        let (status, echoed) = match crate::http::parse_response(&buf) {
            Some((s, body)) => (
                Some(s),
                json::from_json(&body).is_ok_and(|pv| pv.value == *value),
            ),
            None => (None, false),
        };
        cx.trace(&format!("jami-device: {what} -> {status:?}"));
        self.exchanges.push(ProxyExchange {
            what,
            at: cx.sim_now().since(SimTime::ZERO),
            status,
            echoed,
        });
        self.next_put(cx);
    }
}

impl App for JamiDeviceApp {
    fn start(&mut self, cx: &mut Ctx<'_>) {
        let age = cx.sim_now().since(SimTime::ZERO);
        cx.set_timer(self.announce_at.saturating_sub(age), T_ANNOUNCE);
        if !self.track.is_empty() {
            cx.set_timer(self.track_at.saturating_sub(age), T_TRACK);
        }
    }

    fn on_timer(&mut self, cx: &mut Ctx<'_>, token: u64) {
        let now = Self::now_ms(cx);
        match token {
            T_ANNOUNCE => self.next_put(cx),
            T_TRACK => {
                for (host, account) in self.track.clone() {
                    self.presence.track(&mut self.dht, now, account);
                    self.seen.insert(
                        account,
                        Seen {
                            host,
                            ..Seen::default()
                        },
                    );
                }
                self.pump(cx);
            }
            _ => {
                if self.presence.poll_timeout().is_some_and(|t| t <= now) {
                    self.presence.handle_timeout(&mut self.dht, now);
                }
                self.pump(cx);
            }
        }
    }

    fn on_tcp(&mut self, cx: &mut Ctx<'_>, ev: TcpEvent) {
        let conn = match &ev {
            TcpEvent::Connected { conn }
            | TcpEvent::Data { conn, .. }
            | TcpEvent::PeerClosed { conn }
            | TcpEvent::Reset { conn, .. } => Some(*conn),
            TcpEvent::Accepted { .. } => None,
        };
        if let Some(conn) = conn.filter(|c| self.streams.contains_key(c)) {
            match ev {
                TcpEvent::Connected { .. } => {
                    let s = &self.streams[&conn];
                    let path = if s.listen {
                        format!("/key/{}/listen", s.key)
                    } else {
                        format!("/key/{}", s.key)
                    };
                    let _ = cx.tcp_send(conn, &crate::http::request("GET", "proxy", &path, None));
                }
                TcpEvent::Data { data, .. } => self.stream_data(cx, conn, &data),
                TcpEvent::PeerClosed { .. } => {
                    self.stream_closed(cx, conn);
                    cx.tcp_close(conn);
                }
                TcpEvent::Reset { .. } => {
                    if let Some(s) = self.streams.remove(&conn) {
                        self.request_failed(cx, s.op, s.key);
                    }
                }
                TcpEvent::Accepted { .. } => {}
            }
            self.pump(cx);
            return;
        }
        match ev {
            TcpEvent::Connected { conn } => {
                let Some((i, _)) = self.open.get(&conn) else {
                    return;
                };
                let (_, key, value) = &self.puts[*i];
                let mut body = json::to_json(value);
                if let serde_json::Value::Object(m) = &mut body {
                    // jamid's puts through a proxy are all permanent.
                    m.insert("permanent".into(), true.into());
                }
                let req = crate::http::request(
                    "POST",
                    "proxy",
                    &format!("/key/{key}"),
                    Some(&body.to_string()),
                );
                let _ = cx.tcp_send(conn, &req);
            }
            TcpEvent::Data { conn, data } => {
                if let Some((_, buf)) = self.open.get_mut(&conn) {
                    buf.extend_from_slice(&data);
                }
            }
            TcpEvent::PeerClosed { conn } => {
                self.finish(cx, conn);
                cx.tcp_close(conn);
            }
            TcpEvent::Reset { conn, .. } => self.finish(cx, conn),
            TcpEvent::Accepted { .. } => {}
        }
    }

    netsim::app_any!();
}
