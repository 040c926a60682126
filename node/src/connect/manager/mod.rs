//! The connection manager (PROTOCOLS §6.1–6.5, jamid's `ConnectionManager`), sans-IO:
//! connection requests over the DHT, one ICE agent per connection, TLS over the selected
//! pair and the multiplexed socket over TLS, with jamid's roles (the device that receives
//! the request is ICE controlling and TLS client).
//!
//! Like the presence tracker it takes the node's DHT as an argument and is handed the
//! node's events; it asks the driver for TCP sockets through [`StreamCommand`]s and numbers
//! them itself. Randomness (request and value ids, ICE credentials, TLS) comes from the
//! seed in its [`ManagerConfig`].
//!
//! Where ours differs from jamid 20230206, on purpose:
//! - One live connection per peer device: when a second one comes up (both sides asked at
//!   once) both ends keep the one requested by the lower device id, so they agree without
//!   talking about it. jamid keeps both.
//! - Bounded: at most [`MAX_CONNECTIONS`] connections and [`MAX_CACHED_CHAINS`] peer chains;
//!   a request beyond the cap is refused and counted.

mod io;
mod peer;
mod relay;

pub use peer::{PeerConnection, Stage};
pub use relay::{RelayState, RELAY_WAIT_MS};

use self::io::{Io, Sock};
use self::peer::PeerOutput;
use crate::connect::ice::{self, Endpoint, IceMsg};
use crate::connect::request::{self, Incoming, PeerRequests, RequestEvent, RequestStats};
use crate::connect::tls::ExpectedPeer;
use crate::connect::turn;
use crate::device::streams::{StreamCommand, StreamId};
use crate::dht::engine::{Event, OpId};
use crate::dht::infohash::InfoHash;
use crate::identity::{verify_device_chain, Certificate, DeviceIdentity, RevocationList};
use crate::presence::{device_chain, InboxDht};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, SocketAddr};

/// Connections (in any stage) at once. A Jami device talks to its contacts' devices and
/// its own; a thousand bounds what a flood of requests can make us hold (each costs an ICE
/// agent, a listening port and a TLS session).
pub const MAX_CONNECTIONS: usize = 1_000;
/// Peer device chains remembered, so a reconnection needs no certificate lookup.
pub const MAX_CACHED_CHAINS: usize = 4_096;
/// Peer devices whose candidate addresses are remembered for [`ConnectionManager::learned`]
/// (the IP-exposure audit), and addresses kept per device.
pub const MAX_LEARNED_DEVICES: usize = 1_024;
pub const MAX_LEARNED_PER_DEVICE: usize = 64;

/// What the manager is given.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// Addresses of this host to offer as host candidates (one TCP listener each).
    pub host_ips: Vec<IpAddr>,
    /// Ports drawn for each connection's TCP listeners (jamid: the ephemeral range).
    pub tcp_ports: (u16, u16),
    /// STUN server for server-reflexive candidates (passive srflx TCP needs it).
    pub stun_server: Option<SocketAddr>,
    /// Public address learnt elsewhere (jamid's generic srflx candidate).
    pub public_ip: Option<IpAddr>,
    /// TURN server for a relay candidate on each connection (jamid's `TURN.*` keys, with
    /// the server resolved: [`turn::ClientConfig::from_account`]). Control and relay are
    /// TCP whatever is set, as jamid's ICE-TCP uses them; the seed is drawn per connection.
    pub turn: Option<turn::ClientConfig>,
    /// Offer simultaneous-open candidates (RFC 6544 `so`) on the listening port, so two
    /// NATed devices can meet where both NATs map endpoint-independently. jamid offers
    /// none; with ours in the message it still connects (conformance/tests/jamid_connect.rs).
    pub tcp_so: bool,
    /// jamid's `allowPublicIncoming` (default true): accept requests from any valid device
    /// that is not banned; when false only from contacts.
    pub allow_public: bool,
    pub timing: ice::Timing,
    pub seed: u64,
    /// Present this key and chain in TLS instead of the device's own: a forger, for
    /// tests of what peers refuse (jamid's checks, conformance/tests/jamid_forgery.rs).
    /// Never set it otherwise.
    pub present: Option<DeviceIdentity>,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        ManagerConfig {
            host_ips: vec![IpAddr::from([127, 0, 0, 1])],
            tcp_ports: (32_768, 60_999),
            stun_server: None,
            public_ip: None,
            turn: None,
            tcp_so: true,
            allow_public: true,
            timing: ice::Timing::default(),
            seed: 0,
            present: None,
        }
    }
}

/// What the manager tells the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionEvent {
    /// TLS verified `device` (of `account`) and the multiplexed socket is up over the
    /// selected pair.
    Connected {
        device: InfoHash,
        account: InfoHash,
        local: Endpoint,
        remote: Endpoint,
        /// We sent the request.
        initiator: bool,
        /// From the request (or its arrival) to the socket being up.
        setup_ms: u64,
    },
    /// A connection to `device` failed or ended; `reason` is the log line.
    Closed {
        device: InfoHash,
        reason: String,
    },
    /// A request from `device` was refused.
    Refused {
        device: InfoHash,
        reason: String,
    },
    /// `device` asks to open `channel`: answer with accept or decline.
    ChannelRequested {
        device: InfoHash,
        channel: u16,
        name: String,
    },
    ChannelOpened {
        device: InfoHash,
        channel: u16,
        name: String,
    },
    ChannelDeclined {
        device: InfoHash,
        channel: u16,
        name: String,
    },
    ChannelData {
        device: InfoHash,
        channel: u16,
        data: Vec<u8>,
    },
    ChannelClosed {
        device: InfoHash,
        channel: u16,
    },
}

/// Counters (refusals must stay at zero between honest peers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManagerStats {
    /// Forged, malformed, replayed requests, unexpected answers, timeouts.
    pub requests: RequestStats,
    /// Requests from a banned account's device.
    pub refused_banned: u64,
    /// Requests from non-contacts while public requests are off.
    pub refused_not_contact: u64,
    /// Requests whose sender device chain did not verify or was not found.
    pub refused_chain: u64,
    /// Requests beyond [`MAX_CONNECTIONS`].
    pub refused_busy: u64,
    /// Requests whose `ice_msg` did not parse.
    pub refused_ice_msg: u64,
    pub connections_up: u64,
    pub connections_failed: u64,
}

enum DhtOp {
    /// The listen at our `peer:` key.
    Listen,
    /// Certificate lookup of a device, for these connections.
    Lookup(InfoHash),
    /// A request or answer put for a connection.
    Put(u64),
}

/// The connection manager (see the module doc).
pub struct ConnectionManager {
    cfg: ManagerConfig,
    me: DeviceIdentity,
    me_short: InfoHash,
    rng: ChaCha20Rng,
    requests: PeerRequests,
    conns: BTreeMap<u64, PeerConnection>,
    next_key: u64,
    ops: BTreeMap<OpId, DhtOp>,
    chains: BTreeMap<InfoHash, Vec<Certificate>>,
    chain_order: VecDeque<InfoHash>,
    /// Accounts whose devices may not connect (banned contacts).
    banned: BTreeSet<InfoHash>,
    /// Accounts that may connect when public requests are off.
    contacts: BTreeSet<InfoHash>,
    /// Revocation lists by account (from the presence tracker): a revoked device's chain
    /// is refused by the TLS verifier.
    crls: BTreeMap<InfoHash, Vec<RevocationList>>,
    /// Addresses each peer device revealed in its candidates (decrypted ice_msgs).
    learned: BTreeMap<InfoHash, BTreeSet<SocketAddr>>,
    /// Gathered candidates waiting for the DHT (requests, answers).
    unsent: VecDeque<(u64, IceMsg)>,
    io: Io,
    events: VecDeque<ConnectionEvent>,
    pub stats: ManagerStats,
}

impl ConnectionManager {
    pub fn new(cfg: ManagerConfig, me: DeviceIdentity) -> Self {
        let me_short = InfoHash(me.short_id());
        // TLS runs with this identity; the DHT side (request keys, our short id) with ours.
        let me = cfg.present.clone().unwrap_or(me);
        ConnectionManager {
            rng: ChaCha20Rng::seed_from_u64(cfg.seed ^ 0x0c01_1ec7),
            cfg,
            me,
            me_short,
            requests: PeerRequests::new(),
            conns: BTreeMap::new(),
            next_key: 1,
            ops: BTreeMap::new(),
            chains: BTreeMap::new(),
            chain_order: VecDeque::new(),
            banned: BTreeSet::new(),
            contacts: BTreeSet::new(),
            crls: BTreeMap::new(),
            learned: BTreeMap::new(),
            unsent: VecDeque::new(),
            io: Io::default(),
            events: VecDeque::new(),
            stats: ManagerStats::default(),
        }
    }

    /// Listen for requests at our `peer:` key (jamid does this once the DHT runs).
    pub fn start<D: InboxDht + ?Sized>(&mut self, dht: &mut D, now: u64) {
        let op = dht.listen(now, request::peer_key(&self.me_short));
        self.ops.insert(op, DhtOp::Listen);
    }

    pub fn config(&self) -> &ManagerConfig {
        &self.cfg
    }

    /// Who may connect: banned accounts never, contacts always, others when public
    /// requests are allowed.
    pub fn set_trust(&mut self, contacts: BTreeSet<InfoHash>, banned: BTreeSet<InfoHash>) {
        self.contacts = contacts;
        self.banned = banned;
    }

    /// The CRLs known for `account` (replacing earlier ones): TLS sessions set up from now
    /// on refuse its revoked devices (the verifier honours only the issuer's CRLs).
    pub fn set_crls(&mut self, account: InfoHash, crls: Vec<RevocationList>) {
        self.crls.insert(account, crls);
    }

    /// Every address a peer device revealed to us in its ICE candidates (host, server
    /// reflexive, relay): what a peer learns of another beyond packet sources.
    pub fn learned(&self) -> &BTreeMap<InfoHash, BTreeSet<SocketAddr>> {
        &self.learned
    }

    fn learn(&mut self, device: InfoHash, msg: &IceMsg) {
        if !self.learned.contains_key(&device) && self.learned.len() >= MAX_LEARNED_DEVICES {
            return;
        }
        let set = self.learned.entry(device).or_default();
        for c in &msg.candidates {
            if set.len() < MAX_LEARNED_PER_DEVICE {
                set.insert(c.addr);
            }
        }
    }

    /// Every connection, by internal key.
    pub fn connections(&self) -> impl Iterator<Item = &PeerConnection> {
        self.conns.values()
    }

    /// The live connection to `device`, if any.
    pub fn connection_to(&self, device: &InfoHash) -> Option<&PeerConnection> {
        self.conns
            .values()
            .find(|c| c.device == *device && c.stage == Stage::Up)
    }

    /// Whether any device of `account` is connected.
    pub fn is_connected_to_account(&self, account: &InfoHash) -> bool {
        self.conns
            .values()
            .any(|c| c.stage == Stage::Up && c.account == Some(*account))
    }

    // ---- commands ----------------------------------------------------------------------

    /// Connect to `device` (a short id) unless a connection exists or is being made; open
    /// `channel` on it once it is up (jamid's `connectDevice(deviceId, name, cb)`).
    pub fn connect<D: InboxDht + ?Sized>(
        &mut self,
        dht: &mut D,
        now: u64,
        device: InfoHash,
        channel: Option<&str>,
    ) {
        if let Some(c) = self
            .conns
            .values_mut()
            .filter(|c| c.device == device && c.stage != Stage::Dead)
            .min_by_key(|c| std::cmp::Reverse(c.stage))
        {
            if let Some(name) = channel {
                match c.mux.as_mut() {
                    // One channel per name and peer device (jamid caches its `sip` one).
                    Some(m)
                        if m.channel_ids()
                            .iter()
                            .any(|id| m.channel_name(*id) == Some(name)) => {}
                    Some(m) => {
                        let _ = m.open_channel(name);
                    }
                    None if c.queued_channels.iter().any(|q| q == name) => {}
                    None => c.queued_channels.push(name.to_string()),
                }
                self.pump(now);
            }
            return;
        }
        if self.conns.len() >= MAX_CONNECTIONS {
            self.events.push_back(ConnectionEvent::Closed {
                device,
                reason: format!("too many connections ({MAX_CONNECTIONS})"),
            });
            return;
        }
        let key = self.new_conn(device, true, 0, now);
        if let Some(name) = channel {
            self.conns
                .get_mut(&key)
                .expect("just made")
                .queued_channels
                .push(name.to_string());
        }
        self.lookup(dht, now, key);
    }

    pub fn accept_channel(&mut self, now: u64, device: &InfoHash, channel: u16) {
        self.with_mux(device, |m| {
            let _ = m.accept(channel);
        });
        self.pump(now);
    }

    pub fn decline_channel(&mut self, now: u64, device: &InfoHash, channel: u16) {
        self.with_mux(device, |m| {
            let _ = m.decline(channel);
        });
        self.pump(now);
    }

    /// Write on an open channel; returns how much was taken (the rest: try again later).
    pub fn write(&mut self, now: u64, device: &InfoHash, channel: u16, data: &[u8]) -> usize {
        let mut taken = 0;
        let mut off = 0;
        while off < data.len() {
            let mut n = 0;
            self.with_mux(device, |m| {
                n = m.write(channel, &data[off..]).unwrap_or(0);
            });
            self.pump(now);
            if n == 0 {
                break;
            }
            off += n;
            taken += n;
        }
        taken
    }

    pub fn close_channel(&mut self, now: u64, device: &InfoHash, channel: u16) {
        self.with_mux(device, |m| {
            let _ = m.close(channel);
        });
        self.pump(now);
    }

    /// Close every connection to `device`.
    pub fn close(&mut self, now: u64, device: &InfoHash) {
        let keys: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.device == *device)
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            if let Some(c) = self.conns.get_mut(&k) {
                c.close(now, &self.me);
            }
        }
        self.pump(now);
    }

    fn with_mux(&mut self, device: &InfoHash, f: impl FnOnce(&mut crate::connect::mux::Mux)) {
        if let Some(m) = self
            .conns
            .values_mut()
            .find(|c| c.device == *device && c.stage == Stage::Up)
            .and_then(|c| c.mux.as_mut())
        {
            f(m);
        }
    }

    // ---- inputs ------------------------------------------------------------------------

    /// Feed one of the node's events; returns whether it was the manager's.
    pub fn handle_event<D: InboxDht + ?Sized>(&mut self, dht: &mut D, now: u64, e: &Event) -> bool {
        let Some(op) = e.op() else {
            return false;
        };
        let Some(kind) = self.ops.get(&op) else {
            return false;
        };
        match (kind, e) {
            (DhtOp::Listen, Event::Values { values, .. }) => {
                for v in values {
                    self.on_request_value(dht, now, v);
                }
            }
            (DhtOp::Lookup(dev), Event::Values { values, .. }) => {
                let dev = *dev;
                if !self.chains.contains_key(&dev) {
                    if let Some(chain) = values.iter().find_map(|v| device_chain(v, &dev)) {
                        self.remember_chain(dev, chain);
                    }
                }
            }
            (DhtOp::Lookup(dev), Event::GetDone { .. } | Event::Failed { .. }) => {
                let dev = *dev;
                self.ops.remove(&op);
                self.lookup_done(now, dev);
            }
            (DhtOp::Put(key), Event::Failed { reason, .. }) => {
                let key = *key;
                self.ops.remove(&op);
                if let Some(c) = self.conns.get_mut(&key) {
                    c.fail(&format!("could not put the connection request: {reason}"));
                }
            }
            (DhtOp::Put(_), Event::PutDone { .. }) => {
                self.ops.remove(&op);
            }
            _ => {}
        }
        self.pump(now);
        true
    }

    pub fn handle_stream_accepted(
        &mut self,
        now: u64,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> StreamId {
        let Some(&key) = self.io.listeners.get(&local) else {
            return self.io.refuse();
        };
        let id = match self.conns.get_mut(&key).and_then(|c| c.agent.as_mut()) {
            Some(a) => {
                let conn = a.handle_tcp_accepted(now, local, remote);
                self.io.new_stream(key, Sock::Ice(conn))
            }
            None => self.io.refuse(),
        };
        self.pump(now);
        id
    }

    pub fn handle_stream_connected(&mut self, now: u64, id: StreamId) {
        if let Some(&(key, sock)) = self.io.streams.get(&id) {
            if let Some(c) = self.conns.get_mut(&key) {
                match (sock, c.agent.as_mut(), c.relay.as_mut()) {
                    (Sock::Ice(conn), Some(a), _) => a.handle_tcp_connected(now, conn),
                    (Sock::Turn(conn), _, Some(r)) => r.client.handle_connected(now, conn),
                    _ => {}
                }
            }
        }
        self.pump(now);
    }

    pub fn handle_stream_data(&mut self, now: u64, id: StreamId, bytes: &[u8]) {
        if let Some(&(key, sock)) = self.io.streams.get(&id) {
            if let Some(c) = self.conns.get_mut(&key) {
                match (sock, c.agent.as_mut(), c.relay.as_mut()) {
                    (Sock::Ice(conn), Some(a), _) => a.handle_tcp_data(now, conn, bytes),
                    (Sock::Turn(conn), _, Some(r)) => r.client.handle_data(now, conn, bytes),
                    _ => {}
                }
            }
        }
        self.pump(now);
    }

    pub fn handle_stream_closed(&mut self, now: u64, id: StreamId) {
        if let Some((key, sock)) = self.io.remove(id) {
            if let Some(c) = self.conns.get_mut(&key) {
                match (sock, c.agent.as_mut(), c.relay.as_mut()) {
                    (Sock::Ice(conn), Some(a), _) => a.handle_tcp_closed(now, conn),
                    (Sock::Turn(conn), _, Some(r)) => r.client.handle_closed(now, conn),
                    _ => {}
                }
            }
        }
        self.pump(now);
    }

    pub fn handle_listen_failed(&mut self, now: u64, local: SocketAddr) {
        // Its candidates name this port: the peer's checks to it fail, but ours may
        // still succeed, so the connection goes on.
        self.io.listeners.remove(&local);
        self.pump(now);
    }

    pub fn handle_timeout(&mut self, now: u64) {
        if self.requests.poll_timeout().is_some_and(|t| t <= now) {
            self.requests.handle_timeout(now);
            while let Some(RequestEvent::TimedOut { id, peer }) = self.requests.poll_event() {
                if let Some(c) = self
                    .conns
                    .values_mut()
                    .find(|c| c.initiator && c.request_id == id && c.device == peer)
                {
                    c.fail("no answer to the connection request within 30 s");
                }
            }
        }
        for c in self.conns.values_mut() {
            if c.poll_timeout().is_some_and(|t| t <= now) {
                c.handle_timeout(now, &self.me);
            }
        }
        self.pump(now);
    }

    // ---- outputs -----------------------------------------------------------------------

    pub fn poll_stream_command(&mut self) -> Option<StreamCommand> {
        self.io.commands.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<ConnectionEvent> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<u64> {
        self.conns
            .values()
            .filter_map(|c| c.poll_timeout())
            .chain(self.requests.poll_timeout())
            .min()
    }

    /// The requests' counters are the bookkeeping's; the rest are ours.
    pub fn stats(&self) -> ManagerStats {
        ManagerStats {
            requests: self.requests.stats.clone(),
            ..self.stats.clone()
        }
    }

    // ---- internals ---------------------------------------------------------------------

    fn new_conn(&mut self, device: InfoHash, initiator: bool, request_id: u64, now: u64) -> u64 {
        let key = self.next_key;
        self.next_key += 1;
        let seed = self.rng.random::<u64>();
        self.conns.insert(
            key,
            PeerConnection::new(device, initiator, request_id, now, seed),
        );
        key
    }

    fn remember_chain(&mut self, dev: InfoHash, chain: Vec<Certificate>) {
        if self.chains.len() >= MAX_CACHED_CHAINS {
            if let Some(old) = self.chain_order.pop_front() {
                self.chains.remove(&old);
            }
        }
        self.chains.insert(dev, chain);
        self.chain_order.push_back(dev);
    }

    /// Find the device's chain: cached, or a DHT get at its short id.
    fn lookup<D: InboxDht + ?Sized>(&mut self, dht: &mut D, now: u64, key: u64) {
        let Some(dev) = self.conns.get(&key).map(|c| c.device) else {
            return;
        };
        if self.chains.contains_key(&dev) {
            return self.lookup_done(now, dev);
        }
        if self
            .ops
            .values()
            .any(|o| matches!(o, DhtOp::Lookup(d) if *d == dev))
        {
            return;
        }
        let local: Vec<_> = dht.local_values(&dev);
        if let Some(chain) = local.iter().find_map(|v| device_chain(v, &dev)) {
            self.remember_chain(dev, chain);
            return self.lookup_done(now, dev);
        }
        let op = dht.get(now, dev);
        self.ops.insert(op, DhtOp::Lookup(dev));
    }

    /// The lookup of `dev` ended: start (or refuse) every connection waiting for it.
    fn lookup_done(&mut self, now: u64, dev: InfoHash) {
        let waiting: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.device == dev && c.stage == Stage::Lookup)
            .map(|(k, _)| *k)
            .collect();
        for key in waiting {
            let verdict = match self.chains.get(&dev).cloned() {
                None => Err("no certificate found for the device".to_string()),
                Some(chain) => match ExpectedPeer::new(
                    chain.clone(),
                    verify_device_chain(&chain)
                        .ok()
                        .and_then(|i| self.crls.get(&InfoHash(i.account_id)).cloned())
                        .unwrap_or_default(),
                ) {
                    Ok(p) => {
                        let account = InfoHash(p.info().account_id);
                        self.admit(key, account).map(|_| (p, account))
                    }
                    Err(e) => Err(format!("device chain refused: {e}")),
                },
            };
            match verdict {
                Ok((p, account)) => {
                    let cfg = self.ice_config();
                    let c = self.conns.get_mut(&key).expect("listed");
                    c.expected = Some(p);
                    c.account = Some(account);
                    let turn = self.cfg.turn.clone();
                    c.start_ice(now, cfg, turn);
                }
                Err(reason) => {
                    let c = self.conns.get_mut(&key).expect("listed");
                    if c.initiator {
                        c.fail(&reason);
                        continue;
                    }
                    c.stage = Stage::Dead;
                    if reason.starts_with("no certificate") || reason.starts_with("device chain") {
                        self.stats.refused_chain += 1;
                    }
                    self.events.push_back(ConnectionEvent::Refused {
                        device: dev,
                        reason,
                    });
                }
            }
        }
    }

    /// The trust check on a request's sender (jamid's `onICERequest`).
    fn admit(&mut self, key: u64, account: InfoHash) -> Result<(), String> {
        let initiator = self.conns.get(&key).is_some_and(|c| c.initiator);
        if initiator {
            return Ok(());
        }
        if self.banned.contains(&account) {
            self.stats.refused_banned += 1;
            return Err(format!("account {account} is banned"));
        }
        if !self.cfg.allow_public && !self.contacts.contains(&account) {
            self.stats.refused_not_contact += 1;
            return Err(format!(
                "account {account} is not a contact and public requests are off"
            ));
        }
        Ok(())
    }

    fn ice_config(&mut self) -> ice::Config {
        let (lo, hi) = self.cfg.tcp_ports;
        let mut tcp_listen = Vec::new();
        for ip in self.cfg.host_ips.clone() {
            let port = loop {
                let p = self.rng.random_range(lo..=hi.max(lo));
                if !self.io.listeners.keys().any(|a| a.port() == p) || hi <= lo {
                    break p;
                }
            };
            tcp_listen.push(SocketAddr::new(ip, port));
        }
        ice::Config {
            seed: 0,
            controlling: false,
            udp_sockets: Vec::new(),
            tcp_listen,
            tcp_so: self.cfg.tcp_so,
            stun_server: self.cfg.stun_server,
            public_ip: self.cfg.public_ip,
            timing: self.cfg.timing.clone(),
        }
    }

    fn on_request_value<D: InboxDht + ?Sized>(
        &mut self,
        dht: &mut D,
        now: u64,
        v: &crate::dht::value::Value,
    ) {
        match self.requests.handle_value(now, &self.me_short, v) {
            Ok(Incoming::Request(r)) => {
                let msg = match IceMsg::parse(&r.req.ice_msg) {
                    Ok(m) => m,
                    Err(e) => {
                        self.stats.refused_ice_msg += 1;
                        self.events.push_back(ConnectionEvent::Refused {
                            device: r.from,
                            reason: format!("bad ice_msg: {e}"),
                        });
                        return;
                    }
                };
                let live = self
                    .conns
                    .values()
                    .filter(|c| c.stage != Stage::Dead)
                    .count();
                if live >= MAX_CONNECTIONS {
                    self.stats.refused_busy += 1;
                    self.events.push_back(ConnectionEvent::Refused {
                        device: r.from,
                        reason: format!("too many connections ({MAX_CONNECTIONS})"),
                    });
                    return;
                }
                self.learn(r.from, &msg);
                let key = self.new_conn(r.from, false, r.req.id, now);
                self.conns.get_mut(&key).expect("just made").remote_msg = Some(msg);
                self.lookup(dht, now, key);
            }
            Ok(Incoming::Answer(r)) => {
                let parsed = IceMsg::parse(&r.req.ice_msg);
                if let Ok(m) = &parsed {
                    self.learn(r.from, m);
                }
                let Some(c) = self
                    .conns
                    .values_mut()
                    .find(|c| c.initiator && c.request_id == r.req.id && c.device == r.from)
                else {
                    return;
                };
                match parsed {
                    Ok(m) => c.set_remote(now, m),
                    Err(e) => c.fail(&format!("bad ice_msg in the answer: {e}")),
                }
            }
            // Counted by the bookkeeping (forged, replayed, malformed ...).
            Err(_) => {}
        }
    }

    /// Move every connection's outputs: agent commands and transmits to the driver, the
    /// request or answer to the DHT (queued until [`Self::flush_dht`] when the DHT is not
    /// at hand), socket events to the device. Dead connections are reported and dropped.
    fn pump(&mut self, now: u64) {
        let keys: Vec<u64> = self.conns.keys().copied().collect();
        for key in keys {
            while let Some(c) = self.conns.get_mut(&key) {
                c.pump(now, &self.me);
                self.io.agent_io(key, c);
                let mut again = false;
                while let Some(out) = c.poll_output() {
                    match out {
                        PeerOutput::Gathered(msg) => self.unsent.push_back((key, msg)),
                        PeerOutput::Up { local, remote } => {
                            self.stats.connections_up += 1;
                            self.events.push_back(ConnectionEvent::Connected {
                                device: c.device,
                                account: c.account.unwrap_or_default(),
                                local,
                                remote,
                                initiator: c.initiator,
                                setup_ms: now.saturating_sub(c.started_at),
                            });
                        }
                        PeerOutput::Mux(e) => again |= mux_event(c, e, &mut self.events),
                        PeerOutput::Dead(reason) => {
                            self.stats.connections_failed += u64::from(c.up_at.is_none());
                            self.events.push_back(ConnectionEvent::Closed {
                                device: c.device,
                                reason,
                            });
                        }
                    }
                }
                // Reading made room in the mux: more held plaintext may go in.
                if !again {
                    break;
                }
            }
        }
        self.resolve_duplicates(now);
        self.reap();
    }

    /// Put the requests and answers whose candidates were gathered since the last call.
    pub fn flush_dht<D: InboxDht + ?Sized>(&mut self, dht: &mut D, now: u64) {
        while let Some((key, msg)) = self.unsent.pop_front() {
            let Some(c) = self.conns.get_mut(&key) else {
                continue;
            };
            if c.stage == Stage::Dead {
                continue;
            }
            let device = c.device;
            let req = if c.initiator {
                match self.requests.request(
                    now,
                    &mut self.rng,
                    device,
                    msg.to_string(),
                    String::new(),
                ) {
                    Ok(r) => {
                        c.request_id = r.id;
                        r
                    }
                    Err(e) => {
                        c.fail(&format!("connection request: {e}"));
                        continue;
                    }
                }
            } else {
                request::PeerConnectionRequest {
                    id: c.request_id,
                    ice_msg: String::new(),
                    is_answer: false,
                    conn_type: String::new(),
                }
                .answer(msg.to_string())
            };
            let value_id = self.rng.random::<u64>();
            let op = dht.put_encrypted(
                now,
                request::peer_key(&device),
                device,
                value_id,
                req.to_body(),
            );
            self.ops.insert(op, DhtOp::Put(key));
        }
        self.pump(now);
    }

    /// Two live connections to one device (both sides asked at once): keep the one
    /// requested by the lower device id, as the peer does.
    fn resolve_duplicates(&mut self, now: u64) {
        let mut best: BTreeMap<InfoHash, (InfoHash, u64)> = BTreeMap::new();
        for (k, c) in &self.conns {
            if c.stage != Stage::Up {
                continue;
            }
            let requester = if c.initiator { self.me_short } else { c.device };
            let e = best.entry(c.device).or_insert((requester, *k));
            if (requester, std::cmp::Reverse(*k)) < (e.0, std::cmp::Reverse(e.1)) {
                *e = (requester, *k);
            }
        }
        let losers: Vec<u64> = self
            .conns
            .iter()
            .filter(|(k, c)| {
                c.stage == Stage::Up && best.get(&c.device).is_some_and(|b| b.1 != **k)
            })
            .map(|(k, _)| *k)
            .collect();
        for k in losers {
            if let Some(c) = self.conns.get_mut(&k) {
                c.close(now, &self.me);
                self.io.agent_io(k, c);
                while let Some(out) = c.poll_output() {
                    if let PeerOutput::Dead(_) = out {
                        // The duplicate goes quietly: the device stays connected.
                    }
                }
            }
        }
    }

    /// Drop dead connections with their listeners and sockets.
    fn reap(&mut self) {
        let dead: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.stage == Stage::Dead)
            .map(|(k, _)| *k)
            .collect();
        for key in dead {
            self.conns.remove(&key);
            self.io.drop_connection(key);
        }
    }
}

/// A socket event as the device's; a readable channel is read at once. Returns whether
/// something was read (the mux may then take more held input).
fn mux_event(
    c: &mut PeerConnection,
    e: crate::connect::mux::Event,
    events: &mut VecDeque<ConnectionEvent>,
) -> bool {
    use crate::connect::mux::Event as M;
    let device = c.device;
    events.push_back(match e {
        M::ChannelRequested { channel, name } => ConnectionEvent::ChannelRequested {
            device,
            channel,
            name,
        },
        M::ChannelOpened { channel, name } => ConnectionEvent::ChannelOpened {
            device,
            channel,
            name,
        },
        M::ChannelDeclined { channel, name } => ConnectionEvent::ChannelDeclined {
            device,
            channel,
            name,
        },
        M::Readable { channel } => {
            let Some(m) = c.mux.as_mut() else {
                return false;
            };
            let mut data = Vec::new();
            let mut buf = vec![0u8; 16 * 1024];
            while let Ok(n) = m.read(channel, &mut buf) {
                if n == 0 {
                    break;
                }
                data.extend_from_slice(&buf[..n]);
            }
            if data.is_empty() {
                return false;
            }
            events.push_back(ConnectionEvent::ChannelData {
                device,
                channel,
                data,
            });
            return true;
        }
        M::ChannelClosed { channel } => ConnectionEvent::ChannelClosed { device, channel },
        M::Shutdown(reason) => {
            c.fail(&format!("multiplexed socket shut down: {reason:?}"));
            return true;
        }
    });
    false
}
