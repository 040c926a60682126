//! Connections between devices (PROTOCOLS §6): connection requests over the DHT, ICE over
//! TCP and UDP with STUN/TURN, TLS 1.3 with Jami's chain rules, and the multiplexed socket
//! whose channels carry SIP, git, sync and file transfers. Every part is sans-IO, so the
//! tokio driver and the simulator run the same code.

pub mod framing;
pub mod ice;
pub mod ice_msg;
pub mod manager;
pub mod mux;
pub mod request;
pub mod stun_client;
pub mod tls;
pub mod turn;
