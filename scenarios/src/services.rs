//! The Jami services of a `dht-node` on a netsim host (`jami = true` with `stun`,
//! `connect`, `message`...): what the host is told to do with its [`Device`], and the
//! small record of what the device reported, for the `ice_connect` and
//! `message_delivered` checks. Everything the device decides stays in `node`: this
//! module only issues the user's commands (connect, send a text) at the scenario's times
//! and writes down the events.

use netsim::{Ctx, SimTime};
use node::connect::ice::Endpoint;
use node::connect::manager::ConnectionEvent;
use node::device::jami::{JamiEvent, Via};
use node::device::Device;
use node::dht::InfoHash;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

/// Entries kept in each list of a [`JamiRecord`]: a check needs the first few; a peer
/// that reconnects in a loop must not grow the world's memory.
pub const MAX_RECORDS: usize = 64;
/// Bytes of a received text kept in the record.
pub const MAX_BODY_BYTES: usize = 256;

/// What the Jami side of a `dht-node` is told to do.
#[derive(Clone, Debug, Default)]
pub struct JamiWork {
    /// STUN server (TCP) for server-reflexive candidates.
    pub stun: Option<SocketAddr>,
    /// Connect to these hosts' accounts (host, account id) at `connect_at`.
    pub connect: Vec<(String, InfoHash)>,
    pub connect_at: Duration,
    /// Send this text to each `connect` account once the `sip` channel of its connection
    /// is open, or at `message_at`, whichever comes first.
    pub message: Option<String>,
    pub message_at: Option<Duration>,
    /// Refuse connection requests from non-contacts (jamid's `allowPublicIncoming` off).
    pub contacts_only: bool,
    /// Offer simultaneous-open candidates (the manager's default; off models an agent
    /// without them, as jamid is).
    pub tcp_so: bool,
    /// TURN server and credentials for relay candidates.
    pub turn: Option<node::connect::turn::ClientConfig>,
}

/// A connection the device reported up.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnRecord {
    pub at: SimTime,
    pub device: InfoHash,
    pub account: InfoHash,
    pub local: Endpoint,
    pub remote: Endpoint,
    pub initiator: bool,
    pub setup_ms: u64,
}

/// A message the device reported received.
#[derive(Clone, Debug, PartialEq)]
pub struct MsgRecord {
    pub at: SimTime,
    pub account: InfoHash,
    pub body: String,
    pub via: Via,
}

/// What one host's device reported, bounded by [`MAX_RECORDS`] per list.
#[derive(Clone, Debug, Default)]
pub struct JamiRecord {
    pub connected: Vec<ConnRecord>,
    pub received: Vec<MsgRecord>,
    /// Texts sent: token, account, when.
    pub sent: Vec<(u64, InfoHash, SimTime)>,
    pub delivered: Vec<(u64, Via, SimTime)>,
    pub send_failed: Vec<(u64, String)>,
    /// Requests refused (device, reason) and connections closed (device, reason).
    pub refused: Vec<(InfoHash, String)>,
    pub closed: Vec<(InfoHash, String)>,
    /// Events not recorded because a list was full.
    pub overflow: u64,
}

fn push<T>(v: &mut Vec<T>, overflow: &mut u64, x: T) {
    if v.len() < MAX_RECORDS {
        v.push(x);
    } else {
        *overflow += 1;
    }
}

/// The running state of a host's Jami workload.
#[derive(Debug, Default)]
pub struct JamiRunner {
    pub work: JamiWork,
    pub record: JamiRecord,
    /// `connect_at` has come.
    connecting: bool,
    /// Devices asked for a connection.
    asked: BTreeSet<InfoHash>,
    /// Accounts the text went to.
    messaged: BTreeSet<InfoHash>,
}

impl JamiRunner {
    pub fn new(work: JamiWork) -> Self {
        JamiRunner {
            work,
            ..JamiRunner::default()
        }
    }

    fn host_of(&self, account: &InfoHash) -> String {
        self.work
            .connect
            .iter()
            .find(|(_, a)| a == account)
            .map_or_else(|| account.to_string(), |(h, _)| h.clone())
    }

    /// `connect_at`: ask for every `connect` account's known devices (its presence is
    /// followed from now on; devices verified later are asked in [`Self::device_verified`]).
    pub fn connect_now(&mut self, cx: &mut Ctx<'_>, now: u64, d: &mut Device) {
        self.connecting = true;
        for (host, account) in self.work.connect.clone() {
            let n = d.connect(now, account).unwrap_or(0);
            cx.trace(&format!("jami: connect to {host}: {n} device(s) known"));
            for dev in d.presence().devices(&account) {
                self.asked.insert(InfoHash(dev.device_short_id));
            }
        }
    }

    /// The tracker verified a device of `account`: connect to it if it is one of ours.
    pub fn device_verified(&mut self, now: u64, d: &mut Device, account: InfoHash, dev: InfoHash) {
        if self.connecting
            && self.work.connect.iter().any(|(_, a)| *a == account)
            && self.asked.insert(dev)
        {
            d.connect_device(now, dev);
        }
    }

    /// Send the text to every `connect` account not sent to yet (`message_at`).
    pub fn message_now(&mut self, cx: &mut Ctx<'_>, now: u64, d: &mut Device) {
        for (_, account) in self.work.connect.clone() {
            self.send_text(cx, now, d, account);
        }
    }

    fn send_text(&mut self, cx: &mut Ctx<'_>, now: u64, d: &mut Device, account: InfoHash) {
        let Some(text) = self.work.message.clone() else {
            return;
        };
        if !self.work.connect.iter().any(|(_, a)| *a == account) || !self.messaged.insert(account) {
            return;
        }
        if let Some(token) = d.send_message(now, account, "text/plain", text.as_bytes()) {
            cx.trace(&format!("jami: text {token} to {}", self.host_of(&account)));
            let at = cx.sim_now();
            let r = &mut self.record;
            push(&mut r.sent, &mut r.overflow, (token, account, at));
        }
    }

    /// An event of the device's Jami services: record it (and trace it); the `sip`
    /// channel opening to a `connect` account sends the text.
    pub fn on_event(&mut self, cx: &mut Ctx<'_>, now: u64, d: &mut Device, e: JamiEvent) {
        let at = cx.sim_now();
        match e {
            JamiEvent::Connection(ConnectionEvent::Connected {
                device,
                account,
                local,
                remote,
                initiator,
                setup_ms,
            }) => {
                cx.trace(&format!(
                    "jami: connected to {} ({}) {} {:?} {} -> {} {:?} {} in {setup_ms} ms{}",
                    self.host_of(&account),
                    device,
                    local.typ.as_str(),
                    local.transport,
                    local.addr,
                    remote.typ.as_str(),
                    remote.transport,
                    remote.addr,
                    if initiator { " (requester)" } else { "" }
                ));
                let r = &mut self.record;
                push(
                    &mut r.connected,
                    &mut r.overflow,
                    ConnRecord {
                        at,
                        device,
                        account,
                        local,
                        remote,
                        initiator,
                        setup_ms,
                    },
                );
            }
            // The text goes once the `sip` channel is open (sent at `Connected`, it would
            // also go through the DHT, and the receiver reports whichever copy wins).
            JamiEvent::Connection(ConnectionEvent::ChannelOpened { device, name, .. })
                if name == node::device::jami::SIP_CHANNEL =>
            {
                let account = self
                    .record
                    .connected
                    .iter()
                    .rev()
                    .find(|c| c.device == device)
                    .map(|c| c.account);
                if let Some(account) = account {
                    self.send_text(cx, now, d, account);
                }
            }
            JamiEvent::Connection(ConnectionEvent::Refused { device, reason }) => {
                cx.trace(&format!("jami: refused {device}: {reason}"));
                let r = &mut self.record;
                push(&mut r.refused, &mut r.overflow, (device, reason));
            }
            JamiEvent::Connection(ConnectionEvent::Closed { device, reason }) => {
                cx.trace(&format!("jami: closed {device}: {reason}"));
                let r = &mut self.record;
                push(&mut r.closed, &mut r.overflow, (device, reason));
            }
            JamiEvent::Message {
                account, body, via, ..
            } => {
                cx.trace(&format!("jami: text from {account} via {via}"));
                let mut body = String::from_utf8_lossy(&body).into_owned();
                if body.len() > MAX_BODY_BYTES {
                    let mut cut = MAX_BODY_BYTES;
                    while !body.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    body.truncate(cut);
                }
                let r = &mut self.record;
                push(
                    &mut r.received,
                    &mut r.overflow,
                    MsgRecord {
                        at,
                        account,
                        body,
                        via,
                    },
                );
            }
            JamiEvent::Delivered { token, via } => {
                cx.trace(&format!("jami: text {token} delivered via {via}"));
                let r = &mut self.record;
                push(&mut r.delivered, &mut r.overflow, (token, via, at));
            }
            JamiEvent::SendFailed { token, reason } => {
                cx.trace(&format!("jami: text {token} failed: {reason}"));
                let r = &mut self.record;
                push(&mut r.send_failed, &mut r.overflow, (token, reason));
            }
            // Channels and trust requests: the `sip` channel is the device's business.
            JamiEvent::Connection(_) | JamiEvent::Trust(_) => {}
        }
    }
}
