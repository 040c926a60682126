//! TURN client (RFC 5766) with TCP allocations (RFC 6062), as jamid's relay candidates
//! use them (PROTOCOLS §6.3). Sans-IO: the driver owns the sockets. The client asks for
//! datagrams, TCP connections to the server and writes through [`Transmit`]s, and takes
//! back datagrams, connection events and timeouts, each with `now` in milliseconds.
//!
//! The control channel to the server is UDP or one TCP connection ([`CONTROL`]); over
//! TCP, STUN and ChannelData are cut from the byte stream by [`stun::stream`]. A TCP
//! allocation relays each peer on its own data connection to the server, bound to the
//! peer connection with ConnectionBind and then carrying raw bytes.

mod auth;
mod client;
pub mod config;

pub use client::{Stats, TurnClient, TurnError, TurnEvent};
pub use config::TurnAccountConfig;

use std::net::SocketAddr;

/// A TCP connection the driver holds to the TURN server, named by the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u32);

/// The control connection when the control channel is TCP.
pub const CONTROL: ConnId = ConnId(0);

/// Transport of the control channel, or of the relay (REQUESTED-TRANSPORT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// What the driver must do on the client's behalf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transmit {
    /// Send a UDP datagram from the client's socket.
    Datagram { to: SocketAddr, data: Vec<u8> },
    /// Open TCP connection `conn` to `to`; answer with `handle_connected` or `handle_closed`.
    Open { conn: ConnId, to: SocketAddr },
    /// Write bytes on an open connection.
    Write { conn: ConnId, data: Vec<u8> },
    /// Close a connection (no `handle_closed` is expected back).
    Close { conn: ConnId },
}

/// Settings of one client; the account keys map onto it with [`ClientConfig::from_account`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// The server's resolved address (the driver resolves `TURN.server`).
    pub server: SocketAddr,
    pub username: String,
    pub password: String,
    /// Expected realm; the key is computed with the realm the server announces, and a
    /// different one is reported in [`Stats::realm_mismatch`].
    pub realm: String,
    pub control: Transport,
    pub relay: Transport,
    /// LIFETIME asked for in Allocate, seconds (the server may grant less).
    pub lifetime: u32,
    /// Seeds the transaction ids.
    pub seed: u64,
}

impl ClientConfig {
    pub fn from_account(
        account: &TurnAccountConfig,
        server: SocketAddr,
        control: Transport,
        relay: Transport,
        seed: u64,
    ) -> Self {
        ClientConfig {
            server,
            username: account.username.clone(),
            password: account.password.clone(),
            realm: account.realm.clone(),
            control,
            relay,
            lifetime: client::DEFAULT_LIFETIME_SECS,
            seed,
        }
    }
}

#[cfg(test)]
mod tests;
