//! UDP hole punching as ICE does it, reduced to what the NAT matrix needs: each peer
//! learns its server-reflexive address from STUN and a relayed address from TURN,
//! swaps candidates through a rendezvous server, then sends connectivity checks to every
//! remote candidate, answers every check it receives (with a triggered check back), and
//! records which kind of path worked. Relay checks go straight to the peer's relayed
//! address; the relay owner answers through its TURN allocation.

use crate::app::{App, Ctx};
use crate::apps::turn::{TurnClient, TurnEvent};
use crate::oracle::PathKind;
use crate::sim::SockId;
use crate::stun::{self, Class, Message, Method};
use crate::time::SimTime;
use rand::RngExt;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// First word of every rendezvous and punching message.
pub const MAGIC: &str = "PNCH1";
const T_STUN: u64 = 1;
const T_REGISTER: u64 = 2;
const T_CHECKS: u64 = 3;
const T_STOP: u64 = 4;

/// A peer's candidates as sent through the rendezvous server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Candidates {
    pub host: Vec<SocketAddr>,
    pub srflx: Option<SocketAddr>,
    pub relay: Option<SocketAddr>,
}

impl Candidates {
    fn encode(&self) -> String {
        let list = |v: &[SocketAddr]| {
            v.iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        let opt = |o: &Option<SocketAddr>| o.map(|a| a.to_string()).unwrap_or_else(|| "-".into());
        format!(
            "{} {} {}",
            list(&self.host),
            opt(&self.srflx),
            opt(&self.relay)
        )
    }
    fn decode(parts: &[&str]) -> Option<Candidates> {
        let [host, srflx, relay] = parts else {
            return None;
        };
        let host = if host.is_empty() {
            Vec::new()
        } else {
            host.split(',')
                .map(|s| s.parse().ok())
                .collect::<Option<Vec<_>>>()?
        };
        let opt = |s: &str| {
            if s == "-" {
                Ok(None)
            } else {
                s.parse().map(Some)
            }
        };
        Some(Candidates {
            host,
            srflx: opt(srflx).ok()?,
            relay: opt(relay).ok()?,
        })
    }
}

/// Longest candidate text a registration may carry (bounds the rendezvous's memory;
/// a few addresses take under 200 bytes).
pub const MAX_REGISTRATION: usize = 512;

/// Pairs up registrations with the same pair name and tells each side the other's
/// candidates (the signalling channel a real client has through its DHT or server).
/// The candidate text is passed on as is, so UDP ([`PunchPeer`]) and TCP
/// ([`crate::apps::tcp_punch::TcpPunchPeer`]) peers share it.
#[derive(Default)]
pub struct Rendezvous {
    pub port: u16,
    regs: BTreeMap<String, BTreeMap<SocketAddr, String>>,
    pub malformed: u64,
}

impl Rendezvous {
    pub fn new(port: u16) -> Self {
        Rendezvous {
            port,
            ..Default::default()
        }
    }
}

impl App for Rendezvous {
    fn start(&mut self, cx: &mut Ctx<'_>) {
        let _ = cx.udp_bind(SocketAddr::from(([0, 0, 0, 0], self.port)));
    }
    fn on_udp(
        &mut self,
        cx: &mut Ctx<'_>,
        sock: SockId,
        from: SocketAddr,
        _to: SocketAddr,
        data: &[u8],
    ) {
        let Some(text) = std::str::from_utf8(data).ok() else {
            self.malformed += 1;
            return;
        };
        let parts: Vec<&str> = text.split(' ').collect();
        let (Some(&MAGIC), Some(&"REG"), Some(pair)) = (parts.first(), parts.get(1), parts.get(2))
        else {
            self.malformed += 1;
            return;
        };
        let c = parts[3..].join(" ");
        if parts.len() < 4 || c.len() > MAX_REGISTRATION {
            self.malformed += 1;
            return;
        }
        let regs = self.regs.entry(pair.to_string()).or_default();
        regs.insert(from, c);
        if regs.len() >= 2 {
            let all: Vec<(SocketAddr, String)> =
                regs.iter().map(|(a, c)| (*a, c.clone())).collect();
            for (addr, _) in &all {
                if let Some((_, other)) = all.iter().find(|(a, _)| a != addr) {
                    let msg = format!("{MAGIC} PEER {pair} {other}");
                    let _ = cx.udp_send(sock, *addr, msg.as_bytes());
                }
            }
        }
    }
    crate::app_any!();
}

/// Settings of one punching peer.
#[derive(Clone, Debug)]
pub struct PunchConfig {
    pub pair: String,
    pub rendezvous: SocketAddr,
    pub stun: SocketAddr,
    /// TURN server and credentials.
    pub turn: Option<(SocketAddr, String, String)>,
    pub check_interval: Duration,
    /// How long checks run after the peer's candidates arrive.
    pub check_for: Duration,
}

/// One side of a hole-punching attempt; its public fields are the result.
pub struct PunchPeer {
    cfg: PunchConfig,
    sock: Option<SockId>,
    turn: Option<TurnClient>,
    stun_txid: [u8; 12],
    stun_tries: u32,
    turn_settled: bool,
    registered: bool,
    pub local: Candidates,
    pub remote: Option<Candidates>,
    /// Best direct path that answered our checks, and the remote address it reached.
    pub direct: Option<(PathKind, SocketAddr)>,
    pub direct_at: Option<SimTime>,
    /// A check through a relay was answered.
    pub relay_ok: bool,
    pub checks_sent: u64,
    pub checks_answered: u64,
    started: Option<SimTime>,
    stopped: bool,
}

impl PunchPeer {
    pub fn new(cfg: PunchConfig) -> Self {
        let turn = cfg.turn.as_ref().map(|(s, u, p)| TurnClient::new(*s, u, p));
        PunchPeer {
            turn_settled: turn.is_none(),
            cfg,
            sock: None,
            turn,
            stun_txid: [0; 12],
            stun_tries: 0,
            registered: false,
            local: Candidates::default(),
            remote: None,
            direct: None,
            direct_at: None,
            relay_ok: false,
            checks_sent: 0,
            checks_answered: 0,
            started: None,
            stopped: false,
        }
    }

    /// The path this side achieved: direct kind, else relay, else none.
    pub fn achieved(&self) -> PathKind {
        match self.direct {
            Some((k, _)) => k,
            None if self.relay_ok => PathKind::Relay,
            None => PathKind::None,
        }
    }

    fn send_stun(&mut self, cx: &mut Ctx<'_>) {
        let Some(sock) = self.sock else { return };
        if self.stun_tries >= 5 || self.local.srflx.is_some() {
            return;
        }
        self.stun_tries += 1;
        if self.stun_tries == 1 {
            self.stun_txid = cx.rng().random();
        }
        let req = Message::new(Class::Request, Method::Binding, self.stun_txid).encode();
        let _ = cx.udp_send(sock, self.cfg.stun, &req);
        cx.set_timer(Duration::from_millis(500), T_STUN);
    }

    fn maybe_register(&mut self, cx: &mut Ctx<'_>) {
        let stun_settled = self.local.srflx.is_some() || self.stun_tries >= 5;
        if !(stun_settled && self.turn_settled) || self.remote.is_some() {
            return;
        }
        let Some(sock) = self.sock else { return };
        let msg = format!("{MAGIC} REG {} {}", self.cfg.pair, self.local.encode());
        let _ = cx.udp_send(sock, self.cfg.rendezvous, msg.as_bytes());
        if !self.registered {
            self.registered = true;
        }
        cx.set_timer(Duration::from_secs(1), T_REGISTER);
    }

    fn start_checks(&mut self, cx: &mut Ctx<'_>, remote: Candidates) {
        if self.remote.is_some() {
            return;
        }
        cx.trace(&format!(
            "punch {} remote {}",
            self.cfg.pair,
            remote.encode()
        ));
        // Let the peer's addresses through our relay.
        if let (Some(turn), Some(sock)) = (self.turn.as_mut(), self.sock) {
            for a in remote.host.iter().chain(remote.srflx.iter()) {
                turn.create_permission(cx, sock, a.ip());
            }
        }
        self.remote = Some(remote);
        self.started = Some(cx.now());
        cx.set_timer(self.cfg.check_for, T_STOP);
        self.send_checks(cx);
    }

    fn send_checks(&mut self, cx: &mut Ctx<'_>) {
        if self.stopped {
            return;
        }
        let (Some(sock), Some(remote)) = (self.sock, self.remote.clone()) else {
            return;
        };
        let targets: Vec<SocketAddr> = remote
            .host
            .iter()
            .chain(remote.srflx.iter())
            .chain(remote.relay.iter())
            .copied()
            .collect();
        for t in targets {
            self.check(cx, sock, t);
        }
        cx.set_timer(self.cfg.check_interval, T_CHECKS);
    }

    fn check(&mut self, cx: &mut Ctx<'_>, sock: SockId, to: SocketAddr) {
        let n: u64 = cx.rng().random();
        let msg = format!("{MAGIC} CHK {} {n} {to}", self.cfg.pair);
        self.checks_sent += 1;
        let _ = cx.udp_send(sock, to, msg.as_bytes());
    }

    /// Handle a punching message that arrived directly (`via_relay` false) or through our
    /// TURN allocation from `from`.
    fn on_message(
        &mut self,
        cx: &mut Ctx<'_>,
        sock: SockId,
        from: SocketAddr,
        text: &str,
        via_relay: bool,
    ) {
        let parts: Vec<&str> = text.split(' ').collect();
        if parts.first() != Some(&MAGIC) || parts.get(2) != Some(&self.cfg.pair.as_str()) {
            return;
        }
        match parts.get(1) {
            Some(&"PEER") => {
                if let Some(c) = Candidates::decode(&parts[3..]) {
                    self.start_checks(cx, c);
                }
            }
            Some(&"CHK") => {
                let (Some(n), Some(target)) = (parts.get(3), parts.get(4)) else {
                    return;
                };
                let resp = format!("{MAGIC} ACK {} {n} {target}", self.cfg.pair);
                if via_relay {
                    if let Some(t) = self.turn.as_mut() {
                        t.send(cx, sock, from, resp.as_bytes());
                    }
                } else {
                    let _ = cx.udp_send(sock, from, resp.as_bytes());
                    // Triggered check: the address that reached us is worth trying back.
                    if self.direct.is_none() && !self.stopped {
                        self.check(cx, sock, from);
                    }
                }
            }
            Some(&"ACK") => {
                if via_relay {
                    return; // we never send checks through our own relay
                }
                self.checks_answered += 1;
                let Some(remote) = &self.remote else { return };
                let kind = if remote.relay == Some(from) {
                    self.relay_ok = true;
                    return;
                } else if remote.host.contains(&from) {
                    PathKind::Host
                } else {
                    PathKind::Srflx // the peer's reflexive or peer-reflexive address
                };
                if self.direct.map(|(k, _)| kind < k).unwrap_or(true) {
                    if self.direct.is_none() {
                        self.direct_at = Some(cx.now());
                    }
                    self.direct = Some((kind, from));
                    cx.trace(&format!(
                        "punch {} direct {} via {}",
                        self.cfg.pair, kind, from
                    ));
                }
            }
            _ => {}
        }
    }
}

impl App for PunchPeer {
    fn start(&mut self, cx: &mut Ctx<'_>) {
        let Ok(sock) = cx.udp_bind(SocketAddr::from(([0, 0, 0, 0], 0))) else {
            return;
        };
        self.sock = Some(sock);
        if let Ok(a) = cx.local_addr(sock) {
            self.local.host.push(a);
        }
        self.send_stun(cx);
        if let Some(t) = self.turn.as_mut() {
            t.start(cx, sock);
        }
    }

    fn on_udp(
        &mut self,
        cx: &mut Ctx<'_>,
        sock: SockId,
        from: SocketAddr,
        _to: SocketAddr,
        data: &[u8],
    ) {
        if let Some(t) = self.turn.as_mut() {
            if let Some(events) = t.handle(cx, sock, from, data) {
                for ev in events {
                    match ev {
                        TurnEvent::Allocated { relayed, .. } => {
                            self.local.relay = Some(relayed);
                            self.turn_settled = true;
                            self.maybe_register(cx);
                        }
                        TurnEvent::Failed { reason } => {
                            cx.trace(&format!("punch {} turn failed: {reason}", self.cfg.pair));
                            self.turn_settled = true;
                            self.maybe_register(cx);
                        }
                        TurnEvent::Data { peer, data } => {
                            if let Ok(text) = std::str::from_utf8(&data) {
                                let text = text.to_string();
                                self.on_message(cx, sock, peer, &text, true);
                            }
                        }
                        _ => {}
                    }
                }
                return;
            }
        }
        if from == self.cfg.stun && stun::is_stun(data) {
            if let Ok(m) = Message::decode(data) {
                if m.txid == self.stun_txid && m.class == Class::SuccessResponse {
                    if let Some(a) = m.xor_mapped() {
                        if self.local.srflx.is_none() {
                            self.local.srflx = Some(a);
                            self.maybe_register(cx);
                        }
                    }
                }
            }
            return;
        }
        if let Ok(text) = std::str::from_utf8(data) {
            let text = text.to_string();
            self.on_message(cx, sock, from, &text, false);
        }
    }

    fn on_timer(&mut self, cx: &mut Ctx<'_>, token: u64) {
        if token >= TurnClient::TIMER_BASE {
            if let (Some(t), Some(sock)) = (self.turn.as_mut(), self.sock) {
                if let Some(events) = t.on_timer(cx, sock, token) {
                    for ev in events {
                        match ev {
                            TurnEvent::Allocated { relayed, .. } => {
                                self.local.relay = Some(relayed);
                                self.turn_settled = true;
                            }
                            TurnEvent::Failed { .. } => self.turn_settled = true,
                            _ => {}
                        }
                    }
                    self.maybe_register(cx);
                }
            }
            return;
        }
        match token {
            T_STUN => {
                self.send_stun(cx);
                self.maybe_register(cx);
            }
            T_REGISTER => self.maybe_register(cx),
            T_CHECKS => self.send_checks(cx),
            T_STOP => self.stopped = true,
            _ => {}
        }
    }
    crate::app_any!();
}
