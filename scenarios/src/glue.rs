//! Glue that runs node cores on netsim hosts: the sans-IO engines get the host's
//! datagrams, clock and timers. The node and the simulator know nothing of each other;
//! only this module knows both.

use netsim::{App, Ctx, SimTime, SockId};
use node::device::{Device, DeviceEvent, JamiIdentity};
use node::dht::engine::{Config, Dht, Event, OpId};
use node::dht::{InfoHash, Value, ValueData};
use node::identity::DeviceInfo;
use node::presence::PresenceEvent;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// Simulated time zero is this Unix time (ms): values carry Unix creation times.
pub const EPOCH_MS: u64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

const T_ENGINE: u64 = 1;
const T_PUT: u64 = 2;
const T_GET: u64 = 3;
const T_TRACK: u64 = 4;
const T_CONNECT: u64 = 5;
const T_MESSAGE: u64 = 6;

/// What a DHT node on a host is told to do.
#[derive(Clone, Debug, Default)]
pub struct DhtWorkload {
    pub port: u16,
    pub bootstrap: Vec<SocketAddr>,
    /// Put one value at `k-<host>` at this time.
    pub put_at: Option<Duration>,
    /// Get these keys (host names, meaning `k-<host>`) at this time.
    pub get_at: Option<Duration>,
    pub get_keys: Vec<String>,
    /// Also serve OpenDHT's proxy API (GET/POST /key/<key>) on this TCP port.
    pub proxy_port: Option<u16>,
    /// Reach the DHT only through the OpenDHT proxy at this address (TCP), instead of
    /// bootstrapping a UDP node: what a device behind Tor does.
    pub proxy: Option<SocketAddr>,
    /// Track the presence of these hosts' Jami accounts (host, account id) from
    /// `track_at` on, as jamid's `subscribeBuddy` does.
    pub track: Vec<(String, InfoHash)>,
    pub track_at: Duration,
    /// Run as this Jami device: the node's identity is the device's (its certificate is
    /// announced at its key id), and it announces the device at the account id once
    /// connected, as jamid does.
    pub jami: Option<crate::jami::JamiIdentity>,
    /// With `jami`: run its Jami services (connection manager, `sip` channels, texts).
    pub services: Option<crate::services::JamiWork>,
}

/// What a node learnt of one tracked account.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Seen {
    pub host: String,
    /// Each change of the account's presence: when, and online or not.
    pub changes: Vec<(SimTime, bool)>,
    /// Devices whose announcement and certificate chain checked out.
    pub devices: Vec<DeviceInfo>,
    /// Refusals, by reason (`Rejection`'s name).
    pub rejected: BTreeMap<String, u64>,
}

impl Seen {
    /// When it was first seen online.
    pub fn first_online(&self) -> Option<SimTime> {
        self.changes.iter().find(|c| c.1).map(|c| c.0)
    }

    /// When it last went offline.
    pub fn last_offline(&self) -> Option<SimTime> {
        self.changes.iter().rev().find(|c| !c.1).map(|c| c.0)
    }

    /// Online when the run ended.
    pub fn online_at_end(&self) -> bool {
        self.changes.last().is_some_and(|c| c.1)
    }
}

/// The record of one get.
#[derive(Clone, Debug, PartialEq)]
pub struct GetRecord {
    pub key_owner: String,
    pub started: SimTime,
    pub found_at: Option<SimTime>,
    pub done_at: Option<SimTime>,
    pub hops: u8,
}

/// An OpenDHT-compatible node on a simulated host: a [`Device`] (a Jami device when
/// the workload gives it an identity) plus the scenario's workload.
pub struct DhtApp {
    w: DhtWorkload,
    device: Option<Device>,
    sock: Option<SockId>,
    /// Engine wakeups armed on the host's timer, by engine time (ms).
    armed: std::collections::BTreeSet<u64>,
    pub connected_at: Option<SimTime>,
    /// The op of the host's own put (`put_at`): its `PutDone` goes in `puts_done`.
    own_put: Option<OpId>,
    pub puts_done: Vec<(String, usize)>,
    pub gets: BTreeMap<OpId, GetRecord>,
    /// Proxy: request bytes per connection, and the connection waiting on each put
    /// (with the value it stores).
    http: BTreeMap<netsim::ConnId, Vec<u8>>,
    proxied: BTreeMap<OpId, (netsim::ConnId, Value)>,
    /// Proxy gets and listens, streamed as OpenDHT's proxy does (chunked, one value
    /// line per value as found): the connection, the values sent (an expiry is
    /// streamed as the value with `"expired": true`), and whether the stream ends with
    /// the op (a get) or stays open until the client leaves (a listen).
    streams: BTreeMap<OpId, (netsim::ConnId, BTreeMap<u64, Value>, bool)>,
    /// Requests the proxy answered.
    pub proxy_requests: u64,
    /// What the device's presence tracker (`node::presence`, stricter than jamid: an
    /// announcement counts once its device chain verifies) said of each tracked account.
    pub seen: BTreeMap<InfoHash, Seen>,
    /// The device's TCP streams (the connection manager's) on the host's TCP.
    glue: crate::streams::StreamGlue,
    /// The Jami workload and what the services reported (with `services`).
    pub jami: Option<crate::services::JamiRunner>,
}

impl DhtApp {
    pub fn new(w: DhtWorkload) -> Self {
        DhtApp {
            w,
            device: None,
            sock: None,
            armed: Default::default(),
            connected_at: None,
            own_put: None,
            puts_done: Vec::new(),
            gets: BTreeMap::new(),
            http: BTreeMap::new(),
            proxied: BTreeMap::new(),
            streams: BTreeMap::new(),
            proxy_requests: 0,
            seen: BTreeMap::new(),
            glue: crate::streams::StreamGlue::new(),
            jami: None,
        }
    }

    /// What the device's Jami services reported (hosts with `services`).
    pub fn jami_record(&self) -> Option<&crate::services::JamiRecord> {
        self.jami.as_ref().map(|j| &j.record)
    }

    /// The stream glue's counters.
    pub fn stream_stats(&self) -> &crate::streams::StreamStats {
        &self.glue.stats
    }

    pub fn key_of(host: &str) -> InfoHash {
        InfoHash::get(format!("k-{host}"))
    }

    /// The value a host puts: its name as data, id from its name.
    pub fn value_of(host: &str) -> Value {
        let id = u64::from_be_bytes(InfoHash::get(host).0[..8].try_into().unwrap_or([1; 8])) | 1;
        Value::plain(id, 0, host.as_bytes().to_vec())
    }

    pub fn engine(&self) -> Option<&Dht> {
        self.device.as_ref().and_then(|d| d.dht()).map(|d| &**d)
    }

    /// The device the host runs.
    pub fn device(&self) -> Option<&Device> {
        self.device.as_ref()
    }

    fn now_ms(cx: &Ctx<'_>) -> u64 {
        EPOCH_MS + cx.now().as_nanos() / 1_000_000
    }

    /// Move the device's output onto the network and (re)arm its timer. Handling an
    /// event may start operations (proxy requests): loop until none is left.
    fn flush(&mut self, cx: &mut Ctx<'_>) {
        let Some(sock) = self.sock else { return };
        let now = Self::now_ms(cx);
        loop {
            let Some(device) = self.device.as_mut() else {
                return;
            };
            self.glue.drain(cx, now, device);
            while let Some(t) = device.poll_transmit() {
                let _ = cx.udp_send(sock, t.to, &t.bytes);
            }
            let events: Vec<DeviceEvent> = std::iter::from_fn(|| device.poll_event()).collect();
            if events.is_empty() {
                break;
            }
            for e in events {
                self.on_event(cx, e);
            }
        }
        // Arm a wakeup only if none is armed at or before `t` (an earlier one looks
        // again when it fires): one timer event per wakeup, not one per change.
        let Some(t) = self.device.as_ref().and_then(|d| d.poll_timeout()) else {
            return;
        };
        if self.armed.first().is_none_or(|&first| t < first) {
            self.armed.insert(t);
            let wait = t.saturating_sub(Self::now_ms(cx));
            cx.set_timer(Duration::from_millis(wait), T_ENGINE);
        }
    }

    /// A proxy request parsed off a connection: start the DHT operation behind it.
    fn proxy_request(
        &mut self,
        cx: &mut Ctx<'_>,
        conn: netsim::ConnId,
        method: &str,
        path: &str,
        body: &[u8],
    ) {
        use node::dht::proxy::json;
        let now = Self::now_ms(cx);
        if method == "GET" && path == "/node/info" {
            // OpenDHT's NodeInfo (the parts a client reads): our node id, and the
            // client's address as we see it.
            let id = self.device.as_ref().and_then(|d| d.dht()).map(|d| d.id());
            let public_ip = cx.tcp_addrs(conn).map(|(_, r)| r.ip().to_string());
            let body = serde_json::json!({
                "id": id.map(|i| i.to_string()),
                "node_id": id.map(|i| i.to_string()),
                "public_ip": public_ip.ok(),
            });
            self.proxy_requests += 1;
            let _ = cx.tcp_send(conn, &crate::http::http_response(200, &body));
            cx.tcp_close(conn);
            return;
        }
        let rest = path.trim_start_matches("/key/").trim_start_matches('/');
        let (key, listen) = match rest.strip_suffix("/listen") {
            Some(k) => (k, true),
            None => (rest, false),
        };
        let key: InfoHash = key.parse().unwrap_or_else(|_| InfoHash::get(key));
        let Some(dht) = self.device.as_mut().and_then(|d| d.dht_mut()) else {
            return;
        };
        if method == "GET" {
            let op = match listen {
                true => dht.listen(now, key),
                false => dht.get(now, key),
            };
            self.streams.insert(op, (conn, BTreeMap::new(), !listen));
            self.proxy_requests += 1;
            let _ = cx.tcp_send(conn, crate::http::CHUNKED_HEAD.as_bytes());
            return;
        }
        let op = match method {
            "POST" => match std::str::from_utf8(body).ok().map(json::from_str) {
                Some(Ok(pv)) => Some((dht.put(now, key, pv.value.clone()), pv.value)),
                _ => None,
            },
            _ => None,
        };
        match op {
            Some((op, value)) => {
                self.proxied.insert(op, (conn, value));
            }
            None => {
                let r = crate::http::http_response(
                    400,
                    &serde_json::json!({"err": "Missing parameters"}),
                );
                let _ = cx.tcp_send(conn, &r);
                cx.tcp_close(conn);
            }
        }
    }

    /// An event of an op a proxy client waits on: answer it. False if not a proxy op.
    fn proxy_event(&mut self, cx: &mut Ctx<'_>, e: &Event) -> bool {
        use node::dht::proxy::json;
        let stream_op = match e {
            Event::Values { op, .. } | Event::Expired { op, .. } | Event::GetDone { op, .. } => {
                Some(*op)
            }
            _ => None,
        };
        if let Some((conn, sent, _)) = stream_op.and_then(|op| self.streams.get_mut(&op)) {
            let conn = *conn;
            let mut lines = String::new();
            match e {
                Event::Values { values, .. } => {
                    for v in values {
                        sent.insert(v.id, v.clone());
                        lines.push_str(&json::to_line(v, false));
                    }
                }
                Event::Expired { ids, .. } => {
                    for v in ids.iter().filter_map(|id| sent.remove(id)) {
                        lines.push_str(&json::to_line(&v, true));
                    }
                }
                _ => {}
            }
            if !lines.is_empty() {
                let _ = cx.tcp_send(conn, &crate::http::chunk(lines.as_bytes()));
            }
            if let (Event::GetDone { op, .. }, Some((_, _, true))) =
                (e, stream_op.and_then(|op| self.streams.get(&op)))
            {
                // A get's stream ends with the get.
                self.streams.remove(op);
                let _ = cx.tcp_send(conn, b"0\r\n\r\n");
                cx.tcp_close(conn);
            }
            return true;
        }
        // A put is answered once it is done: the stored value, or 502 as OpenDHT's
        // proxy says when no node stored it.
        let (op, stored) = match e {
            Event::PutDone { op, stored_on, .. } => (*op, *stored_on > 0),
            Event::Failed { op, .. } => (*op, false),
            _ => return false,
        };
        let Some((conn, value)) = self.proxied.remove(&op) else {
            return false;
        };
        self.proxy_requests += 1;
        let answer = match stored {
            true => crate::http::http_response_text(200, &json::to_json(&value).to_string()),
            false => crate::http::http_response(502, &serde_json::json!({"err": "Put failed"})),
        };
        let _ = cx.tcp_send(conn, &answer);
        cx.tcp_close(conn);
        true
    }

    fn on_event(&mut self, cx: &mut Ctx<'_>, e: DeviceEvent) {
        let e = match e {
            DeviceEvent::Presence(p) => {
                if let (PresenceEvent::DeviceVerified { account, device }, Some(j), Some(d)) =
                    (&p, self.jami.as_mut(), self.device.as_mut())
                {
                    let now = Self::now_ms(cx);
                    j.device_verified(now, d, *account, InfoHash(device.device_short_id));
                }
                return record_presence(cx, p, &mut self.seen);
            }
            DeviceEvent::Dht(e) => e,
            DeviceEvent::Jami(e) => {
                let now = Self::now_ms(cx);
                if let (Some(j), Some(d)) = (self.jami.as_mut(), self.device.as_mut()) {
                    j.on_event(cx, now, d, e);
                }
                return;
            }
            // Local peer discovery is not turned on by the dht-node actor.
            DeviceEvent::Nearby(_) => return,
        };
        if self.proxy_event(cx, &e) {
            return;
        }
        let now = cx.sim_now();
        match e {
            Event::Connected => {
                self.connected_at.get_or_insert(now);
            }
            Event::Values { op, values, .. } => {
                if let Some(g) = self.gets.get_mut(&op) {
                    let wanted = Self::value_of(&g.key_owner);
                    let hit = values.iter().any(|v| v.id == wanted.id && matches!(&v.data, ValueData::Plain(b) if b.data == g.key_owner.as_bytes()));
                    if hit && g.found_at.is_none() {
                        g.found_at = Some(now);
                    }
                }
            }
            Event::GetDone { op, hops, .. } => {
                if let Some(g) = self.gets.get_mut(&op) {
                    g.done_at = Some(now);
                    g.hops = hops;
                }
            }
            Event::PutDone { op, stored_on, .. } if self.own_put == Some(op) => {
                let host = cx.host_name().to_string();
                self.puts_done.push((host, stored_on));
            }
            Event::PutDone { .. } | Event::Expired { .. } | Event::Failed { .. } => {}
        }
    }
}

impl App for DhtApp {
    fn start(&mut self, cx: &mut Ctx<'_>) {
        let Ok(sock) = cx.udp_bind(SocketAddr::from(([0, 0, 0, 0], self.w.port))) else {
            return;
        };
        self.sock = Some(sock);
        let host = cx.host_name().to_string();
        // Seed from the host's own stream: deterministic per scenario seed and host.
        let seed = rand_seed(cx);
        let now = Self::now_ms(cx);
        // Storage checks signatures, as OpenDHT's does (only signed values cost a check).
        let verify: node::dht::engine::Verifier = Box::new(node::crypto::verify);
        let cfg = Config {
            id: InfoHash::get(format!("node:{host}")),
            network: 0,
            seed,
            verify: Some(verify),
        };
        let jami = self.w.jami.as_ref().map(|j| JamiIdentity {
            account: &j.account,
            device: &j.device,
            announcement_id: j.announcement_id(),
        });
        // A restarted host does not replay what its previous life was due to do.
        let age = cx.sim_now().since(SimTime::ZERO);
        let backend = match self.w.proxy {
            Some(p) => node::device::DhtBackend::Proxy(p),
            None => node::device::DhtBackend::Udp,
        };
        let Ok(mut device) = Device::with_backend(cfg, jami, backend, now) else {
            cx.trace("dht-node: the Jami identity does not make a device");
            return;
        };
        for b in &self.w.bootstrap {
            if cx.local_addr(sock).ok() != Some(*b) {
                device.bootstrap(now, *b);
            }
        }
        if let Some(work) = self.w.services.clone().filter(|_| self.w.jami.is_some()) {
            let cfg = node::connect::manager::ManagerConfig {
                host_ips: cx.addrs(),
                stun_server: work.stun,
                turn: work.turn.clone(),
                tcp_so: work.tcp_so,
                allow_public: !work.contacts_only,
                seed: rand_seed(cx),
                ..Default::default()
            };
            device.enable_services(now, cfg, node::contacts::ContactList::new());
            if let Some(t) = Some(work.connect_at).filter(|t| *t >= age && !work.connect.is_empty())
            {
                cx.set_timer(t - age, T_CONNECT);
            }
            if let Some(t) = work.message_at.filter(|t| *t >= age) {
                cx.set_timer(t - age, T_MESSAGE);
            }
            self.jami = Some(crate::services::JamiRunner::new(work));
        }
        self.device = Some(device);
        if let Some(p) = self.w.proxy_port {
            let _ = cx.tcp_listen(SocketAddr::from(([0, 0, 0, 0], p)));
        }
        if let Some(t) = self.w.put_at.filter(|t| *t > age) {
            cx.set_timer(t - age, T_PUT);
        }
        if let Some(t) = self.w.get_at.filter(|t| *t > age) {
            cx.set_timer(t - age, T_GET);
        }
        if !self.w.track.is_empty() {
            cx.set_timer(self.w.track_at.saturating_sub(age), T_TRACK);
        }
        self.flush(cx);
    }

    fn on_udp(
        &mut self,
        cx: &mut Ctx<'_>,
        _sock: SockId,
        from: SocketAddr,
        _to: SocketAddr,
        data: &[u8],
    ) {
        let now = Self::now_ms(cx);
        if let Some(d) = self.device.as_mut() {
            d.handle_datagram(now, from, data);
        }
        self.flush(cx);
    }

    fn on_timer(&mut self, cx: &mut Ctx<'_>, token: u64) {
        let now = Self::now_ms(cx);
        let host = cx.host_name().to_string();
        match token {
            T_ENGINE => {
                // This wakeup is the earliest armed (timers fire in order); any other
                // due by now has fired too.
                self.armed.pop_first();
                self.armed = self.armed.split_off(&(now + 1));
                if let Some(d) = self.device.as_mut() {
                    d.handle_timeout(now);
                }
            }
            T_TRACK => {
                if let Some(d) = self.device.as_mut() {
                    for (host, account) in &self.w.track {
                        // Recorded first: the device may already know it is online.
                        self.seen.insert(
                            *account,
                            Seen {
                                host: host.clone(),
                                ..Seen::default()
                            },
                        );
                        d.track(now, *account);
                    }
                }
            }
            T_CONNECT => {
                if let (Some(j), Some(d)) = (self.jami.as_mut(), self.device.as_mut()) {
                    j.connect_now(cx, now, d);
                }
            }
            T_MESSAGE => {
                if let (Some(j), Some(d)) = (self.jami.as_mut(), self.device.as_mut()) {
                    j.message_now(cx, now, d);
                }
            }
            T_PUT => {
                if let Some(d) = self.device.as_mut() {
                    self.own_put = Some(d.put(now, Self::key_of(&host), Self::value_of(&host)));
                }
            }
            T_GET => {
                let keys = self.w.get_keys.clone();
                let started = cx.sim_now();
                if let Some(d) = self.device.as_mut() {
                    for k in keys {
                        let op = d.get(now, Self::key_of(&k));
                        self.gets.insert(
                            op,
                            GetRecord {
                                key_owner: k,
                                started,
                                found_at: None,
                                done_at: None,
                                hops: 0,
                            },
                        );
                    }
                }
            }
            _ => {}
        }
        self.flush(cx);
    }

    fn on_tcp(&mut self, cx: &mut Ctx<'_>, ev: netsim::TcpEvent) {
        use netsim::TcpEvent;
        // The device's own streams first; the rest is the proxy's.
        let now = Self::now_ms(cx);
        if let Some(d) = self.device.as_mut() {
            if self.glue.on_tcp(cx, now, d, &ev) {
                return self.flush(cx);
            }
        }
        match ev {
            TcpEvent::Accepted { conn, .. } => {
                self.http.insert(conn, Vec::new());
            }
            TcpEvent::Data { conn, data } => {
                let Some(buf) = self.http.get_mut(&conn) else {
                    return;
                };
                buf.extend_from_slice(&data);
                match crate::http::parse_request(buf) {
                    Ok(None) => {}
                    Ok(Some((method, path, body))) => {
                        self.http.remove(&conn);
                        self.proxy_request(cx, conn, &method, &path, &body);
                    }
                    Err(why) => {
                        self.http.remove(&conn);
                        let r = crate::http::http_response(400, &serde_json::json!({ "err": why }));
                        let _ = cx.tcp_send(conn, &r);
                        cx.tcp_close(conn);
                    }
                }
            }
            TcpEvent::PeerClosed { conn } | TcpEvent::Reset { conn, .. } => {
                self.http.remove(&conn);
                self.proxied.retain(|_, (c, _)| *c != conn);
                let gone: Vec<OpId> = self
                    .streams
                    .iter()
                    .filter(|(_, (c, _, _))| *c == conn)
                    .map(|(op, _)| *op)
                    .collect();
                for op in gone {
                    self.streams.remove(&op);
                    if let Some(d) = self.device.as_mut() {
                        d.cancel(op);
                    }
                }
            }
            TcpEvent::Connected { .. } => {}
        }
        self.flush(cx);
    }

    netsim::app_any!();
}

/// A tracker's news into [`Seen`] records (and the trace).
pub fn record_presence(cx: &mut Ctx<'_>, e: PresenceEvent, seen: &mut BTreeMap<InfoHash, Seen>) {
    let now = cx.sim_now();
    cx.trace(&match &e {
        PresenceEvent::Online(a) => format!("presence: {a} online"),
        PresenceEvent::Offline(a) => format!("presence: {a} offline"),
        PresenceEvent::DeviceVerified { account, device } => format!(
            "presence: {account} device {} verified",
            InfoHash(device.device_short_id)
        ),
        PresenceEvent::Rejected { account, reason } => {
            format!("presence: {account} refused: {reason}")
        }
    });
    let account = match &e {
        PresenceEvent::Online(a)
        | PresenceEvent::Offline(a)
        | PresenceEvent::DeviceVerified { account: a, .. }
        | PresenceEvent::Rejected { account: a, .. } => *a,
    };
    let Some(seen) = seen.get_mut(&account) else {
        return;
    };
    match e {
        PresenceEvent::Online(_) => seen.changes.push((now, true)),
        PresenceEvent::Offline(_) => seen.changes.push((now, false)),
        PresenceEvent::DeviceVerified { device, .. } => seen.devices.push(device),
        PresenceEvent::Rejected { reason, .. } => {
            *seen.rejected.entry(format!("{reason:?}")).or_default() += 1
        }
    }
}

fn rand_seed(cx: &mut Ctx<'_>) -> u64 {
    use rand::RngExt;
    cx.rng().random::<u64>()
}

/// Floods a DHT node with well-formed `get` requests for random keys from one address,
/// far above OpenDHT's per-source limit, to show the node keeps serving others.
pub struct DhtFlood {
    pub to: SocketAddr,
    pub per_ms: u32,
    pub from: Duration,
    pub until: Duration,
    sock: Option<SockId>,
    pub sent: u64,
    pub answers: u64,
}

impl DhtFlood {
    pub fn new(to: SocketAddr, rate_per_s: u32, from: Duration, until: Duration) -> Self {
        DhtFlood {
            to,
            per_ms: (rate_per_s / 1000).max(1),
            from,
            until,
            sock: None,
            sent: 0,
            answers: 0,
        }
    }
}

impl App for DhtFlood {
    fn start(&mut self, cx: &mut Ctx<'_>) {
        self.sock = cx.udp_bind(SocketAddr::from(([0, 0, 0, 0], 0))).ok();
        cx.set_timer(self.from, 0);
    }
    fn on_udp(
        &mut self,
        _cx: &mut Ctx<'_>,
        _s: SockId,
        _from: SocketAddr,
        _to: SocketAddr,
        _d: &[u8],
    ) {
        self.answers += 1;
    }
    fn on_timer(&mut self, cx: &mut Ctx<'_>, _t: u64) {
        use node::dht::wire::{Get, Message, MessageBody};
        use rand::RngExt;
        if cx.sim_now().since(SimTime::ZERO) >= self.until {
            return;
        }
        let Some(sock) = self.sock else { return };
        for _ in 0..self.per_ms {
            let id = InfoHash(cx.rng().random());
            let h = InfoHash(cx.rng().random());
            let tid = cx.rng().random();
            let msg = Message {
                tid,
                network: 0,
                is_client: false,
                body: MessageBody::Get(Get {
                    id,
                    h,
                    query: None,
                    want: None,
                }),
            };
            let _ = cx.udp_send(sock, self.to, &node::dht::wire::encode(&msg));
            self.sent += 1;
        }
        cx.set_timer(Duration::from_millis(1), 0);
    }
    netsim::app_any!();
}
