//! The `ice_msg` text carried in a PeerConnectionRequest (PROTOCOLS §6.2): line 1 the ICE
//! ufrag, line 2 the password, then one candidate per line in the RFC 5245/6544 attribute
//! syntax without the `a=candidate:` prefix:
//! `<foundation> <compId> <UDP|TCP> <priority> <addr> <port> typ <type>[ tcptype <t>]`.
//!
//! Written exactly as jamid's `IceTransport::getLocalCandidates` + connectionmanager do
//! (every line, the last included, ends in `\n`; IPv6 without brackets). Parsed as jamid's
//! `parseIceAttributeLine` accepts (7 or 8+ fields; text after the last field is ignored;
//! a bad candidate line is skipped, not fatal), but stricter where sscanf would wrap or
//! truncate silently (negative numbers, ports > 65535, foundations > 32 chars): those lines
//! are rejected and counted.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// Longest ice_msg accepted. jamid's own messages are a few hundred bytes (it trims to 7
/// remote candidates per component); this bounds the work done on a hostile request.
pub const MAX_ICE_MSG_LEN: usize = 16 * 1024;
/// Candidate lines kept; further lines are counted as rejected.
pub const MAX_CANDIDATES: usize = 64;
/// RFC 5245 foundation = 1*32 ice-char (jamid reads at most 31 with `%31s`).
pub const MAX_FOUNDATION_LEN: usize = 32;

/// Candidate type (RFC 8445 §5.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CandidateType {
    Host,
    Srflx,
    Prflx,
    Relay,
}

impl CandidateType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Host => "host",
            Self::Srflx => "srflx",
            Self::Prflx => "prflx",
            Self::Relay => "relay",
        }
    }
}

/// Transport of a candidate: UDP, or TCP with its RFC 6544 tcptype.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Transport {
    Udp,
    TcpActive,
    TcpPassive,
    TcpSo,
}

impl Transport {
    pub fn is_tcp(self) -> bool {
        self != Self::Udp
    }
}

/// One candidate line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub foundation: String,
    pub component: u8,
    pub transport: Transport,
    pub priority: u32,
    pub addr: SocketAddr,
    pub typ: CandidateType,
}

impl fmt::Display for Candidate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = if self.transport.is_tcp() {
            "TCP"
        } else {
            "UDP"
        };
        write!(
            f,
            "{} {} {} {} {} {} typ {}",
            self.foundation,
            self.component,
            proto,
            self.priority,
            self.addr.ip(),
            self.addr.port(),
            self.typ.as_str()
        )?;
        match self.transport {
            Transport::Udp => Ok(()),
            Transport::TcpActive => f.write_str(" tcptype active"),
            Transport::TcpPassive => f.write_str(" tcptype passive"),
            Transport::TcpSo => f.write_str(" tcptype so"),
        }
    }
}

/// Why a candidate line or an ice_msg was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IceMsgError {
    #[error("ice_msg longer than {MAX_ICE_MSG_LEN} bytes")]
    TooLong,
    #[error("ice_msg lacks the ufrag or password line")]
    MissingCredentials,
    #[error("candidate line is not `<6 fields> typ <type>[ tcptype <t>]`")]
    Syntax,
    #[error("bad foundation")]
    Foundation,
    #[error("bad {0} number")]
    Number(&'static str),
    #[error("bad address")]
    Address,
    #[error("unknown candidate type")]
    Type,
    #[error("TCP candidate without a valid tcptype")]
    TcpType,
    #[error("unknown transport")]
    Transport,
}

/// Parses one candidate line.
pub fn parse_candidate(line: &str) -> Result<Candidate, IceMsgError> {
    let f: Vec<&str> = line.split_ascii_whitespace().take(10).collect();
    // sscanf's literal "typ" must match for the 7th conversion, "tcptype" for the 8th.
    let has_type = f.len() >= 8 && f[6] == "typ";
    if !has_type {
        return Err(IceMsgError::Syntax);
    }
    let tcptype = (f.len() >= 10 && f[8] == "tcptype").then(|| f[9]);
    let foundation = f[0];
    if foundation.len() > MAX_FOUNDATION_LEN
        || !foundation
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    {
        return Err(IceMsgError::Foundation);
    }
    let component = dec::<u8>(f[1]).ok_or(IceMsgError::Number("component"))?;
    let priority = dec::<u32>(f[3]).ok_or(IceMsgError::Number("priority"))?;
    let ip: IpAddr = f[4].parse().map_err(|_| IceMsgError::Address)?;
    let port = dec::<u16>(f[5]).ok_or(IceMsgError::Number("port"))?;
    let typ = match f[7] {
        "host" => CandidateType::Host,
        "srflx" => CandidateType::Srflx,
        "prflx" => CandidateType::Prflx,
        "relay" => CandidateType::Relay,
        _ => return Err(IceMsgError::Type),
    };
    let transport = match f[2] {
        "UDP" => Transport::Udp,
        "TCP" => match tcptype {
            Some("active") => Transport::TcpActive,
            Some("passive") => Transport::TcpPassive,
            Some("so") => Transport::TcpSo,
            _ => return Err(IceMsgError::TcpType),
        },
        _ => return Err(IceMsgError::Transport),
    };
    Ok(Candidate {
        foundation: foundation.to_owned(),
        component,
        transport,
        priority,
        addr: SocketAddr::new(ip, port),
        typ,
    })
}

/// Plain decimal digits only (no sign, no leading `+`), as a `T`.
fn dec<T: std::str::FromStr>(s: &str) -> Option<T> {
    (!s.is_empty() && s.len() <= 10 && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// A whole ice_msg.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IceMsg {
    pub ufrag: String,
    pub pwd: String,
    pub candidates: Vec<Candidate>,
    /// Candidate lines skipped because they did not parse (jamid logs and skips them).
    pub rejected: usize,
}

impl IceMsg {
    /// Parses the text. Only a missing ufrag/password line or an oversized text fails the
    /// whole message; a bad candidate line is skipped and counted in `rejected`.
    pub fn parse(text: &str) -> Result<IceMsg, IceMsgError> {
        if text.len() > MAX_ICE_MSG_LEN {
            return Err(IceMsgError::TooLong);
        }
        let mut lines = text.split('\n');
        let (Some(ufrag), Some(pwd)) = (lines.next(), lines.next()) else {
            return Err(IceMsgError::MissingCredentials);
        };
        let mut msg = IceMsg {
            ufrag: ufrag.to_owned(),
            pwd: pwd.to_owned(),
            ..IceMsg::default()
        };
        for line in lines.filter(|l| !l.is_empty()) {
            match parse_candidate(line) {
                Ok(c) if msg.candidates.len() < MAX_CANDIDATES => msg.candidates.push(c),
                _ => msg.rejected += 1,
            }
        }
        Ok(msg)
    }
}

impl fmt::Display for IceMsg {
    /// jamid's layout: `ufrag\npwd\n` then `candidate\n` per candidate.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.ufrag)?;
        writeln!(f, "{}", self.pwd)?;
        for c in &self.candidates {
            writeln!(f, "{c}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn jamid_lines_parse_and_print_back() {
        for line in [
            "Hc0a80102 1 TCP 2130706431 192.168.1.2 45678 typ host tcptype passive",
            "Hc0a80102 1 TCP 2130706175 192.168.1.2 9 typ host tcptype active",
            "S5db8d8e1 1 TCP 1694498815 93.184.216.225 9 typ srflx tcptype active",
            "R5db8d8e1 1 UDP 16777215 2001:db8::1 3478 typ relay",
            "P1 1 TCP 1862270975 10.0.0.1 5000 typ prflx tcptype so",
        ] {
            let c = parse_candidate(line).unwrap();
            assert_eq!(c.to_string(), line);
        }
    }

    #[test]
    fn accepts_what_sscanf_accepts() {
        // Trailing extension attributes after the 7th / 8th field are ignored by sscanf.
        let c = parse_candidate("H1 1 UDP 1 10.0.0.1 1 typ host raddr 0.0.0.0 rport 0").unwrap();
        assert_eq!(c.transport, Transport::Udp);
        let c = parse_candidate("H1 1 UDP 1 10.0.0.1 1 typ host tcptype active").unwrap();
        assert_eq!(
            c.transport,
            Transport::Udp,
            "UDP ignores a tcptype, as jamid does"
        );
    }

    #[test]
    fn refuses_bad_lines() {
        use IceMsgError as E;
        let cases = [
            ("H1 1 UDP 1 10.0.0.1 1 host", E::Syntax),
            ("H1 1 UDP 1 10.0.0.1 1 type host", E::Syntax),
            ("H1 1 TCP 1 10.0.0.1 1 typ host", E::TcpType),
            ("H1 1 TCP 1 10.0.0.1 1 typ host tcptype up", E::TcpType),
            ("H1 1 SCTP 1 10.0.0.1 1 typ host", E::Transport),
            ("H1 1 UDP -1 10.0.0.1 1 typ host", E::Number("priority")),
            ("H1 1 UDP 1 10.0.0.1 70000 typ host", E::Number("port")),
            ("H1 1 UDP 1 10.0.0.300 1 typ host", E::Address),
            ("H1 1 UDP 1 10.0.0.1 1 typ nat", E::Type),
            (
                &format!("{} 1 UDP 1 10.0.0.1 1 typ host", "a".repeat(33)),
                E::Foundation,
            ),
        ];
        for (line, want) in cases {
            assert_eq!(parse_candidate(line), Err(want), "{line}");
        }
    }

    #[test]
    fn message_layout_and_skipped_lines() {
        let text = "abcd\nsecretpassword\nH1 1 UDP 5 10.0.0.1 1000 typ host\ngarbage\n\n";
        let m = IceMsg::parse(text).unwrap();
        assert_eq!(
            (m.ufrag.as_str(), m.pwd.as_str()),
            ("abcd", "secretpassword")
        );
        assert_eq!((m.candidates.len(), m.rejected), (1, 1));
        assert_eq!(
            m.to_string(),
            "abcd\nsecretpassword\nH1 1 UDP 5 10.0.0.1 1000 typ host\n"
        );
        assert_eq!(
            IceMsg::parse("only-ufrag"),
            Err(IceMsgError::MissingCredentials)
        );
        assert_eq!(
            IceMsg::parse(&"x\n".repeat(9000)),
            Err(IceMsgError::TooLong)
        );
    }

    fn arb_candidate() -> impl Strategy<Value = Candidate> {
        (
            "[A-Za-z0-9+/]{1,32}",
            any::<u8>(),
            prop_oneof![
                Just(Transport::Udp),
                Just(Transport::TcpActive),
                Just(Transport::TcpPassive),
                Just(Transport::TcpSo)
            ],
            any::<u32>(),
            any::<SocketAddr>(),
            prop_oneof![
                Just(CandidateType::Host),
                Just(CandidateType::Srflx),
                Just(CandidateType::Prflx),
                Just(CandidateType::Relay)
            ],
        )
            .prop_map(
                |(foundation, component, transport, priority, mut addr, typ)| {
                    if let SocketAddr::V6(a) = &mut addr {
                        // Written without scope/flow info, as pj_sockaddr_print does.
                        a.set_scope_id(0);
                        a.set_flowinfo(0);
                    }
                    Candidate {
                        foundation,
                        component,
                        transport,
                        priority,
                        addr,
                        typ,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn round_trip(ufrag in "[a-z0-9]{4,16}", pwd in "[a-z0-9]{22,32}",
                      candidates in proptest::collection::vec(arb_candidate(), 0..10)) {
            let m = IceMsg { ufrag, pwd, candidates, rejected: 0 };
            let text = m.to_string();
            prop_assert_eq!(IceMsg::parse(&text).unwrap(), m);
        }

        #[test]
        fn random_text_never_panics(s in "\\PC{0,300}") {
            let _ = IceMsg::parse(&s);
            let _ = parse_candidate(&s);
        }

        #[test]
        fn mutated_lines_never_panic_and_reprint_stably(c in arb_candidate(), at in any::<usize>(), b in any::<u8>()) {
            let mut bytes = c.to_string().into_bytes();
            let i = at % bytes.len();
            bytes[i] = b;
            if let Ok(s) = std::str::from_utf8(&bytes) {
                if let Ok(parsed) = parse_candidate(s) {
                    prop_assert_eq!(parse_candidate(&parsed.to_string()).unwrap(), parsed);
                }
            }
        }
    }
}
