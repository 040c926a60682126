//! The DHT engine: an OpenDHT 2.4-compatible node as a sans-IO state machine. It answers
//! ping/find/get/put/listen/refresh, keeps a routing table, stores values for others,
//! pushes updates to listeners, and runs iterative get/put/listen searches. Inputs are
//! datagrams, timeouts and commands, each with `now` (Unix milliseconds); outputs are
//! drained with `poll_transmit`, `poll_event` and `poll_timeout`. Randomness comes from
//! a seeded generator, so a simulation replays exactly.

use super::infohash::{xor_cmp, InfoHash};
use super::routing::{Insert, RoutingTable};
use super::storage::{PutOutcome, Storage, Stored};
use super::token::{RequestLimits, Tokens};
use super::value::{Value, ValueData};
use super::wire::{
    self, pack_values, value_parts_messages, ErrorMsg, FieldEntry, FieldFilter, FieldsReply, Find,
    Get, Listen, Message, MessageBody, NodeInfo, PartialMessage, Put, Query, Refresh, Reply,
    Update, ValueSlot,
};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, SocketAddr};

/// Nodes a search keeps (`SEARCH_NODES`).
pub const SEARCH_NODES: usize = 14;
/// Outstanding requests per search (`MAX_REQUESTED_SEARCH_NODES`).
pub const SEARCH_PARALLEL: usize = 4;
/// Nodes a put goes to and a search must have synced (`TARGET_NODES`).
pub const TARGET_NODES: usize = 8;
/// Nodes a listen goes to (`LISTEN_NODES`).
pub const LISTEN_NODES: usize = 4;
/// Nodes in find/get replies (`SEND_NODES`).
pub const SEND_NODES: usize = 8;
/// Attempts per request (`MAX_ATTEMPT_COUNT`).
pub const MAX_ATTEMPTS: u8 = 3;
/// Listen refresh period on the client side (30 s - 10 s).
pub const LISTEN_REFRESH_MS: u64 = 20_000;
const FIRST_RETRY_MS: u64 = 500;
const PARTIAL_TIMEOUT_MS: u64 = 3_000;
const PARTIAL_MAX_MS: u64 = 10_000;
const EXPIRE_PERIOD_MS: u64 = 60_000;
/// A bucket none of whose nodes replied for this long gets a `find` of a random id in
/// its range (OpenDHT's `bucketMaintenance`, 10 min).
pub const BUCKET_STALE: std::time::Duration = std::time::Duration::from_secs(10 * 60);
/// While a newcomer landed in our own bucket this recently, the neighbourhood is still
/// forming and is asked about at each maintenance run (OpenDHT's 150 s).
pub const NEIGHBOURHOOD_GROWTH_MS: u64 = 150_000;
/// While disconnected, bootstrap nodes are pinged again after this long, the wait
/// doubling each time up to [`BOOTSTRAP_PERIOD_MAX_MS`] (OpenDHT's `BOOTSTRAP_PERIOD`):
/// a node whose first pings were all lost (its bootstrap node busy, as when thousands
/// of nodes start at once) still joins.
pub const BOOTSTRAP_PERIOD_MS: u64 = 10_000;
/// The longest wait between bootstrap attempts (OpenDHT's 24 h).
pub const BOOTSTRAP_PERIOD_MAX_MS: u64 = 24 * 3600 * 1000;
/// Per-address transaction counters kept before those with no request in flight are
/// forgotten (at the next maintenance run). OpenDHT keeps the counter in its node
/// object, gone with the node; kept for every address ever asked, they were a node's
/// largest growing state in a 10,000-node network.
pub const MAX_TIDS: usize = 256;
/// Bootstrap addresses remembered; the user gives them, a handful is the norm, and a
/// bound keeps a careless caller from growing the list without end.
pub const MAX_BOOTSTRAP_NODES: usize = 64;

/// Checks a signed value (owner key, signed body bytes, signature). The engine knows
/// no crypto; the node gives it this.
pub type Verifier = Box<dyn Fn(&[u8], &[u8], &[u8]) -> bool>;

/// How a node starts.
pub struct Config {
    pub id: InfoHash,
    /// Network id; Jami uses 0.
    pub network: u32,
    pub seed: u64,
    /// Signature check for signed values stored here; `None` stores them unchecked.
    pub verify: Option<Verifier>,
}

impl Config {
    /// Network 0 (Jami's), signatures of signed values checked with our crypto: the
    /// configuration of a node on the real network.
    pub fn verifying(id: InfoHash, seed: u64) -> Config {
        Config {
            id,
            network: 0,
            seed,
            verify: Some(Box::new(crate::crypto::verify)),
        }
    }
}

/// A datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub to: SocketAddr,
    pub bytes: Vec<u8>,
}

/// Handle of a get, put or listen started by the user.
pub type OpId = u64;

/// What the engine tells its user.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// Values found by a get, or pushed to a listen.
    Values {
        op: OpId,
        key: InfoHash,
        values: Vec<Value>,
    },
    /// Values a listen was told expired.
    Expired {
        op: OpId,
        key: InfoHash,
        ids: Vec<u64>,
    },
    /// A get finished (the closest nodes answered, or no more nodes to ask).
    GetDone {
        op: OpId,
        key: InfoHash,
        nodes_answered: usize,
        /// Lookup rounds until the values were found (or until the search ended).
        hops: u8,
    },
    /// A put was acknowledged by this many nodes.
    PutDone {
        op: OpId,
        key: InfoHash,
        stored_on: usize,
    },
    /// A multi-step operation of the secure layer could not be done (e.g. no
    /// certificate found for the recipient of an encrypted put).
    Failed {
        op: OpId,
        key: InfoHash,
        reason: String,
    },
    /// The first node answered: we are connected.
    Connected,
}

impl Event {
    /// The operation an event belongs to (`None` for `Connected`): how the parts that
    /// share one node (presence, contacts, messages) pick out their own events.
    pub fn op(&self) -> Option<OpId> {
        match self {
            Event::Values { op, .. }
            | Event::Expired { op, .. }
            | Event::GetDone { op, .. }
            | Event::Failed { op, .. }
            | Event::PutDone { op, .. } => Some(*op),
            Event::Connected => None,
        }
    }
}

#[derive(Clone, Debug)]
enum Purpose {
    Ping,
    /// A lone `find` of table maintenance: its answer only feeds the table.
    Maintain,
    Search(OpId),
    PutTo(OpId),
    ListenTo(OpId),
    Update,
}

#[derive(Clone, Debug)]
struct Pending {
    to: SocketAddr,
    node: Option<InfoHash>,
    msg: Message,
    parts: Vec<Message>,
    attempts: u8,
    retry_at: u64,
    interval: u64,
    purpose: Purpose,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum NodeState {
    Candidate,
    Requested,
    /// Asked, and silent past the first retry (500 ms): OpenDHT's search "candidate"
    /// (`searchNodeGetExpired` with `over = false`). It no longer holds back the search's
    /// sync or takes a parallel slot, so a node behind a NAT that drops our packets costs
    /// half a second rather than the whole retry budget; an answer still counts.
    Late,
    Answered {
        token: Vec<u8>,
    },
    Failed,
}

#[derive(Clone, Debug)]
struct SearchNode {
    id: InfoHash,
    addr: SocketAddr,
    state: NodeState,
    /// Put acknowledged / listen confirmed by this node.
    acked: bool,
    /// Listen socket id we gave this node and when to refresh.
    sid: u32,
    refresh_at: u64,
    /// Lookup round that found this node (1 for nodes from our own table).
    depth: u8,
    /// A put was sent to it.
    put_sent: bool,
}

impl SearchNode {
    /// A node to ask, found in round `depth`.
    fn candidate(id: InfoHash, addr: SocketAddr, refresh_at: u64, depth: u8) -> Self {
        SearchNode {
            id,
            addr,
            state: NodeState::Candidate,
            acked: false,
            sid: 0,
            refresh_at,
            depth,
            put_sent: false,
        }
    }
}

#[derive(Clone, Debug)]
enum SearchKind {
    Find,
    Get,
    /// `permanent`: kept after it is done and sent to new closer nodes as they appear
    /// (OpenDHT's permanent announce); `reported`: its `PutDone` was given.
    Put {
        packed: Vec<u8>,
        sent: bool,
        permanent: bool,
        reported: bool,
    },
    Listen,
}

impl SearchKind {
    /// Listens and permanent puts follow the key's neighbourhood as the table grows.
    fn follows_table(&self) -> bool {
        matches!(
            self,
            SearchKind::Listen
                | SearchKind::Put {
                    permanent: true,
                    ..
                }
        )
    }
}

#[derive(Clone, Debug)]
struct Search {
    key: InfoHash,
    kind: SearchKind,
    nodes: Vec<SearchNode>,
    seen: BTreeSet<u64>,
    done: bool,
    /// Lookup round of the first node that returned values.
    found_depth: Option<u8>,
}

impl Search {
    /// Sort by distance and keep the closest, but never forget a node we wait for.
    fn keep_closest(&mut self) {
        let key = self.key;
        self.nodes.sort_by(|a, b| xor_cmp(&a.id, &b.id, &key));
        let mut kept = 0;
        self.nodes.retain(|n| {
            kept += 1;
            kept <= SEARCH_NODES || matches!(n.state, NodeState::Requested | NodeState::Late)
        });
    }

    /// Whether node `n` still counts toward the search's sync (neither failed nor late).
    fn counts(n: &SearchNode) -> bool {
        !matches!(n.state, NodeState::Failed | NodeState::Late)
    }

    /// The closest nodes that count, at most [`TARGET_NODES`], as indices into `nodes`.
    fn live(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| Self::counts(&self.nodes[i]))
            .take(TARGET_NODES)
            .collect()
    }

    /// OpenDHT's isSynced: the first live nodes answered, and there is at least one;
    /// with none, wait while a late node may still answer.
    fn synced(&self) -> bool {
        let live = self.live();
        if live.is_empty() {
            !self.nodes.iter().any(|n| n.state == NodeState::Late)
        } else {
            live.iter()
                .all(|&i| matches!(self.nodes[i].state, NodeState::Answered { .. }))
        }
    }
}

/// Counters for reports and flood scenarios.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub received: u64,
    pub malformed: u64,
    pub rate_limited: u64,
    pub requests_answered: u64,
    pub errors_sent: u64,
    pub timeouts: u64,
    pub rejected_values: u64,
    pub searches_started: u64,
    pub maintenance_runs: u64,
}

/// An OpenDHT-compatible node.
pub struct Dht {
    cfg: Config,
    rng: ChaCha8Rng,
    now: u64,
    table: RoutingTable,
    storage: Storage,
    tokens: Tokens,
    limits: RequestLimits,
    pending: BTreeMap<(SocketAddr, u32), Pending>,
    /// `pending` by retry time, so the next timeout and the due requests are found
    /// without a walk over every request in flight.
    retries: BTreeSet<(u64, SocketAddr, u32)>,
    tids: BTreeMap<SocketAddr, u32>,
    partials: BTreeMap<(SocketAddr, u32), (PartialMessage, u64, u64)>,
    searches: BTreeMap<OpId, Search>,
    /// The searches that follow the table as it grows (listens, permanent puts): kept
    /// apart so a new node costs nothing when there are none.
    follows: BTreeSet<OpId>,
    next_op: OpId,
    out: VecDeque<Transmit>,
    events: VecDeque<Event>,
    connected: bool,
    /// Our address as other nodes reported it (`sa`), with how many said so.
    reported: BTreeMap<IpAddr, u32>,
    expire_at: u64,
    maintain_at: u64,
    /// Where to bootstrap from, when to look again whether we must, and the wait after.
    bootstrap_nodes: Vec<SocketAddr>,
    bootstrap_at: Option<u64>,
    bootstrap_period: u64,
    pub stats: Stats,
}

impl Dht {
    pub fn new(cfg: Config, now: u64) -> Dht {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let (s1, s2) = (rng.random::<u64>(), rng.random::<u64>());
        let rotate = now + rng.random_range(15 * 60_000..=45 * 60_000);
        Dht {
            table: RoutingTable::new(cfg.id.0),
            storage: Storage::new(),
            tokens: Tokens::new(s1, s2, rotate),
            limits: RequestLimits::default(),
            pending: BTreeMap::new(),
            retries: BTreeSet::new(),
            tids: BTreeMap::new(),
            partials: BTreeMap::new(),
            searches: BTreeMap::new(),
            follows: BTreeSet::new(),
            next_op: 1,
            out: VecDeque::new(),
            events: VecDeque::new(),
            connected: false,
            reported: BTreeMap::new(),
            expire_at: now + EXPIRE_PERIOD_MS,
            bootstrap_nodes: Vec::new(),
            bootstrap_at: None,
            bootstrap_period: BOOTSTRAP_PERIOD_MS,
            maintain_at: now + rng.random_range(3_000..=5_000),
            stats: Stats::default(),
            rng,
            now,
            cfg,
        }
    }

    pub fn id(&self) -> InfoHash {
        self.cfg.id
    }

    /// The time of the latest input (ms).
    pub fn now(&self) -> u64 {
        self.now
    }

    /// An op id for an operation that starts later (the secure layer's multi-step ops).
    pub fn reserve_op(&mut self) -> OpId {
        let op = self.next_op;
        self.next_op += 1;
        op
    }

    pub fn routing_table(&self) -> &RoutingTable {
        &self.table
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Our public addresses as the nodes that answered us saw them, most reported first.
    pub fn public_addresses(&self) -> Vec<(IpAddr, u32)> {
        let mut v: Vec<(IpAddr, u32)> = self.reported.iter().map(|(a, n)| (*a, *n)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }

    /// Source addresses the rate limiter currently tracks (bounded-memory checks).
    pub fn tracked_sources(&self) -> usize {
        self.limits.tracked()
    }

    /// One line per search: key, kind, whether done, and each node's state (`R`
    /// requested, `L` late, `A` answered, `F` failed, `C` candidate; `+` a put or listen
    /// it acknowledged). What a failed lookup in a lab is diagnosed from.
    pub fn searches_summary(&self) -> Vec<String> {
        self.searches
            .iter()
            .map(|(op, s)| {
                let kind = match &s.kind {
                    SearchKind::Find => "find",
                    SearchKind::Get => "get",
                    SearchKind::Put {
                        permanent: true, ..
                    } => "put-permanent",
                    SearchKind::Put { .. } => "put",
                    SearchKind::Listen => "listen",
                };
                let nodes: Vec<String> = s
                    .nodes
                    .iter()
                    .map(|n| {
                        let st = match n.state {
                            NodeState::Candidate => 'C',
                            NodeState::Requested => 'R',
                            NodeState::Late => 'L',
                            NodeState::Answered { .. } => 'A',
                            NodeState::Failed => 'F',
                        };
                        let ack = if n.acked { "+" } else { "" };
                        format!("{}@{}:{st}{ack}", &n.id.to_string()[..8], n.addr)
                    })
                    .collect();
                format!(
                    "op {op} {kind} {} done={} [{}]",
                    &s.key.to_string()[..8],
                    s.done,
                    nodes.join(" ")
                )
            })
            .collect()
    }

    /// Requests still waiting for an answer (bounded-memory checks).
    pub fn pending_requests(&self) -> usize {
        self.pending.len()
    }

    /// Addresses with a transaction counter (bounded-memory checks).
    pub fn tid_counters(&self) -> usize {
        self.tids.len()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The next time `handle_timeout` has work.
    pub fn poll_timeout(&self) -> Option<u64> {
        let mut t = self
            .expire_at
            .min(self.maintain_at)
            .min(self.tokens.rotate_at)
            .min(self.bootstrap_at.unwrap_or(u64::MAX));
        if let Some((at, _, _)) = self.retries.first() {
            t = t.min(*at);
        }
        for (_, started, last) in self.partials.values() {
            t = t.min((last + PARTIAL_TIMEOUT_MS).min(started + PARTIAL_MAX_MS));
        }
        // Only listens have refresh times, and they are all in `follows` (this runs
        // after every input: a walk over every search was 2 % of a 1,000-node hour).
        for s in self.follows.iter().filter_map(|op| self.searches.get(op)) {
            if !matches!(s.kind, SearchKind::Listen) {
                continue;
            }
            for n in s.nodes.iter().filter(|n| n.acked) {
                t = t.min(n.refresh_at);
            }
        }
        Some(t)
    }

    // ---- commands ---------------------------------------------------------------------

    /// Ping a bootstrap node; its answer puts it in the routing table. It is kept, and
    /// pinged again while the node is disconnected (OpenDHT's `addBootstrap`).
    pub fn bootstrap(&mut self, now: u64, addr: SocketAddr) {
        self.now = now;
        if !self.bootstrap_nodes.contains(&addr) && self.bootstrap_nodes.len() < MAX_BOOTSTRAP_NODES
        {
            self.bootstrap_nodes.push(addr);
        }
        self.bootstrap_period = BOOTSTRAP_PERIOD_MS;
        self.bootstrap_at = Some(now + BOOTSTRAP_PERIOD_MS);
        self.ping(addr);
    }

    /// OpenDHT's `Disconnected` status: no node in the table that is not expired, and no
    /// ping waiting for an answer.
    pub fn is_disconnected(&self) -> bool {
        !self.table.nodes().any(|n| !n.is_expired())
            && !self
                .pending
                .values()
                .any(|p| matches!(p.purpose, Purpose::Ping))
    }

    /// While disconnected, ping every bootstrap node again, each time waiting twice as
    /// long (OpenDHT's `Dht::bootstrap` job). Once connected the job stops; it starts
    /// again, at the first period, when the node finds itself disconnected.
    fn bootstrap_again(&mut self, now: u64) {
        if self.is_disconnected() {
            for addr in self.bootstrap_nodes.clone() {
                self.ping(addr);
            }
            self.bootstrap_at = Some(now + self.bootstrap_period);
            self.bootstrap_period = (self.bootstrap_period * 2).min(BOOTSTRAP_PERIOD_MAX_MS);
        } else {
            self.bootstrap_period = BOOTSTRAP_PERIOD_MS;
            self.bootstrap_at = None;
        }
    }

    /// Find the values stored at `key`.
    pub fn get(&mut self, now: u64, key: InfoHash) -> OpId {
        self.now = now;
        // Values stored here answer too (we may be one of the closest nodes).
        self.start_search(key, SearchKind::Get, true)
    }

    /// The values this node itself stores at `key`.
    pub fn local_values(&self, key: &InfoHash) -> Vec<Value> {
        self.storage
            .get(&key.0)
            .iter()
            .filter_map(|e| Value::unpack(&e.value.packed).ok())
            .collect()
    }

    fn deliver_local(&mut self, op: OpId, key: InfoHash) {
        let local = self.local_values(&key);
        if !local.is_empty() {
            self.deliver(op, key, local);
        }
    }

    /// Store `value` at `key` on the closest nodes (and locally).
    pub fn put(&mut self, now: u64, key: InfoHash, value: Value) -> OpId {
        self.put_with(now, key, value, false)
    }

    /// [`Dht::put`], and keep putting it on every node that becomes one of the key's
    /// closest while the table grows, until `cancel` (OpenDHT's `put(..., permanent)`,
    /// as jamid announces its device). One `PutDone`, for the first round.
    pub fn put_permanent(&mut self, now: u64, key: InfoHash, value: Value) -> OpId {
        self.put_with(now, key, value, true)
    }

    fn put_with(&mut self, now: u64, key: InfoHash, value: Value, permanent: bool) -> OpId {
        self.now = now;
        let packed = value.pack();
        // Our own storage applies the same policy as for remote puts (a refused edit is
        // still sent: the network decides for itself).
        let src = IpAddr::from([127, 0, 0, 1]);
        let outcome = match self.stored_form(key, &value, packed.clone()) {
            Some(v) => self.storage.put(key.0, v, now / 1000 * 1000, now, src),
            None => PutOutcome::Rejected("invalid signature or type policy"),
        };
        if let PutOutcome::Rejected(_) = outcome {
            self.stats.rejected_values += 1;
        }
        self.start_search(
            key,
            SearchKind::Put {
                packed,
                sent: false,
                permanent,
                reported: false,
            },
            false,
        )
    }

    /// Be told about values at `key` as they arrive (until `cancel`).
    pub fn listen(&mut self, now: u64, key: InfoHash) -> OpId {
        self.now = now;
        // Values already stored here count too.
        self.start_search(key, SearchKind::Listen, true)
    }

    pub fn cancel(&mut self, op: OpId) {
        self.searches.remove(&op);
        self.follows.remove(&op);
    }

    // ---- input ------------------------------------------------------------------------

    pub fn handle_datagram(&mut self, now: u64, from: SocketAddr, bytes: &[u8]) {
        self.now = now;
        self.stats.received += 1;
        let msg = match wire::decode(bytes) {
            Ok(m) => m,
            Err(_) => {
                self.stats.malformed += 1;
                return;
            }
        };
        if msg.network != self.cfg.network {
            return;
        }
        if let MessageBody::ValueParts(_) = &msg.body {
            self.on_parts(from, msg);
            return;
        }
        let msg = match PartialMessage::start(msg, from) {
            Ok(partial) => {
                let tid = partial.tid();
                self.partials.insert((from, tid), (partial, now, now));
                return;
            }
            Err(m) => m,
        };
        self.on_message(from, msg);
    }

    fn on_parts(&mut self, from: SocketAddr, msg: Message) {
        let key = (from, msg.tid);
        let Some((partial, _, last)) = self.partials.get_mut(&key) else {
            return;
        };
        if partial.append(&msg, from) {
            *last = self.now;
        }
        if partial.is_complete() {
            if let Some((partial, _, _)) = self.partials.remove(&key) {
                if let Ok(m) = partial.finish() {
                    self.on_message(from, m);
                }
            }
        }
    }

    fn on_message(&mut self, from: SocketAddr, msg: Message) {
        let tid = msg.tid;
        match msg.body {
            MessageBody::Reply(r) => self.on_reply(from, tid, r),
            MessageBody::Error(e) => self.on_error(from, tid, e),
            MessageBody::ValueParts(_) | MessageBody::LegacyUpdate(_) => {}
            body => {
                let sender = request_sender(&body);
                if sender.is_zero() || sender == self.cfg.id {
                    return;
                }
                if !self.limits.allow(from.ip(), self.now) {
                    self.stats.rate_limited += 1;
                    return;
                }
                self.learn(sender, from, false);
                self.on_request(from, tid, body);
            }
        }
    }

    /// Note that `id` lives at `addr` (it `replied` to us, or merely wrote or was named);
    /// when the routing table asks, ping the dubious node it would replace.
    fn learn(&mut self, id: InfoHash, addr: SocketAddr, replied: bool) {
        if id == self.cfg.id {
            return;
        }
        match self.table.heard(id.0, addr, self.now, replied) {
            Insert::PingDubious(dubious) => self.ping(dubious),
            Insert::Added => self.searches_see(id, addr),
            _ => {}
        }
    }

    /// A node new to the table: each listen and permanent put it would rank among the
    /// closest takes it in and, once synced again, listens or puts there too (OpenDHT's
    /// `onNewNode`). A listen or announcement made while the table was small thus moves
    /// to the key's real neighbourhood, where others look.
    fn searches_see(&mut self, id: InfoHash, addr: SocketAddr) {
        let now = self.now;
        let mut restep = Vec::new();
        for op in &self.follows {
            let Some(s) = self.searches.get_mut(op) else {
                continue;
            };
            if s.nodes.iter().any(|n| n.id == id || n.addr == addr) {
                continue;
            }
            let key = s.key;
            let worst = s.live().get(TARGET_NODES - 1).map(|&i| &s.nodes[i]);
            if worst.is_some_and(|w| xor_cmp(&id, &w.id, &key) != std::cmp::Ordering::Less) {
                continue;
            }
            s.nodes.push(SearchNode::candidate(id, addr, now, 1));
            s.keep_closest();
            s.done = false;
            restep.push(*op);
        }
        for op in restep {
            self.step(op);
        }
    }

    fn ping(&mut self, to: SocketAddr) {
        let body = MessageBody::Ping { id: self.cfg.id };
        self.request(to, None, body, Vec::new(), Purpose::Ping);
    }

    fn reply(&mut self, to: SocketAddr, tid: u32, body: MessageBody, parts: Vec<Vec<u8>>) {
        let msg = Message {
            tid,
            network: self.cfg.network,
            is_client: false,
            body,
        };
        self.out.push_back(Transmit {
            to,
            bytes: wire::encode(&msg),
        });
        for p in value_parts_messages(tid, self.cfg.network, &parts) {
            self.out.push_back(Transmit {
                to,
                bytes: wire::encode(&p),
            });
        }
        self.stats.requests_answered += 1;
    }

    fn error(&mut self, to: SocketAddr, tid: u32, code: u16, msg: &str) {
        self.stats.errors_sent += 1;
        let body = MessageBody::Error(ErrorMsg {
            code,
            msg: msg.to_string(),
            id: Some(self.cfg.id),
        });
        self.reply(to, tid, body, Vec::new());
    }

    fn closest_nodes(&self, target: &InfoHash) -> Vec<NodeInfo> {
        self.table
            .find_closest(&target.0, self.now, SEND_NODES)
            .into_iter()
            .filter(|n| n.addr.is_ipv4())
            .map(|n| NodeInfo {
                id: InfoHash(n.id),
                addr: n.addr,
            })
            .collect()
    }

    fn on_request(&mut self, from: SocketAddr, tid: u32, body: MessageBody) {
        let own = self.cfg.id;
        let sa = from.ip();
        match body {
            MessageBody::Ping { .. } => self.reply(
                from,
                tid,
                MessageBody::Reply(Reply::ack(own, sa)),
                Vec::new(),
            ),
            MessageBody::Find(Find { target, .. }) => {
                let r = Reply {
                    id: own,
                    sa: Some(sa),
                    nodes4: self.closest_nodes(&target),
                    token: self.tokens.token_for(&from).to_vec(),
                    ..Reply::default()
                };
                self.reply(from, tid, MessageBody::Reply(r), Vec::new());
            }
            MessageBody::Get(Get { h, query, .. }) => {
                if h.is_zero() {
                    return self.error(from, tid, 203, "Get_values with no info_hash");
                }
                let mut r = Reply {
                    id: own,
                    sa: Some(sa),
                    nodes4: self.closest_nodes(&h),
                    token: self.tokens.token_for(&from).to_vec(),
                    ..Reply::default()
                };
                let values: Vec<&Stored> = self
                    .storage
                    .get(&h.0)
                    .into_iter()
                    .map(|e| &e.value)
                    .filter(|v| matches_query(v, query.as_ref()))
                    .collect();
                let mut parts = Vec::new();
                match query.as_ref().filter(|q| !q.select.is_empty()) {
                    Some(q) => r.fields = Some(fields_reply(&q.select, &values)),
                    None => {
                        let (slots, blobs) =
                            pack_values(values.iter().map(|v| v.packed.clone()).collect());
                        r.values = slots;
                        parts = blobs;
                    }
                }
                self.reply(from, tid, MessageBody::Reply(r), parts);
            }
            MessageBody::Listen(Listen { h, token, sid, .. }) => {
                if h.is_zero() {
                    return self.error(from, tid, 203, "Listen with no info_hash");
                }
                if !self.tokens.check(&from, &token) {
                    return self.error(from, tid, 401, "Listen with wrong token");
                }
                self.storage.listen(h.0, from, sid, self.now);
                self.reply(
                    from,
                    tid,
                    MessageBody::Reply(Reply::ack(own, sa)),
                    Vec::new(),
                );
                let current: Vec<Vec<u8>> = self
                    .storage
                    .get(&h.0)
                    .iter()
                    .map(|e| e.value.packed.clone())
                    .collect();
                if !current.is_empty() {
                    self.push_update(from, sid, h, current);
                }
            }
            MessageBody::Put(Put {
                h,
                values,
                created,
                token,
                ..
            }) => {
                if h.is_zero() {
                    return self.error(from, tid, 203, "Put with no info_hash");
                }
                if !self.tokens.check(&from, &token) {
                    return self.error(from, tid, 401, "Put with wrong token");
                }
                for slot in values {
                    let ValueSlot::Inline(bytes) = slot else {
                        continue;
                    };
                    let Ok(v) = Value::unpack(&bytes) else {
                        self.stats.rejected_values += 1;
                        continue;
                    };
                    if v.id == 0 {
                        return self.error(from, tid, 203, "Put with invalid id");
                    }
                    let vid = v.id;
                    self.store_remote(h, v, bytes, created, from);
                    self.reply(
                        from,
                        tid,
                        MessageBody::Reply(Reply::value_id(own, vid, sa)),
                        Vec::new(),
                    );
                }
            }
            MessageBody::Refresh(Refresh { h, vid, token, .. }) => {
                if !self.tokens.check(&from, &token) {
                    return self.error(from, tid, 401, "Refresh with wrong token");
                }
                if self.storage.refresh(&h.0, vid, self.now) {
                    self.reply(
                        from,
                        tid,
                        MessageBody::Reply(Reply::value_id(own, vid, sa)),
                        Vec::new(),
                    );
                } else {
                    self.error(from, tid, 404, "Access operation for unknown storage");
                }
            }
            MessageBody::Update(u) => self.on_update(from, tid, u),
            _ => {}
        }
    }

    /// Turn a value into what storage keeps; signed values must verify.
    /// The form storage keeps, or `None` when the value must not be stored: a signature
    /// that fails, or a certificate (type 8) announced at a key other than its own id.
    fn stored_form(&self, key: InfoHash, v: &Value, packed: Vec<u8>) -> Option<Stored> {
        if !super::secure::storable_at(&key, v) {
            return None;
        }
        let (type_id, owner, seq) = match &v.data {
            ValueData::Plain(b) => (b.type_id, None, 0),
            ValueData::Signed(s) => {
                if let (Some(verify), Some(body)) = (&self.cfg.verify, v.signed_body_bytes()) {
                    let signed = s.received_body.as_deref().unwrap_or(&body);
                    if !verify(&s.owner, signed, &s.sig) {
                        return None;
                    }
                }
                (s.body.type_id, Some(s.owner.clone()), s.seq)
            }
            ValueData::Encrypted(_) => (0, None, 0),
        };
        Some(Stored {
            id: v.id,
            type_id,
            owner,
            seq,
            packed,
        })
    }

    /// Storage policy (§1.10): only if we are plausibly among the closest, then store
    /// and tell listeners. The requester is told success either way, as OpenDHT does.
    /// "Closest" counts good nodes only, as OpenDHT's `findClosestNodes` does: nodes we
    /// merely heard of are the ones our find/get answers leave out, so a put that
    /// reached us through those answers must not be dropped in their favour (at 10,000
    /// nodes that lost a few values in ten thousand: stored on none of the key's true
    /// closest, which no searcher could reach, and dropped by the nodes it did reach).
    fn store_remote(
        &mut self,
        key: InfoHash,
        v: Value,
        packed: Vec<u8>,
        created: Option<i64>,
        from: SocketAddr,
    ) {
        let closest = self.table.find_closest(&key.0, self.now, SEARCH_NODES);
        if closest.len() >= TARGET_NODES {
            if let Some(far) = closest.last() {
                if xor_cmp(&InfoHash(far.id), &self.cfg.id, &key) == std::cmp::Ordering::Less {
                    return;
                }
            }
        }
        let (v, packed) = announce_from_source(v, packed, from);
        let Some(stored) = self.stored_form(key, &v, packed.clone()) else {
            self.stats.rejected_values += 1;
            return;
        };
        let created_ms = created
            .map(|c| (c.max(0) as u64).saturating_mul(1000))
            .unwrap_or(self.now);
        match self
            .storage
            .put(key.0, stored, created_ms, self.now, from.ip())
        {
            PutOutcome::New | PutOutcome::Edited => {
                let ls: Vec<(SocketAddr, u32)> = self
                    .storage
                    .listeners(&key.0)
                    .iter()
                    .map(|l| (l.node, l.sid))
                    .collect();
                for (node, sid) in ls {
                    self.push_update(node, sid, key, vec![packed.clone()]);
                }
                // Our own listens hear about it too.
                self.notify_local(key, vec![v]);
            }
            PutOutcome::Refreshed => {}
            PutOutcome::Rejected(_) => self.stats.rejected_values += 1,
        }
    }

    fn notify_local(&mut self, key: InfoHash, values: Vec<Value>) {
        let ops: Vec<OpId> = self
            .searches
            .iter()
            .filter(|(_, s)| s.key == key && matches!(s.kind, SearchKind::Listen))
            .map(|(o, _)| *o)
            .collect();
        for op in ops {
            self.deliver(op, key, values.clone());
        }
    }

    fn push_update(&mut self, to: SocketAddr, sid: u32, key: InfoHash, packed: Vec<Vec<u8>>) {
        let (slots, blobs) = pack_values(packed);
        let body = MessageBody::Update(Update {
            id: self.cfg.id,
            version: 1,
            h: Some(key),
            sid,
            values: Some(slots),
            created: None,
            token: self.tokens.token_for(&to).to_vec(),
            refreshed: Vec::new(),
            expired: Vec::new(),
        });
        self.request(to, None, body, blobs, Purpose::Update);
    }

    fn on_update(&mut self, from: SocketAddr, tid: u32, u: Update) {
        let own = self.cfg.id;
        self.reply(
            from,
            tid,
            MessageBody::Reply(Reply::ack(own, from.ip())),
            Vec::new(),
        );
        let found = self.searches.iter().find_map(|(op, s)| {
            let listening = matches!(s.kind, SearchKind::Listen);
            let node = s.nodes.iter().any(|n| n.addr == from && n.sid == u.sid);
            (listening && node).then_some((*op, s.key))
        });
        let Some((op, key)) = found else { return };
        if let Some(slots) = u.values {
            let values: Vec<Value> = slots
                .into_iter()
                .filter_map(|s| match s {
                    ValueSlot::Inline(b) => Value::unpack(&b).ok(),
                    ValueSlot::Size(_) => None,
                })
                .collect();
            self.deliver(op, key, values);
        }
        if !u.expired.is_empty() {
            self.events.push_back(Event::Expired {
                op,
                key,
                ids: u.expired,
            });
        }
    }

    /// Emit values not yet seen by this operation.
    fn deliver(&mut self, op: OpId, key: InfoHash, values: Vec<Value>) {
        let Some(s) = self.searches.get_mut(&op) else {
            return;
        };
        let fresh: Vec<Value> = values
            .into_iter()
            .filter(|v| s.seen.insert(value_fingerprint(v)))
            .collect();
        if !fresh.is_empty() {
            self.events.push_back(Event::Values {
                op,
                key,
                values: fresh,
            });
        }
    }

    fn on_reply(&mut self, from: SocketAddr, tid: u32, r: Reply) {
        let Some(p) = self.take_pending(from, tid) else {
            return;
        };
        if r.id.is_zero() || r.id == self.cfg.id {
            return;
        }
        if let Some(sa) = r.sa {
            *self.reported.entry(sa).or_default() += 1;
        }
        self.learn(r.id, from, true);
        if !self.connected {
            self.connected = true;
            self.events.push_back(Event::Connected);
            // Learn our neighbourhood, as OpenDHT does on its first contact.
            let own = self.cfg.id;
            self.start_search(own, SearchKind::Find, false);
        }
        for n in &r.nodes4 {
            self.learn(n.id, node_addr(n, from), false);
        }
        match p.purpose {
            Purpose::Search(op) => self.search_answer(op, from, r),
            Purpose::PutTo(op) | Purpose::ListenTo(op) => {
                if let Some(s) = self.searches.get_mut(&op) {
                    if let Some(n) = s.nodes.iter_mut().find(|n| n.addr == from) {
                        n.acked = true;
                        n.refresh_at = self.now + LISTEN_REFRESH_MS;
                    }
                }
                self.check_put_done(op);
            }
            Purpose::Ping | Purpose::Maintain | Purpose::Update => {}
        }
    }

    fn on_error(&mut self, from: SocketAddr, tid: u32, e: ErrorMsg) {
        let Some(p) = self.take_pending(from, tid) else {
            return;
        };
        if let Purpose::Search(op) | Purpose::PutTo(op) | Purpose::ListenTo(op) = p.purpose {
            if let Some(s) = self.searches.get_mut(&op) {
                if let Some(n) = s.nodes.iter_mut().find(|n| n.addr == from) {
                    // A wrong token: ask again for a fresh one.
                    n.state = if e.code == 401 {
                        NodeState::Candidate
                    } else {
                        NodeState::Failed
                    };
                    n.acked = false;
                }
            }
            self.step(op);
        }
    }

    // ---- requests and retries ---------------------------------------------------------

    fn next_tid(&mut self, to: SocketAddr) -> u32 {
        let first = self.rng.random_range(1..=u32::MAX);
        let t = self.tids.entry(to).or_insert(first);
        *t = t.wrapping_add(2);
        if *t == 0 {
            *t = 2;
        }
        *t
    }

    fn request(
        &mut self,
        to: SocketAddr,
        node: Option<InfoHash>,
        body: MessageBody,
        blobs: Vec<Vec<u8>>,
        purpose: Purpose,
    ) {
        let tid = self.next_tid(to);
        let msg = Message {
            tid,
            network: self.cfg.network,
            is_client: false,
            body,
        };
        let parts = value_parts_messages(tid, self.cfg.network, &blobs);
        let p = Pending {
            to,
            node,
            msg,
            parts,
            attempts: 0,
            retry_at: 0,
            interval: FIRST_RETRY_MS,
            purpose,
        };
        self.send_pending(tid, p);
    }

    fn take_pending(&mut self, to: SocketAddr, tid: u32) -> Option<Pending> {
        let p = self.pending.remove(&(to, tid))?;
        self.retries.remove(&(p.retry_at, to, tid));
        Some(p)
    }

    fn send_pending(&mut self, tid: u32, mut p: Pending) {
        p.attempts += 1;
        self.out.push_back(Transmit {
            to: p.to,
            bytes: wire::encode(&p.msg),
        });
        for part in &p.parts {
            self.out.push_back(Transmit {
                to: p.to,
                bytes: wire::encode(part),
            });
        }
        p.retry_at = self.now + p.interval;
        p.interval = p.interval * 2 + self.rng.random_range(0..=250);
        self.retries.insert((p.retry_at, p.to, tid));
        self.pending.insert((p.to, tid), p);
    }

    pub fn handle_timeout(&mut self, now: u64) {
        self.now = now;
        // Handled in (address, tid) order, as a walk over `pending` would.
        let mut due: Vec<(SocketAddr, u32)> = self
            .retries
            .range(..(now + 1, SocketAddr::from(([0, 0, 0, 0], 0)), 0))
            .map(|&(_, a, t)| (a, t))
            .collect();
        due.sort_unstable();
        let mut timed_out = false;
        for key in due {
            let Some(p) = self.take_pending(key.0, key.1) else {
                continue;
            };
            if p.attempts < MAX_ATTEMPTS {
                // OpenDHT's partial expiry: at the first resend a silent search node
                // becomes a candidate, and the search moves on without it.
                let late = match p.purpose {
                    Purpose::Search(op) if p.attempts == 1 => Some((op, p.to)),
                    _ => None,
                };
                self.send_pending(key.1, p);
                if let Some((op, to)) = late {
                    let mut changed = false;
                    if let Some(s) = self.searches.get_mut(&op) {
                        for n in s.nodes.iter_mut().filter(|n| n.addr == to) {
                            if n.state == NodeState::Requested {
                                n.state = NodeState::Late;
                                changed = true;
                            }
                        }
                    }
                    if changed {
                        self.step(op);
                        self.check_put_done(op);
                    }
                }
                continue;
            }
            self.stats.timeouts += 1;
            timed_out = true;
            if let Some(id) = p.node {
                self.table.failed(&id.0);
            }
            if let Purpose::Search(op) | Purpose::PutTo(op) | Purpose::ListenTo(op) = p.purpose {
                if let Some(s) = self.searches.get_mut(&op) {
                    if let Some(n) = s.nodes.iter_mut().find(|n| n.addr == p.to) {
                        n.state = NodeState::Failed;
                    }
                }
                self.step(op);
                self.check_put_done(op);
            }
        }
        self.partials.retain(|_, (_, started, last)| {
            now < *last + PARTIAL_TIMEOUT_MS && now < *started + PARTIAL_MAX_MS
        });
        if now >= self.expire_at {
            self.expire_at = now + EXPIRE_PERIOD_MS;
            for (key, ids) in self.storage.expire(now) {
                let ls: Vec<(SocketAddr, u32)> = self
                    .storage
                    .listeners(&key)
                    .iter()
                    .map(|l| (l.node, l.sid))
                    .collect();
                for (node, sid) in ls {
                    let body = MessageBody::Update(Update {
                        id: self.cfg.id,
                        version: 0,
                        h: None,
                        sid,
                        values: None,
                        created: None,
                        token: self.tokens.token_for(&node).to_vec(),
                        refreshed: Vec::new(),
                        expired: ids.clone(),
                    });
                    self.request(node, None, body, Vec::new(), Purpose::Update);
                }
            }
        }
        if self.bootstrap_at.is_some_and(|t| now >= t) {
            self.bootstrap_again(now);
        } else if self.bootstrap_at.is_none()
            && timed_out
            && !self.bootstrap_nodes.is_empty()
            && self.is_disconnected()
        {
            // Every node we knew stopped answering (OpenDHT's `onDisconnected`).
            self.bootstrap_period = BOOTSTRAP_PERIOD_MS;
            self.bootstrap_again(now);
        }
        if now >= self.tokens.rotate_at {
            let (fresh, next) = (
                self.rng.random::<u64>(),
                now + self.rng.random_range(15 * 60_000..=45 * 60_000),
            );
            self.tokens.rotate(fresh, next);
        }
        if now >= self.maintain_at {
            self.maintain(now);
        }
        self.refresh_listens();
    }

    /// OpenDHT's `confirmNodes`: one `find` to a node of (or next to) each bucket that
    /// had no reply for [`BUCKET_STALE`], a lone request whose answer feeds the table;
    /// if none was needed and our own bucket grew in the last
    /// [`NEIGHBOURHOOD_GROWTH_MS`], a look at our neighbourhood. A settled table thus
    /// costs a few requests per ten minutes, as on the real network (an iterative
    /// search every 1-3 min, as before, cost 4x more). The next run comes in 5-25 s if
    /// a request went out, else in 1-3 min.
    fn maintain(&mut self, now: u64) {
        self.stats.maintenance_runs += 1;
        if self.tids.len() > MAX_TIDS {
            let pending = &self.pending;
            self.tids
                .retain(|a, _| pending.range((*a, 0)..=(*a, u32::MAX)).next().is_some());
        }
        // Finished searches are only bookkeeping: forget them.
        self.searches
            .retain(|_, s| !s.done || s.kind.follows_table());
        let mut soon = self.maintain_buckets(now);
        if !soon && now.saturating_sub(self.table.grow_time()) < NEIGHBOURHOOD_GROWTH_MS {
            // Here we do more than OpenDHT's lone `find`: a whole search of an id next to
            // ours. Answers name good nodes only, and in a forming network few nodes are
            // good to anyone yet: with lone finds, some tables of a fresh 40-node network
            // still held 3 nodes after 90 s. The search costs nothing once settled.
            let mut near = self.cfg.id;
            near.0[19] = self.rng.random();
            soon = true;
            let running = self
                .searches
                .values()
                .any(|s| matches!(s.kind, SearchKind::Find) && !s.done);
            if !running {
                self.start_search(near, SearchKind::Find, false);
            }
        }
        self.maintain_at = now
            + if soon {
                self.rng.random_range(5_000..=25_000)
            } else {
                self.rng.random_range(60_000..=180_000)
            };
    }

    /// A `find` for a random id in each stale bucket; true if one went out.
    fn maintain_buckets(&mut self, now: u64) -> bool {
        let mut sent = false;
        for b in self.table.stale_buckets(now, BUCKET_STALE) {
            let target = InfoHash(self.table.random_id(b, &mut self.rng));
            let Some((id, addr)) = self.maintenance_node(b) else {
                continue;
            };
            if self
                .pending
                .range((addr, 0)..=(addr, u32::MAX))
                .next()
                .is_some()
            {
                continue;
            }
            self.find_once(id, addr, target);
            sent = true;
        }
        sent
    }

    /// The node maintenance asks about bucket `b`: a random one of `b`, or of a
    /// neighbouring bucket when `b` is empty or, one time in 8 each, to mend buckets
    /// full of broken nodes (OpenDHT's choice).
    fn maintenance_node(&mut self, b: usize) -> Option<(InfoHash, SocketAddr)> {
        let count = self.table.bucket_count();
        let mut q = b;
        let empty = |t: &RoutingTable, i: usize| t.bucket_nodes(i).is_empty();
        if b + 1 < count && (empty(&self.table, q) || self.rng.random_ratio(1, 8)) {
            q = b + 1;
        }
        if b > 0
            && (empty(&self.table, q) || self.rng.random_ratio(1, 8))
            && !empty(&self.table, b - 1)
        {
            q = b - 1;
        }
        let n = self.table.random_node(q, &mut self.rng)?;
        Some((InfoHash(n.id), n.addr))
    }

    fn find_once(&mut self, id: InfoHash, addr: SocketAddr, target: InfoHash) {
        let body = MessageBody::Find(Find {
            id: self.cfg.id,
            target,
            want: None,
        });
        self.request(addr, Some(id), body, Vec::new(), Purpose::Maintain);
    }

    fn refresh_listens(&mut self) {
        let now = self.now;
        let mut sends = Vec::new();
        for (op, s) in &mut self.searches {
            if !matches!(s.kind, SearchKind::Listen) {
                continue;
            }
            for n in &mut s.nodes {
                if n.acked && n.refresh_at <= now {
                    if let NodeState::Answered { token } = &n.state {
                        n.refresh_at = now + LISTEN_REFRESH_MS;
                        sends.push((*op, n.id, n.addr, token.clone(), n.sid, s.key));
                    }
                }
            }
        }
        for (op, id, addr, token, sid, key) in sends {
            let body = MessageBody::Listen(Listen {
                id: self.cfg.id,
                version: 1,
                h: key,
                token,
                sid,
                query: None,
            });
            self.request(addr, Some(id), body, Vec::new(), Purpose::ListenTo(op));
        }
    }

    // ---- searches ---------------------------------------------------------------------

    /// Start a search; with `local`, values stored here are delivered first (before a
    /// search with no node to ask reports itself done).
    fn start_search(&mut self, key: InfoHash, kind: SearchKind, local: bool) -> OpId {
        self.stats.searches_started += 1;
        let op = self.next_op;
        self.next_op += 1;
        if kind.follows_table() {
            self.follows.insert(op);
        }
        let nodes = self
            .table
            .closest(&key.0, SEARCH_NODES)
            .into_iter()
            .map(|n| SearchNode::candidate(InfoHash(n.id), n.addr, 0, 1))
            .collect();
        self.searches.insert(
            op,
            Search {
                key,
                kind,
                nodes,
                seen: BTreeSet::new(),
                done: false,
                found_depth: None,
            },
        );
        if local {
            self.deliver_local(op, key);
        }
        self.step(op);
        op
    }

    fn search_answer(&mut self, op: OpId, from: SocketAddr, r: Reply) {
        let now = self.now;
        let Some(s) = self.searches.get_mut(&op) else {
            return;
        };
        let mut depth = 1;
        if let Some(n) = s.nodes.iter_mut().find(|n| n.addr == from) {
            n.state = NodeState::Answered {
                token: r.token.clone(),
            };
            depth = n.depth;
        }
        if !r.values.is_empty() && s.found_depth.is_none() {
            s.found_depth = Some(depth);
        }
        for info in r.nodes4 {
            if info.id == self.cfg.id || s.nodes.iter().any(|n| n.id == info.id) {
                continue;
            }
            let addr = node_addr(&info, from);
            s.nodes.push(SearchNode::candidate(
                info.id,
                addr,
                now,
                depth.saturating_add(1),
            ));
        }
        let key = s.key;
        s.keep_closest();
        let values: Vec<Value> = r
            .values
            .into_iter()
            .filter_map(|v| match v {
                ValueSlot::Inline(b) => Value::unpack(&b).ok(),
                ValueSlot::Size(_) => None,
            })
            .collect();
        let wants_values = matches!(s.kind, SearchKind::Get | SearchKind::Listen);
        if wants_values && !values.is_empty() {
            self.deliver(op, key, values);
        }
        self.step(op);
    }

    /// Send more requests, or finish: synced when the first 8 live nodes answered.
    fn step(&mut self, op: OpId) {
        let own = self.cfg.id;
        let Some(s) = self.searches.get_mut(&op) else {
            return;
        };
        if s.done {
            return;
        }
        let live = s.live();
        let in_flight = s
            .nodes
            .iter()
            .filter(|n| n.state == NodeState::Requested)
            .count();
        let mut to_ask = Vec::new();
        for &i in &live {
            if in_flight + to_ask.len() >= SEARCH_PARALLEL {
                break;
            }
            if s.nodes[i].state == NodeState::Candidate {
                s.nodes[i].state = NodeState::Requested;
                to_ask.push((s.nodes[i].id, s.nodes[i].addr));
            }
        }
        let synced = s.synced();
        let key = s.key;
        // Only gets and listens want the values stored at the key; a find or a put asks
        // for nodes and a write token (`find` answers carry one), as OpenDHT's
        // `searchSendGetValues` sends `find_node` for a search with no get callback. A
        // put by `get` was answered with every value at the key: after ~45 connection
        // requests at one `peer:` key (about 64 KB of them), set-ups on loopback went
        // from 58 ms to steps of 0.5 and 1 s.
        let is_find = matches!(s.kind, SearchKind::Find | SearchKind::Put { .. });
        for (id, addr) in to_ask {
            let body = if is_find {
                MessageBody::Find(Find {
                    id: own,
                    target: key,
                    want: None,
                })
            } else {
                MessageBody::Get(Get {
                    id: own,
                    h: key,
                    query: None,
                    want: None,
                })
            };
            self.request(addr, Some(id), body, Vec::new(), Purpose::Search(op));
        }
        let Some(s) = self.searches.get_mut(&op) else {
            return;
        };
        let still_waiting = s.nodes.iter().any(|n| n.state == NodeState::Requested);
        if !synced || still_waiting {
            return;
        }
        let answered = s
            .nodes
            .iter()
            .filter(|n| matches!(n.state, NodeState::Answered { .. }))
            .count();
        let deepest = s
            .nodes
            .iter()
            .filter(|n| matches!(n.state, NodeState::Answered { .. }))
            .map(|n| n.depth)
            .max()
            .unwrap_or(0);
        let hops = s.found_depth.unwrap_or(deepest);
        match &mut s.kind {
            SearchKind::Find => s.done = true,
            SearchKind::Get => {
                s.done = true;
                self.events.push_back(Event::GetDone {
                    op,
                    key,
                    nodes_answered: answered,
                    hops,
                });
            }
            SearchKind::Put {
                sent, permanent, ..
            } if *sent && !*permanent => {}
            SearchKind::Put { .. } => self.send_puts(op),
            SearchKind::Listen => self.send_listens(op),
        }
    }

    fn send_puts(&mut self, op: OpId) {
        let own = self.cfg.id;
        let Some(s) = self.searches.get_mut(&op) else {
            return;
        };
        let SearchKind::Put { packed, sent, .. } = &mut s.kind else {
            return;
        };
        let first = !std::mem::replace(sent, true);
        let (slots, blobs) = pack_values(vec![packed.clone()]);
        let key = s.key;
        // The closest answered nodes, less those a permanent put already went to.
        let targets: Vec<(InfoHash, SocketAddr, Vec<u8>)> = s
            .nodes
            .iter_mut()
            .filter(|n| matches!(&n.state, NodeState::Answered { token } if !token.is_empty()))
            .take(TARGET_NODES)
            .filter(|n| !n.put_sent)
            .filter_map(|n| match &n.state {
                NodeState::Answered { token } => {
                    n.put_sent = true;
                    Some((n.id, n.addr, token.clone()))
                }
                _ => None,
            })
            .collect();
        if targets.is_empty() {
            s.done = true;
            // Nobody to put on at all: the first round is done, stored nowhere.
            if let (true, SearchKind::Put { reported, .. }) = (first, &mut s.kind) {
                *reported = true;
                self.events.push_back(Event::PutDone {
                    op,
                    key,
                    stored_on: 0,
                });
            }
            return;
        }
        for (id, addr, token) in targets {
            let body = MessageBody::Put(Put {
                id: own,
                h: key,
                values: slots.clone(),
                created: None,
                token,
            });
            self.request(addr, Some(id), body, blobs.clone(), Purpose::PutTo(op));
        }
    }

    fn check_put_done(&mut self, op: OpId) {
        let Some(s) = self.searches.get_mut(&op) else {
            return;
        };
        if s.done || !matches!(s.kind, SearchKind::Put { sent: true, .. }) {
            return;
        }
        let waiting = self
            .pending
            .values()
            .any(|p| matches!(p.purpose, Purpose::PutTo(o) if o == op));
        if waiting {
            return;
        }
        // A permanent put that a newcomer reopened (`searches_see`) while its puts were
        // unanswered is searching again: closing it here left the value on the few
        // nodes known at first (a device announced only to its bootstrap node). It
        // closes once synced and put there too; only the first round is reported.
        if s.synced() {
            s.done = true;
        }
        let stored_on = s.nodes.iter().filter(|n| n.acked).count();
        let key = s.key;
        if let SearchKind::Put { reported, .. } = &mut s.kind {
            if std::mem::replace(reported, true) {
                return;
            }
        }
        self.events.push_back(Event::PutDone { op, key, stored_on });
    }

    fn send_listens(&mut self, op: OpId) {
        let own = self.cfg.id;
        let now = self.now;
        let mut sids = Vec::new();
        for _ in 0..LISTEN_NODES {
            sids.push(self.rng.random_range(1..=u32::MAX));
        }
        let Some(s) = self.searches.get_mut(&op) else {
            return;
        };
        s.done = true;
        let key = s.key;
        let mut sends = Vec::new();
        // Nodes already listened to (a listen synced again after new nodes) keep their
        // socket id and are refreshed by `refresh_listens`.
        for (n, sid) in s
            .nodes
            .iter_mut()
            .filter(|n| matches!(&n.state, NodeState::Answered { token } if !token.is_empty()))
            .take(LISTEN_NODES)
            .filter(|n| n.sid == 0)
            .zip(sids)
        {
            if let NodeState::Answered { token } = &n.state {
                n.sid = sid;
                n.refresh_at = now + LISTEN_REFRESH_MS;
                sends.push((n.id, n.addr, token.clone(), sid));
            }
        }
        for (id, addr, token, sid) in sends {
            let body = MessageBody::Listen(Listen {
                id: own,
                version: 1,
                h: key,
                token,
                sid,
                query: None,
            });
            self.request(addr, Some(id), body, Vec::new(), Purpose::ListenTo(op));
        }
    }
}

fn request_sender(b: &MessageBody) -> InfoHash {
    match b {
        MessageBody::Ping { id } => *id,
        MessageBody::Find(f) => f.id,
        MessageBody::Get(g) => g.id,
        MessageBody::Listen(l) => l.id,
        MessageBody::Put(p) => p.id,
        MessageBody::Refresh(r) => r.id,
        MessageBody::Update(u) => u.id,
        _ => InfoHash::ZERO,
    }
}

/// Identity of a value version: id plus a hash of its bytes (an edit is news).
fn value_fingerprint(v: &Value) -> u64 {
    let bytes = v.pack();
    let mut h: u64 = 0xcbf29ce484222325 ^ v.id;
    for b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

fn matches_query(v: &Stored, q: Option<&Query>) -> bool {
    let Some(q) = q else { return true };
    q.filters.iter().all(|f| match f {
        FieldFilter::Id(id) => v.id == *id,
        FieldFilter::ValueType(t) => u64::from(v.type_id) == *t,
        FieldFilter::OwnerPk(h) => v
            .owner
            .as_ref()
            .map(|o| InfoHash::get(o) == *h)
            .unwrap_or(false),
        FieldFilter::UserType(_) => true,
    })
}

/// The `fileds` answer: the selected fields, flattened value by value.
fn fields_reply(select: &[u8], values: &[&Stored]) -> FieldsReply {
    let mut fields: Vec<u8> = select.to_vec();
    fields.sort_unstable();
    fields.dedup();
    let mut out = Vec::new();
    for v in values {
        for f in &fields {
            out.push(match *f {
                wire::field::ID => FieldEntry::Uint(v.id),
                wire::field::VALUE_TYPE => FieldEntry::Uint(u64::from(v.type_id)),
                wire::field::SEQ_NUM => FieldEntry::Uint(u64::from(v.seq)),
                wire::field::OWNER_PK => {
                    FieldEntry::Bin(v.owner.clone().unwrap_or_else(|| vec![0; 20]))
                }
                _ => FieldEntry::Str(Vec::new()),
            });
        }
    }
    FieldsReply {
        fields,
        values: out,
    }
}

/// Where a node named in a reply lives: a loopback address means "the sender's host"
/// (OpenDHT rewrites it the same way).
fn node_addr(n: &NodeInfo, from: SocketAddr) -> SocketAddr {
    if n.addr.ip().is_loopback() {
        SocketAddr::new(from.ip(), n.addr.port())
    } else {
        n.addr
    }
}

/// Store policy of IP service announcements (type 2, plain): the address stored is the
/// sender's source address with the announced port (§1.12). One that does not parse is
/// kept as the opaque bytes it came as.
fn announce_from_source(v: Value, packed: Vec<u8>, from: SocketAddr) -> (Value, Vec<u8>) {
    use super::payload::{IpServiceAnnouncement, IP_SERVICE_ANNOUNCEMENT_TYPE};
    let announced = match &v.data {
        ValueData::Plain(b) if b.type_id == IP_SERVICE_ANNOUNCEMENT_TYPE => {
            IpServiceAnnouncement::unpack(&b.data).ok()
        }
        _ => None,
    };
    let Some(a) = announced else {
        return (v, packed);
    };
    let mut v = v;
    if let ValueData::Plain(b) = &mut v.data {
        b.data = a.seen_from(from.ip()).pack();
    }
    let packed = v.pack();
    (v, packed)
}
