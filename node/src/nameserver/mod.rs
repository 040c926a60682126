//! The Jami name server (PROTOCOLS.md §5): domain rules, an embedded store, the HTTP
//! API (`jamisim node nameserver`) and the client the node resolves names with.

pub mod client;
pub mod domain;
pub mod http;
pub mod store;

pub use client::{ClientConfig, LookupError, NsClient, RegisterError, TcpConnector};
pub use domain::{Addr, Insert, Name, NsError, Record, Registry, Store};
pub use store::FileStore;
