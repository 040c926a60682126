//! Our ICE agent (`node::connect::ice::Agent`, ICE-TCP only) on netsim's TCP through
//! [`StreamGlue`], over the NAT matrix netsim models: the two agents select a pair exactly
//! where `netsim::oracle::tcp_path` says a direct TCP path exists, and of the kind it
//! names. The agent and the oracle were written apart (the agent from RFC 8445/6544 and
//! pjnath, the oracle from RFC 4787/5382): agreement over every cell is the evidence.
//!
//! The ice_msg exchange (the DHT's job in Jami) is done by the test: the answerer
//! (controlling, PROTOCOLS §6.3) gets the requester's message first, the requester the
//! answer [`ANSWER_DELAY`] later.

use netsim::apps::stun_server::StunServer;
use netsim::oracle::{self, TcpPath};
use netsim::{
    App, Ctx, HostOpts, LinkParams, NatConfig, NatType, NodeId, Sim, SimConfig, TcpEvent,
    UnsolicitedSyn,
};
use node::connect::ice::{
    Agent, CandidateType, Command, Config, ConnId, Endpoint, Event, IceMsg, Path, Transmit,
    Transport,
};
use node::device::streams::{StreamCommand, StreamEngine, StreamId};
use scenarios::streams::StreamGlue;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

const STUN_PORT: u16 = 3478;
const ICE_PORT: u16 = 7100;
/// The requester gets the answer this long after the answerer got the request.
const ANSWER_DELAY: Duration = Duration::from_millis(200);
/// Gathering ends by then (a STUN check over TCP that never opens gives up at 15 s).
const GATHER_LIMIT: Duration = Duration::from_secs(30);
/// From the answer on: longer than the agent's whole budget (`Timing::fail_timeout`,
/// 60 s).
const RUN_LIMIT: Duration = Duration::from_secs(65);
const SEEDS: [u64; 3] = [1, 2, 3];

// ---- the engine and the app ----------------------------------------------------------

/// The ICE agent seen as a [`StreamEngine`]: its connection numbers are the stream ids.
struct IceEngine {
    agent: Agent,
    listen_failed: Vec<SocketAddr>,
    udp_dropped: u64,
    /// Streams that came in on the listener (the others this side connected).
    accepted: BTreeSet<StreamId>,
}

impl StreamEngine for IceEngine {
    fn handle_stream_accepted(
        &mut self,
        now: u64,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> StreamId {
        let id = StreamId(self.agent.handle_tcp_accepted(now, local, remote).0);
        self.accepted.insert(id);
        id
    }
    fn handle_stream_connected(&mut self, now: u64, id: StreamId, _local: SocketAddr) {
        self.agent.handle_tcp_connected(now, ConnId(id.0));
    }
    fn handle_stream_data(&mut self, now: u64, id: StreamId, bytes: &[u8]) {
        self.agent.handle_tcp_data(now, ConnId(id.0), bytes);
    }
    fn handle_stream_closed(&mut self, now: u64, id: StreamId) {
        self.agent.handle_tcp_closed(now, ConnId(id.0));
    }
    fn handle_listen_failed(&mut self, _now: u64, local: SocketAddr) {
        self.listen_failed.push(local);
    }
    fn poll_stream_command(&mut self) -> Option<StreamCommand> {
        // Writes first: a write queued before a close must go out before it.
        while let Some(t) = self.agent.poll_transmit() {
            match t {
                Transmit::Tcp { conn, payload } => {
                    return Some(StreamCommand::Write {
                        id: StreamId(conn.0),
                        bytes: payload,
                    })
                }
                Transmit::Udp { .. } => self.udp_dropped += 1,
            }
        }
        Some(match self.agent.poll_command()? {
            Command::Listen { local } => StreamCommand::Listen { local },
            Command::Connect {
                conn,
                local,
                remote,
            } => StreamCommand::Connect {
                id: StreamId(conn.0),
                local,
                remote,
            },
            Command::Close { conn } => StreamCommand::Close {
                id: StreamId(conn.0),
            },
        })
    }
}

/// One side's ICE settings.
#[derive(Clone)]
struct Side {
    seed: u64,
    controlling: bool,
    stun: SocketAddr,
    tcp_so: bool,
}

/// The pair a side selected, and the TCP connection under it.
#[derive(Clone, Debug, PartialEq)]
struct Sel {
    at: u64,
    local: Endpoint,
    remote: Endpoint,
    /// The connection came in on this side's listener.
    accepted: bool,
    /// The connection's remote address as this side's host sees it.
    peer: Option<SocketAddr>,
}

/// What a side saw, in host milliseconds.
#[derive(Clone, Debug, Default)]
struct Outcome {
    gathered_at: Option<u64>,
    remote_at: Option<u64>,
    selected: Option<Sel>,
    failed_at: Option<u64>,
    received: Vec<Vec<u8>>,
}

/// A host running the agent, its TCP through [`StreamGlue`].
struct IceApp {
    side: Side,
    engine: Option<IceEngine>,
    glue: StreamGlue,
    armed: BTreeSet<u64>,
    out: Outcome,
}

const T_ENGINE: u64 = 1;

fn now_ms(cx: &Ctx<'_>) -> u64 {
    cx.now().as_nanos() / 1_000_000
}

impl IceApp {
    fn new(side: Side) -> Self {
        IceApp {
            side,
            engine: None,
            glue: StreamGlue::new(),
            armed: BTreeSet::new(),
            out: Outcome::default(),
        }
    }

    fn local_msg(&self) -> Option<IceMsg> {
        self.out.gathered_at?;
        Some(self.engine.as_ref()?.agent.local_ice_msg())
    }

    fn set_remote(&mut self, cx: &mut Ctx<'_>, msg: &IceMsg) {
        let now = now_ms(cx);
        if let Some(e) = self.engine.as_mut() {
            e.agent.set_remote(now, msg);
            self.out.remote_at = Some(now);
        }
        self.pump(cx);
    }

    /// After every input: run the stream commands, read events, re-arm the timer.
    fn pump(&mut self, cx: &mut Ctx<'_>) {
        let now = now_ms(cx);
        let Some(e) = self.engine.as_mut() else {
            return;
        };
        self.glue.drain(cx, now, e);
        while let Some(ev) = e.agent.poll_event() {
            match ev {
                Event::GatheringDone => self.out.gathered_at = Some(now),
                Event::Selected {
                    local,
                    remote,
                    path,
                } => {
                    let Path::Tcp { conn } = path else {
                        panic!("a TCP-only agent selected {path:?}")
                    };
                    let id = StreamId(conn.0);
                    let peer = self.glue.conn(id).and_then(|c| cx.tcp_addrs(c).ok());
                    self.out.selected = Some(Sel {
                        at: now,
                        local,
                        remote,
                        accepted: e.accepted.contains(&id),
                        peer: peer.map(|p| p.1),
                    })
                }
                Event::Failed => self.out.failed_at = Some(now),
            }
        }
        self.glue.drain(cx, now, e);
        while let Some(d) = e.agent.poll_recv() {
            self.out.received.push(d);
        }
        if let Some(t) = e.agent.poll_timeout() {
            if self.armed.first().is_none_or(|&first| t < first) {
                self.armed.insert(t);
                cx.set_timer(Duration::from_millis(t.saturating_sub(now)), T_ENGINE);
            }
        }
    }
}

impl App for IceApp {
    fn start(&mut self, cx: &mut Ctx<'_>) {
        let ip = cx.addrs()[0];
        let cfg = Config {
            seed: self.side.seed,
            controlling: self.side.controlling,
            tcp_listen: vec![SocketAddr::new(ip, ICE_PORT)],
            tcp_so: self.side.tcp_so,
            stun_server: Some(self.side.stun),
            ..Config::default()
        };
        self.engine = Some(IceEngine {
            agent: Agent::new(cfg, now_ms(cx)),
            listen_failed: Vec::new(),
            udp_dropped: 0,
            accepted: BTreeSet::new(),
        });
        self.pump(cx);
    }
    fn on_timer(&mut self, cx: &mut Ctx<'_>, _token: u64) {
        let now = now_ms(cx);
        self.armed.pop_first();
        self.armed = self.armed.split_off(&(now + 1));
        if let Some(e) = self.engine.as_mut() {
            e.agent.handle_timeout(now);
        }
        self.pump(cx);
    }
    fn on_tcp(&mut self, cx: &mut Ctx<'_>, ev: TcpEvent) {
        let now = now_ms(cx);
        if let Some(e) = self.engine.as_mut() {
            self.glue.on_tcp(cx, now, e, &ev);
        }
        self.pump(cx);
    }
    netsim::app_any!();
}

// ---- the NAT matrix ------------------------------------------------------------------

/// One cell: where alice (requester) and bob (answerer) sit.
#[derive(Clone, Debug)]
enum Cell {
    /// Each behind its own NAT (`None`: on the internet), both boxes with this REQ-4
    /// policy.
    Apart(Option<NatType>, Option<NatType>, UnsolicitedSyn),
    /// Alice behind a home NAT behind a carrier NAT; bob behind an eim-apdf home NAT.
    Cgnat { carrier: NatType, home: NatType },
    /// Both behind one carrier NAT, each behind its own home NAT (bob's eim-adf).
    Shared {
        carrier: NatType,
        hairpin: bool,
        home: NatType,
    },
    /// Both on the LAN of one NAT.
    SameLan(NatType),
}

impl fmt::Display for Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = |t: &Option<NatType>| t.map_or("public".to_string(), |t| t.to_string());
        match self {
            Cell::Apart(a, b, UnsolicitedSyn::Drop) => write!(f, "{} / {}", n(a), n(b)),
            Cell::Apart(a, b, s) => write!(f, "{} / {} syn={s}", n(a), n(b)),
            Cell::Cgnat { carrier, home } => write!(f, "cgnat {carrier}>{home} / eim-apdf"),
            Cell::Shared {
                carrier,
                hairpin,
                home,
            } => write!(
                f,
                "shared {carrier}{} > {home} / eim-adf",
                if *hairpin { "+hairpin" } else { "" }
            ),
            Cell::SameLan(t) => write!(f, "same LAN behind {t}"),
        }
    }
}

fn t(s: &str) -> NatType {
    s.parse().unwrap()
}

const TYPES: [&str; 9] = [
    "eim-eif",
    "eim-adf",
    "eim-apdf",
    "adm-eif",
    "adm-adf",
    "adm-apdf",
    "apdm-eif",
    "apdm-adf",
    "apdm-apdf",
];

fn matrix() -> Vec<Cell> {
    let kinds: Vec<Option<NatType>> = std::iter::once(None)
        .chain(TYPES.iter().map(|s| Some(t(s))))
        .collect();
    let mut cells = Vec::new();
    for a in &kinds {
        for b in &kinds {
            cells.push(Cell::Apart(*a, *b, UnsolicitedSyn::Drop));
        }
    }
    for syn in [UnsolicitedSyn::Rst, UnsolicitedSyn::Refuse] {
        for (a, b) in [("eim-apdf", "eim-adf"), ("eim-eif", "apdm-apdf")] {
            cells.push(Cell::Apart(Some(t(a)), Some(t(b)), syn));
        }
    }
    for carrier in ["eim-eif", "eim-apdf", "apdm-apdf"] {
        for home in ["eim-eif", "eim-apdf", "apdm-eif"] {
            cells.push(Cell::Cgnat {
                carrier: t(carrier),
                home: t(home),
            });
        }
        for hairpin in [true, false] {
            for home in ["eim-eif", "eim-apdf"] {
                cells.push(Cell::Shared {
                    carrier: t(carrier),
                    hairpin,
                    home: t(home),
                });
            }
        }
    }
    cells.push(Cell::SameLan(t("apdm-apdf")));
    cells
}

/// What a test changes on purpose to break the model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Break {
    #[default]
    None,
    /// Drop the server-reflexive TCP candidates from both messages before `set_remote`:
    /// the passive one and the S-O one, which our agent puts at the same address (its
    /// listening port's mapping), so dropping the passive one alone leaves the address
    /// reachable through the S-O one wherever the passive one would be.
    NoSrflx,
    /// Every NAT forgets a TCP mapping as soon as it falls idle, while its config (what
    /// the oracle reads) says RFC 5382's lifetimes.
    ForgetfulNats,
    /// Not a broken model but another agent: no S-O candidates (`tcp_so` off), whose
    /// listening port then never sends first. `tcp_path` without its simultaneous open
    /// must describe it exactly.
    NoSo,
}

struct Built {
    sim: Sim,
    alice: NodeId,
    bob: NodeId,
    nats: Vec<NodeId>,
}

fn link(name: &str) -> (LinkParams, LinkParams) {
    LinkParams::preset(name).unwrap()
}

fn build(cell: &Cell, seed: u64, tcp_so: bool) -> Built {
    let mut sim = Sim::new(SimConfig {
        seed,
        keep_trace: false,
        ..SimConfig::default()
    });
    let mut nats = Vec::new();
    let mut nat = |sim: &mut Sim, name: &str, kind: NatType, behind, syn, hairpin, l: &str| {
        let cfg = NatConfig {
            kind,
            hairpin,
            unsolicited_syn: syn,
            ..NatConfig::default()
        };
        let (up, down) = link(l);
        let id = sim.add_nat(name, cfg, behind, up, down);
        nats.push(id);
        id
    };
    let host = |sim: &mut Sim, name: &str, behind: Option<NodeId>, l: &str| {
        let (up, down) = link(l);
        sim.add_host(
            name,
            HostOpts {
                behind,
                up,
                down,
                ..HostOpts::default()
            },
        )
    };
    let stun = host(&mut sim, "stun", None, "internet");
    sim.add_app(stun, || Box::new(StunServer::new(STUN_PORT, STUN_PORT + 1)));
    let drop = UnsolicitedSyn::Drop;
    let (alice, bob) = match cell {
        Cell::Apart(a, b, syn) => {
            let na = a.map(|k| nat(&mut sim, "nat-a", k, None, *syn, false, "wifi"));
            let nb = b.map(|k| nat(&mut sim, "nat-b", k, None, *syn, false, "cellular"));
            let la = if na.is_some() { "lan" } else { "wifi" };
            let lb = if nb.is_some() { "lan" } else { "cellular" };
            (
                host(&mut sim, "alice", na, la),
                host(&mut sim, "bob", nb, lb),
            )
        }
        Cell::Cgnat { carrier, home } => {
            let c = nat(&mut sim, "carrier", *carrier, None, drop, false, "cellular");
            let h = nat(&mut sim, "home", *home, Some(c), drop, false, "internet");
            let nb = nat(&mut sim, "nat-b", t("eim-apdf"), None, drop, false, "wifi");
            (
                host(&mut sim, "alice", Some(h), "wifi"),
                host(&mut sim, "bob", Some(nb), "lan"),
            )
        }
        Cell::Shared {
            carrier,
            hairpin,
            home,
        } => {
            let c = nat(
                &mut sim, "carrier", *carrier, None, drop, *hairpin, "cellular",
            );
            let ha = nat(&mut sim, "home-a", *home, Some(c), drop, false, "internet");
            let hb = nat(
                &mut sim,
                "home-b",
                t("eim-adf"),
                Some(c),
                drop,
                false,
                "internet",
            );
            (
                host(&mut sim, "alice", Some(ha), "wifi"),
                host(&mut sim, "bob", Some(hb), "wifi"),
            )
        }
        Cell::SameLan(kind) => {
            let n = nat(&mut sim, "home", *kind, None, drop, false, "wifi");
            (
                host(&mut sim, "alice", Some(n), "lan"),
                host(&mut sim, "bob", Some(n), "wifi"),
            )
        }
    };
    let stun_addr = SocketAddr::new(sim.host(stun).unwrap().addrs[0], STUN_PORT);
    for (h, controlling, salt) in [(alice, false, 11), (bob, true, 22)] {
        let side = Side {
            seed: seed.wrapping_mul(1000) + salt,
            controlling,
            stun: stun_addr,
            tcp_so,
        };
        let app = sim.add_app(h, move || Box::new(IceApp::new(side.clone())));
        assert_eq!(app, 0);
    }
    Built {
        sim,
        alice,
        bob,
        nats,
    }
}

/// The result of one run of one cell.
#[derive(Clone, Debug, PartialEq)]
struct Run {
    /// `oracle::tcp_path_so_on_listen_port`: our agent's S-O candidate is its listening
    /// port.
    oracle: TcpPath,
    /// `oracle::tcp_path` (S-O on a port of its own, as netsim's `tcp-punch`).
    oracle_own_so_port: TcpPath,
    alice: Option<Sel>,
    bob: Option<Sel>,
    /// What the connection under the selected pairs is (see [`truth`]).
    kind: Result<TcpPath, String>,
    /// From the answerer's `set_remote` to the later `Selected` (virtual ms).
    setup_ms: Option<u64>,
    /// Both sides ended (selected or failed) before the limit.
    settled: bool,
    /// Application data sent by each side after selection came out of the other's agent.
    data_ok: bool,
    /// The hash of the run's whole trace (every packet and event).
    trace_hash: String,
}

fn app(sim: &Sim, h: NodeId) -> &IceApp {
    sim.app::<IceApp>(h, 0).expect("ice app")
}

/// What kind of path the selected connection is, from the connection itself (which side
/// accepted it, which address the other dialled), not from the agents' labels: an
/// accepted connection is active to passive, dialled to the acceptor's host address
/// (host) or to its mapping (srflx); a connection both sides opened is a simultaneous
/// open (host when one side dialled the other's host address). Also checks that the
/// agents' labels say the same on the dialling side.
fn truth(a: &Sel, b: &Sel, a_host: SocketAddr, b_host: SocketAddr) -> Result<TcpPath, String> {
    let label = |s: &Sel| s.remote.typ;
    let dialled_host = |s: &Sel, other_host: SocketAddr| s.peer == Some(other_host);
    let (kind, dialers): (TcpPath, Vec<(&Sel, SocketAddr)>) = match (a.accepted, b.accepted) {
        (true, true) => return Err("both sides accepted the connection".into()),
        (false, true) => (
            if dialled_host(a, b_host) {
                TcpPath::Host
            } else {
                TcpPath::Srflx
            },
            vec![(a, b_host)],
        ),
        (true, false) => (
            if dialled_host(b, a_host) {
                TcpPath::Host
            } else {
                TcpPath::Srflx
            },
            vec![(b, a_host)],
        ),
        (false, false) => (
            if dialled_host(a, b_host) || dialled_host(b, a_host) {
                TcpPath::Host
            } else {
                TcpPath::SimultaneousOpen
            },
            vec![(a, b_host), (b, a_host)],
        ),
    };
    for (s, other_host) in dialers {
        let want = if dialled_host(s, other_host) {
            CandidateType::Host
        } else {
            CandidateType::Srflx
        };
        if label(s) != want {
            return Err(format!(
                "dialled {:?} but labels the remote {:?}",
                s.peer,
                label(s)
            ));
        }
    }
    Ok(kind)
}

fn run(cell: &Cell, seed: u64, brk: Break) -> Run {
    let Built {
        mut sim,
        alice,
        bob,
        nats,
    } = build(cell, seed, brk != Break::NoSo);
    if brk == Break::ForgetfulNats {
        for n in nats {
            sim.nat_mut(n).unwrap().table.actual_tcp_lifetime = Some(Duration::ZERO);
        }
    }
    let (oracle, oracle_own_so_port) = if brk == Break::NoSo {
        let p = match oracle::tcp_path(&sim, alice, bob) {
            TcpPath::SimultaneousOpen => TcpPath::None,
            p => p,
        };
        (p, p)
    } else {
        (
            oracle::tcp_path_so_on_listen_port(&sim, alice, bob),
            oracle::tcp_path(&sim, alice, bob),
        )
    };
    let step = Duration::from_millis(20);
    let limit = netsim::SimTime::from_nanos(GATHER_LIMIT.as_nanos() as u64);
    // Gathering (STUN over TCP from the listening port).
    while sim.now() < limit
        && (app(&sim, alice).local_msg().is_none() || app(&sim, bob).local_msg().is_none())
    {
        sim.run_for(step);
    }
    let strip = |mut m: IceMsg| {
        if brk == Break::NoSrflx {
            m.candidates.retain(|c| c.typ != CandidateType::Srflx);
        }
        m
    };
    let offer = strip(app(&sim, alice).local_msg().expect("alice gathered"));
    let answer = strip(app(&sim, bob).local_msg().expect("bob gathered"));
    sim.with_app::<IceApp, _>(bob, 0, |a, cx| a.set_remote(cx, &offer));
    sim.run_for(ANSWER_DELAY);
    sim.with_app::<IceApp, _>(alice, 0, |a, cx| a.set_remote(cx, &answer));
    let done = |o: &Outcome| o.selected.is_some() || o.failed_at.is_some();
    let limit = netsim::SimTime::from_nanos(sim.now().as_nanos() + RUN_LIMIT.as_nanos() as u64);
    while sim.now() < limit && !(done(&app(&sim, alice).out) && done(&app(&sim, bob).out)) {
        sim.run_for(step);
    }
    let (oa, ob) = (app(&sim, alice).out.clone(), app(&sim, bob).out.clone());
    for (name, h) in [("alice", alice), ("bob", bob)] {
        let e = app(&sim, h).engine.as_ref().unwrap();
        assert!(e.listen_failed.is_empty(), "{cell} {name}: listen failed");
        assert_eq!(e.udp_dropped, 0, "{cell} {name}: UDP from a TCP-only agent");
        let s = e.agent.stats();
        assert_eq!(
            (
                s.bad_integrity,
                s.bad_username,
                s.bad_fingerprint,
                s.malformed
            ),
            (0, 0, 0, 0),
            "{cell} {name}: {s:?}"
        );
    }
    let host = |h: NodeId| SocketAddr::new(sim.host(h).unwrap().addrs[0], ICE_PORT);
    let (alice_host, bob_host) = (host(alice), host(bob));
    let (kind, setup_ms, data_ok) = match (&oa.selected, &ob.selected, ob.remote_at) {
        (Some(a), Some(b), Some(r)) => {
            // Application data both ways over the selected connection.
            for (h, msg) in [(alice, &b"from alice"[..]), (bob, &b"from bob"[..])] {
                sim.with_app::<IceApp, _>(h, 0, |a, cx| {
                    let e = a.engine.as_mut().unwrap();
                    if e.agent.send(msg).is_ok() {
                        a.pump(cx);
                    }
                });
            }
            sim.run_for(Duration::from_secs(2));
            let data_ok = app(&sim, alice).out.received == [b"from bob".to_vec()]
                && app(&sim, bob).out.received == [b"from alice".to_vec()];
            (
                truth(a, b, alice_host, bob_host),
                Some(a.at.max(b.at) - r),
                data_ok,
            )
        }
        _ => (Ok(TcpPath::None), None, false),
    };
    Run {
        oracle,
        oracle_own_so_port,
        alice: oa.selected.clone(),
        bob: ob.selected.clone(),
        kind,
        setup_ms,
        settled: done(&oa) && done(&ob),
        data_ok,
        trace_hash: sim.trace_hash(),
    }
}

fn tr(t: Transport) -> &'static str {
    match t {
        Transport::Udp => "udp",
        Transport::TcpActive => "active",
        Transport::TcpPassive => "passive",
        Transport::TcpSo => "so",
    }
}

fn show(p: &Option<Sel>) -> String {
    match p {
        Some(s) => format!(
            "{} {} -> {} {}{}",
            s.local.typ.as_str(),
            tr(s.local.transport),
            s.remote.typ.as_str(),
            tr(s.remote.transport),
            if s.accepted { " (accepted)" } else { "" }
        ),
        None => "-".into(),
    }
}

/// Why a run disagrees with the oracle, if it does.
fn disagreement(r: &Run) -> Option<String> {
    if !r.settled {
        return Some("did not settle within the limit".into());
    }
    match (r.oracle, &r.alice, &r.bob) {
        (TcpPath::None, None, None) => None,
        (TcpPath::None, _, _) => Some("selected a pair where the oracle has no path".into()),
        (_, Some(_), Some(_)) => match &r.kind {
            Err(e) => Some(e.clone()),
            // Where both a server-reflexive path and a simultaneous open exist, either
            // is right (the oracle ranks, the agent's priorities choose).
            Ok(k) if *k != r.oracle && *k != r.oracle_own_so_port => {
                Some(format!("path {k}, oracle {}", r.oracle))
            }
            Ok(_) if !r.data_ok => Some("no application data over the selected pair".into()),
            Ok(_) => None,
        },
        _ => Some("no pair (on one side at least) where the oracle has a path".into()),
    }
}

/// Runs every cell with every seed; returns one table line per cell and the
/// disagreements.
fn sweep(cells: &[Cell], brk: Break) -> (Vec<String>, Vec<(String, String)>) {
    let mut lines = Vec::new();
    let mut bad = Vec::new();
    for cell in cells {
        let runs: Vec<Run> = SEEDS.iter().map(|&s| run(cell, s, brk)).collect();
        let mut times = Vec::new();
        for (s, r) in SEEDS.iter().zip(&runs) {
            if let Some(why) = disagreement(r) {
                bad.push((
                    format!("{cell} seed {s}"),
                    format!("{why}; alice {}; bob {}", show(&r.alice), show(&r.bob)),
                ));
            }
            times.push(r.setup_ms.map_or("-".into(), |m| m.to_string()));
        }
        let kinds: BTreeSet<String> = runs
            .iter()
            .map(|r| r.kind.clone().map_or_else(|e| e, |k| k.to_string()))
            .collect();
        lines.push(format!(
            "| {cell} | {} | {} | {} | {} | {} | {} |",
            runs[0].oracle_own_so_port,
            runs[0].oracle,
            kinds.into_iter().collect::<Vec<_>>().join(","),
            show(&runs[0].alice),
            show(&runs[0].bob),
            times.join(" / ")
        ));
    }
    (lines, bad)
}

// ---- the tests -------------------------------------------------------------------------

#[test]
fn agents_connect_exactly_where_the_oracle_says() {
    let cells = matrix();
    let (lines, bad) = sweep(&cells, Break::None);
    println!("| cell (alice / bob) | tcp_path | oracle (S-O on listen port) | path found | alice selected (seed 1) | bob selected (seed 1) | set-up ms (seeds 1/2/3) |");
    println!("|---|---|---|---|---|---|---|");
    for l in &lines {
        println!("{l}");
    }
    let oracle_kinds: BTreeMap<String, usize> = cells
        .iter()
        .map(|c| run_oracle(c).to_string())
        .fold(BTreeMap::new(), |mut m, k| {
            *m.entry(k).or_default() += 1;
            m
        });
    println!("oracle kinds over the matrix: {oracle_kinds:?}");
    assert!(
        oracle_kinds.len() == 4,
        "the matrix covers host, srflx, so and none: {oracle_kinds:?}"
    );
    assert!(
        bad.is_empty(),
        "{} disagreements:\n{}",
        bad.len(),
        fmt_bad(&bad)
    );
}

fn run_oracle(cell: &Cell) -> TcpPath {
    let b = build(cell, 1, true);
    oracle::tcp_path_so_on_listen_port(&b.sim, b.alice, b.bob)
}

fn fmt_bad(bad: &[(String, String)]) -> String {
    bad.iter()
        .map(|(c, w)| format!("  {c}: {w}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn same_seed_same_run() {
    for cell in [
        Cell::Apart(
            Some(t("eim-apdf")),
            Some(t("eim-adf")),
            UnsolicitedSyn::Drop,
        ),
        Cell::Apart(
            Some(t("eim-eif")),
            Some(t("apdm-apdf")),
            UnsolicitedSyn::Drop,
        ),
    ] {
        let a = run(&cell, 7, Break::None);
        let b = run(&cell, 7, Break::None);
        assert_eq!(a, b, "{cell}");
        assert!(a.setup_ms.is_some(), "{cell}: {a:?}");
        // The comparison can fail: another seed gives another trace.
        assert_ne!(
            a.trace_hash,
            run(&cell, 8, Break::None).trace_hash,
            "{cell}"
        );
    }
}

/// Cells whose only direct path is the passive server-reflexive one.
fn srflx_only_cells() -> Vec<Cell> {
    matrix()
        .into_iter()
        .filter(|c| {
            let b = build(c, 1, true);
            let (pa, pb) = (
                oracle::placement(&b.sim, b.alice).chain,
                oracle::placement(&b.sim, b.bob).chain,
            );
            oracle::tcp_path_so_on_listen_port(&b.sim, b.alice, b.bob) == TcpPath::Srflx
                && !oracle::tcp_simultaneous_open(&pa, &pb)
        })
        .collect()
}

#[test]
fn without_srflx_candidates_the_cells_that_need_them_are_lost() {
    let cells = matrix();
    let (_, bad) = sweep(&cells, Break::NoSrflx);
    // Exactly the runs of the cells whose path needs a server-reflexive address fail,
    // each caught as "no pair".
    let need: BTreeSet<String> = cells
        .iter()
        .filter(|c| matches!(run_oracle(c), TcpPath::Srflx | TcpPath::SimultaneousOpen))
        .flat_map(|c| SEEDS.iter().map(move |s| format!("{c} seed {s}")))
        .collect();
    assert!(need.len() >= 3 * 20, "{need:?}");
    let caught: BTreeSet<String> = bad.iter().map(|(c, _)| c.clone()).collect();
    assert_eq!(caught, need, "{}", fmt_bad(&bad));
    assert!(
        bad.iter().all(|(_, w)| w.contains("no pair")),
        "{}",
        fmt_bad(&bad)
    );
}

#[test]
fn agents_without_so_candidates_match_tcp_path_without_simultaneous_open() {
    // The cells the S-O candidate adds (simultaneous opens, and passive srflx reached
    // once the listening port sent first) must all go, and nothing else.
    let cells = matrix();
    let (_, bad) = sweep(&cells, Break::NoSo);
    assert!(bad.is_empty(), "{}", fmt_bad(&bad));
    let gone = cells
        .iter()
        .filter(|c| {
            let b = build(c, 1, true);
            oracle::tcp_path_so_on_listen_port(&b.sim, b.alice, b.bob)
                != oracle::tcp_path(&b.sim, b.alice, b.bob)
        })
        .count();
    assert!(gone >= 10, "{gone}");
}

#[test]
fn nats_that_forget_tcp_mappings_make_agents_and_oracle_disagree() {
    let cells = srflx_only_cells();
    let (_, bad) = sweep(&cells, Break::ForgetfulNats);
    // Every run is caught: the boxes drop the STUN server's answers and the peer's
    // SYNs alike, while the oracle still reads RFC 5382 lifetimes off their config.
    assert_eq!(bad.len(), cells.len() * SEEDS.len(), "{}", fmt_bad(&bad));
    assert!(
        bad.iter().all(|(_, w)| w.contains("no pair")),
        "{}",
        fmt_bad(&bad)
    );
    // Sanity: the same cells agree with honest NATs.
    let (_, good) = sweep(&cells[..1], Break::None);
    assert!(good.is_empty(), "{}", fmt_bad(&good));
}

// ---- the glue on its own ---------------------------------------------------------------

/// A stream engine that echoes what it reads and records what happens, to check the
/// glue's mapping and failure paths without ICE.
#[derive(Default)]
struct Echo {
    cmds: std::collections::VecDeque<StreamCommand>,
    next: u64,
    accepted: Vec<(StreamId, SocketAddr)>,
    connected: Vec<StreamId>,
    data: BTreeMap<StreamId, Vec<u8>>,
    closed: Vec<StreamId>,
    listen_failed: Vec<SocketAddr>,
    echo: bool,
}

impl StreamEngine for Echo {
    fn handle_stream_accepted(
        &mut self,
        _: u64,
        local: SocketAddr,
        _remote: SocketAddr,
    ) -> StreamId {
        self.next += 1;
        let id = StreamId(1000 + self.next);
        self.accepted.push((id, local));
        id
    }
    fn handle_stream_connected(&mut self, _: u64, id: StreamId, _local: SocketAddr) {
        self.connected.push(id);
    }
    fn handle_stream_data(&mut self, _: u64, id: StreamId, bytes: &[u8]) {
        self.data.entry(id).or_default().extend_from_slice(bytes);
        if self.echo {
            self.cmds.push_back(StreamCommand::Write {
                id,
                bytes: bytes.to_vec(),
            });
        }
    }
    fn handle_stream_closed(&mut self, _: u64, id: StreamId) {
        self.closed.push(id);
    }
    fn handle_listen_failed(&mut self, _: u64, local: SocketAddr) {
        self.listen_failed.push(local);
    }
    fn poll_stream_command(&mut self) -> Option<StreamCommand> {
        self.cmds.pop_front()
    }
}

#[derive(Default)]
struct EchoApp {
    e: Echo,
    glue: StreamGlue,
}

impl EchoApp {
    fn cmd(&mut self, cx: &mut Ctx<'_>, c: StreamCommand) {
        self.e.cmds.push_back(c);
        self.glue.drain(cx, now_ms(cx), &mut self.e);
    }
}

impl App for EchoApp {
    fn on_tcp(&mut self, cx: &mut Ctx<'_>, ev: TcpEvent) {
        let now = now_ms(cx);
        self.glue.on_tcp(cx, now, &mut self.e, &ev);
    }
    netsim::app_any!();
}

#[test]
fn glue_moves_bytes_and_reports_failures() {
    let mut sim = Sim::new(SimConfig::default());
    let (up, down) = link("lan");
    let opts = || HostOpts {
        up: up.clone(),
        down: down.clone(),
        ..HostOpts::default()
    };
    let s = sim.add_host("server", opts());
    let c = sim.add_host("client", opts());
    for h in [s, c] {
        sim.add_app(h, || Box::<EchoApp>::default());
    }
    let ip = |h: NodeId| sim.host(h).unwrap().addrs[0];
    let (sip, cip) = (ip(s), ip(c));
    let at = SocketAddr::new(sip, 9000);
    let elsewhere = SocketAddr::new(IpAddr::from([203, 0, 113, 9]), 9000);
    sim.with_app::<EchoApp, _>(s, 0, |a, cx| {
        a.e.echo = true;
        a.cmd(cx, StreamCommand::Listen { local: at });
        a.cmd(cx, StreamCommand::Listen { local: at });
        a.cmd(cx, StreamCommand::Listen { local: elsewhere });
    });
    let srv = &app_echo(&sim, s).e;
    assert_eq!(srv.listen_failed, vec![at, elsewhere], "in use, not ours");
    // Connect (port 0: any) and write at once (the write waits for the connection),
    // get the echo.
    sim.with_app::<EchoApp, _>(c, 0, |a, cx| {
        a.cmd(
            cx,
            StreamCommand::Connect {
                id: StreamId(1),
                local: SocketAddr::new(cip, 0),
                remote: at,
            },
        );
        a.cmd(
            cx,
            StreamCommand::Write {
                id: StreamId(1),
                bytes: b"ping".to_vec(),
            },
        );
    });
    sim.run_for(Duration::from_millis(100));
    assert_eq!(app_echo(&sim, c).e.connected, vec![StreamId(1)]);
    let srv = &app_echo(&sim, s).e;
    assert_eq!(srv.accepted, vec![(StreamId(1001), at)]);
    assert_eq!(srv.data[&StreamId(1001)], b"ping");
    assert_eq!(app_echo(&sim, c).e.data[&StreamId(1)], b"ping");
    // Unlisten: the accepted stream lives on, a new connect is refused -> closed.
    sim.with_app::<EchoApp, _>(s, 0, |a, cx| {
        a.cmd(cx, StreamCommand::Unlisten { local: at })
    });
    sim.with_app::<EchoApp, _>(c, 0, |a, cx| {
        a.cmd(
            cx,
            StreamCommand::Connect {
                id: StreamId(2),
                local: SocketAddr::new(cip, 0),
                remote: at,
            },
        );
        a.cmd(
            cx,
            StreamCommand::Write {
                id: StreamId(1),
                bytes: b"again".to_vec(),
            },
        );
    });
    sim.run_for(Duration::from_millis(50));
    let cl = &app_echo(&sim, c).e;
    assert_eq!(cl.closed, vec![StreamId(2)]);
    assert_eq!(cl.data[&StreamId(1)], b"pingagain");
    // A connect from an address that is not ours fails at once.
    sim.with_app::<EchoApp, _>(c, 0, |a, cx| {
        a.cmd(
            cx,
            StreamCommand::Connect {
                id: StreamId(3),
                local: elsewhere,
                remote: at,
            },
        );
    });
    assert_eq!(app_echo(&sim, c).e.closed, vec![StreamId(2), StreamId(3)]);
    // The client closes: the server's engine sees its stream end, no event comes back
    // for the client's own close, and both sides' maps are empty.
    sim.with_app::<EchoApp, _>(c, 0, |a, cx| {
        a.cmd(cx, StreamCommand::Close { id: StreamId(1) })
    });
    sim.run_for(Duration::from_millis(50));
    assert_eq!(app_echo(&sim, s).e.closed, vec![StreamId(1001)]);
    assert_eq!(app_echo(&sim, c).e.closed, vec![StreamId(2), StreamId(3)]);
    assert_eq!(app_echo(&sim, s).glue.open_streams(), 0);
    assert_eq!(app_echo(&sim, c).glue.open_streams(), 0);
    assert_eq!(app_echo(&sim, c).glue.stats.unknown, 0);
}

fn app_echo(sim: &Sim, h: NodeId) -> &EchoApp {
    sim.app::<EchoApp>(h, 0).unwrap()
}
