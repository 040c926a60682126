//! [`DeviceDriver`]: an engine with TCP streams (ICE-TCP, TURN over TCP) on one UDP
//! socket plus every TCP socket it asks for, on the real clock.
//!
//! Why tokio: it is already a node dependency and gives what this needs in a few lines —
//! `TcpSocket` with SO_REUSEADDR/SO_REUSEPORT, one reactor waiting on every socket and a
//! timer at once (no busy loop), and per-connection tasks whose write queues keep order
//! and flush before a close. The runtime is current-thread and owned by the driver: its
//! tasks only run inside [`DeviceDriver::turn`] (`block_on`), so the engine is touched
//! from one thread only and between turns nothing moves but kernel buffers.

use super::tcp::{self, Events, Serial, SockEvent, WriteMsg};
use super::{run_for_with, run_until_with, unix_ms, Engine};
use crate::device::streams::{StreamCommand, StreamEngine, StreamId};
use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::runtime::Runtime;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

/// Default cap on open and opening TCP connections: ICE needs a few per peer (one per
/// TCP pair being checked, then one), so 256 leaves room for many peers while a flood of
/// inbound connections cannot exhaust file descriptors. Accepted sockets beyond it are
/// dropped unseen by the engine; a `Connect` beyond it is reported closed.
pub const MAX_STREAMS: usize = 256;

/// Default cap on bytes queued on one connection and not yet written: a peer that stops
/// reading must not grow our memory without bound. Past it the connection is closed and
/// reported closed. 4 MiB is many seconds of what a control connection carries.
pub const MAX_UNSENT: usize = 4 * 1024 * 1024;

/// Cap on listening sockets (one per local address the engine listens on).
pub const MAX_LISTENERS: usize = 64;

/// Socket events buffered between the socket tasks and the engine. Readers wait when it
/// is full, so TCP flow control, not our memory, absorbs a fast sender.
const EVENT_QUEUE: usize = 64;

/// How long a closed connection may keep flushing its queued writes (to a peer that
/// does not read) before the socket is dropped anyway.
pub const CLOSE_LINGER: Duration = Duration::from_secs(10);

/// Datagrams taken per turn after the wait, so TCP events cannot starve UDP nor the
/// reverse.
const UDP_BURST: usize = 64;

/// Limits and socket flags of a [`DeviceDriver`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamOptions {
    pub max_streams: usize,
    pub max_unsent: usize,
    /// SO_REUSEPORT on the socket of a `Connect`. Always true in use; false only shows
    /// (in tests) that connecting from a listening port then fails.
    pub connect_reuseport: bool,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            max_streams: MAX_STREAMS,
            max_unsent: MAX_UNSENT,
            connect_reuseport: true,
        }
    }
}

/// What the driver refused or saw fail (none of it reaches the caller as an error).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Inbound connections dropped: over [`StreamOptions::max_streams`].
    pub accepts_dropped: u64,
    /// Connections closed because their unsent queue passed `max_unsent`.
    pub overflow_closed: u64,
    /// `Connect`s that failed (bind, refused, unreachable) or were over the cap.
    pub connects_failed: u64,
    /// `Listen`s that failed (address in use, not local, over [`MAX_LISTENERS`]).
    pub listens_failed: u64,
}

struct Conn {
    id: StreamId,
    queue: mpsc::UnboundedSender<WriteMsg>,
    unsent: Arc<AtomicUsize>,
    state: ConnState,
}

enum ConnState {
    /// The connect task, and the writer's end of the queue until it opens.
    Connecting {
        task: AbortHandle,
        queue: mpsc::UnboundedReceiver<WriteMsg>,
    },
    Open {
        reader: AbortHandle,
        writer: AbortHandle,
    },
}

/// An engine with streams ([`Engine`] + [`StreamEngine`]) on a UDP socket and the TCP
/// sockets it asks for. Same driving API as [`super::UdpDriver`].
pub struct DeviceDriver<E: Engine + StreamEngine> {
    /// The engine (named as in [`super::UdpDriver`], so callers switch with one line).
    pub dht: E,
    opts: StreamOptions,
    stats: StreamStats,
    udp: UdpSocket,
    buf: Vec<u8>,
    listeners: BTreeMap<SocketAddr, AbortHandle>,
    conns: BTreeMap<Serial, Conn>,
    ids: BTreeMap<StreamId, Serial>,
    next_serial: Serial,
    events_tx: Events,
    events_rx: mpsc::Receiver<SockEvent>,
    // Last: dropping the runtime drops every task and so every socket.
    rt: Runtime,
}

/// What woke a turn.
enum Wake {
    Udp(io::Result<(usize, SocketAddr)>),
    Sock(SockEvent),
    Timer,
}

impl<E: Engine + StreamEngine> DeviceDriver<E> {
    pub fn bind(engine: E, addr: SocketAddr) -> io::Result<DeviceDriver<E>> {
        Self::with_options(engine, addr, StreamOptions::default())
    }

    pub fn with_options(
        engine: E,
        addr: SocketAddr,
        opts: StreamOptions,
    ) -> io::Result<DeviceDriver<E>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let std_udp = std::net::UdpSocket::bind(addr)?;
        std_udp.set_nonblocking(true)?;
        let udp = {
            let _in_rt = rt.enter();
            UdpSocket::from_std(std_udp)?
        };
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        Ok(DeviceDriver {
            dht: engine,
            opts,
            stats: StreamStats::default(),
            udp,
            buf: vec![0; 65536],
            listeners: BTreeMap::new(),
            conns: BTreeMap::new(),
            ids: BTreeMap::new(),
            next_serial: 0,
            events_tx,
            events_rx,
            rt,
        })
    }

    /// The UDP socket's address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.udp.local_addr()
    }

    pub fn stats(&self) -> &StreamStats {
        &self.stats
    }

    /// Open and opening TCP connections.
    pub fn stream_count(&self) -> usize {
        self.conns.len()
    }

    /// Addresses listened on.
    pub fn listening(&self) -> impl Iterator<Item = &SocketAddr> {
        self.listeners.keys()
    }

    /// Run one turn: wait at most `max_wait` for a datagram, a socket event or the
    /// engine's next timeout, feed what came, and drain the engine after each input.
    /// Socket failures go to the engine; only a UDP receive error is returned.
    pub fn turn(
        &mut self,
        max_wait: Duration,
        on_event: &mut dyn FnMut(&mut E, E::Event),
    ) -> io::Result<()> {
        self.flush(on_event);
        let now = unix_ms();
        let until = self
            .dht
            .poll_timeout()
            .unwrap_or(now + max_wait.as_millis() as u64);
        let wait = until
            .saturating_sub(now)
            .clamp(1, max_wait.as_millis().max(1) as u64);
        let (udp, rx, buf) = (&self.udp, &mut self.events_rx, &mut self.buf);
        let wake = self.rt.block_on(async {
            tokio::select! {
                r = udp.recv_from(buf) => Wake::Udp(r),
                ev = rx.recv() => ev.map_or(Wake::Timer, Wake::Sock),
                _ = tokio::time::sleep(Duration::from_millis(wait)) => Wake::Timer,
            }
        });
        match wake {
            Wake::Udp(r) => self.udp_input(r, on_event)?,
            Wake::Sock(ev) => {
                self.sock_event(ev);
                self.flush(on_event);
            }
            Wake::Timer => {}
        }
        // Whatever else is ready, without waiting.
        for _ in 0..UDP_BURST {
            let r = self.udp.try_recv_from(&mut self.buf);
            if matches!(&r, Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
                break;
            }
            self.udp_input(r, on_event)?;
        }
        while let Ok(ev) = self.events_rx.try_recv() {
            self.sock_event(ev);
            self.flush(on_event);
        }
        let now = unix_ms();
        if self.dht.poll_timeout().is_some_and(|t| t <= now) {
            self.dht.handle_timeout(now);
        }
        self.flush(on_event);
        Ok(())
    }

    /// Run turns for `d`.
    pub fn run_for(
        &mut self,
        d: Duration,
        on_event: &mut dyn FnMut(&mut E, E::Event),
    ) -> io::Result<()> {
        run_for_with(d, |w| self.turn(w, on_event))
    }

    /// Run until `done` says so (checked after each event) or `timeout` passes; returns
    /// whether `done` was satisfied.
    pub fn run_until(
        &mut self,
        timeout: Duration,
        done: impl FnMut(&E::Event) -> bool,
    ) -> io::Result<bool> {
        run_until_with(timeout, done, |w, on_event| self.turn(w, on_event))
    }

    fn udp_input(
        &mut self,
        r: io::Result<(usize, SocketAddr)>,
        on_event: &mut dyn FnMut(&mut E, E::Event),
    ) -> io::Result<()> {
        match r {
            Ok((n, from)) => {
                let data = self.buf[..n].to_vec();
                self.dht.handle_datagram(unix_ms(), from, &data);
                self.flush(on_event);
                Ok(())
            }
            // An ICMP error for an earlier datagram: a lost datagram, as on the wire.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Drain the engine until it is quiet: datagrams, stream commands, events (any of
    /// which may produce more of the others).
    fn flush(&mut self, on_event: &mut dyn FnMut(&mut E, E::Event)) {
        loop {
            let mut more = false;
            while let Some(t) = self.dht.poll_transmit() {
                // A send error or a full buffer is a lost datagram, as on the wire.
                let _ = self.udp.try_send_to(&t.bytes, t.to);
                more = true;
            }
            while let Some(c) = self.dht.poll_stream_command() {
                self.command(c);
                more = true;
            }
            while let Some(e) = self.dht.poll_event() {
                on_event(&mut self.dht, e);
                more = true;
            }
            if !more {
                return;
            }
        }
    }

    fn command(&mut self, c: StreamCommand) {
        match c {
            StreamCommand::Listen { local } => self.listen(local),
            StreamCommand::Unlisten { local } => {
                if let Some(h) = self.listeners.remove(&local) {
                    h.abort();
                }
            }
            StreamCommand::Connect { id, local, remote } => self.connect(id, local, remote),
            StreamCommand::Write { id, bytes } => self.write(id, bytes),
            StreamCommand::Close { id } => {
                if let Some(conn) = self.remove(id) {
                    self.close_gracefully(conn);
                }
            }
        }
    }

    fn listen(&mut self, local: SocketAddr) {
        if self.listeners.contains_key(&local) {
            return;
        }
        let l = if self.listeners.len() >= MAX_LISTENERS {
            Err(io::Error::other("too many listeners"))
        } else {
            let _in_rt = self.rt.enter();
            tcp::listen(local)
        };
        match l {
            Ok(l) => {
                let task = self
                    .rt
                    .spawn(tcp::accept_loop(l, local, self.events_tx.clone()));
                self.listeners.insert(local, task.abort_handle());
            }
            Err(_) => {
                self.stats.listens_failed += 1;
                self.dht.handle_listen_failed(unix_ms(), local);
            }
        }
    }

    fn connect(&mut self, id: StreamId, local: SocketAddr, remote: SocketAddr) {
        // The engine reusing a live id replaces that connection.
        if let Some(old) = self.remove(id) {
            self.abort(old);
        }
        if self.conns.len() >= self.opts.max_streams {
            self.stats.connects_failed += 1;
            self.dht.handle_stream_closed(unix_ms(), id);
            return;
        }
        let serial = self.serial();
        let task = self.rt.spawn(tcp::connect(
            serial,
            local,
            remote,
            self.opts.connect_reuseport,
            self.events_tx.clone(),
        ));
        let (queue, rx) = mpsc::unbounded_channel();
        self.insert(
            serial,
            Conn {
                id,
                queue,
                unsent: Arc::default(),
                state: ConnState::Connecting {
                    task: task.abort_handle(),
                    queue: rx,
                },
            },
        );
    }

    fn write(&mut self, id: StreamId, bytes: Vec<u8>) {
        let Some(conn) = self.ids.get(&id).and_then(|s| self.conns.get(s)) else {
            return;
        };
        let unsent = conn.unsent.fetch_add(bytes.len(), Ordering::Relaxed) + bytes.len();
        if unsent > self.opts.max_unsent {
            self.stats.overflow_closed += 1;
            if let Some(conn) = self.remove(id) {
                self.abort(conn);
            }
            self.dht.handle_stream_closed(unix_ms(), id);
        } else {
            let _ = conn.queue.send(WriteMsg::Bytes(bytes));
        }
    }

    fn sock_event(&mut self, ev: SockEvent) {
        let now = unix_ms();
        match ev {
            SockEvent::Accepted {
                listen,
                remote,
                stream,
            } => {
                // Queued before an Unlisten: that listener is gone, so is this.
                if !self.listeners.contains_key(&listen) {
                    return;
                }
                if self.conns.len() >= self.opts.max_streams {
                    self.stats.accepts_dropped += 1;
                    return;
                }
                let id = self.dht.handle_stream_accepted(now, listen, remote);
                if let Some(old) = self.remove(id) {
                    self.abort(old);
                }
                let serial = self.serial();
                let (queue, rx) = mpsc::unbounded_channel();
                let unsent = Arc::<AtomicUsize>::default();
                let state = self.open(serial, stream, rx, unsent.clone());
                self.insert(
                    serial,
                    Conn {
                        id,
                        queue,
                        unsent,
                        state,
                    },
                );
            }
            SockEvent::Connected { serial, stream } => {
                // Gone: closed by the engine meanwhile, and the stream drops here.
                let Some(conn) = self.conns.remove(&serial) else {
                    return;
                };
                let local = stream.local_addr();
                let state = match conn.state {
                    ConnState::Connecting { queue, .. } => {
                        self.open(serial, stream, queue, conn.unsent.clone())
                    }
                    open => {
                        // A connect reports once; nothing to do.
                        self.conns.insert(
                            serial,
                            Conn {
                                state: open,
                                ..conn
                            },
                        );
                        return;
                    }
                };
                let id = conn.id;
                self.conns.insert(serial, Conn { state, ..conn });
                match local {
                    Ok(local) => self.dht.handle_stream_connected(now, id, local),
                    Err(_) => self.fail(serial),
                }
            }
            SockEvent::ConnectFailed { serial } => {
                if self.conns.contains_key(&serial) {
                    self.stats.connects_failed += 1;
                }
                self.fail(serial);
            }
            SockEvent::Data { serial, bytes } => {
                if let Some(id) = self.conns.get(&serial).map(|c| c.id) {
                    self.dht.handle_stream_data(now, id, &bytes);
                }
            }
            SockEvent::Closed { serial } => self.fail(serial),
        }
    }

    /// Start the reader and writer of an established connection.
    fn open(
        &self,
        serial: Serial,
        stream: tokio::net::TcpStream,
        queue: mpsc::UnboundedReceiver<WriteMsg>,
        unsent: Arc<AtomicUsize>,
    ) -> ConnState {
        // Small STUN checks and framed records: do not let Nagle hold them back.
        let _ = stream.set_nodelay(true);
        let (r, w) = stream.into_split();
        let events = self.events_tx.clone();
        let reader = self.rt.spawn(tcp::reader(r, serial, events.clone()));
        let writer = self.rt.spawn(tcp::writer(w, queue, unsent, serial, events));
        ConnState::Open {
            reader: reader.abort_handle(),
            writer: writer.abort_handle(),
        }
    }

    /// The connection `serial` ended on its own: drop it and tell the engine.
    fn fail(&mut self, serial: Serial) {
        if let Some(conn) = self.conns.remove(&serial) {
            self.ids.remove(&conn.id);
            let id = conn.id;
            self.abort(conn);
            self.dht.handle_stream_closed(unix_ms(), id);
        }
    }

    fn serial(&mut self) -> Serial {
        self.next_serial += 1;
        self.next_serial
    }

    fn insert(&mut self, serial: Serial, conn: Conn) {
        self.ids.insert(conn.id, serial);
        self.conns.insert(serial, conn);
    }

    fn remove(&mut self, id: StreamId) -> Option<Conn> {
        let serial = self.ids.remove(&id)?;
        self.conns.remove(&serial)
    }

    fn abort(&self, conn: Conn) {
        match conn.state {
            ConnState::Connecting { task, .. } => task.abort(),
            ConnState::Open { reader, writer } => {
                reader.abort();
                writer.abort();
            }
        }
    }

    /// The engine's Close: queued writes go out, then FIN; the reader keeps draining so
    /// the close is not a reset, and after [`CLOSE_LINGER`] both are dropped regardless.
    /// Its events are stale from now on (the serial is gone). A connection still
    /// opening is simply abandoned.
    fn close_gracefully(&self, conn: Conn) {
        match conn.state {
            ConnState::Connecting { task, .. } => task.abort(),
            ConnState::Open { reader, writer } => {
                let _ = conn.queue.send(WriteMsg::Close);
                self.rt.spawn(async move {
                    tokio::time::sleep(CLOSE_LINGER).await;
                    reader.abort();
                    writer.abort();
                });
            }
        }
    }
}
