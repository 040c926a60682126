//! Network programs that run on simulated hosts: servers the internet provides (STUN,
//! TURN, a rendezvous point), measurement clients (RFC 5780 NAT discovery, UDP hole
//! punching, ICE-TCP connectivity, traffic generators) and small probes used by the
//! scenario suites.

pub mod discovery;
pub mod echo;
pub mod probe;
pub mod punch;
pub mod stun_server;
pub mod tcp_punch;
pub mod traffic;
pub mod turn;
