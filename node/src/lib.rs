//! The jamisim reference Jami node: identity, an OpenDHT-compatible DHT, and (as they
//! arrive) connections, swarm conversations and calls. Protocol cores are sans-IO: they
//! take time and randomness as inputs and never touch a socket.

pub mod connect;
pub mod contacts;
pub mod crypto;
pub mod device;
pub mod dht;
pub mod discovery;
pub mod driver;
pub mod identity;
pub mod nameserver;
pub mod net;
pub mod presence;
pub mod sip;
pub mod swarm;
