//! Candidate priorities and foundations as pjnath computes them (ice_session.c
//! `CALC_CAND_PRIO`, `pj_ice_calc_foundation`; ice_strans.c local preferences), and the
//! RFC 8445 §6.1.2.3 pair priority.

use crate::connect::ice_msg::{CandidateType, Transport};
use std::net::{IpAddr, SocketAddr};

/// Component id: Jami uses one stream with one component.
pub const COMPONENT: u8 = 1;

/// Port advertised by TCP active candidates (RFC 6544 §4.5 says 9, "discard"; jamid and
/// pjnath write 9 as well): the real source port is chosen at connect time.
pub const ACTIVE_PORT: u16 = 9;

/// pjnath's type preferences (`cand_type_prefs`): host 126, srflx 100, prflx 110, relay 0.
const DEFAULT_PREFS: [u8; 4] = [126, 100, 110, 0];
/// pjnath's `srflx_pref_table`, installed when the default candidate is server
/// reflexive (ice_strans.c, `pj_ice_sess_set_prefs`): host 100, srflx 110, prflx 126.
const SRFLX_PREFS: [u8; 4] = [100, 110, 126, 0];

fn idx(t: CandidateType) -> usize {
    match t {
        CandidateType::Host => 0,
        CandidateType::Srflx => 1,
        CandidateType::Prflx => 2,
        CandidateType::Relay => 3,
    }
}

/// Type preference table in force: pjnath switches to [`SRFLX_PREFS`] when a server
/// reflexive candidate became the default one (STUN gathering succeeded).
pub fn type_pref(t: CandidateType, srflx_default: bool) -> u32 {
    let table = if srflx_default {
        SRFLX_PREFS
    } else {
        DEFAULT_PREFS
    };
    u32::from(table[idx(t)])
}

/// `CALC_CAND_PRIO` with `PJNATH_ICE_PRIO_STD`: type << 24 | local_pref << 8 | 256 - comp.
pub fn priority(t: CandidateType, local_pref: u16, srflx_default: bool) -> u32 {
    (type_pref(t, srflx_default) << 24)
        + (u32::from(local_pref) << 8)
        + (256 - u32::from(COMPONENT))
}

/// PRIORITY carried in a check from local candidate number `local_id` (pjnath uses the
/// prflx type preference and `65535 - lcand->id` as local preference).
pub fn check_priority(local_id: usize, srflx_default: bool) -> u32 {
    let pref = 65535u16.saturating_sub(u16::try_from(local_id).unwrap_or(u16::MAX));
    priority(CandidateType::Prflx, pref, srflx_default)
}

/// pjnath's foundation: a type letter and the base address in hex (IPv4 as an integer,
/// IPv6 through `pj_hash_calc`). pjnath ignores the transport, so a TCP active, a TCP
/// passive and a UDP candidate on one base share a foundation (RFC 8445 would split them).
pub fn foundation(t: CandidateType, base: IpAddr) -> String {
    let letter = match t {
        CandidateType::Host => 'H',
        CandidateType::Srflx => 'S',
        CandidateType::Prflx => 'P',
        CandidateType::Relay => 'R',
    };
    let val = match base {
        IpAddr::V4(a) => u32::from(a),
        // pj_hash_calc: hash = hash * 33 + byte.
        IpAddr::V6(a) => a
            .octets()
            .iter()
            .fold(0u32, |h, b| h.wrapping_mul(33).wrapping_add(u32::from(*b))),
    };
    format!("{letter}{val:x}")
}

/// RFC 8445 §6.1.2.3: 2^32·min(G,D) + 2·max(G,D) + (G>D), G the controlling agent's
/// priority. In u128: a remote priority is any u32 and the formula overflows 64 bits then.
pub fn pair_priority(controlling: u32, controlled: u32) -> u128 {
    let (g, d) = (u128::from(controlling), u128::from(controlled));
    (g.min(d) << 32) + 2 * g.max(d) + u128::from(g > d)
}

/// Whether a local and a remote transport can form a pair (RFC 6544 §6.2: active with
/// passive, passive with active, so with so; UDP with UDP).
pub fn compatible(local: Transport, remote: Transport) -> bool {
    use Transport::*;
    matches!(
        (local, remote),
        (Udp, Udp) | (TcpActive, TcpPassive) | (TcpPassive, TcpActive) | (TcpSo, TcpSo)
    )
}

/// Whether two addresses may be paired (same family).
pub fn same_family(a: SocketAddr, b: SocketAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pjnath_priorities() {
        // Host, first candidate: 126 << 24 | 65535 << 8 | 255.
        assert_eq!(priority(CandidateType::Host, 65535, false), 2_130_706_431);
        assert_eq!(priority(CandidateType::Host, 65534, false), 2_130_706_175);
        assert_eq!(priority(CandidateType::Relay, 65535, false), 16_777_215);
        assert_eq!(priority(CandidateType::Srflx, 65535, true), 1_862_270_975);
        assert_eq!(
            check_priority(0, false),
            priority(CandidateType::Prflx, 65535, false)
        );
    }

    #[test]
    fn foundations() {
        assert_eq!(
            foundation(CandidateType::Host, "192.168.1.2".parse().unwrap()),
            "Hc0a80102"
        );
        assert_eq!(
            foundation(CandidateType::Relay, "10.0.0.1".parse().unwrap()),
            "Ra000001"
        );
        assert!(foundation(CandidateType::Srflx, "2001:db8::1".parse().unwrap()).starts_with('S'));
    }

    #[test]
    fn pair_priority_is_symmetric_in_roles_except_tiebreak() {
        assert_eq!(pair_priority(10, 20), (10u128 << 32) + 40);
        assert_eq!(pair_priority(20, 10), (10u128 << 32) + 41);
        assert!(pair_priority(u32::MAX, u32::MAX) > pair_priority(u32::MAX, u32::MAX - 1));
    }

    #[test]
    fn tcp_pairing_rules() {
        use Transport::*;
        assert!(compatible(TcpActive, TcpPassive) && compatible(TcpSo, TcpSo));
        assert!(!compatible(TcpActive, TcpActive) && !compatible(TcpPassive, TcpPassive));
        assert!(!compatible(Udp, TcpPassive) && !compatible(TcpSo, TcpPassive));
    }
}
