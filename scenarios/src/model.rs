//! The scenario file format (TOML): topology, actors, a timeline of steps and checks.
//! Unknown keys are errors in the fixed tables; actors, steps and checks carry their
//! own keys, validated when they are used.

use netsim::LinkSpec;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    pub scenario: Header,
    /// Parameter sweep: every combination is one case; `${key}` is replaced in the file.
    #[serde(default)]
    pub matrix: toml::Table,
    #[serde(default)]
    pub nat: Vec<NatSpec>,
    #[serde(default)]
    pub lan: Vec<LanSpec>,
    #[serde(default)]
    pub gateway: Vec<GatewaySpec>,
    #[serde(default)]
    pub host: Vec<HostSpec>,
    #[serde(default)]
    pub actor: Vec<ActorSpec>,
    #[serde(default)]
    pub step: Vec<StepSpec>,
    #[serde(default)]
    pub check: Vec<CheckSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub name: String,
    #[serde(default)]
    pub about: String,
    /// Default seed when the run does not choose seeds.
    #[serde(default = "one")]
    pub seed: u64,
    /// Simulated time the scenario runs for.
    pub duration: String,
    /// Write a pcap per host.
    #[serde(default)]
    pub capture: bool,
    /// Tags: `jamisim run @TAG` runs every scenario with that tag. A scenario tagged
    /// with one of [`OPT_IN_TAGS`] runs only when named or when its tag is asked for.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// Tags of scenarios that a suite or a bare `jamisim run` leaves out: `large` cases take
/// minutes each (the 10,000-node DHT), too long for the default run and for CI.
pub const OPT_IN_TAGS: &[&str] = &["large"];

impl Header {
    /// Whether a run of its whole suite leaves this scenario out.
    pub fn opt_in(&self) -> bool {
        self.tags.iter().any(|t| OPT_IN_TAGS.contains(&t.as_str()))
    }
}

fn one() -> u64 {
    1
}
fn yes() -> bool {
    true
}

/// A link: a preset name or a table of overrides.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum LinkSel {
    Preset(String),
    Spec(LinkSpec),
}

impl LinkSel {
    pub fn spec(&self) -> LinkSpec {
        match self {
            LinkSel::Preset(p) => LinkSpec {
                preset: Some(p.clone()),
                ..Default::default()
            },
            LinkSel::Spec(s) => s.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatSpec {
    pub name: String,
    /// `eim-apdf`-style code, a classic name (`symmetric`...), or `none` for no NAT.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub hairpin: bool,
    #[serde(default = "yes")]
    pub port_preservation: bool,
    pub behind: Option<String>,
    pub link: Option<LinkSel>,
    pub udp_lifetime: Option<String>,
    /// What the box does with an unsolicited inbound SYN: `drop` (default), `rst`, or
    /// `refuse` (RFC 5382 REQ-4: hold 6 s, then refuse unless the inside opened it).
    pub unsolicited_syn: Option<String>,
    /// Expand into this many NATs; `{i}` in the name becomes 0..count.
    pub count: Option<usize>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LanSpec {
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySpec {
    pub name: String,
    /// `vpn` or `tor`.
    pub kind: String,
    /// Extra one-way delay range through the gateway, e.g. ["30ms", "120ms"].
    pub delay: Option<[String; 2]>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSpec {
    pub name: String,
    /// A NAT or LAN name; the internet when absent.
    pub behind: Option<String>,
    /// A VPN or Tor gateway all traffic goes through.
    pub via: Option<String>,
    pub link: Option<LinkSel>,
    /// IPv4 addresses on the interface (a STUN server for RFC 5780 needs 2).
    #[serde(default = "one_usize")]
    pub addrs: usize,
    #[serde(default)]
    pub ipv6: bool,
    /// Expand into this many hosts; `{i}` and `{i%K}` are substituted in name and behind.
    pub count: Option<usize>,
}

fn one_usize() -> usize {
    1
}

/// A program on a host: `run` names it, the other keys are its settings.
#[derive(Debug, Clone, Deserialize)]
pub struct ActorSpec {
    pub host: String,
    pub run: String,
    pub count: Option<usize>,
    #[serde(flatten)]
    pub params: toml::Table,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StepSpec {
    pub at: String,
    #[serde(rename = "do")]
    pub action: String,
    #[serde(flatten)]
    pub params: toml::Table,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CheckSpec {
    pub what: String,
    #[serde(flatten)]
    pub params: toml::Table,
}

/// Typed access to the free-form keys of actors, steps and checks, with errors that
/// name the key.
pub struct Params<'a> {
    pub ctx: String,
    pub t: &'a toml::Table,
}

impl<'a> Params<'a> {
    pub fn new(ctx: impl Into<String>, t: &'a toml::Table) -> Self {
        Params { ctx: ctx.into(), t }
    }
    pub fn str(&self, k: &str) -> anyhow::Result<&'a str> {
        self.opt_str(k)?
            .ok_or_else(|| anyhow::anyhow!("{}: missing `{k}`", self.ctx))
    }
    pub fn opt_str(&self, k: &str) -> anyhow::Result<Option<&'a str>> {
        match self.t.get(k) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s)),
            Some(v) => anyhow::bail!("{}: `{k}` must be a string, not {v}", self.ctx),
        }
    }
    pub fn int(&self, k: &str, default: i64) -> anyhow::Result<i64> {
        match self.t.get(k) {
            None => Ok(default),
            Some(toml::Value::Integer(i)) => Ok(*i),
            Some(v) => anyhow::bail!("{}: `{k}` must be an integer, not {v}", self.ctx),
        }
    }
    pub fn float(&self, k: &str, default: f64) -> anyhow::Result<f64> {
        match self.t.get(k) {
            None => Ok(default),
            Some(toml::Value::Float(f)) => Ok(*f),
            Some(toml::Value::Integer(i)) => Ok(*i as f64),
            Some(v) => anyhow::bail!("{}: `{k}` must be a number, not {v}", self.ctx),
        }
    }
    pub fn bool(&self, k: &str, default: bool) -> anyhow::Result<bool> {
        match self.t.get(k) {
            None => Ok(default),
            Some(toml::Value::Boolean(b)) => Ok(*b),
            Some(v) => anyhow::bail!("{}: `{k}` must be true or false, not {v}", self.ctx),
        }
    }
    pub fn duration(&self, k: &str, default: &str) -> anyhow::Result<std::time::Duration> {
        let s = self.opt_str(k)?.unwrap_or(default);
        netsim::parse_duration(s).map_err(|e| anyhow::anyhow!("{}: `{k}`: {e}", self.ctx))
    }
    pub fn opt_duration(&self, k: &str) -> anyhow::Result<Option<std::time::Duration>> {
        self.opt_str(k)?
            .map(|s| {
                netsim::parse_duration(s).map_err(|e| anyhow::anyhow!("{}: `{k}`: {e}", self.ctx))
            })
            .transpose()
    }
    pub fn port(&self, k: &str, default: u16) -> anyhow::Result<u16> {
        u16::try_from(self.int(k, default.into())?)
            .map_err(|_| anyhow::anyhow!("{}: `{k}` is not a port number", self.ctx))
    }
    pub fn strs(&self, k: &str) -> anyhow::Result<Vec<&'a str>> {
        match self.t.get(k) {
            None => Ok(Vec::new()),
            Some(toml::Value::String(s)) => Ok(vec![s.as_str()]),
            Some(toml::Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str()
                        .ok_or_else(|| anyhow::anyhow!("{}: `{k}` must list strings", self.ctx))
                })
                .collect(),
            Some(v) => anyhow::bail!("{}: `{k}` must be a list of strings, not {v}", self.ctx),
        }
    }
    /// Fail on keys the caller does not know (typos should not pass silently).
    pub fn only(&self, known: &[&str]) -> anyhow::Result<()> {
        for k in self.t.keys() {
            if !known.contains(&k.as_str()) {
                anyhow::bail!(
                    "{}: unknown key `{k}` (known: {})",
                    self.ctx,
                    known.join(", ")
                );
            }
        }
        Ok(())
    }
}
