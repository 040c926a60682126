//! TURN (RFC 5766 over UDP and TCP, RFC 6062 TCP allocations): a relay server app and a
//! client component that an app embeds next to its own protocol on one UDP socket, as
//! ICE agents do. The server's TCP side (control connections, TCP relays) is in [`tcp`].
//!
//! The server authenticates with long-term credentials, gives each client 5-tuple one
//! allocation (a fresh UDP socket on its primary address), and relays between the client
//! and the peers it has permitted, as Send/Data indications or ChannelData. Lifetimes
//! (allocations, 5 min permissions, 10 min channels) are checked lazily against the
//! host clock, and a timer reclaims expired allocations' sockets.

use crate::app::{App, Ctx};
use crate::sim::SockId;
use crate::stun::{
    is_channel_data, is_stun, long_term_key, Attribute, ChannelData, Class, ErrorCode, Message,
    Method, CHANNEL_RANGE, TRANSPORT_TCP, TRANSPORT_UDP,
};
use crate::time::SimTime;
use rand::RngExt;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

mod tcp;

/// How long a permission lasts (RFC 5766 §8).
pub const PERMISSION_LIFETIME: Duration = Duration::from_secs(300);
/// How long a channel binding lasts (RFC 5766 §11).
pub const CHANNEL_LIFETIME: Duration = Duration::from_secs(600);
/// Longest allocation lifetime the server grants (unless the default is longer).
pub const MAX_LIFETIME: Duration = Duration::from_secs(3600);
/// Largest payload relayed either way: keeps DATA inside the 16-bit STUN and ChannelData
/// length fields, whose encoders panic beyond them.
pub const MAX_DATA: usize = 65_000;
/// SOFTWARE attribute of the server's responses.
pub const SOFTWARE: &str = "netsim-turn";

/// Server timer token: reclaim expired allocations.
const SWEEP: u64 = 1;

/// TURN server settings.
#[derive(Clone, Debug)]
pub struct TurnConfig {
    pub port: u16,
    pub realm: String,
    /// (username, password) pairs accepted for long-term credentials.
    pub users: Vec<(String, String)>,
    /// Default allocation lifetime (RFC 5766 recommends 10 min).
    pub lifetime: Duration,
    /// Sabotage for tests: relay datagrams from any peer, permission or not.
    pub ignore_permissions: bool,
    /// Sabotage for tests: never deliver peer data to the client.
    pub drop_data: bool,
    /// Also listen on TCP `port`: control connections and RFC 6062 TCP allocations.
    pub tcp: bool,
    /// Sabotage for tests: never send ConnectionAttempt for inbound peer connections.
    pub drop_connection_attempts: bool,
}

impl Default for TurnConfig {
    fn default() -> Self {
        TurnConfig {
            port: 3478,
            realm: "netsim".into(),
            users: vec![("user".into(), "pass".into())],
            lifetime: Duration::from_secs(600),
            ignore_permissions: false,
            drop_data: false,
            tcp: true,
            drop_connection_attempts: false,
        }
    }
}

/// A channel binding on the server.
#[derive(Clone, Debug)]
struct Channel {
    peer: SocketAddr,
    expires: SimTime,
}

/// One client's relayed transport address and what it may relay.
#[derive(Clone, Debug)]
struct Allocation {
    /// The UDP relay socket; `None` for an RFC 6062 TCP allocation.
    relay: Option<SockId>,
    relayed: SocketAddr,
    username: String,
    expires: SimTime,
    /// The Allocate transaction and its answer, so a retransmission gets the same answer
    /// instead of 437.
    alloc_txid: [u8; 12],
    alloc_response: Vec<u8>,
    perms: BTreeMap<IpAddr, SimTime>,
    channels: BTreeMap<u16, Channel>,
}

impl Allocation {
    fn permitted(&self, now: SimTime, ip: IpAddr) -> bool {
        self.perms.get(&ip).is_some_and(|&until| now < until)
    }

    fn channel_to(&self, now: SimTime, peer: SocketAddr) -> Option<u16> {
        self.channels
            .iter()
            .find(|(_, c)| c.peer == peer && now < c.expires)
            .map(|(&n, _)| n)
    }

    fn channel_peer(&self, now: SimTime, channel: u16) -> Option<SocketAddr> {
        self.channels
            .get(&channel)
            .filter(|c| now < c.expires)
            .map(|c| c.peer)
    }
}

/// Outcome of a request handler: the response to send (signed when authenticated).
type Handled = Result<Message, u16>;

/// A TURN server on UDP `config.port` of its host's primary IPv4 address.
#[derive(Debug, Default)]
pub struct TurnServer {
    pub config: TurnConfig,
    sock: Option<SockId>,
    addr: Option<SocketAddr>,
    nonce: String,
    /// Allocations by client transport address (the server side of the 5-tuple is fixed).
    allocs: BTreeMap<SocketAddr, Allocation>,
    /// Relay socket -> client it belongs to.
    relays: BTreeMap<SockId, SocketAddr>,
    /// Allocations created so far.
    pub allocations: u64,
    pub relayed_to_peer: u64,
    pub relayed_to_client: u64,
    /// Datagrams dropped for want of a permission (from peers, or Send indications to
    /// unpermitted peers).
    pub dropped_no_permission: u64,
    /// Requests with credentials that did not verify.
    pub auth_failures: u64,
    /// Datagrams that were neither valid STUN nor valid ChannelData.
    pub malformed: u64,
    /// TCP control/data connections and RFC 6062 peer connections.
    tcp: tcp::TcpSide,
    /// Relayed datagrams that travelled as ChannelData (either way) rather than as
    /// Send/Data indications.
    pub channel_data: u64,
}

impl TurnServer {
    pub fn new(config: TurnConfig) -> Self {
        TurnServer {
            config,
            ..Default::default()
        }
    }

    /// The server's transport address, once started.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// Live allocations (expired ones may linger until the next sweep or access).
    pub fn allocation_count(&self) -> usize {
        self.allocs.len()
    }

    /// Relayed address of the allocation of `client`, if any.
    pub fn relayed_for(&self, client: SocketAddr) -> Option<SocketAddr> {
        self.allocs.get(&client).map(|a| a.relayed)
    }

    /// Lifetime granted for a requested one (RFC 5766 §6.2, §7.2): the request capped by
    /// the maximum, but never below the default.
    fn granted_lifetime(&self, requested: Option<u32>) -> Duration {
        let default = self.config.lifetime;
        match requested {
            None => default,
            Some(s) => Duration::from_secs(u64::from(s))
                .min(MAX_LIFETIME.max(default))
                .max(default),
        }
    }

    /// The allocation of `client` if it has not expired; an expired one is reclaimed.
    fn live(&mut self, cx: &mut Ctx<'_>, client: SocketAddr) -> Option<&mut Allocation> {
        let now = cx.now();
        if self.allocs.get(&client).is_some_and(|a| a.expires <= now) {
            self.remove(cx, client);
        }
        self.allocs.get_mut(&client)
    }

    fn remove(&mut self, cx: &mut Ctx<'_>, client: SocketAddr) {
        if let Some(a) = self.allocs.remove(&client) {
            if let Some(relay) = a.relay {
                self.relays.remove(&relay);
                cx.udp_close(relay);
            }
            self.tcp_remove(cx, client);
        }
    }

    fn sweep(&mut self, cx: &mut Ctx<'_>) {
        let now = cx.now();
        let expired: Vec<SocketAddr> = self
            .allocs
            .iter()
            .filter(|(_, a)| a.expires <= now)
            .map(|(&c, _)| c)
            .collect();
        for c in expired {
            self.remove(cx, c);
        }
    }

    fn send_client(&mut self, cx: &mut Ctx<'_>, to: SocketAddr, bytes: &[u8]) {
        if self.tcp_send_client(cx, to, bytes) {
            return;
        }
        if let Some(s) = self.sock {
            let _ = cx.udp_send(s, to, bytes);
        }
    }

    /// An unsigned error response carrying the realm and the current nonce.
    fn challenge(&self, req: &Message, code: u16) -> Message {
        error_response(req, code)
            .with(Attribute::Realm(self.config.realm.clone()))
            .with(Attribute::Nonce(self.nonce.clone()))
    }

    /// Long-term credential check (RFC 5389 §10.2.2): the user and its key, or the
    /// (unsigned) error response to send.
    fn authenticate(&mut self, req: &Message, raw: &[u8]) -> Result<(String, [u8; 16]), Message> {
        if req.message_integrity().is_none() {
            return Err(self.challenge(req, ErrorCode::UNAUTHORIZED));
        }
        let (Some(user), Some(_), Some(nonce)) = (req.username(), req.realm(), req.nonce()) else {
            return Err(error_response(req, ErrorCode::BAD_REQUEST));
        };
        if nonce != self.nonce {
            return Err(self.challenge(req, ErrorCode::STALE_NONCE));
        }
        let password = self
            .config
            .users
            .iter()
            .find(|(u, _)| u == user)
            .map(|(_, p)| p.as_str());
        let key = password.map(|p| long_term_key(user, &self.config.realm, p));
        match key {
            Some(key) if req.check_integrity(raw, &key) => Ok((user.to_string(), key)),
            _ => {
                self.auth_failures += 1;
                Err(self.challenge(req, ErrorCode::UNAUTHORIZED))
            }
        }
    }

    fn on_control(&mut self, cx: &mut Ctx<'_>, from: SocketAddr, data: &[u8]) {
        if is_channel_data(data) {
            self.on_channel_data(cx, from, data);
            return;
        }
        let msg = match Message::decode(data) {
            Ok(m) if is_stun(data) => m,
            _ => {
                self.malformed += 1;
                return;
            }
        };
        match (msg.class, msg.method) {
            (Class::Request, _) => self.on_request(cx, from, &msg, data),
            (Class::Indication, Method::Send) => self.on_send(cx, from, &msg),
            // Keepalive indications and stray responses need nothing.
            _ => {}
        }
    }

    fn on_request(&mut self, cx: &mut Ctx<'_>, from: SocketAddr, req: &Message, raw: &[u8]) {
        if req.method == Method::Binding {
            // Plain STUN, unauthenticated: clients learn their server-reflexive address.
            let ok = req
                .reply(Class::SuccessResponse)
                .with(Attribute::XorMappedAddress(from));
            self.send_client(cx, from, &ok.encode());
            return;
        }
        let unknown = req.unknown_comprehension_required();
        if !unknown.is_empty() {
            let e = error_response(req, ErrorCode::UNKNOWN_ATTRIBUTE)
                .with(Attribute::UnknownAttributes(unknown));
            self.send_client(cx, from, &e.encode());
            return;
        }
        let (user, key) = match self.authenticate(req, raw) {
            Ok(x) => x,
            Err(e) => {
                self.send_client(cx, from, &e.encode());
                return;
            }
        };
        if req.method == Method::Allocate {
            if let Some(a) = self.live(cx, from).filter(|a| a.alloc_txid == req.txid) {
                let again = a.alloc_response.clone();
                self.send_client(cx, from, &again);
                return;
            }
        }
        if req.method == Method::Connect {
            // Answered once the connection to the peer is up (RFC 6062 §5.2).
            return self.tcp_connect_request(cx, from, req, &user, key);
        }
        if req.method == Method::ConnectionBind {
            return self.tcp_connection_bind(cx, from, req, &user, key);
        }
        let handled = match req.method {
            Method::Allocate => self.allocate(cx, from, req, &user),
            Method::Refresh => self.refresh(cx, from, req, &user),
            Method::CreatePermission => self.create_permission(cx, from, req, &user),
            Method::ChannelBind => self.channel_bind(cx, from, req, &user),
            _ => Err(ErrorCode::BAD_REQUEST),
        };
        let reply = handled.unwrap_or_else(|code| error_response(req, code));
        let bytes = reply
            .with(Attribute::Software(SOFTWARE.into()))
            .encode_with_integrity(&key);
        if req.method == Method::Allocate {
            if let Some(a) = self
                .allocs
                .get_mut(&from)
                .filter(|a| a.alloc_txid == req.txid)
            {
                a.alloc_response = bytes.clone();
            }
        }
        self.send_client(cx, from, &bytes);
    }

    fn allocate(
        &mut self,
        cx: &mut Ctx<'_>,
        from: SocketAddr,
        req: &Message,
        user: &str,
    ) -> Handled {
        if self.live(cx, from).is_some() {
            return Err(ErrorCode::ALLOCATION_MISMATCH);
        }
        let ip = self.addr.ok_or(ErrorCode::SERVER_ERROR)?.ip();
        let (relay, relayed) = match req.requested_transport() {
            None => return Err(ErrorCode::BAD_REQUEST),
            Some(TRANSPORT_UDP) => {
                let relay = cx
                    .udp_bind(SocketAddr::new(ip, 0))
                    .map_err(|_| ErrorCode::INSUFFICIENT_CAPACITY)?;
                let relayed = cx.local_addr(relay).map_err(|_| ErrorCode::SERVER_ERROR)?;
                (Some(relay), relayed)
            }
            // RFC 6062 §5.1: TCP relays only for clients on a TCP control connection.
            Some(TRANSPORT_TCP) if self.tcp.is_control(from) => {
                (None, self.tcp_relay_listen(cx, from, ip)?)
            }
            Some(_) => return Err(ErrorCode::UNSUPPORTED_TRANSPORT),
        };
        let lifetime = self.granted_lifetime(req.lifetime());
        let expires = cx.now() + lifetime;
        let alloc = Allocation {
            relay,
            relayed,
            username: user.to_string(),
            expires,
            alloc_txid: req.txid,
            alloc_response: Vec::new(),
            perms: BTreeMap::new(),
            channels: BTreeMap::new(),
        };
        self.allocs.insert(from, alloc);
        if let Some(relay) = relay {
            self.relays.insert(relay, from);
        }
        self.allocations += 1;
        cx.set_timer(lifetime + Duration::from_millis(1), SWEEP);
        cx.trace(&format!(
            "turn allocate {from} -> {relayed} for {}s",
            lifetime.as_secs()
        ));
        Ok(req
            .reply(Class::SuccessResponse)
            .with(Attribute::XorRelayedAddress(relayed))
            .with(Attribute::XorMappedAddress(from))
            .with(Attribute::Lifetime(secs(lifetime))))
    }

    /// The caller's allocation, checked to belong to the authenticated user.
    fn owned(
        &mut self,
        cx: &mut Ctx<'_>,
        from: SocketAddr,
        user: &str,
    ) -> Result<&mut Allocation, u16> {
        let a = self.live(cx, from).ok_or(ErrorCode::ALLOCATION_MISMATCH)?;
        if a.username != user {
            return Err(ErrorCode::WRONG_CREDENTIALS);
        }
        Ok(a)
    }

    fn refresh(
        &mut self,
        cx: &mut Ctx<'_>,
        from: SocketAddr,
        req: &Message,
        user: &str,
    ) -> Handled {
        let lifetime = match req.lifetime() {
            Some(0) => Duration::ZERO,
            other => self.granted_lifetime(other),
        };
        let now = cx.now();
        self.owned(cx, from, user)?.expires = now + lifetime;
        if lifetime.is_zero() {
            self.remove(cx, from);
        } else {
            cx.set_timer(lifetime + Duration::from_millis(1), SWEEP);
        }
        Ok(req
            .reply(Class::SuccessResponse)
            .with(Attribute::Lifetime(secs(lifetime))))
    }

    fn create_permission(
        &mut self,
        cx: &mut Ctx<'_>,
        from: SocketAddr,
        req: &Message,
        user: &str,
    ) -> Handled {
        let peers: Vec<IpAddr> = req
            .get_all(crate::stun::attr_type::XOR_PEER_ADDRESS)
            .filter_map(|a| match a {
                Attribute::XorPeerAddress(p) => Some(p.ip()),
                _ => None,
            })
            .collect();
        if peers.is_empty() {
            return Err(ErrorCode::BAD_REQUEST);
        }
        let until = cx.now() + PERMISSION_LIFETIME;
        let a = self.owned(cx, from, user)?;
        if peers.iter().any(|p| p.is_ipv4() != a.relayed.is_ipv4()) {
            return Err(PEER_ADDRESS_FAMILY_MISMATCH);
        }
        for p in peers {
            a.perms.insert(p, until);
        }
        Ok(req.reply(Class::SuccessResponse))
    }

    fn channel_bind(
        &mut self,
        cx: &mut Ctx<'_>,
        from: SocketAddr,
        req: &Message,
        user: &str,
    ) -> Handled {
        let (Some(channel), Some(peer)) = (req.channel_number(), req.xor_peer_address()) else {
            return Err(ErrorCode::BAD_REQUEST);
        };
        if !CHANNEL_RANGE.contains(&channel) {
            return Err(ErrorCode::BAD_REQUEST);
        }
        let now = cx.now();
        let a = self.owned(cx, from, user)?;
        if peer.is_ipv4() != a.relayed.is_ipv4() {
            return Err(PEER_ADDRESS_FAMILY_MISMATCH);
        }
        // A channel names one peer and a peer has one channel (RFC 5766 §11.2).
        let taken = a.channel_peer(now, channel).is_some_and(|p| p != peer);
        let other = a.channel_to(now, peer).is_some_and(|c| c != channel);
        if taken || other {
            return Err(ErrorCode::BAD_REQUEST);
        }
        a.channels.insert(
            channel,
            Channel {
                peer,
                expires: now + CHANNEL_LIFETIME,
            },
        );
        a.perms.insert(peer.ip(), now + PERMISSION_LIFETIME);
        Ok(req.reply(Class::SuccessResponse))
    }

    /// Send indication: relay DATA to a permitted peer (indications are never answered).
    fn on_send(&mut self, cx: &mut Ctx<'_>, from: SocketAddr, msg: &Message) {
        let (Some(peer), Some(data)) = (msg.xor_peer_address(), msg.data()) else {
            self.malformed += 1;
            return;
        };
        let now = cx.now();
        let Some(a) = self.live(cx, from) else { return };
        if !a.permitted(now, peer.ip()) {
            self.dropped_no_permission += 1;
            return;
        }
        let Some(relay) = a.relay else { return };
        if cx.udp_send(relay, peer, data).is_ok() {
            self.relayed_to_peer += 1;
        }
    }

    fn on_channel_data(&mut self, cx: &mut Ctx<'_>, from: SocketAddr, data: &[u8]) {
        let Ok(cd) = ChannelData::decode(data) else {
            self.malformed += 1;
            return;
        };
        let now = cx.now();
        let Some(a) = self.live(cx, from) else { return };
        // RFC 5766 §11.6: data on an unbound channel is silently discarded.
        let Some(peer) = a.channel_peer(now, cd.channel) else {
            return;
        };
        let Some(relay) = a.relay else { return };
        if cx.udp_send(relay, peer, &cd.data).is_ok() {
            self.relayed_to_peer += 1;
            self.channel_data += 1;
        }
    }

    /// A datagram from a peer on a relayed address: to the client if permitted.
    fn on_peer(&mut self, cx: &mut Ctx<'_>, relay: SockId, from: SocketAddr, data: &[u8]) {
        let Some(&client) = self.relays.get(&relay) else {
            return;
        };
        let now = cx.now();
        let (ignore, drop) = (self.config.ignore_permissions, self.config.drop_data);
        let Some(a) = self.live(cx, client) else {
            return;
        };
        if !ignore && !a.permitted(now, from.ip()) {
            self.dropped_no_permission += 1;
            return;
        }
        if drop || data.len() > MAX_DATA {
            return;
        }
        let channel = a.channel_to(now, from);
        self.channel_data += u64::from(channel.is_some());
        let txid: [u8; 12] = cx.rng().random();
        let bytes = relay_frame(Method::Data, from, channel, data, txid);
        self.send_client(cx, client, &bytes);
        self.relayed_to_client += 1;
    }
}

/// RFC 5766 §15: the peer's address family differs from the relayed address's.
const PEER_ADDRESS_FAMILY_MISMATCH: u16 = 443;

/// Whole seconds of a lifetime, saturating.
fn secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

fn error_response(req: &Message, code: u16) -> Message {
    let e = match code {
        PEER_ADDRESS_FAMILY_MISMATCH => ErrorCode::new(code, "Peer Address Family Mismatch"),
        _ => ErrorCode::standard(code),
    };
    req.reply(Class::ErrorResponse)
        .with(Attribute::ErrorCode(e))
}

impl App for TurnServer {
    fn start(&mut self, cx: &mut Ctx<'_>) {
        self.nonce = (0..16)
            .map(|_| char::from(b"0123456789abcdef"[cx.rng().random_range(0..16usize)]))
            .collect();
        let Some(ip) = cx.addrs().into_iter().find(|a| a.is_ipv4()) else {
            return;
        };
        if let Ok(s) = cx.udp_bind(SocketAddr::new(ip, self.config.port)) {
            self.sock = Some(s);
            self.addr = cx.local_addr(s).ok();
        }
        if self.config.tcp {
            self.tcp_start(cx, SocketAddr::new(ip, self.config.port));
        }
    }

    fn on_tcp(&mut self, cx: &mut Ctx<'_>, ev: crate::app::TcpEvent) {
        self.tcp_event(cx, ev);
    }

    fn on_udp(
        &mut self,
        cx: &mut Ctx<'_>,
        sock: SockId,
        from: SocketAddr,
        _to: SocketAddr,
        data: &[u8],
    ) {
        if Some(sock) == self.sock {
            self.on_control(cx, from, data);
        } else {
            self.on_peer(cx, sock, from, data);
        }
    }

    fn on_timer(&mut self, cx: &mut Ctx<'_>, token: u64) {
        if token == SWEEP {
            self.sweep(cx);
            self.tcp_sweep(cx);
        }
    }

    crate::app_any!();
}

// ---- client --------------------------------------------------------------------------

/// What a [`TurnClient`] reports to the app that embeds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TurnEvent {
    Allocated {
        relayed: SocketAddr,
        mapped: SocketAddr,
    },
    PermissionCreated {
        peer: IpAddr,
    },
    ChannelBound {
        peer: SocketAddr,
        channel: u16,
    },
    /// Data a peer sent to the relayed address.
    Data {
        peer: SocketAddr,
        data: Vec<u8>,
    },
    Failed {
        reason: String,
    },
}

/// Where the client's allocation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TurnState {
    Idle,
    Allocating,
    Allocated,
    Failed,
    Closed,
}

/// What a request transaction is for.
#[derive(Clone, Debug)]
enum TxKind {
    Allocate,
    Refresh { lifetime: Option<u32> },
    Permission { peers: Vec<IpAddr> },
    ChannelBind { peer: SocketAddr, channel: u16 },
}

impl TxKind {
    fn method(&self) -> Method {
        match self {
            TxKind::Allocate => Method::Allocate,
            TxKind::Refresh { .. } => Method::Refresh,
            TxKind::Permission { .. } => Method::CreatePermission,
            TxKind::ChannelBind { .. } => Method::ChannelBind,
        }
    }
}

/// An outstanding request, kept for retransmission.
#[derive(Clone, Debug)]
struct Tx {
    kind: TxKind,
    bytes: Vec<u8>,
    authed: bool,
    sends: u32,
    rto: Duration,
    token: u64,
}

/// What a client timer is for. Periodic ones carry the allocation epoch they were set
/// in, so a chain left over from an earlier allocation dies out.
#[derive(Clone, Debug)]
enum TimerKind {
    Retransmit([u8; 12]),
    RefreshAllocation(u32),
    RefreshPermissions(u32),
    RefreshChannel(u32, SocketAddr),
    Keepalive(u32),
}

/// First retransmission timeout; it doubles up to [`RTO_MAX`].
const RTO_INITIAL: Duration = Duration::from_millis(500);
const RTO_MAX: Duration = Duration::from_millis(3200);
/// Sends of one request before it fails.
const MAX_SENDS: u32 = 5;
/// Permissions last 5 min; refresh a minute early.
const PERMISSION_REFRESH: Duration = Duration::from_secs(240);
/// Channels last 10 min; refresh a minute early.
const CHANNEL_REFRESH: Duration = Duration::from_secs(540);
/// Binding indications keep the NAT mapping toward the server open (NATs forget idle
/// UDP mappings after 2 min or less).
const KEEPALIVE: Duration = Duration::from_secs(25);
/// 438 Stale Nonce answers tolerated in a row.
const MAX_STALE: u32 = 3;
/// Longest REALM and NONCE accepted from a server (RFC 5389 §15.7-8: 763 bytes); longer
/// ones could not be echoed in a request.
const MAX_CHALLENGE: usize = 763;
/// Shortest delay before an allocation refresh, whatever lifetime the server grants.
const MIN_REFRESH: Duration = Duration::from_secs(1);

/// The client half of TURN, embedded in an app and sharing its UDP socket: the app
/// passes every datagram to [`TurnClient::handle`] and every timer to
/// [`TurnClient::on_timer`] first. Timer tokens at or above [`TurnClient::TIMER_BASE`]
/// belong to the client, so one app embeds at most one client.
#[derive(Clone, Debug)]
pub struct TurnClient {
    server: SocketAddr,
    username: String,
    password: String,
    realm: Option<String>,
    nonce: Option<String>,
    key: Option<[u8; 16]>,
    state: TurnState,
    relayed: Option<SocketAddr>,
    mapped: Option<SocketAddr>,
    lifetime: Duration,
    txs: BTreeMap<[u8; 12], Tx>,
    timers: BTreeMap<u64, TimerKind>,
    next_token: u64,
    /// Peers whose permissions the client keeps alive; true once the server confirmed.
    perms: BTreeMap<IpAddr, bool>,
    /// Channel per peer; true once the server confirmed the binding.
    channels: BTreeMap<SocketAddr, (u16, bool)>,
    next_channel: u16,
    stale: u32,
    /// Counts allocations, to retire periodic timers of earlier ones.
    epoch: u32,
}

impl TurnClient {
    pub const TIMER_BASE: u64 = 0x7475_726e_0000_0000;

    pub fn new(server: SocketAddr, username: &str, password: &str) -> Self {
        TurnClient {
            server,
            username: username.to_string(),
            password: password.to_string(),
            realm: None,
            nonce: None,
            key: None,
            state: TurnState::Idle,
            relayed: None,
            mapped: None,
            lifetime: Duration::from_secs(600),
            txs: BTreeMap::new(),
            timers: BTreeMap::new(),
            next_token: 0,
            perms: BTreeMap::new(),
            channels: BTreeMap::new(),
            next_channel: *CHANNEL_RANGE.start(),
            stale: 0,
            epoch: 0,
        }
    }

    pub fn server(&self) -> SocketAddr {
        self.server
    }

    pub fn state(&self) -> TurnState {
        self.state
    }

    pub fn relayed(&self) -> Option<SocketAddr> {
        self.relayed.filter(|_| self.state == TurnState::Allocated)
    }

    /// Our address as the server saw it (server-reflexive), once allocated.
    pub fn mapped(&self) -> Option<SocketAddr> {
        self.mapped
    }

    /// The channel bound (and confirmed) to `peer`.
    pub fn channel(&self, peer: SocketAddr) -> Option<u16> {
        self.channels
            .get(&peer)
            .filter(|(_, ok)| *ok)
            .map(|(c, _)| *c)
    }

    /// Sends Allocate; the first answer is normally 401, which supplies realm and nonce.
    pub fn start(&mut self, cx: &mut Ctx<'_>, sock: SockId) {
        if matches!(
            self.state,
            TurnState::Idle | TurnState::Failed | TurnState::Closed
        ) {
            self.state = TurnState::Allocating;
            self.request(cx, sock, TxKind::Allocate);
        }
    }

    /// Release the allocation (Refresh with LIFETIME 0).
    pub fn close(&mut self, cx: &mut Ctx<'_>, sock: SockId) {
        if self.state == TurnState::Allocated {
            self.request(cx, sock, TxKind::Refresh { lifetime: Some(0) });
        }
    }

    /// If the datagram came from the TURN server, consume it and return the resulting
    /// events; otherwise None. Plain STUN Binding traffic from the server is left to the
    /// app (it may use the server for STUN too).
    pub fn handle(
        &mut self,
        cx: &mut Ctx<'_>,
        sock: SockId,
        from: SocketAddr,
        data: &[u8],
    ) -> Option<Vec<TurnEvent>> {
        if from != self.server {
            return None;
        }
        if is_channel_data(data) {
            return Some(self.on_channel_data(data));
        }
        let msg = Message::decode(data).ok().filter(|_| is_stun(data))?;
        if matches!(msg.method, Method::Binding | Method::Other(_)) {
            return None;
        }
        Some(match msg.class {
            Class::Indication if msg.method == Method::Data => self.on_data_indication(&msg),
            Class::SuccessResponse | Class::ErrorResponse => self.on_response(cx, sock, &msg, data),
            _ => Vec::new(),
        })
    }

    /// Ask for a permission for `peer` (kept alive until the allocation ends). Queued
    /// until the allocation exists; nothing to do when it is already installed.
    pub fn create_permission(&mut self, cx: &mut Ctx<'_>, sock: SockId, peer: IpAddr) {
        if *self.perms.entry(peer).or_insert(false) {
            return;
        }
        if self.state == TurnState::Allocated {
            self.request(cx, sock, TxKind::Permission { peers: vec![peer] });
        }
    }

    /// Bind a channel to `peer` (also installs a permission for its IP). Queued until
    /// the allocation exists.
    pub fn bind_channel(&mut self, cx: &mut Ctx<'_>, sock: SockId, peer: SocketAddr) {
        if self.channels.contains_key(&peer) {
            return;
        }
        if !CHANNEL_RANGE.contains(&self.next_channel) {
            return; // every channel number is in use
        }
        let channel = self.next_channel;
        self.next_channel += 1;
        self.channels.insert(peer, (channel, false));
        if self.state == TurnState::Allocated {
            self.request(cx, sock, TxKind::ChannelBind { peer, channel });
        }
    }

    /// Send to a peer through the relay: ChannelData when a channel is bound to it, else
    /// a Send indication. Dropped while there is no allocation or when too large.
    pub fn send(&mut self, cx: &mut Ctx<'_>, sock: SockId, peer: SocketAddr, data: &[u8]) {
        if self.state != TurnState::Allocated || data.len() > MAX_DATA {
            return;
        }
        let txid: [u8; 12] = cx.rng().random();
        let bytes = relay_frame(Method::Send, peer, self.channel(peer), data, txid);
        let _ = cx.udp_send(sock, self.server, &bytes);
    }

    /// Timer tokens >= TIMER_BASE: handle (retransmissions, refreshes) and return the
    /// events; None for the app's own tokens.
    pub fn on_timer(
        &mut self,
        cx: &mut Ctx<'_>,
        sock: SockId,
        token: u64,
    ) -> Option<Vec<TurnEvent>> {
        if token < Self::TIMER_BASE {
            return None;
        }
        let Some(kind) = self.timers.remove(&token) else {
            return Some(Vec::new());
        };
        let live = |epoch: u32| self.state == TurnState::Allocated && epoch == self.epoch;
        match kind {
            TimerKind::Retransmit(txid) => return Some(self.retransmit(cx, sock, txid, token)),
            TimerKind::RefreshAllocation(e) if live(e) => {
                self.request(
                    cx,
                    sock,
                    TxKind::Refresh {
                        lifetime: Some(secs(self.lifetime)),
                    },
                );
            }
            TimerKind::RefreshPermissions(e) if live(e) => {
                self.refresh_permissions(cx, sock);
                self.timer(cx, PERMISSION_REFRESH, TimerKind::RefreshPermissions(e));
            }
            TimerKind::RefreshChannel(e, peer) if live(e) => {
                if let Some(&(channel, _)) = self.channels.get(&peer) {
                    self.request(cx, sock, TxKind::ChannelBind { peer, channel });
                }
            }
            TimerKind::Keepalive(e) if live(e) => {
                let txid: [u8; 12] = cx.rng().random();
                let ping = Message::new(Class::Indication, Method::Binding, txid).encode();
                let _ = cx.udp_send(sock, self.server, &ping);
                self.timer(cx, KEEPALIVE, TimerKind::Keepalive(e));
            }
            _ => {}
        }
        Some(Vec::new())
    }

    fn timer(&mut self, cx: &mut Ctx<'_>, after: Duration, kind: TimerKind) -> u64 {
        let token = Self::TIMER_BASE + self.next_token;
        self.next_token += 1;
        cx.set_timer(after, token);
        self.timers.insert(token, kind);
        token
    }

    /// Send a new request transaction, signed once realm and nonce are known.
    fn request(&mut self, cx: &mut Ctx<'_>, sock: SockId, kind: TxKind) {
        let txid: [u8; 12] = cx.rng().random();
        let mut msg = Message::new(Class::Request, kind.method(), txid);
        match &kind {
            TxKind::Allocate => {
                msg.add(Attribute::RequestedTransport(TRANSPORT_UDP));
            }
            TxKind::Refresh { lifetime } => {
                if let Some(l) = lifetime {
                    msg.add(Attribute::Lifetime(*l));
                }
            }
            TxKind::Permission { peers } => {
                for p in peers {
                    msg.add(Attribute::XorPeerAddress(SocketAddr::new(*p, 0)));
                }
            }
            TxKind::ChannelBind { peer, channel } => {
                msg.add(Attribute::ChannelNumber(*channel));
                msg.add(Attribute::XorPeerAddress(*peer));
            }
        }
        let (bytes, authed) = match (&self.key, &self.realm, &self.nonce) {
            (Some(key), Some(realm), Some(nonce)) => {
                msg.add(Attribute::Username(self.username.clone()));
                msg.add(Attribute::Realm(realm.clone()));
                msg.add(Attribute::Nonce(nonce.clone()));
                (msg.encode_with_integrity(key), true)
            }
            _ => (msg.encode(), false),
        };
        let _ = cx.udp_send(sock, self.server, &bytes);
        let token = self.timer(cx, RTO_INITIAL, TimerKind::Retransmit(txid));
        self.txs.insert(
            txid,
            Tx {
                kind,
                bytes,
                authed,
                sends: 1,
                rto: RTO_INITIAL,
                token,
            },
        );
    }

    fn retransmit(
        &mut self,
        cx: &mut Ctx<'_>,
        sock: SockId,
        txid: [u8; 12],
        token: u64,
    ) -> Vec<TurnEvent> {
        let Some(tx) = self.txs.get_mut(&txid).filter(|t| t.token == token) else {
            return Vec::new();
        };
        if tx.sends >= MAX_SENDS {
            let kind = tx.kind.clone();
            self.txs.remove(&txid);
            return self.fail(&kind, format!("{:?} timed out", kind.method()));
        }
        tx.sends += 1;
        tx.rto = (tx.rto * 2).min(RTO_MAX);
        let (bytes, rto) = (tx.bytes.clone(), tx.rto);
        let _ = cx.udp_send(sock, self.server, &bytes);
        let token = self.timer(cx, rto, TimerKind::Retransmit(txid));
        if let Some(tx) = self.txs.get_mut(&txid) {
            tx.token = token;
        }
        Vec::new()
    }

    /// Report a failed transaction; a failed Allocate or Refresh ends the allocation.
    fn fail(&mut self, kind: &TxKind, reason: String) -> Vec<TurnEvent> {
        match kind {
            TxKind::Allocate | TxKind::Refresh { .. } => {
                self.state = TurnState::Failed;
                self.relayed = None;
            }
            TxKind::ChannelBind { peer, .. } => {
                self.channels.remove(peer);
            }
            TxKind::Permission { .. } => {}
        }
        vec![TurnEvent::Failed { reason }]
    }

    fn on_response(
        &mut self,
        cx: &mut Ctx<'_>,
        sock: SockId,
        msg: &Message,
        raw: &[u8],
    ) -> Vec<TurnEvent> {
        let Some(tx) = self.txs.get(&msg.txid) else {
            return Vec::new();
        };
        if tx.kind.method() != msg.method {
            return Vec::new();
        }
        // A success to a signed request must be signed with our key, or it is forged.
        let signed = self.key.is_some_and(|k| msg.check_integrity(raw, &k));
        if tx.authed && msg.class == Class::SuccessResponse && !signed {
            return Vec::new();
        }
        let Some(tx) = self.txs.remove(&msg.txid) else {
            return Vec::new();
        };
        self.timers.remove(&tx.token);
        if msg.class == Class::SuccessResponse {
            self.stale = 0;
            return self.on_success(cx, sock, tx.kind, msg);
        }
        self.on_error(cx, sock, tx, msg)
    }

    fn on_error(
        &mut self,
        cx: &mut Ctx<'_>,
        sock: SockId,
        tx: Tx,
        msg: &Message,
    ) -> Vec<TurnEvent> {
        let code = msg.error_code().map_or(0, |e| e.code);
        let challenge = (msg.realm(), msg.nonce());
        match (code, challenge) {
            (ErrorCode::UNAUTHORIZED, (Some(realm), Some(nonce)))
                if !tx.authed && realm.len() <= MAX_CHALLENGE && nonce.len() <= MAX_CHALLENGE =>
            {
                self.key = Some(long_term_key(&self.username, realm, &self.password));
                self.realm = Some(realm.to_string());
                self.nonce = Some(nonce.to_string());
                self.request(cx, sock, tx.kind);
                Vec::new()
            }
            (ErrorCode::STALE_NONCE, (_, Some(nonce)))
                if self.stale < MAX_STALE && nonce.len() <= MAX_CHALLENGE =>
            {
                self.stale += 1;
                self.nonce = Some(nonce.to_string());
                self.request(cx, sock, tx.kind);
                Vec::new()
            }
            _ => {
                let reason = msg.error_code().map_or("no error code".to_string(), |e| {
                    format!("{} {}", e.code, e.reason)
                });
                self.fail(&tx.kind, format!("{:?} failed: {reason}", tx.kind.method()))
            }
        }
    }

    fn on_success(
        &mut self,
        cx: &mut Ctx<'_>,
        sock: SockId,
        kind: TxKind,
        msg: &Message,
    ) -> Vec<TurnEvent> {
        match kind {
            TxKind::Allocate => self.on_allocated(cx, sock, msg),
            TxKind::Refresh { lifetime: Some(0) } => {
                self.state = TurnState::Closed;
                self.relayed = None;
                Vec::new()
            }
            TxKind::Refresh { .. } => {
                self.set_lifetime(cx, msg);
                Vec::new()
            }
            TxKind::Permission { peers } => peers
                .into_iter()
                .filter(|p| self.perms.insert(*p, true) == Some(false))
                .map(|peer| TurnEvent::PermissionCreated { peer })
                .collect(),
            TxKind::ChannelBind { peer, channel } => {
                self.perms.entry(peer.ip()).or_insert(true);
                self.timer(
                    cx,
                    CHANNEL_REFRESH,
                    TimerKind::RefreshChannel(self.epoch, peer),
                );
                match self.channels.insert(peer, (channel, true)) {
                    Some((_, true)) => Vec::new(),
                    _ => vec![TurnEvent::ChannelBound { peer, channel }],
                }
            }
        }
    }

    fn on_allocated(&mut self, cx: &mut Ctx<'_>, sock: SockId, msg: &Message) -> Vec<TurnEvent> {
        let (Some(relayed), Some(mapped)) = (msg.xor_relayed_address(), msg.xor_mapped()) else {
            return self.fail(&TxKind::Allocate, "Allocate answer lacks addresses".into());
        };
        self.state = TurnState::Allocated;
        self.epoch += 1;
        self.relayed = Some(relayed);
        self.mapped = Some(mapped);
        self.set_lifetime(cx, msg);
        self.timer(
            cx,
            PERMISSION_REFRESH,
            TimerKind::RefreshPermissions(self.epoch),
        );
        self.timer(cx, KEEPALIVE, TimerKind::Keepalive(self.epoch));
        // A new allocation has no permissions or channels yet: (re)install all the app
        // asked for, before or during an earlier allocation.
        self.perms.values_mut().for_each(|ok| *ok = false);
        self.channels.values_mut().for_each(|(_, ok)| *ok = false);
        let waiting: Vec<IpAddr> = self
            .perms
            .iter()
            .filter(|(_, ok)| !**ok)
            .map(|(p, _)| *p)
            .collect();
        if !waiting.is_empty() {
            self.request(cx, sock, TxKind::Permission { peers: waiting });
        }
        let channels: Vec<(SocketAddr, u16)> = self
            .channels
            .iter()
            .filter(|(_, (_, ok))| !ok)
            .map(|(p, (c, _))| (*p, *c))
            .collect();
        for (peer, channel) in channels {
            self.request(cx, sock, TxKind::ChannelBind { peer, channel });
        }
        vec![TurnEvent::Allocated { relayed, mapped }]
    }

    /// Take the granted lifetime and schedule the refresh before it runs out.
    fn set_lifetime(&mut self, cx: &mut Ctx<'_>, msg: &Message) {
        self.lifetime = Duration::from_secs(u64::from(msg.lifetime().unwrap_or(600)));
        let early = if self.lifetime > Duration::from_secs(120) {
            self.lifetime - Duration::from_secs(60)
        } else {
            self.lifetime / 2
        };
        self.timer(
            cx,
            early.max(MIN_REFRESH),
            TimerKind::RefreshAllocation(self.epoch),
        );
    }

    fn refresh_permissions(&mut self, cx: &mut Ctx<'_>, sock: SockId) {
        let peers: Vec<IpAddr> = self.perms.keys().copied().collect();
        if !peers.is_empty() {
            self.request(cx, sock, TxKind::Permission { peers });
        }
    }

    fn on_channel_data(&mut self, data: &[u8]) -> Vec<TurnEvent> {
        let Ok(cd) = ChannelData::decode(data) else {
            return Vec::new();
        };
        let peer = self
            .channels
            .iter()
            .find(|(_, (c, _))| *c == cd.channel)
            .map(|(p, _)| *p);
        match peer {
            Some(peer) => vec![TurnEvent::Data {
                peer,
                data: cd.data,
            }],
            None => Vec::new(),
        }
    }

    fn on_data_indication(&self, msg: &Message) -> Vec<TurnEvent> {
        match (msg.xor_peer_address(), msg.data()) {
            (Some(peer), Some(data)) => vec![TurnEvent::Data {
                peer,
                data: data.to_vec(),
            }],
            _ => Vec::new(),
        }
    }
}
/// Relayed data in either direction: ChannelData when a channel is bound to `peer`,
/// else a Send (client to server) or Data (server to client) indication.
fn relay_frame(
    method: Method,
    peer: SocketAddr,
    channel: Option<u16>,
    data: &[u8],
    txid: [u8; 12],
) -> Vec<u8> {
    match channel {
        Some(channel) => ChannelData {
            channel,
            data: data.to_vec(),
        }
        .encode(),
        None => Message::new(Class::Indication, method, txid)
            .with(Attribute::XorPeerAddress(peer))
            .with(Attribute::Data(data.to_vec()))
            .encode(),
    }
}
