//! Connectivity-check messages (RFC 8445 §7.1–7.3): STUN Binding with USERNAME
//! `remote:local` ufrag, PRIORITY, USE-CANDIDATE, ICE-CONTROLLING / ICE-CONTROLLED with the
//! tie-breaker, short-term MESSAGE-INTEGRITY (key = the receiver's password) and
//! FINGERPRINT. The ICE attributes are not in the shared codec's enum; they travel as
//! `Attribute::Unknown` with the RFC 8445 §16.1 type codes.

use stun::{Attribute, Class, ErrorCode, Message, Method};

pub const PRIORITY: u16 = 0x0024;
pub const USE_CANDIDATE: u16 = 0x0025;
pub const ICE_CONTROLLED: u16 = 0x8029;
pub const ICE_CONTROLLING: u16 = 0x802A;
/// RFC 8445 §7.3.1.1.
pub const ROLE_CONFLICT: u16 = 487;

/// What a check request says about its sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRequest {
    pub priority: u32,
    pub use_candidate: bool,
    /// `Some(true)` for ICE-CONTROLLING, `Some(false)` for ICE-CONTROLLED.
    pub controlling: Option<bool>,
    pub tie_breaker: u64,
}

fn unknown(msg: &Message, typ: u16) -> Option<&[u8]> {
    msg.attrs.iter().find_map(|a| match a {
        Attribute::Unknown { typ: t, value } if *t == typ => Some(value.as_slice()),
        _ => None,
    })
}

/// Builds a check request, signed with the peer's password.
pub fn request(txid: [u8; 12], username: &str, key: &[u8], r: &CheckRequest) -> Vec<u8> {
    let mut m = Message::new(Class::Request, Method::Binding, txid);
    m.add(Attribute::Username(username.to_owned()));
    m.add(Attribute::Unknown {
        typ: PRIORITY,
        value: r.priority.to_be_bytes().to_vec(),
    });
    if r.use_candidate {
        m.add(Attribute::Unknown {
            typ: USE_CANDIDATE,
            value: Vec::new(),
        });
    }
    let role = if r.controlling == Some(true) {
        ICE_CONTROLLING
    } else {
        ICE_CONTROLLED
    };
    m.add(Attribute::Unknown {
        typ: role,
        value: r.tie_breaker.to_be_bytes().to_vec(),
    });
    m.encode_with(Some(key), true)
}

/// Reads the ICE attributes of a decoded request; `None` when PRIORITY is missing or
/// malformed or a role attribute has the wrong size (RFC 8445 §7.3: 400 Bad Request).
pub fn parse_request(msg: &Message) -> Option<CheckRequest> {
    let priority = u32::from_be_bytes(unknown(msg, PRIORITY)?.try_into().ok()?);
    let role = |typ| unknown(msg, typ).map(|v| <[u8; 8]>::try_from(v).map(u64::from_be_bytes));
    let (controlling, tie_breaker) = match (role(ICE_CONTROLLING), role(ICE_CONTROLLED)) {
        (Some(Ok(t)), None) => (Some(true), t),
        (None, Some(Ok(t))) => (Some(false), t),
        (None, None) => (None, 0),
        _ => return None,
    };
    Some(CheckRequest {
        priority,
        use_candidate: unknown(msg, USE_CANDIDATE).is_some(),
        controlling,
        tie_breaker,
    })
}

/// Success response carrying the request's source as XOR-MAPPED-ADDRESS.
pub fn success(req: &Message, mapped: std::net::SocketAddr, key: &[u8]) -> Vec<u8> {
    req.reply(Class::SuccessResponse)
        .with(Attribute::XorMappedAddress(mapped))
        .encode_with(Some(key), true)
}

/// Error response (487 role conflict, 400 bad request), signed like a success.
pub fn error(req: &Message, code: u16, key: &[u8]) -> Vec<u8> {
    req.reply(Class::ErrorResponse)
        .with(Attribute::ErrorCode(match code {
            ROLE_CONFLICT => ErrorCode::new(code, "Role Conflict"),
            _ => ErrorCode::standard(code),
        }))
        .encode_with(Some(key), true)
}

/// Binding Indication used as keepalive: FINGERPRINT only (RFC 8445 §11, pjnath
/// `ice_keep_alive`).
pub fn keepalive(txid: [u8; 12]) -> Vec<u8> {
    Message::new(Class::Indication, Method::Binding, txid).encode_with(None, true)
}

/// Binding request to a STUN server for server-reflexive gathering (no credentials).
pub fn gather(txid: [u8; 12]) -> Vec<u8> {
    Message::new(Class::Request, Method::Binding, txid).encode_with(None, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trip_and_integrity() {
        let r = CheckRequest {
            priority: 7,
            use_candidate: true,
            controlling: Some(true),
            tie_breaker: 42,
        };
        let bytes = request([1; 12], "a:b", b"pwd", &r);
        let m = Message::decode(&bytes).unwrap();
        assert!(m.check_integrity(&bytes, b"pwd") && !m.check_integrity(&bytes, b"other"));
        assert!(Message::check_fingerprint(&bytes));
        assert_eq!(parse_request(&m), Some(r));
    }

    #[test]
    fn both_roles_or_missing_priority_is_bad_request() {
        let mut m = Message::new(Class::Request, Method::Binding, [0; 12]);
        assert_eq!(parse_request(&m), None);
        m.add(Attribute::Unknown {
            typ: PRIORITY,
            value: vec![0, 0, 0, 1],
        });
        m.add(Attribute::Unknown {
            typ: ICE_CONTROLLING,
            value: vec![0; 8],
        });
        m.add(Attribute::Unknown {
            typ: ICE_CONTROLLED,
            value: vec![0; 8],
        });
        assert_eq!(parse_request(&m), None);
    }
}
