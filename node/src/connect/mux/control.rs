//! Messages of the control channel (0) and the protocol channel (0xFFFF), PROTOCOLS §6.5.
//!
//! `ChannelRequest` is jamid's `MSGPACK_DEFINE(name, channel, state)`: an array
//! `[name (str), channel (uint16), state (int)]` with state 0 REQUEST, 1 ACCEPT, 2 DECLINE.
//! Protocol messages are one-key maps: version `{"v": 1}` and beacons `{"p": true}` /
//! `{"p": false}`; jamid recognises them by the first key, on both channels. A frame's
//! data may hold several objects back to back.

use crate::dht::msgpack::{self, Kind, MsgpackError, Node, Writer};

/// `ChannelRequestState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelState {
    Request = 0,
    Accept = 1,
    Decline = 2,
}

/// A channel request or its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelRequest {
    pub name: String,
    pub channel: u16,
    pub state: ChannelState,
}

impl ChannelRequest {
    /// msgpack-c bytes: `[str name, uint channel, int state]`.
    pub fn pack(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.array_len(3)
            .str(&self.name)
            .uint(u64::from(self.channel))
            .int(self.state as i64);
        w.into_bytes()
    }
}

/// One object of a control or protocol frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlMsg {
    Channel(ChannelRequest),
    /// `{"v": n}`: the peer's multiplexed-socket version.
    Version(i64),
    /// `{"p": true}` asks for a response, `{"p": false}` is the response.
    Beacon(bool),
}

/// Why a control object was refused (jamid logs and drops the rest of the frame).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("malformed msgpack: {0}")]
    Msgpack(#[from] MsgpackError),
    #[error("unknown protocol message")]
    UnknownMessage,
    #[error("control object has the wrong shape: {0}")]
    Shape(&'static str),
}

/// Our version `{"v": 1}` (jamid `MULTIPLEXED_SOCKET_VERSION`).
pub const VERSION: i64 = 1;

/// Pack a protocol message (`Version` or `Beacon`) as jamid's `MSGPACK_DEFINE_MAP` does.
pub fn pack(msg: &ControlMsg) -> Vec<u8> {
    let mut w = Writer::new();
    match msg {
        ControlMsg::Channel(c) => return c.pack(),
        ControlMsg::Version(v) => {
            w.map_len(1).str("v").int(*v);
        }
        ControlMsg::Beacon(p) => {
            w.map_len(1).str("p").bool(*p);
        }
    }
    w.into_bytes()
}

/// Iterate the objects of a control/protocol frame. Stops at the first error, as jamid's
/// loop does when an object fails to convert.
pub fn parse_all(data: &[u8]) -> impl Iterator<Item = Result<ControlMsg, ControlError>> + '_ {
    let mut off = 0;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || off >= data.len() {
            return None;
        }
        let rest = data.get(off..).unwrap_or_default();
        let r = msgpack::parse_prefix(rest)
            .map_err(ControlError::from)
            .and_then(|(node, used)| {
                off += used;
                from_node(&node)
            });
        failed = r.is_err();
        Some(r)
    })
}

/// One decoded object: a map is a protocol message (by its first key), anything else
/// must be a `ChannelRequest` array.
pub fn from_node(n: &Node<'_>) -> Result<ControlMsg, ControlError> {
    if let Some(map) = n.as_map() {
        let (key, _) = map.first().ok_or(ControlError::UnknownMessage)?;
        let key = key.as_str_bytes().ok_or(ControlError::UnknownMessage)?;
        return match key {
            b"p" => n
                .get("p")
                .and_then(Node::as_bool)
                .map(ControlMsg::Beacon)
                .ok_or(ControlError::Shape("p")),
            b"v" => n
                .get("v")
                .and_then(Node::as_i64)
                .map(ControlMsg::Version)
                .ok_or(ControlError::Shape("v")),
            _ => Err(ControlError::UnknownMessage),
        };
    }
    let a = n.as_array().ok_or(ControlError::Shape("not an array"))?;
    let [name, channel, state, ..] = a else {
        return Err(ControlError::Shape("fewer than 3 fields"));
    };
    let name = match name.kind {
        Kind::Str(b) | Kind::Bin(b) => {
            String::from_utf8(b.to_vec()).map_err(|_| ControlError::Shape("name"))?
        }
        _ => return Err(ControlError::Shape("name")),
    };
    let channel = channel
        .as_u64()
        .and_then(|c| u16::try_from(c).ok())
        .ok_or(ControlError::Shape("channel"))?;
    let state = match state.as_i64() {
        Some(0) => ChannelState::Request,
        Some(1) => ChannelState::Accept,
        Some(2) => ChannelState::Decline,
        _ => return Err(ControlError::Shape("state")),
    };
    Ok(ControlMsg::Channel(ChannelRequest {
        name,
        channel,
        state,
    }))
}
