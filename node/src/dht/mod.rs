//! The OpenDHT 2.4.12-compatible DHT: wire and value codecs, routing table, storage,
//! tokens and rate limits, and the engine that ties them together (sans-IO).

pub mod engine;
pub mod infohash;
pub mod msgpack;
pub mod payload;
pub mod proxy;
pub mod routing;
pub mod secure;
pub mod storage;
pub mod token;
pub mod value;
pub mod wire;

pub use infohash::{xor_cmp, InfoHash};
pub use value::{Body, SignedValue, Value, ValueData, ValueError};
pub use wire::{decode, encode, Message, MessageBody, WireError};
