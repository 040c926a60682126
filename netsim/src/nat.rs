//! NAT boxes as RFC 4787 (UDP) and RFC 5382 (TCP) describe them: mapping and filtering
//! behaviour (each endpoint-independent, address-dependent or
//! address-and-port-dependent), port preservation, hairpinning and binding lifetime.
//! IPv6 is not translated: the box acts as a stateful firewall with the same filtering
//! rule (as home routers do).
//!
//! TCP mappings follow the same mapping and filtering behaviour as UDP ones (RFC 5382
//! REQ-1, REQ-3). The box follows each connection through a mapping by its SYN, FIN and
//! RST flags: a mapping with an established connection lives
//! [`NatConfig::tcp_established_lifetime`] idle (REQ-5: at least 2 h 4 min), otherwise
//! [`NatConfig::tcp_transitory_lifetime`] (at least 4 min). An inbound SYN that no
//! mapping admits is handled as [`NatConfig::unsolicited_syn`] says (REQ-4).

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

/// What a NAT does with an inbound SYN that no mapping admits (RFC 5382 REQ-4).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum UnsolicitedSyn {
    /// Drop it silently (REQ-4a; most home routers). TCP simultaneous open works: the
    /// early SYN is lost, the other side's SYN gets through once the inside host has
    /// sent its own.
    #[default]
    Drop,
    /// Answer at once with a RST, as some NATs and firewalls do (violates REQ-4). The
    /// early SYN of a simultaneous open kills its sender's attempt.
    Rst,
    /// REQ-4 to the letter: hold the SYN for [`SYN_HOLD`]; if the inside host opens the
    /// connection meanwhile, drop it silently, else refuse it. netsim has no ICMP, so
    /// the ICMP Port Unreachable is modelled by its effect, a RST: a stack in SYN-SENT
    /// treats both as "refused" (Linux's tcp_v4_err makes port unreachable a hard error).
    Refuse,
}

/// How long a REQ-4 NAT waits before refusing an unsolicited SYN (RFC 5382: at least 6 s).
pub const SYN_HOLD: Duration = Duration::from_secs(6);

/// Connections followed per TCP mapping; more are treated as transitory. Bounds the
/// memory a flood of admitted SYNs can take.
pub const MAX_TCP_TRACKS: usize = 256;

impl UnsolicitedSyn {
    /// Whether a simultaneous open survives this policy whichever SYN arrives first.
    pub fn lets_simultaneous_open(self) -> bool {
        !matches!(self, UnsolicitedSyn::Rst)
    }
}

impl fmt::Display for UnsolicitedSyn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UnsolicitedSyn::Drop => "drop",
            UnsolicitedSyn::Rst => "rst",
            UnsolicitedSyn::Refuse => "refuse",
        })
    }
}

impl FromStr for UnsolicitedSyn {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "drop" => Ok(UnsolicitedSyn::Drop),
            "rst" => Ok(UnsolicitedSyn::Rst),
            "refuse" => Ok(UnsolicitedSyn::Refuse),
            _ => Err(format!(
                "unsolicited SYN policy `{s}`: expected drop, rst or refuse"
            )),
        }
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
    /// Idle time after which a TCP mapping with an established connection is forgotten
    /// (RFC 5382 REQ-5: at least 2 h 4 min).
    pub tcp_established_lifetime: Duration,
    /// Idle time after which a TCP mapping without one (SYN seen one way only, or after
    /// FIN both ways or RST) is forgotten (REQ-5: at least 4 min).
    pub tcp_transitory_lifetime: Duration,
    /// What to do with an inbound SYN no mapping admits (REQ-4).
    pub unsolicited_syn: UnsolicitedSyn,
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
            tcp_established_lifetime: Duration::from_secs(2 * 3600 + 4 * 60),
            tcp_transitory_lifetime: Duration::from_secs(4 * 60),
            unsolicited_syn: UnsolicitedSyn::Drop,
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
    /// TCP connections through this mapping, by remote endpoint (RFC 5382 REQ-5).
    tcp: BTreeMap<SocketAddr, TcpTrack>,
}

/// Which handshake and teardown flags a NAT has seen on one TCP connection.
#[derive(Clone, Copy, Debug, Default)]
struct TcpTrack {
    syn_out: bool,
    syn_in: bool,
    fin_out: bool,
    fin_in: bool,
}

impl TcpTrack {
    fn established(&self) -> bool {
        self.syn_out && self.syn_in && !(self.fin_out && self.fin_in)
    }
}

/// Direction of a packet through a NAT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    Out,
    In,
}

impl Mapping {
    /// Whether a connection through this mapping is established (SYN seen both ways,
    /// not closed both ways).
    pub fn tcp_established(&self) -> bool {
        self.tcp.values().any(TcpTrack::established)
    }

    fn note_tcp(&mut self, remote: SocketAddr, flags: u8, dir: Dir) {
        use crate::packet::tcp_flags::{FIN, RST, SYN};
        if flags & RST != 0 {
            self.tcp.remove(&remote);
            return;
        }
        if !self.tcp.contains_key(&remote) {
            if flags & SYN == 0 || self.tcp.len() >= MAX_TCP_TRACKS {
                return;
            }
            self.tcp.insert(remote, TcpTrack::default());
        }
        let t = self.tcp.get_mut(&remote).expect("just ensured");
        if flags & SYN != 0 && (t.fin_out || t.fin_in) {
            *t = TcpTrack::default(); // a new connection on the same 4-tuple
        }
        let (syn, fin) = (flags & SYN != 0, flags & FIN != 0);
        match dir {
            Dir::Out => {
                t.syn_out |= syn;
                t.fin_out |= fin;
            }
            Dir::In => {
                t.syn_in |= syn;
                t.fin_in |= fin;
            }
        }
        if t.fin_out && t.fin_in {
            self.tcp.remove(&remote); // closed: the mapping is transitory again
        }
    }
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
    /// Likewise for the unsolicited SYN policy.
    pub actual_unsolicited_syn: Option<UnsolicitedSyn>,
    /// Likewise for TCP mapping lifetimes (both kinds): `Some(ZERO)` is a box that
    /// forgets its TCP mappings as soon as they fall idle.
    pub actual_tcp_lifetime: Option<Duration>,
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

    /// The unsolicited SYN policy, as the box actually behaves.
    pub fn unsolicited_syn(&self) -> UnsolicitedSyn {
        self.actual_unsolicited_syn
            .unwrap_or(self.config.unsolicited_syn)
    }

    /// How long `m` lives idle.
    fn lifetime(&self, m: &Mapping) -> Duration {
        match m.proto {
            Proto::Udp => self.config.udp_lifetime,
            Proto::Tcp => self.actual_tcp_lifetime.unwrap_or(if m.tcp_established() {
                self.config.tcp_established_lifetime
            } else {
                self.config.tcp_transitory_lifetime
            }),
        }
    }

    /// Follow a TCP segment through the IPv4 mapping at `external_port` (after it was
    /// translated): `remote` is the outside endpoint, `flags` the segment's flags.
    pub fn note_tcp(&mut self, external_port: u16, remote: SocketAddr, flags: u8, dir: Dir) {
        if let Some(m) = self.by_port.get_mut(&(Proto::Tcp, external_port)) {
            m.note_tcp(remote, flags, dir);
        }
    }

    /// Likewise for the IPv6 pinhole of `internal`.
    pub fn note_tcp_v6(&mut self, internal: SocketAddr, remote: SocketAddr, flags: u8, dir: Dir) {
        if let Some(m) = self.pinholes.get_mut(&(Proto::Tcp, internal)) {
            m.note_tcp(remote, flags, dir);
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
            self.pinholes
                .entry((proto, internal))
                .or_insert_with(|| Mapping {
                    proto,
                    internal,
                    external_port: internal.port(),
                    key: DstKey::Any,
                    sent_to: BTreeSet::new(),
                    last_used: now,
                    tcp: BTreeMap::new(),
                });
            let life = self.lifetime(&self.pinholes[&(proto, internal)]);
            let m = self
                .pinholes
                .get_mut(&(proto, internal))
                .expect("just added");
            if now.since(m.last_used) > life {
                m.sent_to.clear();
                m.tcp.clear();
            }
            m.sent_to.insert(dst);
            m.last_used = now;
            return Ok((internal.port(), None));
        }
        let key = (proto, internal, dst_key(self.kind().mapping, dst));
        if let Some(&port) = self.by_key.get(&key) {
            let life = self.lifetime(&self.by_port[&(proto, port)]);
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
                tcp: BTreeMap::new(),
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
            Some(m) => now.since(m.last_used) > self.lifetime(m),
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
        let filtering = self.kind().filtering;
        let m = self
            .by_port
            .get(&(proto, external_port))
            .ok_or(NatDrop::NoMapping)?;
        if now.since(m.last_used) > self.lifetime(m) {
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
        let filtering = self.kind().filtering;
        let m = self
            .pinholes
            .get(&(proto, internal))
            .ok_or(NatDrop::NoMapping)?;
        if now.since(m.last_used) > self.lifetime(m) {
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

    fn secs(s: f64) -> SimTime {
        SimTime::from_secs_f64(s)
    }

    /// RFC 5382 REQ-5: a mapping whose connection completed its handshake lives 2 h 4 min
    /// idle; one that saw a SYN one way only, or whose connection closed, lives 4 min.
    #[test]
    fn tcp_mapping_lifetimes_follow_the_connection_state() {
        use crate::packet::tcp_flags::{ACK, FIN, RST, SYN};
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let inside = sa("192.168.0.2:5000");
        let peer = sa("1.1.1.1:80");
        let fresh = |rng: &mut ChaCha8Rng| {
            let mut n = table(
                Behaviour::EndpointIndependent,
                Behaviour::AddressAndPortDependent,
            );
            let (p, _) = n
                .outbound(SimTime::ZERO, Proto::Tcp, inside, peer, rng)
                .unwrap();
            n.note_tcp(p, peer, SYN, Dir::Out);
            (n, p)
        };
        // Transitory: SYN out, nothing back.
        let (mut n, p) = fresh(&mut rng);
        assert!(n.inbound(secs(239.0), Proto::Tcp, p, peer).is_ok());
        assert_eq!(
            n.inbound(secs(241.0), Proto::Tcp, p, peer),
            Err(NatDrop::Expired)
        );
        // Established: SYN-ACK back.
        let (mut n, p) = fresh(&mut rng);
        n.note_tcp(p, peer, SYN | ACK, Dir::In);
        assert!(n.mappings().next().unwrap().tcp_established());
        assert!(n.inbound(secs(7439.0), Proto::Tcp, p, peer).is_ok());
        assert_eq!(
            n.inbound(secs(7441.0), Proto::Tcp, p, peer),
            Err(NatDrop::Expired)
        );
        // Closed both ways: transitory again.
        let (mut n, p) = fresh(&mut rng);
        n.note_tcp(p, peer, SYN | ACK, Dir::In);
        n.note_tcp(p, peer, FIN | ACK, Dir::Out);
        assert!(
            n.mappings().next().unwrap().tcp_established(),
            "half closed"
        );
        n.note_tcp(p, peer, FIN | ACK, Dir::In);
        assert!(!n.mappings().next().unwrap().tcp_established());
        assert_eq!(
            n.inbound(secs(241.0), Proto::Tcp, p, peer),
            Err(NatDrop::Expired)
        );
        // Reset: transitory again.
        let (mut n, p) = fresh(&mut rng);
        n.note_tcp(p, peer, SYN | ACK, Dir::In);
        n.note_tcp(p, peer, RST, Dir::In);
        assert!(!n.mappings().next().unwrap().tcp_established());
        // A box that forgets its TCP mappings.
        let (mut n, p) = fresh(&mut rng);
        n.actual_tcp_lifetime = Some(Duration::ZERO);
        assert_eq!(
            n.inbound(secs(0.001), Proto::Tcp, p, peer),
            Err(NatDrop::Expired)
        );
    }

    /// RFC 5382 REQ-1 and REQ-3: TCP mappings and filters behave as the UDP ones do, and
    /// TCP and UDP mappings of one port are separate.
    #[test]
    fn tcp_mappings_follow_the_mapping_behaviour() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let inside = sa("192.168.0.2:5000");
        let mut n = table(Behaviour::AddressDependent, Behaviour::AddressDependent);
        let t0 = SimTime::ZERO;
        let (p1, _) = n
            .outbound(t0, Proto::Tcp, inside, sa("1.1.1.1:1"), &mut rng)
            .unwrap();
        let (p2, _) = n
            .outbound(t0, Proto::Tcp, inside, sa("1.1.1.1:2"), &mut rng)
            .unwrap();
        let (p3, _) = n
            .outbound(t0, Proto::Tcp, inside, sa("2.2.2.2:1"), &mut rng)
            .unwrap();
        let (u1, _) = n
            .outbound(t0, Proto::Udp, inside, sa("1.1.1.1:1"), &mut rng)
            .unwrap();
        assert_eq!((p1, p1 == p2, p1 == p3, u1), (5000, true, false, 5000));
        assert!(n.inbound(t0, Proto::Tcp, p1, sa("1.1.1.1:9")).is_ok());
        assert_eq!(
            n.inbound(t0, Proto::Tcp, p1, sa("3.3.3.3:1")),
            Err(NatDrop::Filtered)
        );
    }

    #[test]
    fn unsolicited_syn_policies_parse() {
        for p in [
            UnsolicitedSyn::Drop,
            UnsolicitedSyn::Rst,
            UnsolicitedSyn::Refuse,
        ] {
            assert_eq!(p.to_string().parse::<UnsolicitedSyn>(), Ok(p));
        }
        assert!("icmp".parse::<UnsolicitedSyn>().is_err());
        assert!(!UnsolicitedSyn::Rst.lets_simultaneous_open());
    }
}
