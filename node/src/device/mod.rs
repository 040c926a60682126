//! One Jami device, sans-IO: the composition both drivers run. The tokio/std driver
//! (`jamisim node device`) moves real datagrams and the real clock through it; the
//! simulator glue moves netsim's. Neither composes the parts itself, so what a scenario
//! shows of the device is what the conformance tests show against jamid.
//!
//! Today it holds the secure DHT node (OpenDHT's SecureDht, with the device's key as
//! its identity, as jamid's is), the device announcement kept alive at the account id,
//! and the presence tracker of the accounts it follows. The connection manager, trust
//! requests and channels plug in here as they land.
//!
//! Contract (DESIGN.md §2): `handle_datagram` / `handle_timeout` with `now` (Unix ms),
//! commands, then drain `poll_transmit` and `poll_event` and read `poll_timeout`.

pub mod streams;

use crate::dht::engine::{Config, Event, Transmit};
use crate::dht::infohash::InfoHash;
use crate::dht::secure::{SecureDht, SecureError};
use crate::identity::{AccountIdentity, DeviceIdentity, IdentityError, NodeIdentity};
use crate::presence::{DeviceAnnouncer, PresenceEvent, PresenceTracker};
use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;

/// A contact's presence as the Jami FAQ words it. "Connected" (a live connection to one
/// of its devices) is added with the connection manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PresenceState {
    /// No device of the account is announced on the DHT (or none that checks out).
    None,
    /// At least one device is announced and its chain verifies: it "seems reachable".
    SeemsReachable,
}

impl std::fmt::Display for PresenceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PresenceState::None => "none",
            PresenceState::SeemsReachable => "seems reachable",
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

/// A Jami device (or, without an identity, a plain DHT node that can still follow
/// presence).
pub struct Device {
    dht: SecureDht,
    announcer: Option<DeviceAnnouncer>,
    presence: PresenceTracker,
    tracked: BTreeSet<InfoHash>,
    events: VecDeque<DeviceEvent>,
    connected: bool,
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
        Ok(Device {
            dht: SecureDht::new(cfg, identity, now),
            announcer,
            presence: PresenceTracker::new(),
            tracked: BTreeSet::new(),
            events: VecDeque::new(),
            connected: false,
        })
    }

    // ---- getters -------------------------------------------------------------------

    /// The secure DHT node, for reading its state.
    pub fn dht(&self) -> &SecureDht {
        &self.dht
    }

    /// The secure DHT node, for the user's own operations: their events come back as
    /// [`DeviceEvent::Dht`].
    pub fn dht_mut(&mut self) -> &mut SecureDht {
        &mut self.dht
    }

    /// The presence tracker (its statistics: verified devices, refusals by reason).
    pub fn presence(&self) -> &PresenceTracker {
        &self.presence
    }

    /// A tracked account's presence; `None` for an account not tracked.
    pub fn presence_of(&self, account: &InfoHash) -> Option<PresenceState> {
        self.tracked.contains(account).then(|| {
            if self.presence.is_online(account) {
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

    /// The node has joined the DHT.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    // ---- inputs ----------------------------------------------------------------------

    pub fn handle_datagram(&mut self, now: u64, from: SocketAddr, bytes: &[u8]) {
        self.dht.handle_datagram(now, from, bytes);
        self.drain(now);
    }

    pub fn handle_timeout(&mut self, now: u64) {
        if self.dht.poll_timeout().is_some_and(|t| t <= now) {
            self.dht.handle_timeout(now);
        }
        if self.presence.poll_timeout().is_some_and(|t| t <= now) {
            self.presence.handle_timeout(&mut self.dht, now);
        }
        if let Some(a) = self.announcer.as_mut() {
            a.handle_timeout(&mut self.dht, now);
        }
        self.drain(now);
    }

    // ---- commands --------------------------------------------------------------------

    /// Bootstrap from a node at `addr`.
    pub fn bootstrap(&mut self, now: u64, addr: SocketAddr) {
        self.dht.bootstrap(now, addr);
        self.drain(now);
    }

    /// Follow `account`'s presence (jamid's `subscribeBuddy`).
    pub fn track(&mut self, now: u64, account: InfoHash) {
        self.presence.track(&mut self.dht, now, account);
        self.tracked.insert(account);
        self.drain(now);
    }

    /// Stop following `account`.
    pub fn untrack(&mut self, account: &InfoHash) {
        self.presence.untrack(&mut self.dht, account);
        self.tracked.remove(account);
    }

    // ---- outputs ---------------------------------------------------------------------

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.dht.poll_transmit()
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
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Route the DHT's events: the tracker's go to it (it may start lookups, whose
    /// events follow, hence the loop), the announcer starts on `Connected`, the rest are
    /// the user's.
    fn drain(&mut self, now: u64) {
        while let Some(e) = self.dht.poll_event() {
            if self.presence.handle_event(&mut self.dht, now, &e) {
                continue;
            }
            if e == Event::Connected {
                self.connected = true;
                if let Some(a) = self.announcer.as_mut() {
                    if a.poll_timeout().is_none() {
                        a.announce(&mut self.dht, now);
                    }
                }
            }
            if !self.announcer_op(&e) {
                self.events.push_back(DeviceEvent::Dht(e));
            }
        }
        while let Some(p) = self.presence.poll_event() {
            self.events.push_back(DeviceEvent::Presence(p));
        }
    }

    /// Events of the announcement's own puts are nobody else's business.
    fn announcer_op(&self, e: &Event) -> bool {
        matches!(e, Event::PutDone { .. } | Event::Failed { .. })
            && e.op().is_some()
            && e.op() == self.announcer.as_ref().and_then(|a| a.current_op())
    }
}

#[cfg(test)]
mod tests;
