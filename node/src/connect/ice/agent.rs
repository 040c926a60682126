//! The agent's state machine: gathering, the checklist, nomination, the selected path.

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

    // ---- transactions -------------------------------------------------------------------

    fn start_tx(&mut self, now: u64, txid: [u8; 12], kind: TxKind, payload: Vec<u8>, dest: Dest) {
        let waiting = matches!(dest, Dest::Tcp(c) if !self.conns.get(&c).is_some_and(|c| c.open));
        let t = &self.cfg.timing;
        // Over TCP there are no retransmissions; the whole RFC 5389 budget is one wait.
        let total = t.rto * ((1u64 << t.max_transmits.saturating_sub(1).min(20)) - 1) + 16 * t.rto;
        let tx = Tx {
            kind,
            payload,
            dest,
            transmits: 0,
            next_at: now + total,
            waiting,
        };
        self.txs.insert(txid, tx);
        if !waiting {
            self.send_tx(now, txid);
        }
    }

    fn send_tx(&mut self, now: u64, txid: [u8; 12]) {
        let Some(tx) = self.txs.get_mut(&txid) else {
            return;
        };
        tx.transmits += 1;
        tx.waiting = false;
        let t = &self.cfg.timing;
        match tx.dest {
            Dest::Udp { local, remote } => {
                tx.next_at = if tx.transmits < t.max_transmits {
                    now + (t.rto << (tx.transmits - 1).min(20))
                } else {
                    now + 16 * t.rto
                };
                self.transmits.push_back(Transmit::Udp {
                    local,
                    remote,
                    payload: tx.payload.clone(),
                });
            }
            Dest::Tcp(conn) => {
                tx.transmits = t.max_transmits;
                let stun_stream = self
                    .conns
                    .get(&conn)
                    .is_some_and(|c| c.kind == ConnKind::Stun);
                let payload = if stun_stream {
                    tx.payload.clone()
                } else {
                    frame(&tx.payload)
                };
                self.transmits.push_back(Transmit::Tcp { conn, payload });
            }
        }
    }

    fn start_check(&mut self, now: u64, p: usize, use_candidate: bool) {
        let Some((rufrag, rpwd)) = self.remote_creds.clone() else {
            return;
        };
        let pair = self.pairs[p].clone();
        let local = self.locals[pair.local].clone();
        let remote = self.remotes[pair.remote].clone();
        self.txs
            .retain(|_, t| !matches!(t.kind, TxKind::Check { pair, .. } if pair == p));
        let dest = if local.c.transport == Transport::Udp {
            Dest::Udp {
                local: local.base,
                remote: remote.addr,
            }
        } else {
            match pair.conn.filter(|c| self.conns.contains_key(c)) {
                Some(c) => Dest::Tcp(c),
                None if local.c.transport == Transport::TcpPassive => return,
                None => {
                    let c = self.connect(ConnKind::Check, local.base, remote.addr);
                    self.pairs[p].conn = Some(c);
                    Dest::Tcp(c)
                }
            }
        };
        let req = CheckRequest {
            priority: cand::check_priority(pair.local, self.srflx_default),
            use_candidate: use_candidate && self.controlling,
            controlling: Some(self.controlling),
            tie_breaker: self.tie_breaker,
        };
        let txid = self.txid();
        let payload = check::request(
            txid,
            &format!("{rufrag}:{}", self.ufrag),
            rpwd.as_bytes(),
            &req,
        );
        self.pairs[p].state = PairState::InProgress;
        let kind = TxKind::Check {
            pair: p,
            use_candidate: req.use_candidate,
            controlling: self.controlling,
        };
        self.start_tx(now, txid, kind, payload, dest);
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

    fn handle_stun(&mut self, now: u64, via: Via, raw: &[u8]) {
        let Ok(msg) = Message::decode(raw) else {
            self.stats.malformed += 1;
            return;
        };
        match msg.class {
            Class::Request => self.on_request(now, via, raw, &msg),
            Class::SuccessResponse | Class::ErrorResponse => self.on_response(now, via, raw, &msg),
            Class::Indication => {} // keepalives
        }
    }

    fn on_request(&mut self, now: u64, via: Via, raw: &[u8], msg: &Message) {
        if !Message::check_fingerprint(raw) {
            self.stats.bad_fingerprint += 1;
            return;
        }
        let ours = msg
            .username()
            .and_then(|u| u.split_once(':'))
            .is_some_and(|(l, _)| l == self.ufrag);
        if !ours {
            self.stats.bad_username += 1;
            return;
        }
        let key = self.pwd.clone().into_bytes();
        if !msg.check_integrity(raw, &key) {
            self.stats.bad_integrity += 1;
            return;
        }
        let Some(req) = check::parse_request(msg) else {
            self.stats.malformed += 1;
            return self.reply(via, check::error(msg, stun::ErrorCode::BAD_REQUEST, &key));
        };
        // RFC 8445 §7.3.1.1 role conflict.
        match (self.controlling, req.controlling) {
            (true, Some(true)) if self.tie_breaker >= req.tie_breaker => {
                self.stats.role_conflicts_sent += 1;
                return self.reply(via, check::error(msg, check::ROLE_CONFLICT, &key));
            }
            (false, Some(false)) if self.tie_breaker < req.tie_breaker => {
                self.stats.role_conflicts_sent += 1;
                return self.reply(via, check::error(msg, check::ROLE_CONFLICT, &key));
            }
            (true, Some(true)) | (false, Some(false)) => self.switch_role(now),
            _ => {}
        }
        let mapped = match via {
            Via::Udp { from, .. } => from,
            Via::Tcp(c) => match self.conns.get(&c) {
                Some(conn) => conn.remote,
                None => return,
            },
        };
        self.stats.checks_answered += 1;
        self.reply(via, check::success(msg, mapped, &key));
        if self.state != State::Running {
            return;
        }
        let Some(p) = self.pair_for_request(via, mapped, req.priority) else {
            return;
        };
        if req.use_candidate && !self.controlling {
            self.pairs[p].nominated = true;
            if self.pairs[p].state == PairState::Succeeded {
                return self.select(now, p);
            }
        }
        if !matches!(
            self.pairs[p].state,
            PairState::Succeeded | PairState::InProgress
        ) {
            self.pairs[p].state = PairState::Waiting;
            if !self.triggered.contains(&p) {
                self.triggered.push_back(p);
            }
            self.next_check_at = Some(self.next_check_at.map_or(now, |t| t.min(now)));
        }
    }

    /// The pair a check arrived on, creating a peer-reflexive remote candidate when the
    /// source is unknown (RFC 8445 §7.3.1.3-4, RFC 6544 §7.2).
    fn pair_for_request(&mut self, via: Via, from: SocketAddr, priority: u32) -> Option<usize> {
        if let Via::Tcp(c) = via {
            if let Some(p) = self.pairs.iter().position(|p| p.conn == Some(c)) {
                return Some(p);
            }
        }
        let (li, rtransport) = match via {
            Via::Udp { local, .. } => {
                let li = self.locals.iter().position(|l| {
                    l.c.transport == Transport::Udp
                        && l.base == local
                        && matches!(l.c.typ, CandidateType::Host | CandidateType::Relay)
                })?;
                (li, Transport::Udp)
            }
            Via::Tcp(c) => {
                let conn_local = self.conns.get(&c)?.local;
                let li = self.locals.iter().position(|l| {
                    l.base == conn_local
                        && matches!(l.c.transport, Transport::TcpPassive | Transport::TcpSo)
                        && matches!(l.c.typ, CandidateType::Host | CandidateType::Relay)
                })?;
                let rt = if self.locals[li].c.transport == Transport::TcpSo {
                    Transport::TcpSo
                } else {
                    Transport::TcpActive
                };
                (li, rt)
            }
        };
        let matches_remote = |r: &Candidate| {
            r.transport == rtransport
                && if rtransport == Transport::TcpActive {
                    r.addr.ip() == from.ip()
                } else {
                    r.addr == from
                }
        };
        let ri = match self.remotes.iter().position(matches_remote) {
            Some(ri) => ri,
            None if self.remotes.len() < MAX_REMOTE_CANDIDATES => {
                let foundation = format!("P{:x}", self.rng.random::<u32>());
                self.remotes.push(Candidate {
                    foundation,
                    component: COMPONENT,
                    transport: rtransport,
                    priority,
                    addr: from,
                    typ: CandidateType::Prflx,
                });
                self.remotes.len() - 1
            }
            None => return None,
        };
        let p = match self
            .pairs
            .iter()
            .position(|p| p.local == li && p.remote == ri)
        {
            Some(p) => p,
            None if self.pairs.len() < MAX_PAIRS => {
                self.pairs.push(Pair {
                    local: li,
                    remote: ri,
                    state: PairState::Waiting,
                    conn: None,
                    nominated: false,
                    valid_local: None,
                });
                self.pairs.len() - 1
            }
            None => return None,
        };
        if let Via::Tcp(c) = via {
            if !matches!(
                self.pairs[p].state,
                PairState::InProgress | PairState::Succeeded
            ) || self.pairs[p].conn.is_none()
            {
                self.pairs[p].conn = Some(c);
            }
        }
        Some(p)
    }

    fn switch_role(&mut self, now: u64) {
        self.controlling = !self.controlling;
        self.stats.role_switches += 1;
        if self.controlling {
            if self.pairs.iter().any(|p| p.state == PairState::Succeeded) {
                self.nominate_at = Some(now + self.cfg.timing.nominated_check_delay);
            }
        } else {
            self.nominating = None;
            self.nominate_at = None;
        }
    }

    fn on_response(&mut self, now: u64, via: Via, raw: &[u8], msg: &Message) {
        let Some(tx) = self.txs.get(&msg.txid).cloned() else {
            self.stats.unknown_transaction += 1;
            return;
        };
        match tx.kind {
            TxKind::Gather { base, tcp } => {
                self.txs.remove(&msg.txid);
                if let (Class::SuccessResponse, Some(mapped)) = (msg.class, msg.xor_mapped()) {
                    self.add_srflx(base, mapped, tcp);
                }
                if let (true, Dest::Tcp(c)) = (tcp, tx.dest) {
                    self.close(c);
                }
                self.gathered();
            }
            TxKind::Check {
                pair,
                use_candidate,
                controlling,
            } => {
                let key = self
                    .remote_creds
                    .as_ref()
                    .map(|c| c.1.clone().into_bytes())
                    .unwrap_or_default();
                if !Message::check_fingerprint(raw) {
                    self.stats.bad_fingerprint += 1;
                    return;
                }
                if !msg.check_integrity(raw, &key) {
                    self.stats.bad_integrity += 1;
                    return;
                }
                self.txs.remove(&msg.txid);
                // RFC 8445 §7.2.5.2.1: the response must come back on the reverse path.
                let symmetric = match (tx.dest, via) {
                    (Dest::Udp { local, remote }, Via::Udp { local: l, from }) => {
                        local == l && remote == from
                    }
                    (Dest::Tcp(a), Via::Tcp(b)) => a == b,
                    _ => false,
                };
                if msg.class == Class::ErrorResponse {
                    if msg.error_code().map(|e| e.code) == Some(check::ROLE_CONFLICT) {
                        if self.controlling == controlling {
                            self.switch_role(now);
                        }
                        self.pairs[pair].state = PairState::Waiting;
                        self.triggered.push_back(pair);
                        self.next_check_at = Some(self.next_check_at.map_or(now, |t| t.min(now)));
                    } else {
                        self.check_failed(now, pair);
                    }
                    return;
                }
                match msg.xor_mapped() {
                    Some(mapped) if symmetric => {
                        self.check_succeeded(now, pair, mapped, use_candidate)
                    }
                    _ => self.check_failed(now, pair),
                }
            }
        }
    }

    fn add_srflx(&mut self, base: SocketAddr, mapped: SocketAddr, tcp: bool) {
        let transport = if tcp {
            Transport::TcpPassive
        } else {
            Transport::Udp
        };
        if mapped == base
            || self
                .locals
                .iter()
                .any(|l| l.c.addr == mapped && l.c.transport == transport)
        {
            return;
        }
        let n = self
            .locals
            .iter()
            .filter(|l| l.c.typ == CandidateType::Srflx)
            .count() as u16;
        self.add_local(CandidateType::Srflx, transport, mapped, base, 65535 - n);
        self.srflx_default = true;
        self.refresh_priorities();
    }

    fn gathered(&mut self) {
        self.gathering_pending = self.gathering_pending.saturating_sub(1);
        if self.gathering_pending == 0 {
            self.events.push_back(Event::GatheringDone);
        }
    }

    fn check_succeeded(&mut self, now: u64, p: usize, mapped: SocketAddr, use_candidate: bool) {
        let li = self.pairs[p].local;
        let l = self.locals[li].clone();
        // The valid pair's local candidate: the one the peer saw (RFC 8445 §7.2.5.3.2).
        // For TCP the source port is ephemeral, so the address is matched on the IP.
        let same = |a: SocketAddr| {
            if l.c.transport.is_tcp() {
                a.ip() == mapped.ip()
            } else {
                a == mapped
            }
        };
        let valid = if same(if l.c.transport == Transport::TcpActive {
            l.base
        } else {
            l.c.addr
        }) {
            Some(li)
        } else if let Some(i) = self.locals.iter().position(|o| {
            o.c.transport == l.c.transport && o.c.typ != CandidateType::Host && same(o.c.addr)
        }) {
            Some(i)
        } else {
            let n = self
                .locals
                .iter()
                .filter(|o| o.c.typ == CandidateType::Prflx)
                .count() as u16;
            self.add_local(
                CandidateType::Prflx,
                l.c.transport,
                mapped,
                l.base,
                65535 - n,
            )
        };
        let pair = &mut self.pairs[p];
        pair.state = PairState::Succeeded;
        pair.valid_local = valid.or(Some(li));
        let f = {
            let (a, b) = self.foundation(p);
            (a.to_owned(), b.to_owned())
        };
        for q in 0..self.pairs.len() {
            if self.pairs[q].state == PairState::Frozen && {
                let (a, b) = self.foundation(q);
                a == f.0 && b == f.1
            } {
                self.pairs[q].state = PairState::Waiting;
            }
        }
        if (use_candidate && self.controlling) || (!self.controlling && self.pairs[p].nominated) {
            return self.select(now, p);
        }
        if self.controlling && self.nominating.is_none() {
            let at = if self.checks_done() {
                now
            } else {
                now + self.cfg.timing.nominated_check_delay
            };
            self.nominate_at = Some(self.nominate_at.map_or(at, |t| t.min(at)));
        }
    }

    fn check_failed(&mut self, now: u64, p: usize) {
        self.pairs[p].state = PairState::Failed;
        if self.nominating == Some(p) {
            self.nominating = None;
        }
        if self.controlling
            && self.nominating.is_none()
            && self.pairs.iter().any(|q| q.state == PairState::Succeeded)
        {
            self.nominate_at = Some(self.nominate_at.unwrap_or(now));
        }
        self.maybe_fail(now);
    }

    fn tx_failed(&mut self, now: u64, txid: [u8; 12]) {
        let Some(tx) = self.txs.remove(&txid) else {
            return;
        };
        match tx.kind {
            TxKind::Gather { tcp, .. } => {
                if let (true, Dest::Tcp(c)) = (tcp, tx.dest) {
                    self.close(c);
                }
                self.gathered();
            }
            TxKind::Check { pair, .. } => {
                if let Dest::Tcp(c) = tx.dest {
                    if self
                        .conns
                        .get(&c)
                        .is_some_and(|c| c.kind == ConnKind::Check)
                    {
                        self.close(c);
                        self.pairs[pair].conn = None;
                    }
                }
                self.check_failed(now, pair);
            }
        }
    }

    /// No check left to run or waiting for an answer.
    fn checks_done(&self) -> bool {
        self.triggered.is_empty()
            && (0..self.pairs.len()).all(|p| match self.pairs[p].state {
                PairState::Frozen | PairState::Waiting => !self.startable(p),
                PairState::InProgress => false,
                PairState::Succeeded | PairState::Failed => true,
            })
    }

    fn maybe_fail(&mut self, now: u64) {
        if self.state != State::Running || self.remote_creds.is_none() || self.gathering_pending > 0
        {
            return;
        }
        // A passive candidate can still be reached by the peer until the deadline.
        let can_be_reached = self
            .locals
            .iter()
            .any(|l| l.c.transport == Transport::TcpPassive)
            && self
                .remotes
                .iter()
                .any(|r| r.transport == Transport::TcpActive);
        let any_valid = self.pairs.iter().any(|p| p.state == PairState::Succeeded);
        if self.checks_done() && !any_valid && !can_be_reached {
            self.fail();
        } else if self.fail_at.is_some_and(|t| now >= t) {
            self.fail();
        }
    }

    fn fail(&mut self) {
        if self.state == State::Failed {
            return;
        }
        self.state = State::Failed;
        self.events.push_back(Event::Failed);
        self.stop_checks();
        for c in self.conns.keys().copied().collect::<Vec<_>>() {
            self.close(c);
        }
        self.path = None;
        self.keepalive_at = None;
    }

    fn stop_checks(&mut self) {
        self.txs
            .retain(|_, t| matches!(t.kind, TxKind::Gather { .. }));
        self.triggered.clear();
        self.next_check_at = None;
        self.nominate_at = None;
        self.fail_at = None;
    }

    fn select(&mut self, now: u64, p: usize) {
        if self.state != State::Running {
            return;
        }
        self.state = State::Connected;
        self.selected = Some(p);
        self.stop_checks();
        let pair = self.pairs[p].clone();
        let local = &self.locals[pair.valid_local.unwrap_or(pair.local)];
        let checked = &self.locals[pair.local];
        let remote = &self.remotes[pair.remote];
        let path = match pair.conn {
            Some(conn) if checked.c.transport.is_tcp() => Path::Tcp { conn },
            _ => Path::Udp {
                local: checked.base,
                remote: remote.addr,
            },
        };
        self.path = Some(path);
        let ev = Event::Selected {
            local: super::Endpoint {
                typ: local.c.typ,
                transport: checked.c.transport,
                addr: local.c.addr,
            },
            remote: Endpoint {
                typ: remote.typ,
                transport: remote.transport,
                addr: remote.addr,
            },
            path,
        };
        self.events.push_back(ev);
        let keep: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(id, c)| Path::Tcp { conn: **id } != path && c.kind != ConnKind::Stun)
            .map(|(id, _)| *id)
            .collect();
        for c in keep {
            self.close(c);
        }
        self.schedule_keepalive(now);
    }

    fn schedule_keepalive(&mut self, now: u64) {
        let t = &self.cfg.timing;
        let jitter = if t.keepalive_rand > 0 {
            self.rng.random_range(0..t.keepalive_rand)
        } else {
            0
        };
        self.keepalive_at = Some(now + t.keepalive_min + jitter);
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

    /// Starts one check (triggered first, then the best waiting, then the best frozen
    /// pair); false when none is left.
    fn pace_check(&mut self, now: u64) -> bool {
        if self.remote_creds.is_none() {
            return false;
        }
        while let Some(p) = self.triggered.pop_front() {
            if self.pairs[p].state == PairState::Waiting && self.startable(p) {
                self.start_check(now, p, false);
                return true;
            }
        }
        let best = |state| {
            (0..self.pairs.len())
                .filter(|&p| self.pairs[p].state == state && self.startable(p))
                .max_by_key(|&p| (self.pair_priority(p), std::cmp::Reverse(p)))
        };
        match best(PairState::Waiting).or_else(|| best(PairState::Frozen)) {
            Some(p) => {
                self.start_check(now, p, false);
                true
            }
            None => false,
        }
    }

    /// Regular nomination (pjnath with `aggressive = PJ_FALSE`): re-check the best valid
    /// pair with USE-CANDIDATE.
    fn nominate(&mut self, now: u64) {
        if !self.controlling || self.nominating.is_some() {
            return;
        }
        let best = (0..self.pairs.len())
            .filter(|&p| self.pairs[p].state == PairState::Succeeded)
            .max_by_key(|&p| (self.pair_priority(p), std::cmp::Reverse(p)));
        if let Some(p) = best {
            self.nominating = Some(p);
            self.start_check(now, p, true);
        }
    }

    /// Next time [`Agent::handle_timeout`] must run.
    pub fn poll_timeout(&self) -> Option<u64> {
        let txs = self.txs.values().map(|t| t.next_at);
        let running = self.state == State::Running;
        let timers = [
            self.next_check_at.filter(|_| running),
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

fn random_string(rng: &mut ChaCha8Rng, len: usize) -> String {
    const CHARS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    (0..len)
        .map(|_| char::from(CHARS[rng.random_range(0..CHARS.len())]))
        .collect()
}
