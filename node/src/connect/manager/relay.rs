//! A connection's TURN relay candidate (PROTOCOLS §6.3, jamid's "relay via TURN over
//! TCP"): one RFC 6062 TCP allocation per connection, as pjnath gives each ICE transport
//! its own TURN session. The relayed address is offered as a TCP passive candidate; a
//! peer that dials it reaches us through a data connection the TURN client binds, which
//! the ICE agent sees as an accepted TCP connection on the relayed address.
//!
//! The allocation is asked for with the host candidates; the candidates go to the peer
//! once it is made, or after [`RELAY_WAIT_MS`] without it (a TURN server that does not
//! answer must not stop direct paths from being tried).

use crate::connect::ice::{self, Agent, Transport};
use crate::connect::turn::{self, ClientConfig, TurnClient, TurnEvent};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

/// Longest wait for the allocation before the candidates are sent without it. A TURN
/// allocation over TCP takes the connect plus two round trips (the 401, then the
/// authenticated Allocate): well under a second on any path the relay can serve.
pub const RELAY_WAIT_MS: u64 = 5_000;

/// Where the allocation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayState {
    Allocating {
        deadline: u64,
    },
    Allocated(SocketAddr),
    /// Never made, or lost: the connection goes on with its other candidates.
    Failed,
}

/// The TURN client of one connection and its relayed peer connections.
pub struct Relay {
    pub client: TurnClient,
    pub state: RelayState,
    /// Relayed peer streams: TURN data connection → the agent's connection, and back.
    to_ice: BTreeMap<turn::ConnId, ice::ConnId>,
    to_turn: BTreeMap<ice::ConnId, turn::ConnId>,
    permitted: BTreeSet<IpAddr>,
}

impl Relay {
    pub fn new(now: u64, cfg: ClientConfig) -> Relay {
        let mut client = TurnClient::new(ClientConfig {
            control: turn::Transport::Tcp,
            relay: turn::Transport::Tcp,
            ..cfg
        });
        client.start(now);
        Relay {
            client,
            state: RelayState::Allocating {
                deadline: now + RELAY_WAIT_MS,
            },
            to_ice: BTreeMap::new(),
            to_turn: BTreeMap::new(),
            permitted: BTreeSet::new(),
        }
    }

    /// Still waiting for the allocation.
    pub fn pending(&self) -> bool {
        matches!(self.state, RelayState::Allocating { .. })
    }

    pub fn poll_timeout(&self) -> Option<u64> {
        let wait = match self.state {
            RelayState::Allocating { deadline } => Some(deadline),
            _ => None,
        };
        [wait, self.client.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    pub fn handle_timeout(&mut self, now: u64) {
        if self.client.poll_timeout().is_some_and(|t| t <= now) {
            self.client.handle_timeout(now);
        }
        if let RelayState::Allocating { deadline } = self.state {
            if deadline <= now {
                self.state = RelayState::Failed;
            }
        }
    }

    /// Let the peer's candidate addresses reach the relayed address (the server drops
    /// what comes from an address without a permission, RFC 5766 §8). The peer dials from
    /// its host or NAT-mapped address, which its host and srflx candidates name.
    pub fn permit(&mut self, now: u64, remote: &[ice::Candidate]) {
        if !matches!(self.state, RelayState::Allocated(_)) {
            return;
        }
        for c in remote {
            let ip = c.addr.ip();
            if ip.is_unspecified() || !self.permitted.insert(ip) {
                continue;
            }
            // Over the limit the peer's later addresses simply cannot use the relay.
            let _ = self.client.create_permission(now, ip);
        }
    }

    /// The client's events applied to the agent: the relayed candidate, and relayed
    /// streams as accepted TCP connections on it.
    pub fn drive(&mut self, now: u64, agent: &mut Agent) {
        while let Some(e) = self.client.poll_event() {
            match e {
                TurnEvent::Allocated { relayed, .. } => {
                    if self.pending() {
                        agent.add_relay_candidate(relayed, Transport::TcpPassive);
                        self.state = RelayState::Allocated(relayed);
                    }
                }
                TurnEvent::Failed(_) => {
                    self.state = RelayState::Failed;
                    for i in std::mem::take(&mut self.to_ice).into_values() {
                        agent.handle_tcp_closed(now, i);
                    }
                    self.to_turn.clear();
                }
                TurnEvent::PeerConnected { conn, peer, .. } => match self.state {
                    RelayState::Allocated(relayed) => {
                        let i = agent.handle_tcp_accepted(now, relayed, peer);
                        self.to_ice.insert(conn, i);
                        self.to_turn.insert(i, conn);
                    }
                    _ => self.client.close_stream(conn),
                },
                TurnEvent::PeerStream { conn, data } => {
                    if let Some(&i) = self.to_ice.get(&conn) {
                        agent.handle_tcp_data(now, i, &data);
                    }
                }
                TurnEvent::PeerClosed { conn } => {
                    if let Some(i) = self.to_ice.remove(&conn) {
                        self.to_turn.remove(&i);
                        agent.handle_tcp_closed(now, i);
                    }
                }
                // Datagram relays, channels and permissions need nothing from us.
                TurnEvent::Released
                | TurnEvent::PermissionCreated(_)
                | TurnEvent::ChannelBound { .. }
                | TurnEvent::Data { .. }
                | TurnEvent::PeerFailed { .. } => {}
            }
        }
    }

    /// The agent's connection `conn` is a relayed one: its bytes go to the TURN client.
    pub fn owns(&self, conn: ice::ConnId) -> bool {
        self.to_turn.contains_key(&conn)
    }

    pub fn send(&mut self, conn: ice::ConnId, bytes: &[u8]) {
        if let Some(&t) = self.to_turn.get(&conn) {
            let _ = self.client.send_stream(t, bytes);
        }
    }

    pub fn close(&mut self, conn: ice::ConnId) {
        if let Some(t) = self.to_turn.remove(&conn) {
            self.to_ice.remove(&t);
            self.client.close_stream(t);
        }
    }

    /// Give the allocation back (the connection is over).
    pub fn release(&mut self, now: u64) {
        self.client.release(now);
    }
}
