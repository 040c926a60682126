//! Two ICE agents wired through a small network model written here: addresses, fixed
//! latency, optional NAT (endpoint-independent mapping, optional address-restricted
//! filtering), a STUN server, a relayed address handed to one agent (standing in for a
//! TURN allocation), and TCP connect semantics including simultaneous open. Every test
//! asserts the selected pair (types and transports) or the failure, and the model-break
//! tests show the expectation fails when a candidate type is withheld.

use node::connect::ice::{Agent, Command, Config, ConnId, Event, IceMsg, Path, Timing, Transmit};
use node::connect::ice::{CandidateType as T, Transport as Tr};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use stun::{Attribute, Class, Message};

const LAT: u64 = 10;
const STUN: &str = "198.51.100.1:3478";

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[derive(Default)]
struct Nat {
    public: Option<IpAddr>,
    filtering: bool,
    map: BTreeMap<SocketAddr, u16>,
    rev: BTreeMap<u16, SocketAddr>,
    perms: BTreeSet<(SocketAddr, IpAddr)>,
}

impl Nat {
    fn out(&mut self, private: SocketAddr, remote: SocketAddr) -> SocketAddr {
        let next = 20000 + self.map.len() as u16;
        let port = *self.map.entry(private).or_insert(next);
        self.rev.insert(port, private);
        self.perms.insert((private, remote.ip()));
        SocketAddr::new(self.public.unwrap(), port)
    }
    fn inbound(&self, port: u16, from: SocketAddr) -> Option<SocketAddr> {
        let private = *self.rev.get(&port)?;
        (!self.filtering || self.perms.contains(&(private, from.ip()))).then_some(private)
    }
}

type Filter = Box<dyn Fn(&mut IceMsg)>;

struct Side {
    agent: Agent,
    nat: Option<Nat>,
    hosts: BTreeSet<IpAddr>,
    relay: Option<SocketAddr>,
    filter: Filter,
    events: Vec<(u64, Event)>,
    recv: Vec<Vec<u8>>,
    listeners: BTreeSet<SocketAddr>,
    pending: BTreeMap<ConnId, (SocketAddr, SocketAddr)>,
    /// (local, remote) of the connections accepted, as the kernel's 4-tuples.
    accepted: BTreeSet<(SocketAddr, SocketAddr)>,
    next_port: u16,
    gathered: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum End {
    Agent(usize, ConnId),
    Stun(SocketAddr),
}

#[derive(Debug)]
enum Ev {
    Udp {
        src: SocketAddr,
        dst: SocketAddr,
        bytes: Vec<u8>,
    },
    Syn {
        from: usize,
        conn: ConnId,
        local: SocketAddr,
        src: SocketAddr,
        dst: SocketAddr,
    },
    Connected(usize, ConnId),
    Data(End, Vec<u8>),
    Closed(usize, ConnId),
    /// The peer's ice_msg reaching a side late.
    SetRemote(usize, IceMsg),
}

struct Net {
    now: u64,
    sides: Vec<Side>,
    queue: BTreeMap<(u64, u64), Ev>,
    seq: u64,
    links: BTreeMap<(usize, ConnId), End>,
    stun_bufs: BTreeMap<SocketAddr, (usize, ConnId, Vec<u8>)>,
    block_direct: bool,
    exchanged: bool,
    transcript: Vec<String>,
    /// This side gets the peer's ice_msg this many ms after the other one.
    late_remote: Option<(usize, u64)>,
    /// When a connect whose 4-tuple an accepted connection already holds is reported
    /// failed (a real kernel refuses it in `connect`, EADDRNOTAVAIL; a driver reports it
    /// with some delay).
    refuse_delay: u64,
    /// A relayed address refuses dials before this time (its TURN client has no
    /// permission for the dialler yet).
    relay_refuses_until: u64,
}

struct Spec {
    seed: u64,
    controlling: bool,
    ip: &'static str,
    udp: bool,
    tcp: bool,
    so: bool,
    nat: Option<(&'static str, bool)>,
    stun: bool,
    relay: Option<&'static str>,
    /// A second UDP socket on an address the network does not route to.
    dead_udp: Option<&'static str>,
    /// Public IP known from elsewhere (jamid: reported by the DHT).
    public_ip: Option<&'static str>,
    filter: Filter,
}

impl Spec {
    fn new(seed: u64, controlling: bool, ip: &'static str) -> Spec {
        Spec {
            seed,
            controlling,
            ip,
            udp: true,
            tcp: false,
            so: false,
            nat: None,
            stun: false,
            relay: None,
            dead_udp: None,
            public_ip: None,
            filter: Box::new(|_| {}),
        }
    }
    fn tcp_only(mut self) -> Self {
        (self.udp, self.tcp) = (false, true);
        self
    }
}

impl Net {
    fn new(specs: [Spec; 2]) -> Net {
        let sides = specs
            .into_iter()
            .map(|s| {
                let ip: IpAddr = s.ip.parse().unwrap();
                let cfg = Config {
                    seed: s.seed,
                    controlling: s.controlling,
                    udp_sockets: if s.udp {
                        vec![SocketAddr::new(ip, 5000)]
                    } else {
                        vec![]
                    }
                    .into_iter()
                    .chain(s.dead_udp.map(sa))
                    .collect(),
                    tcp_listen: if s.tcp {
                        vec![SocketAddr::new(ip, 6000)]
                    } else {
                        vec![]
                    },
                    tcp_so: s.so,
                    stun_server: s.stun.then(|| sa(STUN)),
                    public_ip: s.public_ip.map(|p| p.parse().unwrap()),
                    timing: Timing::default(),
                };
                let mut agent = Agent::new(cfg, 0);
                if let Some(r) = s.relay {
                    // A TURN allocation; over TCP (RFC 6062) the relayed address accepts
                    // connections that the TURN client hands in as accepted ones.
                    agent.add_relay_candidate(sa(r), if s.tcp { Tr::TcpPassive } else { Tr::Udp });
                }
                Side {
                    agent,
                    nat: s.nat.map(|(p, filtering)| Nat {
                        public: Some(p.parse().unwrap()),
                        filtering,
                        ..Nat::default()
                    }),
                    hosts: [ip].into(),
                    relay: s.relay.map(sa),
                    filter: s.filter,
                    events: vec![],
                    recv: vec![],
                    listeners: BTreeSet::new(),
                    pending: BTreeMap::new(),
                    accepted: BTreeSet::new(),
                    next_port: 40000,
                    gathered: false,
                }
            })
            .collect();
        Net {
            now: 0,
            sides,
            queue: BTreeMap::new(),
            seq: 0,
            links: BTreeMap::new(),
            stun_bufs: BTreeMap::new(),
            block_direct: false,
            exchanged: false,
            transcript: vec![],
            late_remote: None,
            refuse_delay: 0,
            relay_refuses_until: 0,
        }
    }

    fn at(&mut self, delay: u64, ev: Ev) {
        self.seq += 1;
        self.queue.insert((self.now + delay, self.seq), ev);
    }

    fn is_relay(&self, a: SocketAddr) -> bool {
        self.sides.iter().any(|s| s.relay == Some(a))
    }

    /// Which side and local address a packet to `dst` from `src` reaches, if any.
    fn route(&mut self, src: SocketAddr, dst: SocketAddr) -> Option<(usize, SocketAddr)> {
        if self.block_direct && !self.is_relay(src) && !self.is_relay(dst) {
            return None;
        }
        for (j, s) in self.sides.iter().enumerate() {
            if s.relay == Some(dst) {
                return Some((j, dst));
            }
            match &s.nat {
                Some(n) if n.public == Some(dst.ip()) => {
                    return n.inbound(dst.port(), src).map(|p| (j, p))
                }
                None if s.hosts.contains(&dst.ip()) => return Some((j, dst)),
                _ => {}
            }
        }
        None
    }

    /// Source address as seen outside side `i`.
    fn outward(&mut self, i: usize, local: SocketAddr, remote: SocketAddr) -> SocketAddr {
        let s = &mut self.sides[i];
        if s.relay == Some(local) {
            return local;
        }
        match &mut s.nat {
            Some(n) => n.out(local, remote),
            None => local,
        }
    }

    fn drain(&mut self) {
        for i in 0..self.sides.len() {
            while let Some(t) = self.sides[i].agent.poll_transmit() {
                self.transcript.push(format!("{} {i} {t:?}", self.now));
                match t {
                    Transmit::Udp {
                        local,
                        remote,
                        payload,
                    } => {
                        let src = self.outward(i, local, remote);
                        self.at(
                            LAT,
                            Ev::Udp {
                                src,
                                dst: remote,
                                bytes: payload,
                            },
                        );
                    }
                    Transmit::Tcp { conn, payload } => {
                        if let Some(peer) = self.links.get(&(i, conn)).copied() {
                            self.at(LAT, Ev::Data(peer, payload));
                        }
                    }
                }
            }
            while let Some(c) = self.sides[i].agent.poll_command() {
                self.transcript.push(format!("{} {i} {c:?}", self.now));
                self.command(i, c);
            }
            while let Some(e) = self.sides[i].agent.poll_event() {
                self.transcript.push(format!("{} {i} {e:?}", self.now));
                if e == Event::GatheringDone {
                    self.sides[i].gathered = true;
                }
                self.sides[i].events.push((self.now, e));
            }
            while let Some(d) = self.sides[i].agent.poll_recv() {
                self.sides[i].recv.push(d);
            }
        }
        if !self.exchanged && self.sides.iter().all(|s| s.gathered) {
            // The requester (side 0) sends its ice_msg; the answerer (side 1) replies.
            self.exchanged = true;
            let msgs: Vec<IceMsg> = self
                .sides
                .iter()
                .map(|s| {
                    let mut m = IceMsg::parse(&s.agent.local_ice_msg().to_string()).unwrap();
                    (s.filter)(&mut m);
                    m
                })
                .collect();
            let now = self.now;
            for (i, msg) in [(1, &msgs[0]), (0, &msgs[1])] {
                match self.late_remote {
                    Some((late, delay)) if late == i => {
                        self.at(delay, Ev::SetRemote(i, msg.clone()))
                    }
                    _ => self.sides[i].agent.set_remote(now, msg),
                }
            }
            self.drain();
        }
    }

    fn command(&mut self, i: usize, c: Command) {
        match c {
            Command::Listen { local } => {
                self.sides[i].listeners.insert(local);
            }
            Command::Connect {
                conn,
                mut local,
                remote,
            } => {
                if local.port() == 0 {
                    local.set_port(self.sides[i].next_port);
                    self.sides[i].next_port += 1;
                }
                if self.sides[i].accepted.contains(&(local, remote)) {
                    return self.at(self.refuse_delay, Ev::Closed(i, conn));
                }
                let src = self.outward(i, local, remote);
                self.sides[i].pending.insert(conn, (local, remote));
                self.at(
                    LAT,
                    Ev::Syn {
                        from: i,
                        conn,
                        local,
                        src,
                        dst: remote,
                    },
                );
            }
            Command::Close { conn } => {
                self.sides[i].pending.remove(&conn);
                if let Some(End::Agent(j, c)) = self.links.remove(&(i, conn)) {
                    self.links.remove(&(j, c));
                    self.at(LAT, Ev::Closed(j, c));
                }
            }
        }
    }

    fn deliver(&mut self, ev: Ev) {
        let now = self.now;
        match ev {
            Ev::Udp { src, dst, bytes } if dst == sa(STUN) => {
                let req = Message::decode(&bytes).unwrap();
                let resp = req
                    .reply(Class::SuccessResponse)
                    .with(Attribute::XorMappedAddress(src))
                    .encode_with(None, true);
                self.at(
                    LAT,
                    Ev::Udp {
                        src: dst,
                        dst: src,
                        bytes: resp,
                    },
                );
            }
            Ev::Udp { src, dst, bytes } => {
                if let Some((j, local)) = self.route(src, dst) {
                    self.sides[j].agent.handle_datagram(now, local, src, &bytes);
                }
            }
            Ev::Syn {
                from,
                conn,
                local,
                src,
                dst,
            } => {
                if !self.sides[from].pending.contains_key(&conn) {
                    return;
                }
                if dst == sa(STUN) {
                    self.sides[from].pending.remove(&conn);
                    self.links.insert((from, conn), End::Stun(src));
                    self.stun_bufs.insert(src, (from, conn, vec![]));
                    return self.at(LAT, Ev::Connected(from, conn));
                }
                let Some((j, private)) = self.route(src, dst) else {
                    return;
                };
                let so = self.sides[j]
                    .pending
                    .iter()
                    .find(|(_, (l, r))| *l == private && *r == src)
                    .map(|(c, _)| *c);
                if let Some(jc) = so {
                    // Simultaneous open: both SYNs crossed; one connection, both connected.
                    self.sides[j].pending.remove(&jc);
                    self.sides[from].pending.remove(&conn);
                    self.links.insert((from, conn), End::Agent(j, jc));
                    self.links.insert((j, jc), End::Agent(from, conn));
                    self.at(0, Ev::Connected(j, jc));
                    self.at(LAT, Ev::Connected(from, conn));
                } else if self.sides[j].listeners.contains(&private)
                    || (self.sides[j].relay == Some(private) && now >= self.relay_refuses_until)
                {
                    self.sides[from].pending.remove(&conn);
                    self.sides[j].accepted.insert((private, src));
                    let jc = self.sides[j].agent.handle_tcp_accepted(now, private, src);
                    self.links.insert((from, conn), End::Agent(j, jc));
                    self.links.insert((j, jc), End::Agent(from, conn));
                    self.at(LAT, Ev::Connected(from, conn));
                } else {
                    self.sides[from].pending.remove(&conn);
                    self.at(LAT, Ev::Closed(from, conn));
                }
                let _ = local;
            }
            Ev::Connected(i, c) => self.sides[i].agent.handle_tcp_connected(now, c),
            Ev::Closed(i, c) => self.sides[i].agent.handle_tcp_closed(now, c),
            Ev::SetRemote(i, msg) => self.sides[i].agent.set_remote(now, &msg),
            Ev::Data(End::Agent(i, c), bytes) => {
                self.sides[i].agent.handle_tcp_data(now, c, &bytes)
            }
            Ev::Data(End::Stun(observed), bytes) => {
                let (i, c, mut buf) = self.stun_bufs.remove(&observed).unwrap();
                buf.extend_from_slice(&bytes);
                let req = Message::decode(&buf).unwrap();
                let resp = req
                    .reply(Class::SuccessResponse)
                    .with(Attribute::XorMappedAddress(observed))
                    .encode_with(None, true);
                self.at(LAT, Ev::Data(End::Agent(i, c), resp));
            }
        }
    }

    /// Runs until `limit` ms or until both sides have a final event.
    fn run(&mut self, limit: u64) {
        self.drain();
        loop {
            let done = self.sides.iter().all(|s| {
                s.events
                    .iter()
                    .any(|(_, e)| matches!(e, Event::Selected { .. } | Event::Failed))
            });
            if done && self.queue.is_empty() {
                break;
            }
            let timer = self
                .sides
                .iter()
                .filter_map(|s| s.agent.poll_timeout())
                .min();
            let next = self
                .queue
                .keys()
                .next()
                .map(|k| k.0)
                .into_iter()
                .chain(timer)
                .min();
            let Some(next) = next.filter(|&t| t <= limit) else {
                break;
            };
            self.now = self.now.max(next);
            while let Some(entry) = self.queue.first_entry() {
                if entry.key().0 > self.now {
                    break;
                }
                let ev = entry.remove();
                self.deliver(ev);
                self.drain();
            }
            for i in 0..self.sides.len() {
                if self.sides[i]
                    .agent
                    .poll_timeout()
                    .is_some_and(|t| t <= self.now)
                {
                    self.sides[i].agent.handle_timeout(self.now);
                }
            }
            self.drain();
        }
    }

    fn selected(&self, i: usize) -> Option<(T, Tr, T, Tr)> {
        self.sides[i].events.iter().find_map(|(_, e)| match e {
            Event::Selected { local, remote, .. } => {
                Some((local.typ, local.transport, remote.typ, remote.transport))
            }
            _ => None,
        })
    }

    fn failed_at(&self, i: usize) -> Option<u64> {
        self.sides[i]
            .events
            .iter()
            .find_map(|(t, e)| (*e == Event::Failed).then_some(*t))
    }

    /// Both ways, one packet each, over the selected path.
    fn exchange_data(&mut self) {
        self.sides[0].agent.send(b"from requester").unwrap();
        self.sides[1].agent.send(b"from answerer").unwrap();
        let until = self.now + 100;
        self.drain();
        self.run(until);
        assert_eq!(self.sides[1].recv, vec![b"from requester".to_vec()]);
        assert_eq!(self.sides[0].recv, vec![b"from answerer".to_vec()]);
    }
}

fn pair(i: usize, net: &Net) -> (T, Tr, T, Tr) {
    net.selected(i)
        .unwrap_or_else(|| panic!("side {i} selected nothing: {:?}", net.sides[i].events))
}

fn assert_clean(net: &Net) {
    for s in &net.sides {
        let st = s.agent.stats();
        assert_eq!(
            (
                st.bad_integrity,
                st.bad_username,
                st.bad_fingerprint,
                st.malformed
            ),
            (0, 0, 0, 0),
            "{st:?}"
        );
    }
}

#[test]
fn host_udp() {
    let mut net = Net::new([
        Spec::new(1, false, "10.0.0.1"),
        Spec::new(2, true, "10.0.0.2"),
    ]);
    net.run(10_000);
    assert_eq!(pair(0, &net), (T::Host, Tr::Udp, T::Host, Tr::Udp));
    assert_eq!(pair(1, &net), (T::Host, Tr::Udp, T::Host, Tr::Udp));
    assert!(net.sides[1].agent.is_controlling() && !net.sides[0].agent.is_controlling());
    // One pair: every check is done, so the controlling side nominates at once (pjnath
    // "All checks have completed, starting nominated checks now"): check + nomination.
    assert_eq!(selected_at(&net, 1), 4 * LAT);
    net.exchange_data();
    assert_clean(&net);
}

fn selected_at(net: &Net, i: usize) -> u64 {
    net.sides[i]
        .events
        .iter()
        .find(|(_, e)| matches!(e, Event::Selected { .. }))
        .expect("selected")
        .0
}

#[test]
fn regular_nomination_waits_while_checks_are_pending() {
    // A second answerer socket no reply can reach keeps checks in progress: the
    // controlling side waits the 400 ms nominated-check delay after the first valid pair.
    let mut b = Spec::new(2, true, "10.0.0.2");
    b.dead_udp = Some("10.0.0.3:5000");
    let mut net = Net::new([Spec::new(1, false, "10.0.0.1"), b]);
    net.run(10_000);
    assert_eq!(pair(1, &net), (T::Host, Tr::Udp, T::Host, Tr::Udp));
    let t = selected_at(&net, 1);
    assert!((400..400 + 4 * LAT + 100).contains(&t), "selected at {t}");
    // Without the nomination delay the model would select at 40 ms, as in host_udp.
    assert!(t > 4 * LAT);
}

#[test]
fn host_tcp_active_to_passive() {
    let mut net = Net::new([
        Spec::new(1, false, "10.0.0.1").tcp_only(),
        Spec::new(2, true, "10.0.0.2").tcp_only(),
    ]);
    net.run(10_000);
    let (lt, ltr, rt, rtr) = pair(1, &net);
    assert_eq!((lt, rt), (T::Host, T::Host));
    assert!(
        matches!(
            (ltr, rtr),
            (Tr::TcpActive, Tr::TcpPassive) | (Tr::TcpPassive, Tr::TcpActive)
        ),
        "{ltr:?} {rtr:?}"
    );
    let (_, l0, _, r0) = pair(0, &net);
    assert_eq!((l0, r0), (rtr, ltr), "both sides see the same connection");
    assert!(matches!(net.sides[0].agent.path(), Some(Path::Tcp { .. })));
    net.exchange_data();
    assert_clean(&net);
    // A burst of small frames in one read (more than the decoder's backlog) all arrive.
    let Some(Path::Tcp { conn }) = net.sides[0].agent.path() else {
        panic!()
    };
    let burst: Vec<u8> = (0..200u8)
        .flat_map(|i| node::connect::framing::frame(&[i]).unwrap())
        .collect();
    let a = &mut net.sides[0].agent;
    a.handle_tcp_data(net.now, conn, &burst);
    let got: Vec<Vec<u8>> = std::iter::from_fn(|| a.poll_recv()).collect();
    assert_eq!(got, (0..200u8).map(|i| vec![i]).collect::<Vec<_>>());
    assert_eq!(a.path(), Some(Path::Tcp { conn }), "connection kept");
}

#[test]
fn tcp_simultaneous_open() {
    let only_so = |m: &mut IceMsg| m.candidates.retain(|c| c.transport == Tr::TcpSo);
    let mut a = Spec::new(1, false, "10.0.0.1").tcp_only();
    let mut b = Spec::new(2, true, "10.0.0.2").tcp_only();
    (a.so, b.so, a.filter, b.filter) = (true, true, Box::new(only_so), Box::new(only_so));
    let mut net = Net::new([a, b]);
    net.run(10_000);
    assert_eq!(pair(0, &net), (T::Host, Tr::TcpSo, T::Host, Tr::TcpSo));
    assert_eq!(pair(1, &net), (T::Host, Tr::TcpSo, T::Host, Tr::TcpSo));
    net.exchange_data();
}

/// As on a real kernel (seen on loopback through the device driver): the requester's
/// SYN reaches the answerer's listener before the answerer connects (its ice_msg came
/// late), so the answerer's own connect from that port is refused (4-tuple taken) —
/// reported before the check arrives on the accepted connection, or after it. The so
/// pair must still be selected, on the accepted connection.
#[test]
fn tcp_simultaneous_open_listener_first() {
    for (late, refuse_delay) in [(15, 0), (25, LAT)] {
        let only_so = |m: &mut IceMsg| m.candidates.retain(|c| c.transport == Tr::TcpSo);
        let mut a = Spec::new(1, false, "10.0.0.1").tcp_only();
        let mut b = Spec::new(2, true, "10.0.0.2").tcp_only();
        (a.so, b.so, a.filter, b.filter) = (true, true, Box::new(only_so), Box::new(only_so));
        let mut net = Net::new([a, b]);
        (net.late_remote, net.refuse_delay) = (Some((1, late)), refuse_delay);
        net.run(10_000);
        let refused = net.transcript.iter().any(|l| l.contains("1 Connect"))
            && !net.sides[1].accepted.is_empty();
        assert!(refused, "the answerer connected after accepting: {late}");
        assert_eq!(pair(0, &net), (T::Host, Tr::TcpSo, T::Host, Tr::TcpSo));
        assert_eq!(pair(1, &net), (T::Host, Tr::TcpSo, T::Host, Tr::TcpSo));
        net.exchange_data();
    }
}

fn natted_requester(stun: bool) -> Spec {
    let mut a = Spec::new(1, false, "192.168.1.10");
    a.nat = Some(("203.0.113.7", true));
    a.stun = stun;
    a
}

#[test]
fn srflx_through_nat() {
    let mut net = Net::new([natted_requester(true), Spec::new(2, true, "10.0.0.2")]);
    net.run(20_000);
    let local = net.sides[0].agent.local_candidates();
    assert!(
        local
            .iter()
            .any(|c| c.typ == T::Srflx && c.addr.ip().to_string() == "203.0.113.7"),
        "{local:?}"
    );
    assert_eq!(pair(0, &net), (T::Srflx, Tr::Udp, T::Host, Tr::Udp));
    assert_eq!(pair(1, &net), (T::Host, Tr::Udp, T::Srflx, Tr::Udp));
    net.exchange_data();
}

#[test]
fn prflx_without_stun() {
    let mut net = Net::new([natted_requester(false), Spec::new(2, true, "10.0.0.2")]);
    net.run(20_000);
    assert_eq!(pair(0, &net), (T::Prflx, Tr::Udp, T::Host, Tr::Udp));
    assert_eq!(pair(1, &net), (T::Host, Tr::Udp, T::Prflx, Tr::Udp));
    net.exchange_data();
}

#[test]
fn srflx_withheld_is_seen_as_prflx() {
    // Model break: the requester does not advertise its srflx candidate; the answerer
    // can only learn that address as peer-reflexive, so the expected srflx pair is absent.
    let mut a = natted_requester(true);
    a.filter = Box::new(|m| m.candidates.retain(|c| c.typ != T::Srflx));
    let mut net = Net::new([a, Spec::new(2, true, "10.0.0.2")]);
    net.run(20_000);
    assert_ne!(pair(1, &net).2, T::Srflx);
    assert_eq!(pair(1, &net).2, T::Prflx);
}

fn relay_net(advertise_relay: bool) -> Net {
    let mut a = Spec::new(1, false, "192.168.1.10");
    a.relay = Some("198.51.100.9:49152");
    if !advertise_relay {
        a.filter = Box::new(|m| m.candidates.retain(|c| c.typ != T::Relay));
    }
    let mut net = Net::new([a, Spec::new(2, true, "10.0.0.2")]);
    net.block_direct = true;
    net
}

#[test]
fn relay_when_direct_is_blocked() {
    let mut net = relay_net(true);
    net.run(60_000);
    assert_eq!(pair(0, &net), (T::Relay, Tr::Udp, T::Host, Tr::Udp));
    assert_eq!(pair(1, &net), (T::Host, Tr::Udp, T::Relay, Tr::Udp));
    net.exchange_data();
}

#[test]
fn relay_tcp_passive_when_direct_is_blocked() {
    // Jami's case: TURN over TCP. The answerer's active candidate connects to the
    // requester's relayed address; checks and data then run on that connection.
    let mut a = Spec::new(1, false, "192.168.1.10").tcp_only();
    a.relay = Some("198.51.100.9:49152");
    let mut net = Net::new([a, Spec::new(2, true, "10.0.0.2").tcp_only()]);
    net.block_direct = true;
    net.run(60_000);
    assert_eq!(
        pair(0, &net),
        (T::Relay, Tr::TcpPassive, T::Host, Tr::TcpActive)
    );
    assert_eq!(
        pair(1, &net),
        (T::Host, Tr::TcpActive, T::Relay, Tr::TcpPassive)
    );
    net.exchange_data();
}

#[test]
fn a_relay_that_refuses_at_first_is_dialled_again() {
    // The requester's TURN server admits the answerer only once the requester has the
    // answer and installed a permission: until then the relayed address refuses.
    let relayed = |until: u64| {
        let mut a = Spec::new(1, false, "192.168.1.10").tcp_only();
        a.relay = Some("198.51.100.9:49152");
        let mut net = Net::new([a, Spec::new(2, true, "10.0.0.2").tcp_only()]);
        net.block_direct = true;
        net.relay_refuses_until = until;
        net.run(90_000);
        net
    };
    let mut net = relayed(3_000);
    assert_eq!(
        pair(1, &net),
        (T::Host, Tr::TcpActive, T::Relay, Tr::TcpPassive)
    );
    assert!(net.sides[1].agent.stats().relay_redials >= 1);
    net.exchange_data();
    // Refused past the redials' window (about 20 s): no path.
    let net = relayed(40_000);
    assert!(net.failed_at(1).is_some(), "{:?}", net.sides[1].events);
    assert_eq!(
        net.sides[1].agent.stats().relay_redials,
        u64::from(node::connect::ice::RELAY_REDIALS)
    );
}

#[test]
fn relay_withheld() {
    // Model break 1: the relay candidate is not advertised. The requester's checks from
    // its relayed address still reach the answerer, which can only know that address as
    // peer-reflexive: the expected relay pair is not found.
    let mut net = relay_net(false);
    net.run(70_000);
    assert_eq!(pair(1, &net), (T::Host, Tr::Udp, T::Prflx, Tr::Udp));
    // Model break 2: an agent without the relay candidate at all has no path: Failed.
    let mut net = relay_net(true);
    net.sides[0].agent = Agent::new(
        Config {
            seed: 1,
            udp_sockets: vec![sa("192.168.1.10:5000")],
            ..Config::default()
        },
        0,
    );
    net.run(70_000);
    assert!(net.failed_at(0).is_some() && net.failed_at(1).is_some());
}

#[test]
fn passive_srflx_tcp_candidate() {
    // Requester behind a full-cone NAT advertises the mapped address of its listener;
    // the answerer (active only, its passive candidate withheld) reaches it there.
    let mut a = natted_requester(true).tcp_only();
    a.nat = Some(("203.0.113.7", false));
    a.filter = Box::new(|m| m.candidates.retain(|c| c.typ == T::Srflx));
    let mut b = Spec::new(2, true, "10.0.0.2").tcp_only();
    b.filter = Box::new(|m| m.candidates.retain(|c| c.transport == Tr::TcpActive));
    let mut net = Net::new([a, b]);
    net.run(60_000);
    let srflx = net.sides[0].agent.local_candidates();
    assert!(
        srflx
            .iter()
            .any(|c| c.typ == T::Srflx && c.transport == Tr::TcpPassive),
        "{srflx:?}"
    );
    assert_eq!(
        pair(1, &net),
        (T::Host, Tr::TcpActive, T::Srflx, Tr::TcpPassive)
    );
    assert_eq!(pair(0, &net).0, T::Srflx);
    net.exchange_data();
}

#[test]
fn srflx_so_candidate_with_tcp_so() {
    // With S-O candidates on, the listening port's mapping is also offered as a
    // server-reflexive S-O candidate (the peer's S-O check connects to it while ours
    // connects to the peer's); without, only as passive.
    for so in [false, true] {
        let mut a = natted_requester(true).tcp_only();
        a.so = so;
        let mut net = Net::new([a, Spec::new(2, true, "10.0.0.2").tcp_only()]);
        net.run(60_000);
        let srflx: Vec<(Tr, SocketAddr)> = net.sides[0]
            .agent
            .local_candidates()
            .into_iter()
            .filter(|c| c.typ == T::Srflx)
            .map(|c| (c.transport, c.addr))
            .collect();
        let mapped = srflx[0].1;
        assert_eq!(mapped.ip().to_string(), "203.0.113.7");
        let want: Vec<(Tr, SocketAddr)> = if so {
            vec![(Tr::TcpPassive, mapped), (Tr::TcpSo, mapped)]
        } else {
            vec![(Tr::TcpPassive, mapped)]
        };
        assert_eq!(srflx, want);
    }
}

#[test]
fn nomination_binds_the_connection_it_came_on() {
    // Public hosts with passive, active and S-O candidates on one listening port. The
    // answerer's active and S-O checks open two connections to the requester's listener,
    // which files both under one pair (its passive candidate, the answerer's address);
    // the answer reaches the requester after both, so its triggered check runs on the
    // later one while the answerer nominates on the earlier one. The requester must
    // select the connection the nomination came on: else each side closes the other's
    // connection and both fail.
    let mut a = Spec::new(1, false, "10.0.0.1").tcp_only();
    let mut b = Spec::new(101, true, "10.0.0.2").tcp_only();
    (a.so, b.so) = (true, true);
    let mut net = Net::new([a, b]);
    // The requester (side 0) gets the answer 85 ms after the answerer got the request.
    net.late_remote = Some((0, 85));
    net.run(60_000);
    assert_eq!(
        pair(0, &net),
        (T::Host, Tr::TcpPassive, T::Prflx, Tr::TcpActive)
    );
    assert_eq!(
        pair(1, &net),
        (T::Host, Tr::TcpActive, T::Host, Tr::TcpPassive)
    );
    assert!(net.failed_at(0).is_none() && net.failed_at(1).is_none());
    net.exchange_data();
}

fn active_behind_nat(advertise_srflx: bool) -> Net {
    let mut a = natted_requester(false).tcp_only();
    a.public_ip = Some("203.0.113.7");
    if !advertise_srflx {
        a.filter = Box::new(|m| m.candidates.retain(|c| c.typ != T::Srflx));
    }
    let mut net = Net::new([a, Spec::new(2, true, "10.0.0.2").tcp_only()]);
    net.run(60_000);
    net
}

#[test]
fn srflx_active_tcp_from_public_ip() {
    // jamid's generic srflx: the DHT-reported public IP as a TCP active candidate, port 9.
    let net = active_behind_nat(true);
    let srflx: Vec<_> = net.sides[0]
        .agent
        .local_candidates()
        .into_iter()
        .filter(|c| c.typ == T::Srflx)
        .collect();
    assert_eq!(srflx.len(), 1);
    assert_eq!(
        (srflx[0].addr, srflx[0].transport),
        (sa("203.0.113.7:9"), Tr::TcpActive)
    );
    assert_eq!(
        pair(1, &net),
        (T::Host, Tr::TcpPassive, T::Srflx, Tr::TcpActive)
    );
    assert_eq!(
        pair(0, &net),
        (T::Srflx, Tr::TcpActive, T::Host, Tr::TcpPassive)
    );
}

#[test]
fn srflx_active_withheld_is_seen_as_prflx() {
    // (see srflx_active_tcp_from_public_ip)
    // Model break: without the advertised srflx active candidate the answerer meets the
    // NAT's address as peer-reflexive.
    let net = active_behind_nat(false);
    assert_eq!(
        pair(1, &net),
        (T::Host, Tr::TcpPassive, T::Prflx, Tr::TcpActive)
    );
}

#[test]
fn passive_withheld_tcp_fails() {
    // Model break: no passive candidate advertised on either side → no active/passive
    // pair can form; ICE-TCP fails.
    let no_passive = |m: &mut IceMsg| m.candidates.retain(|c| c.transport != Tr::TcpPassive);
    let mut a = Spec::new(1, false, "10.0.0.1").tcp_only();
    let mut b = Spec::new(2, true, "10.0.0.2").tcp_only();
    (a.filter, b.filter) = (Box::new(no_passive), Box::new(no_passive));
    let mut net = Net::new([a, b]);
    net.run(70_000);
    assert!(net.failed_at(0).is_some() && net.failed_at(1).is_some());
    assert_eq!(net.selected(0), None);
}

#[test]
fn role_conflict_resolved() {
    for both in [true, false] {
        let mut net = Net::new([
            Spec::new(1, both, "10.0.0.1"),
            Spec::new(2, both, "10.0.0.2"),
        ]);
        net.run(20_000);
        assert_eq!(pair(0, &net), (T::Host, Tr::Udp, T::Host, Tr::Udp));
        assert_eq!(pair(1, &net), (T::Host, Tr::Udp, T::Host, Tr::Udp));
        let (a, b) = (&net.sides[0].agent, &net.sides[1].agent);
        assert_ne!(a.is_controlling(), b.is_controlling(), "roles still clash");
        let switches = a.stats().role_switches + b.stats().role_switches;
        let conflicts = a.stats().role_conflicts_sent + b.stats().role_conflicts_sent;
        assert_eq!(switches, 1, "exactly one side gives way");
        assert!(conflicts <= 1);
    }
}

#[test]
fn wrong_password_refused_and_counted() {
    let mut b = Spec::new(2, true, "10.0.0.2");
    // The answerer got a tampered ice_msg: its checks carry the wrong key.
    b.filter = Box::new(|_| {});
    let mut a = Spec::new(1, false, "10.0.0.1");
    a.filter = Box::new(|m| m.pwd = "not-the-password-at-all!".into());
    let mut net = Net::new([a, b]);
    net.run(70_000);
    assert!(net.sides[0].agent.stats().bad_integrity > 0);
    assert_eq!(net.selected(0), None);
    assert_eq!(net.selected(1), None);
    assert!(net.failed_at(1).is_some());
}

#[test]
fn forged_checks_refused_and_counted() {
    let mut net = Net::new([
        Spec::new(1, false, "10.0.0.1"),
        Spec::new(2, true, "10.0.0.2"),
    ]);
    net.run(100); // gathered and exchanged, checks under way
    let a = &mut net.sides[0].agent;
    let ufrag = a.local_ufrag().to_owned();
    let (local, from) = (sa("10.0.0.1:5000"), sa("10.9.9.9:1234"));
    let req = node::connect::ice::check::CheckRequest {
        priority: 1,
        use_candidate: true,
        controlling: Some(true),
        tie_breaker: 0,
    };
    let forged = [
        node::connect::ice::check::request([1; 12], &format!("{ufrag}:x"), b"guessed", &req),
        node::connect::ice::check::request([2; 12], "other:x", a.local_pwd().as_bytes(), &req),
        Message::new(Class::Request, stun::Method::Binding, [3; 12]).encode(),
        Message::new(Class::SuccessResponse, stun::Method::Binding, [4; 12])
            .encode_with(None, true),
        vec![
            0, 1, 0, 4, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0xff,
        ],
    ];
    while a.poll_transmit().is_some() {}
    for f in &forged {
        a.handle_datagram(100, local, from, f);
    }
    let out: Vec<Transmit> = std::iter::from_fn(|| a.poll_transmit()).collect();
    assert!(
        out.iter()
            .all(|t| !matches!(t, Transmit::Udp { remote, .. } if *remote == from)),
        "answered a forged check: {out:?}"
    );
    let st = a.stats().clone();
    assert_eq!(
        (
            st.bad_integrity,
            st.bad_username,
            st.bad_fingerprint,
            st.unknown_transaction,
            st.malformed
        ),
        (1, 1, 1, 1, 1),
        "{st:?}"
    );
    // Application bytes from an unknown source are dropped.
    a.handle_datagram(100, local, from, b"hello");
    assert_eq!((a.poll_recv(), a.stats().data_dropped), (None, 1));
    // The honest negotiation is unaffected.
    net.run(10_000);
    assert_eq!(pair(0, &net), (T::Host, Tr::Udp, T::Host, Tr::Udp));
}

#[test]
fn no_path_fails_within_timeout() {
    let mut net = Net::new([
        Spec::new(1, false, "10.0.0.1"),
        Spec::new(2, true, "10.0.0.2"),
    ]);
    net.block_direct = true;
    net.run(120_000);
    let fail = Timing::default().fail_timeout;
    for i in 0..2 {
        let t = net
            .failed_at(i)
            .unwrap_or_else(|| panic!("side {i} did not fail"));
        assert!(t <= fail, "side {i} failed at {t}");
        assert_eq!(net.selected(i), None);
    }
}

fn transcript(seed: u64) -> Vec<String> {
    let mut net = Net::new([
        Spec::new(seed, false, "10.0.0.1"),
        Spec::new(seed + 1, true, "10.0.0.2"),
    ]);
    net.run(10_000);
    net.transcript
}

#[test]
fn deterministic_transcript() {
    let a = transcript(7);
    assert!(a.len() > 8, "{a:#?}");
    assert_eq!(a, transcript(7));
    assert_ne!(a, transcript(8), "the seed must matter (ufrag, txids)");
}

#[test]
fn keepalive_after_selection() {
    let mut net = Net::new([
        Spec::new(1, false, "10.0.0.1"),
        Spec::new(2, true, "10.0.0.2"),
    ]);
    net.run(10_000);
    assert!(net.selected(0).is_some());
    let Some(Path::Udp { local, remote }) = net.sides[0].agent.path() else {
        panic!()
    };
    let a = &mut net.sides[0].agent;
    let mut sent = vec![];
    let mut now = 10_000;
    while now < 60_000 {
        now = a.poll_timeout().unwrap();
        a.handle_timeout(now);
        while let Some(t) = a.poll_transmit() {
            sent.push((now, t));
        }
    }
    assert!(sent.len() >= 2, "{sent:?}");
    for (_, t) in &sent {
        let Transmit::Udp {
            local: l,
            remote: r,
            payload,
        } = t
        else {
            panic!()
        };
        assert_eq!((*l, *r), (local, remote));
        let m = Message::decode(payload).unwrap();
        assert_eq!(m.class, Class::Indication);
        assert!(Message::check_fingerprint(payload));
    }
    let gaps: Vec<u64> = sent.windows(2).map(|w| w[1].0 - w[0].0).collect();
    assert!(
        gaps.iter().all(|g| (20_000..25_000).contains(g)),
        "{gaps:?}"
    );
}

fn lone_agent(udp: &[&str], remote: &str) -> Agent {
    let cfg = Config {
        seed: 3,
        controlling: true,
        udp_sockets: udp.iter().map(|a| sa(a)).collect(),
        ..Config::default()
    };
    let mut a = Agent::new(cfg, 0);
    a.set_remote(0, &IceMsg::parse(remote).unwrap());
    a
}

#[test]
fn no_remote_candidate_fails_at_once() {
    // jamid refuses to start ICE without remote candidates.
    let mut a = lone_agent(&["10.0.0.1:5000"], "r\nremotepassword\n");
    assert_eq!(
        std::iter::from_fn(|| a.poll_event()).last(),
        Some(Event::Failed)
    );
}

#[test]
fn pacing_retransmissions_and_timeout() {
    // Two pairs, no answers: new checks are Ta (50 ms) apart; each is retransmitted at
    // RTO 500 ms doubling, 7 transmissions, then fails 16 × RTO after the last (39.5 s).
    let mut a = lone_agent(
        &["10.0.0.1:5000"],
        "r\nremotepassword\nH1 1 UDP 2130706431 10.0.0.2 5000 typ host\nH2 1 UDP 2130706175 10.0.0.3 5000 typ host\n",
    );
    let mut sent: BTreeMap<SocketAddr, Vec<u64>> = BTreeMap::new();
    let mut now = 0;
    let mut failed = None;
    loop {
        a.handle_timeout(now);
        while let Some(t) = a.poll_transmit() {
            let Transmit::Udp { remote, .. } = t else {
                panic!()
            };
            sent.entry(remote).or_default().push(now);
        }
        if let Some(Event::Failed) =
            std::iter::from_fn(|| a.poll_event()).find(|e| *e == Event::Failed)
        {
            failed = Some(now);
            break;
        }
        match a.poll_timeout() {
            Some(t) if t < 100_000 => now = t,
            _ => break,
        }
    }
    let first = [0, 500, 1500, 3500, 7500, 15_500, 31_500];
    assert_eq!(
        sent[&sa("10.0.0.2:5000")],
        first,
        "best pair first, then retransmissions"
    );
    assert_eq!(
        sent[&sa("10.0.0.3:5000")],
        first.map(|t| t + 50),
        "second pair one Ta later"
    );
    assert_eq!(
        failed,
        Some(31_550 + 8_000),
        "failed once the last check timed out"
    );
}

#[test]
fn peer_reflexive_flood_is_bounded() {
    let mut a = lone_agent(
        &["10.0.0.1:5000"],
        "r\nremotepassword\nH1 1 UDP 1 10.0.0.2 5000 typ host\n",
    );
    let username = format!("{}:r", a.local_ufrag());
    let key = a.local_pwd().as_bytes().to_vec();
    let req = node::connect::ice::check::CheckRequest {
        priority: 1,
        use_candidate: false,
        controlling: Some(false),
        tie_breaker: 1,
    };
    for i in 0..1000u32 {
        let from = SocketAddr::new(IpAddr::from((0x0a01_0000u32 + i).to_be_bytes()), 4000);
        let msg = node::connect::ice::check::request(
            (i as u128).to_be_bytes()[4..].try_into().unwrap(),
            &username,
            &key,
            &req,
        );
        a.handle_datagram(1, sa("10.0.0.1:5000"), from, &msg);
    }
    // Every signed check is answered, but only a bounded number become candidates.
    assert_eq!(a.stats().checks_answered, 1000);
    let prflx = a
        .remote_candidates()
        .iter()
        .filter(|c| c.typ == T::Prflx)
        .count();
    assert_eq!(
        a.remote_candidates().len(),
        node::connect::ice::MAX_REMOTE_CANDIDATES
    );
    assert_eq!(
        prflx,
        node::connect::ice::MAX_REMOTE_CANDIDATES - 1,
        "one is the signalled host"
    );
}

#[test]
fn tcp_connect_that_never_opens_fails_the_check() {
    let cfg = Config {
        seed: 4,
        controlling: true,
        tcp_listen: vec![sa("10.0.0.1:6000")],
        ..Config::default()
    };
    let mut a = Agent::new(cfg, 0);
    a.set_remote(
        0,
        &IceMsg::parse("r\nremotepassword\nH1 1 TCP 1 10.0.0.2 7000 typ host tcptype passive\n")
            .unwrap(),
    );
    a.handle_timeout(0);
    let cmds: Vec<Command> = std::iter::from_fn(|| a.poll_command()).collect();
    let conn = cmds
        .iter()
        .find_map(|c| match c {
            Command::Connect {
                conn,
                local,
                remote,
            } => {
                assert_eq!(
                    (*local, *remote),
                    (sa("10.0.0.1:0"), sa("10.0.0.2:7000")),
                    "active: any local port"
                );
                Some(*conn)
            }
            _ => None,
        })
        .expect("active candidate connects");
    while let Some(t) = a.poll_timeout().filter(|t| *t < 15_000) {
        a.handle_timeout(t); // Ta ticks with nothing left to start
    }
    assert_eq!(
        a.poll_timeout(),
        Some(Timing::default().tcp_connect_timeout)
    );
    a.handle_timeout(Timing::default().tcp_connect_timeout);
    assert_eq!(a.poll_command(), Some(Command::Close { conn }));
    assert_eq!(
        std::iter::from_fn(|| a.poll_event()).last(),
        Some(Event::Failed)
    );
}

/// After selection the other check connections stay open (as pjnath keeps its own):
/// jamid's epoll ioqueue stalls 500 ms per poll on a socket its peer closed, so closing
/// the losing connection made every text to jamid wait about 500 ms.
#[test]
fn the_losing_check_connections_stay_open() {
    let mut net = Net::new([
        Spec::new(1, false, "10.0.0.1").tcp_only(),
        Spec::new(2, true, "10.0.0.2").tcp_only(),
    ]);
    net.run(10_000);
    pair(1, &net);
    let Some(Path::Tcp { conn }) = net.sides[0].agent.path() else {
        panic!("no TCP path")
    };
    let others = net
        .links
        .keys()
        .filter(|(i, c)| *i == 0 && *c != conn)
        .count();
    assert!(others >= 1, "side 0 keeps {others} other connections open");
    net.exchange_data();
    assert_clean(&net);
}
