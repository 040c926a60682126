//! Our devices, each a full `node::device::Device` with its Jami services in a
//! `DeviceDriver`, run on a thread inside a test's namespace and driven by commands, so
//! a test can talk to jamid and watch what our side reports.

use crate::jamid::Jamid;
use node::connect::manager::{ConnectionEvent, ManagerConfig};
use node::contacts::ContactList;
use node::device::jami::JamiEvent;
use node::device::{Device, DeviceEvent, JamiIdentity};
use node::dht::engine::{Config, Event};
use node::dht::{InfoHash, Value};
use node::driver::{unix_ms, DeviceDriver};
use node::identity::{AccountIdentity, DeviceIdentity};
use node::presence::PresenceEvent;
use std::net::SocketAddr;
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

/// One of our devices: its identity and how its connection manager is set up.
pub struct Spec {
    pub account: AccountIdentity,
    pub device: DeviceIdentity,
    pub manager: ManagerConfig,
}

pub enum Cmd {
    Track(usize, InfoHash),
    Connect(usize, InfoHash),
    Msg(usize, InfoHash, String),
    /// A plain put by device `.0` (e.g. a CRL at an account id).
    Put(usize, InfoHash, Value),
    /// Report device `.0`'s DHT searches, presence counters and the values it stores
    /// at the keys `.1` (a lookup that failed is diagnosed from them).
    Dump(usize, Vec<InfoHash>),
    Stop,
}

#[derive(Debug)]
pub enum Report {
    DhtUp(usize),
    Online(usize, InfoHash),
    Jami(usize, JamiEvent),
    /// Answer to [`Cmd::Dump`]: the node id, routing table size and one line per search.
    Dump(usize, Vec<String>),
}

/// Runs `specs` until [`Cmd::Stop`], bootstrapping from `bootstrap`; returns each
/// device's connection-manager counters.
pub fn run(
    specs: Vec<Spec>,
    bootstrap: SocketAddr,
    cmds: Receiver<Cmd>,
    tx: Sender<Report>,
) -> Vec<String> {
    run_bound(
        specs,
        "127.0.0.1:0".parse().expect("addr"),
        0,
        bootstrap,
        cmds,
        tx,
    )
}

/// [`run`] with the DHT sockets bound to `bind` (e.g. `0.0.0.0:0` on a host whose
/// bootstrap node is not on loopback, as in [`crate::natlab`]) and `seed` added to the
/// DHT engines' seeds and announcement ids: a jamid that outlives one run remembers the
/// value ids it handled, so a later run of the same devices must draw new ones.
pub fn run_bound(
    specs: Vec<Spec>,
    bind: SocketAddr,
    seed: u64,
    bootstrap: SocketAddr,
    cmds: Receiver<Cmd>,
    tx: Sender<Report>,
) -> Vec<String> {
    let mut drivers: Vec<DeviceDriver<Device>> = specs
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let cfg =
                Config::verifying(InfoHash::get("replaced"), seed.wrapping_add(90 + i as u64));
            let jami = JamiIdentity {
                account: &s.account,
                device: &s.device,
                announcement_id: seed.wrapping_add(0x5eed_0000 + i as u64),
            };
            let mut dev = Device::new(cfg, Some(jami), unix_ms()).expect("device");
            assert!(dev.enable_services(unix_ms(), s.manager, ContactList::new()));
            let mut d = DeviceDriver::bind(dev, bind).expect("bind");
            d.dht.bootstrap(unix_ms(), bootstrap);
            d
        })
        .collect();
    loop {
        while let Ok(c) = cmds.try_recv() {
            let now = unix_ms();
            match c {
                Cmd::Track(i, a) => drivers[i].dht.track(now, a),
                Cmd::Connect(i, a) => {
                    drivers[i].dht.connect(now, a);
                }
                Cmd::Msg(i, a, text) => {
                    drivers[i]
                        .dht
                        .send_message(now, a, "text/plain", text.as_bytes());
                }
                Cmd::Put(i, k, v) => {
                    drivers[i].dht.put(now, k, v);
                }
                Cmd::Dump(i, keys) => {
                    let mut lines = vec![
                        format!("presence {:?}", drivers[i].dht.presence().stats),
                        format!(
                            "connections {:?}",
                            drivers[i].dht.services().map(|s| s.connection_stats())
                        ),
                    ];
                    if let Some(dht) = drivers[i].dht.dht() {
                        lines.push(format!("node {}", dht.id()));
                        for (_, nodes) in dht.routing_table().buckets() {
                            for n in nodes {
                                lines.push(format!(
                                    "  knows {} at {} (failures {}, replied {:?})",
                                    n.id[..4]
                                        .iter()
                                        .map(|b| format!("{b:02x}"))
                                        .collect::<String>(),
                                    n.addr,
                                    n.failures,
                                    n.last_reply
                                ));
                            }
                        }
                        lines.extend(dht.searches_summary());
                        for k in keys {
                            let vals: Vec<String> = dht
                                .local_values(&k)
                                .iter()
                                .map(|v| format!("{:x}", v.id))
                                .collect();
                            lines.push(format!("stores at {k}: {vals:?}"));
                        }
                    }
                    let _ = tx.send(Report::Dump(i, lines));
                }
                Cmd::Stop => {
                    return drivers
                        .iter()
                        .map(|d| format!("{:?}", d.dht.services().map(|s| s.connection_stats())))
                        .collect()
                }
            }
        }
        for (i, d) in drivers.iter_mut().enumerate() {
            d.turn(Duration::from_millis(5), &mut |_, e| {
                let r = match e {
                    DeviceEvent::Dht(Event::Connected) => Report::DhtUp(i),
                    DeviceEvent::Presence(PresenceEvent::Online(a)) => Report::Online(i, a),
                    DeviceEvent::Jami(j) => Report::Jami(i, j),
                    _ => return,
                };
                let _ = tx.send(r);
            })
            .expect("driver turn");
        }
    }
}

/// Reads reports until `want` says so or `timeout` passes (printing them, without the
/// channel data).
pub fn wait(
    rx: &Receiver<Report>,
    timeout: Duration,
    mut want: impl FnMut(&Report) -> bool,
) -> bool {
    let t0 = Instant::now();
    while let Some(left) = timeout.checked_sub(t0.elapsed()) {
        match rx.recv_timeout(left) {
            Ok(r) => {
                if !matches!(
                    r,
                    Report::Jami(
                        _,
                        JamiEvent::Connection(ConnectionEvent::ChannelData { .. })
                    )
                ) {
                    eprintln!("  ours: {r:?}");
                }
                if want(&r) {
                    return true;
                }
            }
            Err(_) => break,
        }
    }
    false
}

/// Our device `i` reported its connection to `account`: (pair text, initiator, set-up ms).
pub fn connected(r: &Report, i: usize, account: &InfoHash) -> Option<(String, bool, u64)> {
    match r {
        Report::Jami(
            j,
            JamiEvent::Connection(ConnectionEvent::Connected {
                account: a,
                local,
                remote,
                initiator,
                setup_ms,
                ..
            }),
        ) if *j == i && a == account => Some((
            format!(
                "{:?} {:?} {} <-> {:?} {:?} {}",
                local.typ, local.transport, local.addr, remote.typ, remote.transport, remote.addr
            ),
            *initiator,
            *setup_ms,
        )),
        _ => None,
    }
}

/// jamid's log lines about connections, channels, TLS and SIP (what a failure needs).
pub fn jamid_log(j: &Jamid) -> String {
    let t = j.log_text();
    let keep = [
        "sip",
        "SIP",
        "channel",
        "Channel",
        "ICE",
        "TLS",
        "tls",
        "certificate",
        "Certificate",
        "message",
        "Message",
        "connection",
        "Connection",
    ];
    let lines: Vec<&str> = t
        .lines()
        .filter(|l| keep.iter().any(|k| l.contains(k)))
        .collect();
    lines[lines.len().saturating_sub(120)..].join("\n")
}

/// A jamid with one registered, announced account on a dhtnode, in a namespace of its
/// own: what each test against jamid starts from. Fields drop in order, jamid first and
/// the namespace last.
pub struct JamidOnDht {
    pub jamid: Jamid,
    pub dht: crate::dhtnode::DhtNode,
    pub dir: crate::TempDir,
    /// jamid's local handle of the account, and its Jami ID.
    pub account: String,
    pub uri: InfoHash,
    pub ns: crate::netns::Netns,
}

/// How long a fresh jamid account may take to register and announce itself.
pub const REGISTER_TIMEOUT: Duration = Duration::from_secs(90);

impl JamidOnDht {
    /// Namespace `tag`, dhtnode on 127.0.0.1:`dht_port`, jamid with an account named
    /// `tag` bootstrapping from it; panics with jamid's log when it does not come up.
    pub fn start(tag: &str, dht_port: u16) -> JamidOnDht {
        use crate::jamid::AccountSetup;
        let ns = crate::netns::Netns::create(tag).expect("namespace");
        let dht = crate::dhtnode::DhtNode::start(&ns, dht_port, None, false).expect("dhtnode");
        let dir = crate::TempDir::new(tag).expect("temp dir");
        let jamid = Jamid::start(&ns, dir.path()).expect("jamid starts");
        let account = jamid
            .create_account(&AccountSetup::new(
                tag,
                SocketAddr::from(([127, 0, 0, 1], dht_port)),
            ))
            .expect("addAccount");
        jamid
            .wait_for_registration(&account, REGISTER_TIMEOUT)
            .unwrap_or_else(|e| panic!("{e:#}\n{}", jamid_log(&jamid)));
        jamid
            .wait_for_announced(&account, REGISTER_TIMEOUT)
            .unwrap_or_else(|e| panic!("{e:#}\n{}", jamid_log(&jamid)));
        let uri = jamid
            .account_uri(&account)
            .expect("uri")
            .parse()
            .expect("40 hex");
        JamidOnDht {
            jamid,
            dht,
            dir,
            account,
            uri,
            ns,
        }
    }
}

/// `n` accounts with one device each (RSA-2048: quick to make; jamid's are 4096-bit),
/// drawn from `seed`, certificates dated now.
pub fn identities(n: usize, seed: u64) -> Vec<(AccountIdentity, DeviceIdentity)> {
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
    let now_s = unix_ms() / 1000;
    (0..n)
        .map(|_| {
            let a = AccountIdentity::generate(2048, now_s, &mut rng).expect("account key");
            let d = a.new_device(2048, now_s, &mut rng).expect("device key");
            (a, d)
        })
        .collect()
}
