//! The DHT node behind the proxy: the sans-IO engine on a datagram socket (real UDP in
//! a thread of its own, or turmoil's in tests), taking [`Command`]s over a channel and
//! routing engine events, by op id, back to the HTTP requests that asked (get and
//! listen streams, put answers).
//! It also keeps permanent puts alive, as OpenDHT's proxy does, for [`PERMANENT_TTL_MS`].

use crate::dht::engine::{Config, Event, OpId};
use crate::dht::secure::SecureDht;
use crate::dht::{InfoHash, Value};
use crate::driver::unix_ms;
use crate::net::Datagrams;
use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;
use tokio::sync::{mpsc as tmpsc, oneshot};

/// How long the proxy keeps a permanent put (OpenDHT `proxy::OP_TIMEOUT`, 24 h).
pub const PERMANENT_TTL_MS: u64 = 24 * 3600 * 1000;
/// How often a permanent value is put again (values live 10 min on OpenDHT nodes).
pub const REPUT_MS: u64 = 5 * 60 * 1000;

/// What a get or listen stream receives.
#[derive(Debug, Clone)]
pub enum Item {
    Value(Value),
    Expired(Value),
}

/// What the HTTP side asks of the DHT thread.
pub enum Command {
    Get {
        key: InfoHash,
        tx: tmpsc::UnboundedSender<Item>,
    },
    Listen {
        key: InfoHash,
        tx: tmpsc::UnboundedSender<Item>,
    },
    /// Answered with whether some node stored it (the value with its assigned id).
    Put {
        key: InfoHash,
        value: Value,
        permanent: bool,
        reply: oneshot::Sender<Option<Value>>,
    },
    Info(oneshot::Sender<NodeInfo>),
    Stop,
}

/// What `/node/info` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub node_id: InfoHash,
    pub good: usize,
    pub dubious: usize,
    pub ops: usize,
    pub udp: SocketAddr,
}

enum Route {
    Get(tmpsc::UnboundedSender<Item>),
    Listen {
        tx: tmpsc::UnboundedSender<Item>,
        seen: BTreeMap<u64, Value>,
    },
    Put {
        value: Value,
        reply: Option<oneshot::Sender<Option<Value>>>,
    },
}

struct Permanent {
    value: Value,
    expires: u64,
    next_put: u64,
}

/// Requests served, by kind (for `/node/stats` and tests that must show a client
/// really used the proxy).
#[derive(Debug, Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub gets: AtomicU64,
    pub listens: AtomicU64,
    pub puts: AtomicU64,
    pub permanent_puts: AtomicU64,
    /// Permanent values put again by the proxy.
    pub reputs: AtomicU64,
}

/// Handle to the DHT node behind the proxy (its own thread, or a task the caller runs).
#[derive(Clone)]
pub struct Backend {
    tx: tmpsc::UnboundedSender<Command>,
    pub node_id: InfoHash,
    pub udp: SocketAddr,
    pub counters: Arc<Counters>,
}

/// The DHT node's id for a seed: splitmix64 bytes, distinct per seed.
fn node_id(seed: u64) -> InfoHash {
    let mut id = [0u8; 20];
    let mut s = seed;
    for b in id.iter_mut() {
        s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        *b = (z ^ (z >> 31)) as u8;
    }
    InfoHash(id)
}

impl Backend {
    /// Bind the UDP socket, bootstrap, and start the thread.
    pub fn start(bind: SocketAddr, bootstrap: &[SocketAddr], seed: u64) -> io::Result<Backend> {
        Self::start_with(bind, bootstrap, seed, REPUT_MS)
    }

    /// [`Backend::start`] with another period for re-putting permanent values.
    pub fn start_with(
        bind: SocketAddr,
        bootstrap: &[SocketAddr],
        seed: u64,
        reput_ms: u64,
    ) -> io::Result<Backend> {
        let bootstrap = bootstrap.to_vec();
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("dht-proxy-node".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                rt.block_on(async move {
                    match tokio::net::UdpSocket::bind(bind).await {
                        Ok(sock) => {
                            match Backend::on_socket(sock, &bootstrap, seed, reput_ms, unix_ms) {
                                Ok((be, node)) => {
                                    let _ = ready_tx.send(Ok(be));
                                    node.await
                                }
                                Err(e) => {
                                    let _ = ready_tx.send(Err(e));
                                }
                            }
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                        }
                    }
                })
            })?;
        ready_rx
            .recv()
            .map_err(|_| io::Error::other("the DHT thread ended"))?
    }

    /// The node on any datagram socket and clock (unix ms): the handle, and the future
    /// that runs the node until [`Backend::stop`] or every handle is dropped. Real UDP
    /// in [`Backend::start`]; turmoil's simulated UDP and clock in tests.
    pub fn on_socket<S: Datagrams>(
        sock: S,
        bootstrap: &[SocketAddr],
        seed: u64,
        reput_ms: u64,
        clock: impl Fn() -> u64,
    ) -> io::Result<(Backend, impl std::future::Future<Output = ()>)> {
        let udp = sock.local_addr()?;
        let verify: crate::dht::engine::Verifier = Box::new(crate::crypto::verify);
        let mut dht = SecureDht::new(
            Config {
                id: node_id(seed),
                network: 0,
                seed,
                verify: Some(verify),
            },
            None,
            clock(),
        );
        for b in bootstrap {
            dht.bootstrap(clock(), *b);
        }
        let (tx, rx) = tmpsc::unbounded_channel();
        let be = Backend {
            tx,
            node_id: dht.id(),
            udp,
            counters: Arc::new(Counters::default()),
        };
        let node = ProxyNode {
            dht,
            routes: BTreeMap::new(),
            permanent: BTreeMap::new(),
            next_id: seed | 1,
            reput_ms,
            udp,
            counters: be.counters.clone(),
        };
        Ok((be, run(node, sock, rx, clock)))
    }

    /// Send a command; false when the node has stopped.
    pub fn send(&self, c: Command) -> bool {
        self.tx.send(c).is_ok()
    }

    pub fn stop(&self) {
        let _ = self.tx.send(Command::Stop);
    }
}

/// The node behind the proxy and what it owes the HTTP side.
struct ProxyNode {
    dht: SecureDht,
    /// Which request each DHT operation answers.
    routes: BTreeMap<OpId, Route>,
    /// Permanent puts, by key and value id.
    permanent: BTreeMap<(InfoHash, u64), Permanent>,
    /// Ids for values posted without one.
    next_id: u64,
    reput_ms: u64,
    udp: SocketAddr,
    counters: Arc<Counters>,
}

/// The node's loop: datagrams, commands and timeouts in; datagrams, stream items and
/// put answers out. Waits at most 1 s, so streams whose client left are noticed.
async fn run<S: Datagrams>(
    mut node: ProxyNode,
    sock: S,
    mut rx: tmpsc::UnboundedReceiver<Command>,
    clock: impl Fn() -> u64,
) {
    let mut buf = vec![0u8; 65536];
    loop {
        while let Some(e) = node.dht.poll_event() {
            event(&mut node.routes, e);
        }
        let now = clock();
        node.maintain(now);
        while let Some(t) = node.dht.poll_transmit() {
            // A send error (unreachable, no route) is a lost datagram, as on the wire.
            let _ = sock.send_to(&t.bytes, t.to).await;
        }
        let wait = Duration::from_millis(node.next_wakeup(now).saturating_sub(now).clamp(1, 1000));
        tokio::select! {
            r = sock.recv_from(&mut buf) => {
                if let Ok((n, from)) = r {
                    node.dht.handle_datagram(clock(), from, &buf[..n]);
                }
            }
            c = rx.recv() => match c {
                None | Some(Command::Stop) => return,
                Some(c) => node.command(clock(), c),
            },
            _ = tokio::time::sleep(wait) => {}
        }
        let now = clock();
        if node.dht.poll_timeout().is_some_and(|t| t <= now) {
            node.dht.handle_timeout(now);
        }
    }
}

impl ProxyNode {
    /// Put permanent values again when due, drop expired ones, and stop the DHT
    /// operations of streams whose HTTP client went away.
    fn maintain(&mut self, now: u64) {
        for ((key, _), p) in self.permanent.iter_mut() {
            if p.next_put <= now {
                self.dht.put(now, *key, p.value.clone());
                self.counters.reputs.fetch_add(1, Ordering::Relaxed);
                p.next_put = now + self.reput_ms;
            }
        }
        self.permanent.retain(|_, p| p.expires > now);
        let gone: Vec<OpId> = self
            .routes
            .iter()
            .filter(|(_, r)| match r {
                Route::Get(tx) | Route::Listen { tx, .. } => tx.is_closed(),
                Route::Put { .. } => false,
            })
            .map(|(op, _)| *op)
            .collect();
        for op in gone {
            self.routes.remove(&op);
            self.dht.cancel(op);
        }
    }

    /// When the node next has something to do (at most 1 s away).
    fn next_wakeup(&self, now: u64) -> u64 {
        self.permanent
            .values()
            .map(|p| p.next_put)
            .chain(self.dht.poll_timeout())
            .min()
            .unwrap_or(now + 1000)
    }

    fn command(&mut self, now: u64, c: Command) {
        let dht = &mut self.dht;
        match c {
            Command::Get { key, tx } => {
                let op = dht.get(now, key);
                self.routes.insert(op, Route::Get(tx));
            }
            Command::Listen { key, tx } => {
                let op = dht.listen(now, key);
                self.routes.insert(
                    op,
                    Route::Listen {
                        tx,
                        seen: BTreeMap::new(),
                    },
                );
            }
            Command::Put {
                key,
                mut value,
                permanent: keep,
                reply,
            } => {
                if value.id == 0 {
                    // OpenDHT gives a value without id a random one; ours is a per-node
                    // sequence mixed with the seed (unique here, deterministic for a seed).
                    self.next_id = self
                        .next_id
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    value.id = (self.next_id >> 1).max(1);
                }
                if keep {
                    self.permanent.insert(
                        (key, value.id),
                        Permanent {
                            value: value.clone(),
                            expires: now + PERMANENT_TTL_MS,
                            next_put: now + self.reput_ms,
                        },
                    );
                }
                let op = dht.put(now, key, value.clone());
                self.routes.insert(
                    op,
                    Route::Put {
                        value,
                        reply: Some(reply),
                    },
                );
            }
            Command::Info(reply) => {
                let t = dht.routing_table();
                let good = t.nodes().filter(|n| n.is_good(now)).count();
                let _ = reply.send(NodeInfo {
                    node_id: dht.id(),
                    good,
                    dubious: t.len() - good,
                    ops: self.routes.len(),
                    udp: self.udp,
                });
            }
            Command::Stop => {}
        }
    }
}

fn event(routes: &mut BTreeMap<OpId, Route>, e: Event) {
    match e {
        Event::Values { op, values, .. } => match routes.get_mut(&op) {
            Some(Route::Get(tx)) => {
                for v in values {
                    let _ = tx.send(Item::Value(v));
                }
            }
            Some(Route::Listen { tx, seen }) => {
                for v in values {
                    seen.insert(v.id, v.clone());
                    let _ = tx.send(Item::Value(v));
                }
            }
            _ => {}
        },
        Event::Expired { op, ids, .. } => {
            if let Some(Route::Listen { tx, seen }) = routes.get_mut(&op) {
                for id in ids {
                    if let Some(v) = seen.remove(&id) {
                        let _ = tx.send(Item::Expired(v));
                    }
                }
            }
        }
        Event::GetDone { op, .. } => {
            if matches!(routes.get(&op), Some(Route::Get(_))) {
                // Dropping the sender ends the HTTP stream.
                routes.remove(&op);
            }
        }
        Event::PutDone { op, stored_on, .. } => {
            if let Some(Route::Put { value, reply }) = routes.get_mut(&op) {
                if let Some(r) = reply.take() {
                    let _ = r.send((stored_on > 0).then(|| value.clone()));
                }
                routes.remove(&op);
            }
        }
        Event::Failed { op, .. } => {
            if let Some(Route::Put { reply: Some(r), .. }) = routes.remove(&op) {
                let _ = r.send(None);
            }
        }
        Event::Connected => {}
    }
}
