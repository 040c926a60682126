//! Sans-IO ICE agent (RFC 8445, ICE-TCP RFC 6544 with RFC 4571 framing) for the connection
//! manager (PROTOCOLS §6.3), following what jamid's pjnath does where it matters on the
//! wire: pjnath priorities and foundations, regular nomination by the controlling side
//! (jamid sets `aggressive = PJ_FALSE`), Ta 50 ms, RTO 500 ms × 7 transmissions, Binding
//! Indication keepalives every 20–25 s, TCP active candidates advertising port 9.
//!
//! # Driving it (quinn-proto style)
//! The driver owns the sockets and the clock; the agent owns every decision.
//! 1. Bind the UDP sockets of [`Config::udp_sockets`], then [`Agent::new`]. Execute every
//!    [`Command`] from [`Agent::poll_command`]: `Listen` (a TCP listener on that address,
//!    with SO_REUSEADDR/REUSEPORT so the same port can also `Connect`), `Connect` (bind to
//!    `local` — port 0 means any — and connect; report [`Agent::handle_tcp_connected`] or
//!    [`Agent::handle_tcp_closed`]), `Close`. When the peer's simultaneous-open SYN reached
//!    our listener first, the kernel refuses that connect (the 4-tuple is taken): report
//!    it closed as any failure; the agent checks on the accepted connection instead.
//!    [`crate::driver::DeviceDriver`] does all this on real sockets.
//! 2. Relay candidates come from the TURN client: [`Agent::add_relay_candidate`]. Datagrams
//!    the agent sends from a relayed address are for the TURN client to wrap; what the
//!    TURN client unwraps comes back through [`Agent::handle_datagram`] with `local` = the
//!    relayed address.
//! 3. After [`Event::GatheringDone`], send [`Agent::local_ice_msg`] to the peer; pass the
//!    peer's with [`Agent::set_remote`].
//! 4. Feed inputs: [`Agent::handle_datagram`], [`Agent::handle_tcp_accepted`],
//!    `handle_tcp_data`, `handle_tcp_closed`, [`Agent::handle_timeout`] when the time
//!    from [`Agent::poll_timeout`] is reached. After each input drain `poll_transmit`,
//!    `poll_command`, `poll_event`, then re-read `poll_timeout`.
//! 5. On [`Event::Selected`], application bytes go through [`Agent::send`] and come out of
//!    [`Agent::poll_recv`]; on a TCP pair they are RFC 4571 framed by the agent.
//!
//! Roles per Jami: the side that received the connection request is controlling.
//!
//! # Where this differs from pjnath (on purpose)
//! - A check that fails USERNAME / MESSAGE-INTEGRITY / FINGERPRINT validation is dropped
//!   and counted ([`Stats`]), not answered with 401/400: no reflection to forged sources.
//! - Server-reflexive TCP candidates (the STUN-mapped address of the listener): passive,
//!   and S-O too when `tcp_so` is set (the S-O candidate is the listening port), which
//!   jamid never gathers. With the S-O check leaving from the listening port, an
//!   address-dependent filter opens to the peer, so the peer's active check reaches the
//!   passive srflx candidate too (`netsim::oracle::tcp_path_so_on_listen_port`).
//! - A triggered check is not sent for a pair whose own check is already in progress.
//! - The controlling side waits [`Timing::relay_nomination_delay`] rather than
//!   `nominated_check_delay` before nominating a relayed pair while direct ones are still
//!   being checked; a peer's relayed candidate that refuses our dial is dialled again
//!   later ([`RELAY_REDIALS`]), since the relay admits us only once the peer has
//!   our answer and installed a permission.
//! - No RFC 7675 consent freshness (pjnath has none either): keepalives only, and checks
//!   keep being answered after selection.

mod agent;
pub mod candidate;
pub mod check;

pub use crate::connect::ice_msg::{Candidate, CandidateType, IceMsg, Transport};
pub use agent::{
    Agent, MAX_CONNS, MAX_LOCAL_CANDIDATES, MAX_PAIRS, MAX_RECV_QUEUE, MAX_REMOTE_CANDIDATES,
    RELAY_REDIALS, RELAY_REDIAL_MAX_MS, RELAY_REDIAL_MS,
};

use std::net::SocketAddr;

/// A TCP connection handle, allocated by the agent (for `Connect`) or returned by
/// [`Agent::handle_tcp_accepted`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

/// Timers (milliseconds). Defaults are jamid's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timing {
    /// Pacing between two new checks (pjnath `PJ_ICE_TA_VAL`).
    pub ta: u64,
    /// First STUN retransmission timeout (jamid sets `stun_cfg.rto_msec = 500`).
    pub rto: u64,
    /// Transmissions of a request over UDP (pjnath `PJ_STUN_MAX_TRANSMIT_COUNT`).
    pub max_transmits: u32,
    /// How long the controlling side lets checks run once a pair is valid before it
    /// nominates (pjnath `PJ_ICE_NOMINATED_CHECK_DELAY` = 4 × 100 ms).
    pub nominated_check_delay: u64,
    /// How long the controlling side waits instead when the best valid pair is relayed
    /// and direct pairs are still being checked: a relay costs the TURN server's
    /// bandwidth and a detour, and a direct pair whose NAT filter opens only after our
    /// own check (S-O, address-dependent filtering) is often valid a second later.
    /// pjnath has no such wait.
    pub relay_nomination_delay: u64,
    /// A TCP connection for a check that is not open by then fails the check (pjnath
    /// `PJ_ICE_TCP_CONNECTION_TIMEOUT`).
    pub tcp_connect_timeout: u64,
    /// Whole negotiation budget from [`Agent::set_remote`] to a selected pair.
    pub fail_timeout: u64,
    /// Keepalive period (pjnath `PJ_ICE_SESS_KEEP_ALIVE_MIN` s) plus a random part below
    /// `keepalive_rand` (`PJ_ICE_SESS_KEEP_ALIVE_MAX_RAND` s).
    pub keepalive_min: u64,
    pub keepalive_rand: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            ta: 50,
            rto: 500,
            max_transmits: 7,
            nominated_check_delay: 400,
            relay_nomination_delay: 3_000,
            tcp_connect_timeout: 15_000,
            fail_timeout: 60_000,
            keepalive_min: 20_000,
            keepalive_rand: 5_000,
        }
    }
}

/// What the agent is given.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Seeds ufrag, password, tie-breaker and transaction ids.
    pub seed: u64,
    /// Jami: true on the side that received the connection request.
    pub controlling: bool,
    /// Bound UDP sockets; one host UDP candidate each.
    pub udp_sockets: Vec<SocketAddr>,
    /// TCP listen addresses; each gives a passive and an active (port 9) host candidate,
    /// and an `so` one on the same port when `tcp_so` is set.
    pub tcp_listen: Vec<SocketAddr>,
    pub tcp_so: bool,
    /// STUN server for server-reflexive candidates (over UDP from each UDP socket, over
    /// TCP from each listening port for passive, and with `tcp_so` S-O, srflx candidates).
    pub stun_server: Option<SocketAddr>,
    /// Public IP learnt elsewhere (jamid: the address the DHT reports, `sa`): adds a
    /// server-reflexive TCP active candidate (port 9) per listen address, as jamid's
    /// `setupGenericReflexiveCandidates` does.
    pub public_ip: Option<std::net::IpAddr>,
    pub timing: Timing,
}

/// Where an agent output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transmit {
    /// A datagram from the socket (or relayed address) `local` to `remote`.
    Udp {
        local: SocketAddr,
        remote: SocketAddr,
        payload: Vec<u8>,
    },
    /// Bytes to write on a TCP connection (already framed where the protocol frames).
    Tcp { conn: ConnId, payload: Vec<u8> },
}

/// What the driver must do with sockets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Listen {
        local: SocketAddr,
    },
    /// Bind to `local` (port 0: any port; a listening port: simultaneous open) and connect.
    Connect {
        conn: ConnId,
        local: SocketAddr,
        remote: SocketAddr,
    },
    Close {
        conn: ConnId,
    },
}

/// One end of the selected pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    pub typ: CandidateType,
    pub transport: Transport,
    pub addr: SocketAddr,
}

/// The path application data uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    Udp {
        local: SocketAddr,
        remote: SocketAddr,
    },
    Tcp {
        conn: ConnId,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Local candidates are complete ([`Agent::local_ice_msg`] may be sent).
    GatheringDone,
    /// The nominated pair; application data may flow.
    Selected {
        local: Endpoint,
        remote: Endpoint,
        path: Path,
    },
    /// No pair worked within [`Timing::fail_timeout`], or every pair failed.
    Failed,
}

/// Counters of refused or dropped input (they must stay at zero between honest peers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Not a STUN message we could decode, and not application data on a known path.
    pub malformed: u64,
    /// STUN request without a valid FINGERPRINT.
    pub bad_fingerprint: u64,
    /// USERNAME absent or not `<our ufrag>:…`.
    pub bad_username: u64,
    /// MESSAGE-INTEGRITY absent or wrong (wrong password, forged or altered).
    pub bad_integrity: u64,
    /// Response whose transaction id we never sent (or already finished).
    pub unknown_transaction: u64,
    /// 487 answers sent.
    pub role_conflicts_sent: u64,
    /// Our role switched after a conflict.
    pub role_switches: u64,
    /// Application data dropped (no path yet, or receive queue full).
    pub data_dropped: u64,
    /// Checks answered with success.
    pub checks_answered: u64,
    /// Refused dials to a peer's relayed candidate tried again.
    pub relay_redials: u64,
}

/// Why [`Agent::send`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("no selected pair yet")]
    NotConnected,
    #[error(transparent)]
    Framing(#[from] crate::connect::framing::FramingError),
}
