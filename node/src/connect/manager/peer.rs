//! One connection to one peer device: the ICE agent, then TLS over the selected path,
//! then the multiplexed socket over TLS. Each stage feeds the next; the manager moves
//! the agent's TCP commands to the driver and the DHT messages (request, answer).

use super::relay::Relay;
use crate::connect::ice::{self, Agent, Endpoint, IceMsg};
use crate::connect::mux::{self, Mux};
use crate::connect::tls::{ExpectedPeer, Role, TlsEvent, TlsSession};
use crate::connect::turn::ClientConfig;
use crate::dht::infohash::InfoHash;
use crate::identity::DeviceIdentity;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::collections::VecDeque;

/// How far a connection got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// Looking up the peer device's certificate on the DHT.
    Lookup,
    /// Gathering our candidates.
    Gathering,
    /// Requester: our request is on the DHT; waiting for the answer.
    WaitAnswer,
    /// Connectivity checks.
    Ice,
    /// TLS handshake over the selected pair, until the peer first speaks on the socket.
    Tls,
    /// The multiplexed socket is up.
    Up,
    /// Failed or closed.
    Dead,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::Lookup => "certificate lookup",
            Stage::Gathering => "gathering",
            Stage::WaitAnswer => "waiting for the answer",
            Stage::Ice => "ICE",
            Stage::Tls => "TLS",
            Stage::Up => "up",
            Stage::Dead => "closed",
        })
    }
}

/// What a stage change means to the manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerOutput {
    /// Candidates are ready: the requester sends its request, the receiver its answer.
    Gathered(IceMsg),
    /// TLS verified the peer and the socket is up.
    Up {
        local: Endpoint,
        remote: Endpoint,
    },
    Mux(mux::Event),
    /// The connection is over (`reason` is the log line).
    Dead(String),
}

/// Plaintext the mux could not take yet (its receive buffers are full) is held here up
/// to this bound; beyond it the connection is cut, so one peer's flood stays bounded.
const MAX_HELD_PLAINTEXT: usize = 4 * mux::frame::MAX_FRAME_PAYLOAD;

/// One connection (see the module doc).
pub struct PeerConnection {
    /// The peer device's short id.
    pub device: InfoHash,
    /// Its account, once its chain is known.
    pub account: Option<InfoHash>,
    /// We sent the request (ICE controlled, TLS server).
    pub initiator: bool,
    /// The request id (ours, or the peer's we answer).
    pub request_id: u64,
    pub stage: Stage,
    pub started_at: u64,
    /// When the connection came up.
    pub up_at: Option<u64>,
    pub agent: Option<Agent>,
    /// Our TURN relay candidate's client, when TURN is configured.
    pub relay: Option<Relay>,
    /// The peer's candidates, when they arrived before ours were gathered.
    pub remote_msg: Option<IceMsg>,
    pub expected: Option<ExpectedPeer>,
    pub tls: Option<TlsSession>,
    pub mux: Option<Mux>,
    /// Plaintext from TLS the mux has not taken yet.
    held_in: Vec<u8>,
    /// Mux output TLS has not taken yet.
    held_out: Vec<u8>,
    /// Channels asked for before the socket was up.
    pub queued_channels: Vec<String>,
    pub selected: Option<(Endpoint, Endpoint)>,
    /// The agent finished gathering (the relay may still be allocating).
    agent_gathered: bool,
    /// Our candidates went to the peer.
    gathered: bool,
    outputs: VecDeque<PeerOutput>,
    seed: u64,
}

impl PeerConnection {
    pub fn new(device: InfoHash, initiator: bool, request_id: u64, now: u64, seed: u64) -> Self {
        PeerConnection {
            device,
            account: None,
            initiator,
            request_id,
            stage: Stage::Lookup,
            started_at: now,
            up_at: None,
            agent: None,
            relay: None,
            remote_msg: None,
            expected: None,
            tls: None,
            mux: None,
            held_in: Vec::new(),
            held_out: Vec::new(),
            queued_channels: Vec::new(),
            selected: None,
            agent_gathered: false,
            gathered: false,
            outputs: VecDeque::new(),
            seed,
        }
    }

    /// Start gathering with `cfg` (roles per Jami: the receiver of the request controls),
    /// and allocating a relay when `turn` is set.
    pub fn start_ice(&mut self, now: u64, mut cfg: ice::Config, turn: Option<ClientConfig>) {
        cfg.seed = self.seed;
        cfg.controlling = !self.initiator;
        self.agent = Some(Agent::new(cfg, now));
        self.relay = turn.map(|t| {
            Relay::new(
                now,
                ClientConfig {
                    seed: self.seed ^ 0x7e1a,
                    ..t
                },
            )
        });
        self.stage = Stage::Gathering;
    }

    /// The peer's candidates (from its request or answer).
    pub fn set_remote(&mut self, now: u64, msg: IceMsg) {
        match self.agent.as_mut() {
            Some(a) if self.gathered => {
                if let Some(r) = self.relay.as_mut() {
                    r.permit(now, &msg.candidates);
                }
                a.set_remote(now, &msg);
                self.stage = Stage::Ice;
            }
            _ => self.remote_msg = Some(msg),
        }
    }

    /// Candidates are complete (the agent's, and the relay's or its failure): they go to
    /// the peer, and the peer's, if here already, go to the agent.
    fn finish_gathering(&mut self, now: u64) {
        let Some(agent) = self.agent.as_mut() else {
            return;
        };
        self.outputs
            .push_back(PeerOutput::Gathered(agent.local_ice_msg()));
        self.gathered = true;
        self.stage = if self.initiator {
            Stage::WaitAnswer
        } else {
            Stage::Ice
        };
        if let Some(m) = self.remote_msg.take() {
            self.set_remote(now, m);
        }
    }

    pub fn poll_output(&mut self) -> Option<PeerOutput> {
        self.outputs.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<u64> {
        [
            self.agent.as_ref().and_then(|a| a.poll_timeout()),
            self.relay.as_ref().and_then(|r| r.poll_timeout()),
            self.tls.as_ref().and_then(|t| t.poll_timeout()),
            self.mux.as_ref().and_then(|m| m.poll_timeout()),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub fn handle_timeout(&mut self, now: u64, me: &DeviceIdentity) {
        if let Some(r) = self.relay.as_mut() {
            if r.poll_timeout().is_some_and(|t| t <= now) {
                r.handle_timeout(now);
            }
        }
        if let Some(a) = self.agent.as_mut() {
            if a.poll_timeout().is_some_and(|t| t <= now) {
                a.handle_timeout(now);
            }
        }
        if let Some(t) = self.tls.as_mut() {
            if t.poll_timeout().is_some_and(|d| d <= now) {
                t.handle_timeout(now);
            }
        }
        if let Some(m) = self.mux.as_mut() {
            if m.poll_timeout().is_some_and(|d| d <= now) {
                m.handle_timeout(now);
            }
        }
        self.pump(now, me);
    }

    /// The relay's and the agent's events: candidates out once complete, TLS started on
    /// the selected pair. False when the connection died.
    fn ice_events(&mut self, now: u64, me: &DeviceIdentity) -> bool {
        loop {
            let Some(agent) = self.agent.as_mut() else {
                return false;
            };
            if let Some(r) = self.relay.as_mut() {
                r.drive(now, agent);
            }
            if self.agent_gathered
                && !self.gathered
                && self.relay.as_ref().is_none_or(|r| !r.pending())
            {
                self.finish_gathering(now);
                continue;
            }
            let Some(agent) = self.agent.as_mut() else {
                return false;
            };
            let Some(e) = agent.poll_event() else {
                return true;
            };
            match e {
                ice::Event::GatheringDone => self.agent_gathered = true,
                ice::Event::Selected { local, remote, .. } => {
                    self.selected = Some((local, remote));
                    let Some(expected) = self.expected.clone() else {
                        self.die("no expected peer chain");
                        return false;
                    };
                    let role = if agent.is_controlling() {
                        Role::Client
                    } else {
                        Role::Server
                    };
                    let rng = ChaCha20Rng::seed_from_u64(self.seed ^ 0x7115);
                    match TlsSession::new(now, role, me, expected, rng) {
                        Ok(t) => {
                            self.tls = Some(t);
                            self.stage = Stage::Tls;
                        }
                        Err(e) => {
                            self.die(&format!("TLS set-up: {e}"));
                            return false;
                        }
                    }
                }
                ice::Event::Failed => {
                    self.die("ICE failed: no candidate pair worked");
                    return false;
                }
            }
        }
    }

    /// Move bytes and events between the stages until nothing moves.
    pub fn pump(&mut self, now: u64, me: &DeviceIdentity) {
        if !self.ice_events(now, me) {
            return;
        }
        let Some(agent) = self.agent.as_mut() else {
            return;
        };
        let Some(tls) = self.tls.as_mut() else {
            return;
        };
        loop {
            let mut moved = false;
            // ICE -> TLS
            while let Some(b) = agent.poll_recv() {
                tls.handle_stream_bytes(now, &b);
                moved = true;
            }
            // TLS events
            while let Some(e) = tls.poll_event() {
                moved = true;
                match e {
                    TlsEvent::HandshakeComplete { peer } => {
                        self.account = Some(InfoHash(peer.account_id));
                        let rng = ChaCha20Rng::seed_from_u64(self.seed ^ 0x3a3a);
                        let mut m = Mux::new(rng);
                        for name in self.queued_channels.drain(..) {
                            // A refusal (too many channels) shows as no ChannelOpened.
                            let _ = m.open_channel(&name);
                        }
                        // Up only once the peer speaks on the socket (its version comes
                        // first): in TLS 1.3 the client finishes before the server has
                        // judged the client's certificate, and may still be refused.
                        self.mux = Some(m);
                    }
                    TlsEvent::Data(d) => {
                        if self.held_in.len() + d.len() > MAX_HELD_PLAINTEXT {
                            // The manager reads every channel as data arrives, so the
                            // mux only stalls on a peer that floods faster than we run.
                            die(
                                &mut self.stage,
                                &mut self.outputs,
                                "receive buffer full: peer sends faster than we read",
                            );
                            break;
                        }
                        self.held_in.extend_from_slice(&d);
                    }
                    TlsEvent::Closed => {
                        if let Some(m) = self.mux.as_mut() {
                            m.handle_stream_end(now);
                        }
                        die(
                            &mut self.stage,
                            &mut self.outputs,
                            "peer closed the TLS session",
                        );
                    }
                    TlsEvent::Failed(e) => {
                        die(&mut self.stage, &mut self.outputs, &format!("TLS: {e}"));
                    }
                }
            }
            // TLS plaintext -> mux
            if let Some(m) = self.mux.as_mut() {
                if !self.held_in.is_empty() {
                    let n = m.handle_stream_bytes(now, &self.held_in);
                    if n > 0 {
                        self.held_in.drain(..n);
                        moved = true;
                    }
                }
                let events: Vec<mux::Event> = std::iter::from_fn(|| m.poll_event()).collect();
                if self.stage == Stage::Tls && (m.peer_version().is_some() || !events.is_empty()) {
                    self.stage = Stage::Up;
                    self.up_at = Some(now);
                    let (local, remote) = self.selected.expect("selected before TLS");
                    self.outputs.push_back(PeerOutput::Up { local, remote });
                    moved = true;
                }
                for e in events {
                    moved = true;
                    self.outputs.push_back(PeerOutput::Mux(e));
                }
                // mux -> TLS
                while let Some(b) = m.poll_stream_write() {
                    self.held_out.extend_from_slice(&b);
                }
            }
            if !self.held_out.is_empty() {
                match tls.send(now, &self.held_out) {
                    Ok(n) if n > 0 => {
                        self.held_out.drain(..n);
                        moved = true;
                    }
                    Ok(_) => {}
                    Err(_) => self.held_out.clear(),
                }
            }
            // TLS -> ICE
            while let Some(b) = tls.poll_stream_write() {
                moved = true;
                if let Err(e) = agent.send(&b) {
                    // The path is gone; TLS fails on its own timeout, or ICE reports it.
                    let _ = e;
                }
            }
            if !moved || self.stage == Stage::Dead {
                break;
            }
        }
        if self.stage == Stage::Dead {
            if let Some(m) = self.mux.as_mut() {
                while let Some(e) = m.poll_event() {
                    self.outputs.push_back(PeerOutput::Mux(e));
                }
            }
        }
    }

    /// Close the connection: TLS close_notify, then the agent's TCP connections.
    pub fn close(&mut self, now: u64, me: &DeviceIdentity) {
        if let Some(m) = self.mux.as_mut() {
            m.shutdown();
        }
        self.pump(now, me);
        if let Some(t) = self.tls.as_mut() {
            t.close(now);
        }
        self.pump(now, me);
        if let Some(r) = self.relay.as_mut() {
            r.release(now);
        }
        if self.stage != Stage::Dead {
            self.die("closed by us");
        }
    }

    fn die(&mut self, reason: &str) {
        die(&mut self.stage, &mut self.outputs, reason);
    }

    /// Mark dead from outside (lookup failure, timeout, refusal).
    pub fn fail(&mut self, reason: &str) {
        self.die(reason);
    }
}

fn die(stage: &mut Stage, outputs: &mut VecDeque<PeerOutput>, reason: &str) {
    if *stage != Stage::Dead {
        *stage = Stage::Dead;
        outputs.push_back(PeerOutput::Dead(reason.to_string()));
    }
}
