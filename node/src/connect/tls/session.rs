//! A sans-IO TLS 1.3 session over a reliable byte stream (the ICE-TCP connection after
//! RFC 4571 deframing): stream bytes in ([`TlsSession::handle_stream_bytes`]), stream
//! bytes out ([`TlsSession::poll_stream_write`]), plaintext in ([`TlsSession::send`]) and
//! out (as [`TlsEvent::Data`]), with the handshake deadline of jamid (40 s) driven by
//! [`TlsSession::poll_timeout`] / [`TlsSession::handle_timeout`].
//!
//! Roles (PROTOCOLS §6.4): the TLS client is the ICE controlling side, i.e. the device
//! that received the connection request; the requester is the TLS server, which requires
//! a client certificate. Each side presents device → account → CA.

use std::collections::{BTreeMap, VecDeque};
use std::io::{Read, Write};
use std::sync::Arc;

use rand_chacha::ChaCha20Rng;
use rustls::client::Resumption;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::server::NoServerSessionStorage;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};

use super::provider::{jami_provider, Clock, VirtualClock};
use super::rng;
use super::sign::DeviceSigningKey;
use super::verify::{ExpectedPeer, JamiVerifier, PeerCheck, Refusal, RefusalKind};
use crate::crypto::PrivateKey;
use crate::identity::account::{DeviceIdentity, DeviceInfo};
use crate::identity::cert::Certificate;

/// jamid's `TLS_TIMEOUT` (peer_connection.cpp): a handshake not done 40 s after the
/// session starts is abandoned.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 40_000;

/// Plaintext rustls buffers for us before the handshake ends or while records wait to
/// be written (rustls' own default, named here): [`TlsSession::send`] accepts less when
/// it is full, which is the back-pressure the mux sees.
pub const MAX_BUFFERED_PLAINTEXT: usize = 64 * 1024;

/// Which end of the handshake this device plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// ICE controlling side = the device that received the connection request.
    Client,
    /// ICE controlled side = the requester; demands a client certificate.
    Server,
}

/// Why a session ended in failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    #[error("peer refused: {0}")]
    Refused(Refusal),
    #[error("handshake not finished within {HANDSHAKE_TIMEOUT_MS} ms")]
    HandshakeTimeout,
    #[error("TLS protocol error: {0}")]
    Protocol(String),
    #[error("TLS setup: {0}")]
    Setup(String),
    #[error("session is closed")]
    Closed,
}

impl From<rustls::Error> for TlsError {
    fn from(e: rustls::Error) -> Self {
        match Refusal::from_rustls(&e) {
            Some(r) => Self::Refused(r.clone()),
            None => Self::Protocol(e.to_string()),
        }
    }
}

/// What the session reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsEvent {
    /// Both sides are authenticated; `peer` is the device on the other end.
    HandshakeComplete { peer: DeviceInfo },
    /// Decrypted application bytes from the peer, in order.
    Data(Vec<u8>),
    /// The peer sent close_notify.
    Closed,
    /// The session failed; its last bytes (an alert) may still be in
    /// [`TlsSession::poll_stream_write`].
    Failed(TlsError),
}

/// Counters of one session (a node sums them over its sessions).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsStats {
    pub stream_bytes_in: u64,
    pub stream_bytes_out: u64,
    pub plaintext_in: u64,
    pub plaintext_out: u64,
    /// Peers refused by the verifier, by reason.
    pub refused: BTreeMap<RefusalKind, u64>,
    pub handshake_timeouts: u64,
    /// Other protocol failures (bad records, alerts from the peer, ...).
    pub protocol_errors: u64,
    /// Stream bytes received after the session ended (dropped).
    pub dropped_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Handshaking,
    Established,
    Done,
}

/// One TLS 1.3 session (see the module doc).
pub struct TlsSession {
    conn: Connection,
    verifier: Arc<JamiVerifier>,
    rng: ChaCha20Rng,
    clock: Clock,
    deadline: u64,
    state: State,
    events: VecDeque<TlsEvent>,
    stats: TlsStats,
}

impl std::fmt::Debug for TlsSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSession")
            .field("state", &self.state)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl TlsSession {
    /// A session for our device, expecting `peer` (the chain we hold for it and its
    /// account's CRLs). `rng` is the session's seeded randomness.
    pub fn new(
        now: u64,
        role: Role,
        me: &DeviceIdentity,
        peer: ExpectedPeer,
        rng: ChaCha20Rng,
    ) -> Result<Self, TlsError> {
        Self::with_check(now, role, me.key(), me.chain(), Arc::new(peer), rng)
    }

    /// The general form: any key and chain to present (tests present forgeries) and any
    /// [`PeerCheck`].
    pub fn with_check(
        now: u64,
        role: Role,
        key: &PrivateKey,
        chain: &[Certificate],
        check: Arc<dyn PeerCheck>,
        mut rng: ChaCha20Rng,
    ) -> Result<Self, TlsError> {
        let setup = |e: rustls::Error| TlsError::Setup(e.to_string());
        let clock: Clock = Arc::new(VirtualClock::default());
        clock.set(now);
        let provider = Arc::new(jami_provider());
        let signing = DeviceSigningKey::new(key).map_err(setup)?;
        let certs: Vec<CertificateDer<'static>> = chain
            .iter()
            .map(|c| CertificateDer::from(c.der().to_vec()))
            .collect();
        let resolver = Arc::new(SingleCertAndKey::from(CertifiedKey::new(
            certs,
            Arc::new(signing),
        )));
        let verifier = Arc::new(JamiVerifier::new(check));
        let versions = [&rustls::version::TLS13];
        let mut conn: Connection = match role {
            Role::Client => {
                let mut cfg = ClientConfig::builder_with_details(provider, clock.clone())
                    .with_protocol_versions(&versions)
                    .map_err(setup)?
                    .dangerous()
                    .with_custom_certificate_verifier(verifier.clone())
                    .with_client_cert_resolver(resolver);
                // No tickets, no SNI: jamid uses neither, and resumption would make
                // handshakes depend on earlier sessions.
                cfg.resumption = Resumption::disabled();
                cfg.enable_sni = false;
                let name = ServerName::try_from("jami").map_err(|e| TlsError::Setup(e.to_string()))?;
                rng::lend(&mut rng, || ClientConnection::new(Arc::new(cfg), name))
                    .map_err(setup)?
                    .into()
            }
            Role::Server => {
                let mut cfg = ServerConfig::builder_with_details(provider, clock.clone())
                    .with_protocol_versions(&versions)
                    .map_err(setup)?
                    .with_client_cert_verifier(verifier.clone())
                    .with_cert_resolver(resolver);
                cfg.send_tls13_tickets = 0;
                cfg.session_storage = Arc::new(NoServerSessionStorage {});
                // GnuTLS %SERVER_PRECEDENCE.
                cfg.ignore_client_order = true;
                rng::lend(&mut rng, || ServerConnection::new(Arc::new(cfg)))
                    .map_err(setup)?
                    .into()
            }
        };
        conn.set_buffer_limit(Some(MAX_BUFFERED_PLAINTEXT));
        Ok(Self {
            conn,
            verifier,
            rng,
            clock,
            deadline: now.saturating_add(HANDSHAKE_TIMEOUT_MS),
            state: State::Handshaking,
            events: VecDeque::new(),
            stats: TlsStats::default(),
        })
    }

    /// Bytes received on the stream.
    pub fn handle_stream_bytes(&mut self, now: u64, bytes: &[u8]) {
        self.clock.set(now);
        if self.state == State::Done {
            self.stats.dropped_bytes += bytes.len() as u64;
            return;
        }
        self.stats.stream_bytes_in += bytes.len() as u64;
        let mut rest = bytes;
        while !rest.is_empty() && self.state != State::Done {
            let (conn, rng) = (&mut self.conn, &mut self.rng);
            match rng::lend(rng, || conn.read_tls(&mut rest)) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    self.fail(TlsError::Protocol(e.to_string()));
                    return;
                }
            }
            self.process();
        }
        if self.state == State::Done {
            self.stats.dropped_bytes += rest.len() as u64;
        }
    }

    fn process(&mut self) {
        let (conn, rng) = (&mut self.conn, &mut self.rng);
        let io = match rng::lend(rng, || conn.process_new_packets()) {
            Ok(io) => io,
            Err(e) => return self.fail(e.into()),
        };
        if self.state == State::Handshaking && !self.conn.is_handshaking() {
            match self.verifier.accepted() {
                Some(peer) => {
                    self.state = State::Established;
                    self.events.push_back(TlsEvent::HandshakeComplete { peer });
                }
                None => return self.fail(TlsError::Protocol("peer was never verified".into())),
            }
        }
        let pending = io.plaintext_bytes_to_read();
        if pending > 0 {
            let mut data = vec![0u8; pending];
            match self.conn.reader().read_exact(&mut data) {
                Ok(()) => {
                    self.stats.plaintext_in += data.len() as u64;
                    self.events.push_back(TlsEvent::Data(data));
                }
                Err(e) => return self.fail(TlsError::Protocol(e.to_string())),
            }
        }
        if io.peer_has_closed() {
            self.state = State::Done;
            self.events.push_back(TlsEvent::Closed);
        }
    }

    fn fail(&mut self, err: TlsError) {
        match &err {
            TlsError::Refused(r) => *self.stats.refused.entry(r.kind()).or_default() += 1,
            TlsError::HandshakeTimeout => self.stats.handshake_timeouts += 1,
            _ => self.stats.protocol_errors += 1,
        }
        self.state = State::Done;
        self.events.push_back(TlsEvent::Failed(err));
    }

    /// Bytes to write on the stream, if any.
    pub fn poll_stream_write(&mut self) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        while self.conn.wants_write() {
            let (conn, rng) = (&mut self.conn, &mut self.rng);
            match rng::lend(rng, || conn.write_tls(&mut out)) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        self.stats.stream_bytes_out += out.len() as u64;
        (!out.is_empty()).then_some(out)
    }

    /// Queues application bytes; returns how many were accepted (fewer than given when
    /// [`MAX_BUFFERED_PLAINTEXT`] is reached). Before the handshake ends they wait.
    pub fn send(&mut self, now: u64, data: &[u8]) -> Result<usize, TlsError> {
        self.clock.set(now);
        if self.state == State::Done {
            return Err(TlsError::Closed);
        }
        let (conn, rng) = (&mut self.conn, &mut self.rng);
        let n = rng::lend(rng, || conn.writer().write(data))
            .map_err(|e| TlsError::Protocol(e.to_string()))?;
        self.stats.plaintext_out += n as u64;
        Ok(n)
    }

    /// Sends close_notify; the session accepts no more data.
    pub fn close(&mut self, now: u64) {
        self.clock.set(now);
        if self.state != State::Done {
            self.conn.send_close_notify();
            self.state = State::Done;
        }
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<TlsEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called: the handshake
    /// deadline while handshaking, nothing after.
    pub fn poll_timeout(&self) -> Option<u64> {
        (self.state == State::Handshaking).then_some(self.deadline)
    }

    /// Abandons a handshake that passed its deadline.
    pub fn handle_timeout(&mut self, now: u64) {
        self.clock.set(now);
        if self.state == State::Handshaking && now >= self.deadline {
            self.fail(TlsError::HandshakeTimeout);
        }
    }

    /// True once both sides are authenticated and until the session ends.
    pub fn is_established(&self) -> bool {
        self.state == State::Established
    }

    /// The negotiated cipher suite and key-exchange group (for reports and tests).
    pub fn negotiated(&self) -> Option<(rustls::CipherSuite, rustls::NamedGroup)> {
        Some((
            self.conn.negotiated_cipher_suite()?.suite(),
            self.conn.negotiated_key_exchange_group()?.name(),
        ))
    }

    pub fn stats(&self) -> &TlsStats {
        &self.stats
    }
}
