//! The agent's state machine: gathering, the checklist, nomination, the selected path.

mod checklist;
mod checks;

use super::candidate::{self as cand, ACTIVE_PORT, COMPONENT};
use super::check::{self, CheckRequest};
use super::{Command, Config, ConnId, Endpoint, Event, Path, SendError, Stats, Transmit};
use crate::connect::framing;
use crate::connect::ice_msg::{Candidate, CandidateType, IceMsg, Transport};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use stun::{Class, Message};

/// Remote candidates kept, signalled and peer-reflexive together (pjnath
/// `PJ_ICE_MAX_CAND` is 16; twice that leaves room for prflx discovered under attack
/// without unbounded growth).
pub const MAX_REMOTE_CANDIDATES: usize = 32;
/// Local candidates (hosts, srflx, relays and discovered prflx).
pub const MAX_LOCAL_CANDIDATES: usize = 32;
/// Candidate pairs (pjnath `PJ_ICE_MAX_CHECKS` is 32; we keep UDP and TCP in one list).
pub const MAX_PAIRS: usize = 64;
/// TCP connections held at once; an accept beyond this is closed at once.
pub const MAX_CONNS: usize = 64;
/// Application packets waiting in [`Agent::poll_recv`]; more are dropped and counted.
pub const MAX_RECV_QUEUE: usize = 256;
/// Dials of a peer's TCP relayed candidate that the relay refused, tried again this many
/// times, [`RELAY_REDIAL_MS`] doubling each time up to [`RELAY_REDIAL_MAX_MS`] (about 20 s
/// in all): a TURN server accepts a peer only once its client installed a permission for
/// it, which the requester can do only when our answer reached it over the DHT, often
/// seconds after our first check.
pub const RELAY_REDIALS: u8 = 8;
pub const RELAY_REDIAL_MS: u64 = 250;
pub const RELAY_REDIAL_MAX_MS: u64 = 4_000;
/// STUN bytes buffered from a STUN server TCP connection (one maximal message).
const MAX_STUN_STREAM: usize = stun::HEADER_LEN + u16::MAX as usize;
/// pjnath `PJ_ICE_UFRAG_LEN` / `PJ_ICE_PWD_LEN`.
const UFRAG_LEN: usize = 8;
const PWD_LEN: usize = 24;

#[derive(Debug, Clone)]
struct Local {
    c: Candidate,
    /// Where it sends from: the UDP socket, the listening address, `ip:0` for active TCP,
    /// or the relayed address.
    base: SocketAddr,
    local_pref: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PairState {
    Frozen,
    Waiting,
    InProgress,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone)]
struct Pair {
    local: usize,
    remote: usize,
    state: PairState,
    conn: Option<ConnId>,
    /// The controlling side sent USE-CANDIDATE on it (controlled side's view).
    nominated: bool,
    /// Local candidate of the valid pair (the mapped address seen by the peer).
    valid_local: Option<usize>,
    /// Times a refused dial to a relayed candidate was tried again ([`RELAY_REDIALS`]).
    redials: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dest {
    Udp {
        local: SocketAddr,
        remote: SocketAddr,
    },
    Tcp(ConnId),
}

#[derive(Debug, Clone, Copy)]
enum TxKind {
    Check {
        pair: usize,
        use_candidate: bool,
        controlling: bool,
    },
    Gather {
        base: SocketAddr,
        tcp: bool,
    },
}

#[derive(Debug, Clone)]
struct Tx {
    kind: TxKind,
    payload: Vec<u8>,
    dest: Dest,
    transmits: u32,
    /// Next retransmission, or the timeout once `transmits` reached the maximum.
    next_at: u64,
    /// Waiting for its TCP connection to open.
    waiting: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnKind {
    /// Opened by us for a check (active or simultaneous open).
    Check,
    /// Accepted on a passive / so listener.
    Accepted,
    /// To the STUN server, for a passive srflx candidate (raw STUN stream, no framing).
    Stun,
}

#[derive(Debug)]
struct Conn {
    kind: ConnKind,
    local: SocketAddr,
    remote: SocketAddr,
    open: bool,
    rx: framing::Decoder,
    stun_rx: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Udp { local: SocketAddr, from: SocketAddr },
    Tcp(ConnId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    Connected,
    Failed,
}

/// The ICE agent (see the module doc for how to drive it).
pub struct Agent {
    cfg: Config,
    rng: ChaCha8Rng,
    ufrag: String,
    pwd: String,
    tie_breaker: u64,
    controlling: bool,
    locals: Vec<Local>,
    remotes: Vec<Candidate>,
    remote_creds: Option<(String, String)>,
    pairs: Vec<Pair>,
    triggered: VecDeque<usize>,
    txs: BTreeMap<[u8; 12], Tx>,
    conns: BTreeMap<ConnId, Conn>,
    next_conn: u64,
    transmits: VecDeque<Transmit>,
    commands: VecDeque<Command>,
    events: VecDeque<Event>,
    recv: VecDeque<Vec<u8>>,
    stats: Stats,
    gathering_pending: usize,
    srflx_default: bool,
    next_check_at: Option<u64>,
    /// Pairs to check again at a time (refused dials to relayed candidates).
    redial_at: BTreeMap<usize, u64>,
    nominate_at: Option<u64>,
    nominating: Option<usize>,
    selected: Option<usize>,
    path: Option<super::Path>,
    fail_at: Option<u64>,
    keepalive_at: Option<u64>,
    state: State,
}

impl Agent {
    /// Creates the agent and starts gathering: host candidates at once, `Listen`
    /// commands for TCP, STUN Binding requests to the configured server.
    pub fn new(cfg: Config, now: u64) -> Agent {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let ufrag = random_string(&mut rng, UFRAG_LEN);
        let pwd = random_string(&mut rng, PWD_LEN);
        let tie_breaker = rng.random::<u64>();
        let mut a = Agent {
            controlling: cfg.controlling,
            cfg,
            rng,
            ufrag,
            pwd,
            tie_breaker,
            locals: Vec::new(),
            remotes: Vec::new(),
            remote_creds: None,
            pairs: Vec::new(),
            triggered: VecDeque::new(),
            txs: BTreeMap::new(),
            conns: BTreeMap::new(),
            next_conn: 0,
            transmits: VecDeque::new(),
            commands: VecDeque::new(),
            events: VecDeque::new(),
            recv: VecDeque::new(),
            stats: Stats::default(),
            gathering_pending: 0,
            srflx_default: false,
            next_check_at: None,
            redial_at: BTreeMap::new(),
            nominate_at: None,
            nominating: None,
            selected: None,
            path: None,
            fail_at: None,
            keepalive_at: None,
            state: State::Running,
        };
        a.gather(now);
        a
    }

    fn gather(&mut self, now: u64) {
        // pjnath: local_pref = 65535 - (host candidates added so far on that transport).
        for (n, s) in self.cfg.udp_sockets.clone().into_iter().enumerate() {
            self.add_local(CandidateType::Host, Transport::Udp, s, s, 65535 - n as u16);
        }
        let mut n = 0u16;
        for l in self.cfg.tcp_listen.clone() {
            self.commands.push_back(Command::Listen { local: l });
            self.add_local(CandidateType::Host, Transport::TcpPassive, l, l, 65535 - n);
            let active = SocketAddr::new(l.ip(), ACTIVE_PORT);
            self.add_local(
                CandidateType::Host,
                Transport::TcpActive,
                active,
                SocketAddr::new(l.ip(), 0),
                65534 - n,
            );
            n += 2;
            if self.cfg.tcp_so {
                self.add_local(CandidateType::Host, Transport::TcpSo, l, l, 65535 - n);
                n += 1;
            }
        }
        // jamid's "generic" srflx: the public address the DHT reported, as TCP active
        // (port 9) candidates — "most likely the incoming connection will be blocked".
        if let Some(public) = self.cfg.public_ip {
            for (n, l) in self.cfg.tcp_listen.clone().into_iter().enumerate() {
                let addr = SocketAddr::new(public, ACTIVE_PORT);
                let base = SocketAddr::new(l.ip(), 0);
                self.add_local(
                    CandidateType::Srflx,
                    Transport::TcpActive,
                    addr,
                    base,
                    65535 - n as u16,
                );
            }
        }
        if let Some(server) = self.cfg.stun_server {
            for s in self.cfg.udp_sockets.clone() {
                let txid = self.txid();
                let dest = Dest::Udp {
                    local: s,
                    remote: server,
                };
                self.start_tx(
                    now,
                    txid,
                    TxKind::Gather {
                        base: s,
                        tcp: false,
                    },
                    check::gather(txid),
                    dest,
                );
            }
            for l in self.cfg.tcp_listen.clone() {
                let conn = self.connect(ConnKind::Stun, l, server);
                let txid = self.txid();
                self.start_tx(
                    now,
                    txid,
                    TxKind::Gather { base: l, tcp: true },
                    check::gather(txid),
                    Dest::Tcp(conn),
                );
            }
            self.gathering_pending = self.cfg.udp_sockets.len() + self.cfg.tcp_listen.len();
        }
        if self.gathering_pending == 0 {
            self.events.push_back(Event::GatheringDone);
        }
    }

    fn add_local(
        &mut self,
        typ: CandidateType,
        transport: Transport,
        addr: SocketAddr,
        base: SocketAddr,
        local_pref: u16,
    ) -> Option<usize> {
        if self.locals.len() >= MAX_LOCAL_CANDIDATES {
            return None;
        }
        let c = Candidate {
            foundation: cand::foundation(typ, base.ip()),
            component: COMPONENT,
            transport,
            priority: cand::priority(typ, local_pref, self.srflx_default),
            addr,
            typ,
        };
        self.locals.push(Local {
            c,
            base,
            local_pref,
        });
        Some(self.locals.len() - 1)
    }

    fn refresh_priorities(&mut self) {
        for l in &mut self.locals {
            l.c.priority = cand::priority(l.c.typ, l.local_pref, self.srflx_default);
        }
    }

    /// Adds a relayed candidate obtained by the TURN client (UDP, or TCP passive for an
    /// RFC 6062 allocation). Call before sending [`Agent::local_ice_msg`].
    pub fn add_relay_candidate(&mut self, relayed: SocketAddr, transport: Transport) {
        let n = self
            .locals
            .iter()
            .filter(|l| l.c.typ == CandidateType::Relay)
            .count() as u16;
        if self
            .add_local(CandidateType::Relay, transport, relayed, relayed, 65535 - n)
            .is_some()
        {
            self.form_pairs();
        }
    }

    pub fn local_ufrag(&self) -> &str {
        &self.ufrag
    }

    pub fn local_pwd(&self) -> &str {
        &self.pwd
    }

    pub fn is_controlling(&self) -> bool {
        self.controlling
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The peer's candidates: signalled ones and the peer-reflexive ones learnt from checks.
    pub fn remote_candidates(&self) -> &[Candidate] {
        &self.remotes
    }

    /// Candidates to advertise (discovered peer-reflexive ones are not).
    pub fn local_candidates(&self) -> Vec<Candidate> {
        self.locals
            .iter()
            .filter(|l| l.c.typ != CandidateType::Prflx)
            .map(|l| l.c.clone())
            .collect()
    }

    /// The ice_msg for the connection request or its answer.
    pub fn local_ice_msg(&self) -> IceMsg {
        IceMsg {
            ufrag: self.ufrag.clone(),
            pwd: self.pwd.clone(),
            candidates: self.local_candidates(),
            rejected: 0,
        }
    }

    /// The peer's ufrag, password and candidates: forms the checklist and starts checks.
    pub fn set_remote(&mut self, now: u64, msg: &IceMsg) {
        if self.remote_creds.is_some() || self.state != State::Running {
            return;
        }
        self.remote_creds = Some((msg.ufrag.clone(), msg.pwd.clone()));
        for c in msg.candidates.iter().filter(|c| c.component == COMPONENT) {
            if let Some(r) = self
                .remotes
                .iter_mut()
                .find(|r| r.addr == c.addr && r.transport == c.transport)
            {
                *r = c.clone(); // a prflx learnt earlier, now signalled
            } else if self.remotes.len() < MAX_REMOTE_CANDIDATES {
                self.remotes.push(c.clone());
            }
        }
        self.form_pairs();
        self.fail_at = Some(now + self.cfg.timing.fail_timeout);
        self.next_check_at = Some(now);
        self.maybe_fail(now);
    }

    fn form_pairs(&mut self) {
        if self.remote_creds.is_none() {
            return;
        }
        for (li, l) in self.locals.iter().enumerate() {
            // Server-reflexive candidates are checked through their base (RFC 8445
            // §6.1.2.4); prflx locals only appear in valid pairs.
            if matches!(l.c.typ, CandidateType::Srflx | CandidateType::Prflx) {
                continue;
            }
            for (ri, r) in self.remotes.iter().enumerate() {
                if self.pairs.len() >= MAX_PAIRS {
                    return;
                }
                if cand::compatible(l.c.transport, r.transport)
                    && cand::same_family(l.c.addr, r.addr)
                    && !self.pairs.iter().any(|p| p.local == li && p.remote == ri)
                {
                    self.pairs.push(Pair {
                        local: li,
                        remote: ri,
                        state: PairState::Frozen,
                        conn: None,
                        nominated: false,
                        valid_local: None,
                        redials: 0,
                    });
                }
            }
        }
    }

    fn pair_priority(&self, p: usize) -> u128 {
        let (l, r) = (
            self.locals[self.pairs[p].local].c.priority,
            self.remotes[self.pairs[p].remote].priority,
        );
        if self.controlling {
            cand::pair_priority(l, r)
        } else {
            cand::pair_priority(r, l)
        }
    }

    fn foundation(&self, p: usize) -> (&str, &str) {
        (
            &self.locals[self.pairs[p].local].c.foundation,
            &self.remotes[self.pairs[p].remote].foundation,
        )
    }

    /// A pair we can start ourselves (a passive local waits for the peer to connect).
    fn startable(&self, p: usize) -> bool {
        let pair = &self.pairs[p];
        self.locals[pair.local].c.transport != Transport::TcpPassive
            || pair
                .conn
                .is_some_and(|c| self.conns.get(&c).is_some_and(|c| c.open))
    }

    fn txid(&mut self) -> [u8; 12] {
        let mut t = [0u8; 12];
        self.rng.fill(&mut t[..]);
        t
    }

    fn connect(&mut self, kind: ConnKind, local: SocketAddr, remote: SocketAddr) -> ConnId {
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        self.conns.insert(
            id,
            Conn {
                kind,
                local,
                remote,
                open: false,
                rx: framing::Decoder::new(),
                stun_rx: Vec::new(),
            },
        );
        self.commands.push_back(Command::Connect {
            conn: id,
            local,
            remote,
        });
        id
    }

    fn close(&mut self, conn: ConnId) {
        if self.conns.remove(&conn).is_some() {
            self.commands.push_back(Command::Close { conn });
        }
    }

    // ---- inputs -------------------------------------------------------------------------

    /// A datagram received on the UDP socket (or relayed address) `local` from `from`.
    pub fn handle_datagram(&mut self, now: u64, local: SocketAddr, from: SocketAddr, bytes: &[u8]) {
        let via = Via::Udp { local, from };
        if stun::is_stun(bytes) {
            self.handle_stun(now, via, bytes);
        } else if self.known_path(via) {
            self.deliver(bytes.to_vec());
        } else {
            self.stats.data_dropped += 1;
        }
    }

    /// An inbound TCP connection on a listening address; returns its handle.
    pub fn handle_tcp_accepted(
        &mut self,
        _now: u64,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> ConnId {
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        if self.conns.len() >= MAX_CONNS || self.state == State::Failed {
            self.commands.push_back(Command::Close { conn: id });
        } else {
            self.conns.insert(
                id,
                Conn {
                    kind: ConnKind::Accepted,
                    local,
                    remote,
                    open: true,
                    rx: framing::Decoder::new(),
                    stun_rx: Vec::new(),
                },
            );
        }
        id
    }

    /// A `Connect` command succeeded.
    pub fn handle_tcp_connected(&mut self, now: u64, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.open = true;
        let waiting: Vec<[u8; 12]> = self
            .txs
            .iter()
            .filter(|(_, t)| t.waiting && t.dest == Dest::Tcp(conn))
            .map(|(id, _)| *id)
            .collect();
        for txid in waiting {
            self.send_tx(now, txid);
        }
    }

    /// A connection closed, was reset, or a `Connect` failed.
    pub fn handle_tcp_closed(&mut self, now: u64, conn: ConnId) {
        if self.conns.remove(&conn).is_none() {
            return;
        }
        if self.path == Some(Path::Tcp { conn }) {
            self.fail();
            return;
        }
        let dead: Vec<[u8; 12]> = self
            .txs
            .iter()
            .filter(|(_, t)| t.dest == Dest::Tcp(conn))
            .map(|(id, _)| *id)
            .collect();
        for txid in dead {
            self.tx_failed(now, txid);
        }
        for p in &mut self.pairs {
            if p.conn == Some(conn) {
                p.conn = None;
                if p.state == PairState::InProgress {
                    p.state = PairState::Failed;
                }
            }
        }
        self.maybe_fail(now);
    }

    /// Bytes read from a TCP connection.
    pub fn handle_tcp_data(&mut self, now: u64, conn: ConnId, bytes: &[u8]) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.kind == ConnKind::Stun {
            return self.handle_stun_stream(now, conn, bytes);
        }
        let mut rest = bytes;
        while !rest.is_empty() {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            rest = &rest[c.rx.push_partial(rest)..];
            while let Some(frame) = self.conns.get_mut(&conn).and_then(|c| c.rx.pop()) {
                if stun::is_stun(&frame) {
                    self.handle_stun(now, Via::Tcp(conn), &frame);
                } else if self.known_path(Via::Tcp(conn)) {
                    self.deliver(frame);
                } else {
                    self.stats.data_dropped += 1;
                }
            }
        }
    }

    fn handle_stun_stream(&mut self, now: u64, conn: ConnId, bytes: &[u8]) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.stun_rx.extend_from_slice(bytes);
        if c.stun_rx.len() > MAX_STUN_STREAM {
            self.stats.malformed += 1;
            self.commands.push_back(Command::Close { conn });
            return self.handle_tcp_closed(now, conn);
        }
        let mut msgs = Vec::new();
        while c.stun_rx.len() >= stun::HEADER_LEN {
            let len =
                stun::HEADER_LEN + usize::from(u16::from_be_bytes([c.stun_rx[2], c.stun_rx[3]]));
            if c.stun_rx.len() < len {
                break;
            }
            msgs.push(c.stun_rx.drain(..len).collect::<Vec<u8>>());
        }
        for m in msgs {
            self.handle_stun(now, Via::Tcp(conn), &m);
        }
    }

    fn known_path(&self, via: Via) -> bool {
        self.pairs.iter().any(|p| match via {
            Via::Udp { local, from } => {
                self.locals[p.local].c.transport == Transport::Udp
                    && self.locals[p.local].base == local
                    && self.remotes[p.remote].addr == from
            }
            Via::Tcp(c) => p.conn == Some(c),
        })
    }

    fn deliver(&mut self, data: Vec<u8>) {
        if self.recv.len() >= MAX_RECV_QUEUE {
            self.stats.data_dropped += 1;
        } else {
            self.recv.push_back(data);
        }
    }

    fn reply(&mut self, via: Via, payload: Vec<u8>) {
        match via {
            Via::Udp { local, from } => self.transmits.push_back(Transmit::Udp {
                local,
                remote: from,
                payload,
            }),
            Via::Tcp(conn) => self.transmits.push_back(Transmit::Tcp {
                conn,
                payload: frame(&payload),
            }),
        }
    }

    // ---- timers and outputs -------------------------------------------------------------

    /// Runs whatever is due at `now`.
    pub fn handle_timeout(&mut self, now: u64) {
        let due: Vec<[u8; 12]> = self
            .txs
            .iter()
            .filter(|(_, t)| t.next_at <= now)
            .map(|(id, _)| *id)
            .collect();
        for txid in due {
            let Some(tx) = self.txs.get(&txid) else {
                continue;
            };
            if tx.transmits < self.cfg.timing.max_transmits && !tx.waiting {
                self.send_tx(now, txid);
            } else {
                self.tx_failed(now, txid);
            }
        }
        if self.state == State::Running {
            if self.nominate_at.is_some_and(|t| t <= now) {
                self.nominate_at = None;
                self.nominate(now);
            }
            let due: Vec<usize> = self
                .redial_at
                .iter()
                .filter(|(_, t)| **t <= now)
                .map(|(p, _)| *p)
                .collect();
            for p in due {
                self.redial_at.remove(&p);
                self.pairs[p].state = PairState::Waiting;
                self.triggered.push_back(p);
                self.next_check_at = Some(self.next_check_at.map_or(now, |t| t.min(now)));
            }
            if self.next_check_at.is_some_and(|t| t <= now) {
                self.next_check_at = self.pace_check(now).then_some(now + self.cfg.timing.ta);
            }
            self.maybe_fail(now);
        }
        if self.keepalive_at.is_some_and(|t| t <= now) {
            if let Some(path) = self.path {
                let txid = self.txid();
                let ka = check::keepalive(txid);
                match path {
                    Path::Udp { local, remote } => self.transmits.push_back(Transmit::Udp {
                        local,
                        remote,
                        payload: ka,
                    }),
                    Path::Tcp { conn } => self.transmits.push_back(Transmit::Tcp {
                        conn,
                        payload: frame(&ka),
                    }),
                }
                self.schedule_keepalive(now);
            }
        }
    }

    /// Next time [`Agent::handle_timeout`] must run.
    pub fn poll_timeout(&self) -> Option<u64> {
        let txs = self.txs.values().map(|t| t.next_at);
        let running = self.state == State::Running;
        let timers = [
            self.next_check_at.filter(|_| running),
            self.redial_at.values().min().copied().filter(|_| running),
            self.nominate_at.filter(|_| running),
            self.fail_at.filter(|_| running),
            self.keepalive_at,
        ];
        txs.chain(timers.into_iter().flatten()).min()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Next application packet received on the selected (or a checked) path.
    pub fn poll_recv(&mut self) -> Option<Vec<u8>> {
        self.recv.pop_front()
    }

    /// The selected path, once there is one.
    pub fn path(&self) -> Option<Path> {
        self.path
    }

    /// Queues application bytes on the selected path (framed on TCP).
    pub fn send(&mut self, data: &[u8]) -> Result<(), SendError> {
        match self.path.ok_or(SendError::NotConnected)? {
            Path::Udp { local, remote } => self.transmits.push_back(Transmit::Udp {
                local,
                remote,
                payload: data.to_vec(),
            }),
            Path::Tcp { conn } => self.transmits.push_back(Transmit::Tcp {
                conn,
                payload: framing::frame(data)?,
            }),
        }
        Ok(())
    }
}

fn frame(payload: &[u8]) -> Vec<u8> {
    // STUN messages we build are far below 64 KiB.
    framing::frame(payload).unwrap_or_default()
}

/// Lowercase hex, as pjlib's `pj_create_random_string` draws ufrag and password.
fn random_string(rng: &mut ChaCha8Rng, len: usize) -> String {
    const HEX: &[u8] = b"0123456789abcdef";
    (0..len)
        .map(|_| char::from(HEX[rng.random_range(0..HEX.len())]))
        .collect()
}
