//! Building a simulation from a scenario case: topology first (NATs, LANs, gateways,
//! hosts), then the actors (programs on hosts), then the timeline.

use crate::expand::{instantiate, Case};
use crate::model::{LinkSel, Params};
use anyhow::{anyhow, bail, Context, Result};
use netsim::apps::discovery::NatDiscovery;
use netsim::apps::echo::Echo;
use netsim::apps::probe::{Multicast, TcpProbe, UdpProbe};
use netsim::apps::punch::{PunchConfig, PunchPeer, Rendezvous};
use netsim::apps::stun_server::StunServer;
use netsim::apps::traffic::{RateSender, Sink};
use netsim::apps::turn::{TurnConfig, TurnServer};
use netsim::link::parse_rate;
use netsim::{
    AppId, GatewayKind, HostOpts, LinkParams, NatConfig, NatType, NodeId, NodeKind, Sabotage, Sim,
    SimConfig,
};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// How to build the world besides the scenario itself.
#[derive(Clone, Debug, Default)]
pub struct BuildOpts {
    pub capture: bool,
    pub keep_trace: bool,
    pub sabotage: Sabotage,
    /// Most trace text kept in memory; `None` for netsim's default (its last 64 MiB).
    pub trace_keep_bytes: Option<usize>,
    /// Stream the whole trace to this file as the run goes (replays).
    pub trace_file: Option<std::path::PathBuf>,
}

/// A program started on a host.
#[derive(Clone, Debug)]
pub struct Actor {
    pub host: String,
    pub node: NodeId,
    pub app: AppId,
    pub run: String,
}

/// A built simulation and the names the scenario uses for its parts.
pub struct World {
    pub seed: u64,
    pub sim: Sim,
    pub nodes: BTreeMap<String, NodeId>,
    pub actors: Vec<Actor>,
    pub duration: Duration,
    /// Jami identities of hosts, by (host, role): made once per world, from the seed.
    pub jami: BTreeMap<(String, String), crate::jami::JamiIdentity>,
}

/// The actor kinds a scenario may `run`.
pub const ACTOR_KINDS: &[&str] = &[
    "stun-server",
    "turn-server",
    "rendezvous",
    "echo",
    "sink",
    "nat-discovery",
    "punch",
    "udp-sender",
    "udp-probe",
    "tcp-probe",
    "multicast",
    "dht-node",
    "dht-flood",
    "name-server",
    "name-device",
    "proxy-put",
    "jami-device",
];

fn link_params(sel: &Option<LinkSel>, default: &str) -> Result<(LinkParams, LinkParams)> {
    let spec = sel.as_ref().map(|s| s.spec()).unwrap_or_default();
    spec.resolve(default).map_err(|e| anyhow!(e))
}

impl World {
    pub fn build(case: &Case, seed: u64, opts: &BuildOpts) -> Result<World> {
        let spec = &case.spec;
        let duration = netsim::parse_duration(&spec.scenario.duration)
            .map_err(|e| anyhow!("[scenario] duration: {e}"))?;
        let sim = Sim::new(SimConfig {
            seed,
            keep_trace: opts.keep_trace,
            trace: true,
            capture: opts.capture || spec.scenario.capture,
            sabotage: opts.sabotage.clone(),
            trace_keep_bytes: opts
                .trace_keep_bytes
                .unwrap_or(netsim::trace::DEFAULT_KEEP_BYTES),
            trace_file: opts.trace_file.clone(),
        });
        let mut w = World {
            seed,
            sim,
            nodes: BTreeMap::new(),
            actors: Vec::new(),
            duration,
            jami: BTreeMap::new(),
        };
        // A NAT of type "none" is a placeholder: what sits behind it sits where it sits.
        let mut aliases: BTreeMap<String, Option<NodeId>> = BTreeMap::new();
        for lan in &spec.lan {
            let id = w.sim.add_lan(&lan.name);
            w.insert(&lan.name, id)?;
        }
        for n in &spec.nat {
            for i in 0..n.count.unwrap_or(1) {
                let name = instantiate(&n.name, i);
                let behind = match &n.behind {
                    None => None,
                    Some(b) => w
                        .parent(&instantiate(b, i), &aliases)
                        .with_context(|| format!("nat `{name}`"))?,
                };
                if n.kind == "none" {
                    aliases.insert(name, behind);
                    continue;
                }
                let kind: NatType = n
                    .kind
                    .parse()
                    .map_err(|e: String| anyhow!("nat `{name}`: {e}"))?;
                let mut cfg = NatConfig {
                    kind,
                    hairpin: n.hairpin,
                    port_preservation: n.port_preservation,
                    ..NatConfig::default()
                };
                if let Some(l) = &n.udp_lifetime {
                    cfg.udp_lifetime = netsim::parse_duration(l)
                        .map_err(|e| anyhow!("nat `{name}` udp_lifetime: {e}"))?;
                }
                let (up, down) = link_params(&n.link, "internet")
                    .with_context(|| format!("nat `{name}` link"))?;
                let id = w.sim.add_nat(&name, cfg, behind, up, down);
                w.insert(&name, id)?;
            }
        }
        for g in &spec.gateway {
            let kind = match g.kind.as_str() {
                "vpn" => GatewayKind::Vpn,
                "tor" => GatewayKind::Tor,
                k => bail!(
                    "gateway `{}`: kind must be `vpn` or `tor`, not `{k}`",
                    g.name
                ),
            };
            let default = match kind {
                GatewayKind::Vpn => ["10ms", "10ms"],
                GatewayKind::Tor => ["60ms", "250ms"],
            };
            let d = |s: &str| {
                netsim::parse_duration(s).map_err(|e| anyhow!("gateway `{}` delay: {e}", g.name))
            };
            let (lo, hi) = match &g.delay {
                Some([a, b]) => (d(a)?, d(b)?),
                None => (d(default[0])?, d(default[1])?),
            };
            // Tor exits and VPN servers keep a binding per flow and let nothing in unasked.
            let nat = NatConfig {
                kind: "apdm-apdf".parse().map_err(|e: String| anyhow!(e))?,
                ..NatConfig::default()
            };
            let id = w.sim.add_gateway(&g.name, kind, (lo, hi), nat);
            w.insert(&g.name, id)?;
        }
        for h in &spec.host {
            for i in 0..h.count.unwrap_or(1) {
                let name = instantiate(&h.name, i);
                let behind = match &h.behind {
                    None => None,
                    Some(b) => w
                        .parent(&instantiate(b, i), &aliases)
                        .with_context(|| format!("host `{name}`"))?,
                };
                let via = match &h.via {
                    None => None,
                    Some(v) => {
                        let id = w.node(v)?;
                        if !matches!(w.sim.node(id).kind, NodeKind::Gateway(_)) {
                            bail!("host `{name}`: via `{v}` is not a gateway");
                        }
                        Some(id)
                    }
                };
                let (up, down) = link_params(&h.link, "internet")
                    .with_context(|| format!("host `{name}` link"))?;
                if h.addrs == 0 {
                    bail!("host `{name}`: addrs must be at least 1");
                }
                let opts = HostOpts {
                    behind,
                    up,
                    down,
                    extra_addrs: h.addrs - 1,
                    ipv6: h.ipv6,
                    via,
                    capture: false,
                };
                let id = w.sim.add_host(&name, opts);
                w.insert(&name, id)?;
            }
        }
        for (n, a) in spec.actor.iter().enumerate() {
            for i in 0..a.count.unwrap_or(1) {
                let params: toml::Table = a
                    .params
                    .iter()
                    .map(|(k, v)| match v {
                        // `population` names a template over all hosts, not this one.
                        toml::Value::String(s) if k != "population" => {
                            (k.clone(), toml::Value::String(instantiate(s, i)))
                        }
                        toml::Value::Array(a) if k != "population" => (
                            k.clone(),
                            toml::Value::Array(
                                a.iter()
                                    .map(|v| match v {
                                        toml::Value::String(s) => {
                                            toml::Value::String(instantiate(s, i))
                                        }
                                        other => other.clone(),
                                    })
                                    .collect(),
                            ),
                        ),
                        other => (k.clone(), other.clone()),
                    })
                    .collect();
                let host = instantiate(&a.host, i);
                w.add_actor(&host, &a.run, &params)
                    .with_context(|| format!("actor #{} (`{}` on `{host}`)", n + 1, a.run))?;
            }
        }
        Ok(w)
    }

    fn insert(&mut self, name: &str, id: NodeId) -> Result<()> {
        if self.nodes.insert(name.to_string(), id).is_some() {
            bail!("the name `{name}` is used twice");
        }
        Ok(())
    }

    fn parent(
        &self,
        name: &str,
        aliases: &BTreeMap<String, Option<NodeId>>,
    ) -> Result<Option<NodeId>> {
        if let Some(a) = aliases.get(name) {
            return Ok(*a);
        }
        let id = self
            .node(name)
            .with_context(|| "`behind` must name a NAT or LAN defined earlier")?;
        match self.sim.node(id).kind {
            NodeKind::Nat(_) | NodeKind::Lan { .. } => Ok(Some(id)),
            _ => bail!("`{name}` is not a NAT or LAN"),
        }
    }

    pub fn node(&self, name: &str) -> Result<NodeId> {
        self.nodes
            .get(name)
            .copied()
            .ok_or_else(|| anyhow!("no host, NAT, LAN or gateway named `{name}`"))
    }

    pub fn host_node(&self, name: &str) -> Result<NodeId> {
        let id = self.node(name)?;
        if self.sim.host(id).is_none() {
            bail!("`{name}` is not a host");
        }
        Ok(id)
    }

    /// The address others reach a node at: a host's first address, a NAT's WAN
    /// address, a gateway's exit.
    pub fn addr_of(&self, name: &str) -> Result<IpAddr> {
        let id = self.node(name)?;
        Ok(match &self.sim.node(id).kind {
            NodeKind::Host(h) => *h
                .addrs
                .first()
                .ok_or_else(|| anyhow!("`{name}` has no address"))?,
            NodeKind::Nat(n) => IpAddr::V4(n.wan),
            NodeKind::Gateway(g) => g.exit,
            _ => bail!("`{name}` has no address"),
        })
    }

    /// Every address that identifies a node (all of a host's, a NAT's WAN, a gateway's
    /// entry and exit).
    pub fn addrs_of(&self, name: &str) -> Result<Vec<IpAddr>> {
        let id = self.node(name)?;
        Ok(match &self.sim.node(id).kind {
            NodeKind::Host(h) => h.addrs.clone(),
            NodeKind::Nat(n) => vec![IpAddr::V4(n.wan)],
            NodeKind::Gateway(g) => vec![g.entry, g.exit],
            _ => Vec::new(),
        })
    }

    /// The host that owns `ip` (public or private; private addresses are unique per run).
    pub fn host_at(&self, ip: IpAddr) -> Option<NodeId> {
        self.nodes.values().copied().find(|&id| {
            self.sim
                .host(id)
                .map(|h| h.addrs.contains(&ip))
                .unwrap_or(false)
        })
    }

    pub fn actor(&self, host: &str, run: &str) -> Result<&Actor> {
        self.actors
            .iter()
            .find(|a| a.host == host && a.run == run)
            .ok_or_else(|| anyhow!("no `{run}` actor on `{host}`"))
    }

    /// The state of the `run` actor on `host`, typed (for checks).
    pub fn actor_state<T: 'static>(&self, host: &str, run: &str) -> Result<(&Actor, &T)> {
        let a = self.actor(host, run)?;
        let state = self
            .sim
            .app::<T>(a.node, a.app)
            .ok_or_else(|| anyhow!("`{run}` on `{host}` has no state (crashed?)"))?;
        Ok((a, state))
    }

    /// The Jami account of `host` (`role` "" for its own; others for forgers).
    pub fn jami_identity(&mut self, host: &str, role: &str) -> Result<crate::jami::JamiIdentity> {
        let k = (host.to_string(), role.to_string());
        if let Some(j) = self.jami.get(&k) {
            return Ok(j.clone());
        }
        let j = crate::jami::JamiIdentity::derive(self.seed, host, role)
            .with_context(|| format!("Jami identity of `{host}`"))?;
        self.jami.insert(k, j.clone());
        Ok(j)
    }

    /// An actor's `track`: the hosts whose Jami accounts it follows, with their ids.
    fn tracked(&mut self, p: &Params<'_>) -> Result<Vec<(String, node::dht::InfoHash)>> {
        let mut out = Vec::new();
        for t in p.strs("track")? {
            self.host_node(t).context("`track`")?;
            out.push((t.to_string(), self.jami_identity(t, "")?.account_id()));
        }
        Ok(out)
    }

    fn sock(&self, host: &str, port: u16) -> Result<SocketAddr> {
        Ok(SocketAddr::new(self.addr_of(host)?, port))
    }

    fn add_actor(&mut self, host: &str, run: &str, t: &toml::Table) -> Result<()> {
        let p = Params::new(format!("`{run}` on `{host}`"), t);
        let node = self.host_node(host)?;
        let port = |k: &str, d: i64| -> Result<u16> {
            u16::try_from(p.int(k, d)?).map_err(|_| anyhow!("`{k}` is not a port number"))
        };
        let app = match run {
            "stun-server" => {
                p.only(&["port", "alt_port"])?;
                let (a, b) = (port("port", 3478)?, port("alt_port", 3479)?);
                self.sim
                    .add_app(node, move || Box::new(StunServer::new(a, b)))
            }
            "turn-server" => {
                p.only(&["port", "user", "password", "realm", "lifetime"])?;
                let cfg = TurnConfig {
                    port: port("port", 3478)?,
                    realm: p.opt_str("realm")?.unwrap_or("netsim").to_string(),
                    users: vec![(
                        p.opt_str("user")?.unwrap_or("user").to_string(),
                        p.opt_str("password")?.unwrap_or("pass").to_string(),
                    )],
                    lifetime: p.duration("lifetime", "600s")?,
                    ..TurnConfig::default()
                };
                self.sim
                    .add_app(node, move || Box::new(TurnServer::new(cfg.clone())))
            }
            "rendezvous" => {
                p.only(&["port"])?;
                let port = port("port", 7000)?;
                self.sim
                    .add_app(node, move || Box::new(Rendezvous::new(port)))
            }
            "echo" => {
                p.only(&["port"])?;
                let port = port("port", 7)?;
                self.sim.add_app(node, move || Box::new(Echo::new(port)))
            }
            "sink" => {
                p.only(&["port"])?;
                let port = port("port", 9000)?;
                self.sim.add_app(node, move || Box::new(Sink::new(port)))
            }
            "nat-discovery" => {
                p.only(&["server", "port"])?;
                let server = self.sock(p.str("server")?, port("port", 3478)?)?;
                self.sim
                    .add_app(node, move || Box::new(NatDiscovery::new(server)))
            }
            "punch" => {
                p.only(&[
                    "pair",
                    "rendezvous",
                    "stun",
                    "turn",
                    "check_for",
                    "interval",
                    "user",
                    "password",
                ])?;
                let turn = match p.opt_str("turn")? {
                    Some(t) => Some((
                        self.sock(t, 3478)?,
                        p.opt_str("user")?.unwrap_or("user").to_string(),
                        p.opt_str("password")?.unwrap_or("pass").to_string(),
                    )),
                    None => None,
                };
                let cfg = PunchConfig {
                    pair: p.str("pair")?.to_string(),
                    rendezvous: self.sock(p.str("rendezvous")?, 7000)?,
                    stun: self.sock(p.str("stun")?, 3478)?,
                    turn,
                    check_interval: p.duration("interval", "50ms")?,
                    check_for: p.duration("check_for", "8s")?,
                };
                self.sim
                    .add_app(node, move || Box::new(PunchPeer::new(cfg.clone())))
            }
            "udp-sender" => {
                p.only(&["to", "port", "rate", "size", "start", "duration"])?;
                let to = self.sock(p.str("to")?, port("port", 9000)?)?;
                let rate = parse_rate(p.str("rate")?).map_err(|e| anyhow!(e))?;
                let size =
                    usize::try_from(p.int("size", 1172)?).map_err(|_| anyhow!("bad `size`"))?;
                let (start, dur) = (p.duration("start", "1s")?, p.duration("duration", "10s")?);
                self.sim.add_app(node, move || {
                    Box::new(RateSender::new(to, rate, size, start, dur))
                })
            }
            "udp-probe" => {
                p.only(&["to", "port", "datagrams"])?;
                let to = self.sock(p.str("to")?, port("port", 7)?)?;
                let count = u32::try_from(p.int("datagrams", 20)?)
                    .map_err(|_| anyhow!("bad `datagrams`"))?;
                self.sim
                    .add_app(node, move || Box::new(UdpProbe::new(to, count)))
            }
            "tcp-probe" => {
                p.only(&["to", "port", "bytes"])?;
                let to = self.sock(p.str("to")?, port("port", 7)?)?;
                let bytes = usize::try_from(p.int("bytes", 100_000)?)
                    .map_err(|_| anyhow!("bad `bytes`"))?;
                self.sim
                    .add_app(node, move || Box::new(TcpProbe::new(to, bytes)))
            }
            "multicast" => {
                p.only(&["group", "port", "announce"])?;
                let group: IpAddr = p
                    .opt_str("group")?
                    .unwrap_or("239.255.42.99")
                    .parse()
                    .context("`group`")?;
                if !group.is_multicast() {
                    bail!("`group` {group} is not a multicast address");
                }
                let (port, announce) = (port("port", 4242)?, p.bool("announce", false)?);
                self.sim.add_app(node, move || {
                    Box::new(Multicast::new(group, port, announce))
                })
            }
            "dht-node" => {
                p.only(&[
                    "port",
                    "bootstrap",
                    "put_at",
                    "get_at",
                    "get",
                    "get_random",
                    "population",
                    "population_count",
                    "proxy_port",
                    "track",
                    "track_at",
                    "jami",
                ])?;
                let port = port("port", 4222)?;
                let mut bootstrap = Vec::new();
                for b in p.strs("bootstrap")? {
                    bootstrap.push(self.sock(b, port)?);
                }
                let mut get_keys: Vec<String> =
                    p.strs("get")?.iter().map(|s| s.to_string()).collect();
                let random = usize::try_from(p.int("get_random", 0)?)
                    .map_err(|_| anyhow!("bad `get_random`"))?;
                if random > 0 {
                    let pop = p.str("population")?;
                    let n = usize::try_from(p.int("population_count", 1)?)
                        .map_err(|_| anyhow!("bad `population_count`"))?;
                    // Which keys a host asks for: drawn from the scenario seed and the host.
                    let mut h: u64 = self.seed ^ 0x9e37_79b9_7f4a_7c15;
                    for b in host.bytes() {
                        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
                    }
                    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(h);
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
                let opt_dur = |k: &str| -> Result<Option<Duration>> {
                    p.opt_str(k)?
                        .map(|s| netsim::parse_duration(s).map_err(|e| anyhow!("`{k}`: {e}")))
                        .transpose()
                };
                let track = self.tracked(&p)?;
                let jami = match p.bool("jami", false)? {
                    true => Some(self.jami_identity(host, "")?),
                    false => None,
                };
                let w = crate::glue::DhtWorkload {
                    jami,
                    track,
                    track_at: p.duration("track_at", "1s")?,
                    port,
                    bootstrap,
                    put_at: opt_dur("put_at")?,
                    get_at: opt_dur("get_at")?,
                    get_keys,
                    proxy_port: match p.int("proxy_port", 0)? {
                        0 => None,
                        v => Some(u16::try_from(v).map_err(|_| anyhow!("bad `proxy_port`"))?),
                    },
                };
                self.sim
                    .add_app(node, move || Box::new(crate::glue::DhtApp::new(w.clone())))
            }
            "dht-flood" => {
                p.only(&["to", "port", "rate", "from", "until"])?;
                let to = self.sock(p.str("to")?, port("port", 4222)?)?;
                let rate =
                    u32::try_from(p.int("rate", 10_000)?).map_err(|_| anyhow!("bad `rate`"))?;
                let (from, until) = (p.duration("from", "5s")?, p.duration("until", "25s")?);
                self.sim.add_app(node, move || {
                    Box::new(crate::glue::DhtFlood::new(to, rate, from, until))
                })
            }
            "proxy-put" => {
                p.only(&["proxy", "port", "put_at"])?;
                let proxy = self.sock(p.str("proxy")?, port("port", 8000)?)?;
                let at = p.duration("put_at", "10s")?;
                self.sim.add_app(node, move || {
                    Box::new(crate::glue::ProxyPutApp::new(proxy, at))
                })
            }
            "jami-device" => {
                p.only(&["proxy", "port", "announce_at", "forge", "track", "track_at"])?;
                let track = self.tracked(&p)?;
                let track_at = p.duration("track_at", "20s")?;
                let proxy = self.sock(p.str("proxy")?, port("port", 8000)?)?;
                let at = p.duration("announce_at", "10s")?;
                let forge: crate::jami::Forgery = p
                    .opt_str("forge")?
                    .unwrap_or("none")
                    .parse()
                    .map_err(|e: String| anyhow!(e))?;
                let me = self.jami_identity(host, "")?;
                let other = match forge {
                    crate::jami::Forgery::None => me.clone(),
                    _ => self.jami_identity(host, "forger")?,
                };
                let puts = crate::jami::device_puts(&me, &other, forge)?;
                self.sim.add_app(node, move || {
                    Box::new(
                        crate::jami::JamiDeviceApp::new(proxy, at, puts.clone())
                            .tracking(track.clone(), track_at),
                    )
                })
            }
            "name-server" => {
                p.only(&["port", "persist"])?;
                let (port, persist) = (port("port", 80)?, p.bool("persist", true)?);
                self.sim.add_app(node, move || {
                    Box::new(crate::names::NameServerApp::new(port, persist))
                })
            }
            "name-device" => {
                p.only(&["server", "port", "name", "register_at", "lookup_at"])?;
                let server = self.sock(p.str("server")?, port("port", 80)?)?;
                let name = p.str("name")?.to_string();
                let register_at = match p.opt_str("register_at")? {
                    Some(s) => {
                        Some(netsim::parse_duration(s).map_err(|e| anyhow!("`register_at`: {e}"))?)
                    }
                    None => None,
                };
                let mut lookup_at = Vec::new();
                for s in p.strs("lookup_at")? {
                    lookup_at
                        .push(netsim::parse_duration(s).map_err(|e| anyhow!("`lookup_at`: {e}"))?);
                }
                // The device's account key: from the scenario seed and the host name.
                let mut key_seed: u64 = self.seed ^ 0x6e61_6d65;
                for b in host.bytes() {
                    key_seed = (key_seed ^ b as u64).wrapping_mul(0x100_0000_01b3);
                }
                self.sim.add_app(node, move || {
                    Box::new(crate::names::NameDeviceApp::new(
                        server,
                        name.clone(),
                        register_at,
                        lookup_at.clone(),
                        key_seed,
                    ))
                })
            }
            other => bail!(
                "unknown actor `{other}` (known: {})",
                ACTOR_KINDS.join(", ")
            ),
        };
        self.actors.push(Actor {
            host: host.to_string(),
            node,
            app,
            run: run.to_string(),
        });
        Ok(())
    }
}
