//! The discrete-event core: one priority queue of (time, sequence) events, time jumps
//! to the next event, one seed drives every random choice. Single-threaded on purpose;
//! parallelism comes from running many seeds at once.

use crate::app::{App, AppId, Ctx, TcpEvent};
use crate::link::{LinkDir, LinkDrop, LinkParams};
use crate::node::{Node, NodeKind};
use crate::packet::Packet;
use crate::pcap::Pcap;
use crate::time::{HostClock, SimTime};
use crate::trace::Trace;
use bytes::Bytes;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::time::Duration;

pub type NodeId = usize;
pub type LinkId = usize;
pub type SockId = u64;
pub type ConnId = u64;
pub type ListenerId = u64;

/// Deliberately broken models, so tests can show that each check notices when the
/// model it relies on is wrong. Never set by scenario files.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sabotage {
    /// Tor gateways forward UDP instead of dropping it.
    pub tor_forwards_udp: bool,
    /// Tunnel gateways (VPN, Tor) forward without replacing the source address.
    pub tunnel_leaks_source: bool,
    /// Routers forward multicast beyond the LAN segment.
    pub multicast_escapes_lan: bool,
    /// Links ignore their queue limit (nothing is ever dropped at the queue).
    pub unbounded_queues: bool,
    /// Links serialise this much faster than configured (1.0 is correct).
    pub bandwidth_error: f64,
    /// Jitter is drawn from a generator seeded by the wall clock.
    pub unseeded_jitter: bool,
    /// Host TCP ignores a SYN received in SYN-SENT (no simultaneous open).
    pub tcp_no_simultaneous_open: bool,
}

/// How a run is set up.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    /// Keep the trace text (the hash is always computed).
    pub keep_trace: bool,
    /// Write the trace at all (large benchmark runs turn it off).
    pub trace: bool,
    /// Record a pcap per host.
    pub capture: bool,
    pub sabotage: Sabotage,
    /// Most trace text kept in memory (the last lines; see `trace::DEFAULT_KEEP_BYTES`).
    pub trace_keep_bytes: usize,
    /// Also stream every trace line to this file (a replay's whole trace).
    pub trace_file: Option<std::path::PathBuf>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 0,
            keep_trace: true,
            trace: true,
            capture: false,
            sabotage: Sabotage::default(),
            trace_keep_bytes: crate::trace::DEFAULT_KEEP_BYTES,
            trace_file: None,
        }
    }
}

pub(crate) enum Event {
    /// A packet reaches the far end of a link.
    Arrive {
        link: LinkId,
        to: NodeId,
        pkt: Packet,
    },
    Timer {
        node: NodeId,
        app: AppId,
        token: u64,
        incarnation: u32,
    },
    TcpTimer {
        node: NodeId,
        conn: ConnId,
        incarnation: u32,
    },
    /// A node emits a packet on its uplink after an internal delay (tunnel gateways).
    Emit {
        node: NodeId,
        pkt: Packet,
    },
    TunnelKeepalive {
        node: NodeId,
        incarnation: u32,
    },
    /// A NAT held an unsolicited SYN (RFC 5382 REQ-4); now it decides.
    SynHold {
        node: NodeId,
        pkt: Packet,
    },
    /// A packet a host sent to one of its own addresses.
    Loopback {
        node: NodeId,
        pkt: Packet,
    },
}

/// A queue entry: when, in what order, and where its event waits in `Core::slab`.
/// Events carry whole packets (over 100 bytes); the heap moves entries O(log n) times
/// per push and pop, so it moves these 24 bytes instead.
struct Queued {
    at: SimTime,
    seq: u64,
    slot: u32,
}
impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// A call the event loop owes an application.
pub(crate) enum AppCall {
    Start,
    Udp {
        sock: SockId,
        from: SocketAddr,
        to: SocketAddr,
        data: Bytes,
    },
    Timer(u64),
    Tcp(TcpEvent),
}

/// A point-to-point link between two nodes, with one state per direction.
pub struct Link {
    pub ends: [NodeId; 2],
    pub dirs: [LinkDir; 2],
}

/// A partition's rule: packets crossing between `a` and `b` (or the rest) are dropped.
#[derive(Clone, Debug)]
struct PartitionRule {
    a: Vec<NodeId>,
    b: Option<Vec<NodeId>>,
}

impl PartitionRule {
    fn cuts(&self, x: NodeId, y: NodeId) -> bool {
        let in_a = |n| self.a.contains(&n);
        let in_b = |n| match &self.b {
            Some(b) => b.contains(&n),
            None => !self.a.contains(&n),
        };
        (in_a(x) && in_b(y)) || (in_b(x) && in_a(y))
    }
}

/// A network partition in force until this guard is dropped.
#[must_use = "the partition heals as soon as the guard is dropped"]
pub struct Partition {
    _alive: Rc<()>,
}

/// Clogged nodes: packets on their links are held, not lost, until the guard drops.
#[must_use = "the clog clears as soon as the guard is dropped"]
pub struct Clog {
    _alive: Rc<()>,
}

/// Everything but the applications, so that an application can act on it while it runs.
pub struct Core {
    pub now: SimTime,
    pub(crate) cfg: SimConfig,
    queue: BinaryHeap<Reverse<Queued>>,
    /// Events of the queue's entries, by slot; `free` lists the empty slots.
    slab: Vec<Option<Event>>,
    free: Vec<u32>,
    seq: u64,
    pub(crate) rng: ChaCha8Rng,
    pub nodes: Vec<Node>,
    pub links: Vec<Link>,
    pub(crate) pending: Vec<(NodeId, AppId, AppCall)>,
    pub trace: Option<Trace>,
    partitions: Vec<(Weak<()>, PartitionRule)>,
    clogs: Vec<(Weak<()>, Vec<NodeId>)>,
    held: Vec<(LinkId, usize, Packet)>,
    pub events: u64,
    next_packet_id: u64,
    pub metrics: BTreeMap<String, Vec<(SimTime, f64)>>,
    wall_rng: Option<ChaCha8Rng>,
    pub(crate) addr_plan: crate::node::AddrPlan,
}

/// Makes a fresh instance of an application (at install and after each restart).
type AppFactory = Box<dyn Fn() -> Box<dyn App>>;

/// The simulator: the core plus the applications on each host.
pub struct Sim {
    pub core: Core,
    apps: Vec<Vec<Option<Box<dyn App>>>>,
    factories: Vec<Vec<Option<AppFactory>>>,
}

/// Derive an independent, stable random stream for a named purpose.
pub(crate) fn derive_rng(seed: u64, purpose: &str) -> ChaCha8Rng {
    // FNV-1a over the purpose, mixed with the seed: stable across platforms and builds.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in purpose.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    ChaCha8Rng::seed_from_u64(seed ^ h.rotate_left(17))
}

impl Sim {
    pub fn new(cfg: SimConfig) -> Sim {
        let wall_rng = cfg.sabotage.unseeded_jitter.then(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1);
            ChaCha8Rng::seed_from_u64(nanos)
        });
        let mut core = Core {
            now: SimTime::ZERO,
            rng: derive_rng(cfg.seed, "network"),
            trace: cfg.trace.then(|| {
                let t = Trace::with_limit(cfg.keep_trace, cfg.trace_keep_bytes);
                match &cfg.trace_file {
                    // A trace file that cannot be created leaves the in-memory trace.
                    Some(p) => Trace::with_limit(cfg.keep_trace, cfg.trace_keep_bytes)
                        .to_file(p)
                        .unwrap_or(t),
                    None => t,
                }
            }),
            cfg,
            queue: BinaryHeap::new(),
            slab: Vec::new(),
            free: Vec::new(),
            seq: 0,
            nodes: Vec::new(),
            links: Vec::new(),
            pending: Vec::new(),
            partitions: Vec::new(),
            clogs: Vec::new(),
            held: Vec::new(),
            events: 0,
            next_packet_id: 0,
            metrics: BTreeMap::new(),
            wall_rng,
            addr_plan: Default::default(),
        };
        core.add_internet();
        let mut sim = Sim {
            core,
            apps: Vec::new(),
            factories: Vec::new(),
        };
        sim.sync_app_tables();
        sim
    }

    pub fn now(&self) -> SimTime {
        self.core.now
    }

    pub(crate) fn sync_app_tables(&mut self) {
        while self.apps.len() < self.core.nodes.len() {
            self.apps.push(Vec::new());
            self.factories.push(Vec::new());
        }
    }

    /// Install an application on a host; it starts at the current time. The factory is
    /// kept so that a restarted host runs a fresh instance.
    pub fn add_app<F>(&mut self, host: NodeId, factory: F) -> AppId
    where
        F: Fn() -> Box<dyn App> + 'static,
    {
        self.sync_app_tables();
        let app = factory();
        let id = self.apps[host].len();
        self.apps[host].push(Some(app));
        self.factories[host].push(Some(Box::new(factory)));
        if !self.core.is_down(host) {
            self.core.pending.push((host, id, AppCall::Start));
            self.drain_pending();
        }
        id
    }

    /// Typed access to an application's state (for checks).
    pub fn app<T: 'static>(&self, host: NodeId, app: AppId) -> Option<&T> {
        self.apps
            .get(host)?
            .get(app)?
            .as_ref()?
            .as_any()
            .downcast_ref::<T>()
    }
    pub fn app_mut<T: 'static>(&mut self, host: NodeId, app: AppId) -> Option<&mut T> {
        self.apps
            .get_mut(host)?
            .get_mut(app)?
            .as_mut()?
            .as_any_mut()
            .downcast_mut::<T>()
    }

    /// Run `f` with an application and a context, as if the host itself acted (used by
    /// timeline steps such as "send now").
    pub fn with_app<T: 'static, R>(
        &mut self,
        host: NodeId,
        app: AppId,
        f: impl FnOnce(&mut T, &mut Ctx<'_>) -> R,
    ) -> Option<R> {
        let mut boxed = self.apps.get_mut(host)?.get_mut(app)?.take()?;
        let r = boxed.as_any_mut().downcast_mut::<T>().map(|t| {
            let mut cx = Ctx {
                core: &mut self.core,
                node: host,
                app,
            };
            f(t, &mut cx)
        });
        self.apps[host][app] = Some(boxed);
        self.drain_pending();
        r
    }

    fn drain_pending(&mut self) {
        while !self.core.pending.is_empty() {
            let batch = std::mem::take(&mut self.core.pending);
            for (node, app, call) in batch {
                let Some(slot) = self.apps.get_mut(node).and_then(|a| a.get_mut(app)) else {
                    continue;
                };
                let Some(mut a) = slot.take() else { continue };
                {
                    let mut cx = Ctx {
                        core: &mut self.core,
                        node,
                        app,
                    };
                    match call {
                        AppCall::Start => a.start(&mut cx),
                        AppCall::Udp {
                            sock,
                            from,
                            to,
                            data,
                        } => a.on_udp(&mut cx, sock, from, to, &data),
                        AppCall::Timer(t) => a.on_timer(&mut cx, t),
                        AppCall::Tcp(ev) => a.on_tcp(&mut cx, ev),
                    }
                }
                if let Some(slot) = self.apps.get_mut(node).and_then(|a| a.get_mut(app)) {
                    if slot.is_none() {
                        *slot = Some(a);
                    }
                }
            }
        }
    }

    /// Process the next event. Returns false when nothing is left to do.
    pub fn step(&mut self) -> bool {
        self.core.reap_faults();
        let Some(Reverse(q)) = self.core.queue.pop() else {
            return false;
        };
        let Some(ev) = self.core.slab[q.slot as usize].take() else {
            return true;
        };
        self.core.free.push(q.slot);
        self.core.now = q.at;
        self.core.events += 1;
        self.core.handle(ev);
        self.drain_pending();
        true
    }

    /// Run until simulated time `t` (events at exactly `t` are processed).
    pub fn run_until(&mut self, t: SimTime) {
        loop {
            self.core.reap_faults();
            match self.core.queue.peek() {
                Some(Reverse(q)) if q.at <= t => {
                    self.step();
                }
                _ => break,
            }
        }
        if self.core.now < t {
            self.core.now = t;
        }
    }

    pub fn run_for(&mut self, d: Duration) {
        let t = self.core.now + d;
        self.run_until(t);
    }

    /// Crash a host: its applications, sockets and connections vanish; its disk stays.
    pub fn crash(&mut self, host: NodeId) {
        self.sync_app_tables();
        for slot in &mut self.apps[host] {
            *slot = None;
        }
        self.core.crash_host(host);
    }

    /// Restart a crashed host: fresh application instances from their factories.
    pub fn restart(&mut self, host: NodeId) {
        self.sync_app_tables();
        self.core.restart_host(host);
        for (i, f) in self.factories[host].iter().enumerate() {
            if let Some(f) = f {
                self.apps[host][i] = Some(f());
                self.core.pending.push((host, i, AppCall::Start));
            }
        }
        self.drain_pending();
    }

    /// Cut `a` off from `b` (or from everything else when `b` is `None`) until the
    /// returned guard is dropped.
    pub fn partition(&mut self, a: &[NodeId], b: Option<&[NodeId]>) -> Partition {
        let alive = Rc::new(());
        let rule = PartitionRule {
            a: a.to_vec(),
            b: b.map(|b| b.to_vec()),
        };
        let names = |v: &[NodeId]| {
            v.iter()
                .map(|&n| self.core.node_name(n).to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        let msg = format!(
            "fault partition [{}] | [{}]",
            names(a),
            b.map(names).unwrap_or_else(|| "*".into())
        );
        self.core.trace_line(&msg);
        self.core.partitions.push((Rc::downgrade(&alive), rule));
        Partition { _alive: alive }
    }

    /// Hold every packet on links touching `nodes` until the guard is dropped.
    pub fn clog(&mut self, nodes: &[NodeId]) -> Clog {
        let alive = Rc::new(());
        let msg = format!(
            "fault clog {:?}",
            nodes
                .iter()
                .map(|&n| self.core.node_name(n))
                .collect::<Vec<_>>()
        );
        self.core.trace_line(&msg);
        self.core
            .clogs
            .push((Rc::downgrade(&alive), nodes.to_vec()));
        Clog { _alive: alive }
    }

    pub fn set_clock(&mut self, host: NodeId, clock: HostClock) {
        self.core.set_clock(host, clock);
    }

    /// Change one direction (`from` → other end) or both of a link's parameters.
    pub fn set_link(&mut self, link: LinkId, from: Option<NodeId>, params: LinkParams) {
        let l = &mut self.core.links[link];
        for d in 0..2 {
            if from.is_none() || from == Some(l.ends[d]) {
                l.dirs[d].params = params.clone();
            }
        }
    }

    pub fn node_id(&self, name: &str) -> Option<NodeId> {
        self.core.nodes.iter().position(|n| n.name == name)
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.core.nodes[id]
    }

    pub fn trace_hash(&self) -> String {
        self.core
            .trace
            .as_ref()
            .map(|t| t.hash_hex())
            .unwrap_or_default()
    }

    /// The trace text kept in memory (its last part when lines were cut).
    pub fn trace_text(&self) -> Option<&str> {
        self.core.trace.as_ref().and_then(|t| t.text())
    }

    /// Lines cut from the front of the kept trace text.
    pub fn trace_cut_lines(&self) -> u64 {
        self.core.trace.as_ref().map(|t| t.cut_lines).unwrap_or(0)
    }

    /// Flush the file the trace streams to, if any.
    pub fn flush_trace(&mut self) -> std::io::Result<()> {
        match &mut self.core.trace {
            Some(t) => t.flush(),
            None => Ok(()),
        }
    }

    /// (host name, pcap) for every host that captured packets.
    pub fn pcaps(&self) -> Vec<(&str, &Pcap)> {
        self.core
            .nodes
            .iter()
            .filter_map(|n| match &n.kind {
                NodeKind::Host(h) => h.pcap.as_ref().map(|p| (n.name.as_str(), p)),
                _ => None,
            })
            .collect()
    }
}

impl Core {
    pub(crate) fn schedule(&mut self, at: SimTime, ev: Event) {
        self.seq += 1;
        let slot = match self.free.pop() {
            Some(k) => {
                self.slab[k as usize] = Some(ev);
                k
            }
            None => {
                self.slab.push(Some(ev));
                (self.slab.len() - 1) as u32
            }
        };
        self.queue.push(Reverse(Queued {
            at,
            seq: self.seq,
            slot,
        }));
    }

    pub(crate) fn packet_id(&mut self) -> u64 {
        self.next_packet_id += 1;
        self.next_packet_id
    }

    pub fn trace_line(&mut self, msg: &str) {
        let now = self.now;
        if let Some(t) = &mut self.trace {
            t.line(now, msg);
        }
    }

    pub(crate) fn tracing(&self) -> bool {
        self.trace.is_some()
    }

    pub(crate) fn metric(&mut self, name: &str, t: SimTime, v: f64) {
        self.metrics
            .entry(name.to_string())
            .or_default()
            .push((t, v));
    }

    pub fn node_name(&self, n: NodeId) -> &str {
        &self.nodes[n].name
    }

    /// Notice dropped fault guards: heal partitions, release packets held by clogs.
    fn reap_faults(&mut self) {
        if !self.partitions.is_empty() {
            let before = self.partitions.len();
            self.partitions.retain(|(w, _)| w.strong_count() > 0);
            if self.partitions.len() != before {
                self.trace_line("fault heal partition");
            }
        }
        if self.clogs.is_empty() && self.held.is_empty() {
            return;
        }
        let before = self.clogs.len();
        self.clogs.retain(|(w, _)| w.strong_count() > 0);
        if self.clogs.len() == before {
            return;
        }
        let held = std::mem::take(&mut self.held);
        let mut released = Vec::new();
        for (link, dir, pkt) in held {
            let [a, b] = self.links[link].ends;
            if self.clogged(a) || self.clogged(b) {
                self.held.push((link, dir, pkt));
            } else {
                released.push((link, dir, pkt));
            }
        }
        self.trace_line(&format!("fault unclog released={}", released.len()));
        for (link, dir, pkt) in released {
            let from = self.links[link].ends[dir];
            self.transmit(from, link, pkt);
        }
    }

    fn clogged(&self, n: NodeId) -> bool {
        self.clogs
            .iter()
            .any(|(w, nodes)| w.strong_count() > 0 && nodes.contains(&n))
    }

    fn partitioned(&self, a: NodeId, b: NodeId) -> bool {
        self.partitions
            .iter()
            .any(|(w, r)| w.strong_count() > 0 && r.cuts(a, b))
    }

    /// Put a packet on a link from node `from`; schedules its arrival or drops it.
    pub(crate) fn transmit(&mut self, from: NodeId, link: LinkId, pkt: Packet) {
        let dir = if self.links[link].ends[0] == from {
            0
        } else {
            1
        };
        let to = self.links[link].ends[1 - dir];
        if self.partitioned(from, to) {
            self.drop_packet(from, &pkt, "partition");
            return;
        }
        if self.clogged(from) || self.clogged(to) {
            self.held.push((link, dir, pkt));
            return;
        }
        let now = self.now;
        let len = pkt.wire_len();
        let sab = &self.cfg.sabotage;
        let (unbounded, bw_err) = (sab.unbounded_queues, sab.bandwidth_error);
        let ldir = &mut self.links[link].dirs[dir];
        let saved = ldir.params.clone();
        if unbounded {
            ldir.params.queue_bytes = usize::MAX / 4;
        }
        if bw_err > 0.0 && bw_err != 1.0 {
            ldir.params.bandwidth_bps = ldir
                .params
                .bandwidth_bps
                .map(|b| (b as f64 * bw_err) as u64);
        }
        let rng = match &mut self.wall_rng {
            Some(r) => r,
            None => &mut self.rng,
        };
        let res = ldir.transmit(now, len, rng);
        ldir.params = saved;
        match res {
            Ok(arrivals) => {
                for at in arrivals {
                    self.schedule(
                        at,
                        Event::Arrive {
                            link,
                            to,
                            pkt: pkt.clone(),
                        },
                    );
                }
            }
            Err(LinkDrop::Loss) => self.drop_packet(from, &pkt, "link: loss"),
            Err(LinkDrop::Queue) => self.drop_packet(from, &pkt, "link: queue full"),
        }
    }

    pub(crate) fn drop_packet(&mut self, at: NodeId, pkt: &Packet, why: &str) {
        if let Some(t) = &mut self.trace {
            let name = &self.nodes[at].name;
            t.line_args(
                self.now,
                format_args!("drop  {name} {pkt} #{} ({why})", pkt.id),
            );
        }
        self.nodes[at].drops += 1;
    }

    fn handle(&mut self, ev: Event) {
        match ev {
            Event::Arrive { link, to, pkt } => self.receive(to, link, pkt),
            Event::Timer {
                node,
                app,
                token,
                incarnation,
            } => {
                if self.host_incarnation(node) == Some(incarnation) {
                    self.pending.push((node, app, AppCall::Timer(token)));
                }
            }
            Event::TcpTimer {
                node,
                conn,
                incarnation,
            } => {
                if self.host_incarnation(node) == Some(incarnation) {
                    self.tcp_timeout(node, conn);
                }
            }
            Event::Emit { node, pkt } => {
                if let Some(up) = self.nodes[node].uplink {
                    self.transmit(node, up, pkt);
                }
            }
            Event::Loopback { node, pkt } => {
                if !self.is_down(node) {
                    self.deliver(node, pkt);
                }
            }
            Event::SynHold { node, pkt } => self.nat_syn_hold_over(node, pkt),
            Event::TunnelKeepalive { node, incarnation } => {
                if self.host_incarnation(node) == Some(incarnation) {
                    self.tunnel_keepalive(node);
                }
            }
        }
    }

    pub(crate) fn set_timer(&mut self, node: NodeId, app: AppId, after: Duration, token: u64) {
        let Some(inc) = self.host_incarnation(node) else {
            return;
        };
        let d = self.host_clock(node).global_duration(after);
        let at = self.now + d;
        self.schedule(
            at,
            Event::Timer {
                node,
                app,
                token,
                incarnation: inc,
            },
        );
    }

    pub(crate) fn host_rng(&mut self, node: NodeId) -> &mut ChaCha8Rng {
        match &mut self.nodes[node].kind {
            NodeKind::Host(h) => &mut h.rng,
            _ => &mut self.rng,
        }
    }

    /// A random draw from the network's own stream (NAT ports, circuit delays).
    pub(crate) fn net_range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            lo
        } else {
            self.rng.random_range(lo..=hi)
        }
    }
}
