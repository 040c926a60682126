//! SIP messaging between devices (PROTOCOLS §6.7): the SIP codec and its stream framing,
//! MESSAGE over a `sip` channel, and the DHT fallback (an encrypted ImMessage at the
//! peer's inbox) used while no channel exists. All sans-IO.

pub mod channel;
pub mod fallback;
pub mod message;
pub mod multipart;
pub mod stream;

#[cfg(test)]
mod tests;

pub use channel::{ChannelConfig, ReceivedMessage, SendError, SendFailure, SipChannel, SipEvent};
pub use message::{Header, ParseError, SipMessage, StartLine};
pub use stream::{StreamDecoder, StreamError, MAX_MESSAGE_LEN};
