//! The TURN server's TCP side: control connections on the TURN port (RFC 5766 §2.1,
//! STUN and padded ChannelData cut from the stream), and RFC 6062 TCP allocations, whose
//! relayed address is a TCP listener. Each peer connection gets a CONNECTION-ID; the
//! client binds it to a data connection of its own (ConnectionBind) that then carries
//! the peer's bytes raw. Peers reach a client by connecting to the relayed address
//! (the server sends ConnectionAttempt) or the client asks the server to Connect.

use super::{error_response, Message, TurnServer, SOFTWARE};
use crate::app::{Ctx, TcpEvent};
use crate::sim::{ConnId, ListenerId};
use crate::stun::stream::{Frame, StreamDecoder};
use crate::stun::{Attribute, Class, ErrorCode, Method};
use crate::time::SimTime;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// First port tried for TCP relays (there is no "listen on port 0" here).
const RELAY_PORT_BASE: u16 = 49152;
/// Peer bytes held for a connection not yet bound; RFC 6062 has the server buffer them
/// until ConnectionBind, a flooding peer is cut off beyond this.
pub const MAX_UNBOUND_BYTES: usize = 64 * 1024;
/// RFC 6062 §5.3: an unbound peer connection is closed after 30 s.
pub const BIND_TIMEOUT: Duration = Duration::from_secs(30);
/// Peer connections per allocation.
pub const MAX_PEER_CONNS: usize = 64;
/// RFC 6062 §6.3 error codes.
const CONNECTION_ALREADY_EXISTS: u16 = 446;
const CONNECTION_FAILURE: u16 = 447;

/// A connection accepted on the TURN port.
#[derive(Debug)]
struct ClientConn {
    remote: SocketAddr,
    decoder: StreamDecoder,
    /// Set once ConnectionBind succeeded: the peer connection it carries.
    bound_to: Option<ConnId>,
}

#[derive(Debug)]
enum PeerState {
    /// Connect in progress; the request to answer when it settles.
    Connecting {
        req: Message,
        key: [u8; 16],
    },
    /// Up, waiting for the client's ConnectionBind; peer bytes held meanwhile.
    Unbound {
        held: Vec<u8>,
        since: SimTime,
    },
    Bound {
        data: ConnId,
    },
}

#[derive(Debug)]
struct PeerConn {
    client: SocketAddr,
    peer: SocketAddr,
    id: u32,
    state: PeerState,
}

#[derive(Debug, Default)]
pub(super) struct TcpSide {
    listener: Option<ListenerId>,
    clients: BTreeMap<ConnId, ClientConn>,
    by_remote: BTreeMap<SocketAddr, ConnId>,
    /// Relay listener → client (control address) of the TCP allocation.
    relays: BTreeMap<ListenerId, SocketAddr>,
    peers: BTreeMap<ConnId, PeerConn>,
    by_id: BTreeMap<u32, ConnId>,
    next_id: u32,
    next_port: u16,
    /// Peer connections refused (no permission, too many, unknown relay).
    pub refused: u64,
}

impl TcpSide {
    /// True when `client` talks to us over a TCP connection.
    pub(super) fn is_control(&self, client: SocketAddr) -> bool {
        self.by_remote.contains_key(&client)
    }
}

impl TurnServer {
    /// Peer connections refused by the TCP side (counted for tests).
    pub fn tcp_refused(&self) -> u64 {
        self.tcp.refused
    }

    /// Peer TCP connections currently relayed (bound to a data connection).
    pub fn tcp_bound_peers(&self) -> usize {
        self.tcp
            .peers
            .values()
            .filter(|p| matches!(p.state, PeerState::Bound { .. }))
            .count()
    }

    pub(super) fn tcp_start(&mut self, cx: &mut Ctx<'_>, addr: SocketAddr) {
        self.tcp.listener = cx.tcp_listen(addr).ok();
        self.tcp.next_port = RELAY_PORT_BASE;
    }

    /// Sends to a client on its TCP connection, if it has one (ChannelData padded).
    pub(super) fn tcp_send_client(
        &mut self,
        cx: &mut Ctx<'_>,
        to: SocketAddr,
        bytes: &[u8],
    ) -> bool {
        let Some(&conn) = self.tcp.by_remote.get(&to) else {
            return false;
        };
        let mut out = bytes.to_vec();
        if crate::stun::is_channel_data(bytes) {
            out.resize(bytes.len().next_multiple_of(4), 0);
        }
        let _ = cx.tcp_send(conn, &out);
        true
    }

    /// Listens for peers on a fresh relay port of `ip`.
    pub(super) fn tcp_relay_listen(
        &mut self,
        cx: &mut Ctx<'_>,
        client: SocketAddr,
        ip: IpAddr,
    ) -> Result<SocketAddr, u16> {
        for _ in 0..64 {
            let port = self.tcp.next_port;
            self.tcp.next_port = self.tcp.next_port.checked_add(1).unwrap_or(RELAY_PORT_BASE);
            let addr = SocketAddr::new(ip, port);
            if let Ok(l) = cx.tcp_listen(addr) {
                self.tcp.relays.insert(l, client);
                return Ok(addr);
            }
        }
        Err(ErrorCode::INSUFFICIENT_CAPACITY)
    }

    /// The allocation of `client` is gone: its relay stops accepting, its peer and data
    /// connections close (the listener itself cannot be closed in netsim; it refuses).
    pub(super) fn tcp_remove(&mut self, cx: &mut Ctx<'_>, client: SocketAddr) {
        self.tcp.relays.retain(|_, c| *c != client);
        let gone: Vec<ConnId> = self
            .tcp
            .peers
            .iter()
            .filter(|(_, p)| p.client == client)
            .map(|(c, _)| *c)
            .collect();
        for conn in gone {
            self.close_peer(cx, conn);
        }
    }

    fn close_peer(&mut self, cx: &mut Ctx<'_>, conn: ConnId) {
        if let Some(p) = self.tcp.peers.remove(&conn) {
            self.tcp.by_id.remove(&p.id);
            cx.tcp_close(conn);
            if let PeerState::Bound { data } = p.state {
                self.drop_client_conn(cx, data);
            }
        }
    }

    fn drop_client_conn(&mut self, cx: &mut Ctx<'_>, conn: ConnId) {
        if let Some(c) = self.tcp.clients.remove(&conn) {
            self.tcp.by_remote.remove(&c.remote);
            cx.tcp_close(conn);
        }
    }

    /// A fresh CONNECTION-ID for a new peer connection of `client`, if it has room.
    fn new_peer(&mut self, client: SocketAddr) -> Option<u32> {
        let count = self
            .tcp
            .peers
            .values()
            .filter(|p| p.client == client)
            .count();
        if count >= MAX_PEER_CONNS {
            return None;
        }
        loop {
            self.tcp.next_id = self.tcp.next_id.wrapping_add(1);
            if !self.tcp.by_id.contains_key(&self.tcp.next_id) {
                return Some(self.tcp.next_id);
            }
        }
    }

    /// Connect (RFC 6062 §5.2): open a connection to the peer; answered when it settles.
    pub(super) fn tcp_connect_request(
        &mut self,
        cx: &mut Ctx<'_>,
        from: SocketAddr,
        req: &Message,
        user: &str,
        key: [u8; 16],
    ) {
        let fail = |s: &mut Self, cx: &mut Ctx<'_>, code| {
            let e = error_response(req, code).encode_with_integrity(&key);
            s.send_client(cx, from, &e);
        };
        let Some(peer) = req.xor_peer_address() else {
            return fail(self, cx, ErrorCode::BAD_REQUEST);
        };
        let now = cx.now();
        let permitted = match self.owned(cx, from, user) {
            Ok(a) if a.relay.is_none() => a.permitted(now, peer.ip()),
            Ok(_) => return fail(self, cx, ErrorCode::BAD_REQUEST),
            Err(code) => return fail(self, cx, code),
        };
        if !permitted {
            self.dropped_no_permission += 1;
            return fail(self, cx, ErrorCode::FORBIDDEN);
        }
        let exists = self
            .tcp
            .peers
            .values()
            .any(|p| p.client == from && p.peer == peer);
        if exists {
            return fail(self, cx, CONNECTION_ALREADY_EXISTS);
        }
        let Some(id) = self.new_peer(from) else {
            return fail(self, cx, CONNECTION_FAILURE);
        };
        let Ok(conn) = cx.tcp_connect(peer) else {
            return fail(self, cx, CONNECTION_FAILURE);
        };
        self.tcp.by_id.insert(id, conn);
        self.tcp.peers.insert(
            conn,
            PeerConn {
                client: from,
                peer,
                id,
                state: PeerState::Connecting {
                    req: req.clone(),
                    key,
                },
            },
        );
    }

    /// ConnectionBind (RFC 6062 §5.4) on a new client connection.
    pub(super) fn tcp_connection_bind(
        &mut self,
        cx: &mut Ctx<'_>,
        from: SocketAddr,
        req: &Message,
        user: &str,
        key: [u8; 16],
    ) {
        let now = cx.now();
        let data_conn = self.tcp.by_remote.get(&from).copied();
        let peer_conn = req
            .connection_id()
            .and_then(|id| self.tcp.by_id.get(&id).copied());
        let ok = match (data_conn, peer_conn) {
            (Some(data), Some(pc)) => {
                let owner = self.tcp.peers.get(&pc).map(|p| p.client);
                let user_ok = owner
                    .and_then(|c| self.allocs.get(&c))
                    .is_some_and(|a| a.username == user && now < a.expires);
                let unbound = self
                    .tcp
                    .peers
                    .get(&pc)
                    .is_some_and(|p| matches!(p.state, PeerState::Unbound { .. }));
                let fresh = self
                    .tcp
                    .clients
                    .get(&data)
                    .is_some_and(|c| c.bound_to.is_none())
                    && !self.tcp.is_allocation_owner(&self.allocs, from);
                (user_ok && unbound && fresh).then_some((data, pc))
            }
            _ => None,
        };
        let Some((data, pc)) = ok else {
            let e = error_response(req, ErrorCode::BAD_REQUEST).encode_with_integrity(&key);
            self.send_client(cx, from, &e);
            return;
        };
        let resp = req
            .reply(Class::SuccessResponse)
            .with(Attribute::Software(SOFTWARE.into()))
            .encode_with_integrity(&key);
        let _ = cx.tcp_send(data, &resp);
        if let Some(c) = self.tcp.clients.get_mut(&data) {
            c.bound_to = Some(pc);
        }
        // Now raw: it is no longer addressed as a STUN client.
        self.tcp.by_remote.remove(&from);
        if let Some(p) = self.tcp.peers.get_mut(&pc) {
            let held = match std::mem::replace(&mut p.state, PeerState::Bound { data }) {
                PeerState::Unbound { held, .. } => held,
                _ => Vec::new(),
            };
            if !held.is_empty() {
                let _ = cx.tcp_send(data, &held);
                self.relayed_to_client += 1;
            }
        }
    }

    pub(super) fn tcp_event(&mut self, cx: &mut Ctx<'_>, ev: TcpEvent) {
        match ev {
            TcpEvent::Accepted {
                listener,
                conn,
                remote,
            } => {
                if Some(listener) == self.tcp.listener {
                    self.tcp.by_remote.insert(remote, conn);
                    self.tcp.clients.insert(
                        conn,
                        ClientConn {
                            remote,
                            decoder: StreamDecoder::new(),
                            bound_to: None,
                        },
                    );
                } else {
                    self.peer_accepted(cx, listener, conn, remote);
                }
            }
            TcpEvent::Connected { conn } => self.peer_connected(cx, conn),
            TcpEvent::Data { conn, data } => {
                if self.tcp.clients.contains_key(&conn) {
                    self.client_data(cx, conn, &data);
                } else {
                    self.peer_data(cx, conn, &data);
                }
            }
            TcpEvent::PeerClosed { conn } | TcpEvent::Reset { conn, .. } => {
                self.connection_gone(cx, conn)
            }
        }
    }

    fn peer_accepted(
        &mut self,
        cx: &mut Ctx<'_>,
        listener: ListenerId,
        conn: ConnId,
        remote: SocketAddr,
    ) {
        let now = cx.now();
        let Some(&client) = self.tcp.relays.get(&listener) else {
            self.tcp.refused += 1;
            return cx.tcp_close(conn);
        };
        let permitted = self
            .live(cx, client)
            .is_some_and(|a| a.permitted(now, remote.ip()));
        let id = match (permitted, self.new_peer(client)) {
            (true, Some(id)) => id,
            _ => {
                self.tcp.refused += 1;
                self.dropped_no_permission += u64::from(!permitted);
                return cx.tcp_close(conn);
            }
        };
        self.tcp.by_id.insert(id, conn);
        self.tcp.peers.insert(
            conn,
            PeerConn {
                client,
                peer: remote,
                id,
                state: PeerState::Unbound {
                    held: Vec::new(),
                    since: now,
                },
            },
        );
        cx.set_timer(BIND_TIMEOUT + Duration::from_millis(1), super::SWEEP);
        if self.config.drop_connection_attempts {
            return;
        }
        let txid: [u8; 12] = rand::RngExt::random(cx.rng());
        let attempt = Message::new(Class::Indication, Method::ConnectionAttempt, txid)
            .with(Attribute::ConnectionId(id))
            .with(Attribute::XorPeerAddress(remote))
            .encode();
        self.send_client(cx, client, &attempt);
    }

    fn peer_connected(&mut self, cx: &mut Ctx<'_>, conn: ConnId) {
        let now = cx.now();
        let Some(p) = self.tcp.peers.get_mut(&conn) else {
            return;
        };
        let PeerState::Connecting { req, key } = std::mem::replace(
            &mut p.state,
            PeerState::Unbound {
                held: Vec::new(),
                since: now,
            },
        ) else {
            return;
        };
        let (client, id) = (p.client, p.id);
        cx.set_timer(BIND_TIMEOUT + Duration::from_millis(1), super::SWEEP);
        let ok = req
            .reply(Class::SuccessResponse)
            .with(Attribute::ConnectionId(id))
            .with(Attribute::Software(SOFTWARE.into()))
            .encode_with_integrity(&key);
        self.send_client(cx, client, &ok);
    }

    fn peer_data(&mut self, cx: &mut Ctx<'_>, conn: ConnId, data: &[u8]) {
        let Some(p) = self.tcp.peers.get_mut(&conn) else {
            return;
        };
        match &mut p.state {
            PeerState::Bound { data: d } => {
                let d = *d;
                let _ = cx.tcp_send(d, data);
                self.relayed_to_client += 1;
            }
            PeerState::Unbound { held, .. } if held.len() + data.len() <= MAX_UNBOUND_BYTES => {
                held.extend_from_slice(data);
            }
            _ => self.close_peer(cx, conn),
        }
    }

    fn client_data(&mut self, cx: &mut Ctx<'_>, conn: ConnId, data: &[u8]) {
        let Some(c) = self.tcp.clients.get_mut(&conn) else {
            return;
        };
        if let Some(pc) = c.bound_to {
            let _ = cx.tcp_send(pc, data);
            self.relayed_to_peer += 1;
            return;
        }
        if c.decoder.push(data).is_err() {
            self.malformed += 1;
            return self.connection_gone(cx, conn);
        }
        loop {
            let Some(c) = self.tcp.clients.get_mut(&conn) else {
                return;
            };
            if let Some(pc) = c.bound_to {
                // Bytes after the ConnectionBind already belong to the peer.
                let rest = c.decoder.take_remaining();
                if !rest.is_empty() {
                    let _ = cx.tcp_send(pc, &rest);
                    self.relayed_to_peer += 1;
                }
                return;
            }
            let remote = c.remote;
            match c.decoder.next_frame() {
                Ok(Some(Frame::Stun { raw, .. })) => self.on_control(cx, remote, &raw),
                Ok(Some(Frame::ChannelData(cd))) => self.on_control(cx, remote, &cd.encode()),
                Ok(None) => return,
                Err(e) if e.is_fatal() => {
                    self.malformed += 1;
                    return self.connection_gone(cx, conn);
                }
                Err(_) => self.malformed += 1,
            }
        }
    }

    /// A connection closed. A control connection takes its allocation with it (RFC 6062
    /// §5.1: the allocation lives as long as the control connection); a data or peer
    /// connection takes its other half.
    fn connection_gone(&mut self, cx: &mut Ctx<'_>, conn: ConnId) {
        if let Some(c) = self.tcp.clients.remove(&conn) {
            self.tcp.by_remote.remove(&c.remote);
            cx.tcp_close(conn);
            match c.bound_to {
                Some(pc) => self.close_peer(cx, pc),
                None => self.remove(cx, c.remote),
            }
            return;
        }
        let Some(p) = self.tcp.peers.get(&conn) else {
            return;
        };
        if let PeerState::Connecting { req, key } = &p.state {
            let e = error_response(req, CONNECTION_FAILURE).encode_with_integrity(key);
            let client = p.client;
            self.send_client(cx, client, &e);
        }
        self.close_peer(cx, conn);
    }

    /// Closes peer connections whose ConnectionBind never came (run by the sweep timer).
    pub(super) fn tcp_sweep(&mut self, cx: &mut Ctx<'_>) {
        let now = cx.now();

        let late: Vec<ConnId> = self
            .tcp
            .peers
            .iter()
            .filter(|(_, p)| matches!(p.state, PeerState::Unbound { since, .. } if now >= since + BIND_TIMEOUT))
            .map(|(c, _)| *c)
            .collect();
        for conn in late {
            self.close_peer(cx, conn);
        }
        // Timers run on the host's drifting clock: re-arm for what is not due yet.
        let next = self
            .tcp
            .peers
            .values()
            .filter_map(|p| match p.state {
                PeerState::Unbound { since, .. } => Some(since + BIND_TIMEOUT),
                _ => None,
            })
            .min();
        if let Some(at) = next {
            cx.set_timer(at.since(now) + Duration::from_millis(1), super::SWEEP);
        }
    }
}

impl TcpSide {
    /// True when `remote` is the control connection of an allocation (such a connection
    /// cannot become a data connection).
    fn is_allocation_owner(
        &self,
        allocs: &BTreeMap<SocketAddr, super::Allocation>,
        remote: SocketAddr,
    ) -> bool {
        allocs.contains_key(&remote)
    }
}
