//! The host network stack: UDP sockets (with multicast groups), the stream transport,
//! an optional VPN/Tor tunnel client, a clock with drift, a seeded RNG, a disk that
//! survives crashes, and the record of what the host saw (for privacy checks).

use crate::app::{AppId, NetError, TcpEvent};
use crate::packet::{tcp_flags, Body, Packet, TcpSegment};
use crate::pcap::Pcap;
use crate::sim::{derive_rng, AppCall, ConnId, Core, Event, ListenerId, NodeId, SockId};
use crate::tcp::{ConnEvent, TcpConn, TcpState};
use crate::time::{HostClock, SimTime};
use bytes::Bytes;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Keepalive period of tunnel clients, so home NAT bindings toward the gateway stay up.
const TUNNEL_KEEPALIVE: Duration = Duration::from_secs(25);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TunnelClient {
    pub gateway: NodeId,
    pub entry: SocketAddr,
    /// The address sockets use; only the gateway sees it.
    pub inner: IpAddr,
}

#[derive(Debug)]
struct UdpSock {
    local: SocketAddr,
    app: AppId,
    groups: Vec<IpAddr>,
}

#[derive(Debug)]
struct Conn {
    tcp: TcpConn,
    app: AppId,
    timer_at: Option<SimTime>,
}

/// Counters a host keeps about its traffic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostStats {
    pub sent_packets: u64,
    pub sent_bytes: u64,
    pub received_packets: u64,
    pub received_bytes: u64,
    pub unreachable: u64,
}

#[derive(Debug)]
pub struct Host {
    /// Physical interface addresses, primary IPv4 first.
    pub addrs: Vec<IpAddr>,
    pub tunnel: Option<TunnelClient>,
    pub clock: HostClock,
    pub(crate) rng: ChaCha8Rng,
    pub down: bool,
    pub(crate) incarnation: u32,
    pub disk: BTreeMap<String, Vec<u8>>,
    /// Every source address of every packet this host received (outer and inner).
    pub seen_sources: BTreeSet<IpAddr>,
    pub stats: HostStats,
    pub pcap: Option<Pcap>,
    socks: BTreeMap<SockId, UdpSock>,
    bound: BTreeMap<SocketAddr, SockId>,
    listeners: BTreeMap<SocketAddr, (ListenerId, AppId)>,
    conns: BTreeMap<ConnId, Conn>,
    by_tuple: BTreeMap<(SocketAddr, SocketAddr), ConnId>,
    next_handle: u64,
    next_port: u16,
}

impl Host {
    pub(crate) fn new(seed: u64, name: &str, capture: bool) -> Self {
        let mut rng = derive_rng(seed, &format!("host/{name}"));
        let next_port = rng.random_range(49152..=60999u16);
        Host {
            addrs: Vec::new(),
            tunnel: None,
            clock: HostClock::default(),
            rng,
            down: false,
            incarnation: 0,
            disk: BTreeMap::new(),
            seen_sources: BTreeSet::new(),
            stats: HostStats::default(),
            pcap: capture.then(Pcap::new),
            socks: BTreeMap::new(),
            bound: BTreeMap::new(),
            listeners: BTreeMap::new(),
            conns: BTreeMap::new(),
            by_tuple: BTreeMap::new(),
            next_handle: 0,
            next_port,
        }
    }

    /// The IPv4 address applications use: the tunnel's when there is one.
    pub fn primary_v4(&self) -> Option<IpAddr> {
        if let Some(t) = &self.tunnel {
            return Some(t.inner);
        }
        self.addrs.iter().copied().find(|a| a.is_ipv4())
    }

    pub fn primary_v6(&self) -> Option<IpAddr> {
        if self.tunnel.is_some() {
            return None; // a tunnelled host must not leak over IPv6
        }
        self.addrs.iter().copied().find(|a| a.is_ipv6())
    }

    fn owns(&self, ip: IpAddr) -> bool {
        self.addrs.contains(&ip) || self.tunnel.map(|t| t.inner) == Some(ip)
    }

    fn handle(&mut self) -> u64 {
        self.next_handle += 1;
        self.next_handle
    }

    fn ephemeral(&mut self, ip: IpAddr) -> u16 {
        for _ in 0..20000 {
            let p = self.next_port;
            self.next_port = if self.next_port >= 60999 {
                49152
            } else {
                self.next_port + 1
            };
            let sa = SocketAddr::new(ip, p);
            if !self.bound.contains_key(&sa) && !self.listeners.contains_key(&sa) {
                return p;
            }
        }
        0
    }

    fn resolve_bind(&mut self, addr: SocketAddr) -> Result<SocketAddr, NetError> {
        let ip = if addr.ip().is_unspecified() {
            if addr.is_ipv4() {
                self.primary_v4()
            } else {
                self.primary_v6()
            }
            .ok_or(NetError::NoAddress)?
        } else if self.owns(addr.ip()) {
            addr.ip()
        } else {
            return Err(NetError::AddrNotAvailable(addr.ip()));
        };
        let port = if addr.port() == 0 {
            self.ephemeral(ip)
        } else {
            addr.port()
        };
        Ok(SocketAddr::new(ip, port))
    }

    /// Sockets and connections currently open (for tests).
    pub fn open_sockets(&self) -> usize {
        self.socks.len() + self.conns.len() + self.listeners.len()
    }
}

impl Core {
    pub(crate) fn host_incarnation(&self, node: NodeId) -> Option<u32> {
        self.host(node).filter(|h| !h.down).map(|h| h.incarnation)
    }

    pub(crate) fn is_down(&self, node: NodeId) -> bool {
        self.host(node).map(|h| h.down).unwrap_or(false)
    }

    pub(crate) fn host_clock(&self, node: NodeId) -> HostClock {
        self.host(node).map(|h| h.clock).unwrap_or_default()
    }

    pub(crate) fn host_now(&self, node: NodeId) -> SimTime {
        self.host_clock(node).local(self.now)
    }

    pub(crate) fn set_clock(&mut self, node: NodeId, clock: HostClock) {
        if let Some(h) = self.host_mut(node) {
            h.clock = clock;
        }
        let msg = format!(
            "fault clock {} offset={:?} drift={}ppm",
            self.node_name(node),
            clock.offset,
            clock.drift_ppm
        );
        self.trace_line(&msg);
    }

    pub(crate) fn host_addrs(&self, node: NodeId) -> Vec<IpAddr> {
        let Some(h) = self.host(node) else {
            return Vec::new();
        };
        match h.tunnel {
            Some(t) => vec![t.inner],
            None => h.addrs.clone(),
        }
    }

    pub(crate) fn disk(&mut self, node: NodeId) -> &mut BTreeMap<String, Vec<u8>> {
        &mut self.host_mut(node).expect("apps run on hosts").disk
    }

    fn h(&mut self, node: NodeId) -> &mut Host {
        self.host_mut(node).expect("apps run on hosts")
    }

    // ---- UDP -------------------------------------------------------------------------

    pub(crate) fn udp_bind(
        &mut self,
        node: NodeId,
        app: AppId,
        addr: SocketAddr,
    ) -> Result<SockId, NetError> {
        let h = self.h(node);
        let local = h.resolve_bind(addr)?;
        if h.bound.contains_key(&local) {
            return Err(NetError::AddrInUse(local));
        }
        let id = h.handle();
        h.socks.insert(
            id,
            UdpSock {
                local,
                app,
                groups: Vec::new(),
            },
        );
        h.bound.insert(local, id);
        Ok(id)
    }

    pub(crate) fn udp_local_addr(
        &self,
        node: NodeId,
        sock: SockId,
    ) -> Result<SocketAddr, NetError> {
        self.host(node)
            .and_then(|h| h.socks.get(&sock))
            .map(|s| s.local)
            .ok_or(NetError::BadHandle)
    }

    pub(crate) fn udp_join(
        &mut self,
        node: NodeId,
        sock: SockId,
        group: IpAddr,
    ) -> Result<(), NetError> {
        let s = self
            .h(node)
            .socks
            .get_mut(&sock)
            .ok_or(NetError::BadHandle)?;
        if !s.groups.contains(&group) {
            s.groups.push(group);
        }
        Ok(())
    }

    pub(crate) fn udp_close(&mut self, node: NodeId, sock: SockId) {
        let h = self.h(node);
        if let Some(s) = h.socks.remove(&sock) {
            h.bound.remove(&s.local);
        }
    }

    pub(crate) fn udp_send(
        &mut self,
        node: NodeId,
        sock: SockId,
        to: SocketAddr,
        data: Bytes,
    ) -> Result<(), NetError> {
        let local = self.udp_local_addr(node, sock)?;
        let id = self.packet_id();
        self.host_output(
            node,
            Packet {
                id,
                src: local,
                dst: to,
                ttl: 64,
                body: Body::Udp(data),
            },
        );
        Ok(())
    }

    /// Everything a host sends goes through here: tunnel wrapping, capture, trace, link.
    pub(crate) fn host_output(&mut self, node: NodeId, pkt: Packet) {
        if self.is_down(node) {
            return;
        }
        if let Some(t) = &mut self.trace {
            let name = &self.nodes[node].name;
            t.packet_line(self.now, "send", name, &pkt);
        }
        let now = self.now;
        let h = self.h(node);
        if h.owns(pkt.dst.ip()) && !pkt.is_multicast() {
            // Loopback: no link, no capture; delivered as its own event.
            self.schedule(now, Event::Loopback { node, pkt });
            return;
        }
        let wire = match h.tunnel {
            Some(t) if pkt.src.ip() == t.inner => {
                let outer_src = h
                    .addrs
                    .iter()
                    .copied()
                    .find(|a| a.is_ipv4())
                    .expect("tunnel hosts have IPv4");
                let id = self.packet_id();
                Packet {
                    id,
                    src: SocketAddr::new(outer_src, t.entry.port()),
                    dst: t.entry,
                    ttl: 64,
                    body: Body::Tunnel(Box::new(pkt)),
                }
            }
            _ => pkt,
        };
        let h = self.h(node);
        h.stats.sent_packets += 1;
        h.stats.sent_bytes += wire.wire_len() as u64;
        if let Some(p) = &mut h.pcap {
            p.record(now, &wire);
        }
        match self.nodes[node].uplink {
            Some(l) => self.transmit(node, l, wire),
            None => self.drop_packet(node, &wire, "host has no link"),
        }
    }

    pub(crate) fn host_receive(&mut self, node: NodeId, pkt: Packet) {
        if self.is_down(node) {
            self.drop_packet(node, &pkt, "host is down");
            return;
        }
        let now = self.now;
        let h = self.h(node);
        if let Some(p) = &mut h.pcap {
            p.record(now, &pkt);
        }
        h.seen_sources.insert(pkt.src.ip());
        h.stats.received_packets += 1;
        h.stats.received_bytes += pkt.wire_len() as u64;
        match (pkt.body, h.tunnel) {
            (Body::Tunnel(inner), Some(t)) if pkt.src == t.entry => {
                h.seen_sources.insert(inner.src.ip());
                self.deliver(node, *inner);
            }
            (body, _) => self.deliver(node, Packet { body, ..pkt }),
        }
    }

    /// Hand a packet addressed to this host to its sockets.
    pub(crate) fn deliver(&mut self, node: NodeId, pkt: Packet) {
        if let Some(t) = &mut self.trace {
            let name = &self.nodes[node].name;
            t.packet_line(self.now, "recv", name, &pkt);
        }
        let h = self.h(node);
        if pkt.is_multicast() {
            let Body::Udp(data) = pkt.body else { return };
            let group = pkt.dst.ip();
            let targets: Vec<(SockId, AppId)> = h
                .socks
                .iter()
                .filter(|(_, s)| s.local.port() == pkt.dst.port() && s.groups.contains(&group))
                .map(|(&id, s)| (id, s.app))
                .collect();
            for (sock, app) in targets {
                self.pending.push((
                    node,
                    app,
                    AppCall::Udp {
                        sock,
                        from: pkt.src,
                        to: pkt.dst,
                        data: data.clone(),
                    },
                ));
            }
            return;
        }
        if !h.owns(pkt.dst.ip()) {
            self.drop_packet(node, &pkt, "not addressed to this host");
            return;
        }
        match pkt.body {
            Body::Udp(data) => match h
                .bound
                .get(&pkt.dst)
                .and_then(|id| h.socks.get(id).map(|s| (*id, s.app)))
            {
                Some((sock, app)) => {
                    self.pending.push((
                        node,
                        app,
                        AppCall::Udp {
                            sock,
                            from: pkt.src,
                            to: pkt.dst,
                            data,
                        },
                    ));
                }
                None => {
                    h.stats.unreachable += 1;
                    let p = Packet {
                        body: Body::Udp(data),
                        ..pkt
                    };
                    self.drop_packet(node, &p, "port unreachable");
                }
            },
            Body::Tcp(seg) => self.tcp_receive(node, pkt.src, pkt.dst, seg),
            Body::Tunnel(_) => {
                let p = pkt;
                self.drop_packet(node, &p, "unexpected tunnel packet");
            }
        }
    }

    // ---- tunnels -----------------------------------------------------------------------

    pub(crate) fn start_tunnel(&mut self, node: NodeId) {
        self.tunnel_keepalive(node);
    }

    /// Send an empty packet through the tunnel so the path to the gateway stays open, and
    /// schedule the next one.
    pub(crate) fn tunnel_keepalive(&mut self, node: NodeId) {
        let Some(h) = self.host(node) else { return };
        let (Some(t), false) = (h.tunnel, h.down) else {
            return;
        };
        let inc = h.incarnation;
        let id = self.packet_id();
        let ka = Packet {
            id,
            src: SocketAddr::new(t.inner, 0),
            dst: SocketAddr::new(t.entry.ip(), 0),
            ttl: 64,
            body: Body::Udp(Bytes::new()),
        };
        self.host_output(node, ka);
        let at = self.now + TUNNEL_KEEPALIVE;
        self.schedule(
            at,
            Event::TunnelKeepalive {
                node,
                incarnation: inc,
            },
        );
    }

    // ---- TCP ---------------------------------------------------------------------------

    pub(crate) fn tcp_listen(
        &mut self,
        node: NodeId,
        app: AppId,
        addr: SocketAddr,
    ) -> Result<ListenerId, NetError> {
        let h = self.h(node);
        let local = h.resolve_bind(addr)?;
        if h.listeners.contains_key(&local) {
            return Err(NetError::AddrInUse(local));
        }
        let id = h.handle();
        h.listeners.insert(local, (id, app));
        Ok(id)
    }

    /// Stop listening; connections it accepted stay open, and a later SYN to its address
    /// is refused as for any closed port.
    pub(crate) fn tcp_unlisten(
        &mut self,
        node: NodeId,
        listener: ListenerId,
    ) -> Result<(), NetError> {
        let h = self.h(node);
        let addr = h
            .listeners
            .iter()
            .find(|(_, (id, _))| *id == listener)
            .map(|(a, _)| *a)
            .ok_or(NetError::BadHandle)?;
        h.listeners.remove(&addr);
        Ok(())
    }

    pub(crate) fn tcp_listener_addr(
        &self,
        node: NodeId,
        listener: ListenerId,
    ) -> Result<SocketAddr, NetError> {
        self.host(node)
            .and_then(|h| h.listeners.iter().find(|(_, (id, _))| *id == listener))
            .map(|(a, _)| *a)
            .ok_or(NetError::BadHandle)
    }

    /// Open a connection from `from` (port 0: an ephemeral port). Several connections
    /// may share a local port, and a listener too (SO_REUSEADDR, as ICE-TCP needs), as
    /// long as the remote ends differ.
    pub(crate) fn tcp_connect(
        &mut self,
        node: NodeId,
        app: AppId,
        from: Option<SocketAddr>,
        to: SocketAddr,
    ) -> Result<ConnId, NetError> {
        let now = self.now;
        let simultaneous_open = !self.cfg.sabotage.tcp_no_simultaneous_open;
        let h = self.h(node);
        let any = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
        let local = h.resolve_bind(from.unwrap_or_else(|| any.parse().expect("literal")))?;
        if h.by_tuple.contains_key(&(local, to)) {
            return Err(NetError::AddrInUse(local));
        }
        let iss = h.rng.random::<u32>();
        let id = h.handle();
        let mut tcp = TcpConn::connect(now, local, to, iss);
        tcp.simultaneous_open = simultaneous_open;
        h.by_tuple.insert((local, to), id);
        h.conns.insert(
            id,
            Conn {
                tcp,
                app,
                timer_at: None,
            },
        );
        self.tcp_flush(node, id);
        Ok(id)
    }

    pub(crate) fn tcp_send(
        &mut self,
        node: NodeId,
        conn: ConnId,
        data: &[u8],
    ) -> Result<(), NetError> {
        let now = self.now;
        let c = self
            .h(node)
            .conns
            .get_mut(&conn)
            .ok_or(NetError::BadHandle)?;
        c.tcp.send(now, data);
        self.tcp_flush(node, conn);
        Ok(())
    }

    pub(crate) fn tcp_close(&mut self, node: NodeId, conn: ConnId) {
        let now = self.now;
        if let Some(c) = self.h(node).conns.get_mut(&conn) {
            c.tcp.close(now);
            self.tcp_flush(node, conn);
        }
    }

    pub(crate) fn tcp_addrs(
        &self,
        node: NodeId,
        conn: ConnId,
    ) -> Result<(SocketAddr, SocketAddr), NetError> {
        let c = self
            .host(node)
            .and_then(|h| h.conns.get(&conn))
            .ok_or(NetError::BadHandle)?;
        Ok((c.tcp.local, c.tcp.remote))
    }

    fn tcp_receive(&mut self, node: NodeId, from: SocketAddr, to: SocketAddr, seg: TcpSegment) {
        let now = self.now;
        let h = self.h(node);
        if let Some(&id) = h.by_tuple.get(&(to, from)) {
            if let Some(c) = h.conns.get_mut(&id) {
                c.tcp.on_segment(now, &seg);
                self.tcp_flush(node, id);
            }
            return;
        }
        if seg.flags & tcp_flags::SYN != 0 && seg.flags & tcp_flags::ACK == 0 {
            if let Some(&(listener, app)) = h.listeners.get(&to) {
                let iss = h.rng.random::<u32>();
                let id = h.handle();
                let tcp = TcpConn::accept(now, to, from, iss, &seg);
                h.by_tuple.insert((to, from), id);
                h.conns.insert(
                    id,
                    Conn {
                        tcp,
                        app,
                        timer_at: None,
                    },
                );
                self.pending.push((
                    node,
                    app,
                    AppCall::Tcp(TcpEvent::Accepted {
                        listener,
                        conn: id,
                        remote: from,
                    }),
                ));
                self.tcp_flush(node, id);
                return;
            }
        }
        if seg.flags & tcp_flags::RST == 0 {
            // Nobody listens: refuse with a RST, as a real stack does.
            let rst = TcpSegment {
                flags: tcp_flags::RST | tcp_flags::ACK,
                seq: seg.ack,
                ack: seg.seq.wrapping_add(seg.data.len() as u32 + 1),
                window: 0,
                data: Bytes::new(),
            };
            let id = self.packet_id();
            self.host_output(
                node,
                Packet {
                    id,
                    src: to,
                    dst: from,
                    ttl: 64,
                    body: Body::Tcp(rst),
                },
            );
        }
    }

    pub(crate) fn tcp_timeout(&mut self, node: NodeId, conn: ConnId) {
        let now = self.now;
        let Some(c) = self.h(node).conns.get_mut(&conn) else {
            return;
        };
        c.timer_at = None;
        c.tcp.on_timeout(now);
        self.tcp_flush(node, conn);
    }

    /// Move a connection's output onto the network and its events to its application.
    fn tcp_flush(&mut self, node: NodeId, conn: ConnId) {
        let Some(inc) = self.host_incarnation(node) else {
            return;
        };
        let h = self.h(node);
        let Some(c) = h.conns.get_mut(&conn) else {
            return;
        };
        let (local, remote, app) = (c.tcp.local, c.tcp.remote, c.app);
        let mut segs = Vec::new();
        while let Some(s) = c.tcp.poll_segment() {
            segs.push(s);
        }
        let mut evs = Vec::new();
        while let Some(e) = c.tcp.poll_event() {
            evs.push(match e {
                ConnEvent::Connected => TcpEvent::Connected { conn },
                ConnEvent::Data(data) => TcpEvent::Data { conn, data },
                ConnEvent::PeerClosed => TcpEvent::PeerClosed { conn },
                ConnEvent::Reset(reason) => TcpEvent::Reset { conn, reason },
            });
        }
        let deadline = c.tcp.rto_deadline;
        let schedule = match (deadline, c.timer_at) {
            (Some(d), Some(t)) => d < t,
            (Some(_), None) => true,
            _ => false,
        };
        if schedule {
            c.timer_at = deadline;
        }
        let closed = c.tcp.state == TcpState::Closed;
        if closed {
            h.conns.remove(&conn);
            h.by_tuple.remove(&(local, remote));
        }
        for s in segs {
            let id = self.packet_id();
            self.host_output(
                node,
                Packet {
                    id,
                    src: local,
                    dst: remote,
                    ttl: 64,
                    body: Body::Tcp(s),
                },
            );
        }
        for e in evs {
            self.pending.push((node, app, AppCall::Tcp(e)));
        }
        if let (true, Some(d)) = (schedule && !closed, deadline) {
            self.schedule(
                d,
                Event::TcpTimer {
                    node,
                    conn,
                    incarnation: inc,
                },
            );
        }
    }

    // ---- crash and restart -----------------------------------------------------------

    pub(crate) fn crash_host(&mut self, node: NodeId) {
        let name = self.node_name(node).to_string();
        if let Some(h) = self.host_mut(node) {
            h.down = true;
            h.incarnation += 1;
            h.socks.clear();
            h.bound.clear();
            h.listeners.clear();
            h.conns.clear();
            h.by_tuple.clear();
        }
        self.pending.retain(|(n, _, _)| *n != node);
        self.trace_line(&format!("fault crash {name}"));
    }

    pub(crate) fn restart_host(&mut self, node: NodeId) {
        let name = self.node_name(node).to_string();
        if let Some(h) = self.host_mut(node) {
            h.down = false;
        }
        self.trace_line(&format!("fault restart {name}"));
        if self.host(node).and_then(|h| h.tunnel).is_some() {
            self.start_tunnel(node);
        }
    }
}
