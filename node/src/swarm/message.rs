//! Commit messages as jamid 20230206 writes and reads them (PROTOCOLS §7.3): a compact
//! JSON object whose keys JsonCpp sorts bytewise and whose strings it escapes its own way
//! (every non-ASCII character as a `\u` escape of its UTF-16 units, `/` and DEL left as
//! they are), so a message we write is byte for byte the one jamid would write. Merge
//! commits are plain text.

use std::collections::BTreeMap;
use std::fmt::Write;

/// The conversation modes of the initial commit's `"mode"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    OneToOne = 0,
    AdminInvitesOnly = 1,
    InvitesOnly = 2,
    Public = 3,
}

impl Mode {
    pub fn from_int(n: i64) -> Option<Mode> {
        Some(match n {
            0 => Mode::OneToOne,
            1 => Mode::AdminInvitesOnly,
            2 => Mode::InvitesOnly,
            3 => Mode::Public,
            _ => return None,
        })
    }
}

/// `"action"` of a `member` commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum MemberAction {
    Add,
    Join,
    Remove,
    Ban,
    Unban,
}

impl MemberAction {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberAction::Add => "add",
            MemberAction::Join => "join",
            MemberAction::Remove => "remove",
            MemberAction::Ban => "ban",
            MemberAction::Unban => "unban",
        }
    }

    pub fn parse(s: &str) -> Option<MemberAction> {
        Some(match s {
            "add" => MemberAction::Add,
            "join" => MemberAction::Join,
            "remove" => MemberAction::Remove,
            "ban" => MemberAction::Ban,
            "unban" => MemberAction::Unban,
            _ => return None,
        })
    }

    /// jamid's `conversationMemberEvent` code.
    pub fn event_code(self) -> i32 {
        self as i32
    }
}

/// One field value: jamid writes strings everywhere except the initial commit's mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Field {
    Str(String),
    Int(i64),
}

impl Field {
    /// JsonCpp's `asString()` of a scalar (what jamid puts in its message maps).
    pub fn as_string(&self) -> String {
        match self {
            Field::Str(s) => s.clone(),
            Field::Int(n) => n.to_string(),
        }
    }
}

pub const TEXT: &str = "text/plain";
pub const EDIT: &str = "application/edited-message";
pub const MEMBER: &str = "member";
pub const VOTE: &str = "vote";
pub const INITIAL: &str = "initial";
pub const PROFILE: &str = "application/update-profile";
pub const DATA_TRANSFER: &str = "application/data-transfer+json";
pub const CALL_HISTORY: &str = "application/call-history+json";

/// A commit's JSON message: flat, keys sorted (a `BTreeMap` of byte strings sorts as
/// JsonCpp's `CZString` does).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Message {
    pub fields: BTreeMap<String, Field>,
}

impl Message {
    fn of(pairs: &[(&str, &str)]) -> Message {
        let mut m = Message::default();
        for (k, v) in pairs {
            m.set(k, v);
        }
        m
    }

    pub fn set(&mut self, key: &str, value: &str) -> &mut Self {
        self.fields
            .insert(key.to_string(), Field::Str(value.to_string()));
        self
    }

    /// The initial commit; `invited` is the peer of a one-to-one conversation.
    pub fn initial(mode: Mode, invited: Option<&str>) -> Message {
        let mut m = Message::of(&[("type", INITIAL)]);
        m.fields.insert("mode".into(), Field::Int(mode as i64));
        if let Some(uri) = invited {
            m.set("invited", uri);
        }
        m
    }

    pub fn text(body: &str) -> Message {
        Message::of(&[("body", body), ("type", TEXT)])
    }

    pub fn reply(body: &str, to: &str) -> Message {
        Message::of(&[("body", body), ("reply-to", to), ("type", TEXT)])
    }

    pub fn reaction(emoji: &str, to: &str) -> Message {
        Message::of(&[("body", emoji), ("react-to", to), ("type", TEXT)])
    }

    pub fn edit(body: &str, edited: &str) -> Message {
        Message::of(&[("body", body), ("edit", edited), ("type", EDIT)])
    }

    pub fn member(action: MemberAction, uri: &str) -> Message {
        Message::of(&[("action", action.as_str()), ("type", MEMBER), ("uri", uri)])
    }

    pub fn vote(uri: &str) -> Message {
        Message::of(&[("type", VOTE), ("uri", uri)])
    }

    pub fn update_profile() -> Message {
        Message::of(&[("type", PROFILE)])
    }

    /// A file offered in the conversation (§9.1): `tid` a random id, the size and the
    /// SHA3-512 of the file as jamid writes them (decimal and lowercase hex strings).
    pub fn data_transfer(tid: u64, display_name: &str, total_size: u64, sha3sum: &str) -> Message {
        Message::of(&[
            ("displayName", display_name),
            ("sha3sum", sha3sum),
            ("tid", &tid.to_string()),
            ("totalSize", &total_size.to_string()),
            ("type", DATA_TRANSFER),
        ])
    }

    /// A one-to-one call's history entry (`duration` in milliseconds).
    pub fn call_history(to: &str, duration_ms: u64) -> Message {
        Message::of(&[
            ("duration", &duration_ms.to_string()),
            ("to", to),
            ("type", CALL_HISTORY),
        ])
    }

    pub fn get(&self, key: &str) -> Option<String> {
        self.fields.get(key).map(Field::as_string)
    }

    /// `"type"`, empty when absent (jamid's `getCommitType`).
    pub fn kind(&self) -> String {
        self.get("type").unwrap_or_default()
    }

    /// The JSON text jamid's `StreamWriterBuilder` (indentation "", no comments) writes.
    pub fn to_json(&self) -> String {
        let mut out = String::from("{");
        for (i, (k, v)) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            quote(&mut out, k);
            out.push(':');
            match v {
                Field::Str(s) => quote(&mut out, s),
                Field::Int(n) => {
                    let _ = write!(out, "{n}");
                }
            }
        }
        out.push('}');
        out
    }

    /// Reads a commit message. Objects of scalars only: jamid's `asString()` throws on
    /// a nested value (its validation thread dies there), we refuse the message. Numbers
    /// and booleans read as JsonCpp prints them; null as an empty string.
    pub fn parse(text: &str) -> Result<Message, MessageError> {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| MessageError::NotJson(e.to_string()))?;
        let serde_json::Value::Object(map) = v else {
            return Err(MessageError::NotAnObject);
        };
        let mut m = Message::default();
        for (k, v) in map {
            let f = match v {
                serde_json::Value::String(s) => Field::Str(s),
                serde_json::Value::Number(n) => match n.as_i64() {
                    Some(i) => Field::Int(i),
                    None => Field::Str(n.to_string()),
                },
                serde_json::Value::Bool(b) => Field::Str(b.to_string()),
                serde_json::Value::Null => Field::Str(String::new()),
                _ => return Err(MessageError::NestedValue(k)),
            };
            m.fields.insert(k, f);
        }
        Ok(m)
    }
}

/// Why a commit message could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("not a JSON object")]
    NotAnObject,
    #[error("field {0:?} is not a string or a number")]
    NestedValue(String),
}

/// The text of a merge commit (not JSON).
pub fn merge_message(target: &str) -> String {
    format!("Merge commit '{target}'")
}

/// JsonCpp 1.9.5's `valueToQuotedStringN` with `emitUTF8 = false`.
fn quote(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x80 => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{:04x}", u);
                }
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn messages_are_jamids_bytes() {
        let b = "a".repeat(40);
        assert_eq!(
            Message::initial(Mode::OneToOne, Some(&b)).to_json(),
            format!("{{\"invited\":\"{b}\",\"mode\":0,\"type\":\"initial\"}}")
        );
        assert_eq!(
            Message::initial(Mode::InvitesOnly, None).to_json(),
            "{\"mode\":2,\"type\":\"initial\"}"
        );
        assert_eq!(
            Message::member(MemberAction::Join, &b).to_json(),
            format!("{{\"action\":\"join\",\"type\":\"member\",\"uri\":\"{b}\"}}")
        );
        assert_eq!(
            Message::text("hi").to_json(),
            "{\"body\":\"hi\",\"type\":\"text/plain\"}"
        );
        assert_eq!(
            Message::edit("x", "c1").to_json(),
            "{\"body\":\"x\",\"edit\":\"c1\",\"type\":\"application/edited-message\"}"
        );
        assert_eq!(
            Message::update_profile().to_json(),
            "{\"type\":\"application/update-profile\"}"
        );
    }

    #[test]
    fn strings_are_escaped_as_jsoncpp_does() {
        let m = Message::text("é \"q\" </a> \\ \t\n\u{1}\u{7f} 😀");
        assert_eq!(
            m.to_json(),
            "{\"body\":\"\\u00e9 \\\"q\\\" </a> \\\\ \\t\\n\\u0001\u{7f} \\ud83d\\ude00\",\"type\":\"text/plain\"}"
        );
        assert_eq!(Message::parse(&m.to_json()).unwrap(), m);
    }

    #[test]
    fn bad_messages_are_errors() {
        assert!(matches!(
            Message::parse("Merge commit 'x'"),
            Err(MessageError::NotJson(_))
        ));
        assert_eq!(Message::parse("[1]"), Err(MessageError::NotAnObject));
        assert_eq!(
            Message::parse("{\"body\":{\"a\":1}}"),
            Err(MessageError::NestedValue("body".into()))
        );
        let m = Message::parse("{\"mode\":1,\"x\":true,\"y\":null}").unwrap();
        assert_eq!(
            (m.get("mode"), m.get("x"), m.get("y")),
            (Some("1".into()), Some("true".into()), Some(String::new()))
        );
        assert_eq!(m.kind(), "");
    }

    proptest! {
        #[test]
        fn any_text_round_trips_and_parse_never_panics(body in any::<String>(), junk in any::<Vec<u8>>()) {
            let m = Message::reply(&body, "c");
            let json = m.to_json();
            prop_assert!(json.is_ascii());
            prop_assert_eq!(Message::parse(&json).unwrap(), m);
            let _ = Message::parse(&String::from_utf8_lossy(&junk));
        }
    }
}
