//! Jami connections, each measured beside its real baseline in the same run:
//!
//! - `connect-setup/ours`: two of our devices (node::device::Device with its services,
//!   each in a node::driver::DeviceDriver on its own thread) joined through our DHT node
//!   on loopback. From `Device::connect(account)` to both `Connected` (ICE-TCP, TLS with
//!   Jami's chain checks, the multiplexed socket) and the `sip` channel open at the
//!   caller. `Device::disconnect` closes it between iterations (both sides see it
//!   closed).
//! - `connect-setup/jamid`: two official jamid (Jami 13.7), one account each, over the
//!   official dhtnode. jamid has no connect call on D-Bus: `sendTextMessage` with no
//!   channel open asks the peer for one, so the measure runs from that call to the
//!   caller's own log line `New SIP channel opened with <device>` (jamid's
//!   `cacheSIPConnection`: the same point as ours, the `sip` channel usable). The log's
//!   `[sec.ms|` stamps are wall-clock milliseconds without zero padding (NOTES.md gotcha
//!   7). Between iterations the caller's account is disabled and enabled again
//!   (`sendRegister`): that closes its connections and channels.
//! - `message/ours`: `send_message` on an open `sip` channel → `JamiEvent::Message` at
//!   the peer (checked: the right text, over SIP); the sender's `Delivered` (the SIP
//!   200) is awaited before the next one.
//! - `message/jamid`: `sendTextMessage` → `incomingAccountMessage` at the other jamid
//!   (whose real arguments are `(account, from, id, payloads)`).
//! - `message/ours-to-jamid`: our device's `send_message` → `incomingAccountMessage`
//!   at jamid (the callee of the jamid pair), on a `sip` channel our device opened.
//! - `channel-throughput/ours` against `channel-throughput/bare-rustls`: 1 MiB per
//!   iteration through a channel of node::connect::mux over our TLS sessions, in memory,
//!   every byte checked; the baseline moves the same bytes through two plain rustls
//!   connections (benches::tls_pair, as the `tls` bench).
//!
//! Everything on real sockets runs inside a network namespace the bench creates (jamid
//! must not run in the host's); without root the `ours` parts run on the host's
//! loopback and the jamid parts are skipped with a SKIP line, as without jamid.
//! A summary line per group gives the medians and the ratio ours/baseline.

use anyhow::{bail, Context, Result};
use benches::device_peer::{Peer, PeerSetup};
use benches::dht_rtt::OurServer;
use benches::tls_pair::{devices, payload, BarePair, OursPair, NOW, PAYLOAD, WRITE};
use conformance::dhtnode::DhtNode;
use conformance::jamid::{AccountSetup, Details, Jamid, Signal};
use conformance::netns::Netns;
use conformance::TempDir;
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use node::connect::manager::ConnectionEvent;
use node::connect::mux::{Event as MuxEvent, Mux, MuxError};
use node::connect::tls::TlsSession;
use node::device::jami::{JamiEvent, Via};
use node::device::DeviceEvent;
use node::dht::InfoHash;
use node::driver::unix_ms;
use node::identity::AccountIdentity;
use node::presence::PresenceEvent;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

const DHTNODE_PORT: u16 = 4261;
/// Longest one step (a connection, a message) may take before the bench gives up.
const STEP: Duration = Duration::from_secs(30);
/// jamid's first TLS on a fresh account waits for its DH parameters (about 6 s here,
/// NOTES.md gotcha 4), ICE adds some.
const FIRST_CONNECTION: Duration = Duration::from_secs(90);
const REGISTER: Duration = Duration::from_secs(90);
/// The namespace's non-loopback address: jamid's ICE ignores loopback, so our device
/// that talks to jamid offers this one.
const HOST_IP: [u8; 4] = [198, 51, 100, 1];
const BITS: usize = 2048;
/// `accountMessageStatusChanged` state SENT: the receipt came back.
const SENT: i32 = 2;

// ---- summaries ---------------------------------------------------------------------

fn median(v: &[Duration]) -> Option<Duration> {
    quantile(v, 0.5)
}

fn quantile(v: &[Duration], q: f64) -> Option<Duration> {
    let mut v = v.to_vec();
    v.sort();
    v.get(((v.len() as f64 * q) as usize).min(v.len().saturating_sub(1)))
        .copied()
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// `group summary: ours median …; baseline median …; ours/baseline = r`.
fn summary(group: &str, ours: &[Duration], base_name: &str, base: &[Duration], unit: &str) {
    let Some(o) = median(ours) else {
        println!("{group} summary: not measured");
        return;
    };
    let spread = |v: &[Duration]| {
        if unit == "MiB/s" {
            String::new()
        } else {
            format!(
                ", p90 {}, max {}",
                ms(quantile(v, 0.9).unwrap_or_default()),
                ms(v.iter().max().copied().unwrap_or_default())
            )
        }
    };
    let show = |d: Duration| {
        if unit == "MiB/s" {
            format!(
                "{:.1} MiB/s",
                PAYLOAD as f64 / (1 << 20) as f64 / d.as_secs_f64()
            )
        } else {
            ms(d)
        }
    };
    match median(base) {
        Some(b) => println!(
            "{group} summary: ours median {} (n={}{}); {base_name} median {} (n={}{}); time ours/{base_name} = {:.2} (below 1: ours faster)",
            show(o),
            ours.len(),
            spread(ours),
            show(b),
            base.len(),
            spread(base),
            o.as_secs_f64() / b.as_secs_f64()
        ),
        None => println!(
            "{group} summary: ours median {} (n={}{}); no {base_name} baseline",
            show(o),
            ours.len(),
            spread(ours)
        ),
    }
}

/// Criterion's measurement of `one` (which returns its own time), every time recorded.
fn measure(
    c: &mut Criterion,
    group: &str,
    name: &str,
    slow: bool,
    mut one: impl FnMut() -> Result<Duration>,
) -> Vec<Duration> {
    let times = RefCell::new(Vec::new());
    let mut g = c.benchmark_group(group);
    if slow {
        g.sample_size(10).sampling_mode(SamplingMode::Flat);
    }
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let t = one().unwrap_or_else(|e| panic!("{group}/{name}: {e:#}"));
                    times.borrow_mut().push(t);
                    t
                })
                .sum()
        })
    });
    g.finish();
    times.into_inner()
}

// ---- channel throughput --------------------------------------------------------------

/// Our TLS sessions with a multiplexed socket on each, one channel open client → server.
struct MuxPair {
    tls: OursPair,
    client: Mux,
    server: Mux,
    channel: u16,
    /// Mux output the TLS session has not taken yet, per side.
    out: [Vec<u8>; 2],
    /// TLS plaintext the mux has not taken yet, per side.
    held: [Vec<u8>; 2],
    /// Where channel data is read to (kept: zeroing 64 KiB per read would dominate).
    buf: Vec<u8>,
}

/// Hand `m`'s stream bytes to `t`; whether any moved.
fn mux_to_tls(m: &mut Mux, t: &mut TlsSession, out: &mut Vec<u8>) -> bool {
    while let Some(b) = m.poll_stream_write() {
        out.extend(b);
    }
    let mut moved = false;
    while !out.is_empty() {
        let n = t.send(NOW, out).expect("tls send");
        if n == 0 {
            break;
        }
        out.drain(..n);
        moved = true;
    }
    moved
}

/// Feed held plaintext to `m`, answer channel requests, read what is readable.
fn into_mux(m: &mut Mux, held: &mut Vec<u8>, buf: &mut [u8], got: &mut Vec<u8>) -> bool {
    let mut moved = false;
    if !held.is_empty() {
        let n = m.handle_stream_bytes(NOW, held);
        held.drain(..n);
        moved |= n > 0;
    }
    while let Some(e) = m.poll_event() {
        moved = true;
        match e {
            MuxEvent::ChannelRequested { channel, .. } => m.accept(channel).expect("accept"),
            MuxEvent::Readable { channel } => loop {
                match m.read(channel, buf) {
                    Ok(0) | Err(MuxError::NothingToRead) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) => panic!("read: {e}"),
                }
            },
            MuxEvent::Shutdown(r) => panic!("mux shut down: {r:?}"),
            _ => {}
        }
    }
    moved
}

impl MuxPair {
    fn new() -> MuxPair {
        let (a, b) = devices();
        let mut p = MuxPair {
            tls: OursPair::new(&a, &b),
            client: Mux::new(ChaCha20Rng::seed_from_u64(3)),
            server: Mux::new(ChaCha20Rng::seed_from_u64(4)),
            channel: 0,
            out: [Vec::new(), Vec::new()],
            held: [Vec::new(), Vec::new()],
            buf: vec![0; 64 * 1024],
        };
        p.channel = p.client.open_channel("bench").expect("open");
        p.pump(&mut Vec::new());
        let open = p.client.channel_ids().contains(&p.channel)
            && p.server.channel_ids().contains(&p.channel);
        assert!(open, "the channel opened");
        p
    }

    /// Move bytes every way until quiet; the server's channel data goes to `got`.
    fn pump(&mut self, got: &mut Vec<u8>) {
        loop {
            let mut moved = mux_to_tls(&mut self.client, &mut self.tls.client, &mut self.out[0]);
            moved |= mux_to_tls(&mut self.server, &mut self.tls.server, &mut self.out[1]);
            let [hc, hs] = &mut self.held;
            self.tls.pump(&mut |d| hc.extend(d), &mut |d| hs.extend(d));
            let buf = &mut self.buf;
            moved |= into_mux(&mut self.client, &mut self.held[0], buf, &mut Vec::new());
            moved |= into_mux(&mut self.server, &mut self.held[1], buf, got);
            if !moved {
                return;
            }
        }
    }

    fn send(&mut self, data: &[u8]) {
        let mut got = Vec::with_capacity(data.len());
        for chunk in data.chunks(WRITE) {
            let mut off = 0;
            while off < chunk.len() {
                match self.client.write(self.channel, &chunk[off..]) {
                    Ok(n) => off += n,
                    Err(MuxError::Blocked) => {}
                    Err(e) => panic!("write: {e}"),
                }
                self.pump(&mut got);
            }
        }
        self.pump(&mut got);
        assert!(got == data, "ours: the channel's bytes arrived changed");
    }
}

fn channel_throughput(c: &mut Criterion) {
    let data = payload();
    let mut ours = MuxPair::new();
    let (a, _) = devices();
    let mut bare = BarePair::new(&a);
    let mut run = |name: &str, send: &mut dyn FnMut(&[u8])| {
        let times = RefCell::new(Vec::new());
        let mut g = c.benchmark_group("channel-throughput");
        g.throughput(Throughput::Bytes(PAYLOAD as u64))
            .sample_size(20);
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        let t0 = Instant::now();
                        send(&data);
                        let t = t0.elapsed();
                        times.borrow_mut().push(t);
                        t
                    })
                    .sum()
            })
        });
        g.finish();
        times.into_inner()
    };
    let o = run("ours", &mut |d| ours.send(d));
    let b = run("bare-rustls", &mut |d| bare.send(d));
    summary("channel-throughput", &o, "bare-rustls", &b, "MiB/s");
}

// ---- our devices -------------------------------------------------------------------

fn identity(rng: &mut ChaCha20Rng) -> (AccountIdentity, node::identity::DeviceIdentity) {
    let now_s = unix_ms() / 1000;
    let a = AccountIdentity::generate(BITS, now_s, rng).expect("account");
    let d = a.new_device(BITS, now_s, rng).expect("device");
    (a, d)
}

fn peer(ns: Option<&Netns>, rng: &mut ChaCha20Rng, host_ip: IpAddr, dht: SocketAddr) -> Peer {
    let (account, device) = identity(rng);
    Peer::start(
        ns,
        PeerSetup {
            account,
            device,
            host_ip,
            bootstrap: dht,
            seed: rand::RngExt::random(rng),
        },
    )
    .expect("our device starts")
}

fn is_connected(e: &DeviceEvent, to: InfoHash) -> bool {
    matches!(e, DeviceEvent::Jami(JamiEvent::Connection(ConnectionEvent::Connected { account, .. })) if *account == to)
}

fn is_sip_open(e: &DeviceEvent) -> bool {
    matches!(e, DeviceEvent::Jami(JamiEvent::Connection(ConnectionEvent::ChannelOpened { name, .. })) if name == "sip")
}

/// `from` follows `to`'s presence until a device of it is verified online
/// (`Device::connect` asks the devices known at the call).
fn find_ours(from: &mut Peer, to: InfoHash) -> Result<()> {
    from.drain();
    from.run(move |d, now| d.track(now, to))?;
    from.wait(
        STEP,
        |e| matches!(e, DeviceEvent::Presence(PresenceEvent::Online(a)) if *a == to),
    )
    .context("the peer's device is found on the DHT")?;
    Ok(())
}

/// `from` connects to `to`'s account: from the call to connected and `sip` open.
fn connect_ours(from: &mut Peer, to: InfoHash, timeout: Duration) -> Result<Duration> {
    from.drain();
    let (t0, n) = from.run(move |d, now| d.connect(now, to))?;
    match n {
        None => bail!("no services"),
        Some(0) => bail!("no device of {to} known yet"),
        Some(_) => {}
    }
    let (mut up, mut sip) = (false, false);
    let t1 = from
        .wait(timeout, |e| {
            up |= is_connected(e, to);
            sip |= is_sip_open(e);
            up && sip
        })
        .with_context(|| format!("connected {up}, sip open {sip}"))?;
    Ok(t1 - t0)
}

/// `a` closes its connection to `b`; both see it closed.
fn disconnect_ours(a: &mut Peer, b: &mut Peer) -> Result<()> {
    b.drain();
    let to = b.account;
    let (_, n) = a.run(move |d, now| d.disconnect(now, to))?;
    if n != 1 {
        bail!("{n} devices disconnected, expected 1");
    }
    let closed = |e: &DeviceEvent| {
        matches!(
            e,
            DeviceEvent::Jami(JamiEvent::Connection(ConnectionEvent::Closed { .. }))
        )
    };
    a.wait(STEP, closed).context("closed at the caller")?;
    b.wait(STEP, closed).context("closed at the callee")?;
    Ok(())
}

/// One text `a` → `b` over the open `sip` channel: from `send_message` to the message
/// at `b`; then `a`'s delivery report.
fn message_ours(a: &mut Peer, b: &mut Peer, n: u64) -> Result<Duration> {
    a.drain();
    b.drain();
    let text = format!("bench message {n}");
    let (to, from) = (b.account, a.account);
    let body = text.clone().into_bytes();
    let (t0, token) = a.run(move |d, now| d.send_message(now, to, "text/plain", &body))?;
    let token = token.context("no services")?;
    let mut via = None;
    let t1 = b.wait(STEP, |e| match e {
        DeviceEvent::Jami(JamiEvent::Message {
            account,
            body,
            via: v,
            ..
        }) if *account == from && body == text.as_bytes() => {
            via = Some(*v);
            true
        }
        _ => false,
    })?;
    if via != Some(Via::Sip) {
        bail!("the message came via {via:?}, not the sip channel");
    }
    a.wait(
        STEP,
        |e| matches!(e, DeviceEvent::Jami(JamiEvent::Delivered { token: t, .. }) if *t == token),
    )
    .context("delivery report")?;
    Ok(t1 - t0)
}

// ---- jamid ---------------------------------------------------------------------------

/// A jamid with one registered and announced account.
struct JamiPeer {
    jamid: Jamid,
    acc: String,
    uri: String,
    device: String,
    _dir: TempDir,
}

impl JamiPeer {
    fn start(ns: &Netns, alias: &str) -> Result<JamiPeer> {
        let dir = TempDir::new(&format!("bench-{alias}"))?;
        let jamid = Jamid::start(ns, dir.path())?;
        let acc = jamid.create_account(&AccountSetup::new(
            alias,
            SocketAddr::from(([127, 0, 0, 1], DHTNODE_PORT)),
        ))?;
        jamid.wait_for_registration(&acc, REGISTER)?;
        jamid.wait_for_announced(&acc, REGISTER)?;
        let uri = jamid.account_uri(&acc)?;
        let device = jamid.device_id(&acc)?;
        Ok(JamiPeer {
            jamid,
            acc,
            uri,
            device,
            _dir: dir,
        })
    }

    /// `sendTextMessage(account, to, {text/plain: text})`: its token.
    fn send_text(&self, to: &str, text: &str) -> Result<u64> {
        self.jamid.call(
            "ConfigurationManager",
            "sendTextMessage",
            &(
                &self.acc,
                to,
                Details::from([("text/plain".to_string(), text.to_string())]),
            ),
        )
    }

    /// Wait for `incomingAccountMessage` from `from` carrying `text`, after signal `mark`.
    fn incoming(&self, mark: usize, from: &str, text: &str) -> Result<Signal> {
        self.jamid
            .signals()
            .wait("incomingAccountMessage", mark, STEP, |s| {
                // (account, from, id, payloads): the real order (sipaccountbase.cpp).
                s.args::<(String, String, String, Details)>()
                    .is_ok_and(|(_, f, _, p)| {
                        f == from && p.get("text/plain").map(String::as_str) == Some(text)
                    })
            })
    }

    /// Wait for the SENT status of message `token` to `peer`.
    fn sent(&self, mark: usize, peer: &str, token: u64) -> Result<()> {
        self.jamid
            .signals()
            .wait("accountMessageStatusChanged", mark, STEP, |s| {
                s.args::<(String, String, String, String, i32)>()
                    .is_ok_and(|(_, _, p, id, st)| {
                        p == peer && id == token.to_string() && st == SENT
                    })
            })
            .map(|_| ())
    }

    fn send_register(&self, on: bool) -> Result<()> {
        self.jamid
            .call("ConfigurationManager", "sendRegister", &(&self.acc, on))
    }
}

/// A log line's `[sec.ms|` stamp in Unix milliseconds (the milliseconds are printed
/// without zero padding: `.60` is 60 ms, NOTES.md gotcha 7).
fn stamp_ms(line: &str) -> Option<u64> {
    // The console log starts lines with colour escapes (`ESC[0m`): try each `[`.
    line.split('[').skip(1).find_map(|part| {
        let (stamp, _) = part.split_once('|')?;
        let (s, m) = stamp.split_once('.')?;
        Some(s.parse::<u64>().ok()? * 1000 + m.parse::<u64>().ok()?)
    })
}

/// The stamp of the first line after byte `from` of `log` containing every needle.
fn find_stamp(log: &str, from: usize, needles: &[&str]) -> Option<u64> {
    log.get(from..)?
        .lines()
        .find(|l| needles.iter().all(|n| l.contains(n)))
        .and_then(stamp_ms)
}

/// What one jamid connection set-up took, from its log: (sip channel open, TLS ready).
struct JamidSetup {
    sip: Duration,
    tls: Option<Duration>,
}

/// `a` sends a text to `b` with no channel open; returns when `a` logged the `sip`
/// channel to `b`'s device as open.
fn connect_jamid(a: &JamiPeer, b: &JamiPeer, n: u64, timeout: Duration) -> Result<JamidSetup> {
    let from = a.jamid.log_text().len();
    let mark = b.jamid.signals().mark();
    let text = format!("connect {n}");
    let t0 = unix_ms();
    a.send_text(&b.uri, &text)?;
    let end = Instant::now() + timeout;
    let sip = loop {
        let log = a.jamid.log_text();
        if let Some(t) = find_stamp(&log, from, &["New SIP channel opened with", &b.device]) {
            let tls = find_stamp(&log, from, &["Connection to", &b.device, "is ready"]);
            break JamidSetup {
                sip: Duration::from_millis(t.saturating_sub(t0)),
                tls: tls.map(|t| Duration::from_millis(t.saturating_sub(t0))),
            };
        }
        if Instant::now() > end {
            let keep = [
                "sip",
                "SIP",
                "channel",
                "Channel",
                "Connection",
                "connection",
                "ICE",
                "TLS",
            ];
            let tail: Vec<&str> = log[from..]
                .lines()
                .filter(|l| keep.iter().any(|k| l.contains(k)))
                .collect();
            bail!(
                "jamid logged no new sip channel to {} within {timeout:?}; its log:\n{}",
                b.device,
                tail[tail.len().saturating_sub(60)..].join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    // The text itself arrives too (over SIP or the DHT).
    b.incoming(mark, &a.uri, &text)?;
    Ok(sip)
}

/// Close every connection of `a`: `sendRegister(a, false)` disables the account, which
/// shuts its connections and `sip` channels down (`setAccountActive` does not: jamid
/// keeps an enabled account's connections); then enable it again and wait until it is
/// registered.
fn reset_jamid(a: &JamiPeer) -> Result<()> {
    a.send_register(false)?;
    a.jamid
        .wait_for_volatile(&a.acc, "Account.registrationStatus", "UNREGISTERED", STEP)?;
    a.send_register(true)?;
    a.jamid.wait_for_registration(&a.acc, STEP)?;
    // Let its DHT node settle (its listens and the peer's announcement known again).
    std::thread::sleep(Duration::from_millis(500));
    Ok(())
}

/// One `sendTextMessage` a → b on the open channel: to `incomingAccountMessage` at b.
fn message_jamid(a: &JamiPeer, b: &JamiPeer, n: u64) -> Result<Duration> {
    let mark_b = b.jamid.signals().mark();
    let mark_a = a.jamid.signals().mark();
    let text = format!("jamid message {n}");
    let t0 = Instant::now();
    let token = a.send_text(&b.uri, &text)?;
    let s = b.incoming(mark_b, &a.uri, &text)?;
    let took = s.at - t0;
    a.sent(mark_a, &b.uri, token)
        .context("jamid's SENT status")?;
    Ok(took)
}

/// One text from our device to jamid over the `sip` channel it opened.
fn message_ours_to_jamid(ours: &mut Peer, j: &JamiPeer, n: u64) -> Result<Duration> {
    ours.drain();
    let mark = j.jamid.signals().mark();
    let from_log = j.jamid.log_text().len();
    let t0_ms = unix_ms();
    let text = format!("ours to jamid {n}");
    let body = text.clone().into_bytes();
    let to: InfoHash = j.uri.parse().context("jamid uri")?;
    let (t0, token) = ours.run(move |d, now| d.send_message(now, to, "text/plain", &body))?;
    let token = token.context("no services")?;
    let s = j.incoming(mark, &ours.account.to_string(), &text)?;
    let mut via = None;
    ours.wait(STEP, |e| match e {
        DeviceEvent::Jami(JamiEvent::Delivered { token: t, via: v }) if *t == token => {
            via = Some(*v);
            true
        }
        _ => false,
    })?;
    if via != Some(Via::Sip) {
        bail!("delivered via {via:?}, not the sip channel");
    }
    if n == 3 && std::env::var_os(benches::device_peer::TRACE_ENV).is_some() {
        eprintln!("sent at {t0_ms}; jamid's log since:");
        eprintln!("{}", &j.jamid.log_text()[from_log..]);
    }
    Ok(s.at - t0)
}

// ---- the bench -----------------------------------------------------------------------

fn bench(c: &mut Criterion) {
    check_stamps();
    channel_throughput(c);

    let ns = match Netns::create("jsconnect") {
        Ok(ns) => Some(ns),
        Err(e) => {
            println!("note: no network namespace ({e:#}); our devices run on the host's loopback");
            None
        }
    };
    let with_jamid = ns.is_some() && conformance::jamid_or_skip();
    let mut rng = ChaCha20Rng::seed_from_u64(rand::RngExt::random(&mut rand::rng()));
    let loopback = IpAddr::from([127, 0, 0, 1]);

    // Ours: two devices through our DHT node.
    let server = OurServer::start(ns.as_ref()).expect("our DHT node starts");
    let dht = server.addr;
    // b found, a first connection (certificate lookup), closed again.
    let mut a = peer(ns.as_ref(), &mut rng, loopback, dht);
    let mut b = peer(ns.as_ref(), &mut rng, loopback, dht);
    find_ours(&mut a, b.account).expect("b is found");
    let first = connect_ours(&mut a, b.account, STEP).expect("first connection of ours");
    disconnect_ours(&mut a, &mut b).expect("disconnect");
    println!(
        "connect-setup/ours: first connection (b's certificate lookup included) {}",
        ms(first)
    );
    // One pair throughout: every request piles up at b's `peer:` key, as in a long
    // session (puts asked for those values until the DHT fix; set-ups slowed after ~45).
    let ours_setup = measure(c, "connect-setup", "ours", true, || {
        let t = connect_ours(&mut a, b.account, STEP)?;
        disconnect_ours(&mut a, &mut b)?;
        Ok(t)
    });

    connect_ours(&mut a, b.account, STEP).expect("connection for messages");
    let mut n = 0;
    let ours_msg = measure(c, "message", "ours", false, || {
        n += 1;
        message_ours(&mut a, &mut b, n)
    });
    drop((a, b, server));

    if !with_jamid {
        println!("SKIP baselines connect-setup/jamid, message/jamid, message/ours-to-jamid: need jamid, dbus-daemon, dhtnode and root (for their network namespace)");
        summary("connect-setup", &ours_setup, "jamid", &[], "ms");
        summary("message", &ours_msg, "jamid", &[], "ms");
        return;
    }
    let ns = ns.expect("namespace");
    let _serial = conformance::jamid::one_at_a_time();
    let _dht = DhtNode::start(&ns, DHTNODE_PORT, None, false).expect("dhtnode starts");
    let ja = JamiPeer::start(&ns, "bench-a").expect("jamid a");
    let jb = JamiPeer::start(&ns, "bench-b").expect("jamid b");

    // Warm-up: the first TLS of a's new account waits for its DH parameters.
    let first = connect_jamid(&ja, &jb, 0, FIRST_CONNECTION).expect("first jamid connection");
    println!(
        "connect-setup/jamid: first connection (DH parameters included) {}",
        ms(first.sip)
    );
    let mut tls = Vec::new();
    let mut n = 0;
    let jamid_setup = measure(c, "connect-setup", "jamid", true, || {
        n += 1;
        reset_jamid(&ja)?;
        let s = connect_jamid(&ja, &jb, n, STEP)?;
        tls.extend(s.tls);
        Ok(s.sip)
    });
    if let Some(t) = median(&tls) {
        println!(
            "connect-setup/jamid: TLS ready (\"Connection to … is ready\") median {} of the set-up",
            ms(t)
        );
    }
    summary("connect-setup", &ours_setup, "jamid", &jamid_setup, "ms");

    // Our device talks to jamid b: it connects (as a third party, public incoming on).
    let server = SocketAddr::from(([127, 0, 0, 1], DHTNODE_PORT));
    let mut ours = peer(Some(&ns), &mut rng, IpAddr::from(HOST_IP), server);
    let jb_key: InfoHash = jb.uri.parse().expect("jamid uri");
    find_ours(&mut ours, jb_key).expect("our device finds jamid's");
    let took = connect_ours(&mut ours, jb_key, FIRST_CONNECTION).unwrap_or_else(|e| {
        println!("note: our first connection to jamid failed ({e:#}); once more");
        connect_ours(&mut ours, jb_key, FIRST_CONNECTION).expect("our device connects to jamid")
    });
    println!("ours -> jamid: connected with sip open in {}", ms(took));

    let mut n = 0;
    let jamid_msg = measure(c, "message", "jamid", true, || {
        n += 1;
        message_jamid(&ja, &jb, n)
    });

    let mut n = 0;
    let to_jamid = measure(c, "message", "ours-to-jamid", true, || {
        n += 1;
        message_ours_to_jamid(&mut ours, &jb, n)
    });
    summary("message", &ours_msg, "jamid", &jamid_msg, "ms");
    summary(
        "message (ours-to-jamid vs jamid)",
        &to_jamid,
        "jamid",
        &jamid_msg,
        "ms",
    );
    drop(ours);
    let _ = Jamid::stop_all(vec![ja.jamid, jb.jamid], conformance::jamid::TERM_GRACE);
}

/// The stamp parser on real lines (jamid's console log, colour escapes included).
fn check_stamps() {
    let line = "\u{1b}[0m\u{1b}[22;36m[1796674366.469|5959|jamiaccount.cpp         :3855] \u{1b}[0m[01;33m[Account 9683] New SIP channel opened with 82b2";
    assert_eq!(stamp_ms(line), Some(1_796_674_366_469));
    assert_eq!(
        stamp_ms("[1796674366.60|1|a.cpp:1] x"),
        Some(1_796_674_366_060)
    );
    assert_eq!(stamp_ms("no stamp [here] at all"), None);
}

criterion_group!(benches, bench);
criterion_main!(benches);
