//! ICE-TCP connectivity (RFC 6544) reduced to what the NAT matrix needs. Each peer
//! offers three candidates:
//! - passive host: a listener on its host address;
//! - passive server-reflexive: that listener's NAT mapping, learnt by STUN over TCP from
//!   the listening port (RFC 6544 §5.2);
//! - simultaneous-open (S-O): the mapping of a second port, learnt the same way.
//!
//! It swaps them through the [`Rendezvous`](crate::apps::punch::Rendezvous), then tries
//! an active connection to the peer's host and server-reflexive candidates (from
//! ephemeral ports) and a simultaneous open from its S-O port to the peer's S-O
//! candidate. A connection counts once a HELLO over it is answered. What each side
//! achieved ([`TcpPunchPeer::achieved`]) is compared with [`crate::oracle::tcp_path`].
//!
//! The S-O attempts are staggered on purpose: the peer with the lower S-O address
//! connects first and the other [`TcpPunchConfig::so_stagger`] later, so the first SYN
//! surely reaches the far NAT before that side's own SYN has opened it. That is the case
//! RFC 5382 REQ-4 is about: a NAT that answers it with a RST kills the attempt, one that
//! drops it silently lets the second SYN through and the two open simultaneously.

use crate::app::{App, Ctx, TcpEvent};
use crate::apps::punch::MAGIC;
use crate::apps::stun_server::stream_frame;
use crate::oracle::TcpPath;
use crate::sim::{ConnId, ListenerId, SockId};
use crate::stun::{Class, Message, Method};
use crate::time::SimTime;
use rand::RngExt;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

const T_STUN_GIVE_UP: u64 = 1;
const T_REGISTER: u64 = 2;
const T_SO: u64 = 3;
/// Longest line accepted on a check connection (HELLO and OK take under 100 bytes).
pub const MAX_LINE: usize = 256;
/// Longest STUN response accepted over TCP.
const MAX_STUN_RESPONSE: usize = 2048;

/// A peer's TCP candidates as sent through the rendezvous server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpCandidates {
    /// The listener's host address (passive host candidate).
    pub host: SocketAddr,
    /// The listener's mapped address (passive server-reflexive candidate).
    pub srflx: Option<SocketAddr>,
    /// The mapped address of the simultaneous-open port.
    pub so: Option<SocketAddr>,
}

impl TcpCandidates {
    fn encode(&self) -> String {
        let opt = |o: &Option<SocketAddr>| o.map(|a| a.to_string()).unwrap_or_else(|| "-".into());
        format!("tcp {} {} {}", self.host, opt(&self.srflx), opt(&self.so))
    }

    fn decode(parts: &[&str]) -> Option<TcpCandidates> {
        let ["tcp", host, srflx, so] = parts else {
            return None;
        };
        let opt = |s: &str| -> Option<Option<SocketAddr>> {
            if s == "-" {
                Some(None)
            } else {
                s.parse().ok().map(Some)
            }
        };
        Some(TcpCandidates {
            host: host.parse().ok()?,
            srflx: opt(srflx)?,
            so: opt(so)?,
        })
    }
}

/// Settings of one ICE-TCP peer.
#[derive(Clone, Debug)]
pub struct TcpPunchConfig {
    pub pair: String,
    /// The rendezvous server (UDP).
    pub rendezvous: SocketAddr,
    /// A STUN server that answers over TCP.
    pub stun: SocketAddr,
    /// How long the peer with the higher S-O address waits before its S-O connect.
    pub so_stagger: Duration,
}

/// Which local port a STUN lookup runs from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lookup {
    Passive,
    So,
}

/// One outgoing connection attempt.
#[derive(Debug)]
struct Attempt {
    kind: TcpPath,
    to: SocketAddr,
}

/// One side of an ICE-TCP attempt; its public fields are the result.
pub struct TcpPunchPeer {
    cfg: TcpPunchConfig,
    udp: Option<SockId>,
    listener: Option<ListenerId>,
    /// The local address of the S-O port.
    so_local: Option<SocketAddr>,
    /// Running STUN lookups: which port, transaction id, bytes received.
    stun: BTreeMap<ConnId, (Lookup, [u8; 12], Vec<u8>)>,
    lookups_settled: u8,
    pub local: Option<TcpCandidates>,
    pub remote: Option<TcpCandidates>,
    attempts: BTreeMap<ConnId, Attempt>,
    /// Partial lines, per connection.
    lines: BTreeMap<ConnId, Vec<u8>>,
    /// Kinds of our own attempts that connected and were answered, with when.
    pub succeeded: BTreeMap<TcpPath, SimTime>,
    /// Why attempts failed, in order (for reports).
    pub failed: Vec<(TcpPath, SocketAddr, String)>,
    /// Connections the peer opened to our listener.
    pub accepted: u64,
    /// Lines that were not our protocol.
    pub malformed: u64,
}

impl TcpPunchPeer {
    pub fn new(cfg: TcpPunchConfig) -> Self {
        TcpPunchPeer {
            cfg,
            udp: None,
            listener: None,
            so_local: None,
            stun: BTreeMap::new(),
            lookups_settled: 0,
            local: None,
            remote: None,
            attempts: BTreeMap::new(),
            lines: BTreeMap::new(),
            succeeded: BTreeMap::new(),
            failed: Vec::new(),
            accepted: 0,
            malformed: 0,
        }
    }

    /// The best kind of path this side's own attempts achieved.
    pub fn achieved(&self) -> TcpPath {
        self.succeeded
            .keys()
            .next()
            .copied()
            .unwrap_or(TcpPath::None)
    }

    fn lookup(&mut self, cx: &mut Ctx<'_>, which: Lookup, from: SocketAddr) {
        match cx.tcp_connect_from(from, self.cfg.stun) {
            Ok(conn) => {
                let txid = cx.rng().random();
                self.stun.insert(conn, (which, txid, Vec::new()));
            }
            Err(_) => self.lookups_settled += 1,
        }
    }

    fn settle_lookup(&mut self, cx: &mut Ctx<'_>, conn: ConnId, mapped: Option<SocketAddr>) {
        let Some((which, _, _)) = self.stun.remove(&conn) else {
            return;
        };
        self.lookups_settled += 1;
        if let (Some(local), Some(a)) = (self.local.as_mut(), mapped) {
            match which {
                Lookup::Passive => local.srflx = Some(a),
                Lookup::So => local.so = Some(a),
            }
        }
        cx.tcp_close(conn);
        self.register(cx);
    }

    fn register(&mut self, cx: &mut Ctx<'_>) {
        if self.lookups_settled < 2 || self.remote.is_some() {
            return;
        }
        let (Some(udp), Some(local)) = (self.udp, &self.local) else {
            return;
        };
        let msg = format!("{MAGIC} REG {} {}", self.cfg.pair, local.encode());
        let _ = cx.udp_send(udp, self.cfg.rendezvous, msg.as_bytes());
        cx.set_timer(Duration::from_secs(1), T_REGISTER);
    }

    fn start_checks(&mut self, cx: &mut Ctx<'_>, remote: TcpCandidates) {
        if self.remote.is_some() {
            return;
        }
        cx.trace(&format!(
            "tcp-punch {} remote {}",
            self.cfg.pair,
            remote.encode()
        ));
        self.remote = Some(remote.clone());
        self.attempt(cx, TcpPath::Host, None, remote.host);
        if let Some(s) = remote.srflx.filter(|&s| s != remote.host) {
            self.attempt(cx, TcpPath::Srflx, None, s);
        }
        let mine = self.local.as_ref().and_then(|l| l.so);
        if let (Some(mine), Some(theirs)) = (mine, remote.so) {
            if mine < theirs {
                self.connect_so(cx);
            } else {
                cx.set_timer(self.cfg.so_stagger, T_SO);
            }
        }
    }

    fn connect_so(&mut self, cx: &mut Ctx<'_>) {
        let (Some(from), Some(to)) = (self.so_local, self.remote.as_ref().and_then(|r| r.so))
        else {
            return;
        };
        self.attempt(cx, TcpPath::SimultaneousOpen, Some(from), to);
    }

    fn attempt(
        &mut self,
        cx: &mut Ctx<'_>,
        kind: TcpPath,
        from: Option<SocketAddr>,
        to: SocketAddr,
    ) {
        let r = match from {
            Some(f) => cx.tcp_connect_from(f, to),
            None => cx.tcp_connect(to),
        };
        match r {
            Ok(conn) => {
                self.attempts.insert(conn, Attempt { kind, to });
            }
            Err(e) => self.failed.push((kind, to, e.to_string())),
        }
    }

    /// Handle one line of the check protocol on `conn`.
    fn on_line(&mut self, cx: &mut Ctx<'_>, conn: ConnId, line: &str) {
        let parts: Vec<&str> = line.split(' ').collect();
        let [m, verb, pair, kind] = parts[..] else {
            self.malformed += 1;
            return;
        };
        if m != MAGIC || pair != self.cfg.pair {
            self.malformed += 1;
            return;
        }
        match verb {
            "HELLO" => {
                let reply = format!("{MAGIC} OK {} {kind}\n", self.cfg.pair);
                let _ = cx.tcp_send(conn, reply.as_bytes());
            }
            "OK" => {
                let Some(a) = self.attempts.get(&conn) else {
                    return;
                };
                if kind != a.kind.to_string() {
                    self.malformed += 1;
                    return;
                }
                let (kind, to) = (a.kind, a.to);
                if let std::collections::btree_map::Entry::Vacant(e) = self.succeeded.entry(kind) {
                    e.insert(cx.now());
                    cx.trace(&format!(
                        "tcp-punch {} direct {kind} to {to}",
                        self.cfg.pair
                    ));
                }
            }
            _ => self.malformed += 1,
        }
    }

    fn on_stun_data(&mut self, cx: &mut Ctx<'_>, conn: ConnId, data: &[u8]) {
        let Some((_, txid, buf)) = self.stun.get_mut(&conn) else {
            return;
        };
        buf.extend_from_slice(data);
        let len = match stream_frame(buf, MAX_STUN_RESPONSE) {
            Ok(None) => return,
            Ok(Some(len)) => len,
            Err(_) => {
                self.settle_lookup(cx, conn, None);
                return;
            }
        };
        let mapped = Message::decode(&buf[..len])
            .ok()
            .filter(|m| m.txid == *txid && m.class == Class::SuccessResponse)
            .and_then(|m| m.xor_mapped());
        self.settle_lookup(cx, conn, mapped);
    }
}

impl App for TcpPunchPeer {
    fn start(&mut self, cx: &mut Ctx<'_>) {
        let Ok(udp) = cx.udp_bind(SocketAddr::from(([0, 0, 0, 0], 0))) else {
            return;
        };
        self.udp = Some(udp);
        // The S-O port: the UDP socket's number, free for TCP since ephemeral TCP ports
        // skip it.
        self.so_local = cx.local_addr(udp).ok();
        let Ok(listener) = cx.tcp_listen(SocketAddr::from(([0, 0, 0, 0], 0))) else {
            return;
        };
        self.listener = Some(listener);
        let Ok(host) = cx.tcp_listener_addr(listener) else {
            return;
        };
        self.local = Some(TcpCandidates {
            host,
            srflx: None,
            so: None,
        });
        self.lookup(cx, Lookup::Passive, host);
        if let Some(so) = self.so_local {
            self.lookup(cx, Lookup::So, so);
        }
        cx.set_timer(Duration::from_secs(3), T_STUN_GIVE_UP);
    }

    fn on_udp(
        &mut self,
        cx: &mut Ctx<'_>,
        _sock: SockId,
        from: SocketAddr,
        _to: SocketAddr,
        data: &[u8],
    ) {
        if from != self.cfg.rendezvous {
            return;
        }
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        let parts: Vec<&str> = text.split(' ').collect();
        if parts.get(..3) != Some(&[MAGIC, "PEER", self.cfg.pair.as_str()][..]) {
            return;
        }
        match TcpCandidates::decode(&parts[3..]) {
            Some(c) => self.start_checks(cx, c),
            None => self.malformed += 1,
        }
    }

    fn on_tcp(&mut self, cx: &mut Ctx<'_>, ev: TcpEvent) {
        match ev {
            TcpEvent::Accepted { conn, .. } => {
                self.accepted += 1;
                self.lines.insert(conn, Vec::new());
            }
            TcpEvent::Connected { conn } => {
                if let Some((_, txid, _)) = self.stun.get(&conn) {
                    let req = Message::new(Class::Request, Method::Binding, *txid).encode();
                    let _ = cx.tcp_send(conn, &req);
                } else if let Some(a) = self.attempts.get(&conn) {
                    let hello = format!("{MAGIC} HELLO {} {}\n", self.cfg.pair, a.kind);
                    self.lines.insert(conn, Vec::new());
                    let _ = cx.tcp_send(conn, hello.as_bytes());
                }
            }
            TcpEvent::Data { conn, data } => {
                if self.stun.contains_key(&conn) {
                    self.on_stun_data(cx, conn, &data);
                    return;
                }
                let Some(buf) = self.lines.get_mut(&conn) else {
                    return;
                };
                buf.extend_from_slice(&data);
                let mut lines = Vec::new();
                while let Some(i) = buf.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=i).collect();
                    lines.push(String::from_utf8_lossy(&line[..i]).into_owned());
                }
                if buf.len() > MAX_LINE {
                    self.malformed += 1;
                    self.lines.remove(&conn);
                    cx.tcp_close(conn);
                }
                for l in lines {
                    self.on_line(cx, conn, &l);
                }
            }
            TcpEvent::PeerClosed { conn } => {
                self.lines.remove(&conn);
                cx.tcp_close(conn);
            }
            TcpEvent::Reset { conn, reason } => {
                if self.stun.contains_key(&conn) {
                    self.settle_lookup(cx, conn, None);
                }
                self.lines.remove(&conn);
                if let Some(a) = self.attempts.remove(&conn) {
                    cx.trace(&format!(
                        "tcp-punch {} {} to {} failed: {reason}",
                        self.cfg.pair, a.kind, a.to
                    ));
                    self.failed.push((a.kind, a.to, reason.to_string()));
                }
            }
        }
    }

    fn on_timer(&mut self, cx: &mut Ctx<'_>, token: u64) {
        match token {
            T_STUN_GIVE_UP => {
                let pending: Vec<ConnId> = self.stun.keys().copied().collect();
                for conn in pending {
                    self.settle_lookup(cx, conn, None);
                }
                self.lookups_settled = 2;
                self.register(cx);
            }
            T_REGISTER => self.register(cx),
            T_SO => self.connect_so(cx),
            _ => {}
        }
    }
    crate::app_any!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Addresses as text carries them (no IPv6 flow label or scope).
    fn addr() -> impl Strategy<Value = SocketAddr> {
        (any::<std::net::IpAddr>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::new(ip, port))
    }

    proptest! {
        #[test]
        fn candidate_text_never_panics(text in "\\PC{0,80}") {
            let parts: Vec<&str> = text.split(' ').collect();
            let _ = TcpCandidates::decode(&parts);
        }

        #[test]
        fn candidates_round_trip(
            h in addr(),
            s in proptest::option::of(addr()),
            o in proptest::option::of(addr()),
        ) {
            let c = TcpCandidates { host: h, srflx: s, so: o };
            let text = c.encode();
            let parts: Vec<&str> = text.split(' ').collect();
            prop_assert_eq!(TcpCandidates::decode(&parts), Some(c));
        }
    }

    #[test]
    fn candidates_round_trip_and_reject_garbage() {
        let c = TcpCandidates {
            host: "10.0.1.2:50000".parse().unwrap(),
            srflx: Some("198.18.0.3:50000".parse().unwrap()),
            so: None,
        };
        let text = c.encode();
        let parts: Vec<&str> = text.split(' ').collect();
        assert_eq!(TcpCandidates::decode(&parts), Some(c));
        for bad in ["tcp x - -", "udp 1.2.3.4:5 - -", "tcp 1.2.3.4:5 -", ""] {
            let parts: Vec<&str> = bad.split(' ').collect();
            assert_eq!(TcpCandidates::decode(&parts), None, "{bad}");
        }
    }
}
