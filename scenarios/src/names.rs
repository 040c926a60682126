//! The name server on netsim: the node's name-server domain logic and routes
//! (`node::nameserver`) behind a minimal HTTP/1.1 framing over simulated TCP, and a
//! device that registers a name and looks it up. Registrations are kept on the host's
//! disk, so a crash and restart loses nothing.

use crate::http::{http_response, parse_request, parse_response};
use netsim::{App, Ctx, TcpEvent};
use node::nameserver::domain::{registration_body, Name, Registry};
use node::nameserver::http::respond;
use node::nameserver::store::FileStore;
use rand::SeedableRng;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// Disk file (one JSON line per accepted registration: name and request body).
const LOG: &str = "names.jsonl";

/// The name server on a simulated host.
pub struct NameServerApp {
    port: u16,
    /// Keep registrations on the host's disk (off: an in-memory server that forgets
    /// everything when it restarts).
    persist: bool,
    registry: Registry<FileStore>,
    conns: BTreeMap<netsim::ConnId, Vec<u8>>,
    /// Registrations accepted, refused, lookups answered, and records replayed at start.
    pub accepted: u64,
    pub refused: u64,
    pub lookups: u64,
    pub replayed: u64,
}

impl NameServerApp {
    pub fn new(port: u16, persist: bool) -> Self {
        NameServerApp {
            port,
            persist,
            registry: Registry::new(FileStore::in_memory()),
            conns: BTreeMap::new(),
            accepted: 0,
            refused: 0,
            lookups: 0,
            replayed: 0,
        }
    }

    fn handle(&mut self, cx: &mut Ctx<'_>, method: &str, path: &str, body: &[u8]) -> Vec<u8> {
        let m = http::Method::from_bytes(method.as_bytes()).unwrap_or(http::Method::GET);
        let (status, json) = respond(&self.registry, &m, path, body);
        if m == http::Method::POST {
            if status == 200 {
                self.accepted += 1;
            }
            if status == 200 && self.persist {
                let name = path.trim_matches('/').trim_start_matches("name/");
                let line = serde_json::json!({"name": name, "body": String::from_utf8_lossy(body)});
                let log = cx.disk().entry(LOG.to_string()).or_default();
                log.extend_from_slice(line.to_string().as_bytes());
                log.push(b'\n');
            } else if status != 200 {
                self.refused += 1;
            }
        } else {
            self.lookups += 1;
        }
        cx.trace(&format!("names: {method} {path} -> {status}"));
        http_response(status, &json)
    }
}

impl App for NameServerApp {
    fn start(&mut self, cx: &mut Ctx<'_>) {
        // Replay what was accepted before a crash.
        let log = cx.disk().get(LOG).cloned().unwrap_or_default();
        for line in log.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) else {
                continue;
            };
            if let (Some(n), Some(b)) = (v["name"].as_str(), v["body"].as_str()) {
                if self.registry.register(n, b.as_bytes()).is_ok() {
                    self.replayed += 1;
                }
            }
        }
        let _ = cx.tcp_listen(SocketAddr::from(([0, 0, 0, 0], self.port)));
    }

    fn on_tcp(&mut self, cx: &mut Ctx<'_>, ev: TcpEvent) {
        match ev {
            TcpEvent::Accepted { conn, .. } => {
                self.conns.insert(conn, Vec::new());
            }
            TcpEvent::Data { conn, data } => {
                let Some(buf) = self.conns.get_mut(&conn) else {
                    return;
                };
                buf.extend_from_slice(&data);
                let reply = match parse_request(buf) {
                    Ok(None) => return,
                    Ok(Some((method, path, body))) => self.handle(cx, &method, &path, &body),
                    Err(why) => http_response(400, &serde_json::json!({ "error": why })),
                };
                self.conns.remove(&conn);
                let _ = cx.tcp_send(conn, &reply);
                cx.tcp_close(conn);
            }
            TcpEvent::PeerClosed { conn } | TcpEvent::Reset { conn, .. } => {
                if self.conns.remove(&conn).is_some() {
                    cx.tcp_close(conn);
                }
            }
            TcpEvent::Connected { .. } => {}
        }
    }
    netsim::app_any!();
}

/// What a device asked and what it was told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Register,
    Lookup,
}

/// One finished exchange: when it was asked, what, the status (`None`: no answer) and,
/// for lookups, the address in the answer.
#[derive(Clone, Debug)]
pub struct Exchange {
    pub at: Duration,
    pub request: Request,
    pub status: Option<u16>,
    pub addr: Option<String>,
}

/// A device with an account key that registers `name` once and looks it up later.
pub struct NameDeviceApp {
    server: SocketAddr,
    name: String,
    register_at: Option<Duration>,
    lookup_at: Vec<Duration>,
    key: node::crypto::PrivateKey,
    open: BTreeMap<netsim::ConnId, (Duration, Request, Vec<u8>, Vec<u8>)>,
    pub done: Vec<Exchange>,
}

impl NameDeviceApp {
    /// The account key derives from `key_seed` (the scenario seed and the host), so a
    /// run is reproducible.
    pub fn new(
        server: SocketAddr,
        name: String,
        register_at: Option<Duration>,
        lookup_at: Vec<Duration>,
        key_seed: u64,
    ) -> Self {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(key_seed);
        NameDeviceApp {
            server,
            name,
            register_at,
            lookup_at,
            key: node::crypto::PrivateKey::generate(1024, &mut rng).expect("RSA key"),
            open: BTreeMap::new(),
            done: Vec::new(),
        }
    }

    /// This device's Jami address (40 hex digits).
    pub fn address(&self) -> String {
        node::crypto::hex(&self.key.public_key().short_id())
    }

    fn ask(&mut self, cx: &mut Ctx<'_>, request: Request) {
        let bytes = match request {
            Request::Register => {
                let body = Name::parse(&self.name)
                    .and_then(|n| registration_body(&self.key, &n, ""))
                    .unwrap_or_default();
                crate::http::request("POST", "ns", &format!("/name/{}", self.name), Some(&body))
            }
            Request::Lookup => {
                crate::http::request("GET", "ns", &format!("/name/{}", self.name), None)
            }
        };
        let at = cx.sim_now().since(netsim::SimTime::ZERO);
        match cx.tcp_connect(self.server) {
            Ok(conn) => {
                self.open.insert(conn, (at, request, bytes, Vec::new()));
            }
            Err(_) => self.done.push(Exchange {
                at,
                request,
                status: None,
                addr: None,
            }),
        }
    }

    fn finish(&mut self, conn: netsim::ConnId) {
        let Some((at, request, _, buf)) = self.open.remove(&conn) else {
            return;
        };
        let parsed = parse_response(&buf);
        self.done.push(Exchange {
            at,
            status: parsed.as_ref().map(|p| p.0),
            addr: parsed.and_then(|(_, b)| b["addr"].as_str().map(str::to_string)),
            request,
        });
    }
}

impl App for NameDeviceApp {
    fn start(&mut self, cx: &mut Ctx<'_>) {
        let now = cx.sim_now().since(netsim::SimTime::ZERO);
        if let Some(at) = self.register_at {
            cx.set_timer(at.saturating_sub(now), 0);
        }
        for (i, at) in self.lookup_at.iter().enumerate() {
            cx.set_timer(at.saturating_sub(now), 1 + i as u64);
        }
    }

    fn on_timer(&mut self, cx: &mut Ctx<'_>, token: u64) {
        let request = if token == 0 {
            Request::Register
        } else {
            Request::Lookup
        };
        self.ask(cx, request);
    }

    fn on_tcp(&mut self, cx: &mut Ctx<'_>, ev: TcpEvent) {
        match ev {
            TcpEvent::Connected { conn } => {
                if let Some((_, _, bytes, _)) = self.open.get(&conn) {
                    let bytes = bytes.clone();
                    let _ = cx.tcp_send(conn, &bytes);
                }
            }
            TcpEvent::Data { conn, data } => {
                if let Some(o) = self.open.get_mut(&conn) {
                    o.3.extend_from_slice(&data);
                }
            }
            TcpEvent::PeerClosed { conn } => {
                self.finish(conn);
                cx.tcp_close(conn);
            }
            TcpEvent::Reset { conn, .. } => self.finish(conn),
            TcpEvent::Accepted { .. } => {}
        }
    }
    netsim::app_any!();
}
