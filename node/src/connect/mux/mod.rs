//! The multiplexed socket over one TLS session (PROTOCOLS §6.5, jamid's
//! `MultiplexedSocket`), as a sans-IO state machine in the quinn-proto style.
//!
//! Inputs: [`Mux::handle_stream_bytes`] (TLS plaintext from the peer),
//! [`Mux::handle_stream_end`], [`Mux::handle_timeout`] and the commands
//! [`Mux::open_channel`], [`Mux::accept`], [`Mux::decline`], [`Mux::write`],
//! [`Mux::read`], [`Mux::close`], [`Mux::send_beacon`], [`Mux::shutdown`].
//! Outputs: [`Mux::poll_stream_write`] (bytes for the TLS session), [`Mux::poll_event`],
//! [`Mux::poll_timeout`]. Time is an argument in milliseconds, channel ids come from the
//! seeded RNG given at creation.
//!
//! Channel 0 carries `ChannelRequest`s, channel 0xFFFF the version and beacons; data
//! channels are chosen by the opener, a frame with empty data closes a channel, and
//! shutting the socket down closes every channel.
//!
//! Robustness (jamid has none of these limits): open channels, pending incoming requests
//! and refusals per peer are capped; each channel's receive buffer is bounded, and while a
//! frame cannot be delivered the mux stops taking stream bytes (so TCP flow control pushes
//! back on the peer) until the user reads; an oversized or undelimitable frame cuts the
//! socket off. Every refusal is counted in [`MuxStats`].

pub mod control;
pub mod frame;
mod inbound;

use control::{ChannelRequest, ChannelState, ControlMsg};
use frame::{FrameDecoder, FrameError, MAX_FRAME_PAYLOAD};
use rand::RngExt;
use rand_chacha::ChaCha20Rng;
use std::collections::{BTreeMap, VecDeque};

/// Channel 0 carries channel requests and their answers.
pub const CONTROL_CHANNEL: u16 = 0;
/// Channel 0xFFFF carries the version and beacons.
pub const PROTOCOL_CHANNEL: u16 = 0xFFFF;
/// jamid's `SEND_BEACON_TIMEOUT`: no response within 3 s shuts the socket down.
pub const BEACON_TIMEOUT_MS: u64 = 3_000;
/// Channels (open, being opened or awaiting the user's answer) per socket. Jami opens one
/// per service and transfer (sip, sync, a git channel per shared conversation, files);
/// a thousand is far above that and bounds what one peer makes us hold.
pub const MAX_CHANNELS: usize = 1_024;
/// Incoming requests awaiting the user's accept/decline; more are declined at once so a
/// peer cannot queue thousands of names in our memory.
pub const MAX_PENDING_REQUESTS: usize = 64;
/// Requests refused (caps, bad ids, collisions) before the socket is cut off: a peer that
/// keeps asking after being refused this often is flooding, not racing.
pub const MAX_REFUSALS: u64 = 1_024;
/// Longest channel name accepted. Jami's longest, `data-transfer://conv/device/file?
/// start=N&end=M`, is under 300 bytes.
pub const MAX_CHANNEL_NAME: usize = 1_024;
/// Receive buffer per channel. At least one full frame, so an emptied buffer always
/// takes the next frame; above it the mux stops reading the stream.
pub const CHANNEL_RECV_BUFFER: usize = 4 * MAX_FRAME_PAYLOAD;
/// Receive buffers of all channels together, bounding one socket's memory.
pub const MUX_RECV_BUFFER: usize = 64 * MAX_FRAME_PAYLOAD;
/// Bytes queued for the TLS session that `write` accepts; above it `write` takes nothing
/// and stream input is not consumed (answers to the peer's requests and beacons would
/// otherwise grow without bound while the peer does not read).
pub const MAX_SEND_QUEUE: usize = 16 * MAX_FRAME_PAYLOAD;
/// Beacons in flight at once.
pub const MAX_OUTSTANDING_BEACONS: usize = 8;

/// What the application learns from the socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The peer asks to open `channel` named `name`: answer with `accept` or `decline`.
    ChannelRequested { channel: u16, name: String },
    /// Our request for `channel` was accepted.
    ChannelOpened { channel: u16, name: String },
    /// Our request for `channel` was declined.
    ChannelDeclined { channel: u16, name: String },
    /// `channel` has data to `read`.
    Readable { channel: u16 },
    /// The peer closed `channel` (data still buffered can be read, then `read` gives 0).
    ChannelClosed { channel: u16 },
    /// The socket is down; every channel is closed and no more events follow.
    Shutdown(ShutdownReason),
}

/// Why the socket went down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShutdownReason {
    /// [`Mux::shutdown`] was called.
    Local,
    /// The TLS stream ended.
    StreamEnded,
    /// A beacon got no response within [`BEACON_TIMEOUT_MS`].
    BeaconTimeout,
    /// The stream could not be parsed (oversized or undelimitable frame).
    Frame(FrameError),
    /// The peer was refused more than [`MAX_REFUSALS`] times.
    TooManyRefusals,
}

/// Errors of the commands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MuxError {
    #[error("the socket is shut down")]
    Shutdown,
    #[error("no channel {0}")]
    UnknownChannel(u16),
    #[error("channel {0} is not in a state that allows this")]
    WrongState(u16),
    #[error("too many channels ({MAX_CHANNELS})")]
    TooManyChannels,
    #[error("channel name longer than {MAX_CHANNEL_NAME} bytes")]
    NameTooLong,
    #[error("send queue full; drain poll_stream_write first")]
    Blocked,
    #[error("nothing buffered on this channel yet")]
    NothingToRead,
}

/// Counters of refused or dropped input.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MuxStats {
    /// Frames whose channel is outside 0..=65535 (skipped).
    pub bad_channel_frames: u64,
    /// Data frames for a channel that is not open (dropped).
    pub unknown_channel_frames: u64,
    /// Control or protocol objects that failed to decode (rest of the frame dropped).
    pub malformed_control: u64,
    /// ACCEPT/DECLINE for no request of ours, beacon responses for no beacon.
    pub unexpected_answers: u64,
    /// Requests declined because [`MAX_CHANNELS`] channels exist.
    pub refused_channel_cap: u64,
    /// Requests declined because [`MAX_PENDING_REQUESTS`] await the user.
    pub refused_pending_cap: u64,
    /// Requests declined for channel 0/0xFFFF, an id in use, or a name over
    /// [`MAX_CHANNEL_NAME`].
    pub refused_invalid: u64,
    /// Times a frame waited for room in a receive buffer (stream reading paused).
    pub flow_stalls: u64,
    /// Fatal stream errors (oversized or undelimitable frame).
    pub frame_errors: u64,
    /// Beacons without response in time.
    pub beacon_timeouts: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// We asked; waiting for ACCEPT/DECLINE.
    Requested,
    /// The peer asked; waiting for the user.
    Pending,
    Open,
    /// The peer closed it; buffered data is still readable.
    RemoteClosed,
}

#[derive(Debug)]
struct Channel {
    name: String,
    state: State,
    recv: VecDeque<u8>,
    /// A `Readable` event is out and not yet followed by a read.
    signalled: bool,
}

/// The multiplexed socket of one TLS session.
#[derive(Debug)]
pub struct Mux {
    rng: ChaCha20Rng,
    decoder: FrameDecoder,
    channels: BTreeMap<u16, Channel>,
    /// A complete data frame waiting for room in its channel's buffer.
    stalled: Option<(u16, Vec<u8>)>,
    recv_total: usize,
    out: VecDeque<Vec<u8>>,
    out_len: usize,
    events: VecDeque<Event>,
    peer_version: Option<i64>,
    /// Deadlines of our beacons awaiting a response, oldest first.
    beacons: VecDeque<u64>,
    refusals: u64,
    closed: bool,
    pub stats: MuxStats,
}

impl Mux {
    /// A socket over a TLS session that just came up; queues our version message.
    pub fn new(rng: ChaCha20Rng) -> Self {
        let mut m = Mux {
            rng,
            decoder: FrameDecoder::new(),
            channels: BTreeMap::new(),
            stalled: None,
            recv_total: 0,
            out: VecDeque::new(),
            out_len: 0,
            events: VecDeque::new(),
            peer_version: None,
            beacons: VecDeque::new(),
            refusals: 0,
            closed: false,
            stats: MuxStats::default(),
        };
        m.send_protocol(&ControlMsg::Version(control::VERSION));
        m
    }

    // ---- inputs ----

    /// Stream bytes from the peer. Returns how many were consumed: fewer than given while
    /// a frame waits for the user to read (flow control) or our send queue is full; the
    /// caller keeps the rest and offers it again after reading / draining. After shutdown
    /// input is discarded (all of it counts as consumed).
    pub fn handle_stream_bytes(&mut self, now: u64, bytes: &[u8]) -> usize {
        let _ = now;
        let mut off = 0;
        while off < bytes.len() && !self.closed {
            if self.stalled.is_some() || self.out_len > MAX_SEND_QUEUE {
                return off;
            }
            match self.decoder.push(bytes.get(off..).unwrap_or_default()) {
                Ok((used, frame)) => {
                    off += used;
                    if let Some(f) = frame {
                        self.on_frame(f);
                    }
                }
                Err(e) => {
                    self.stats.frame_errors += 1;
                    self.fail(ShutdownReason::Frame(e));
                }
            }
        }
        bytes.len()
    }

    /// The TLS stream ended (EOF or error): every channel closes.
    pub fn handle_stream_end(&mut self, _now: u64) {
        self.fail(ShutdownReason::StreamEnded);
    }

    /// When the oldest beacon times out.
    pub fn poll_timeout(&self) -> Option<u64> {
        if self.closed {
            return None;
        }
        self.beacons.front().copied()
    }

    pub fn handle_timeout(&mut self, now: u64) {
        if matches!(self.beacons.front(), Some(&d) if d <= now) && !self.closed {
            self.stats.beacon_timeouts += 1;
            self.fail(ShutdownReason::BeaconTimeout);
        }
    }

    // ---- outputs ----

    /// Bytes to write on the TLS session (every queued frame, in order).
    pub fn poll_stream_write(&mut self) -> Option<Vec<u8>> {
        if self.out.is_empty() {
            return None;
        }
        let mut all = Vec::with_capacity(self.out_len);
        for f in self.out.drain(..) {
            all.extend_from_slice(&f);
        }
        self.out_len = 0;
        Some(all)
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // ---- commands ----

    /// Ask the peer for a channel named `name`; returns its id. The id is jamid's choice:
    /// a random offset, then the next free id in 1..=65534.
    pub fn open_channel(&mut self, name: &str) -> Result<u16, MuxError> {
        self.check_open()?;
        if name.len() > MAX_CHANNEL_NAME {
            return Err(MuxError::NameTooLong);
        }
        if self.channels.len() >= MAX_CHANNELS {
            return Err(MuxError::TooManyChannels);
        }
        let offset = u32::from(self.rng.random::<u16>());
        let id = (1..u32::from(u16::MAX))
            .map(|i| ((offset + i) % u32::from(u16::MAX)) as u16)
            .find(|c| *c != CONTROL_CHANNEL && !self.channels.contains_key(c))
            .ok_or(MuxError::TooManyChannels)?;
        self.channels
            .insert(id, Channel::new(name, State::Requested));
        self.send_request(name, id, ChannelState::Request);
        Ok(id)
    }

    /// Accept the peer's request for `channel`.
    pub fn accept(&mut self, channel: u16) -> Result<(), MuxError> {
        self.check_open()?;
        let c = self.channel_in(channel, State::Pending)?;
        c.state = State::Open;
        let name = c.name.clone();
        self.send_request(&name, channel, ChannelState::Accept);
        Ok(())
    }

    /// Decline the peer's request for `channel`.
    pub fn decline(&mut self, channel: u16) -> Result<(), MuxError> {
        self.check_open()?;
        self.channel_in(channel, State::Pending)?;
        if let Some(c) = self.channels.remove(&channel) {
            self.send_request(&c.name, channel, ChannelState::Decline);
        }
        Ok(())
    }

    /// Queue `data` on an open channel, split in frames of at most 65,535 bytes. Returns
    /// how much was taken (less than all when the send queue fills; [`MuxError::Blocked`]
    /// when it took nothing).
    pub fn write(&mut self, channel: u16, data: &[u8]) -> Result<usize, MuxError> {
        self.check_open()?;
        self.channel_in(channel, State::Open)?;
        let room = MAX_SEND_QUEUE.saturating_sub(self.out_len);
        if room == 0 && !data.is_empty() {
            return Err(MuxError::Blocked);
        }
        let take = data.get(..data.len().min(room)).unwrap_or_default();
        // An empty frame would close the channel: an empty write sends nothing.
        for chunk in take.chunks(MAX_FRAME_PAYLOAD) {
            self.send_frame(channel, chunk);
        }
        Ok(take.len())
    }

    /// Read buffered data of `channel` into `buf`. `Ok(0)` with a non-empty `buf` means
    /// the peer closed the channel and everything was read; the channel is then gone.
    /// [`MuxError::NothingToRead`] when the channel is open and its buffer empty (wait for
    /// [`Event::Readable`]).
    pub fn read(&mut self, channel: u16, buf: &mut [u8]) -> Result<usize, MuxError> {
        let c = self
            .channels
            .get_mut(&channel)
            .ok_or(MuxError::UnknownChannel(channel))?;
        if !matches!(
            c.state,
            State::Open | State::RemoteClosed | State::Requested
        ) {
            return Err(MuxError::WrongState(channel));
        }
        c.signalled = false;
        let n = buf.len().min(c.recv.len());
        for (dst, src) in buf.iter_mut().zip(c.recv.drain(..n)) {
            *dst = src;
        }
        self.recv_total -= n;
        if n == 0 && !buf.is_empty() {
            if c.state != State::RemoteClosed {
                return Err(MuxError::NothingToRead);
            }
            self.channels.remove(&channel);
        }
        self.unstall();
        Ok(n)
    }

    /// Close `channel`: sends the empty frame (unless the peer closed it first, as jamid
    /// does not answer an EOF with one), drops buffered data. A pending request is
    /// declined instead.
    pub fn close(&mut self, channel: u16) -> Result<(), MuxError> {
        let c = self
            .channels
            .get(&channel)
            .ok_or(MuxError::UnknownChannel(channel))?;
        match c.state {
            State::Pending => return self.decline(channel),
            State::Open | State::Requested if !self.closed => self.send_frame(channel, &[]),
            _ => {}
        }
        if let Some(c) = self.channels.remove(&channel) {
            self.recv_total -= c.recv.len();
        }
        self.unstall();
        Ok(())
    }

    /// Send a beacon `{"p": true}`; the socket shuts down if no response comes within
    /// [`BEACON_TIMEOUT_MS`]. Only once the peer announced version ≥ 1 (returns false
    /// otherwise, or when [`MAX_OUTSTANDING_BEACONS`] are in flight).
    pub fn send_beacon(&mut self, now: u64) -> bool {
        if self.closed
            || self.peer_version.is_none_or(|v| v < 1)
            || self.beacons.len() >= MAX_OUTSTANDING_BEACONS
        {
            return false;
        }
        self.beacons.push_back(now + BEACON_TIMEOUT_MS);
        self.send_protocol(&ControlMsg::Beacon(true));
        true
    }

    /// Shut the socket down: every channel closes (no per-channel EOF is sent, as in
    /// jamid); the caller then ends the TLS session after draining `poll_stream_write`.
    pub fn shutdown(&mut self) {
        self.fail(ShutdownReason::Local);
    }

    // ---- queries ----

    /// The peer's announced version, once received.
    pub fn peer_version(&self) -> Option<i64> {
        self.peer_version
    }

    pub fn is_shutdown(&self) -> bool {
        self.closed
    }

    /// True while a frame waits for the user to read (stream input is paused).
    pub fn is_stalled(&self) -> bool {
        self.stalled.is_some()
    }

    /// Ids of current channels, ascending.
    pub fn channel_ids(&self) -> Vec<u16> {
        self.channels.keys().copied().collect()
    }

    /// Name of `channel`.
    pub fn channel_name(&self, channel: u16) -> Option<&str> {
        self.channels.get(&channel).map(|c| c.name.as_str())
    }

    /// Bytes buffered for the user across all channels.
    pub fn buffered(&self) -> usize {
        self.recv_total
    }

    // ---- internals ----

    fn check_open(&self) -> Result<(), MuxError> {
        if self.closed {
            Err(MuxError::Shutdown)
        } else {
            Ok(())
        }
    }

    fn channel_in(&mut self, id: u16, state: State) -> Result<&mut Channel, MuxError> {
        let c = self
            .channels
            .get_mut(&id)
            .ok_or(MuxError::UnknownChannel(id))?;
        if c.state != state {
            return Err(MuxError::WrongState(id));
        }
        Ok(c)
    }

    fn send_frame(&mut self, channel: u16, data: &[u8]) {
        let mut f = Vec::with_capacity(data.len() + 8);
        frame::encode(&mut f, channel, data);
        self.out_len += f.len();
        self.out.push_back(f);
    }

    fn send_request(&mut self, name: &str, channel: u16, state: ChannelState) {
        let req = ChannelRequest {
            name: name.to_owned(),
            channel,
            state,
        };
        self.send_frame(CONTROL_CHANNEL, &req.pack());
    }

    fn send_protocol(&mut self, msg: &ControlMsg) {
        self.send_frame(PROTOCOL_CHANNEL, &control::pack(msg));
    }

    /// Go down: every channel closes, one `Shutdown` event.
    fn fail(&mut self, reason: ShutdownReason) {
        if self.closed {
            return;
        }
        self.closed = true;
        for (&id, c) in &self.channels {
            if c.state != State::RemoteClosed {
                self.events.push_back(Event::ChannelClosed { channel: id });
            }
        }
        self.channels.clear();
        self.stalled = None;
        self.recv_total = 0;
        self.beacons.clear();
        self.events.push_back(Event::Shutdown(reason));
    }
}

impl Channel {
    fn new(name: &str, state: State) -> Self {
        Channel {
            name: name.to_owned(),
            state,
            recv: VecDeque::new(),
            signalled: false,
        }
    }
}

#[cfg(test)]
mod tests;
