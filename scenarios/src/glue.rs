//! Glue that runs node cores on netsim hosts: the sans-IO engines get the host's
//! datagrams, clock and timers. The node and the simulator know nothing of each other;
//! only this module knows both.

use netsim::{App, Ctx, SimTime, SockId};
use node::dht::engine::{Config, Dht, Event, OpId};
use node::dht::{InfoHash, Value, ValueData};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// Simulated time zero is this Unix time (ms): values carry Unix creation times.
pub const EPOCH_MS: u64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

const T_ENGINE: u64 = 1;
const T_PUT: u64 = 2;
const T_GET: u64 = 3;

/// What a DHT node on a host is told to do.
#[derive(Clone, Debug)]
pub struct DhtWorkload {
    pub port: u16,
    pub bootstrap: Vec<SocketAddr>,
    /// Put one value at `k-<host>` at this time.
    pub put_at: Option<Duration>,
    /// Get these keys (host names, meaning `k-<host>`) at this time.
    pub get_at: Option<Duration>,
    pub get_keys: Vec<String>,
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

/// An OpenDHT-compatible node on a simulated host.
pub struct DhtApp {
    w: DhtWorkload,
    dht: Option<Dht>,
    sock: Option<SockId>,
    timer_at: Option<u64>,
    pub connected_at: Option<SimTime>,
    pub puts_done: Vec<(String, usize)>,
    pub gets: BTreeMap<OpId, GetRecord>,
}

impl DhtApp {
    pub fn new(w: DhtWorkload) -> Self {
        DhtApp {
            w,
            dht: None,
            sock: None,
            timer_at: None,
            connected_at: None,
            puts_done: Vec::new(),
            gets: BTreeMap::new(),
        }
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
        self.dht.as_ref()
    }

    fn now_ms(cx: &Ctx<'_>) -> u64 {
        EPOCH_MS + cx.now().as_nanos() / 1_000_000
    }

    /// Move the engine's output onto the network and (re)arm its timer.
    fn flush(&mut self, cx: &mut Ctx<'_>) {
        let Some(dht) = self.dht.as_mut() else { return };
        let Some(sock) = self.sock else { return };
        while let Some(t) = dht.poll_transmit() {
            let _ = cx.udp_send(sock, t.to, &t.bytes);
        }
        let mut events = Vec::new();
        while let Some(e) = dht.poll_event() {
            events.push(e);
        }
        let next = dht.poll_timeout();
        for e in events {
            self.on_event(cx, e);
        }
        if let Some(t) = next {
            if self.timer_at.is_none_or(|cur| t < cur) {
                self.timer_at = Some(t);
                let wait = t.saturating_sub(Self::now_ms(cx));
                cx.set_timer(Duration::from_millis(wait), T_ENGINE);
            }
        }
    }

    fn on_event(&mut self, cx: &mut Ctx<'_>, e: Event) {
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
            Event::PutDone { stored_on, .. } => {
                let host = cx.host_name().to_string();
                self.puts_done.push((host, stored_on));
            }
            Event::Expired { .. } | Event::Failed { .. } => {}
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
        let mut dht = Dht::new(
            Config {
                id: InfoHash::get(format!("node:{host}")),
                network: 0,
                seed,
                verify: None,
            },
            now,
        );
        for b in &self.w.bootstrap {
            if cx.local_addr(sock).ok() != Some(*b) {
                dht.bootstrap(now, *b);
            }
        }
        self.dht = Some(dht);
        // A restarted host does not replay what its previous life was due to do.
        let age = cx.sim_now().since(SimTime::ZERO);
        if let Some(t) = self.w.put_at.filter(|t| *t > age) {
            cx.set_timer(t - age, T_PUT);
        }
        if let Some(t) = self.w.get_at.filter(|t| *t > age) {
            cx.set_timer(t - age, T_GET);
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
        if let Some(d) = self.dht.as_mut() {
            d.handle_datagram(now, from, data);
        }
        self.flush(cx);
    }

    fn on_timer(&mut self, cx: &mut Ctx<'_>, token: u64) {
        let now = Self::now_ms(cx);
        let host = cx.host_name().to_string();
        match token {
            T_ENGINE => {
                self.timer_at = None;
                if let Some(d) = self.dht.as_mut() {
                    if d.poll_timeout().is_some_and(|t| t <= now) {
                        d.handle_timeout(now);
                    }
                }
            }
            T_PUT => {
                if let Some(d) = self.dht.as_mut() {
                    d.put(now, Self::key_of(&host), Self::value_of(&host));
                }
            }
            T_GET => {
                let keys = self.w.get_keys.clone();
                let started = cx.sim_now();
                if let Some(d) = self.dht.as_mut() {
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

    netsim::app_any!();
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
