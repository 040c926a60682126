//! The TURN client state machine: one allocation, its permissions and channels, and for
//! TCP allocations the data connections of its peers.

use super::auth::Auth;
use super::{ClientConfig, ConnId, Transmit, Transport, CONTROL};
use crate::connect::stun_client::{Retransmit, Step};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use stun::stream::{Frame, StreamDecoder};
use stun::{Attribute, ChannelData, Class, ErrorCode, Message, Method};

/// LIFETIME asked for: RFC 5766's default allocation lifetime, 10 minutes.
pub const DEFAULT_LIFETIME_SECS: u32 = 600;
/// Refresh this long before the allocation expires (or at half the lifetime if shorter),
/// leaving room for a full UDP retransmission schedule.
pub const REFRESH_MARGIN_MS: u64 = 60_000;
/// Permissions last 300 s on the server (RFC 5766 §8); refreshed after 240 s.
pub const PERMISSION_REFRESH_MS: u64 = 240_000;
/// Channel bindings last 600 s (RFC 5766 §11); refreshed after 540 s.
pub const CHANNEL_REFRESH_MS: u64 = 540_000;
/// RFC 6062 §5.3: a ConnectionBind must arrive within 30 s of the ConnectionAttempt;
/// a data connection not bound by then is dropped.
pub const BIND_DEADLINE_MS: u64 = 30_000;
/// Requests in flight at once: each holds its encoded bytes until answered.
pub const MAX_PENDING: usize = 64;
/// Peers with a permission; each costs a refresh every 4 minutes.
pub const MAX_PERMISSIONS: usize = 64;
/// Channels bound; more would just add refreshes, Send indications still work.
pub const MAX_CHANNELS: usize = 64;
/// Peer TCP connections of a TCP allocation; further ConnectionAttempts are refused.
pub const MAX_DATA_CONNS: usize = 32;
/// Auth retries of one request (one 401 challenge, then stale nonces).
pub const MAX_AUTH_RETRIES: u8 = 3;

/// Why an operation or the allocation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TurnError {
    #[error("credentials refused (401 after authenticating)")]
    Unauthorized,
    #[error("server error {code} {reason}")]
    Server { code: u16, reason: String },
    #[error("no answer from the TURN server")]
    Timeout,
    #[error("no allocation")]
    NotAllocated,
    #[error("no permission for {0}")]
    NoPermission(IpAddr),
    #[error("wrong relay transport for this operation")]
    WrongTransport,
    #[error("limit reached: {0}")]
    Limit(&'static str),
    #[error("control connection closed")]
    ControlClosed,
    #[error("control stream broken: {0}")]
    Stream(String),
    #[error("success response without {0}")]
    MissingAttribute(&'static str),
}

/// What the client reports to its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnEvent {
    Allocated {
        relayed: SocketAddr,
        mapped: Option<SocketAddr>,
        lifetime: u32,
    },
    /// The allocation could not be made or was lost (refresh failed, control closed).
    Failed(TurnError),
    /// The allocation was released with a zero-lifetime Refresh.
    Released,
    PermissionCreated(IpAddr),
    ChannelBound {
        peer: SocketAddr,
        channel: u16,
    },
    /// A datagram from a peer through a UDP relay.
    Data {
        peer: SocketAddr,
        data: Vec<u8>,
    },
    /// A request for a peer failed (permission, channel, connect).
    PeerFailed {
        peer: SocketAddr,
        error: TurnError,
    },
    /// TCP relay: data connection `conn` now carries the peer's stream.
    PeerConnected {
        conn: ConnId,
        peer: SocketAddr,
        inbound: bool,
    },
    PeerStream {
        conn: ConnId,
        data: Vec<u8>,
    },
    PeerClosed {
        conn: ConnId,
    },
}

/// Refusals and oddities, counted (never fatal on their own).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Responses matching no transaction of ours.
    pub unmatched: u64,
    /// Answers to signed requests whose MESSAGE-INTEGRITY is missing or wrong.
    pub bad_integrity: u64,
    /// Bytes that decode to nothing valid.
    pub malformed: u64,
    /// ChannelData on a channel we did not bind.
    pub unknown_channel: u64,
    /// ConnectionAttempts refused for lack of room.
    pub refused_attempts: u64,
    /// Requests re-sent with fresh credentials (401 challenge or 438 stale nonce).
    pub auth_retries: u64,
    /// Server realm differs from the configured `TURN.realm`.
    pub realm_mismatch: u64,
    /// UDP retransmissions.
    pub retransmissions: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Request {
    Allocate,
    Refresh { lifetime: u32 },
    Permission(IpAddr),
    ChannelBind { peer: SocketAddr, channel: u16 },
    Connect { peer: SocketAddr },
    ConnectionBind { conn: ConnId },
}

#[derive(Debug)]
struct Pending {
    request: Request,
    conn: Option<ConnId>,
    bytes: Vec<u8>,
    signed: bool,
    timer: Retransmit,
    auth_retries: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Idle,
    Allocating,
    Allocated {
        relayed: SocketAddr,
        refresh_at: u64,
    },
    Releasing,
    Done,
}

#[derive(Debug, Clone, Copy)]
struct Refreshable {
    installed: bool,
    refresh_at: Option<u64>,
}

#[derive(Debug)]
struct DataConn {
    peer: SocketAddr,
    connection_id: u32,
    inbound: bool,
    bound: bool,
    deadline: u64,
    decoder: StreamDecoder,
}

pub struct TurnClient {
    cfg: ClientConfig,
    rng: ChaCha8Rng,
    auth: Auth,
    state: State,
    pending: BTreeMap<[u8; 12], Pending>,
    control: StreamDecoder,
    control_up: bool,
    permissions: BTreeMap<IpAddr, Refreshable>,
    channels: BTreeMap<SocketAddr, (u16, Refreshable)>,
    channel_peers: BTreeMap<u16, SocketAddr>,
    data_conns: BTreeMap<ConnId, DataConn>,
    next_conn: u32,
    transmits: VecDeque<Transmit>,
    events: VecDeque<TurnEvent>,
    stats: Stats,
}

impl TurnClient {
    pub fn new(cfg: ClientConfig) -> Self {
        TurnClient {
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            auth: Auth::new(&cfg.username, &cfg.password),
            cfg,
            state: State::Idle,
            pending: BTreeMap::new(),
            control: StreamDecoder::new(),
            control_up: false,
            permissions: BTreeMap::new(),
            channels: BTreeMap::new(),
            channel_peers: BTreeMap::new(),
            data_conns: BTreeMap::new(),
            next_conn: 1,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn relayed(&self) -> Option<SocketAddr> {
        match self.state {
            State::Allocated { relayed, .. } => Some(relayed),
            _ => None,
        }
    }

    pub fn channel(&self, peer: SocketAddr) -> Option<u16> {
        self.channels
            .get(&peer)
            .filter(|(_, r)| r.installed)
            .map(|(c, _)| *c)
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<TurnEvent> {
        self.events.pop_front()
    }

    /// Earliest time `handle_timeout` has work to do.
    pub fn poll_timeout(&self) -> Option<u64> {
        let pending = self.pending.values().map(|p| p.timer.next_at());
        let refresh = match self.state {
            State::Allocated { refresh_at, .. } => Some(refresh_at),
            _ => None,
        };
        let perms = self.permissions.values().filter_map(|r| r.refresh_at);
        let chans = self.channels.values().filter_map(|(_, r)| r.refresh_at);
        let binds = self
            .data_conns
            .values()
            .filter(|d| !d.bound)
            .map(|d| d.deadline);
        pending
            .chain(refresh)
            .chain(perms)
            .chain(chans)
            .chain(binds)
            .min()
    }

    /// Starts allocating: over TCP the control connection is opened first.
    pub fn start(&mut self, now: u64) {
        if self.state != State::Idle {
            return;
        }
        self.state = State::Allocating;
        match self.cfg.control {
            Transport::Udp => self.request(now, Request::Allocate, None),
            Transport::Tcp => self.transmits.push_back(Transmit::Open {
                conn: CONTROL,
                to: self.cfg.server,
            }),
        }
    }

    /// Installs (and keeps refreshing) a permission for `peer`'s address.
    pub fn create_permission(&mut self, now: u64, peer: IpAddr) -> Result<(), TurnError> {
        self.allocated()?;
        if !self.permissions.contains_key(&peer) && self.permissions.len() >= MAX_PERMISSIONS {
            return Err(TurnError::Limit("permissions"));
        }
        self.permissions.entry(peer).or_insert(Refreshable {
            installed: false,
            refresh_at: None,
        });
        self.request(now, Request::Permission(peer), None);
        Ok(())
    }

    /// Binds a channel to `peer` (UDP relays), which also installs its permission.
    pub fn bind_channel(&mut self, now: u64, peer: SocketAddr) -> Result<u16, TurnError> {
        self.allocated()?;
        if self.cfg.relay != Transport::Udp {
            return Err(TurnError::WrongTransport);
        }
        if let Some((c, _)) = self.channels.get(&peer) {
            return Ok(*c);
        }
        if self.channels.len() >= MAX_CHANNELS {
            return Err(TurnError::Limit("channels"));
        }
        let channel = *stun::CHANNEL_RANGE.start() + self.channels.len() as u16;
        let idle = Refreshable {
            installed: false,
            refresh_at: None,
        };
        self.channels.insert(peer, (channel, idle));
        self.channel_peers.insert(channel, peer);
        self.request(now, Request::ChannelBind { peer, channel }, None);
        Ok(channel)
    }

    /// Sends a datagram to `peer` through a UDP relay: ChannelData when a channel is
    /// bound, else a Send indication (which needs a permission).
    pub fn send_to(&mut self, peer: SocketAddr, data: &[u8]) -> Result<(), TurnError> {
        self.allocated()?;
        if self.cfg.relay != Transport::Udp {
            return Err(TurnError::WrongTransport);
        }
        if let Some(channel) = self.channel(peer) {
            let cd = ChannelData {
                channel,
                data: data.to_vec(),
            };
            let bytes = match self.cfg.control {
                Transport::Udp => cd.encode(),
                Transport::Tcp => cd.encode_padded(),
            };
            self.send_control(bytes);
            return Ok(());
        }
        if !self
            .permissions
            .get(&peer.ip())
            .is_some_and(|r| r.installed)
        {
            return Err(TurnError::NoPermission(peer.ip()));
        }
        let txid = self.rng.random();
        let msg = Message::new(Class::Indication, Method::Send, txid)
            .with(Attribute::XorPeerAddress(peer))
            .with(Attribute::Data(data.to_vec()));
        self.send_control(msg.encode_with(None, true));
        Ok(())
    }

    /// TCP relay: asks the server to connect to `peer` (RFC 6062 §4.3). The permission
    /// must have been requested first.
    pub fn connect_peer(&mut self, now: u64, peer: SocketAddr) -> Result<(), TurnError> {
        self.allocated()?;
        if self.cfg.relay != Transport::Tcp {
            return Err(TurnError::WrongTransport);
        }
        if self.data_conns.len() >= MAX_DATA_CONNS {
            return Err(TurnError::Limit("peer connections"));
        }
        self.request(now, Request::Connect { peer }, None);
        Ok(())
    }

    /// TCP relay: writes to the peer behind a bound data connection.
    pub fn send_stream(&mut self, conn: ConnId, data: &[u8]) -> Result<(), TurnError> {
        match self.data_conns.get(&conn) {
            Some(d) if d.bound => {
                self.transmits.push_back(Transmit::Write {
                    conn,
                    data: data.to_vec(),
                });
                Ok(())
            }
            _ => Err(TurnError::NotAllocated),
        }
    }

    pub fn close_stream(&mut self, conn: ConnId) {
        if self.data_conns.remove(&conn).is_some() {
            self.transmits.push_back(Transmit::Close { conn });
        }
    }

    /// Releases the allocation (Refresh with LIFETIME 0).
    pub fn release(&mut self, now: u64) {
        if self.relayed().is_some() {
            self.state = State::Releasing;
            self.request(now, Request::Refresh { lifetime: 0 }, None);
        }
    }

    pub fn handle_timeout(&mut self, now: u64) {
        let due: Vec<[u8; 12]> = self
            .pending
            .iter()
            .filter(|(_, p)| p.timer.next_at() <= now)
            .map(|(t, _)| *t)
            .collect();
        for txid in due {
            let Some(p) = self.pending.get_mut(&txid) else {
                continue;
            };
            match p.timer.on_timeout(now) {
                Step::Wait => {}
                Step::Resend => {
                    self.stats.retransmissions += 1;
                    let (conn, bytes) = (p.conn, p.bytes.clone());
                    self.send_on(conn, bytes);
                }
                Step::GiveUp => {
                    if let Some(p) = self.pending.remove(&txid) {
                        self.fail(p.request, TurnError::Timeout);
                    }
                }
            }
        }
        if let State::Allocated { refresh_at, .. } = self.state {
            if refresh_at <= now {
                self.set_refresh(u64::MAX);
                let lifetime = self.cfg.lifetime;
                self.request(now, Request::Refresh { lifetime }, None);
            }
        }
        let perms: Vec<IpAddr> = self
            .permissions
            .iter()
            .filter(|(_, r)| r.refresh_at.is_some_and(|t| t <= now))
            .map(|(ip, _)| *ip)
            .collect();
        for ip in perms {
            if let Some(r) = self.permissions.get_mut(&ip) {
                r.refresh_at = None;
            }
            self.request(now, Request::Permission(ip), None);
        }
        let chans: Vec<(SocketAddr, u16)> = self
            .channels
            .iter()
            .filter(|(_, (_, r))| r.refresh_at.is_some_and(|t| t <= now))
            .map(|(p, (c, _))| (*p, *c))
            .collect();
        for (peer, channel) in chans {
            if let Some((_, r)) = self.channels.get_mut(&peer) {
                r.refresh_at = None;
            }
            self.request(now, Request::ChannelBind { peer, channel }, None);
        }
        let late: Vec<ConnId> = self
            .data_conns
            .iter()
            .filter(|(_, d)| !d.bound && d.deadline <= now)
            .map(|(c, _)| *c)
            .collect();
        for conn in late {
            if let Some(d) = self.data_conns.remove(&conn) {
                self.transmits.push_back(Transmit::Close { conn });
                self.events.push_back(TurnEvent::PeerFailed {
                    peer: d.peer,
                    error: TurnError::Timeout,
                });
            }
        }
    }

    /// A datagram from `from` on the client's UDP socket.
    pub fn handle_datagram(&mut self, now: u64, from: SocketAddr, bytes: &[u8]) {
        if from != self.cfg.server || self.cfg.control != Transport::Udp {
            self.stats.malformed += 1;
            return;
        }
        if stun::is_channel_data(bytes) {
            match ChannelData::decode(bytes) {
                Ok(cd) => self.on_channel_data(cd),
                Err(_) => self.stats.malformed += 1,
            }
        } else {
            match Message::decode(bytes) {
                Ok(msg) => self.on_stun(now, None, msg, bytes),
                Err(_) => self.stats.malformed += 1,
            }
        }
    }

    /// TCP connection `conn` to the server is established.
    pub fn handle_connected(&mut self, now: u64, conn: ConnId) {
        if conn == CONTROL {
            if self.state == State::Allocating && !self.control_up {
                self.control_up = true;
                self.request(now, Request::Allocate, None);
            }
            return;
        }
        if !self.data_conns.contains_key(&conn) {
            return;
        }
        self.request(now, Request::ConnectionBind { conn }, Some(conn));
    }

    /// Bytes read from TCP connection `conn`.
    pub fn handle_data(&mut self, now: u64, conn: ConnId, bytes: &[u8]) {
        if conn == CONTROL {
            if let Err(e) = self.control.push(bytes) {
                return self.lose(TurnError::Stream(e.to_string()));
            }
            loop {
                match self.control.next_frame() {
                    Ok(Some(Frame::Stun { msg, raw })) => self.on_stun(now, None, msg, &raw),
                    Ok(Some(Frame::ChannelData(cd))) => self.on_channel_data(cd),
                    Ok(None) => break,
                    Err(e) if e.is_fatal() => {
                        return self.lose(TurnError::Stream(e.to_string()));
                    }
                    Err(_) => self.stats.malformed += 1,
                }
            }
            return;
        }
        let Some(d) = self.data_conns.get_mut(&conn) else {
            return;
        };
        if d.bound {
            self.events.push_back(TurnEvent::PeerStream {
                conn,
                data: bytes.to_vec(),
            });
            return;
        }
        // Before ConnectionBind succeeds the connection speaks STUN.
        if d.decoder.push(bytes).is_err() {
            return self.drop_data_conn(conn, TurnError::Stream("before bind".into()));
        }
        loop {
            let Some(d) = self.data_conns.get_mut(&conn) else {
                return;
            };
            if d.bound {
                let rest = d.decoder.take_remaining();
                if !rest.is_empty() {
                    self.events
                        .push_back(TurnEvent::PeerStream { conn, data: rest });
                }
                return;
            }
            match d.decoder.next_frame() {
                Ok(Some(Frame::Stun { msg, raw })) => self.on_stun(now, Some(conn), msg, &raw),
                Ok(None) => return,
                Ok(Some(Frame::ChannelData(_))) | Err(_) => {
                    self.stats.malformed += 1;
                    return self.drop_data_conn(conn, TurnError::Stream("before bind".into()));
                }
            }
        }
    }

    /// TCP connection `conn` closed (or failed to open).
    pub fn handle_closed(&mut self, _now: u64, conn: ConnId) {
        if conn == CONTROL {
            if self.state != State::Done {
                self.lose(TurnError::ControlClosed);
            }
            return;
        }
        if let Some(d) = self.data_conns.remove(&conn) {
            if d.bound {
                self.events.push_back(TurnEvent::PeerClosed { conn });
            } else {
                self.events.push_back(TurnEvent::PeerFailed {
                    peer: d.peer,
                    error: TurnError::ControlClosed,
                });
            }
        }
    }

    fn allocated(&self) -> Result<SocketAddr, TurnError> {
        self.relayed().ok_or(TurnError::NotAllocated)
    }

    fn set_refresh(&mut self, at: u64) {
        if let State::Allocated { refresh_at, .. } = &mut self.state {
            *refresh_at = at;
        }
    }

    fn send_control(&mut self, bytes: Vec<u8>) {
        self.send_on(None, bytes);
    }

    /// Bytes for the server: on a data connection, else on the control channel.
    fn send_on(&mut self, conn: Option<ConnId>, data: Vec<u8>) {
        let t = match (conn, self.cfg.control) {
            (Some(conn), _) => Transmit::Write { conn, data },
            (None, Transport::Udp) => Transmit::Datagram {
                to: self.cfg.server,
                data,
            },
            (None, Transport::Tcp) => Transmit::Write {
                conn: CONTROL,
                data,
            },
        };
        self.transmits.push_back(t);
    }

    fn build(&self, txid: [u8; 12], request: &Request) -> Message {
        let m = |method| Message::new(Class::Request, method, txid);
        match request {
            Request::Allocate => {
                let transport = match self.cfg.relay {
                    Transport::Udp => stun::TRANSPORT_UDP,
                    Transport::Tcp => stun::TRANSPORT_TCP,
                };
                m(Method::Allocate)
                    .with(Attribute::RequestedTransport(transport))
                    .with(Attribute::Lifetime(self.cfg.lifetime))
            }
            Request::Refresh { lifetime } => {
                m(Method::Refresh).with(Attribute::Lifetime(*lifetime))
            }
            Request::Permission(ip) => {
                m(Method::CreatePermission).with(Attribute::XorPeerAddress(SocketAddr::new(*ip, 0)))
            }
            Request::ChannelBind { peer, channel } => m(Method::ChannelBind)
                .with(Attribute::ChannelNumber(*channel))
                .with(Attribute::XorPeerAddress(*peer)),
            Request::Connect { peer } => m(Method::Connect).with(Attribute::XorPeerAddress(*peer)),
            Request::ConnectionBind { conn } => {
                let id = self.data_conns.get(conn).map_or(0, |d| d.connection_id);
                m(Method::ConnectionBind).with(Attribute::ConnectionId(id))
            }
        }
    }

    fn request(&mut self, now: u64, request: Request, conn: Option<ConnId>) {
        self.request_with(now, request, conn, 0);
    }

    fn request_with(&mut self, now: u64, request: Request, conn: Option<ConnId>, retries: u8) {
        if self.pending.len() >= MAX_PENDING {
            return self.fail(request, TurnError::Limit("requests in flight"));
        }
        let txid: [u8; 12] = self.rng.random();
        let (bytes, signed) = self.auth.encode(&self.build(txid, &request));
        let reliable = conn.is_some() || self.cfg.control == Transport::Tcp;
        let timer = if reliable {
            Retransmit::tcp(now)
        } else {
            Retransmit::udp(now)
        };
        self.send_on(conn, bytes.clone());
        self.pending.insert(
            txid,
            Pending {
                request,
                conn,
                bytes,
                signed,
                timer,
                auth_retries: retries,
            },
        );
    }

    fn on_stun(&mut self, now: u64, conn: Option<ConnId>, msg: Message, raw: &[u8]) {
        match msg.class {
            Class::Indication => return self.on_indication(now, msg),
            // The server may send ConnectionAttempt as a request; answer it like an
            // indication, with a signed success response.
            Class::Request if msg.method == Method::ConnectionAttempt => {
                if let Some(key) = self.auth.key() {
                    let resp = msg
                        .reply(Class::SuccessResponse)
                        .encode_with(Some(key), true);
                    self.send_on(conn, resp);
                }
                return self.on_indication(now, msg);
            }
            Class::Request => {
                self.stats.unmatched += 1;
                return;
            }
            Class::SuccessResponse | Class::ErrorResponse => {}
        }
        let Some(p) = self.pending.get(&msg.txid) else {
            self.stats.unmatched += 1;
            return;
        };
        if p.conn != conn {
            self.stats.unmatched += 1;
            return;
        }
        let auth_challenge = msg.class == Class::ErrorResponse
            && matches!(
                msg.error_code().map(|e| e.code),
                Some(ErrorCode::UNAUTHORIZED | ErrorCode::STALE_NONCE)
            );
        // Only 401/438 may come unsigned once we sign (RFC 5389 §10.2.3).
        if p.signed && !auth_challenge {
            let ok = self
                .auth
                .key()
                .is_some_and(|key| msg.check_integrity(raw, key));
            if !ok {
                self.stats.bad_integrity += 1;
                return;
            }
        }
        let Some(p) = self.pending.remove(&msg.txid) else {
            return;
        };
        if msg.class == Class::ErrorResponse {
            return self.on_error(now, p, &msg);
        }
        self.on_success(now, p, &msg);
    }

    fn on_error(&mut self, now: u64, p: Pending, msg: &Message) {
        let err = msg
            .error_code()
            .cloned()
            .unwrap_or_else(|| ErrorCode::standard(ErrorCode::BAD_REQUEST));
        let retry = match err.code {
            // A 401 to a signed request means the password is wrong; a server whose
            // nonce expired answers 438 instead.
            ErrorCode::UNAUTHORIZED => !p.signed,
            ErrorCode::STALE_NONCE => true,
            _ => false,
        };
        if retry && p.auth_retries < MAX_AUTH_RETRIES && self.auth.challenge(msg) {
            self.stats.auth_retries += 1;
            if self.auth.realm() != Some(self.cfg.realm.as_str()) {
                self.stats.realm_mismatch += 1;
            }
            return self.request_with(now, p.request, p.conn, p.auth_retries + 1);
        }
        let error = if err.code == ErrorCode::UNAUTHORIZED {
            TurnError::Unauthorized
        } else {
            TurnError::Server {
                code: err.code,
                reason: err.reason,
            }
        };
        self.fail(p.request, error);
    }

    fn on_success(&mut self, now: u64, p: Pending, msg: &Message) {
        match p.request {
            Request::Allocate => {
                let Some(relayed) = msg.xor_relayed_address() else {
                    return self.lose(TurnError::MissingAttribute("XOR-RELAYED-ADDRESS"));
                };
                let lifetime = msg.lifetime().unwrap_or(self.cfg.lifetime);
                self.state = State::Allocated {
                    relayed,
                    refresh_at: refresh_time(now, lifetime),
                };
                self.events.push_back(TurnEvent::Allocated {
                    relayed,
                    mapped: msg.xor_mapped(),
                    lifetime,
                });
            }
            Request::Refresh { lifetime: 0 } => {
                self.state = State::Done;
                self.events.push_back(TurnEvent::Released);
            }
            Request::Refresh { .. } => {
                let lifetime = msg.lifetime().unwrap_or(self.cfg.lifetime);
                self.set_refresh(refresh_time(now, lifetime));
            }
            Request::Permission(ip) => {
                if let Some(r) = self.permissions.get_mut(&ip) {
                    let first = !r.installed;
                    r.installed = true;
                    r.refresh_at = Some(now + PERMISSION_REFRESH_MS);
                    if first {
                        self.events.push_back(TurnEvent::PermissionCreated(ip));
                    }
                }
            }
            Request::ChannelBind { peer, channel } => {
                if let Some((_, r)) = self.channels.get_mut(&peer) {
                    let first = !r.installed;
                    r.installed = true;
                    r.refresh_at = Some(now + CHANNEL_REFRESH_MS);
                    if first {
                        self.events
                            .push_back(TurnEvent::ChannelBound { peer, channel });
                    }
                }
            }
            Request::Connect { peer } => match msg.connection_id() {
                Some(id) => self.open_data_conn(now, peer, id, false),
                None => self.events.push_back(TurnEvent::PeerFailed {
                    peer,
                    error: TurnError::MissingAttribute("CONNECTION-ID"),
                }),
            },
            Request::ConnectionBind { conn } => {
                if let Some(d) = self.data_conns.get_mut(&conn) {
                    d.bound = true;
                    let (peer, inbound) = (d.peer, d.inbound);
                    self.events.push_back(TurnEvent::PeerConnected {
                        conn,
                        peer,
                        inbound,
                    });
                }
            }
        }
    }

    fn on_indication(&mut self, now: u64, msg: Message) {
        match msg.method {
            Method::Data => match (msg.xor_peer_address(), msg.data()) {
                (Some(peer), Some(data)) => self.events.push_back(TurnEvent::Data {
                    peer,
                    data: data.to_vec(),
                }),
                _ => self.stats.malformed += 1,
            },
            Method::ConnectionAttempt => match (msg.connection_id(), msg.xor_peer_address()) {
                (Some(id), Some(peer)) if self.relayed().is_some() => {
                    if self.data_conns.len() >= MAX_DATA_CONNS {
                        self.stats.refused_attempts += 1;
                    } else {
                        self.open_data_conn(now, peer, id, true);
                    }
                }
                _ => self.stats.malformed += 1,
            },
            _ => self.stats.unmatched += 1,
        }
    }

    fn on_channel_data(&mut self, cd: ChannelData) {
        match self.channel_peers.get(&cd.channel) {
            Some(peer) => self.events.push_back(TurnEvent::Data {
                peer: *peer,
                data: cd.data,
            }),
            None => self.stats.unknown_channel += 1,
        }
    }

    fn open_data_conn(&mut self, now: u64, peer: SocketAddr, connection_id: u32, inbound: bool) {
        let conn = ConnId(self.next_conn);
        self.next_conn = self.next_conn.wrapping_add(1).max(1);
        self.data_conns.insert(
            conn,
            DataConn {
                peer,
                connection_id,
                inbound,
                bound: false,
                deadline: now + BIND_DEADLINE_MS,
                decoder: StreamDecoder::new(),
            },
        );
        self.transmits.push_back(Transmit::Open {
            conn,
            to: self.cfg.server,
        });
    }

    fn drop_data_conn(&mut self, conn: ConnId, error: TurnError) {
        if let Some(d) = self.data_conns.remove(&conn) {
            self.transmits.push_back(Transmit::Close { conn });
            self.events.push_back(TurnEvent::PeerFailed {
                peer: d.peer,
                error,
            });
        }
    }

    /// A failed request: fatal for Allocate/Refresh, reported per peer otherwise.
    fn fail(&mut self, request: Request, error: TurnError) {
        match request {
            Request::Allocate | Request::Refresh { .. } => self.lose(error),
            Request::Permission(ip) => {
                self.permissions.remove(&ip);
                self.events.push_back(TurnEvent::PeerFailed {
                    peer: SocketAddr::new(ip, 0),
                    error,
                });
            }
            Request::ChannelBind { peer, channel } => {
                self.channels.remove(&peer);
                self.channel_peers.remove(&channel);
                self.events.push_back(TurnEvent::PeerFailed { peer, error });
            }
            Request::Connect { peer } => {
                self.events.push_back(TurnEvent::PeerFailed { peer, error })
            }
            Request::ConnectionBind { conn } => self.drop_data_conn(conn, error),
        }
    }

    /// The allocation is gone: drop everything and report once.
    fn lose(&mut self, error: TurnError) {
        if self.state == State::Done {
            return;
        }
        self.state = State::Done;
        self.pending.clear();
        self.permissions.clear();
        self.channels.clear();
        self.channel_peers.clear();
        for conn in std::mem::take(&mut self.data_conns).into_keys() {
            self.transmits.push_back(Transmit::Close { conn });
        }
        if self.cfg.control == Transport::Tcp {
            self.transmits.push_back(Transmit::Close { conn: CONTROL });
        }
        self.events.push_back(TurnEvent::Failed(error));
    }
}

fn refresh_time(now: u64, lifetime: u32) -> u64 {
    let life = u64::from(lifetime) * 1000;
    now + life - REFRESH_MARGIN_MS.min(life / 2)
}
