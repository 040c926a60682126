//! The real-NAT lab (conformance::natlab): Linux nftables NATs of the kinds public, prc,
//! sym, fullcone, plus `lan` and `hairpin`, between two hosts, each in a namespace of
//! its own, with the official dhtnode and coturn (STUN; TURN in matrix 1t) on the lab internet.
//! TURN is off except in matrix 1t.
//!
//! 1. ours ↔ ours: A connects to B and a text crosses over SIP; asserted: connected
//!    exactly where the RFC 4787/5382 rules say a direct TCP path exists
//!    ([`Cell::direct_tcp`]).
//! 1t. the same with coturn as both devices' TURN server: asserted: every cell connects,
//!    through the relay exactly where no direct TCP path exists.
//! 2. ours → jamid: A connects to jamid's account, opens `sip`, and jamid gets the
//!    text (`incomingAccountMessage`); asserted: connected wherever jamid ↔ jamid does
//!    ([`Cell::jamid_reference`]: a public side, or one LAN).
//! 3. jamid → jamid (a subset): `sendTextMessage` A→B, connected when an ICE-TCP pair is
//!    logged and B gets the text; asserted: as the team's reference row.
//!
//! 2b and 3 run a subset in CI (each jamid cell restarts jamid); `NATLAB_FULL=1` runs
//! every cell (about half an hour more). To chase a flaky cell: `NATLAB_CELLS=prc×prc`
//! picks cells, `NATLAB_MATRICES=1,1t` picks matrices (of 1, 1t, 2, 2b, 3) and
//! `NATLAB_REPEAT=10` runs each picked cell of 1 and 1t that many times.
//!
//! Prints the three matrices and writes them to `target/natlab-matrices.md`.

use conformance::coturn::Coturn;
use conformance::dhtnode::DhtNode;
use conformance::jamid::{AccountSetup, Details, Jamid};
use conformance::natlab::{self, Cell, Kind, Lab, DHT_IP, STUN_IP};
use conformance::netns::Netns;
use conformance::ours::{self, connected, Cmd, Report, Spec};
use conformance::TempDir;
use node::connect::manager::{ConnectionEvent, ManagerConfig};
use node::device::jami::{JamiEvent, Via};
use node::dht::InfoHash;
use node::driver::unix_ms;
use node::identity::{AccountIdentity, DeviceIdentity};
use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const DHT_PORT: u16 = 4222;
/// A connection attempt's budget per cell (the reference lab's connections take ≤ 3 s).
const CONNECT: Duration = Duration::from_secs(20);
/// Joining the DHT and finding the peer's announcement.
const JOIN: Duration = Duration::from_secs(20);
/// jamid's first registration creates RSA keys and DH parameters (gotcha 4).
const REGISTER: Duration = Duration::from_secs(90);
const GRACE: Duration = Duration::from_secs(5);
/// coturn's one long-term user (realm `ring`).
const TURN_USER: &str = "jami";
const TURN_PASSWORD: &str = "jamipass";

fn boot() -> SocketAddr {
    SocketAddr::from((DHT_IP, DHT_PORT))
}

/// What a cell gave.
#[derive(Debug, Default, Clone)]
struct Outcome {
    connected: bool,
    pair: String,
    ms: u64,
    note: String,
}

impl Outcome {
    fn cell(&self) -> String {
        if self.connected {
            if self.note.is_empty() {
                format!("yes {} ms {}", self.ms, self.pair)
            } else {
                format!("yes {} ms {} ({})", self.ms, self.pair, self.note)
            }
        } else if self.note.is_empty() {
            "**no**".into()
        } else {
            format!("**no** ({})", self.note)
        }
    }
}

/// dhtnode, and coturn as a STUN server (no TURN user is ever configured on a peer).
struct Internet {
    _dht: DhtNode,
    stun: Option<Coturn>,
}

fn internet(lab: &Lab, with_stun: bool) -> anyhow::Result<Internet> {
    let dht = DhtNode::start(&lab.wan, DHT_PORT, None, false)?;
    let stun = if with_stun {
        Some(Coturn::start_at(
            &lab.wan,
            STUN_IP,
            TURN_USER,
            TURN_PASSWORD,
            "ring",
        )?)
    } else {
        None
    };
    Ok(Internet { _dht: dht, stun })
}

/// One of our devices in a host namespace; stopped and joined on drop.
struct Side {
    cmd: Sender<Cmd>,
    worker: Option<JoinHandle<Vec<String>>>,
    fwd: Option<JoinHandle<()>>,
}

impl Side {
    /// Run `spec` in `ns`, its reports tagged `index` into `tx`.
    fn start(ns: &Netns, index: usize, spec: Vec<Spec>, tx: Sender<Report>) -> Side {
        let (cmd, cmd_rx) = channel();
        let (itx, irx) = channel();
        let worker = ns.spawn(move || {
            ours::run_bound(
                spec,
                "0.0.0.0:0".parse().unwrap(),
                unix_ms(),
                boot(),
                cmd_rx,
                itx,
            )
        });
        let fwd = std::thread::spawn(move || {
            for r in irx {
                let r = match r {
                    Report::DhtUp(_) => Report::DhtUp(index),
                    Report::Online(_, a) => Report::Online(index, a),
                    Report::Jami(_, j) => Report::Jami(index, j),
                    Report::Dump(_, l) => Report::Dump(index, l),
                };
                if tx.send(r).is_err() {
                    break;
                }
            }
        });
        Side {
            cmd,
            worker: Some(worker),
            fwd: Some(fwd),
        }
    }
}

impl Drop for Side {
    fn drop(&mut self) {
        let _ = self.cmd.send(Cmd::Stop);
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
        if let Some(f) = self.fwd.take() {
            let _ = f.join();
        }
    }
}

fn spec(
    id: &(AccountIdentity, DeviceIdentity),
    host: IpAddr,
    stun: Option<SocketAddr>,
    seed: u64,
) -> Vec<Spec> {
    spec_turn(id, host, stun, None, seed)
}

/// Our device's TURN settings for the lab's coturn (jamid's TURN keys).
fn lab_turn(server: SocketAddr) -> node::connect::turn::ClientConfig {
    let keys = node::connect::turn::TurnAccountConfig {
        enable: true,
        server: server.to_string(),
        username: TURN_USER.into(),
        password: TURN_PASSWORD.into(),
        realm: "ring".into(),
    };
    let tcp = node::connect::turn::Transport::Tcp;
    node::connect::turn::ClientConfig::from_account(&keys, server, tcp, tcp, 0)
}

fn spec_turn(
    id: &(AccountIdentity, DeviceIdentity),
    host: IpAddr,
    stun: Option<SocketAddr>,
    turn: Option<SocketAddr>,
    seed: u64,
) -> Vec<Spec> {
    vec![Spec {
        account: id.0.clone(),
        device: id.1.clone(),
        manager: ManagerConfig {
            host_ips: vec![host],
            stun_server: stun,
            turn: turn.map(lab_turn),
            // Fresh per run: a restarted jamid ignores value ids it has handled before.
            seed: seed.wrapping_add(unix_ms()),
            ..ManagerConfig::default()
        },
    }]
}

/// Reads reports until `want` or `timeout` (quietly: the matrix is the output).
fn wait(rx: &Receiver<Report>, timeout: Duration, mut want: impl FnMut(&Report) -> bool) -> bool {
    let t0 = Instant::now();
    while let Some(left) = timeout.checked_sub(t0.elapsed()) {
        match rx.recv_timeout(left) {
            Ok(r) => {
                if want(&r) {
                    return true;
                }
            }
            Err(_) => break,
        }
    }
    false
}

/// A lookup failed: print each side's routing table and DHT searches (to stderr, so a
/// flaky cell explains itself in the test log; the matrix stays as it is).
fn dump_searches(rx: &Receiver<Report>, sides: &[&Sender<Cmd>], keys: &[InfoHash]) {
    eprintln!("looking up {}: the DHT state of each side", keys[0]);
    for (i, cmd) in sides.iter().enumerate() {
        // Each side runs one device, its index 0 inside the side.
        if cmd.send(Cmd::Dump(0, keys.to_vec())).is_err() {
            continue;
        }
        wait(rx, Duration::from_secs(2), |r| match r {
            Report::Dump(j, lines) if *j == i => {
                for l in lines {
                    eprintln!("  side {i}: {l}");
                }
                true
            }
            _ => false,
        });
    }
}

fn short_pair(full: &str) -> String {
    // "Host Tcp 1.2.3.4:5 <-> Prflx Tcp 6.7.8.9:10" -> "Host/Tcp-Prflx/Tcp"
    let w: Vec<&str> = full.split_whitespace().collect();
    if w.len() >= 7 {
        format!("{}/{}-{}/{}", w[0], w[1], w[4], w[5]).to_lowercase()
    } else {
        full.to_string()
    }
}

/// Matrix 1: A connects to B, then a text crosses (both with coturn as TURN: matrix 1t).
fn ours_ours(
    lab: &Lab,
    ids: &[(AccountIdentity, DeviceIdentity)],
    with_turn: bool,
) -> anyhow::Result<Outcome> {
    let net = internet(lab, true)?;
    let stun = net.stun.as_ref().map(|s| s.addr());
    let turn = stun.filter(|_| with_turn);
    let (tx, rx) = channel();
    let kb = InfoHash(ids[1].0.account_id());
    let a = Side::start(
        &lab.a,
        0,
        spec_turn(&ids[0], lab.a_ip.into(), stun, turn, 1),
        tx.clone(),
    );
    let _b = Side::start(
        &lab.b,
        1,
        spec_turn(&ids[1], lab.b_ip.into(), stun, turn, 2),
        tx,
    );
    let mut up = [false; 2];
    if !wait(&rx, JOIN, |r| {
        if let Report::DhtUp(i) = r {
            up[*i] = true;
        }
        up == [true, true]
    }) {
        return Ok(Outcome {
            note: "dht join".into(),
            ..Outcome::default()
        });
    }
    a.cmd.send(Cmd::Track(0, kb))?;
    if !wait(&rx, JOIN, |r| matches!(r, Report::Online(0, k) if *k == kb)) {
        let keys = [kb, InfoHash(ids[1].1.short_id())];
        dump_searches(&rx, &[&a.cmd, &_b.cmd], &keys);
        return Ok(Outcome {
            note: "B not found".into(),
            ..Outcome::default()
        });
    }
    a.cmd.send(Cmd::Connect(0, kb))?;
    let mut out = Outcome::default();
    let mut sip = false;
    let mut closed = 0;
    wait(&rx, CONNECT, |r| {
        if let Some((p, _, ms)) = connected(r, 0, &kb) {
            out.connected = true;
            out.pair = short_pair(&p);
            out.ms = ms;
        }
        match r {
            Report::Jami(0, JamiEvent::Connection(ConnectionEvent::ChannelOpened { name, .. })) => {
                sip |= name == "sip"
            }
            Report::Jami(0, JamiEvent::Connection(ConnectionEvent::Closed { .. })) => closed += 1,
            _ => {}
        }
        (out.connected && sip) || closed > 0
    });
    if !out.connected {
        if closed > 0 {
            out.note = "failed".into();
        }
        if with_turn {
            // With TURN every cell must connect: say what each side saw.
            let keys = [kb, InfoHash(ids[1].1.short_id())];
            dump_searches(&rx, &[&a.cmd, &_b.cmd], &keys);
        }
        return Ok(out);
    }
    a.cmd.send(Cmd::Msg(0, kb, "across the NATs".into()))?;
    let mut via = None;
    wait(&rx, Duration::from_secs(10), |r| match r {
        Report::Jami(1, JamiEvent::Message { body, via: v, .. }) if body == b"across the NATs" => {
            via = Some(*v);
            true
        }
        _ => false,
    });
    if via != Some(Via::Sip) {
        out.note = format!("text via {via:?}");
        out.connected = false;
    }
    Ok(out)
}

/// A jamid with a persistent home, restarted in each cell's namespace.
struct JamiHome {
    dir: TempDir,
    account: Option<String>,
    uri: String,
}

impl JamiHome {
    fn new(tag: &str) -> JamiHome {
        JamiHome {
            dir: TempDir::new(tag).expect("temp dir"),
            account: None,
            uri: String::new(),
        }
    }

    /// jamid in `ns`, its account registered and announced on this cell's dhtnode.
    fn start(&mut self, ns: &Netns) -> anyhow::Result<Jamid> {
        let j = Jamid::start_linked(ns, self.dir.path())?;
        let acc = match &self.account {
            Some(a) => a.clone(),
            None => {
                let a = j.create_account(&AccountSetup::new("natlab", boot()))?;
                self.uri = String::new();
                a
            }
        };
        j.wait_for_registration(&acc, REGISTER)?;
        j.wait_for_announced(&acc, REGISTER)?;
        if self.uri.is_empty() {
            self.uri = j.account_uri(&acc)?;
        }
        self.account = Some(acc);
        Ok(j)
    }
}

/// `incomingAccountMessage`: jamid 13.7 emits (account, from, id, payloads).
fn account_message(s: &conformance::jamid::Signal) -> (String, String, String, Details) {
    s.args().expect("incomingAccountMessage(s s s a{ss})")
}

/// Matrix 2: our A connects to jamid B, opens `sip`, and jamid gets a text.
fn ours_jamid(
    lab: &Lab,
    me: &(AccountIdentity, DeviceIdentity),
    home: &mut JamiHome,
) -> anyhow::Result<Outcome> {
    let _net = internet(lab, false)?;
    let jamid = home.start(&lab.b)?;
    let jk: InfoHash = home.uri.parse().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let uri_a = InfoHash(me.0.account_id()).to_string();
    let (tx, rx) = channel();
    let a = Side::start(&lab.a, 0, spec(me, lab.a_ip.into(), None, 3), tx);
    let res = (|| -> anyhow::Result<Outcome> {
        if !wait(&rx, JOIN, |r| matches!(r, Report::DhtUp(0))) {
            return Ok(Outcome {
                note: "dht join".into(),
                ..Outcome::default()
            });
        }
        a.cmd.send(Cmd::Track(0, jk))?;
        if !wait(&rx, JOIN, |r| matches!(r, Report::Online(0, k) if *k == jk)) {
            return Ok(Outcome {
                note: "jamid not found".into(),
                ..Outcome::default()
            });
        }
        // jamid must find our announcement and certificate too.
        std::thread::sleep(Duration::from_secs(1));
        a.cmd.send(Cmd::Connect(0, jk))?;
        let mut out = Outcome::default();
        let mut sip = false;
        let mut closed = 0;
        wait(&rx, CONNECT, |r| {
            if let Some((p, _, ms)) = connected(r, 0, &jk) {
                out.connected = true;
                out.pair = short_pair(&p);
                out.ms = ms;
            }
            match r {
                Report::Jami(
                    0,
                    JamiEvent::Connection(ConnectionEvent::ChannelOpened { name, .. }),
                ) => sip |= name == "sip",
                Report::Jami(0, JamiEvent::Connection(ConnectionEvent::Closed { .. })) => {
                    closed += 1
                }
                _ => {}
            }
            (out.connected && sip) || closed > 0
        });
        if !out.connected || !sip {
            out.connected = false;
            if closed > 0 {
                out.note = "failed".into();
            }
            return Ok(out);
        }
        let mark = jamid.signals().mark();
        a.cmd
            .send(Cmd::Msg(0, jk, "hello jamid through NAT".into()))?;
        let got = jamid.signals().wait(
            "incomingAccountMessage",
            mark,
            Duration::from_secs(10),
            |s| account_message(s).1 == uri_a,
        );
        let mut via = None;
        wait(&rx, Duration::from_secs(10), |r| match r {
            Report::Jami(0, JamiEvent::Delivered { via: v, .. }) => {
                via = Some(*v);
                true
            }
            _ => false,
        });
        if got.is_err() || via != Some(Via::Sip) {
            out.note = format!("text: jamid got it {}, via {via:?}", got.is_ok());
            out.connected = false;
        }
        Ok(out)
    })();
    drop(a);
    jamid.stop(GRACE);
    res
}

/// Matrix 2b: jamid B sends a text to our A (`sendTextMessage`): jamid connects to us,
/// and the text arrives over SIP (without a connection it comes through the DHT).
fn jamid_ours(
    lab: &Lab,
    me: &(AccountIdentity, DeviceIdentity),
    home: &mut JamiHome,
) -> anyhow::Result<Outcome> {
    let _net = internet(lab, false)?;
    let jamid = home.start(&lab.b)?;
    let jk: InfoHash = home.uri.parse().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let uri_a = InfoHash(me.0.account_id()).to_string();
    let (tx, rx) = channel();
    let a = Side::start(&lab.a, 0, spec(me, lab.a_ip.into(), None, 4), tx);
    let res = (|| -> anyhow::Result<Outcome> {
        if !wait(&rx, JOIN, |r| matches!(r, Report::DhtUp(0))) {
            return Ok(Outcome {
                note: "dht join".into(),
                ..Outcome::default()
            });
        }
        a.cmd.send(Cmd::Track(0, jk))?;
        if !wait(&rx, JOIN, |r| matches!(r, Report::Online(0, k) if *k == jk)) {
            return Ok(Outcome {
                note: "jamid not found".into(),
                ..Outcome::default()
            });
        }
        std::thread::sleep(Duration::from_secs(1));
        let _id: u64 = jamid.call(
            "ConfigurationManager",
            "sendTextMessage",
            &(
                home.account.as_ref().unwrap(),
                &uri_a,
                Details::from([("text/plain".to_string(), "jamid to ours".to_string())]),
            ),
        )?;
        // jamid sends through the DHT at once and asks for a connection; the first copy
        // to arrive is the one our device reports, so the channel is what counts here:
        // jamid connected to us and opened `sip` (as in jamid_connect.rs).
        let mut out = Outcome::default();
        let (mut via, mut sip) = (None, false);
        wait(&rx, CONNECT, |r| {
            if let Some((p, _, ms)) = connected(r, 0, &jk) {
                out.connected = true;
                out.pair = short_pair(&p);
                out.ms = ms;
            }
            match r {
                Report::Jami(0, JamiEvent::Message { body, via: v, .. })
                    if body == b"jamid to ours" =>
                {
                    via = Some(*v)
                }
                Report::Jami(
                    0,
                    JamiEvent::Connection(ConnectionEvent::ChannelRequested { name, .. }),
                ) => sip |= name == "sip",
                _ => {}
            }
            out.connected && sip && via.is_some()
        });
        if !sip || via.is_none() {
            out.connected = false;
        }
        out.note = format!("text via {}", via.map_or("-".into(), |v| v.to_string()));
        Ok(out)
    })();
    drop(a);
    jamid.stop(GRACE);
    res
}

/// The first ICE-TCP pair jamid logged since byte `from` of its log ("local [type] <->
/// remote [type]" after "TCP connection pairs"), as "ltype-rtype".
fn jamid_tcp_pair(log: &str) -> Option<String> {
    let mut lines = log.lines();
    while let Some(l) = lines.next() {
        if l.contains("TCP connection pairs") {
            let p = lines.next()?;
            let types: Vec<&str> = p
                .split('[')
                .skip(2)
                .filter_map(|s| s.split(']').next())
                .collect();
            return Some(types.join("-"));
        }
    }
    None
}

/// Matrix 3: jamid A sends a text to jamid B; connected when an ICE-TCP pair is logged
/// and B's incomingAccountMessage comes.
fn jamid_jamid(lab: &Lab, ha: &mut JamiHome, hb: &mut JamiHome) -> anyhow::Result<Outcome> {
    let _net = internet(lab, false)?;
    let ja = ha.start(&lab.a)?;
    let jb = hb.start(&lab.b)?;
    let (la, lb) = (ja.log_text().len(), jb.log_text().len());
    let mark = jb.signals().mark();
    let t0 = Instant::now();
    let _id: u64 = ja.call(
        "ConfigurationManager",
        "sendTextMessage",
        &(
            ha.account.as_ref().unwrap(),
            &hb.uri,
            Details::from([("text/plain".to_string(), "jamid to jamid".to_string())]),
        ),
    )?;
    let got = jb
        .signals()
        .wait("incomingAccountMessage", mark, CONNECT, |s| {
            account_message(s).1 == ha.uri
        });
    // The DHT fallback delivers without a connection: wait for ICE's verdict too.
    let mut pair = None;
    while t0.elapsed() < CONNECT && pair.is_none() {
        let (ta, tb) = (ja.log_text(), jb.log_text());
        pair = jamid_tcp_pair(&tb[lb.min(tb.len())..])
            .or_else(|| jamid_tcp_pair(&ta[la.min(ta.len())..]));
        let failed = [&ta[la.min(ta.len())..], &tb[lb.min(tb.len())..]]
            .iter()
            .any(|t| t.contains("TCP negotiation failed") || t.contains("start ICE failed"));
        if failed {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = Outcome {
        connected: pair.is_some() && got.is_ok(),
        pair: pair.clone().unwrap_or_default(),
        ms: t0.elapsed().as_millis() as u64,
        note: if got.is_ok() {
            String::new()
        } else {
            "no text".into()
        },
    };
    Jamid::stop_all(vec![ja, jb], GRACE);
    Ok(out)
}

/// A matrix as Markdown: A's NAT in rows, B's in columns, then lan and hairpin.
fn table(title: &str, rows: &[(Cell, Outcome, bool)]) -> String {
    let mut s = format!(
        "### {title}\n\n| A \\ B | public | prc | sym | fullcone |\n|---|---|---|---|---|\n"
    );
    for a in Kind::ALL {
        s += &format!("| {} |", a.name());
        for b in Kind::ALL {
            let c = rows.iter().find(|(c, ..)| *c == Cell::Pair(a, b));
            s += &format!(
                " {} |",
                c.map(|(_, o, e)| mark(o, *e))
                    .unwrap_or_else(|| "not run".into())
            );
        }
        s += "\n";
    }
    s += "\n| both behind one NAT | result |\n|---|---|\n";
    for c in [Cell::Lan, Cell::Hairpin] {
        let r = rows.iter().find(|(x, ..)| *x == c);
        s += &format!(
            "| {} | {} |\n",
            c.name(),
            r.map(|(_, o, e)| mark(o, *e))
                .unwrap_or_else(|| "not run".into())
        );
    }
    s
}

fn mark(o: &Outcome, expected: bool) -> String {
    let ok = o.connected == expected;
    format!(
        "{}{}",
        o.cell(),
        if ok { "" } else { " ⚠ expected the opposite" }
    )
}

/// One cell: its lab built, `run` in it (an error is the cell's note), and the packets
/// its guard dropped added to `drops`.
fn in_lab(c: Cell, drops: &mut u64, run: impl FnOnce(&Lab) -> anyhow::Result<Outcome>) -> Outcome {
    let lab = Lab::build(c).expect("lab");
    let o = run(&lab).unwrap_or_else(|e| Outcome {
        note: format!("error: {e:#}"),
        ..Outcome::default()
    });
    *drops += lab.guard_drops();
    o
}

/// Cells to run: all, or the comma-separated names in `NATLAB_CELLS` (e.g. `prc×prc,lan`).
fn cells(filter: Option<&str>) -> Vec<Cell> {
    Cell::all()
        .into_iter()
        .filter(|c| {
            filter.is_none_or(|f| {
                f.split(',')
                    .any(|n| n.trim() == c.name().replace('×', "x") || n.trim() == c.name())
            })
        })
        .collect()
}

#[test]
fn real_nat_lab_matrices() {
    if !natlab::natlab_or_skip() || !conformance::jamid_or_skip() || !conformance::coturn_or_skip()
    {
        return;
    }
    let _serial = conformance::jamid::one_at_a_time();
    let t_all = Instant::now();
    let filter = std::env::var("NATLAB_CELLS").ok();
    let run = cells(filter.as_deref());
    let matrices = std::env::var("NATLAB_MATRICES").ok();
    let want = |m: &str| {
        matrices
            .as_deref()
            .is_none_or(|s| s.split(',').any(|x| x.trim() == m))
    };
    let repeat: usize = std::env::var("NATLAB_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let run_ours: Vec<Cell> = run
        .iter()
        .flat_map(|&c| std::iter::repeat_n(c, repeat))
        .collect();
    let ours_ids = ours::identities(2, 4787);
    let mut report = String::from(
        "## Real-NAT lab (conformance/tests/natlab.rs)\n\nLinux nftables NATs in network namespaces; \
         official dhtnode 203.0.113.1, coturn 203.0.113.2 (STUN; TURN only in matrix 1t). \
         cell = connected (yes/no), set-up ms, selected ICE-TCP pair (local-remote).\n\n",
    );
    let mut bad = Vec::new();
    let mut drops = 0;

    // 1. ours <-> ours
    let mut m1 = Vec::new();
    for &c in run_ours.iter().filter(|_| want("1")) {
        let o = in_lab(c, &mut drops, |lab| ours_ours(lab, &ours_ids, false));
        eprintln!("ours↔ours {}: {}", c.name(), o.cell());
        if o.connected != c.direct_tcp() {
            bad.push(format!(
                "ours↔ours {}: {} (expected {})",
                c.name(),
                o.cell(),
                c.direct_tcp()
            ));
        }
        m1.push((c, o, c.direct_tcp()));
    }
    report += &table("1. ours ↔ ours (A connects to B; STUN on, TURN off)", &m1);

    // 1t. ours <-> ours with coturn as TURN: every cell, relayed only without a direct path
    let mut m1t = Vec::new();
    for &c in run_ours.iter().filter(|_| want("1t")) {
        let o = in_lab(c, &mut drops, |lab| ours_ours(lab, &ours_ids, true));
        eprintln!("ours↔ours with TURN {}: {}", c.name(), o.cell());
        let relayed = o.pair.contains("relay");
        if !o.connected || relayed == c.direct_tcp() {
            bad.push(format!(
                "ours↔ours with TURN {}: {} (expected {})",
                c.name(),
                o.cell(),
                if c.direct_tcp() { "direct" } else { "relay" }
            ));
        }
        m1t.push((c, o, true));
    }
    report += "\n";
    report += &table(
        "1t. ours ↔ ours with TURN (coturn, RFC 6062 TCP allocations; relayed only where no direct path)",
        &m1t,
    );

    // 2. ours -> jamid
    let mut home = JamiHome::new("natlab-jamid-b");
    let me = ours::identities(1, 5382).pop().unwrap();
    let mut m2 = Vec::new();
    for &c in run.iter().filter(|_| want("2")) {
        let lab = Lab::build(c).expect("lab");
        let o = ours_jamid(&lab, &me, &mut home).unwrap_or_else(|e| Outcome {
            note: format!("error: {e:#}"),
            ..Outcome::default()
        });
        drops += lab.guard_drops();
        eprintln!("ours→jamid {}: {}", c.name(), o.cell());
        if c.jamid_reference() && !o.connected {
            bad.push(format!(
                "ours→jamid {}: {} (jamid↔jamid connects here)",
                c.name(),
                o.cell()
            ));
        }
        m2.push((c, o, c.jamid_reference()));
    }
    report += "\n";
    report += &table("2. ours (A) → jamid (B) (no STUN, TURN off)", &m2);

    // 2b. jamid -> ours, a subset
    let subset_b = [
        Cell::Pair(Kind::Prc, Kind::Public),
        Cell::Pair(Kind::Public, Kind::Prc),
        Cell::Pair(Kind::Prc, Kind::Prc),
        Cell::Lan,
    ];
    // NATLAB_FULL=1 (the nightly profile) runs every cell of 2b and 3 too.
    let full = std::env::var("NATLAB_FULL").is_ok_and(|v| v == "1");
    let pick = |subset: &[Cell]| -> Vec<Cell> {
        run.iter()
            .copied()
            .filter(|c| full || subset.contains(c))
            .collect()
    };
    let mut m2b = Vec::new();
    for c in pick(&subset_b).into_iter().filter(|_| want("2b")) {
        let lab = Lab::build(c).expect("lab");
        let o = jamid_ours(&lab, &me, &mut home).unwrap_or_else(|e| Outcome {
            note: format!("error: {e:#}"),
            ..Outcome::default()
        });
        drops += lab.guard_drops();
        eprintln!("jamid→ours {}: {}", c.name(), o.cell());
        if c.jamid_reference() && !o.connected {
            bad.push(format!(
                "jamid→ours {}: {} (jamid↔jamid connects here)",
                c.name(),
                o.cell()
            ));
        }
        m2b.push((c, o, c.jamid_reference()));
    }
    report += "\n";
    let scope = if full { "every cell" } else { "subset" };
    report += &table(
        &format!("2b. jamid (B) → ours (A) ({scope}; no STUN, TURN off)"),
        &m2b,
    );

    // 3. jamid -> jamid, a subset (each cell restarts two jamids)
    let subset = [
        Cell::Pair(Kind::Public, Kind::Prc),
        Cell::Pair(Kind::Prc, Kind::Public),
        Cell::Pair(Kind::Prc, Kind::Prc),
        Cell::Pair(Kind::Fullcone, Kind::Fullcone),
        Cell::Lan,
    ];
    let mut ha = JamiHome::new("natlab-jamid-a");
    let mut m3 = Vec::new();
    for c in pick(&subset).into_iter().filter(|_| want("3")) {
        let lab = Lab::build(c).expect("lab");
        let o = jamid_jamid(&lab, &mut ha, &mut home).unwrap_or_else(|e| Outcome {
            note: format!("error: {e:#}"),
            ..Outcome::default()
        });
        drops += lab.guard_drops();
        eprintln!("jamid→jamid {}: {}", c.name(), o.cell());
        if o.connected != c.jamid_reference() {
            bad.push(format!(
                "jamid→jamid {}: {} (reference {})",
                c.name(),
                o.cell(),
                c.jamid_reference()
            ));
        }
        m3.push((c, o, c.jamid_reference()));
    }
    report += "\n";
    report += &table(
        &format!("3. jamid (A) → jamid (B) ({scope}; TURN off)"),
        &m3,
    );
    report += &format!(
        "\nGuard drops (packets to non-lab addresses): {drops}. Whole run: {:.0} s.\n",
        t_all.elapsed().as_secs_f64()
    );
    println!("{report}");
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let _ = std::fs::create_dir_all(&target);
    let _ = std::fs::write(target.join("natlab-matrices.md"), &report);
    assert_eq!(drops, 0, "something addressed a non-lab destination");
    assert!(
        bad.is_empty(),
        "cells against expectation:\n{}\n\n{report}",
        bad.join("\n")
    );
}

/// A UDP socket bound to `addr` inside `ns` (a socket stays in the namespace it was
/// created in, whichever thread uses it).
fn udp_in(ns: &Netns, addr: &str) -> std::net::UdpSocket {
    let addr: SocketAddr = addr.parse().unwrap();
    let s = ns
        .spawn(move || std::net::UdpSocket::bind(addr))
        .join()
        .unwrap()
        .expect("bind");
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    s
}

/// The routers are the NATs they are named after (RFC 4787 mapping and filtering, probed
/// with UDP from host A), and the guard drops what is addressed outside the lab.
#[test]
fn lab_nats_map_and_filter_as_named() {
    if !natlab::natlab_or_skip() {
        return;
    }
    let _serial = conformance::jamid::one_at_a_time();
    for kind in [Kind::Public, Kind::Prc, Kind::Sym, Kind::Fullcone] {
        let lab = Lab::build(Cell::Pair(kind, Kind::Public)).expect("lab");
        let host = udp_in(&lab.a, "0.0.0.0:40000");
        let r1 = udp_in(&lab.wan, &format!("{DHT_IP}:5000"));
        let r2 = udp_in(&lab.wan, &format!("{DHT_IP}:5001"));
        let other = udp_in(&lab.wan, &format!("{STUN_IP}:6000"));
        let mut buf = [0u8; 64];
        host.send_to(b"one", r1.local_addr().unwrap()).unwrap();
        let (_, m1) = r1.recv_from(&mut buf).expect("first probe arrives");
        host.send_to(b"two", r2.local_addr().unwrap()).unwrap();
        let (_, m2) = r2.recv_from(&mut buf).expect("second probe arrives");
        let eim = m1 == m2;
        // An unsolicited packet from another address and port to the mapping.
        other.send_to(b"in", m1).unwrap();
        let eif = host.recv_from(&mut buf).is_ok();
        eprintln!(
            "{}: mapped {m1} then {m2}; EIM {eim}, EIF {eif}",
            kind.name()
        );
        let want = match kind {
            Kind::Public => (true, true),
            Kind::Prc => (true, false),
            Kind::Sym => (false, false),
            Kind::Fullcone => (true, true),
        };
        assert_eq!((eim, eif), want, "{} maps/filters as named", kind.name());
        if kind == Kind::Public {
            assert_eq!(m1.ip(), lab.a_ip, "no NAT");
        } else {
            assert_eq!(
                m1.ip().to_string(),
                "203.0.113.10",
                "NATed to the router's address"
            );
        }
        // Outside the lab (198.18.0.0/15, the benchmarking range): dropped and counted.
        assert_eq!(lab.guard_drops(), 0);
        let _ = host.send_to(b"out", "198.18.0.1:9");
        assert!(
            lab.guard_drops() >= 1,
            "the guard drops and counts non-lab destinations"
        );
    }
    // Hairpin: B reaches A only through the router's public address.
    let lab = Lab::build(Cell::Hairpin).expect("lab");
    let a = udp_in(&lab.a, "0.0.0.0:40001");
    let b = udp_in(&lab.b, "0.0.0.0:40002");
    let r = udp_in(&lab.wan, &format!("{DHT_IP}:5002"));
    let mut buf = [0u8; 64];
    a.send_to(b"map", r.local_addr().unwrap()).unwrap();
    let (_, ma) = r.recv_from(&mut buf).expect("probe arrives");
    b.send_to(b"direct", SocketAddr::from((lab.a_ip, 40001)))
        .unwrap();
    assert!(
        a.recv_from(&mut buf).is_err(),
        "the LAN ports do not route to each other"
    );
    b.send_to(b"hairpin", ma).unwrap();
    let (n, from) = a.recv_from(&mut buf).expect("hairpinned packet arrives");
    assert_eq!(&buf[..n], b"hairpin");
    assert_eq!(
        from.ip().to_string(),
        "203.0.113.10",
        "hairpinned from the public address"
    );
}
