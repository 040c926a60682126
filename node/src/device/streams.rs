//! The stream side of a device's I/O: the TCP connections ICE-TCP (RFC 6544) and TURN over
//! TCP need. The sans-IO core numbers its connections and asks the driver to listen,
//! connect, write and close; the driver reports what the sockets did. The tokio driver
//! does this on real sockets, the simulator glue on netsim's TCP.

use std::net::SocketAddr;

/// One TCP connection, numbered by the engine (for `Connect`) or returned by
/// [`StreamEngine::handle_stream_accepted`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId(pub u64);

/// What the driver must do with TCP sockets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamCommand {
    /// Listen on `local` (a concrete port) with SO_REUSEADDR and SO_REUSEPORT, so the same
    /// port can also `Connect` (simultaneous open). A failure is reported with
    /// [`StreamEngine::handle_listen_failed`].
    Listen { local: SocketAddr },
    /// Stop listening on `local` (accepted connections stay open).
    Unlisten { local: SocketAddr },
    /// Bind to `local` (port 0: any port; the port of a listener: simultaneous open) and
    /// connect to `remote`. Report [`StreamEngine::handle_stream_connected`], or
    /// [`StreamEngine::handle_stream_closed`] if it fails.
    Connect {
        id: StreamId,
        local: SocketAddr,
        remote: SocketAddr,
    },
    /// Write these bytes, in order after earlier writes on `id`.
    Write { id: StreamId, bytes: Vec<u8> },
    /// Close `id` (after its queued writes); no `handle_stream_closed` follows.
    Close { id: StreamId },
}

/// A sans-IO core with TCP streams (besides its datagrams, see
/// [`crate::driver::Engine`]). After each input drain `poll_stream_command` as well.
pub trait StreamEngine {
    /// An inbound connection on a listening address; returns its number.
    fn handle_stream_accepted(
        &mut self,
        now: u64,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> StreamId;
    /// A `Connect` succeeded; `local` is the address it got.
    fn handle_stream_connected(&mut self, now: u64, id: StreamId, local: SocketAddr);
    fn handle_stream_data(&mut self, now: u64, id: StreamId, bytes: &[u8]);
    /// The connection ended (peer close, reset, or a failed `Connect`).
    fn handle_stream_closed(&mut self, now: u64, id: StreamId);
    /// A `Listen` could not be set up (address in use, no such address).
    fn handle_listen_failed(&mut self, now: u64, local: SocketAddr);
    fn poll_stream_command(&mut self) -> Option<StreamCommand>;
}
