//! The sans-IO peer discovery state machine for one address family (OpenDHT runs one
//! `DomainPeerDiscovery` per family, each on its own socket bound to the discovery port
//! and joined to the group; the driver does the same and feeds each its datagrams).

use super::codec::{
    self, Datagram, DecodeError, DhtPayload, JamiPayload, DHT_SERVICE, JAMI_SERVICE, QUERY,
};
use crate::dht::engine::Transmit;
use crate::dht::InfoHash;
use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use thiserror::Error;

/// OpenDHT's `PeerDiscovery::DEFAULT_PORT`.
pub const DEFAULT_PORT: u16 = 8888;
/// OpenDHT's IPv4 group (organisation-local scope).
pub const GROUP_V4: Ipv4Addr = Ipv4Addr::new(239, 192, 0, 1);
/// OpenDHT's IPv6 group (organisation-local scope).
pub const GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff08, 0, 0, 0, 0, 0, 0, 0x101);

/// How long a discovered Jami account is kept without a new announcement (jamid's
/// `PEER_DISCOVERY_EXPIRATION`, one minute).
pub const JAMI_PEER_EXPIRY_MS: u64 = 60_000;

/// Jami accounts kept at once. Anyone on the LAN can announce as many accounts as it
/// likes; past this cap new accounts are refused (counted) until old ones expire, so a
/// flood cannot push out the peers already known.
pub const MAX_JAMI_PEERS: usize = 256;

/// Datagrams waiting to be sent. Every query is answered by unicast, so a LAN host
/// sending queries faster than the driver drains them would grow the queue; past this,
/// answers are dropped (counted), as a full socket buffer would drop them.
pub const MAX_QUEUED_TRANSMITS: usize = 64;

/// Events waiting for the user; past this, new ones are dropped (counted). Each
/// announcement can yield an event, and announcements arrive at the sender's pace.
pub const MAX_QUEUED_EVENTS: usize = 256;

/// Largest announcement we publish: an IPv4 UDP payload can be no larger.
pub const MAX_ANNOUNCEMENT_LEN: usize = 65_507;

/// Where announcements and queries go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    pub group: SocketAddr,
}

impl Config {
    /// 239.192.0.1:8888.
    pub fn ipv4() -> Config {
        Config {
            group: SocketAddr::new(GROUP_V4.into(), DEFAULT_PORT),
        }
    }

    /// [ff08::101]:8888.
    pub fn ipv6() -> Config {
        Config {
            group: SocketAddr::new(GROUP_V6.into(), DEFAULT_PORT),
        }
    }
}

/// What a node looks for, with what it needs to ignore its own announcements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discover {
    /// DHT nodes of network `net_id`; announcements carrying `own_id` are ours.
    Dht { own_id: InfoHash, net_id: u32 },
    /// Jami accounts other than `own_account`.
    Jami { own_account: InfoHash },
}

impl Discover {
    fn service(&self) -> &'static str {
        match self {
            Discover::Dht { .. } => DHT_SERVICE,
            Discover::Jami { .. } => JAMI_SERVICE,
        }
    }
}

/// What the state machine tells its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A DHT node of our network at `addr` (the sender's IP with the announced port):
    /// bootstrap from it. Raised for every announcement heard, as OpenDHT calls
    /// `bootstrap` every time.
    DhtPeer { addr: SocketAddr, node_id: InfoHash },
    /// A Jami account nearby, new or with a new name or address (jamid's
    /// `NearbyPeerNotification` "added").
    JamiPeer {
        account: InfoHash,
        name: String,
        addr: SocketAddr,
    },
    /// No announcement from `account` for [`JAMI_PEER_EXPIRY_MS`] ("removed").
    JamiPeerLost { account: InfoHash, name: String },
}

/// Counters of what was received and refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub received: u64,
    /// Not msgpack, not a str or map, or a bad payload of a service we discover.
    pub malformed: u64,
    /// Well-formed but not for us: another string, a service we do not discover, our
    /// own announcement, another network id, a port of 0.
    pub ignored: u64,
    pub queries_answered: u64,
    /// Jami accounts refused because [`MAX_JAMI_PEERS`] were known.
    pub peers_refused: u64,
    pub transmits_dropped: u64,
    pub events_dropped: u64,
}

/// Why a publish was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PublishError {
    #[error("announcement of {0} bytes does not fit in a datagram")]
    TooLarge(usize),
    #[error("more than {} services", codec::MAX_SERVICES)]
    TooManyServices,
}

#[derive(Debug, Clone)]
struct JamiPeer {
    name: String,
    addr: SocketAddr,
    expires: u64,
}

/// OpenDHT's multicast peer discovery for one address family, sans IO.
#[derive(Debug)]
pub struct PeerDiscovery {
    cfg: Config,
    /// Service → packed payload (OpenDHT's `messages_`, a sorted `std::map`).
    published: BTreeMap<String, Vec<u8>>,
    /// The announcement of everything in `published` (OpenDHT's `sbuf_`).
    announcement: Vec<u8>,
    discovering: BTreeMap<&'static str, Discover>,
    jami_peers: BTreeMap<InfoHash, JamiPeer>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: Stats,
}

/// IPv4-mapped IPv6 senders as IPv4 (as OpenDHT's `SockAddr` normalises them).
fn normalise(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), addr.port()),
            None => addr,
        },
        IpAddr::V4(_) => addr,
    }
}

impl PeerDiscovery {
    pub fn new(cfg: Config) -> PeerDiscovery {
        PeerDiscovery {
            cfg,
            published: BTreeMap::new(),
            announcement: Vec::new(),
            discovering: BTreeMap::new(),
            jami_peers: BTreeMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Jami accounts currently known (jamid's `getNearbyPeers`), by account id.
    pub fn jami_peers(&self) -> impl Iterator<Item = (&InfoHash, &str, SocketAddr)> {
        self.jami_peers
            .iter()
            .map(|(id, p)| (id, p.name.as_str(), p.addr))
    }

    fn send(&mut self, to: SocketAddr, bytes: Vec<u8>) {
        if self.transmits.len() >= MAX_QUEUED_TRANSMITS {
            self.stats.transmits_dropped += 1;
        } else {
            self.transmits.push_back(Transmit { to, bytes });
        }
    }

    fn emit(&mut self, e: Event) {
        if self.events.len() >= MAX_QUEUED_EVENTS {
            self.stats.events_dropped += 1;
        } else {
            self.events.push_back(e);
        }
    }

    // ---- commands ---------------------------------------------------------------------

    /// Publish (or replace) `service`'s packed payload: the whole announcement goes to
    /// the group now (OpenDHT's `startPublish`) and answers every later query. It is
    /// not repeated on a timer: OpenDHT 2.4.12 has none.
    pub fn publish(
        &mut self,
        _now: u64,
        service: &str,
        payload: Vec<u8>,
    ) -> Result<(), PublishError> {
        if !self.published.contains_key(service) && self.published.len() >= codec::MAX_SERVICES {
            return Err(PublishError::TooManyServices);
        }
        let old = self.published.insert(service.to_string(), payload);
        let announcement = self.encode_published();
        if announcement.len() > MAX_ANNOUNCEMENT_LEN {
            match old {
                Some(p) => self.published.insert(service.to_string(), p),
                None => self.published.remove(service),
            };
            return Err(PublishError::TooLarge(announcement.len()));
        }
        self.announcement = announcement;
        self.send(self.cfg.group, self.announcement.clone());
        Ok(())
    }

    /// Publish a DHT node (the `"dht"` service).
    pub fn publish_dht(&mut self, now: u64, p: DhtPayload) -> Result<(), PublishError> {
        self.publish(now, DHT_SERVICE, p.encode())
    }

    /// Publish a Jami account (the `"jami"` service).
    pub fn publish_jami(&mut self, now: u64, p: &JamiPayload) -> Result<(), PublishError> {
        self.publish(now, JAMI_SERVICE, p.encode())
    }

    /// Stop publishing `service`; returns whether it was published. Nothing is sent
    /// (OpenDHT sends no withdrawal).
    pub fn stop_publish(&mut self, service: &str) -> bool {
        let was = self.published.remove(service).is_some();
        self.announcement = self.encode_published();
        was
    }

    fn encode_published(&self) -> Vec<u8> {
        codec::encode_announcement(
            self.published
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_slice())),
        )
    }

    /// Look for `what`. The first discovery started sends a query to the group, so that
    /// publishers answer at once (OpenDHT's `startDiscovery`).
    pub fn start_discovery(&mut self, _now: u64, what: Discover) {
        let first = self.discovering.is_empty();
        self.discovering.insert(what.service(), what);
        if first {
            self.send(self.cfg.group, QUERY.to_vec());
        }
    }

    /// Stop looking for `service`; returns whether it was being discovered. Known Jami
    /// accounts are forgotten with it.
    pub fn stop_discovery(&mut self, service: &str) -> bool {
        if service == JAMI_SERVICE {
            self.jami_peers.clear();
        }
        self.discovering.remove(service).is_some()
    }

    /// The network changed (OpenDHT's `connectivityChanged`): query the group again if
    /// discovering, and announce again if publishing.
    pub fn connectivity_changed(&mut self, _now: u64) {
        if !self.discovering.is_empty() {
            self.send(self.cfg.group, QUERY.to_vec());
        }
        if !self.published.is_empty() {
            self.send(self.cfg.group, self.announcement.clone());
        }
    }

    // ---- inputs -----------------------------------------------------------------------

    /// A datagram received on the discovery socket from `from`.
    ///
    /// A query is answered, by unicast to `from`, with the announcement of everything
    /// published. In an announcement, each entry for a service we discover is decoded
    /// in wire order; the first bad one ends the datagram with an error (OpenDHT's
    /// conversion throws out of its loop the same way).
    pub fn handle_datagram(
        &mut self,
        now: u64,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Result<(), DecodeError> {
        self.stats.received += 1;
        let from = normalise(from);
        let datagram = match codec::decode(bytes) {
            Ok(d) => d,
            Err(e) => {
                if e == DecodeError::UnknownString {
                    self.stats.ignored += 1;
                } else {
                    self.stats.malformed += 1;
                }
                return Err(e);
            }
        };
        match datagram {
            Datagram::Query => {
                if self.published.is_empty() {
                    self.stats.ignored += 1;
                } else {
                    self.stats.queries_answered += 1;
                    self.send(from, self.announcement.clone());
                }
            }
            Datagram::Announcement(services) => {
                for (name, raw) in services {
                    let what = std::str::from_utf8(name)
                        .ok()
                        .and_then(|n| self.discovering.get(n))
                        .copied();
                    let handled = match what {
                        Some(Discover::Dht { own_id, net_id }) => {
                            self.on_dht(from, raw, own_id, net_id)
                        }
                        Some(Discover::Jami { own_account }) => {
                            self.on_jami(now, from, raw, own_account)
                        }
                        None => Ok(false),
                    };
                    match handled {
                        Ok(true) => {}
                        Ok(false) => self.stats.ignored += 1,
                        Err(e) => {
                            self.stats.malformed += 1;
                            return Err(e);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// A `"dht"` entry: OpenDHT bootstraps from the sender's IP and the announced port
    /// when the id is not its own and the network id is its own. Returns whether it was
    /// for us.
    fn on_dht(
        &mut self,
        from: SocketAddr,
        raw: &[u8],
        own_id: InfoHash,
        net_id: u32,
    ) -> Result<bool, DecodeError> {
        let p = DhtPayload::decode(raw)?;
        // Port 0 cannot be sent to (OpenDHT would insert a node it can never reach).
        if p.node_id == own_id || p.net_id != net_id || p.port == 0 {
            return Ok(false);
        }
        self.emit(Event::DhtPeer {
            addr: SocketAddr::new(from.ip(), p.port),
            node_id: p.node_id,
        });
        Ok(true)
    }

    /// A `"jami"` entry: jamid records every account but its own for one minute.
    fn on_jami(
        &mut self,
        now: u64,
        from: SocketAddr,
        raw: &[u8],
        own: InfoHash,
    ) -> Result<bool, DecodeError> {
        let p = JamiPayload::decode(raw)?;
        if p.account_id == own {
            return Ok(false);
        }
        let name = String::from_utf8_lossy(&p.display_name).into_owned();
        let expires = now.saturating_add(JAMI_PEER_EXPIRY_MS);
        let full = self.jami_peers.len() >= MAX_JAMI_PEERS;
        let changed = match self.jami_peers.get_mut(&p.account_id) {
            Some(known) => {
                let changed = known.name != name || known.addr != from;
                known.expires = expires;
                known.name = name.clone();
                known.addr = from;
                changed
            }
            None if full => {
                self.stats.peers_refused += 1;
                return Ok(true);
            }
            None => {
                self.jami_peers.insert(
                    p.account_id,
                    JamiPeer {
                        name: name.clone(),
                        addr: from,
                        expires,
                    },
                );
                true
            }
        };
        if changed {
            self.emit(Event::JamiPeer {
                account: p.account_id,
                name,
                addr: from,
            });
        }
        Ok(true)
    }

    /// Time passed: forget Jami accounts not heard from for a minute.
    pub fn handle_timeout(&mut self, now: u64) {
        let gone: Vec<InfoHash> = self
            .jami_peers
            .iter()
            .filter(|(_, p)| p.expires <= now)
            .map(|(id, _)| *id)
            .collect();
        for account in gone {
            if let Some(p) = self.jami_peers.remove(&account) {
                self.emit(Event::JamiPeerLost {
                    account,
                    name: p.name,
                });
            }
        }
    }

    // ---- outputs ----------------------------------------------------------------------

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`PeerDiscovery::handle_timeout`] next has something to do: the earliest
    /// Jami expiry (there is no other timer: nothing is re-sent periodically).
    pub fn poll_timeout(&self) -> Option<u64> {
        self.jami_peers.values().map(|p| p.expires).min()
    }
}
