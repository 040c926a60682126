//! `jamisim node device`: a Jami device from an account directory (jamid's layout, as
//! `node account` writes it) on a real UDP socket: the same sans-IO [`Device`] the
//! simulator runs, driven by [`UdpDriver`]. Commands on stdin, `--json` for scripts.

use crate::account_cmd::{read_archive, ARCHIVE_FILE, DEVICE_CRT_FILE, DEVICE_KEY_FILE};
use crate::node_cmd::Printer;
use anyhow::{Context, Result};
use node::device::{Device, DeviceEvent, JamiIdentity, PresenceState};
use node::dht::engine::{Config, Event};
use node::dht::InfoHash;
use node::driver::{unix_ms, UdpDriver};
use node::identity::DeviceIdentity;
use node::presence::PresenceEvent;
use rand::{Rng, RngExt};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

/// Options of `jamisim node device`.
pub struct DeviceOpts {
    pub dir: PathBuf,
    pub password: String,
    pub port: u16,
    pub bind: std::net::IpAddr,
    pub bootstrap: Vec<SocketAddr>,
    pub json: bool,
}

const HELP: &str =
    "commands: track <jami id>, untrack <jami id>, presence, ll (node info), x (quit)";

pub fn run(opts: DeviceOpts) -> Result<()> {
    let archive = read_archive(&opts.dir.join(ARCHIVE_FILE), &opts.password)?;
    let account = archive.account().context("the archive's account")?;
    let key = std::fs::read(opts.dir.join(DEVICE_KEY_FILE)).context(DEVICE_KEY_FILE)?;
    let chain = std::fs::read(opts.dir.join(DEVICE_CRT_FILE)).context(DEVICE_CRT_FILE)?;
    let device = DeviceIdentity::from_pem(&key, &chain).context("the device key and chain")?;
    let mut rng = rand::rng();
    let jami = JamiIdentity {
        account: &account,
        device: &device,
        // As jamid: a random value id for its announcement.
        announcement_id: rng.random::<u64>() | 1,
    };
    let cfg = Config::verifying(InfoHash(rng.random()), rng.next_u64());
    let dev = Device::new(cfg, Some(jami), unix_ms())?;
    let mut d = UdpDriver::bind(dev, SocketAddr::new(opts.bind, opts.port))
        .with_context(|| format!("binding {}:{}", opts.bind, opts.port))?;
    let out = Printer { json: opts.json };
    let local = d.local_addr()?;
    out.say(
        "started",
        format!(
            "Jami device {} of account {} on {local}",
            hex::encode(device.device_id()),
            account.uri()
        ),
        serde_json::json!({"account": InfoHash(account.account_id()).to_string(), "uri": account.uri(), "device": hex::encode(device.device_id()),
            "addr": local.to_string(), "node": d.dht.dht().id().to_string()}),
    );
    for b in &opts.bootstrap {
        d.dht.bootstrap(unix_ms(), *b);
    }
    let lines = crate::node_cmd::stdin_lines();
    loop {
        d.turn(Duration::from_millis(50), &mut |dev, e| {
            report(&out, dev, e)
        })?;
        match lines.try_recv() {
            Ok(line) => {
                if !command(&mut d.dht, &line, &out) {
                    return Ok(());
                }
            }
            Err(mpsc::TryRecvError::Empty) => {}
            Err(mpsc::TryRecvError::Disconnected) => return Ok(()),
        }
    }
}

fn state_json(account: &InfoHash, state: PresenceState) -> serde_json::Value {
    serde_json::json!({"account": account.to_string(), "state": state.to_string()})
}

fn report(out: &Printer, dev: &mut Device, e: DeviceEvent) {
    match e {
        DeviceEvent::Dht(Event::Connected) => out.say(
            "connected",
            "Connected to the DHT".into(),
            serde_json::json!({}),
        ),
        DeviceEvent::Dht(_) => {}
        DeviceEvent::Presence(PresenceEvent::Online(a) | PresenceEvent::Offline(a)) => {
            let state = dev.presence_of(&a).unwrap_or(PresenceState::None);
            out.say("presence", format!("{a}: {state}"), state_json(&a, state));
        }
        DeviceEvent::Presence(PresenceEvent::DeviceVerified { account, device }) => out.say(
            "device_verified",
            format!(
                "{account}: device {} verified",
                hex::encode(device.device_id)
            ),
            serde_json::json!({"account": account.to_string(),
                "device": hex::encode(device.device_id)}),
        ),
        DeviceEvent::Presence(PresenceEvent::Rejected { account, reason }) => out.say(
            "rejected",
            format!("{account}: refused: {reason}"),
            serde_json::json!({"account": account.to_string(), "reason": format!("{reason:?}")}),
        ),
    }
}

/// One stdin line; false to quit.
fn command(dev: &mut Device, line: &str, out: &Printer) -> bool {
    let mut words = line.split_whitespace();
    let now = unix_ms();
    let account =
        |w: Option<&str>| w.and_then(|s| s.trim_start_matches("jami:").parse::<InfoHash>().ok());
    match words.next() {
        None => {}
        Some("x" | "q" | "quit") => return false,
        Some("track") => match account(words.next()) {
            Some(a) => {
                dev.track(now, a);
                let state = dev.presence_of(&a).unwrap_or(PresenceState::None);
                out.say(
                    "tracking",
                    format!("tracking {a}: {state}"),
                    state_json(&a, state),
                );
            }
            None => out.say(
                "error",
                "usage: track <40-hex jami id>".into(),
                serde_json::json!({"error": "usage: track <id>"}),
            ),
        },
        Some("untrack") => match account(words.next()) {
            Some(a) => {
                dev.untrack(&a);
                out.say(
                    "untracked",
                    format!("no longer tracking {a}"),
                    serde_json::json!({"account": a.to_string()}),
                );
            }
            None => out.say(
                "error",
                "usage: untrack <40-hex jami id>".into(),
                serde_json::json!({"error": "usage: untrack <id>"}),
            ),
        },
        Some("presence") => {
            let all: Vec<(InfoHash, PresenceState)> = dev.tracked().collect();
            let text: Vec<String> = all.iter().map(|(a, s)| format!("{a}: {s}")).collect();
            let json: Vec<serde_json::Value> = all.iter().map(|(a, s)| state_json(a, *s)).collect();
            out.say(
                "presence_list",
                text.join("\n"),
                serde_json::json!({"contacts": json}),
            );
        }
        Some("ll") => {
            let d = dev.dht();
            out.say(
                "info",
                format!(
                    "node {} connected: {}, {} nodes known, announced {} times",
                    d.id(),
                    dev.is_connected(),
                    d.routing_table().len(),
                    dev.announcements()
                ),
                serde_json::json!({"node": d.id().to_string(), "connected": dev.is_connected(),
                    "nodes": d.routing_table().len(), "announcements": dev.announcements()}),
            );
        }
        Some(other) => out.say(
            "error",
            format!("unknown command `{other}`; {HELP}"),
            serde_json::json!({"error": format!("unknown command `{other}`")}),
        ),
    }
    true
}
