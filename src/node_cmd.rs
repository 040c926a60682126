//! `jamisim node dht`: our DHT node on a real UDP socket, driven from stdin with the
//! command letters of OpenDHT's `dhtnode` where both support them, and `--json` for
//! scripts (one JSON object per line).

use anyhow::{bail, Context, Result};
use node::dht::engine::{Config, Event, OpId};
use node::dht::secure::SecureDht;
use node::dht::{Body, InfoHash, Value, ValueData};
use node::driver::{unix_ms, UdpDriver};
use node::identity::NodeIdentity;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::collections::BTreeMap;
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

/// Options of `jamisim node dht`.
pub struct DhtNodeOpts {
    pub port: u16,
    pub bind: std::net::IpAddr,
    pub bootstrap: Vec<SocketAddr>,
    pub identity: Option<std::path::PathBuf>,
    pub json: bool,
    /// Reach the DHT through this proxy (`host:port`) instead of joining it over UDP.
    pub proxy: Option<String>,
}

/// A key from its text the way dhtnode reads it: 40 hex digits, or the SHA-1 of the text.
pub(crate) fn key_of(s: &str) -> InfoHash {
    s.parse().unwrap_or_else(|_| InfoHash::get(s))
}

/// Load `DIR/dht.key` + `DIR/dht.crt`, creating what is missing the way `dhtnode -i`
/// does (an RSA-4096 key certified by a fresh EC CA).
pub(crate) fn load_identity(dir: &Path, rng: &mut ChaCha20Rng) -> Result<NodeIdentity> {
    let now = unix_ms() / 1000;
    NodeIdentity::load_or_create(dir, node::crypto::DEFAULT_RSA_BITS, now, rng)
        .map_err(|e| anyhow::anyhow!("identity in {}: {e}", dir.display()))
}

/// Stdin's lines, read on a thread so the node's loop can poll them between turns.
pub(crate) fn stdin_lines() -> mpsc::Receiver<String> {
    let (tx, lines) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    lines
}

pub(crate) struct Printer {
    pub(crate) json: bool,
}

impl Printer {
    pub(crate) fn say(&self, kind: &str, text: String, fields: serde_json::Value) {
        if self.json {
            let mut obj = serde_json::json!({ "event": kind });
            if let (Some(o), serde_json::Value::Object(f)) = (obj.as_object_mut(), fields) {
                o.extend(f);
            }
            println!("{obj}");
        } else {
            println!("{text}");
        }
    }
}

pub(crate) fn value_json(v: &Value) -> serde_json::Value {
    match &v.data {
        ValueData::Plain(b) => {
            serde_json::json!({"id": format!("{:x}", v.id), "type": b.type_id, "data": hex(&b.data)})
        }
        ValueData::Signed(s) => {
            serde_json::json!({"id": format!("{:x}", v.id), "type": s.body.type_id, "seq": s.seq,
            "owner": node::crypto::hex(&node::crypto::short_id(&s.owner)), "data": hex(&s.body.data),
            "to": s.to.map(|t| t.to_string())})
        }
        ValueData::Encrypted(c) => {
            serde_json::json!({"id": format!("{:x}", v.id), "encrypted_bytes": c.len()})
        }
    }
}

fn hex(b: &[u8]) -> String {
    node::crypto::hex(b)
}

/// What `p`, `s` and `e` put.
pub(crate) enum PutKind {
    Plain,
    Signed,
    /// For the owner of this public key id.
    Encrypted(InfoHash),
}

/// A parsed `p <key> <text>`, `s <key> <text>` or `e <key> <to> <text>` (shared by the
/// UDP node and proxy-client mode).
pub(crate) struct PutCmd {
    pub(crate) key: InfoHash,
    pub(crate) kind: PutKind,
    pub(crate) body: Body,
    /// A random value id, as dhtnode picks.
    pub(crate) id: u64,
}

impl PutCmd {
    pub(crate) fn parse<'a>(
        c: &str,
        key: &str,
        mut words: impl Iterator<Item = &'a str>,
        has_identity: bool,
        rng: &mut ChaCha20Rng,
    ) -> Result<PutCmd> {
        let kind = match c {
            "e" => match words.next().map(|t| t.parse::<InfoHash>()) {
                Some(Ok(to)) => PutKind::Encrypted(to),
                _ => bail!("usage: e <key> <public key id (40 hex)> <text>"),
            },
            "s" => PutKind::Signed,
            _ => PutKind::Plain,
        };
        if !matches!(kind, PutKind::Plain) && !has_identity {
            bail!("`{c}` needs --identity DIR");
        }
        let text: Vec<&str> = words.collect();
        Ok(PutCmd {
            key: key_of(key),
            kind,
            body: Body {
                type_id: 0,
                data: text.join(" ").into_bytes(),
                utype: String::new(),
            },
            id: rng.random::<u64>().max(1),
        })
    }

    pub(crate) fn plain_value(self) -> Value {
        Value {
            id: self.id,
            data: ValueData::Plain(self.body),
            priority: 0,
        }
    }

    /// The `putting` line, once the put has its op.
    pub(crate) fn say_putting(out: &Printer, op: u64, key: InfoHash, id: u64) {
        out.say(
            "putting",
            format!("Putting value {id:x} at {key}"),
            serde_json::json!({"op": op, "key": key.to_string(), "id": format!("{id:x}")}),
        );
    }
}

/// Run until `x` or end of input.
pub fn run(opts: DhtNodeOpts) -> Result<()> {
    let mut seed = [0u8; 32];
    rand::rng().fill(&mut seed);
    let mut rng = ChaCha20Rng::from_seed(seed);
    if let Some(proxy) = &opts.proxy {
        return crate::node_proxy_cmd::run(&opts, proxy, rng);
    }
    let identity = match &opts.identity {
        Some(dir) => Some(load_identity(dir, &mut rng)?),
        None => None,
    };
    // With an identity the node id derives from the key, as in OpenDHT's SecureDht.
    let dht = SecureDht::new(
        Config::verifying(InfoHash(rng.random()), rng.random()),
        identity,
        unix_ms(),
    );
    let id = dht.id();
    let mut d = UdpDriver::bind(dht, SocketAddr::new(opts.bind, opts.port))
        .with_context(|| format!("binding {}:{}", opts.bind, opts.port))?;
    let out = Printer { json: opts.json };
    let local = d.local_addr()?;
    out.say(
        "started",
        format!("OpenDHT-compatible node {id} running on {local}"),
        serde_json::json!({"id": id.to_string(), "addr": local.to_string(),
            "public_key_id": d.dht.public_key_id().map(|k| k.to_string())}),
    );
    if let Some(k) = d.dht.public_key_id() {
        out.say(
            "public_key_id",
            format!("Public key ID {k}"),
            serde_json::json!({"public_key_id": k.to_string()}),
        );
    }
    for b in &opts.bootstrap {
        d.dht.bootstrap(unix_ms(), *b);
    }
    let lines = stdin_lines();
    let mut ops: BTreeMap<OpId, (&'static str, InfoHash)> = BTreeMap::new();
    loop {
        d.turn(Duration::from_millis(50), &mut |_, e| report(&out, &ops, e))?;
        match lines.try_recv() {
            Ok(line) => {
                if !command(&mut d.dht, &line, &out, &mut rng, &mut ops)? {
                    return Ok(());
                }
            }
            Err(mpsc::TryRecvError::Empty) => {}
            Err(mpsc::TryRecvError::Disconnected) => return Ok(()),
        }
    }
}

fn report(out: &Printer, ops: &BTreeMap<OpId, (&'static str, InfoHash)>, e: Event) {
    match e {
        Event::Connected => out.say("connected", "Connected to the DHT".into(), serde_json::json!({})),
        Event::Values { op, key, values } => {
            let what = ops.get(&op).map(|o| o.0).unwrap_or("get");
            for v in &values {
                let j = value_json(v);
                out.say("value", format!("{what} {key}: {j}"), serde_json::json!({"op": op, "key": key.to_string(), "value": j}));
            }
        }
        Event::Expired { op, key, ids } => {
            out.say("expired", format!("expired at {key}: {ids:x?}"), serde_json::json!({"op": op, "key": key.to_string(), "ids": ids}))
        }
        Event::GetDone { op, key, nodes_answered, hops } => out.say(
            "get_done",
            format!("Get: completed for {key} ({nodes_answered} nodes answered, {hops} rounds)"),
            serde_json::json!({"op": op, "key": key.to_string(), "nodes": nodes_answered, "hops": hops}),
        ),
        Event::Failed { op, key, reason } => out.say(
            "failed",
            format!("Operation {op} at {key} failed: {reason}"),
            serde_json::json!({"op": op, "key": key.to_string(), "reason": reason}),
        ),
        Event::PutDone { op, key, stored_on } => out.say(
            "put_done",
            format!("Put: {} for {key} (stored on {stored_on} nodes)", if stored_on > 0 { "success" } else { "failure" }),
            serde_json::json!({"op": op, "key": key.to_string(), "stored_on": stored_on}),
        ),
    }
}

/// One command line; false means quit.
fn command(
    dht: &mut SecureDht,
    line: &str,
    out: &Printer,
    rng: &mut ChaCha20Rng,
    ops: &mut BTreeMap<OpId, (&'static str, InfoHash)>,
) -> Result<bool> {
    let mut words = line.split_whitespace();
    let now = unix_ms();
    match (words.next(), words.next()) {
        (None, _) => {}
        (Some("x" | "q" | "quit"), _) => return Ok(false),
        (Some("h" | "help"), _) => {
            println!("g <key>  get | p <key> <text>  put | s <key> <text>  signed put | e <key> <to> <text>  put encrypted for public key id <to> (s, e need --identity)\nl <key>  listen | b <ip:port>  bootstrap | ll  node info | lr  routing table | la  public addresses | x  quit")
        }
        (Some("g"), Some(k)) => {
            let key = key_of(k);
            let op = dht.get(now, key);
            ops.insert(op, ("get", key));
        }
        (Some("l"), Some(k)) => {
            let key = key_of(k);
            let op = dht.listen(now, key);
            ops.insert(op, ("listen", key));
            out.say(
                "listening",
                format!("Listening at {key}, token: {op}"),
                serde_json::json!({"op": op, "key": key.to_string()}),
            );
        }
        (Some(c @ ("p" | "s" | "e")), Some(k)) => {
            let put = PutCmd::parse(c, k, words, dht.identity().is_some(), rng)?;
            let (key, id) = (put.key, put.id);
            let op = match put.kind {
                PutKind::Encrypted(to) => dht.put_encrypted(now, key, to, id, put.body),
                PutKind::Signed => dht.put_signed(now, key, id, put.body),
                PutKind::Plain => dht.put(now, key, put.plain_value()),
            };
            ops.insert(op, ("put", key));
            PutCmd::say_putting(out, op, key, id);
        }
        (Some("b"), Some(a)) => match a.parse::<SocketAddr>() {
            Ok(addr) => dht.bootstrap(now, addr),
            Err(_) => out.say(
                "error",
                format!("not an ip:port: {a}"),
                serde_json::json!({"error": format!("not an ip:port: {a}")}),
            ),
        },
        (Some("ll"), _) => {
            let s = &dht.stats;
            out.say(
                "info",
                format!("node {} | {} nodes in the routing table | {} keys stored ({} bytes) | {:?}", dht.id(), dht.routing_table().len(), dht.storage().key_count(), dht.storage().total_bytes(), s),
                serde_json::json!({"id": dht.id().to_string(), "nodes": dht.routing_table().len(), "keys": dht.storage().key_count(),
                    "bytes": dht.storage().total_bytes(), "received": s.received, "malformed": s.malformed, "rate_limited": s.rate_limited}),
            );
        }
        (Some("lr"), _) => {
            for n in dht.routing_table().nodes() {
                let good = n.is_good(now);
                out.say("node", format!("Node {} {} [{}]", InfoHash(n.id), n.addr, if good { "good" } else { "dubious" }),
                    serde_json::json!({"id": InfoHash(n.id).to_string(), "addr": n.addr.to_string(), "good": good}));
            }
        }
        (Some("la"), _) => {
            for (addr, votes) in dht.public_addresses() {
                out.say(
                    "public_address",
                    format!("{addr} (reported by {votes} nodes)"),
                    serde_json::json!({"addr": addr.to_string(), "reports": votes}),
                );
            }
        }
        (Some(other), _) => out.say(
            "error",
            format!("unknown or incomplete command `{other}` (h for help)"),
            serde_json::json!({"error": format!("unknown command {other}")}),
        ),
    }
    Ok(true)
}
