//! Nodes and forwarding: the internet core, LAN segments, NAT boxes, tunnel gateways
//! (VPN servers, the Tor network) and hosts. Topologies are trees: every node but the
//! internet and isolated LANs has one uplink, and each router knows the exact addresses
//! below it, so routing needs no prefixes.

use crate::host::Host;
use crate::link::{LinkDir, LinkParams};
use crate::nat::{Dir, NatConfig, NatDrop, NatTable, UnsolicitedSyn, SYN_HOLD};
use crate::packet::{tcp_flags, Body, Packet, Proto, TcpSegment};
use crate::sim::{Core, Event, Link, LinkId, NodeId, Sim};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// The simulated internet's address plan (documentation and benchmarking ranges only).
pub const PUBLIC_V4_BASE: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 0);
/// Tunnel endpoints listen here (WireGuard's port for VPNs, Tor's ORPort for Tor).
pub const VPN_PORT: u16 = 51820;
pub const TOR_PORT: u16 = 9001;

#[derive(Default, Clone, Debug)]
pub(crate) struct AddrPlan {
    next_public: u32,
    next_subnet: u32,
    next_site: u16,
}

impl AddrPlan {
    fn public_v4(&mut self) -> Ipv4Addr {
        self.next_public += 1;
        Ipv4Addr::from(u32::from(PUBLIC_V4_BASE) + self.next_public)
    }
    /// A fresh private /24: 10.a.b.0, unique within the run so traces stay readable.
    fn subnet(&mut self) -> Ipv4Addr {
        self.next_subnet += 1;
        let n = self.next_subnet;
        Ipv4Addr::new(10, (n >> 8) as u8, n as u8, 0)
    }
    fn site(&mut self) -> u16 {
        self.next_site += 1;
        self.next_site
    }
}

/// What kind of tunnel a gateway terminates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GatewayKind {
    /// Carries UDP and TCP; traffic leaves from the server's address.
    Vpn,
    /// Carries TCP only; traffic leaves from an exit relay's address; UDP is dropped.
    Tor,
}

/// A NAT box: translation table plus its addresses.
#[derive(Debug)]
pub struct NatBox {
    pub table: NatTable,
    pub wan: Ipv4Addr,
    pub lan_prefix: Ipv4Addr,
    pub site: Option<u16>,
    next_host: u32,
}

/// A VPN server or the Tor network seen as one box: tunnels in at `entry`, traffic out
/// at `exit`, with a per-client extra delay (the circuit or the detour).
#[derive(Debug)]
pub struct Gateway {
    pub kind: GatewayKind,
    pub entry: IpAddr,
    pub exit: IpAddr,
    pub table: NatTable,
    /// Inner (tunnel) address -> the client's outer endpoint as last seen.
    pub clients: BTreeMap<IpAddr, SocketAddr>,
    delays: BTreeMap<IpAddr, Duration>,
    pub delay_range: (Duration, Duration),
    inner_prefix: Ipv4Addr,
    next_inner: u32,
    /// UDP packets refused (Tor).
    pub udp_dropped: u64,
}

#[derive(Debug)]
pub enum NodeKind {
    /// The public internet core: routes unicast, never multicast.
    Internet,
    /// A LAN segment (a switch): floods multicast to its ports.
    Lan {
        prefix: Ipv4Addr,
        next_host: u32,
    },
    Nat(NatBox),
    Gateway(Gateway),
    Host(Box<Host>),
}

#[derive(Debug)]
pub struct Node {
    pub name: String,
    pub kind: NodeKind,
    pub parent: Option<NodeId>,
    pub uplink: Option<LinkId>,
    /// Exact addresses reachable below this node, and the link toward each.
    pub down: BTreeMap<IpAddr, LinkId>,
    /// Links to children (the ports multicast floods to).
    pub child_links: Vec<LinkId>,
    pub drops: u64,
}

/// Options for a new host.
#[derive(Clone, Debug)]
pub struct HostOpts {
    /// Parent node: the internet (default), a NAT or a LAN segment.
    pub behind: Option<NodeId>,
    /// Access link, host to parent and parent to host.
    pub up: LinkParams,
    pub down: LinkParams,
    /// Extra IPv4 addresses on the same interface (a STUN server for RFC 5780 needs two).
    pub extra_addrs: usize,
    pub ipv6: bool,
    /// Send all traffic through this VPN or Tor gateway.
    pub via: Option<NodeId>,
    pub capture: bool,
}

impl Default for HostOpts {
    fn default() -> Self {
        let (up, down) = LinkParams::preset("internet").expect("preset exists");
        HostOpts {
            behind: None,
            up,
            down,
            extra_addrs: 0,
            ipv6: false,
            via: None,
            capture: false,
        }
    }
}

impl Core {
    pub(crate) fn add_internet(&mut self) {
        self.nodes.push(Node {
            name: "internet".into(),
            kind: NodeKind::Internet,
            parent: None,
            uplink: None,
            down: BTreeMap::new(),
            child_links: Vec::new(),
            drops: 0,
        });
    }

    fn push_node(&mut self, name: &str, kind: NodeKind) -> NodeId {
        self.nodes.push(Node {
            name: name.to_string(),
            kind,
            parent: None,
            uplink: None,
            down: BTreeMap::new(),
            child_links: Vec::new(),
            drops: 0,
        });
        self.nodes.len() - 1
    }

    /// Connect `child` under `parent` with a link (child→parent `up`, parent→child `down`).
    fn attach(
        &mut self,
        child: NodeId,
        parent: NodeId,
        up: LinkParams,
        down: LinkParams,
    ) -> LinkId {
        self.links.push(Link {
            ends: [child, parent],
            dirs: [LinkDir::new(up), LinkDir::new(down)],
        });
        let l = self.links.len() - 1;
        self.nodes[child].parent = Some(parent);
        self.nodes[child].uplink = Some(l);
        self.nodes[parent].child_links.push(l);
        l
    }

    /// Make `addr` (owned by `owner`) reachable: every ancestor up to `upto` (inclusive)
    /// learns which link leads to it.
    fn announce(&mut self, owner: NodeId, addr: IpAddr, global: bool) {
        let mut child = owner;
        while let Some(p) = self.nodes[child].parent {
            let link = self.nodes[child].uplink.expect("a child has an uplink");
            self.nodes[p].down.insert(addr, link);
            let stop = !global || matches!(self.nodes[p].kind, NodeKind::Internet);
            if stop {
                break;
            }
            child = p;
        }
    }

    /// Allocate an IPv4 address for a new child of `parent`.
    fn child_v4(&mut self, parent: NodeId) -> (Ipv4Addr, bool) {
        match &mut self.nodes[parent].kind {
            NodeKind::Internet => (self.addr_plan.public_v4(), true),
            NodeKind::Nat(n) => {
                n.next_host += 1;
                (
                    Ipv4Addr::from(u32::from(n.lan_prefix) + 1 + n.next_host),
                    false,
                )
            }
            NodeKind::Lan { prefix, next_host } => {
                *next_host += 1;
                (Ipv4Addr::from(u32::from(*prefix) + 1 + *next_host), false)
            }
            _ => panic!("cannot attach below {}", self.nodes[parent].name),
        }
    }

    /// An IPv6 address for a new child of `parent`, if the parent's side has IPv6.
    fn child_v6(&mut self, parent: NodeId) -> Option<Ipv6Addr> {
        let n = self.nodes[parent].down.len() as u16 + 2;
        match &self.nodes[parent].kind {
            NodeKind::Internet => {
                let s = self.addr_plan.site();
                Some(Ipv6Addr::new(0x2001, 0xdb8, s, 0, 0, 0, 0, 1))
            }
            NodeKind::Nat(b) => b
                .site
                .map(|s| Ipv6Addr::new(0x2001, 0xdb8, s, 0, 0, 0, 0, n)),
            _ => None,
        }
    }

    pub fn host(&self, id: NodeId) -> Option<&Host> {
        match &self.nodes.get(id)?.kind {
            NodeKind::Host(h) => Some(h),
            _ => None,
        }
    }

    pub(crate) fn host_mut(&mut self, id: NodeId) -> Option<&mut Host> {
        match &mut self.nodes.get_mut(id)?.kind {
            NodeKind::Host(h) => Some(h),
            _ => None,
        }
    }

    /// Receive a packet that arrived over `link`.
    pub(crate) fn receive(&mut self, node: NodeId, link: LinkId, pkt: Packet) {
        match self.nodes[node].kind {
            NodeKind::Host(_) => self.host_receive(node, pkt),
            NodeKind::Internet | NodeKind::Lan { .. } => self.switch_receive(node, link, pkt),
            NodeKind::Nat(_) => self.nat_receive(node, link, pkt),
            NodeKind::Gateway(_) => self.gateway_receive(node, pkt),
        }
    }

    /// Route a packet by destination: down if known, else up, else drop.
    fn forward(&mut self, node: NodeId, ingress: Option<LinkId>, mut pkt: Packet) {
        if pkt.ttl <= 1 {
            self.drop_packet(node, &pkt, "ttl expired");
            return;
        }
        pkt.ttl -= 1;
        let n = &self.nodes[node];
        let out = match n.down.get(&pkt.dst.ip()) {
            Some(&l) => Some(l),
            None => n.uplink.filter(|&u| Some(u) != ingress),
        };
        match out {
            Some(l) => self.transmit(node, l, pkt),
            None => self.drop_packet(node, &pkt, "no route"),
        }
    }

    /// Copy a multicast packet to every child port but the one it came from (and, only
    /// when the model is sabotaged, upstream too).
    fn flood(&mut self, node: NodeId, ingress: LinkId, pkt: Packet) {
        let mut ports: Vec<LinkId> = self.nodes[node]
            .child_links
            .iter()
            .copied()
            .filter(|&l| l != ingress)
            .collect();
        if self.cfg.sabotage.multicast_escapes_lan {
            if let Some(u) = self.nodes[node].uplink.filter(|&u| u != ingress) {
                ports.push(u);
            }
        }
        for l in ports {
            self.transmit(node, l, pkt.clone());
        }
    }

    fn switch_receive(&mut self, node: NodeId, link: LinkId, pkt: Packet) {
        if pkt.is_multicast() {
            let floods = matches!(self.nodes[node].kind, NodeKind::Lan { .. })
                || self.cfg.sabotage.multicast_escapes_lan;
            if floods {
                self.flood(node, link, pkt);
            } else {
                self.drop_packet(node, &pkt, "multicast is not routed");
            }
            return;
        }
        self.forward(node, Some(link), pkt);
    }

    fn nat_receive(&mut self, node: NodeId, link: LinkId, mut pkt: Packet) {
        let from_wan = self.nodes[node].uplink == Some(link);
        if pkt.is_multicast() {
            if from_wan {
                self.drop_packet(node, &pkt, "multicast is not routed");
            } else {
                self.flood(node, link, pkt);
            }
            return;
        }
        let now = self.now;
        let NodeKind::Nat(nat) = &self.nodes[node].kind else {
            unreachable!()
        };
        let wan = IpAddr::V4(nat.wan);
        let dst_ip = pkt.dst.ip();
        let proto = pkt.proto();
        if from_wan {
            if dst_ip == wan {
                let NodeKind::Nat(nat) = &mut self.nodes[node].kind else {
                    unreachable!()
                };
                match nat.table.inbound(now, proto, pkt.dst.port(), pkt.src) {
                    Ok(internal) => {
                        if let Some(f) = pkt.tcp_flags() {
                            nat.table.note_tcp(pkt.dst.port(), pkt.src, f, Dir::In);
                        }
                        pkt.dst = internal;
                        self.forward(node, Some(link), pkt);
                    }
                    Err(e) => self.nat_reject(node, pkt, e),
                }
            } else if dst_ip.is_ipv6() && self.nodes[node].down.contains_key(&dst_ip) {
                let NodeKind::Nat(nat) = &mut self.nodes[node].kind else {
                    unreachable!()
                };
                match nat.table.inbound_v6(now, proto, pkt.dst, pkt.src) {
                    Ok(()) => {
                        if let Some(f) = pkt.tcp_flags() {
                            nat.table.note_tcp_v6(pkt.dst, pkt.src, f, Dir::In);
                        }
                        self.forward(node, Some(link), pkt)
                    }
                    Err(e) => self.nat_reject(node, pkt, e),
                }
            } else {
                self.drop_packet(node, &pkt, "not for this NAT");
            }
            return;
        }
        // From the LAN side.
        if self.nodes[node].down.contains_key(&dst_ip) {
            self.forward(node, Some(link), pkt);
            return;
        }
        if dst_ip.is_ipv6() {
            match self.table_outbound(node, proto, pkt.src, pkt.dst) {
                Ok(_) => {
                    if let (Some(f), NodeKind::Nat(nat)) =
                        (pkt.tcp_flags(), &mut self.nodes[node].kind)
                    {
                        nat.table.note_tcp_v6(pkt.src, pkt.dst, f, Dir::Out);
                    }
                    self.forward(node, Some(link), pkt)
                }
                Err(e) => self.drop_packet(node, &pkt, &e.to_string()),
            }
            return;
        }
        let internal = pkt.src;
        let remote = pkt.dst;
        let hairpin = nat.table.hairpin();
        let (port, created) = match self.table_outbound(node, proto, internal, remote) {
            Ok(x) => x,
            Err(e) => {
                self.drop_packet(node, &pkt, &e.to_string());
                return;
            }
        };
        let external = SocketAddr::new(wan, port);
        if let (Some(f), NodeKind::Nat(nat)) = (pkt.tcp_flags(), &mut self.nodes[node].kind) {
            nat.table.note_tcp(port, remote, f, Dir::Out);
        }
        if created.is_some() && self.tracing() {
            let msg = format!(
                "nat   {} map {} {} -> {} (to {})",
                self.nodes[node].name, proto, internal, external, remote
            );
            self.trace_line(&msg);
        }
        pkt.src = external;
        if dst_ip == wan {
            // Hairpinning: loop back inside with the sender's external address (REQ-9).
            if !hairpin {
                self.drop_packet(node, &pkt, "nat: no hairpinning");
                return;
            }
            let NodeKind::Nat(nat) = &mut self.nodes[node].kind else {
                unreachable!()
            };
            match nat.table.inbound(now, proto, pkt.dst.port(), pkt.src) {
                Ok(target) => {
                    if let Some(f) = pkt.tcp_flags() {
                        nat.table.note_tcp(pkt.dst.port(), pkt.src, f, Dir::In);
                    }
                    pkt.dst = target;
                    if self.tracing() {
                        let msg = format!(
                            "nat   {} hairpin {} -> {}",
                            self.nodes[node].name, external, target
                        );
                        self.trace_line(&msg);
                    }
                    self.forward(node, None, pkt);
                }
                Err(e) => self.nat_reject(node, pkt, e),
            }
            return;
        }
        self.forward(node, Some(link), pkt);
    }

    /// An inbound packet no mapping admits: dropped, and an unsolicited SYN handled as
    /// the box's policy says (RFC 5382 REQ-4).
    fn nat_reject(&mut self, node: NodeId, pkt: Packet, why: NatDrop) {
        self.drop_packet(node, &pkt, &why.to_string());
        if !pkt.is_syn() {
            return;
        }
        let NodeKind::Nat(nat) = &self.nodes[node].kind else {
            return;
        };
        match nat.table.unsolicited_syn() {
            UnsolicitedSyn::Drop => {}
            UnsolicitedSyn::Rst => self.nat_refuse(node, &pkt),
            UnsolicitedSyn::Refuse => {
                let at = self.now + SYN_HOLD;
                self.schedule(at, Event::SynHold { node, pkt });
            }
        }
    }

    /// The hold on an unsolicited SYN is over: if the inside host opened that connection
    /// meanwhile (a mapping now admits the SYN), drop it silently, else refuse it.
    pub(crate) fn nat_syn_hold_over(&mut self, node: NodeId, pkt: Packet) {
        let now = self.now;
        let NodeKind::Nat(nat) = &mut self.nodes[node].kind else {
            return;
        };
        let wan = IpAddr::V4(nat.wan);
        let admitted = if pkt.dst.ip() == wan {
            nat.table
                .inbound(now, Proto::Tcp, pkt.dst.port(), pkt.src)
                .is_ok()
        } else {
            nat.table
                .inbound_v6(now, Proto::Tcp, pkt.dst, pkt.src)
                .is_ok()
        };
        if admitted {
            if self.tracing() {
                let msg = format!(
                    "nat   {} held SYN {} -> {} dropped: the connection was opened",
                    self.nodes[node].name, pkt.src, pkt.dst
                );
                self.trace_line(&msg);
            }
        } else {
            self.nat_refuse(node, &pkt);
        }
    }

    /// Refuse a SYN with a RST from the address it was sent to (a hairpinned SYN's RST
    /// goes back inside through the sender's mapping).
    fn nat_refuse(&mut self, node: NodeId, syn: &Packet) {
        let Body::Tcp(seg) = &syn.body else { return };
        let now = self.now;
        let rst = TcpSegment {
            flags: tcp_flags::RST | tcp_flags::ACK,
            seq: 0,
            ack: seg.seq.wrapping_add(1),
            window: 0,
            data: bytes::Bytes::new(),
        };
        let id = self.packet_id();
        let mut out = Packet {
            id,
            src: syn.dst,
            dst: syn.src,
            ttl: 64,
            body: Body::Tcp(rst),
        };
        if self.tracing() {
            let msg = format!(
                "nat   {} refuse SYN {} -> {} with RST",
                self.nodes[node].name, syn.src, syn.dst
            );
            self.trace_line(&msg);
        }
        let NodeKind::Nat(nat) = &mut self.nodes[node].kind else {
            return;
        };
        if out.dst.ip() == IpAddr::V4(nat.wan) {
            match nat.table.inbound(now, Proto::Tcp, out.dst.port(), out.src) {
                Ok(inside) => out.dst = inside,
                Err(e) => {
                    self.drop_packet(node, &out, &e.to_string());
                    return;
                }
            }
        }
        self.forward(node, None, out);
    }

    fn gateway_receive(&mut self, node: NodeId, pkt: Packet) {
        let now = self.now;
        let NodeKind::Gateway(gw) = &self.nodes[node].kind else {
            unreachable!()
        };
        let (entry, exit, kind) = (gw.entry, gw.exit, gw.kind);
        let sab = self.cfg.sabotage.clone();
        match pkt.body {
            Body::Tunnel(inner) if pkt.dst.ip() == entry => {
                let mut inner = *inner;
                let client = inner.src.ip();
                let delay = self.gateway_delay(node, client);
                let NodeKind::Gateway(gw) = &mut self.nodes[node].kind else {
                    unreachable!()
                };
                gw.clients.insert(client, pkt.src);
                if inner.dst.ip() == entry {
                    return; // keepalive
                }
                if kind == GatewayKind::Tor && inner.proto() == Proto::Udp && !sab.tor_forwards_udp
                {
                    gw.udp_dropped += 1;
                    self.drop_packet(node, &inner, "tor: udp is not carried");
                    return;
                }
                match self.table_outbound(node, inner.proto(), inner.src, inner.dst) {
                    Ok((port, created)) => {
                        if let (Some(f), NodeKind::Gateway(gw)) =
                            (inner.tcp_flags(), &mut self.nodes[node].kind)
                        {
                            gw.table.note_tcp(port, inner.dst, f, Dir::Out);
                        }
                        let external = if sab.tunnel_leaks_source {
                            pkt.src
                        } else {
                            SocketAddr::new(exit, port)
                        };
                        if created.is_some() && self.tracing() {
                            let msg = format!(
                                "gw    {} map {} {} -> {} (to {})",
                                self.nodes[node].name,
                                inner.proto(),
                                inner.src,
                                external,
                                inner.dst
                            );
                            self.trace_line(&msg);
                        }
                        inner.src = external;
                        self.schedule(now + delay, Event::Emit { node, pkt: inner });
                    }
                    Err(e) => self.drop_packet(node, &inner, &e.to_string()),
                }
            }
            _ if pkt.dst.ip() == exit => {
                let NodeKind::Gateway(gw) = &mut self.nodes[node].kind else {
                    unreachable!()
                };
                let internal = match gw.table.inbound(now, pkt.proto(), pkt.dst.port(), pkt.src) {
                    Ok(i) => {
                        if let Some(f) = pkt.tcp_flags() {
                            gw.table.note_tcp(pkt.dst.port(), pkt.src, f, Dir::In);
                        }
                        i
                    }
                    Err(e) => {
                        self.drop_packet(node, &pkt, &e.to_string());
                        return;
                    }
                };
                let Some(&outer) = gw.clients.get(&internal.ip()) else {
                    self.drop_packet(node, &pkt, "gateway: unknown client");
                    return;
                };
                let port = match kind {
                    GatewayKind::Vpn => VPN_PORT,
                    GatewayKind::Tor => TOR_PORT,
                };
                let delay = self.gateway_delay(node, internal.ip());
                let mut inner = pkt;
                inner.dst = internal;
                let id = self.packet_id();
                let wrapped = Packet {
                    id,
                    src: SocketAddr::new(entry, port),
                    dst: outer,
                    ttl: 64,
                    body: Body::Tunnel(Box::new(inner)),
                };
                self.schedule(now + delay, Event::Emit { node, pkt: wrapped });
            }
            _ => self.drop_packet(node, &pkt, "not for this gateway"),
        }
    }

    /// Outbound translation in a NAT's or gateway's table, drawing ports from the
    /// network's random stream.
    fn table_outbound(
        &mut self,
        node: NodeId,
        proto: Proto,
        internal: SocketAddr,
        remote: SocketAddr,
    ) -> Result<(u16, Option<crate::nat::NewMapping>), crate::nat::NatDrop> {
        let now = self.now;
        let Core { nodes, rng, .. } = self;
        let table = match &mut nodes[node].kind {
            NodeKind::Nat(n) => &mut n.table,
            NodeKind::Gateway(g) => &mut g.table,
            _ => unreachable!("only NATs and gateways translate"),
        };
        table.outbound(now, proto, internal, remote, rng)
    }

    /// The extra one-way delay a client's traffic takes through the gateway (drawn once
    /// per client: a Tor circuit is slow or fast for its whole life).
    fn gateway_delay(&mut self, node: NodeId, client: IpAddr) -> Duration {
        let NodeKind::Gateway(gw) = &self.nodes[node].kind else {
            unreachable!()
        };
        if let Some(d) = gw.delays.get(&client) {
            return *d;
        }
        let (lo, hi) = gw.delay_range;
        let d = Duration::from_nanos(self.net_range(lo.as_nanos() as u64, hi.as_nanos() as u64));
        let NodeKind::Gateway(gw) = &mut self.nodes[node].kind else {
            unreachable!()
        };
        gw.delays.insert(client, d);
        d
    }
}

impl Sim {
    /// Add a NAT box under `behind` (the internet when `None`).
    pub fn add_nat(
        &mut self,
        name: &str,
        config: NatConfig,
        behind: Option<NodeId>,
        up: LinkParams,
        down: LinkParams,
    ) -> NodeId {
        let parent = behind.unwrap_or(0);
        let c = &mut self.core;
        let (wan, global) = c.child_v4(parent);
        let lan_prefix = c.addr_plan.subnet();
        let site = matches!(c.nodes[parent].kind, NodeKind::Internet).then(|| c.addr_plan.site());
        let id = c.push_node(
            name,
            NodeKind::Nat(NatBox {
                table: NatTable::new(config),
                wan,
                lan_prefix,
                site,
                next_host: 0,
            }),
        );
        c.attach(id, parent, up, down);
        c.announce(id, IpAddr::V4(wan), global);
        self.sync_app_tables();
        id
    }

    /// Add an isolated LAN segment: a switch with no route out.
    pub fn add_lan(&mut self, name: &str) -> NodeId {
        let prefix = self.core.addr_plan.subnet();
        let id = self.core.push_node(
            name,
            NodeKind::Lan {
                prefix,
                next_host: 0,
            },
        );
        self.sync_app_tables();
        id
    }

    /// Add a VPN server (`Vpn`) or the Tor network (`Tor`) on the internet. Clients get
    /// inner addresses from a private /24; `delay` is the extra one-way delay range.
    pub fn add_gateway(
        &mut self,
        name: &str,
        kind: GatewayKind,
        delay: (Duration, Duration),
        nat: NatConfig,
    ) -> NodeId {
        let c = &mut self.core;
        let entry = IpAddr::V4(c.addr_plan.public_v4());
        let exit = match kind {
            GatewayKind::Vpn => entry,
            GatewayKind::Tor => IpAddr::V4(c.addr_plan.public_v4()),
        };
        let inner_prefix = c.addr_plan.subnet();
        let id = c.push_node(
            name,
            NodeKind::Gateway(Gateway {
                kind,
                entry,
                exit,
                table: NatTable::new(nat),
                clients: BTreeMap::new(),
                delays: BTreeMap::new(),
                delay_range: delay,
                inner_prefix,
                next_inner: 0,
                udp_dropped: 0,
            }),
        );
        let (up, down) = LinkParams::preset("internet").expect("preset exists");
        c.attach(id, 0, up, down);
        c.announce(id, entry, true);
        if exit != entry {
            c.announce(id, exit, true);
        }
        self.sync_app_tables();
        id
    }

    /// Add a host. Returns its node id; its addresses are in [`Host::addrs`].
    pub fn add_host(&mut self, name: &str, opts: HostOpts) -> NodeId {
        let parent = opts.behind.unwrap_or(0);
        let seed = self.core.cfg.seed;
        let capture = opts.capture || self.core.cfg.capture;
        let c = &mut self.core;
        let mut addrs = Vec::new();
        let mut globals = Vec::new();
        // Reserve the node id first so address announcements know the owner.
        let id = c.push_node(
            name,
            NodeKind::Host(Box::new(Host::new(seed, name, capture))),
        );
        c.attach(id, parent, opts.up.clone(), opts.down.clone());
        for _ in 0..=opts.extra_addrs {
            let (a, global) = c.child_v4(parent);
            addrs.push(IpAddr::V4(a));
            globals.push(global);
            c.announce(id, IpAddr::V4(a), global);
        }
        if opts.ipv6 {
            if let Some(a) = c.child_v6(parent) {
                addrs.push(IpAddr::V6(a));
                c.announce(id, IpAddr::V6(a), true);
            }
        }
        let tunnel = opts.via.map(|gw| {
            let NodeKind::Gateway(g) = &mut c.nodes[gw].kind else {
                panic!("`via` must be a gateway")
            };
            g.next_inner += 1;
            let inner = IpAddr::V4(Ipv4Addr::from(u32::from(g.inner_prefix) + 1 + g.next_inner));
            let port = match g.kind {
                GatewayKind::Vpn => VPN_PORT,
                GatewayKind::Tor => TOR_PORT,
            };
            crate::host::TunnelClient {
                gateway: gw,
                entry: SocketAddr::new(g.entry, port),
                inner,
            }
        });
        let h = c.host_mut(id).expect("just added");
        h.addrs = addrs;
        h.tunnel = tunnel;
        if tunnel.is_some() {
            c.start_tunnel(id);
        }
        self.sync_app_tables();
        id
    }

    /// The chain of NAT boxes above a host, innermost first.
    pub fn nat_chain(&self, host: NodeId) -> Vec<NodeId> {
        let mut out = Vec::new();
        let mut cur = self.core.nodes[host].parent;
        while let Some(p) = cur {
            if matches!(self.core.nodes[p].kind, NodeKind::Nat(_)) {
                out.push(p);
            }
            cur = self.core.nodes[p].parent;
        }
        out
    }

    pub fn nat_config(&self, nat: NodeId) -> Option<&NatConfig> {
        match &self.core.nodes.get(nat)?.kind {
            NodeKind::Nat(b) => Some(&b.table.config),
            _ => None,
        }
    }

    pub fn nat_mut(&mut self, nat: NodeId) -> Option<&mut NatBox> {
        match &mut self.core.nodes.get_mut(nat)?.kind {
            NodeKind::Nat(b) => Some(b),
            _ => None,
        }
    }

    pub fn gateway(&self, gw: NodeId) -> Option<&Gateway> {
        match &self.core.nodes.get(gw)?.kind {
            NodeKind::Gateway(g) => Some(g),
            _ => None,
        }
    }

    pub fn host(&self, id: NodeId) -> Option<&Host> {
        self.core.host(id)
    }

    /// The link a node uses to reach its parent.
    pub fn uplink(&self, node: NodeId) -> Option<LinkId> {
        self.core.nodes.get(node)?.uplink
    }
}
