//! Devices on an in-memory network with a fixed one-way delay: announcement, presence
//! as the FAQ words it, and the routing of events between the device's parts.

use super::*;
use crate::dht::value::Value;
use crate::identity::{AccountIdentity, DeviceIdentity};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::collections::{BTreeMap, VecDeque};
use std::sync::OnceLock;

const NOW: u64 = 1_790_000_000_000;
const DELAY_MS: u64 = 15;
const BITS: usize = 1024;

struct Accounts {
    alice: (AccountIdentity, DeviceIdentity),
    bob: (AccountIdentity, DeviceIdentity),
    carol: (AccountIdentity, DeviceIdentity),
}

fn accounts() -> &'static Accounts {
    static A: OnceLock<Accounts> = OnceLock::new();
    A.get_or_init(|| {
        let mut rng = ChaCha20Rng::seed_from_u64(77);
        let mut one = || {
            let a = AccountIdentity::generate(BITS, NOW / 1000, &mut rng).expect("account");
            let d = a.new_device(BITS, NOW / 1000, &mut rng).expect("device");
            (a, d)
        };
        Accounts {
            alice: one(),
            bob: one(),
            carol: one(),
        }
    })
}

fn account_id(a: &AccountIdentity) -> InfoHash {
    InfoHash(a.account_id())
}

/// Who runs on the network: some plain DHT nodes, then the devices asked for.
struct Net {
    now: u64,
    devices: Vec<Device>,
    addrs: Vec<SocketAddr>,
    /// Everything in flight, all with the same delay, so arrival order is send order.
    queue: VecDeque<(u64, Ev)>,
    events: Vec<Vec<DeviceEvent>>,
    /// In-memory TCP: listening addresses, and the two ends of each connection.
    listeners: BTreeMap<SocketAddr, usize>,
    links: BTreeMap<(usize, StreamId), (usize, StreamId)>,
    next_port: u16,
    /// Devices whose listeners refuse every connection (a broken network).
    refuse_tcp: bool,
}

/// Something in flight to device `.0` of each variant.
enum Ev {
    Datagram(usize, SocketAddr, Vec<u8>),
    Discovery(usize, SocketAddr, Vec<u8>),
    Accept {
        to: usize,
        local: SocketAddr,
        remote: SocketAddr,
        peer: (usize, StreamId),
    },
    Connected(usize, StreamId, SocketAddr),
    Data(usize, StreamId, Vec<u8>),
    Closed(usize, StreamId),
}

impl Net {
    fn new(plain: usize, jami: &[&(AccountIdentity, DeviceIdentity)]) -> Net {
        Net::build(plain, jami, true)
    }

    /// Devices that know no node to bootstrap from.
    fn new_unbooted(jami: &[&(AccountIdentity, DeviceIdentity)]) -> Net {
        Net::build(0, jami, false)
    }

    fn build(plain: usize, jami: &[&(AccountIdentity, DeviceIdentity)], boot: bool) -> Net {
        let now = NOW;
        let mut devices = Vec::new();
        for i in 0..plain + jami.len() {
            let cfg = Config {
                id: InfoHash::get(format!("node-{i}")),
                network: 0,
                seed: i as u64,
                verify: Some(Box::new(crate::crypto::verify)),
            };
            let identity = jami
                .get(i.wrapping_sub(plain))
                .filter(|_| i >= plain)
                .map(|(a, d)| JamiIdentity {
                    account: a,
                    device: d,
                    announcement_id: 1000 + i as u64,
                });
            devices.push(Device::new(cfg, identity, now).expect("device"));
        }
        let n = devices.len();
        let addrs: Vec<SocketAddr> = (0..n)
            .map(|i| SocketAddr::from(([10, 0, 0, i as u8 + 1], 4222)))
            .collect();
        if boot {
            for d in devices.iter_mut().skip(1) {
                d.bootstrap(now, addrs[0]);
            }
        }
        Net {
            now,
            devices,
            addrs,
            queue: VecDeque::new(),
            events: vec![Vec::new(); n],
            listeners: BTreeMap::new(),
            links: BTreeMap::new(),
            next_port: 40_000,
            refuse_tcp: false,
        }
    }

    fn stream_command(&mut self, i: usize, c: StreamCommand) {
        let at = self.now + DELAY_MS;
        match c {
            StreamCommand::Listen { local } => {
                self.listeners.insert(local, i);
            }
            StreamCommand::Unlisten { local } => {
                self.listeners.remove(&local);
            }
            StreamCommand::Connect { id, local, remote } => {
                let local = if local.port() == 0 {
                    self.next_port += 1;
                    SocketAddr::new(self.addrs[i].ip(), self.next_port)
                } else {
                    local
                };
                match self.listeners.get(&remote) {
                    Some(&to) if !self.refuse_tcp => self.queue.push_back((
                        at,
                        Ev::Accept {
                            to,
                            local: remote,
                            remote: local,
                            peer: (i, id),
                        },
                    )),
                    _ => self.queue.push_back((at, Ev::Closed(i, id))),
                }
            }
            StreamCommand::Write { id, bytes } => {
                if let Some(&(j, jd)) = self.links.get(&(i, id)) {
                    self.queue.push_back((at, Ev::Data(j, jd, bytes)));
                }
            }
            StreamCommand::Close { id } => {
                if let Some((j, jd)) = self.links.remove(&(i, id)) {
                    self.links.remove(&(j, jd));
                    self.queue.push_back((at, Ev::Closed(j, jd)));
                }
            }
        }
    }

    fn deliver(&mut self, ev: Ev) {
        let j = match ev {
            Ev::Datagram(j, from, bytes) => {
                self.devices[j].handle_datagram(self.now, from, &bytes);
                j
            }
            Ev::Discovery(j, from, bytes) => {
                self.devices[j].handle_discovery_datagram(self.now, from, &bytes);
                j
            }
            Ev::Accept {
                to,
                local,
                remote,
                peer,
            } => {
                let id = self.devices[to].handle_stream_accepted(self.now, local, remote);
                self.links.insert((to, id), peer);
                self.links.insert(peer, (to, id));
                self.queue
                    .push_back((self.now + DELAY_MS, Ev::Connected(peer.0, peer.1, remote)));
                to
            }
            Ev::Connected(j, id, local) => {
                self.devices[j].handle_stream_connected(self.now, id, local);
                j
            }
            Ev::Data(j, id, bytes) => {
                self.devices[j].handle_stream_data(self.now, id, &bytes);
                j
            }
            Ev::Closed(j, id) => {
                self.links.remove(&(j, id));
                self.devices[j].handle_stream_closed(self.now, id);
                j
            }
        };
        self.flush(j);
    }

    fn flush(&mut self, i: usize) {
        while let Some(t) = self.devices[i].poll_transmit() {
            if let Some(j) = self.addrs.iter().position(|a| *a == t.to) {
                self.queue
                    .push_back((self.now + DELAY_MS, Ev::Datagram(j, self.addrs[i], t.bytes)));
            }
        }
        // Multicast on one LAN: the group reaches every other device; a unicast answer
        // goes to its port 8888.
        while let Some(t) = self.devices[i].poll_discovery_transmit() {
            let from = SocketAddr::new(self.addrs[i].ip(), 8888);
            for j in 0..self.devices.len() {
                let to_me = t.to.ip() == self.addrs[j].ip();
                if j != i && (t.to.ip().is_multicast() || to_me) {
                    let ev = Ev::Discovery(j, from, t.bytes.clone());
                    self.queue.push_back((self.now + DELAY_MS, ev));
                }
            }
        }
        while let Some(c) = self.devices[i].poll_stream_command() {
            self.stream_command(i, c);
        }
        while let Some(e) = self.devices[i].poll_event() {
            self.events[i].push(e);
        }
    }

    fn run_for(&mut self, ms: u64) {
        let end = self.now + ms;
        for i in 0..self.devices.len() {
            self.flush(i);
        }
        while self.now < end {
            let next_packet = self.queue.front().map(|q| q.0).unwrap_or(u64::MAX);
            let next_timer = self
                .devices
                .iter()
                .filter_map(|d| d.poll_timeout())
                .min()
                .unwrap_or(u64::MAX);
            self.now = next_packet.min(next_timer).min(end).max(self.now);
            while self.queue.front().is_some_and(|q| q.0 <= self.now) {
                let (_, ev) = self.queue.pop_front().expect("queued");
                self.deliver(ev);
            }
            for i in 0..self.devices.len() {
                if self.devices[i]
                    .poll_timeout()
                    .is_some_and(|t| t <= self.now)
                {
                    self.devices[i].handle_timeout(self.now);
                    self.flush(i);
                }
            }
        }
    }

    fn presence_events(&self, i: usize) -> Vec<&PresenceEvent> {
        self.events[i]
            .iter()
            .filter_map(|e| match e {
                DeviceEvent::Presence(p) => Some(p),
                _ => None,
            })
            .collect()
    }
}

mod connections;

#[test]
fn a_device_announces_itself_and_its_contacts_see_it_reachable() {
    let f = accounts();
    // Nodes 0..6 are plain; 6 is Alice's device, 7 Bob's.
    let mut net = Net::new(6, &[&f.alice, &f.bob]);
    let (alice, bob) = (6, 7);
    net.run_for(5_000);
    assert!(net.devices[alice].is_connected() && net.devices[bob].is_connected());
    assert_eq!(net.devices[alice].announcements(), 1);
    // Bob and a plain node follow Alice; nobody announced Carol (a made-up id).
    let carol = InfoHash::get("nobody");
    let now = net.now;
    net.devices[bob].track(now, account_id(&f.alice.0));
    net.devices[bob].track(now, carol);
    net.devices[2].track(now, account_id(&f.alice.0));
    net.run_for(5_000);
    for watcher in [bob, 2] {
        assert_eq!(
            net.devices[watcher].presence_of(&account_id(&f.alice.0)),
            Some(PresenceState::SeemsReachable),
            "watcher {watcher}: {:?}",
            net.presence_events(watcher)
        );
        let verified = net.presence_events(watcher).into_iter().any(|p| {
            matches!(p, PresenceEvent::DeviceVerified { device, .. }
                if device.device_id == f.alice.1.device_id())
        });
        assert!(verified, "watcher {watcher} verified Alice's own device");
    }
    assert_eq!(
        net.devices[bob].presence_of(&carol),
        Some(PresenceState::None)
    );
    assert_eq!(
        net.devices[bob].presence_of(&InfoHash::get("untracked")),
        None
    );
    let listed: Vec<PresenceState> = net.devices[bob].tracked().map(|t| t.1).collect();
    assert_eq!(listed.len(), 2);
    // The announcement's own put never reaches the user as a DHT event.
    assert!(!net.events[alice]
        .iter()
        .any(|e| matches!(e, DeviceEvent::Dht(Event::PutDone { .. }))));
}

#[test]
fn the_users_own_operations_come_back_as_dht_events() {
    let f = accounts();
    let mut net = Net::new(5, &[&f.alice]);
    net.run_for(5_000);
    let (now, me) = (net.now, 5);
    let key = InfoHash::get("some key");
    let op = net.devices[me].put(now, key, Value::plain(9, 0, b"hello".to_vec()));
    net.run_for(5_000);
    let done = net.events[me]
        .iter()
        .any(|e| matches!(e, DeviceEvent::Dht(Event::PutDone { op: o, .. }) if *o == op));
    assert!(done, "{:?}", net.events[me]);
}

/// Breaks the model: a device that runs without its Jami identity announces nothing, so
/// the same watcher must not see it reachable.
#[test]
fn without_an_announcement_the_account_is_not_reachable() {
    let f = accounts();
    let mut net = Net::new(7, &[&f.bob]);
    net.run_for(5_000);
    let (now, bob) = (net.now, 7);
    net.devices[bob].track(now, account_id(&f.alice.0));
    net.run_for(10_000);
    assert_eq!(net.devices[6].announcements(), 0);
    assert_eq!(
        net.devices[bob].presence_of(&account_id(&f.alice.0)),
        Some(PresenceState::None)
    );
    assert!(net.presence_events(bob).is_empty());
}
