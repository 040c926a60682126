//! The OpenDHT 2.4.12 DHT proxy (PROTOCOLS §3): a REST API over HTTP/1.1 that lets a
//! client use the DHT through a node of ours ([`server`] + [`backend`]), its value JSON
//! ([`json`]), and a client for any such proxy, ours or OpenDHT's ([`client`]), with
//! OpenDHT's secure layer on top ([`secure_client`]); and the same client sans-IO
//! ([`stream`], HTTP framing in [`http1`]) for the one device both drivers run.

pub mod backend;
pub mod client;
pub mod http1;
pub mod json;
pub mod secure_client;
pub mod server;
pub mod stream;
