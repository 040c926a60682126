//! A [`Value`] as the OpenDHT 2.4.12 proxy writes and reads it (`Value::toJson` /
//! `Value(Json)`, PROTOCOLS §3): `id` as a decimal string, binary fields in base64,
//! `owner` as a PEM public key, `to` in hex. Keys are written in jsoncpp's
//! (alphabetical) order so our lines match the official server's byte for byte.
//!
//! Reading is as lenient as OpenDHT's (missing fields take defaults) but never panics:
//! anything that cannot become a value is an error.

use crate::dht::value::{Body, SignedValue, Value, ValueData};
use crate::dht::InfoHash;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{Map, Value as Json};
use thiserror::Error;

/// Why a JSON document is not a value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum JsonError {
    #[error("not JSON: {0}")]
    Syntax(String),
    #[error("a value must be a JSON object")]
    NotAnObject,
    #[error("field `{0}` has the wrong form")]
    BadField(&'static str),
}

/// A value read from a proxy line or body, with the proxy's extra flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyValue {
    pub value: Value,
    /// `"expired": true` on a listen stream: the value is gone.
    pub expired: bool,
    /// `"permanent"` present on a put (true or a push-subscription object).
    pub permanent: bool,
}

const PEM_BEGIN: &str = "-----BEGIN PUBLIC KEY-----";
const PEM_END: &str = "-----END PUBLIC KEY-----";

/// DER SubjectPublicKeyInfo as OpenDHT 2.4.12 writes it: GnuTLS's PEM (64 columns, final
/// newline) followed by a NUL byte (`PublicKey::toString` keeps the terminator GnuTLS
/// counts in its size; seen in `dhtnode --proxyserver` output).
pub fn public_key_pem(der: &[u8]) -> String {
    let b64 = B64.encode(der);
    let mut s = String::with_capacity(b64.len() + 64);
    s.push_str(PEM_BEGIN);
    s.push('\n');
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        s.push('\n');
    }
    s.push_str(PEM_END);
    s.push_str("\n\0");
    s
}

/// The DER inside a PEM public key (any line layout; trailing NULs tolerated).
pub fn public_key_der(pem: &str) -> Option<Vec<u8>> {
    let start = pem.find(PEM_BEGIN)? + PEM_BEGIN.len();
    let end = start + pem[start..].find(PEM_END)?;
    let b64: String = pem[start..end]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    B64.decode(b64).ok().filter(|d| !d.is_empty())
}

/// `Value::toJson()`.
pub fn to_json(v: &Value) -> Json {
    let mut m = Map::new();
    match &v.data {
        ValueData::Encrypted(c) => {
            m.insert("cypher".into(), B64.encode(c).into());
            m.insert("id".into(), v.id.to_string().into());
        }
        ValueData::Plain(b) => {
            m.insert("data".into(), B64.encode(&b.data).into());
            m.insert("id".into(), v.id.to_string().into());
            body_tail(&mut m, v.priority, b);
            return Json::Object(m);
        }
        ValueData::Signed(s) => {
            m.insert("data".into(), B64.encode(&s.body.data).into());
            m.insert("id".into(), v.id.to_string().into());
            m.insert("owner".into(), public_key_pem(&s.owner).into());
            if v.priority != 0 {
                m.insert("prio".into(), v.priority.into());
            }
            m.insert("seq".into(), s.seq.into());
            if !s.sig.is_empty() {
                m.insert("sig".into(), B64.encode(&s.sig).into());
            }
            if let Some(to) = s.to.filter(|t| !t.is_zero()) {
                m.insert("to".into(), to.to_string().into());
            }
            m.insert("type".into(), s.body.type_id.into());
            if !s.body.utype.is_empty() {
                m.insert("utype".into(), s.body.utype.clone().into());
            }
            return Json::Object(m);
        }
    }
    if v.priority != 0 {
        m.insert("prio".into(), v.priority.into());
    }
    Json::Object(m)
}

fn body_tail(m: &mut Map<String, Json>, priority: u32, b: &Body) {
    if priority != 0 {
        m.insert("prio".into(), priority.into());
    }
    m.insert("type".into(), b.type_id.into());
    if !b.utype.is_empty() {
        m.insert("utype".into(), b.utype.clone().into());
    }
}

/// One line of a get or listen stream: the value, plus `"expired": true` when it expired.
pub fn to_line(v: &Value, expired: bool) -> String {
    let mut j = to_json(v);
    if expired {
        if let Json::Object(m) = &mut j {
            m.insert("expired".into(), true.into());
        }
    }
    let mut s = j.to_string();
    s.push('\n');
    s
}

/// `std::stoull` on a string (leading digits; anything else is 0, OpenDHT's invalid id),
/// `asLargestUInt` on a number.
fn parse_id(j: Option<&Json>) -> u64 {
    match j {
        Some(Json::String(s)) => {
            let t = s.trim_start();
            let t = t.strip_prefix('+').unwrap_or(t);
            let digits: String = t.chars().take_while(|c| c.is_ascii_digit()).collect();
            digits.parse().unwrap_or(0)
        }
        Some(Json::Number(n)) => n.as_u64().unwrap_or(0),
        _ => 0,
    }
}

fn b64_field(m: &Map<String, Json>, key: &'static str) -> Result<Option<Vec<u8>>, JsonError> {
    match m.get(key) {
        Some(Json::String(s)) => B64
            .decode(s.trim())
            .map(Some)
            .map_err(|_| JsonError::BadField(key)),
        _ => Ok(None),
    }
}

fn int_field<T>(m: &Map<String, Json>, key: &'static str) -> Result<T, JsonError>
where
    T: TryFrom<i64> + Default,
{
    match m.get(key) {
        None | Some(Json::Null) => Ok(T::default()),
        Some(Json::Number(n)) => n
            .as_i64()
            .and_then(|i| T::try_from(i).ok())
            .ok_or(JsonError::BadField(key)),
        Some(Json::Bool(b)) => T::try_from(i64::from(*b)).map_err(|_| JsonError::BadField(key)),
        Some(_) => Err(JsonError::BadField(key)),
    }
}

/// `Value(Json)` plus the `expired` / `permanent` flags.
pub fn from_json(j: &Json) -> Result<ProxyValue, JsonError> {
    let m = j.as_object().ok_or(JsonError::NotAnObject)?;
    let id = parse_id(m.get("id"));
    let priority = match m.get("prio") {
        Some(Json::Number(n)) => n
            .as_u64()
            .and_then(|p| u32::try_from(p).ok())
            .ok_or(JsonError::BadField("prio"))?,
        _ => 0,
    };
    let expired = matches!(m.get("expired"), Some(Json::Bool(true)));
    let permanent = m.contains_key("permanent");
    if let Some(c) = b64_field(m, "cypher")?.filter(|c| !c.is_empty()) {
        return Ok(ProxyValue {
            value: Value {
                id,
                data: ValueData::Encrypted(c),
                priority,
            },
            expired,
            permanent,
        });
    }
    let body = Body {
        type_id: int_field(m, "type")?,
        data: b64_field(m, "data")?.unwrap_or_default(),
        utype: match m.get("utype") {
            Some(Json::String(s)) => s.clone(),
            _ => String::new(),
        },
    };
    let owner = match m.get("owner") {
        Some(Json::String(s)) => {
            Some(public_key_der(s.trim_end_matches('\0')).ok_or(JsonError::BadField("owner"))?)
        }
        _ => None,
    };
    let data = match owner {
        None => ValueData::Plain(body),
        Some(owner) => {
            let to = match m.get("to") {
                Some(Json::String(s)) => Some(
                    s.parse::<InfoHash>()
                        .map_err(|_| JsonError::BadField("to"))?,
                ),
                _ => None,
            }
            .filter(|t| !t.is_zero());
            ValueData::Signed(SignedValue {
                seq: int_field(m, "seq")?,
                owner,
                to,
                body,
                sig: b64_field(m, "sig")?.unwrap_or_default(),
                received_body: None,
            })
        }
    };
    Ok(ProxyValue {
        value: Value { id, data, priority },
        expired,
        permanent,
    })
}

/// Parse one line or body.
pub fn from_str(s: &str) -> Result<ProxyValue, JsonError> {
    let j: Json = serde_json::from_str(s).map_err(|e| JsonError::Syntax(e.to_string()))?;
    from_json(&j)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn signed() -> Value {
        Value {
            id: 18_446_744_073_709_551_615,
            data: ValueData::Signed(SignedValue {
                seq: 3,
                owner: (0u8..=200).collect(),
                to: Some(InfoHash([0xab; 20])),
                body: Body {
                    type_id: 9,
                    data: b"hello".to_vec(),
                    utype: "text/plain".into(),
                },
                sig: vec![1, 2, 3, 4],
                received_body: None,
            }),
            priority: 2,
        }
    }

    #[test]
    fn plain_value_has_opendht_form() {
        let v = Value::plain(42, 3, b"abc".to_vec());
        assert_eq!(
            to_line(&v, false),
            "{\"data\":\"YWJj\",\"id\":\"42\",\"type\":3}\n"
        );
        let back = from_str(&to_line(&v, false)).unwrap();
        assert_eq!(back.value, v);
        assert!(!back.expired && !back.permanent);
    }

    #[test]
    fn signed_value_round_trips_with_pem_owner_and_hex_to() {
        let v = signed();
        let j = to_json(&v);
        let keys: Vec<&str> = j.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted, "jsoncpp writes keys in sorted order");
        assert_eq!(j["id"], "18446744073709551615");
        assert_eq!(j["to"], "ab".repeat(20));
        assert_eq!(j["seq"], 3);
        assert_eq!(j["prio"], 2);
        assert_eq!(j["sig"], "AQIDBA==");
        let owner = j["owner"].as_str().unwrap();
        assert!(owner.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert!(owner.ends_with("\n-----END PUBLIC KEY-----\n\0"));
        assert!(owner.lines().all(|l| l.len() <= 64));
        assert_eq!(from_json(&j).unwrap().value, v);
    }

    #[test]
    fn encrypted_value_carries_only_id_and_cypher() {
        let v = Value {
            id: 7,
            data: ValueData::Encrypted(vec![9; 40]),
            priority: 0,
        };
        let j = to_json(&v);
        assert_eq!(j.as_object().unwrap().len(), 2);
        assert_eq!(from_json(&j).unwrap().value, v);
    }

    #[test]
    fn id_may_be_a_number_and_bad_ids_are_invalid() {
        let v = from_str(r#"{"id":12345,"type":1,"data":""}"#).unwrap();
        assert_eq!(v.value.id, 12345);
        assert_eq!(from_str(r#"{"id":"77abc"}"#).unwrap().value.id, 77);
        assert_eq!(from_str(r#"{"id":"x"}"#).unwrap().value.id, 0);
        assert_eq!(from_str(r#"{"id":-3}"#).unwrap().value.id, 0);
        assert_eq!(from_str(r#"{}"#).unwrap().value, Value::plain(0, 0, vec![]));
    }

    #[test]
    fn expired_and_permanent_flags() {
        let line = to_line(&Value::plain(1, 0, b"x".to_vec()), true);
        assert!(line.contains("\"expired\":true"));
        assert!(from_str(&line).unwrap().expired);
        assert!(
            from_str(r#"{"id":"1","permanent":true}"#)
                .unwrap()
                .permanent
        );
        assert!(
            from_str(r#"{"id":"1","permanent":{"key":"t"}}"#)
                .unwrap()
                .permanent
        );
    }

    #[test]
    fn malformed_fields_are_errors() {
        assert_eq!(from_str("[1]"), Err(JsonError::NotAnObject));
        assert_eq!(
            from_str(r#"{"data":"!!"}"#),
            Err(JsonError::BadField("data"))
        );
        assert_eq!(
            from_str(r#"{"type":70000}"#),
            Err(JsonError::BadField("type"))
        );
        assert_eq!(
            from_str(r#"{"owner":"nope"}"#),
            Err(JsonError::BadField("owner"))
        );
        assert!(matches!(from_str("{"), Err(JsonError::Syntax(_))));
    }

    fn arb_json() -> impl Strategy<Value = Json> {
        let leaf = prop_oneof![
            Just(Json::Null),
            any::<bool>().prop_map(Json::from),
            any::<i64>().prop_map(Json::from),
            any::<u64>().prop_map(Json::from),
            any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
                .map(Json::Number)
                .unwrap_or(Json::Null)),
            ".{0,40}".prop_map(Json::from),
            Just(Json::from(public_key_pem(&[1, 2, 3]))),
        ];
        let keys = prop_oneof![
            Just("id"),
            Just("cypher"),
            Just("sig"),
            Just("seq"),
            Just("owner"),
            Just("to"),
            Just("type"),
            Just("data"),
            Just("utype"),
            Just("prio"),
            Just("expired"),
            Just("permanent"),
            Just("x"),
        ];
        leaf.prop_recursive(3, 24, 6, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Json::Array),
                proptest::collection::vec((keys.clone(), inner), 0..8).prop_map(|kv| {
                    Json::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
                }),
            ]
        })
    }

    proptest! {
        #[test]
        fn parsing_never_panics(j in arb_json()) {
            if let Ok(p) = from_json(&j) {
                // What parses re-encodes to something that parses to the same value,
                // except a signed value's `to`/`sig` forms that normalise.
                let again = from_json(&to_json(&p.value)).unwrap();
                prop_assert_eq!(again.value, p.value);
            }
        }

        #[test]
        fn parsing_arbitrary_text_never_panics(s in ".{0,200}") {
            let _ = from_str(&s);
        }
    }
}
