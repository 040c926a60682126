//! The path oracle: from the topology alone (NAT types, hairpinning, tunnels, LANs) it
//! predicts whether two hosts can reach each other directly, so scenarios assert the
//! path (host, server-reflexive, relay) and not merely "connected". It reasons from
//! RFC 4787 and RFC 5382 semantics, independently of the NAT implementation it judges.
//! [`udp_path`] answers for UDP hole punching, [`tcp_path`] for ICE-TCP (RFC 6544), and
//! [`tcp_path_so_on_listen_port`] for ICE-TCP agents whose S-O candidate is their
//! listening port (`node::connect::ice`).

use crate::nat::{Behaviour, NatType};
use crate::node::{GatewayKind, NodeKind};
use crate::sim::{NodeId, Sim};
use std::fmt;

/// The best path two hosts can use.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PathKind {
    /// Directly between host addresses (same LAN, public hosts, or one side's LAN
    /// address reachable from the other).
    Host,
    /// Through NAT bindings learnt from STUN (hole punching).
    Srflx,
    /// Only through a TURN relay.
    Relay,
    /// Not at all.
    None,
}

impl fmt::Display for PathKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathKind::Host => "host",
            PathKind::Srflx => "srflx",
            PathKind::Relay => "relay",
            PathKind::None => "none",
        })
    }
}

impl PathKind {
    pub fn is_direct(self) -> bool {
        matches!(self, PathKind::Host | PathKind::Srflx)
    }
}

/// One NAT on a host's way out, as the oracle sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hop {
    pub node: NodeId,
    pub kind: NatType,
    pub hairpin: bool,
    pub port_preservation: bool,
    /// The box does not answer an unsolicited SYN at once (RFC 5382 REQ-4), so a TCP
    /// simultaneous open through it survives whichever SYN arrives first.
    pub syn_silent: bool,
}

/// Where a host sits: its parent (LAN), the translating boxes above it (innermost first)
/// and its tunnel, if any.
#[derive(Clone, Debug)]
pub struct Placement {
    pub parent: NodeId,
    pub chain: Vec<Hop>,
    pub tunnel: Option<(NodeId, GatewayKind)>,
    /// Isolated LAN segment with no way out.
    pub isolated: bool,
}

/// Where `host` sits in the topology.
pub fn placement(sim: &Sim, host: NodeId) -> Placement {
    let core = &sim.core;
    let parent = core.nodes[host].parent.unwrap_or(0);
    let tunnel = sim.host(host).and_then(|h| h.tunnel).map(|t| {
        let kind = sim
            .gateway(t.gateway)
            .map(|g| g.kind)
            .unwrap_or(GatewayKind::Vpn);
        (t.gateway, kind)
    });
    let mut chain = Vec::new();
    let mut isolated = false;
    let mut cur = Some(parent);
    while let Some(n) = cur {
        match &core.nodes[n].kind {
            NodeKind::Nat(b) => {
                let c = &b.table.config;
                chain.push(Hop {
                    node: n,
                    kind: c.kind,
                    hairpin: c.hairpin,
                    port_preservation: c.port_preservation,
                    syn_silent: c.unsolicited_syn.lets_simultaneous_open(),
                })
            }
            NodeKind::Lan { .. } if core.nodes[n].uplink.is_none() => isolated = true,
            _ => {}
        }
        cur = core.nodes[n].parent;
    }
    if let Some((gw, _)) = tunnel {
        // Inner traffic leaves from the gateway: its table is the only NAT that counts.
        let g = sim.gateway(gw).expect("tunnel gateways exist");
        chain = vec![Hop {
            node: gw,
            kind: g.table.config.kind,
            hairpin: false,
            port_preservation: true,
            syn_silent: g.table.config.unsolicited_syn.lets_simultaneous_open(),
        }];
    }
    Placement {
        parent,
        chain,
        tunnel,
        isolated,
    }
}

const OPEN: NatType = NatType {
    mapping: Behaviour::EndpointIndependent,
    filtering: Behaviour::EndpointIndependent,
};

fn composed(hops: &[Hop]) -> NatType {
    hops.iter().fold(OPEN, |acc, h| acc.compose(h.kind))
}

/// Can simultaneous UDP hole punching through NATs of effective types `a` and `b`
/// succeed, when each side learnt its server-reflexive address from the same STUN
/// server and answers whatever reaches it? A probe from A leaves through binding A1
/// (A's STUN binding if A maps endpoint-independently, else a new one) toward B's STUN
/// binding, which admits it if B filters endpoint-independently, or if B's probes toward
/// A went out through that same binding (B maps endpoint-independently) and B's filter
/// accepts A1 (address-dependent, or A1 is A's STUN binding). B's answer must then pass
/// A1's filter: it does unless A filters by port and B answered from a new binding.
pub fn hole_punch(a: NatType, b: NatType) -> bool {
    use Behaviour::*;
    let reaches = |from: NatType, to: NatType| {
        to.filtering == EndpointIndependent
            || (to.mapping == EndpointIndependent
                && (to.filtering == AddressDependent || from.mapping == EndpointIndependent))
    };
    let answer_back = |asker: NatType, answerer: NatType| {
        asker.filtering != AddressAndPortDependent || answerer.mapping == EndpointIndependent
    };
    (reaches(a, b) && answer_back(a, b)) || (reaches(b, a) && answer_back(b, a))
}

/// The best UDP path between hosts `a` and `b`, with a TURN relay on the internet.
pub fn udp_path(sim: &Sim, a: NodeId, b: NodeId) -> PathKind {
    let pa = placement(sim, a);
    let pb = placement(sim, b);
    let tor = |p: &Placement| matches!(p.tunnel, Some((_, GatewayKind::Tor)));
    if tor(&pa) || tor(&pb) {
        return PathKind::None; // Tor carries no UDP at all
    }
    if pa.parent == pb.parent && pa.tunnel.is_none() && pb.tunnel.is_none() {
        return PathKind::Host; // same LAN (or both on the open internet)
    }
    if pa.isolated || pb.isolated {
        return PathKind::None;
    }
    let relay = PathKind::Relay;
    // Both behind a shared NAT: their bindings meet inside it only by hairpinning.
    let shared = pa
        .chain
        .iter()
        .position(|h| pb.chain.iter().any(|g| g.node == h.node));
    if let Some(ia) = shared {
        let common = pa.chain[ia];
        let ib = pb
            .chain
            .iter()
            .position(|g| g.node == common.node)
            .expect("shared");
        if ia == 0 || ib == 0 {
            // One side sits on the LAN where the other's chain ends: its LAN address is
            // reachable from the other side.
            return PathKind::Host;
        }
        if !common.hairpin {
            return relay;
        }
        let ea = composed(&pa.chain[..=ia]);
        let eb = composed(&pb.chain[..=ib]);
        return if hole_punch(ea, eb) {
            PathKind::Srflx
        } else {
            relay
        };
    }
    let (ea, eb) = (composed(&pa.chain), composed(&pb.chain));
    if pa.chain.is_empty() && pb.chain.is_empty() {
        return PathKind::Host;
    }
    if hole_punch(ea, eb) {
        if pa.chain.is_empty() || pb.chain.is_empty() {
            PathKind::Host // the public side's host address is directly reachable
        } else {
            PathKind::Srflx
        }
    } else {
        relay
    }
}

/// Can `a` open a TCP connection to a listener on `b` (no simultaneous open)?
pub fn tcp_reachable(sim: &Sim, a: NodeId, b: NodeId) -> bool {
    let pa = placement(sim, a);
    let pb = placement(sim, b);
    if pa.isolated != pb.isolated || (pa.isolated && pa.parent != pb.parent) {
        return false;
    }
    if pb.tunnel.is_some() {
        return false; // nothing reaches inside a tunnel unsolicited
    }
    if pb.chain.is_empty() {
        return true; // public listener (or on the same isolated LAN)
    }
    if pa.tunnel.is_some() {
        return false;
    }
    // A reaches B's LAN address only if B's parent LAN is on A's way out.
    pa.parent == pb.parent || pa.chain.iter().any(|h| h.node == pb.parent)
}

/// The best direct TCP path between two hosts, as ICE-TCP (RFC 6544) finds it when each
/// side offers a passive host candidate, a passive server-reflexive candidate (learnt by
/// STUN over TCP from the listening port), and a simultaneous-open candidate (learnt the
/// same way from its own port), and tries active connections to every remote candidate.
/// Ordered from best to worst.
///
/// This is what RFC 6544 allows, not what every agent does: the official jamid 13.7
/// offers neither passive server-reflexive nor simultaneous-open candidates (its NAT lab,
/// `peers/jamid-nat-matrix.md`), so between two NATed jamid peers only `Host` paths
/// (same LAN, or one side public) or a TURN relay exist.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TcpPath {
    /// An active connection to the other side's listening host address.
    Host,
    /// An active connection to the other side's passive server-reflexive candidate: its
    /// NAT mapping admits an unsolicited SYN.
    Srflx,
    /// Both sides connect to each other's mapped address and the SYNs meet (RFC 9293
    /// §3.5), each NAT admitting the other's SYN once its own SYN went out.
    SimultaneousOpen,
    /// No direct TCP path (a TURN TCP relay, RFC 6062, is the way left).
    None,
}

impl fmt::Display for TcpPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TcpPath::Host => "host",
            TcpPath::Srflx => "srflx",
            TcpPath::SimultaneousOpen => "so",
            TcpPath::None => "none",
        })
    }
}

impl std::str::FromStr for TcpPath {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "host" => TcpPath::Host,
            "srflx" => TcpPath::Srflx,
            "so" => TcpPath::SimultaneousOpen,
            "none" => TcpPath::None,
            _ => return Err(format!("TCP path `{s}`: expected host, srflx, so or none")),
        })
    }
}

/// Can an unsolicited SYN from outside reach a listener behind `chain` through the
/// mapping the listener's port got from a STUN server? Only if every box maps and
/// filters endpoint-independently (RFC 5382 REQ-1/REQ-3): the mapping is the one the
/// STUN server saw, and its filter admits anyone.
pub fn tcp_passive_srflx(chain: &[Hop]) -> bool {
    !chain.is_empty() && composed(chain) == OPEN
}

/// Can two hosts behind `a` and `b` open a TCP connection simultaneously, each connecting
/// from its simultaneous-open port to the mapped address of the other's, as learnt from a
/// STUN server? Each side's SYN must leave through that very mapping, so every box maps
/// endpoint-independently (then the other side's SYN, coming from the address this side
/// sent to, passes any filter). The first SYN to arrive finds the far NAT without a way
/// in: every box must stay silent (REQ-4) rather than answer with a RST, or it kills the
/// attempt; which SYN arrives first is timing, so the oracle asks it of both chains.
pub fn tcp_simultaneous_open(a: &[Hop], b: &[Hop]) -> bool {
    let ok = |c: &[Hop]| {
        composed(c).mapping == Behaviour::EndpointIndependent && c.iter().all(|h| h.syn_silent)
    };
    ok(a) && ok(b)
}

/// The best direct TCP path between hosts `a` and `b` (see [`TcpPath`]).
pub fn tcp_path(sim: &Sim, a: NodeId, b: NodeId) -> TcpPath {
    let (ca, cb) = match tcp_chains(sim, a, b) {
        Ok(c) => c,
        Err(p) => return p,
    };
    let (ca, cb) = (&ca[..], &cb[..]);
    if tcp_passive_srflx(ca) || tcp_passive_srflx(cb) {
        TcpPath::Srflx
    } else if tcp_simultaneous_open(ca, cb) {
        TcpPath::SimultaneousOpen
    } else {
        TcpPath::None
    }
}

/// [`tcp_path`] for agents whose simultaneous-open candidate is their listening port
/// (SO_REUSEADDR), as `node::connect::ice` does, rather than a port of its own. Then the
/// S-O SYN a side sends to the other's server-reflexive S-O address leaves through its
/// listener's own mapping and opens that mapping's filter to the other's address: see
/// [`tcp_opened_passive_srflx`]. Everything else is as in [`tcp_path`].
pub fn tcp_path_so_on_listen_port(sim: &Sim, a: NodeId, b: NodeId) -> TcpPath {
    let (ca, cb) = match tcp_chains(sim, a, b) {
        Ok(c) => c,
        Err(p) => return p,
    };
    let opened = tcp_opened_passive_srflx(&ca, &cb) || tcp_opened_passive_srflx(&cb, &ca);
    match tcp_path(sim, a, b) {
        TcpPath::SimultaneousOpen | TcpPath::None if opened => TcpPath::Srflx,
        p => p,
    }
}

/// Can a host behind `dialer` reach the passive server-reflexive candidate of a host
/// behind `listener` once the listener's S-O SYN, sent from its listening port, went to
/// the dialer's server-reflexive S-O address? The listener's boxes must map
/// endpoint-independently (so that SYN left through the mapping STUN saw) and filter at
/// most by address (RFC 4787/5382 address-dependent filtering admits any port of an
/// address the mapping sent to); the dialer needs a NAT to have a server-reflexive
/// address at all (a public dialer has the host path). The dialer's own boxes do not
/// matter: its active SYN comes from the same public address whatever the port.
pub fn tcp_opened_passive_srflx(listener: &[Hop], dialer: &[Hop]) -> bool {
    let k = composed(listener);
    !listener.is_empty()
        && !dialer.is_empty()
        && k.mapping == Behaviour::EndpointIndependent
        && k.filtering != Behaviour::AddressAndPortDependent
}

/// The NAT chains that matter between `a` and `b` (cut at a shared NAT), or the answer
/// when the topology alone gives it (host reachability, isolation, no hairpinning).
fn tcp_chains(sim: &Sim, a: NodeId, b: NodeId) -> Result<(Vec<Hop>, Vec<Hop>), TcpPath> {
    if tcp_reachable(sim, a, b) || tcp_reachable(sim, b, a) {
        return Err(TcpPath::Host);
    }
    let pa = placement(sim, a);
    let pb = placement(sim, b);
    if pa.isolated || pb.isolated {
        return Err(TcpPath::None);
    }
    // Behind a shared NAT the two meet inside it, by hairpinning only; the boxes above
    // it translate both alike and do not matter.
    let shared = pa
        .chain
        .iter()
        .position(|h| pb.chain.iter().any(|g| g.node == h.node));
    match shared {
        Some(ia) => {
            let common = pa.chain[ia];
            let ib = pb
                .chain
                .iter()
                .position(|g| g.node == common.node)
                .expect("shared");
            if !common.hairpin {
                return Err(TcpPath::None);
            }
            Ok((pa.chain[..=ia].to_vec(), pb.chain[..=ib].to_vec()))
        }
        None => Ok((pa.chain, pb.chain)),
    }
}

/// What an RFC 5780 discovery client on `host` should measure: the composed type of its
/// NAT chain and whether hairpinning works (None when the host is not behind a NAT).
/// Hairpinned packets pass the receiving binding's filter like any inbound packet, so the
/// client opens the filters first (see [`crate::apps::discovery`]): it can do so when
/// mapping or filtering is endpoint-independent, or when ports are preserved all the way
/// out. Then the outermost NAT, where both bindings meet, decides.
pub fn expected_discovery(sim: &Sim, host: NodeId) -> Option<(NatType, bool)> {
    let p = placement(sim, host);
    let outer = p.chain.last()?;
    let kind = composed(&p.chain);
    let openable = p.chain.iter().all(|h| h.port_preservation)
        || kind.mapping == Behaviour::EndpointIndependent
        || kind.filtering == Behaviour::EndpointIndependent;
    Some((kind, outer.hairpin && openable))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> NatType {
        s.parse().unwrap()
    }

    #[test]
    fn classic_hole_punching_table() {
        let fc = t("full-cone");
        let rc = t("restricted-cone");
        let prc = t("port-restricted-cone");
        let sym = t("symmetric");
        assert!(hole_punch(prc, prc));
        assert!(hole_punch(rc, sym));
        assert!(hole_punch(fc, sym));
        assert!(!hole_punch(prc, sym));
        assert!(!hole_punch(sym, sym));
        // symmetric in both arguments
        for x in NatType::all() {
            for y in NatType::all() {
                assert_eq!(hole_punch(x, y), hole_punch(y, x), "{x} {y}");
            }
        }
    }

    fn hop(kind: &str, syn_silent: bool) -> Hop {
        Hop {
            node: 0,
            kind: t(kind),
            hairpin: false,
            port_preservation: true,
            syn_silent,
        }
    }

    #[test]
    fn tcp_candidates_table() {
        let chain = |k: &str| vec![hop(k, true)];
        assert!(tcp_passive_srflx(&chain("eim-eif")));
        assert!(!tcp_passive_srflx(&chain("eim-adf")));
        assert!(!tcp_passive_srflx(&chain("adm-eif")));
        assert!(
            !tcp_passive_srflx(&[]),
            "a public host has no srflx candidate"
        );
        assert!(!tcp_passive_srflx(&[
            hop("eim-eif", true),
            hop("eim-apdf", true)
        ]));
        assert!(tcp_simultaneous_open(&chain("eim-apdf"), &chain("eim-adf")));
        assert!(!tcp_simultaneous_open(
            &chain("eim-apdf"),
            &chain("adm-eif")
        ));
        assert!(!tcp_simultaneous_open(
            &chain("apdm-apdf"),
            &chain("apdm-apdf")
        ));
        assert!(!tcp_simultaneous_open(
            &chain("eim-apdf"),
            &[hop("eim-apdf", false)]
        ));
        assert!(!tcp_simultaneous_open(
            &chain("eim-apdf"),
            &[hop("eim-eif", true), hop("adm-eif", true)]
        ));
        // S-O on the listening port: the listener's outbound S-O SYN opens an
        // address-dependent filter to the dialer's address, not a port-dependent one, and
        // only through an endpoint-independent mapping.
        assert!(tcp_opened_passive_srflx(
            &chain("eim-adf"),
            &chain("apdm-apdf")
        ));
        assert!(!tcp_opened_passive_srflx(
            &chain("eim-apdf"),
            &chain("eim-eif")
        ));
        assert!(!tcp_opened_passive_srflx(
            &chain("adm-adf"),
            &chain("eim-eif")
        ));
        assert!(!tcp_opened_passive_srflx(&chain("eim-adf"), &[]));
        assert!(!tcp_opened_passive_srflx(&[], &chain("eim-adf")));
        assert!(!tcp_opened_passive_srflx(
            &[hop("eim-adf", true), hop("eim-apdf", true)],
            &chain("eim-eif")
        ));
        for x in NatType::all() {
            for y in NatType::all() {
                let (a, b) = (
                    vec![hop(&x.to_string(), true)],
                    vec![hop(&y.to_string(), true)],
                );
                assert_eq!(tcp_simultaneous_open(&a, &b), tcp_simultaneous_open(&b, &a));
            }
        }
    }
}
