//! What a device with an identity adds to a DHT node: contacts and trust requests, the
//! connection manager with its channels, and text messages over the `sip` channel with
//! the DHT `ImMessage` fallback (PROTOCOLS §4.6, §6, §6.7). The [`super::Device`] routes
//! the DHT's events here and moves the streams; this module decides.

use crate::connect::manager::{ConnectionEvent, ConnectionManager, ManagerConfig, Stage};
use crate::contacts::{ContactEvent, ContactList, ContactManager, TrustEvent};
use crate::dht::engine::Event;
use crate::dht::infohash::InfoHash;
use crate::identity::DeviceIdentity;
use crate::presence::{InboxDht, PresenceTracker};
use crate::sip::fallback::{DhtFallback, FallbackEvent};
use crate::sip::{ChannelConfig, SipChannel, SipEvent};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// The channel messages and calls ride on (§6.6).
pub const SIP_CHANNEL: &str = "sip";
/// Message ids remembered to report a message once when both its SIP and DHT copies
/// arrive (jamid sends both under one token).
pub const MAX_SEEN_MESSAGES: usize = 4_096;
/// Messages waiting for a device of their account to be known.
pub const MAX_QUEUED_MESSAGES: usize = 256;

/// How a message travelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Sip,
    Dht,
}

impl std::fmt::Display for Via {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Via::Sip => "sip",
            Via::Dht => "dht",
        })
    }
}

/// What the Jami side of a device reports.
#[derive(Debug, Clone, PartialEq)]
pub enum JamiEvent {
    Connection(ConnectionEvent),
    Trust(TrustEvent),
    /// A message from `account` (once, whichever path brought it first).
    Message {
        account: InfoHash,
        device: InfoHash,
        /// jamid's id: the token as 16 hex digits.
        id: String,
        mime: String,
        body: Vec<u8>,
        via: Via,
    },
    /// The message sent under `token` reached a device of its account.
    Delivered {
        token: u64,
        via: Via,
    },
    /// It did not (SIP refused or timed out and the DHT copy got no receipt).
    SendFailed {
        token: u64,
        reason: String,
    },
}

struct Outgoing {
    account: InfoHash,
    mime: String,
    body: Vec<u8>,
    /// Sent on the DHT already.
    dht_sent: bool,
    /// Paths still running; at zero without delivery the message failed.
    running: u32,
    delivered: bool,
}

/// The Jami services of one device.
pub struct Services {
    pub(super) conns: ConnectionManager,
    pub(super) contacts: ContactManager,
    fallback: DhtFallback,
    sip: BTreeMap<(InfoHash, u16), SipChannel>,
    account: InfoHash,
    display_name: String,
    outgoing: BTreeMap<u64, Outgoing>,
    seen: BTreeSet<(InfoHash, String)>,
    seen_order: VecDeque<(InfoHash, String)>,
    next_token: u64,
    events: VecDeque<JamiEvent>,
    /// Accounts the user asked to connect to: their devices verified later are
    /// connected then.
    wanted: BTreeSet<InfoHash>,
}

impl Services {
    pub fn new(
        dht: &mut dyn InboxDht,
        now: u64,
        device: &DeviceIdentity,
        cfg: ManagerConfig,
        contacts: ContactList,
    ) -> Self {
        let me = InfoHash(device.short_id());
        let seed = cfg.seed;
        let mut conns = ConnectionManager::new(cfg, device.clone());
        conns.start(dht, now);
        let mut contacts = ContactManager::new(me, contacts, seed ^ 0xc0a7);
        contacts.start(dht, now);
        let fallback = DhtFallback::new(dht, now, me);
        let mut s = Services {
            conns,
            contacts,
            fallback,
            sip: BTreeMap::new(),
            account: InfoHash(device.account_id()),
            display_name: String::new(),
            outgoing: BTreeMap::new(),
            seen: BTreeSet::new(),
            seen_order: VecDeque::new(),
            // jamid's tokens are in [1, 2^53]; ours count from a seeded start.
            next_token: (seed % (1 << 40)) + 1,
            events: VecDeque::new(),
            wanted: BTreeSet::new(),
        };
        s.sync_trust();
        s
    }

    pub fn poll_event(&mut self) -> Option<JamiEvent> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<u64> {
        [self.conns.poll_timeout(), self.fallback.poll_timeout()]
            .into_iter()
            .flatten()
            .chain(self.sip.values().filter_map(|s| s.poll_timeout()))
            .min()
    }

    pub fn handle_timeout(&mut self, dht: &mut dyn InboxDht, now: u64) {
        self.conns.handle_timeout(now);
        if self.fallback.poll_timeout().is_some_and(|t| t <= now) {
            self.fallback.handle_timeout(dht, now);
        }
        for s in self.sip.values_mut() {
            if s.poll_timeout().is_some_and(|t| t <= now) {
                s.handle_timeout(now);
            }
        }
        self.drain(dht, now);
    }

    /// Offer a DHT event to each service; true if one took it.
    pub fn handle_dht_event(&mut self, dht: &mut dyn InboxDht, now: u64, e: &Event) -> bool {
        self.conns.handle_event(dht, now, e)
            || self.contacts.handle_event(dht, now, e)
            || self.fallback.handle_event(dht, now, e)
    }

    /// A tracked account came online: re-send an unconfirmed request (jamid's
    /// `onTrackedBuddyOnline`) and send messages that waited for its devices.
    pub fn account_online(
        &mut self,
        dht: &mut dyn InboxDht,
        presence: &PresenceTracker,
        now: u64,
        account: InfoHash,
    ) {
        self.contacts.contact_online(dht, now, account);
        let waiting: Vec<u64> = self
            .outgoing
            .iter()
            .filter(|(_, o)| o.account == account && !o.dht_sent && !o.delivered)
            .map(|(t, _)| *t)
            .collect();
        for token in waiting {
            self.send_paths(dht, presence, now, token);
        }
    }

    // ---- commands --------------------------------------------------------------------

    /// Connect to every known device of `account` and open the `sip` channel on each.
    pub fn connect_account(
        &mut self,
        dht: &mut dyn InboxDht,
        presence: &PresenceTracker,
        now: u64,
        account: &InfoHash,
    ) -> usize {
        self.wanted.insert(*account);
        let devices = presence.devices(account);
        for d in &devices {
            self.conns
                .connect(dht, now, InfoHash(d.device_short_id), Some(SIP_CHANNEL));
        }
        self.conns.flush_dht(dht, now);
        devices.len()
    }

    /// A device of `account` passed the presence checks: connect to it if the user asked
    /// to connect to that account.
    pub fn device_verified(
        &mut self,
        dht: &mut dyn InboxDht,
        now: u64,
        account: &InfoHash,
        device: InfoHash,
    ) {
        if self.wanted.contains(account) {
            self.connect_device(dht, now, device);
        }
    }

    /// Connect to one device (short id) with the `sip` channel.
    pub fn connect_device(&mut self, dht: &mut dyn InboxDht, now: u64, device: InfoHash) {
        self.conns.connect(dht, now, device, Some(SIP_CHANNEL));
        self.conns.flush_dht(dht, now);
    }

    /// Send a message to `account` (jamid's `sendTextMessage`): over each open `sip`
    /// channel to its devices; without one, a `sip` channel is requested and the message
    /// also goes as an encrypted `ImMessage` through the DHT. Returns the token.
    pub fn send_message(
        &mut self,
        dht: &mut dyn InboxDht,
        presence: &PresenceTracker,
        now: u64,
        account: InfoHash,
        mime: &str,
        body: &[u8],
    ) -> u64 {
        let token = self.next_token;
        self.next_token += 1;
        if self.outgoing.len() >= MAX_QUEUED_MESSAGES {
            self.events.push_back(JamiEvent::SendFailed {
                token,
                reason: format!("too many messages in flight ({MAX_QUEUED_MESSAGES})"),
            });
            return token;
        }
        self.outgoing.insert(
            token,
            Outgoing {
                account,
                mime: mime.to_string(),
                body: body.to_vec(),
                dht_sent: false,
                running: 0,
                delivered: false,
            },
        );
        self.send_paths(dht, presence, now, token);
        token
    }

    fn send_paths(
        &mut self,
        dht: &mut dyn InboxDht,
        presence: &PresenceTracker,
        now: u64,
        token: u64,
    ) {
        let Some(o) = self.outgoing.get(&token) else {
            return;
        };
        let (account, mime, body) = (o.account, o.mime.clone(), o.body.clone());
        let mut sent_sip = 0;
        for ((dev, _), ch) in self.sip.iter_mut() {
            let owner = self.conns.connection_to(dev).and_then(|c| c.account);
            if owner == Some(account) && ch.send_with_token(now, token, &mime, &body).is_ok() {
                sent_sip += 1;
            }
        }
        let devices: Vec<InfoHash> = presence
            .devices(&account)
            .iter()
            .map(|d| InfoHash(d.device_short_id))
            .collect();
        let mut running = sent_sip;
        let mut dht_sent = false;
        if sent_sip == 0 && !devices.is_empty() {
            for d in &devices {
                self.conns.connect(dht, now, *d, Some(SIP_CHANNEL));
            }
            let text = String::from_utf8_lossy(&body).into_owned();
            if self
                .fallback
                .send(dht, now, token, &devices, &mime, &text)
                .is_ok()
            {
                running += 1;
                dht_sent = true;
            }
        }
        if let Some(o) = self.outgoing.get_mut(&token) {
            o.running += running;
            o.dht_sent |= dht_sent;
        }
        self.conns.flush_dht(dht, now);
        self.pump_sip(now);
    }

    pub fn accept_request(&mut self, dht: &mut dyn InboxDht, now: u64, from: InfoHash) -> bool {
        let ok = self.contacts.accept(dht, now, from);
        self.after_contacts();
        ok
    }

    pub fn send_request(
        &mut self,
        dht: &mut dyn InboxDht,
        now: u64,
        to: InfoHash,
        payload: Vec<u8>,
    ) -> bool {
        let ok = self.contacts.send_request(dht, now, to, "", payload);
        self.after_contacts();
        ok
    }

    pub fn decline_request(&mut self, from: &InfoHash) -> bool {
        let ok = self.contacts.decline(from);
        self.after_contacts();
        ok
    }

    pub fn remove_contact(&mut self, now: u64, account: InfoHash, ban: bool) -> bool {
        let ok = self.contacts.remove(now, account, ban);
        self.after_contacts();
        if ban {
            let devs: Vec<InfoHash> = self
                .conns
                .connections()
                .filter(|c| c.account == Some(account))
                .map(|c| c.device)
                .collect();
            for d in devs {
                self.conns.close(now, &d);
            }
        }
        ok
    }

    pub fn set_display_name(&mut self, name: &str) {
        self.display_name = name.to_string();
    }

    fn after_contacts(&mut self) {
        self.sync_trust();
        while let Some(e) = self.contacts.poll_event() {
            self.events.push_back(JamiEvent::Trust(e));
        }
    }

    /// The connection manager's trust sets follow the contact list.
    fn sync_trust(&mut self) {
        let list = self.contacts.contacts();
        let contacts = list
            .contacts()
            .iter()
            .filter(|(_, c)| c.is_active())
            .map(|(a, _)| *a)
            .collect();
        let banned = list
            .contacts()
            .iter()
            .filter(|(_, c)| c.is_banned())
            .map(|(a, _)| *a)
            .collect();
        self.conns.set_trust(contacts, banned);
    }

    // ---- routing -----------------------------------------------------------------------

    /// Route what the services produced: contact changes into the trust sets, channel
    /// events into the SIP channels, messages and statuses to the user.
    pub fn drain(&mut self, dht: &mut dyn InboxDht, now: u64) {
        self.conns.flush_dht(dht, now);
        for _ in 0..8 {
            let mut moved = false;
            while let Some(e) = self.contacts.poll_event() {
                moved = true;
                if matches!(
                    e,
                    TrustEvent::Contact(
                        ContactEvent::ContactAdded { .. } | ContactEvent::ContactRemoved { .. }
                    )
                ) {
                    self.sync_trust();
                }
                self.events.push_back(JamiEvent::Trust(e));
            }
            while let Some(e) = self.conns.poll_event() {
                moved = true;
                self.connection_event(now, e);
            }
            while let Some(e) = self.fallback.poll_event() {
                moved = true;
                self.fallback_event(e);
            }
            moved |= self.pump_sip(now);
            self.conns.flush_dht(dht, now);
            if !moved {
                break;
            }
        }
    }

    fn connection_event(&mut self, now: u64, e: ConnectionEvent) {
        match &e {
            ConnectionEvent::ChannelRequested {
                device,
                channel,
                name,
            } => {
                if name == SIP_CHANNEL {
                    self.conns.accept_channel(now, device, *channel);
                    self.open_sip(*device, *channel);
                } else {
                    // git://, sync://, data-transfer:// arrive with swarm and files.
                    self.conns.decline_channel(now, device, *channel);
                }
            }
            ConnectionEvent::ChannelOpened {
                device,
                channel,
                name,
            } if name == SIP_CHANNEL => {
                self.open_sip(*device, *channel);
                // Messages waiting for this account's channel go now.
                self.resend_on_channel(now, *device, *channel);
            }
            ConnectionEvent::ChannelData {
                device,
                channel,
                data,
            } => {
                if let Some(s) = self.sip.get_mut(&(*device, *channel)) {
                    s.handle_stream_data(now, data);
                    return;
                }
            }
            ConnectionEvent::ChannelClosed { device, channel } => {
                self.sip.remove(&(*device, *channel));
            }
            ConnectionEvent::Closed { device, .. }
                if self.conns.connection_to(device).is_none() =>
            {
                self.sip.retain(|(d, _), _| d != device);
            }
            _ => {}
        }
        self.events.push_back(JamiEvent::Connection(e));
    }

    fn open_sip(&mut self, device: InfoHash, channel: u16) {
        let Some(c) = self.conns.connection_to(&device) else {
            return;
        };
        let (local, remote) = c
            .selected
            .map(|(l, r)| (l.addr, r.addr))
            .unwrap_or_else(|| {
                let z = std::net::SocketAddr::from(([0, 0, 0, 0], 0));
                (z, z)
            });
        let cfg = ChannelConfig {
            own_account: self.account.to_string(),
            display_name: self.display_name.clone(),
            peer_account: c.account.unwrap_or_default().to_string(),
            local_addr: local.to_string(),
            remote_addr: remote.to_string(),
            user_agent: concat!("jamisim/", env!("CARGO_PKG_VERSION")).to_string(),
        };
        let seed = (u64::from(channel) << 48)
            ^ u64::from_be_bytes(device.0[..8].try_into().expect("8 bytes"));
        self.sip
            .entry((device, channel))
            .or_insert_with(|| SipChannel::new(cfg, seed));
    }

    fn resend_on_channel(&mut self, now: u64, device: InfoHash, channel: u16) {
        let Some(account) = self.conns.connection_to(&device).and_then(|c| c.account) else {
            return;
        };
        let Some(ch) = self.sip.get_mut(&(device, channel)) else {
            return;
        };
        for (token, o) in self.outgoing.iter_mut() {
            // A message that went only through the DHT also goes on the new channel,
            // as jamid's pending messages do; the receiver reports one copy.
            if o.account == account
                && !o.delivered
                && ch.send_with_token(now, *token, &o.mime, &o.body).is_ok()
            {
                o.running += 1;
            }
        }
    }

    /// Move SIP bytes out to the channels and SIP events to the user.
    fn pump_sip(&mut self, now: u64) -> bool {
        let mut moved = false;
        let keys: Vec<(InfoHash, u16)> = self.sip.keys().copied().collect();
        for (device, channel) in keys {
            let mut out = Vec::new();
            let mut evs = Vec::new();
            if let Some(s) = self.sip.get_mut(&(device, channel)) {
                while let Some(b) = s.poll_transmit() {
                    out.push(b);
                }
                while let Some(e) = s.poll_event() {
                    evs.push(e);
                }
            }
            for b in out {
                moved = true;
                self.conns.write(now, &device, channel, &b);
            }
            for e in evs {
                moved = true;
                self.sip_event(device, e);
            }
        }
        moved
    }

    fn sip_event(&mut self, device: InfoHash, e: SipEvent) {
        match e {
            SipEvent::Received(m) => {
                let account = m.from.parse().unwrap_or_default();
                self.report(account, device, m.message_id, m.mime, m.body, Via::Sip);
            }
            SipEvent::Delivered { token } => self.delivered(token, Via::Sip),
            SipEvent::Failed { token, reason } => {
                self.path_failed(token, &format!("SIP: {reason:?}"))
            }
            SipEvent::Dropped { .. } => {}
        }
    }

    fn fallback_event(&mut self, e: FallbackEvent) {
        match e {
            FallbackEvent::Received(m) => {
                let id = m.message_id();
                self.report(
                    m.from_account,
                    m.from_device,
                    id,
                    m.mime,
                    m.body.into_bytes(),
                    Via::Dht,
                );
            }
            FallbackEvent::Delivered { token, .. } => self.delivered(token, Via::Dht),
            FallbackEvent::Failed { token, timed_out } => self.path_failed(
                token,
                if timed_out {
                    "DHT: no receipt within 1 min"
                } else {
                    "DHT: could not put the message"
                },
            ),
        }
    }

    fn report(
        &mut self,
        account: InfoHash,
        device: InfoHash,
        id: String,
        mime: String,
        body: Vec<u8>,
        via: Via,
    ) {
        let key = (account, id.clone());
        if !id.is_empty() {
            if self.seen.contains(&key) {
                return;
            }
            if self.seen.len() >= MAX_SEEN_MESSAGES {
                if let Some(old) = self.seen_order.pop_front() {
                    self.seen.remove(&old);
                }
            }
            self.seen.insert(key.clone());
            self.seen_order.push_back(key);
        }
        self.events.push_back(JamiEvent::Message {
            account,
            device,
            id,
            mime,
            body,
            via,
        });
    }

    fn delivered(&mut self, token: u64, via: Via) {
        if let Some(o) = self.outgoing.get_mut(&token) {
            if !o.delivered {
                o.delivered = true;
                self.events.push_back(JamiEvent::Delivered { token, via });
            }
            o.running = o.running.saturating_sub(1);
            if o.running == 0 {
                self.outgoing.remove(&token);
            }
        }
    }

    fn path_failed(&mut self, token: u64, reason: &str) {
        if let Some(o) = self.outgoing.get_mut(&token) {
            o.running = o.running.saturating_sub(1);
            if o.running == 0 {
                let delivered = o.delivered;
                self.outgoing.remove(&token);
                if !delivered {
                    self.events.push_back(JamiEvent::SendFailed {
                        token,
                        reason: reason.to_string(),
                    });
                }
            }
        }
    }

    /// The connection manager's counters (requests refused, connections up and failed).
    pub fn connection_stats(&self) -> crate::connect::manager::ManagerStats {
        self.conns.stats()
    }

    /// Addresses each peer device revealed in its ICE candidates (for exposure audits).
    pub fn learned_addresses(&self) -> &BTreeMap<InfoHash, BTreeSet<std::net::SocketAddr>> {
        self.conns.learned()
    }

    /// The DHT message path's counters.
    pub fn fallback_stats(&self) -> &crate::sip::fallback::FallbackStats {
        &self.fallback.stats
    }

    /// Whether a device of `account` has a live connection.
    pub fn connected(&self, account: &InfoHash) -> bool {
        self.conns.is_connected_to_account(account)
    }

    /// Live connections: (device, account, stage).
    pub fn connection_list(&self) -> Vec<(InfoHash, Option<InfoHash>, Stage)> {
        self.conns
            .connections()
            .map(|c| (c.device, c.account, c.stage))
            .collect()
    }
}
