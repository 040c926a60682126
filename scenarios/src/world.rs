//! Building a simulation from a scenario case: topology first (NATs, LANs, gateways,
//! hosts), then the actors (programs on hosts), then the timeline.

use crate::expand::{instantiate, Case};
use crate::model::{LinkSel, Params};
use anyhow::{anyhow, bail, Context, Result};
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
                if let Some(p) = &n.unsolicited_syn {
                    cfg.unsolicited_syn = p
                        .parse()
                        .map_err(|e: String| anyhow!("nat `{name}`: {e}"))?;
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
            // A host in a tunnel (VPN, Tor) also owns the address its sockets use inside it.
            NodeKind::Host(h) => h
                .addrs
                .iter()
                .copied()
                .chain(h.tunnel.map(|t| t.inner))
                .collect(),
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
    pub(crate) fn tracked(&mut self, p: &Params<'_>) -> Result<Vec<(String, node::dht::InfoHash)>> {
        let mut out = Vec::new();
        for t in p.strs("track")? {
            self.host_node(t).context("`track`")?;
            out.push((t.to_string(), self.jami_identity(t, "")?.account_id()));
        }
        Ok(out)
    }

    pub(crate) fn sock(&self, host: &str, port: u16) -> Result<SocketAddr> {
        Ok(SocketAddr::new(self.addr_of(host)?, port))
    }

    /// A number drawn from the scenario seed, the host's name and `salt` (what an actor
    /// needs to make its own random choices: keys it asks for, account keys).
    pub(crate) fn host_seed(&self, host: &str, salt: u64) -> u64 {
        host.bytes().fold(self.seed ^ salt, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        })
    }

    fn add_actor(&mut self, host: &str, run: &str, t: &toml::Table) -> Result<()> {
        let p = Params::new(format!("`{run}` on `{host}`"), t);
        let node = self.host_node(host)?;
        let app = crate::actors::build(self, host, node, run, &p)?;
        self.actors.push(Actor {
            host: host.to_string(),
            node,
            app,
            run: run.to_string(),
        });
        Ok(())
    }
}
