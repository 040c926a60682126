//! NAT boxes as RFC 4787 describes them: mapping and filtering behaviour (each
//! endpoint-independent, address-dependent or address-and-port-dependent), port
//! preservation, hairpinning and binding lifetime. IPv6 is not translated: the box acts
//! as a stateful firewall with the same filtering rule (as home routers do).

use crate::packet::Proto;
use crate::time::SimTime;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

/// RFC 4787 behaviour, ordered from most to least permissive so that `max` composes
/// nested NATs.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Behaviour {
    EndpointIndependent,
    AddressDependent,
    AddressAndPortDependent,
}

impl Behaviour {
    pub const ALL: [Behaviour; 3] = [
        Behaviour::EndpointIndependent,
        Behaviour::AddressDependent,
        Behaviour::AddressAndPortDependent,
    ];
    fn code(self) -> &'static str {
        match self {
            Behaviour::EndpointIndependent => "ei",
            Behaviour::AddressDependent => "ad",
            Behaviour::AddressAndPortDependent => "apd",
        }
    }
    fn from_code(s: &str) -> Option<Self> {
        Some(match s {
            "ei" | "endpoint-independent" => Behaviour::EndpointIndependent,
            "ad" | "address-dependent" => Behaviour::AddressDependent,
            "apd" | "address-and-port-dependent" => Behaviour::AddressAndPortDependent,
            _ => return None,
        })
    }
}

/// The externally visible type of a NAT: what a discovery client can measure.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NatType {
    pub mapping: Behaviour,
    pub filtering: Behaviour,
}

impl NatType {
    pub fn all() -> impl Iterator<Item = NatType> {
        Behaviour::ALL.into_iter().flat_map(|m| {
            Behaviour::ALL.into_iter().map(move |f| NatType {
                mapping: m,
                filtering: f,
            })
        })
    }
    /// The combined behaviour of a chain of NATs seen from the innermost host: each
    /// stage can only make mapping and filtering stricter.
    pub fn compose(self, outer: NatType) -> NatType {
        NatType {
            mapping: self.mapping.max(outer.mapping),
            filtering: self.filtering.max(outer.filtering),
        }
    }
}

impl fmt::Display for NatType {
    /// `eim-apdf`: mapping code + "m", filtering code + "f".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}m-{}f", self.mapping.code(), self.filtering.code())
    }
}

impl FromStr for NatType {
    type Err = String;
    /// Accepts `eim-apdf` style codes and the classic names `full-cone`,
    /// `restricted-cone`, `port-restricted-cone`, `symmetric`.
    fn from_str(s: &str) -> Result<Self, String> {
        use Behaviour::*;
        let classic = match s {
            "full-cone" => Some((EndpointIndependent, EndpointIndependent)),
            "restricted-cone" => Some((EndpointIndependent, AddressDependent)),
            "port-restricted-cone" => Some((EndpointIndependent, AddressAndPortDependent)),
            "symmetric" => Some((AddressAndPortDependent, AddressAndPortDependent)),
            _ => None,
        };
        if let Some((m, f)) = classic {
            return Ok(NatType {
                mapping: m,
                filtering: f,
            });
        }
        let err = || format!("NAT type `{s}`: expected e.g. `eim-apdf` or `symmetric`");
        let (m, f) = s.split_once('-').ok_or_else(err)?;
        let m = Behaviour::from_code(m.strip_suffix('m').ok_or_else(err)?).ok_or_else(err)?;
        let f = Behaviour::from_code(f.strip_suffix('f').ok_or_else(err)?).ok_or_else(err)?;
        Ok(NatType {
            mapping: m,
            filtering: f,
        })
    }
}

/// Configuration of one NAT box.
#[derive(Clone, Debug, PartialEq)]
pub struct NatConfig {
    pub kind: NatType,
    /// Hairpinning (RFC 4787 REQ-9): a packet from inside to the box's own external
    /// address is looped back, with the sender's external address as source.
    pub hairpin: bool,
    /// Try to use the internal port as external port for a new mapping.
    pub port_preservation: bool,
    /// Idle time after which a UDP mapping is forgotten (REQ-5 asks for >= 2 min).
    pub udp_lifetime: Duration,
    /// Idle time after which a TCP mapping is forgotten.
    pub tcp_lifetime: Duration,
}

impl Default for NatConfig {
    fn default() -> Self {
        NatConfig {
            kind: NatType {
                mapping: Behaviour::EndpointIndependent,
                filtering: Behaviour::AddressAndPortDependent,
            },
            hairpin: false,
            port_preservation: true,
            udp_lifetime: Duration::from_secs(120),
            tcp_lifetime: Duration::from_secs(7200),
        }
    }
}

/// Which destinations share a mapping, by mapping behaviour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum DstKey {
    Any,
    Ip(IpAddr),
    IpPort(SocketAddr),
}

fn dst_key(b: Behaviour, dst: SocketAddr) -> DstKey {
    match b {
        Behaviour::EndpointIndependent => DstKey::Any,
        Behaviour::AddressDependent => DstKey::Ip(dst.ip()),
        Behaviour::AddressAndPortDependent => DstKey::IpPort(dst),
    }
}

/// One binding of an internal endpoint to an external port.
#[derive(Clone, Debug)]
pub struct Mapping {
    pub proto: Proto,
    pub internal: SocketAddr,
    pub external_port: u16,
    key: DstKey,
    /// Remote endpoints this mapping has sent to: the filter admits replies from them.
    pub sent_to: BTreeSet<SocketAddr>,
    pub last_used: SimTime,
}

/// Why the NAT refused a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatDrop {
    NoMapping,
    Expired,
    Filtered,
    NoHairpin,
    PortsExhausted,
}

impl fmt::Display for NatDrop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NatDrop::NoMapping => "nat: no mapping",
            NatDrop::Expired => "nat: mapping expired",
            NatDrop::Filtered => "nat: filtered",
            NatDrop::NoHairpin => "nat: no hairpinning",
            NatDrop::PortsExhausted => "nat: ports exhausted",
        })
    }
}

/// The translation state of one NAT box (its external IPv4 address is given per call so
/// the state stays independent of addressing).
#[derive(Clone, Debug, Default)]
pub struct NatTable {
    pub config: NatConfig,
    by_key: BTreeMap<(Proto, SocketAddr, DstKey), u16>,
    by_port: BTreeMap<(Proto, u16), Mapping>,
    /// IPv6 pinholes: the firewall half of the box, keyed by internal endpoint.
    pinholes: BTreeMap<(Proto, SocketAddr), Mapping>,
    /// Mappings created so far (for reports).
    pub created: u64,
    /// Deliberately broken model (tests only): the box runs this type while its
    /// `config`, which the oracle and reports read, still says otherwise.
    pub actual_override: Option<NatType>,
    /// Likewise for hairpinning.
    pub actual_hairpin: Option<bool>,
}

/// A new mapping, for the trace.
pub struct NewMapping {
    pub external_port: u16,
}

impl NatTable {
    pub fn new(config: NatConfig) -> Self {
        NatTable {
            config,
            ..Default::default()
        }
    }

    fn kind(&self) -> NatType {
        self.actual_override.unwrap_or(self.config.kind)
    }

    /// Whether the box hairpins (REQ-9), as it actually behaves.
    pub fn hairpin(&self) -> bool {
        self.actual_hairpin.unwrap_or(self.config.hairpin)
    }

    fn lifetime(&self, proto: Proto) -> Duration {
        match proto {
            Proto::Udp => self.config.udp_lifetime,
            Proto::Tcp => self.config.tcp_lifetime,
        }
    }

    /// Translate an outbound packet's source. Returns the external port and whether a
    /// mapping was created.
    pub fn outbound(
        &mut self,
        now: SimTime,
        proto: Proto,
        internal: SocketAddr,
        dst: SocketAddr,
        rng: &mut ChaCha8Rng,
    ) -> Result<(u16, Option<NewMapping>), NatDrop> {
        if internal.is_ipv6() {
            let life = self.lifetime(proto);
            let m = self
                .pinholes
                .entry((proto, internal))
                .or_insert_with(|| Mapping {
                    proto,
                    internal,
                    external_port: internal.port(),
                    key: DstKey::Any,
                    sent_to: BTreeSet::new(),
                    last_used: now,
                });
            if now.since(m.last_used) > life {
                m.sent_to.clear();
            }
            m.sent_to.insert(dst);
            m.last_used = now;
            return Ok((internal.port(), None));
        }
        let key = (proto, internal, dst_key(self.kind().mapping, dst));
        if let Some(&port) = self.by_key.get(&key) {
            let life = self.lifetime(proto);
            let m = self
                .by_port
                .get_mut(&(proto, port))
                .expect("index and table agree");
            if now.since(m.last_used) <= life {
                m.sent_to.insert(dst);
                m.last_used = now; // REQ-6: outbound traffic refreshes
                return Ok((port, None));
            }
            self.by_port.remove(&(proto, port));
            self.by_key.remove(&key);
        }
        let port = self.allocate_port(now, proto, internal.port(), rng)?;
        let mut sent_to = BTreeSet::new();
        sent_to.insert(dst);
        self.by_port.insert(
            (proto, port),
            Mapping {
                proto,
                internal,
                external_port: port,
                key: key.2,
                sent_to,
                last_used: now,
            },
        );
        self.by_key.insert(key, port);
        self.created += 1;
        Ok((
            port,
            Some(NewMapping {
                external_port: port,
            }),
        ))
    }

    fn port_free(&self, now: SimTime, proto: Proto, port: u16) -> bool {
        match self.by_port.get(&(proto, port)) {
            None => true,
            Some(m) => now.since(m.last_used) > self.lifetime(proto),
        }
    }

    fn allocate_port(
        &mut self,
        now: SimTime,
        proto: Proto,
        wanted: u16,
        rng: &mut ChaCha8Rng,
    ) -> Result<u16, NatDrop> {
        let mut candidate = None;
        if self.config.port_preservation && wanted >= 1024 && self.port_free(now, proto, wanted) {
            candidate = Some(wanted);
        }
        if candidate.is_none() {
            // Random allocation (RFC 6056 style), a bounded number of tries then a scan.
            for _ in 0..64 {
                let p = rng.random_range(1024..=65535u16);
                if self.port_free(now, proto, p) {
                    candidate = Some(p);
                    break;
                }
            }
        }
        if candidate.is_none() {
            candidate = (1024..=65535u16).find(|&p| self.port_free(now, proto, p));
        }
        let port = candidate.ok_or(NatDrop::PortsExhausted)?;
        // Reusing an expired port: forget the stale mapping first.
        if let Some(old) = self.by_port.remove(&(proto, port)) {
            self.by_key.remove(&(proto, old.internal, old.key));
        }
        Ok(port)
    }

    /// Find the internal endpoint for an inbound packet to `external_port` from `src`,
    /// applying the filtering behaviour.
    pub fn inbound(
        &mut self,
        now: SimTime,
        proto: Proto,
        external_port: u16,
        src: SocketAddr,
    ) -> Result<SocketAddr, NatDrop> {
        let life = self.lifetime(proto);
        let filtering = self.kind().filtering;
        let m = self
            .by_port
            .get(&(proto, external_port))
            .ok_or(NatDrop::NoMapping)?;
        if now.since(m.last_used) > life {
            let key = (proto, m.internal, m.key);
            self.by_port.remove(&(proto, external_port));
            self.by_key.remove(&key);
            return Err(NatDrop::Expired);
        }
        if admits(filtering, &m.sent_to, src) {
            Ok(m.internal)
        } else {
            Err(NatDrop::Filtered)
        }
    }

    /// The IPv6 firewall check for an inbound packet to an inside host.
    pub fn inbound_v6(
        &mut self,
        now: SimTime,
        proto: Proto,
        internal: SocketAddr,
        src: SocketAddr,
    ) -> Result<(), NatDrop> {
        let life = self.lifetime(proto);
        let filtering = self.kind().filtering;
        let m = self
            .pinholes
            .get(&(proto, internal))
            .ok_or(NatDrop::NoMapping)?;
        if now.since(m.last_used) > life {
            return Err(NatDrop::Expired);
        }
        if admits(filtering, &m.sent_to, src) {
            Ok(())
        } else {
            Err(NatDrop::Filtered)
        }
    }

    /// Live mappings, for reports and tests.
    pub fn mappings(&self) -> impl Iterator<Item = &Mapping> {
        self.by_port.values()
    }
}

fn admits(filtering: Behaviour, sent_to: &BTreeSet<SocketAddr>, src: SocketAddr) -> bool {
    match filtering {
        Behaviour::EndpointIndependent => true,
        Behaviour::AddressDependent => sent_to.iter().any(|d| d.ip() == src.ip()),
        Behaviour::AddressAndPortDependent => sent_to.contains(&src),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn table(m: Behaviour, f: Behaviour) -> NatTable {
        NatTable::new(NatConfig {
            kind: NatType {
                mapping: m,
                filtering: f,
            },
            ..NatConfig::default()
        })
    }

    #[test]
    fn nat_type_codes_round_trip() {
        for t in NatType::all() {
            assert_eq!(t.to_string().parse::<NatType>().unwrap(), t);
        }
        assert_eq!(
            "symmetric".parse::<NatType>().unwrap().to_string(),
            "apdm-apdf"
        );
        assert!("eim".parse::<NatType>().is_err());
    }

    #[test]
    fn mapping_behaviours_reuse_ports_as_rfc4787_says() {
        use Behaviour::*;
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let t0 = SimTime::ZERO;
        let inside = sa("192.168.0.2:5000");
        for (b, same_ip_other_port, other_ip) in [
            (EndpointIndependent, true, true),
            (AddressDependent, true, false),
            (AddressAndPortDependent, false, false),
        ] {
            let mut n = table(b, EndpointIndependent);
            let (p1, _) = n
                .outbound(t0, Proto::Udp, inside, sa("1.1.1.1:1"), &mut rng)
                .unwrap();
            let (p2, _) = n
                .outbound(t0, Proto::Udp, inside, sa("1.1.1.1:2"), &mut rng)
                .unwrap();
            let (p3, _) = n
                .outbound(t0, Proto::Udp, inside, sa("2.2.2.2:1"), &mut rng)
                .unwrap();
            assert_eq!(p1, 5000, "port preservation for the first mapping");
            assert_eq!(p1 == p2, same_ip_other_port, "{b:?}");
            assert_eq!(p1 == p3, other_ip, "{b:?}");
        }
    }

    #[test]
    fn filtering_behaviours_admit_as_rfc4787_says() {
        use Behaviour::*;
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let t0 = SimTime::ZERO;
        for (f, same_ip_other_port, other_ip) in [
            (EndpointIndependent, true, true),
            (AddressDependent, true, false),
            (AddressAndPortDependent, false, false),
        ] {
            let mut n = table(EndpointIndependent, f);
            let (p, _) = n
                .outbound(
                    t0,
                    Proto::Udp,
                    sa("192.168.0.2:5000"),
                    sa("1.1.1.1:1"),
                    &mut rng,
                )
                .unwrap();
            assert!(n.inbound(t0, Proto::Udp, p, sa("1.1.1.1:1")).is_ok());
            assert_eq!(
                n.inbound(t0, Proto::Udp, p, sa("1.1.1.1:2")).is_ok(),
                same_ip_other_port
            );
            assert_eq!(
                n.inbound(t0, Proto::Udp, p, sa("3.3.3.3:1")).is_ok(),
                other_ip
            );
            assert_eq!(
                n.inbound(t0, Proto::Udp, p + 1, sa("1.1.1.1:1")),
                Err(NatDrop::NoMapping)
            );
        }
    }

    #[test]
    fn idle_mappings_expire_and_outbound_refreshes() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut n = table(
            Behaviour::EndpointIndependent,
            Behaviour::EndpointIndependent,
        );
        let inside = sa("192.168.0.2:5000");
        let (p, _) = n
            .outbound(SimTime::ZERO, Proto::Udp, inside, sa("1.1.1.1:1"), &mut rng)
            .unwrap();
        let t100 = SimTime::from_secs_f64(100.0);
        n.outbound(t100, Proto::Udp, inside, sa("1.1.1.1:1"), &mut rng)
            .unwrap();
        assert!(n
            .inbound(
                SimTime::from_secs_f64(200.0),
                Proto::Udp,
                p,
                sa("9.9.9.9:9")
            )
            .is_ok());
        assert_eq!(
            n.inbound(
                SimTime::from_secs_f64(221.0),
                Proto::Udp,
                p,
                sa("9.9.9.9:9")
            ),
            Err(NatDrop::Expired)
        );
    }

    #[test]
    fn composition_takes_the_stricter_behaviour() {
        use Behaviour::*;
        let a = NatType {
            mapping: EndpointIndependent,
            filtering: AddressAndPortDependent,
        };
        let b = NatType {
            mapping: AddressDependent,
            filtering: EndpointIndependent,
        };
        assert_eq!(
            a.compose(b),
            NatType {
                mapping: AddressDependent,
                filtering: AddressAndPortDependent
            }
        );
    }
}
