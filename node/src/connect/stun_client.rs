//! STUN Binding client (RFC 5389 §7.2.1): learns the server-reflexive address of a UDP
//! socket. Sans-IO: the driver sends [`BindingClient::poll_transmit`]'s datagrams from
//! the socket being probed and feeds back what arrives, with `now` in milliseconds.
//!
//! Also home of the retransmission schedule the TURN client shares.

use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use std::collections::VecDeque;
use std::net::SocketAddr;
use stun::{Class, Message, Method};

/// RFC 5389 §7.2.1 default initial RTO (ms).
pub const INITIAL_RTO_MS: u64 = 500;
/// Rc: transmissions of one request over UDP before giving up.
pub const MAX_TRANSMISSIONS: u32 = 7;
/// Rm: after the last transmission, wait Rm × initial RTO for the answer.
pub const LAST_WAIT_FACTOR: u64 = 16;
/// Over a reliable transport a request is sent once and given up after Ti = 39.5 s.
pub const TCP_TIMEOUT_MS: u64 = 39_500;

/// What a transaction timer asks for once it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Not due yet.
    Wait,
    /// Send the same bytes again.
    Resend,
    /// No answer in time: the transaction failed.
    GiveUp,
}

/// RFC 5389 retransmission schedule: over UDP sends at 0, 0.5, 1.5, 3.5, 7.5, 15.5 and
/// 31.5 s and gives up at 39.5 s; over TCP one send and the same 39.5 s limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retransmit {
    interval: u64,
    sent: u32,
    next_at: u64,
}

impl Retransmit {
    /// Schedule for a request just sent over UDP.
    pub fn udp(now: u64) -> Self {
        Retransmit {
            interval: INITIAL_RTO_MS,
            sent: 1,
            next_at: now + INITIAL_RTO_MS,
        }
    }

    /// Schedule for a request just sent over a stream (no retransmissions).
    pub fn tcp(now: u64) -> Self {
        Retransmit {
            interval: TCP_TIMEOUT_MS,
            sent: MAX_TRANSMISSIONS,
            next_at: now + TCP_TIMEOUT_MS,
        }
    }

    pub fn next_at(&self) -> u64 {
        self.next_at
    }

    /// Transmissions so far.
    pub fn sent(&self) -> u32 {
        self.sent
    }

    pub fn on_timeout(&mut self, now: u64) -> Step {
        if now < self.next_at {
            return Step::Wait;
        }
        if self.sent >= MAX_TRANSMISSIONS {
            return Step::GiveUp;
        }
        self.sent += 1;
        self.interval *= 2;
        self.next_at = if self.sent == MAX_TRANSMISSIONS {
            now + LAST_WAIT_FACTOR * INITIAL_RTO_MS
        } else {
            now + self.interval
        };
        Step::Resend
    }
}

/// Outcome of a binding discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindingEvent {
    /// The server saw us at this address (XOR-MAPPED-ADDRESS, else MAPPED-ADDRESS).
    Mapped(SocketAddr),
    /// The server answered with an error response.
    Error(u16),
    /// Rc transmissions and the final wait went unanswered.
    TimedOut,
}

/// One Binding transaction to one server.
#[derive(Debug)]
pub struct BindingClient {
    server: SocketAddr,
    txid: [u8; 12],
    request: Vec<u8>,
    timer: Option<Retransmit>,
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
    events: VecDeque<BindingEvent>,
    /// Datagrams that were not the answer to our transaction (wrong source, wrong id,
    /// malformed): counted, then ignored.
    pub ignored: u64,
}

impl BindingClient {
    /// Starts a transaction: the first request is ready in `poll_transmit`.
    pub fn new(now: u64, server: SocketAddr, rng: &mut ChaCha8Rng) -> Self {
        let txid: [u8; 12] = rng.random();
        let request = Message::new(Class::Request, Method::Binding, txid).encode_with(None, true);
        BindingClient {
            server,
            txid,
            transmits: VecDeque::from([(server, request.clone())]),
            request,
            timer: Some(Retransmit::udp(now)),
            events: VecDeque::new(),
            ignored: 0,
        }
    }

    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<BindingEvent> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<u64> {
        self.timer.as_ref().map(Retransmit::next_at)
    }

    /// True once the transaction has an outcome.
    pub fn is_done(&self) -> bool {
        self.timer.is_none()
    }

    pub fn handle_timeout(&mut self, now: u64) {
        let Some(timer) = self.timer.as_mut() else {
            return;
        };
        match timer.on_timeout(now) {
            Step::Wait => {}
            Step::Resend => self
                .transmits
                .push_back((self.server, self.request.clone())),
            Step::GiveUp => {
                self.timer = None;
                self.events.push_back(BindingEvent::TimedOut);
            }
        }
    }

    /// Feeds a datagram received on the probed socket.
    pub fn handle_datagram(&mut self, _now: u64, from: SocketAddr, bytes: &[u8]) {
        let msg = match Message::decode(bytes) {
            Ok(m) if from == self.server && m.txid == self.txid && self.timer.is_some() => m,
            _ => {
                self.ignored += 1;
                return;
            }
        };
        let event = match (msg.class, msg.method) {
            (Class::SuccessResponse, Method::Binding) => {
                match msg.xor_mapped().or(msg.mapped_address()) {
                    Some(addr) => BindingEvent::Mapped(addr),
                    None => {
                        self.ignored += 1;
                        return;
                    }
                }
            }
            (Class::ErrorResponse, Method::Binding) => {
                BindingEvent::Error(msg.error_code().map_or(0, |e| e.code))
            }
            _ => {
                self.ignored += 1;
                return;
            }
        };
        self.timer = None;
        self.events.push_back(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use stun::Attribute;

    fn server() -> SocketAddr {
        "192.0.2.10:3478".parse().unwrap()
    }

    #[test]
    fn udp_schedule_matches_rfc5389() {
        let mut r = Retransmit::udp(0);
        let mut sends = vec![0];
        let now = loop {
            let now = r.next_at();
            match r.on_timeout(now) {
                Step::Resend => sends.push(now),
                Step::GiveUp => break now,
                Step::Wait => unreachable!("fired at next_at"),
            }
        };
        assert_eq!(sends, [0, 500, 1500, 3500, 7500, 15500, 31500]);
        assert_eq!(now, 39_500);
    }

    #[test]
    fn tcp_schedule_never_resends() {
        let mut r = Retransmit::tcp(1000);
        assert_eq!(r.on_timeout(40_499), Step::Wait);
        assert_eq!(r.on_timeout(40_500), Step::GiveUp);
    }

    #[test]
    fn binding_learns_mapped_address_and_ignores_forgeries() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut c = BindingClient::new(0, server(), &mut rng);
        let (to, req) = c.poll_transmit().unwrap();
        assert_eq!(to, server());
        let req = Message::decode(&req).unwrap();
        let mapped: SocketAddr = "203.0.113.5:40000".parse().unwrap();
        let resp = req
            .reply(Class::SuccessResponse)
            .with(Attribute::XorMappedAddress(mapped))
            .encode();
        // Right bytes from the wrong source, and a wrong transaction id: ignored.
        c.handle_datagram(10, "192.0.2.99:3478".parse().unwrap(), &resp);
        let mut forged = Message::decode(&resp).unwrap();
        forged.txid = [0; 12];
        c.handle_datagram(10, server(), &forged.encode());
        assert_eq!(c.poll_event(), None);
        assert_eq!(c.ignored, 2);
        c.handle_datagram(10, server(), &resp);
        assert_eq!(c.poll_event(), Some(BindingEvent::Mapped(mapped)));
        assert!(c.is_done());
    }

    #[test]
    fn binding_retransmits_then_times_out() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mut c = BindingClient::new(0, server(), &mut rng);
        let mut sent = 0;
        while let Some(t) = c.poll_timeout() {
            while c.poll_transmit().is_some() {
                sent += 1;
            }
            c.handle_timeout(t);
        }
        assert_eq!(sent, MAX_TRANSMISSIONS);
        assert_eq!(c.poll_event(), Some(BindingEvent::TimedOut));
    }
}
