//! # netsim: a deterministic discrete-event network simulator
//!
//! One priority queue of events, a virtual clock that jumps from event to event, and one
//! seed from which every random choice is derived: the same seed gives a byte-identical
//! trace. It models hosts, links (latency, jitter, random and burst loss, bandwidth with
//! a bounded queue, reordering, duplication), NAT boxes of every RFC 4787 (UDP) and
//! RFC 5382 (TCP) behaviour (nested for CGNAT), VPN tunnels, Tor (TCP only, through an
//! exit), isolated LANs with multicast, a TCP-like stream transport with simultaneous
//! open, STUN and TURN servers, faults (partitions, clogging, crash and restart, clock
//! drift), a trace and per-host pcaps. The path [`oracle`] predicts from the topology
//! which UDP and TCP paths two hosts can use.
//!
//! It knows nothing of Jami: applications are plain state machines ([`App`]) that act
//! through a [`Ctx`].

pub mod app;
pub mod apps;
pub mod host;
pub mod link;
pub mod nat;
pub mod node;
pub mod oracle;
pub mod packet;
pub mod pcap;
pub mod sim;
pub mod tcp;
pub mod time;
pub mod trace;

pub use app::{App, AppId, Ctx, NetError, TcpEvent};
pub use link::{LinkParams, LinkSpec, Loss};
pub use nat::{Behaviour, NatConfig, NatType, UnsolicitedSyn};
pub use node::{GatewayKind, HostOpts, NodeKind};
pub use sim::{
    Clog, ConnId, LinkId, ListenerId, NodeId, Partition, Sabotage, Sim, SimConfig, SockId,
};
/// The STUN/TURN codec lives in its own crate so the node's ICE agent can use it too.
pub use stun;
pub use time::{parse_duration, HostClock, SimTime};
