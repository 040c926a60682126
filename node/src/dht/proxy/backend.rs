//! The DHT node behind the proxy: the sans-IO engine on a UDP socket, in a thread of
//! its own that takes [`Command`]s over a channel and routes engine events, by op id,
//! back to the HTTP requests that asked (get and listen streams, put answers).
//! It also keeps permanent puts alive, as OpenDHT's proxy does, for [`PERMANENT_TTL_MS`].

use crate::dht::engine::{Config, Event, OpId};
use crate::dht::secure::SecureDht;
use crate::dht::{InfoHash, Value};
use crate::driver::{unix_ms, UdpDriver};
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

/// Handle to the DHT thread.
#[derive(Clone)]
pub struct Backend {
    tx: mpsc::Sender<Command>,
    pub node_id: InfoHash,
    pub udp: SocketAddr,
    pub counters: Arc<Counters>,
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
        let mut id = [0u8; 20];
        let mut s = seed;
        for b in id.iter_mut() {
            // splitmix64 bytes: a distinct id per seed without another RNG dependency here.
            s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            *b = (z ^ (z >> 31)) as u8;
        }
        let bootstrap = bootstrap.to_vec();
        let (tx, rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        let counters = Arc::new(Counters::default());
        let thread_counters = counters.clone();
        // The engine is not `Send` (its verifier is a plain boxed closure): it is built in
        // its thread, which reports back the bound address.
        std::thread::Builder::new()
            .name("dht-proxy-node".into())
            .spawn(move || {
                let verify: crate::dht::engine::Verifier = Box::new(crate::crypto::verify);
                let dht = SecureDht::new(
                    Config {
                        id: InfoHash(id),
                        network: 0,
                        seed,
                        verify: Some(verify),
                    },
                    None,
                    unix_ms(),
                );
                let node_id = dht.id();
                let bound = UdpDriver::bind(dht, bind).and_then(|d| Ok((d.local_addr()?, d)));
                match bound {
                    Ok((udp, mut driver)) => {
                        for b in &bootstrap {
                            driver.dht.bootstrap(unix_ms(), *b);
                        }
                        let _ = ready_tx.send(Ok((node_id, udp)));
                        run(driver, rx, seed, reput_ms, &thread_counters)
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })?;
        let (node_id, udp) = ready_rx
            .recv()
            .map_err(|_| io::Error::other("the DHT thread ended"))??;
        Ok(Backend {
            tx,
            node_id,
            udp,
            counters,
        })
    }

    /// Send a command; false when the thread has stopped.
    pub fn send(&self, c: Command) -> bool {
        self.tx.send(c).is_ok()
    }

    pub fn stop(&self) {
        let _ = self.tx.send(Command::Stop);
    }
}

fn run(
    mut d: UdpDriver<SecureDht>,
    rx: mpsc::Receiver<Command>,
    seed: u64,
    reput_ms: u64,
    counters: &Counters,
) {
    let mut routes: BTreeMap<OpId, Route> = BTreeMap::new();
    let mut permanent: BTreeMap<(InfoHash, u64), Permanent> = BTreeMap::new();
    let mut next_id = seed | 1;
    loop {
        loop {
            match rx.try_recv() {
                Ok(Command::Stop) | Err(mpsc::TryRecvError::Disconnected) => return,
                Ok(c) => command(
                    &mut d,
                    &mut routes,
                    &mut permanent,
                    &mut next_id,
                    reput_ms,
                    c,
                ),
                Err(mpsc::TryRecvError::Empty) => break,
            }
        }
        let now = unix_ms();
        for ((key, _), p) in permanent.iter_mut() {
            if p.next_put <= now {
                d.dht.put(now, *key, p.value.clone());
                counters.reputs.fetch_add(1, Ordering::Relaxed);
                p.next_put = now + reput_ms;
            }
        }
        permanent.retain(|_, p| p.expires > now);
        let turned = d.turn(Duration::from_millis(10), &mut |dht, e| {
            event(dht, &mut routes, e)
        });
        if turned.is_err() {
            std::thread::sleep(Duration::from_millis(10));
        }
        // Streams whose HTTP client went away: stop their DHT operations.
        let gone: Vec<OpId> = routes
            .iter()
            .filter(|(_, r)| match r {
                Route::Get(tx) | Route::Listen { tx, .. } => tx.is_closed(),
                Route::Put { .. } => false,
            })
            .map(|(op, _)| *op)
            .collect();
        for op in gone {
            routes.remove(&op);
            d.dht.cancel(op);
        }
    }
}

fn command(
    d: &mut UdpDriver<SecureDht>,
    routes: &mut BTreeMap<OpId, Route>,
    permanent: &mut BTreeMap<(InfoHash, u64), Permanent>,
    next_id: &mut u64,
    reput_ms: u64,
    c: Command,
) {
    let now = unix_ms();
    match c {
        Command::Get { key, tx } => {
            let op = d.dht.get(now, key);
            routes.insert(op, Route::Get(tx));
        }
        Command::Listen { key, tx } => {
            let op = d.dht.listen(now, key);
            routes.insert(
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
                // OpenDHT gives a value without id a random one; ours is a per-node sequence
                // mixed with the seed (unique here, and deterministic for a seed).
                *next_id = next_id
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                value.id = (*next_id >> 1).max(1);
            }
            if keep {
                permanent.insert(
                    (key, value.id),
                    Permanent {
                        value: value.clone(),
                        expires: now + PERMANENT_TTL_MS,
                        next_put: now + reput_ms,
                    },
                );
            }
            let op = d.dht.put(now, key, value.clone());
            routes.insert(
                op,
                Route::Put {
                    value,
                    reply: Some(reply),
                },
            );
        }
        Command::Info(reply) => {
            let t = d.dht.routing_table();
            let good = t.nodes().filter(|n| n.is_good(now)).count();
            let _ = reply.send(NodeInfo {
                node_id: d.dht.id(),
                good,
                dubious: t.len() - good,
                ops: routes.len(),
                udp: d
                    .local_addr()
                    .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0))),
            });
        }
        Command::Stop => {}
    }
}

fn event(_dht: &mut SecureDht, routes: &mut BTreeMap<OpId, Route>, e: Event) {
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
