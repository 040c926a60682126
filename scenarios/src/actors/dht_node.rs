//! `dht-node`: our OpenDHT node (SecureDht) on UDP `port`, bootstrapping from
//! `bootstrap`; puts its value at `put_at`, gets `get` (or `get_random` keys drawn from
//! `population`) at `get_at`; optionally serves a DHT proxy on `proxy_port`, runs as a Jami
//! device (`jami`) and tracks the presence of the accounts of `track` from `track_at`.
//! A Jami device runs its services too: the connection manager (ICE-TCP with
//! server-reflexive candidates from the `stun` host's STUN server, and simultaneous-open
//! ones unless `tcp_so = false`), connecting at `connect_at` to the accounts of the
//! `connect` hosts and sending them the text `message` once connected (or at
//! `message_at`); `contacts_only` refuses requests from non-contacts. With `turn` (the
//! host of a `turn-server`; `turn_user`, `turn_password`, `turn_realm` default to jamid's
//! `ring`) each connection also offers a TCP relay candidate, as jamid's TURN keys do.
//! With `proxy` (`"<host>"` or `"<host>:<port>"`, port 8000 by default: a `dht-node`
//! with `proxy_port`) the device reaches the DHT only through that OpenDHT proxy over
//! TCP (no `bootstrap`), as jamid with `Account.proxyEnabled` or behind Tor does.

use super::ActorKind;
use crate::expand::instantiate;
use crate::model::Params;
use crate::world::World;
use anyhow::{anyhow, bail, Context, Result};
use netsim::{AppId, NodeId};

inventory::submit! {
    ActorKind {
        name: "dht-node",
        params: &[
            "port",
            "bootstrap",
            "put_at",
            "get_at",
            "get",
            "get_random",
            "population",
            "population_count",
            "proxy_port",
            "proxy",
            "track",
            "track_at",
            "jami",
            "stun",
            "connect",
            "connect_at",
            "message",
            "message_at",
            "contacts_only",
            "tcp_so",
            "turn",
            "turn_user",
            "turn_password",
            "turn_realm",
        ],
        build,
    }
}

/// The keys of the Jami services.
const SERVICE_KEYS: [&str; 11] = [
    "stun",
    "turn",
    "turn_user",
    "turn_password",
    "turn_realm",
    "connect",
    "connect_at",
    "message",
    "message_at",
    "contacts_only",
    "tcp_so",
];

fn build(w: &mut World, host: &str, node: NodeId, p: &Params<'_>) -> Result<AppId> {
    let port = p.port("port", 4222)?;
    let proxy = match p.opt_str("proxy")? {
        Some(spec) => {
            let (h, port) = match spec.split_once(':') {
                Some((h, n)) => (
                    h,
                    n.parse::<u16>()
                        .map_err(|_| anyhow!("`proxy` port `{n}` is no port"))?,
                ),
                None => (spec, 8000),
            };
            if !p.strs("bootstrap")?.is_empty() {
                bail!("`proxy` and `bootstrap` exclude each other: through a proxy there is no UDP node");
            }
            Some(w.sock(h, port)?)
        }
        None => None,
    };
    let mut bootstrap = Vec::new();
    for b in p.strs("bootstrap")? {
        bootstrap.push(w.sock(b, port)?);
    }
    let mut get_keys: Vec<String> = p.strs("get")?.iter().map(|s| s.to_string()).collect();
    let random =
        usize::try_from(p.int("get_random", 0)?).map_err(|_| anyhow!("bad `get_random`"))?;
    if random > 0 {
        let pop = p.str("population")?;
        let n = usize::try_from(p.int("population_count", 1)?)
            .map_err(|_| anyhow!("bad `population_count`"))?;
        // Which keys a host asks for: drawn from the scenario seed and the host.
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(
            w.host_seed(host, 0x9e37_79b9_7f4a_7c15),
        );
        let mut tries = 0;
        while get_keys.len() < random && n > 1 {
            tries += 1;
            if tries > 100 * random {
                bail!("`population` `{pop}` gives no host other than `{host}`");
            }
            let j = rand::RngExt::random_range(&mut rng, 0..n);
            let name = instantiate(pop, j);
            if name != host {
                get_keys.push(name);
            }
        }
    }
    let track = w.tracked(p)?;
    let jami = match p.bool("jami", false)? {
        true => Some(w.jami_identity(host, "")?),
        false => None,
    };
    let mut connect = Vec::new();
    for h in p.strs("connect")? {
        w.host_node(h).context("`connect`")?;
        connect.push((h.to_string(), w.jami_identity(h, "")?.account_id()));
    }
    let stun = match p.opt_str("stun")? {
        Some(h) => Some(w.sock(h, 3478)?),
        None => None,
    };
    let turn = match p.opt_str("turn")? {
        Some(h) => {
            let account = node::connect::turn::TurnAccountConfig {
                enable: true,
                server: h.to_string(),
                username: p.opt_str("turn_user")?.unwrap_or("ring").to_string(),
                password: p.opt_str("turn_password")?.unwrap_or("ring").to_string(),
                realm: p.opt_str("turn_realm")?.unwrap_or("ring").to_string(),
            };
            Some(node::connect::turn::ClientConfig::from_account(
                &account,
                w.sock(h, node::connect::turn::config::DEFAULT_PORT)?,
                node::connect::turn::Transport::Tcp,
                node::connect::turn::Transport::Tcp,
                0,
            ))
        }
        None => None,
    };
    // The services run on a Jami device given any of their keys (the presence-only
    // devices of the other suites stay as they were).
    let wants = SERVICE_KEYS.iter().any(|k| p.t.contains_key(*k));
    if jami.is_none() && wants {
        bail!("`{}` need `jami = true`", SERVICE_KEYS.join("`, `"));
    }
    let services = jami.as_ref().filter(|_| wants).map(|_| -> Result<_> {
        Ok(crate::services::JamiWork {
            stun,
            connect,
            connect_at: p.duration("connect_at", "2s")?,
            message: p.opt_str("message")?.map(str::to_string),
            message_at: p.opt_duration("message_at")?,
            contacts_only: p.bool("contacts_only", false)?,
            tcp_so: p.bool("tcp_so", true)?,
            turn,
        })
    });
    let services = services.transpose()?;
    let wl = crate::glue::DhtWorkload {
        jami,
        services,
        track,
        track_at: p.duration("track_at", "1s")?,
        port,
        bootstrap,
        put_at: p.opt_duration("put_at")?,
        get_at: p.opt_duration("get_at")?,
        get_keys,
        proxy,
        proxy_port: match p.int("proxy_port", 0)? {
            0 => None,
            _ => Some(p.port("proxy_port", 0)?),
        },
    };
    Ok(w.sim
        .add_app(node, move || Box::new(crate::glue::DhtApp::new(wl.clone()))))
}
