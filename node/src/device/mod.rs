//! One Jami device, sans-IO: the composition both drivers run. The tokio/std driver
//! (`jamisim node device`) moves real datagrams and the real clock through it; the
//! simulator glue moves netsim's. Neither composes the parts itself, so what a scenario
//! shows of the device is what the conformance tests show against jamid.
//!
//! It holds the secure DHT (OpenDHT's SecureDht, with the device's key as its
//! identity, as jamid's is) — its own UDP node, or the DHT reached through an OpenDHT
//! proxy over TCP ([`DhtBackend`]; what jamid's `Account.proxyEnabled` does, and the only
//! way behind Tor) — the device announcement kept alive at the account id, the presence
//! tracker of the accounts it follows, and (with [`Device::enable_services`]) contacts,
//! connections, channels and messages, which run unchanged over either backend.
//!
//! Contract (DESIGN.md §2): `handle_datagram` / `handle_timeout` with `now` (Unix ms),
//! commands, then drain `poll_transmit` and `poll_event` and read `poll_timeout`.

pub mod jami;
pub mod streams;

use crate::connect::manager::{ManagerConfig, Stage};
use crate::contacts::ContactList;
use crate::dht::engine::{Config, Event, OpId, Transmit};
use crate::dht::infohash::InfoHash;
use crate::dht::proxy::stream::{ProxyDht, ProxyEngine};
use crate::dht::secure::{PlainDht, SecureDht, SecureError};
use crate::dht::value::Value;
use crate::identity::{AccountIdentity, DeviceIdentity, IdentityError, NodeIdentity};
use crate::presence::{DeviceAnnouncer, InboxDht, PresenceEvent, PresenceTracker};
use jami::{JamiEvent, Services};
use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use streams::{StreamCommand, StreamEngine, StreamId};

/// A contact's presence as the Jami FAQ words it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PresenceState {
    /// No device of the account is announced on the DHT (or none that checks out).
    None,
    /// At least one device is announced and its chain verifies: it "seems reachable".
    SeemsReachable,
    /// A live, authenticated connection to one of its devices.
    Connected,
}

impl std::fmt::Display for PresenceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PresenceState::None => "none",
            PresenceState::SeemsReachable => "seems reachable",
            PresenceState::Connected => "connected",
        })
    }
}

/// What the device tells its driver or user.
#[derive(Debug, Clone, PartialEq)]
pub enum DeviceEvent {
    /// An event of a DHT operation the user started through [`Device::dht_mut`] (or the
    /// node's own `Connected`): the device's own operations never show here.
    Dht(Event),
    /// What the presence tracker saw of a tracked account: `Online` and `Offline` are
    /// the changes of its [`PresenceState`].
    Presence(PresenceEvent),
    /// Contacts, connections, channels and messages (devices with
    /// [`Device::enable_services`]).
    Jami(JamiEvent),
    /// Local peer discovery (devices with [`Device::enable_discovery`]): a Jami account
    /// announced on the LAN, or one gone quiet. DHT nodes heard there are bootstrapped
    /// from at once and not reported.
    Nearby(crate::discovery::Event),
}

/// Why a device could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("device identity: {0}")]
    Identity(#[from] IdentityError),
    #[error("device announcement: {0}")]
    Announcement(#[from] SecureError),
}

/// The account and device a [`Device`] runs as.
pub struct JamiIdentity<'a> {
    pub account: &'a AccountIdentity,
    pub device: &'a DeviceIdentity,
    /// The announcement's value id (jamid draws one at random when it first announces).
    pub announcement_id: u64,
}

/// How a device reaches the DHT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DhtBackend {
    /// Its own node on UDP (bootstrapped with [`Device::bootstrap`]).
    Udp,
    /// Through the OpenDHT proxy at this address, over TCP streams (the device's
    /// [`StreamEngine`] side): no UDP at all.
    Proxy(SocketAddr),
}

/// The secure DHT of a device, over one backend or the other (boxed: the two differ in
/// size, and a device holds one for its life).
enum Net {
    Udp(Box<SecureDht>),
    Proxy(Box<ProxyDht>),
}

impl Net {
    /// What presence, contacts and the connection manager use.
    fn inbox(&mut self) -> &mut dyn InboxDht {
        match self {
            Net::Udp(d) => &mut **d,
            Net::Proxy(d) => &mut **d,
        }
    }

    fn poll_event(&mut self) -> Option<Event> {
        match self {
            Net::Udp(d) => d.poll_event(),
            Net::Proxy(d) => d.poll_event(),
        }
    }

    fn poll_timeout(&self) -> Option<u64> {
        match self {
            Net::Udp(d) => d.poll_timeout(),
            Net::Proxy(d) => d.poll_timeout(),
        }
    }

    fn handle_timeout(&mut self, now: u64) {
        match self {
            Net::Udp(d) => d.handle_timeout(now),
            Net::Proxy(d) => d.handle_timeout(now),
        }
    }

    fn announce(&mut self, a: &mut DeviceAnnouncer, now: u64) {
        match self {
            Net::Udp(d) => {
                a.announce(d, now);
            }
            Net::Proxy(d) => {
                a.announce(d, now);
            }
        }
    }

    fn announcer_timeout(&mut self, a: &mut DeviceAnnouncer, now: u64) {
        match self {
            Net::Udp(d) => a.handle_timeout(d, now),
            Net::Proxy(d) => a.handle_timeout(d, now),
        }
    }

    fn bootstrap(&mut self, now: u64, addr: SocketAddr) {
        if let Net::Udp(d) = self {
            d.bootstrap(now, addr);
        }
    }

    fn id(&self) -> InfoHash {
        match self {
            Net::Udp(d) => d.id(),
            // Through a proxy we have no node, but a node id is still ours: OpenDHT's
            // proxy client takes the one its key implies, as SecureDht does.
            Net::Proxy(d) => d
                .identity()
                .map(|i| InfoHash(i.key().public_key().node_id()))
                .unwrap_or_default(),
        }
    }
}

/// A Jami device (or, without an identity, a plain DHT node that can still follow
/// presence).
pub struct Device {
    dht: Net,
    announcer: Option<DeviceAnnouncer>,
    presence: PresenceTracker,
    tracked: BTreeSet<InfoHash>,
    events: VecDeque<DeviceEvent>,
    connected: bool,
    announcements_stored: u64,
    identity: Option<DeviceIdentity>,
    services: Option<Services>,
    discovery: Option<crate::discovery::PeerDiscovery>,
}

impl Device {
    /// A device on a DHT configured by `cfg`. With `jami`, the DHT identity is the
    /// device's key and certificate chain (so the node id derives from it and the
    /// certificate is announced at its key id), and the device is announced at the
    /// account id once the node is connected, then kept there.
    pub fn new(
        cfg: Config,
        jami: Option<JamiIdentity<'_>>,
        now: u64,
    ) -> Result<Device, DeviceError> {
        Device::with_backend(cfg, jami, DhtBackend::Udp, now)
    }

    /// A device on the DHT through `backend`. Through a proxy the device needs no
    /// bootstrap: it asks the proxy at once (over the streams it asks the driver for)
    /// and is connected when the proxy answers; `cfg` gives the seed (the node id and
    /// verifier are a UDP node's only).
    pub fn with_backend(
        cfg: Config,
        jami: Option<JamiIdentity<'_>>,
        backend: DhtBackend,
        now: u64,
    ) -> Result<Device, DeviceError> {
        let me = jami.as_ref().map(|j| j.device.clone());
        let (identity, announcer) = match jami {
            Some(j) => (
                Some(NodeIdentity::new(
                    j.device.key().clone(),
                    j.device.chain().to_vec(),
                )?),
                Some(DeviceAnnouncer::new(
                    j.account,
                    j.device,
                    j.announcement_id,
                )?),
            ),
            None => (None, None),
        };
        let dht = match backend {
            DhtBackend::Udp => Net::Udp(Box::new(SecureDht::new(cfg, identity, now))),
            DhtBackend::Proxy(server) => Net::Proxy(Box::new(SecureDht::over(
                ProxyEngine::new(server, now),
                identity,
                cfg.seed,
            ))),
        };
        Ok(Device {
            dht,
            announcer,
            presence: PresenceTracker::new(),
            tracked: BTreeSet::new(),
            events: VecDeque::new(),
            connected: false,
            announcements_stored: 0,
            identity: me,
            services: None,
            discovery: None,
        })
    }

    /// Turn on OpenDHT's multicast peer discovery (PROTOCOLS §9.6) on the LAN: announce
    /// our DHT node (reachable at `dht_port`) and, with an identity, our account under
    /// `display_name`; bootstrap from every DHT node heard, report Jami accounts heard.
    /// The driver binds UDP `0.0.0.0:8888` (SO_REUSEADDR), joins
    /// [`crate::discovery::peer_discovery::GROUP_V4`] and moves its datagrams with
    /// [`Device::handle_discovery_datagram`] and [`Device::poll_discovery_transmit`].
    pub fn enable_discovery(&mut self, now: u64, dht_port: u16, display_name: &str) {
        use crate::discovery::{Config as DCfg, DhtPayload, Discover, JamiPayload, PeerDiscovery};
        let mut d = PeerDiscovery::new(DCfg::ipv4());
        let own_id = self.dht.id();
        // Our network id is 0, as jamid's (hard-coded) and dhtnode's default.
        d.start_discovery(now, Discover::Dht { own_id, net_id: 0 });
        let _ = d.publish_dht(
            now,
            DhtPayload {
                node_id: own_id,
                port: dht_port,
                net_id: 0,
            },
        );
        if let Some(me) = self.identity.as_ref() {
            let account = InfoHash(me.account_id());
            d.start_discovery(
                now,
                Discover::Jami {
                    own_account: account,
                },
            );
            let _ = d.publish_jami(
                now,
                &JamiPayload {
                    account_id: account,
                    display_name: display_name.as_bytes().to_vec(),
                },
            );
        }
        self.discovery = Some(d);
        self.drain(now);
    }

    /// A datagram on the discovery socket (port 8888).
    pub fn handle_discovery_datagram(&mut self, now: u64, from: SocketAddr, bytes: &[u8]) {
        if let Some(d) = self.discovery.as_mut() {
            // Malformed datagrams are counted by the discovery itself.
            let _ = d.handle_datagram(now, from, bytes);
        }
        self.drain(now);
    }

    /// What to send from the discovery socket (to the group, or to a querier).
    pub fn poll_discovery_transmit(&mut self) -> Option<Transmit> {
        self.discovery.as_mut()?.poll_transmit()
    }

    /// The discovery's counters, when it runs.
    pub fn discovery_stats(&self) -> Option<crate::discovery::Stats> {
        self.discovery.as_ref().map(|d| d.stats())
    }

    /// Turn on contacts, connections and messages (needs the identity): listens at the
    /// device's `peer:` and inbox keys at once.
    pub fn enable_services(&mut self, now: u64, cfg: ManagerConfig, contacts: ContactList) -> bool {
        let Some(me) = self.identity.as_ref() else {
            return false;
        };
        self.services = Some(Services::new(self.dht.inbox(), now, me, cfg, contacts));
        self.drain(now);
        true
    }

    /// The Jami services, for reading their state (contacts, connections, statistics).
    pub fn services(&self) -> Option<&Services> {
        self.services.as_ref()
    }

    // ---- getters -------------------------------------------------------------------

    /// The secure DHT node, for reading its state (`None` through a proxy: see
    /// [`Device::proxy`]).
    pub fn dht(&self) -> Option<&SecureDht> {
        match &self.dht {
            Net::Udp(d) => Some(d),
            Net::Proxy(_) => None,
        }
    }

    /// The secure DHT node, for the user's own operations: their events come back as
    /// [`DeviceEvent::Dht`] (`None` through a proxy: see [`Device::proxy_mut`]).
    pub fn dht_mut(&mut self) -> Option<&mut SecureDht> {
        match &mut self.dht {
            Net::Udp(d) => Some(d),
            Net::Proxy(_) => None,
        }
    }

    /// The DHT through the proxy (devices on [`DhtBackend::Proxy`]).
    pub fn proxy(&self) -> Option<&ProxyDht> {
        match &self.dht {
            Net::Proxy(d) => Some(d),
            Net::Udp(_) => None,
        }
    }

    /// The DHT through the proxy, for the user's own operations (events as with
    /// [`Device::dht_mut`]).
    pub fn proxy_mut(&mut self) -> Option<&mut ProxyDht> {
        match &mut self.dht {
            Net::Proxy(d) => Some(d),
            Net::Udp(_) => None,
        }
    }

    /// The backend the device runs on.
    pub fn backend(&self) -> DhtBackend {
        match &self.dht {
            Net::Udp(_) => DhtBackend::Udp,
            Net::Proxy(d) => DhtBackend::Proxy(d.server()),
        }
    }

    /// The presence tracker (its statistics: verified devices, refusals by reason).
    pub fn presence(&self) -> &PresenceTracker {
        &self.presence
    }

    /// A tracked account's presence; `None` for an account not tracked.
    pub fn presence_of(&self, account: &InfoHash) -> Option<PresenceState> {
        self.tracked.contains(account).then(|| {
            if self.services.as_ref().is_some_and(|s| s.connected(account)) {
                PresenceState::Connected
            } else if self.presence.is_online(account) {
                PresenceState::SeemsReachable
            } else {
                PresenceState::None
            }
        })
    }

    /// Every tracked account and its presence.
    pub fn tracked(&self) -> impl Iterator<Item = (InfoHash, PresenceState)> + '_ {
        self.tracked
            .iter()
            .map(|a| (*a, self.presence_of(a).unwrap_or(PresenceState::None)))
    }

    /// How many times our device announcement was put (0 without an identity).
    pub fn announcements(&self) -> u64 {
        self.announcer.as_ref().map_or(0, |a| a.puts)
    }

    /// How many of those puts some node stored (through a proxy: the proxy said so).
    pub fn announcements_stored(&self) -> u64 {
        self.announcements_stored
    }

    /// The node has joined the DHT.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    // ---- inputs ----------------------------------------------------------------------

    /// A datagram for the DHT node (none is expected through a proxy: dropped).
    pub fn handle_datagram(&mut self, now: u64, from: SocketAddr, bytes: &[u8]) {
        if let Net::Udp(d) = &mut self.dht {
            d.handle_datagram(now, from, bytes);
        }
        self.drain(now);
    }

    pub fn handle_timeout(&mut self, now: u64) {
        if self.dht.poll_timeout().is_some_and(|t| t <= now) {
            self.dht.handle_timeout(now);
        }
        if self.presence.poll_timeout().is_some_and(|t| t <= now) {
            self.presence.handle_timeout(self.dht.inbox(), now);
        }
        if let Some(a) = self.announcer.as_mut() {
            self.dht.announcer_timeout(a, now);
        }
        if let Some(s) = self.services.as_mut() {
            if s.poll_timeout().is_some_and(|t| t <= now) {
                s.handle_timeout(self.dht.inbox(), now);
            }
        }
        if let Some(d) = self.discovery.as_mut() {
            if d.poll_timeout().is_some_and(|t| t <= now) {
                d.handle_timeout(now);
            }
        }
        self.drain(now);
    }

    // ---- commands --------------------------------------------------------------------

    /// The user's own get, on whichever backend: its events come back as
    /// [`DeviceEvent::Dht`].
    pub fn get(&mut self, now: u64, key: InfoHash) -> OpId {
        let op = self.dht.inbox().get(now, key);
        self.drain(now);
        op
    }

    /// The user's own listen (events as with [`Device::get`]).
    pub fn listen(&mut self, now: u64, key: InfoHash) -> OpId {
        let op = self.dht.inbox().listen(now, key);
        self.drain(now);
        op
    }

    /// The user's own put (events as with [`Device::get`]).
    pub fn put(&mut self, now: u64, key: InfoHash, value: Value) -> OpId {
        let op = match &mut self.dht {
            Net::Udp(d) => d.put(now, key, value),
            Net::Proxy(d) => PlainDht::put(&mut ***d, now, key, value),
        };
        self.drain(now);
        op
    }

    /// Stop one of the user's operations.
    pub fn cancel(&mut self, op: OpId) {
        self.dht.inbox().cancel(op);
    }

    /// Bootstrap from a node at `addr` (nothing through a proxy).
    pub fn bootstrap(&mut self, now: u64, addr: SocketAddr) {
        self.dht.bootstrap(now, addr);
        self.drain(now);
    }

    /// Follow `account`'s presence (jamid's `subscribeBuddy`).
    pub fn track(&mut self, now: u64, account: InfoHash) {
        self.presence.track(self.dht.inbox(), now, account);
        self.tracked.insert(account);
        self.drain(now);
    }

    /// Stop following `account`.
    pub fn untrack(&mut self, account: &InfoHash) {
        self.presence.untrack(self.dht.inbox(), account);
        self.tracked.remove(account);
    }

    /// Connect to every announced device of `account` with a `sip` channel (following
    /// its presence first if needed: devices found later are connected then). Returns
    /// the number of devices asked now; false without services.
    pub fn connect(&mut self, now: u64, account: InfoHash) -> Option<usize> {
        self.services.as_ref()?;
        if !self.tracked.contains(&account) {
            self.track(now, account);
        }
        let s = self.services.as_mut()?;
        let n = s.connect_account(self.dht.inbox(), &self.presence, now, &account);
        self.drain(now);
        Some(n)
    }

    /// Connect to one device (short id) with a `sip` channel.
    pub fn connect_device(&mut self, now: u64, device: InfoHash) -> bool {
        let Some(s) = self.services.as_mut() else {
            return false;
        };
        s.connect_device(self.dht.inbox(), now, device);
        self.drain(now);
        true
    }

    /// Close every connection to a device of `account` (its channels with it); returns
    /// how many devices were disconnected. Each reports [`ConnectionEvent::Closed`].
    ///
    /// [`ConnectionEvent::Closed`]: crate::connect::manager::ConnectionEvent::Closed
    pub fn disconnect(&mut self, now: u64, account: InfoHash) -> usize {
        let Some(s) = self.services.as_mut() else {
            return 0;
        };
        let devices: BTreeSet<InfoHash> = s
            .conns
            .connections()
            .filter(|c| c.account == Some(account) && c.stage != Stage::Dead)
            .map(|c| c.device)
            .collect();
        for d in &devices {
            s.conns.close(now, d);
        }
        self.drain(now);
        devices.len()
    }

    /// Send a message (`text/plain` for a text) to `account`; returns its token. The
    /// outcome comes as [`JamiEvent::Delivered`] or [`JamiEvent::SendFailed`].
    pub fn send_message(
        &mut self,
        now: u64,
        account: InfoHash,
        mime: &str,
        body: &[u8],
    ) -> Option<u64> {
        self.services.as_ref()?;
        if !self.tracked.contains(&account) {
            self.track(now, account);
        }
        let s = self.services.as_mut()?;
        let token = s.send_message(self.dht.inbox(), &self.presence, now, account, mime, body);
        self.drain(now);
        Some(token)
    }

    /// Send a trust request (with our vCard as payload) to `to`, and follow its presence
    /// so the request is sent again when it comes online.
    pub fn send_trust_request(&mut self, now: u64, to: InfoHash, payload: Vec<u8>) -> bool {
        if self.services.is_none() {
            return false;
        }
        if !self.tracked.contains(&to) {
            self.track(now, to);
        }
        let ok = self
            .services
            .as_mut()
            .is_some_and(|s| s.send_request(self.dht.inbox(), now, to, payload));
        self.drain(now);
        ok
    }

    pub fn accept_trust_request(&mut self, now: u64, from: InfoHash) -> bool {
        let ok = self
            .services
            .as_mut()
            .is_some_and(|s| s.accept_request(self.dht.inbox(), now, from));
        if ok && !self.tracked.contains(&from) {
            self.track(now, from);
        }
        self.drain(now);
        ok
    }

    pub fn decline_trust_request(&mut self, now: u64, from: &InfoHash) -> bool {
        let ok = self
            .services
            .as_mut()
            .is_some_and(|s| s.decline_request(from));
        self.drain(now);
        ok
    }

    /// Remove a contact (and with `ban`, refuse its requests and connections).
    pub fn remove_contact(&mut self, now: u64, account: InfoHash, ban: bool) -> bool {
        let ok = self
            .services
            .as_mut()
            .is_some_and(|s| s.remove_contact(now, account, ban));
        self.drain(now);
        ok
    }

    /// The contact list (to show, or to save when it is dirty).
    pub fn contacts_mut(&mut self) -> Option<&mut ContactList> {
        self.services.as_mut().map(|s| s.contacts.contacts_mut())
    }

    // ---- outputs ---------------------------------------------------------------------

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        match &mut self.dht {
            Net::Udp(d) => d.poll_transmit(),
            Net::Proxy(_) => None,
        }
    }

    pub fn poll_event(&mut self) -> Option<DeviceEvent> {
        self.events.pop_front()
    }

    /// The earliest of the DHT's, the tracker's and the announcer's deadlines.
    pub fn poll_timeout(&self) -> Option<u64> {
        [
            self.dht.poll_timeout(),
            self.presence.poll_timeout(),
            self.announcer.as_ref().and_then(|a| a.poll_timeout()),
            self.services.as_ref().and_then(|s| s.poll_timeout()),
            self.discovery.as_ref().and_then(|d| d.poll_timeout()),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Route the DHT's events: the tracker's go to it (it may start lookups, whose
    /// events follow, hence the loop), the announcer starts on `Connected`, the rest are
    /// the user's.
    fn drain(&mut self, now: u64) {
        while let Some(e) = self.discovery.as_mut().and_then(|d| d.poll_event()) {
            match e {
                crate::discovery::Event::DhtPeer { addr, .. } => self.dht.bootstrap(now, addr),
                other => self.events.push_back(DeviceEvent::Nearby(other)),
            }
        }
        while let Some(e) = self.dht.poll_event() {
            if self.presence.handle_event(self.dht.inbox(), now, &e) {
                continue;
            }
            if let Some(s) = self.services.as_mut() {
                if s.handle_dht_event(self.dht.inbox(), now, &e) {
                    continue;
                }
            }
            if e == Event::Connected {
                self.connected = true;
                if let Some(a) = self.announcer.as_mut() {
                    if a.poll_timeout().is_none() {
                        self.dht.announce(a, now);
                    }
                }
            }
            if !self.announcer_op(&e) {
                self.events.push_back(DeviceEvent::Dht(e));
            } else if matches!(e, Event::PutDone { stored_on, .. } if stored_on > 0) {
                self.announcements_stored += 1;
            }
        }
        while let Some(p) = self.presence.poll_event() {
            if let Some(s) = self.services.as_mut() {
                let account = match &p {
                    PresenceEvent::Online(a) | PresenceEvent::Offline(a) => *a,
                    PresenceEvent::DeviceVerified { account, .. }
                    | PresenceEvent::Rejected { account, .. } => *account,
                };
                // Revocations the tracker found reach the TLS verifier.
                s.conns
                    .set_crls(account, self.presence.crls(&account).to_vec());
                match &p {
                    PresenceEvent::Online(a) => {
                        s.account_online(self.dht.inbox(), &self.presence, now, *a)
                    }
                    PresenceEvent::DeviceVerified { account, device } => s.device_verified(
                        self.dht.inbox(),
                        now,
                        account,
                        InfoHash(device.device_short_id),
                    ),
                    _ => {}
                }
            }
            self.events.push_back(DeviceEvent::Presence(p));
        }
        if let Some(s) = self.services.as_mut() {
            s.drain(self.dht.inbox(), now);
            while let Some(e) = s.poll_event() {
                self.events.push_back(DeviceEvent::Jami(e));
            }
        }
    }

    /// Events of the announcement's own puts are nobody else's business.
    fn announcer_op(&self, e: &Event) -> bool {
        matches!(e, Event::PutDone { .. } | Event::Failed { .. })
            && e.op().is_some()
            && e.op() == self.announcer.as_ref().and_then(|a| a.current_op())
    }
}

impl StreamEngine for Device {
    fn handle_stream_accepted(
        &mut self,
        now: u64,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> StreamId {
        let id = match self.services.as_mut() {
            Some(s) => s.conns.handle_stream_accepted(now, local, remote),
            None => StreamId(u64::MAX),
        };
        self.drain(now);
        id
    }

    fn handle_stream_connected(&mut self, now: u64, id: StreamId, _local: SocketAddr) {
        if let (Net::Proxy(p), true) = (&mut self.dht, ProxyEngine::owns(id)) {
            p.handle_stream_connected(now, id);
        } else if let Some(s) = self.services.as_mut() {
            s.conns.handle_stream_connected(now, id);
        }
        self.drain(now);
    }

    fn handle_stream_data(&mut self, now: u64, id: StreamId, bytes: &[u8]) {
        if let (Net::Proxy(p), true) = (&mut self.dht, ProxyEngine::owns(id)) {
            p.handle_stream_data(now, id, bytes);
        } else if let Some(s) = self.services.as_mut() {
            s.conns.handle_stream_data(now, id, bytes);
        }
        self.drain(now);
    }

    fn handle_stream_closed(&mut self, now: u64, id: StreamId) {
        if let (Net::Proxy(p), true) = (&mut self.dht, ProxyEngine::owns(id)) {
            p.handle_stream_closed(now, id);
        } else if let Some(s) = self.services.as_mut() {
            s.conns.handle_stream_closed(now, id);
        }
        self.drain(now);
    }

    fn handle_listen_failed(&mut self, now: u64, local: SocketAddr) {
        if let Some(s) = self.services.as_mut() {
            s.conns.handle_listen_failed(now, local);
        }
        self.drain(now);
    }

    /// The proxy client's requests first, then the connection manager's.
    fn poll_stream_command(&mut self) -> Option<StreamCommand> {
        if let Net::Proxy(p) = &mut self.dht {
            if let Some(c) = p.poll_stream_command() {
                return Some(c);
            }
        }
        self.services.as_mut()?.conns.poll_stream_command()
    }
}

#[cfg(test)]
mod tests;
