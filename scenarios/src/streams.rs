//! Glue that runs a sans-IO core's TCP streams ([`StreamEngine`]) on netsim's TCP: the
//! core's [`StreamCommand`]s become socket calls on the host, and the host's
//! [`TcpEvent`]s become the core's `handle_stream_*` inputs. It only moves bytes and
//! keeps the two numberings apart (the core's [`StreamId`]s, netsim's connection and
//! listener handles); every decision stays in the core.
//!
//! An [`App`](netsim::App) embeds one [`StreamGlue`], calls [`StreamGlue::drain`] after
//! each input it gives its core, and passes every `on_tcp` event to
//! [`StreamGlue::on_tcp`].

use netsim::{ConnId, Ctx, ListenerId, TcpEvent};
use node::device::streams::{StreamCommand, StreamEngine, StreamId};
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// What the glue did, for tests and reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamStats {
    pub listens: u64,
    pub listen_failures: u64,
    pub connects: u64,
    /// `Connect`s the host refused at once (address in use, not our address).
    pub connect_failures: u64,
    pub accepted: u64,
    pub bytes_written: u64,
    pub bytes_read: u64,
    /// Commands naming a stream or listener the glue does not know (already closed).
    pub unknown: u64,
}

/// The maps between a core's streams and the host's sockets (ordered maps only, so what
/// the glue does never depends on hash order).
#[derive(Debug, Default)]
pub struct StreamGlue {
    listeners: BTreeMap<SocketAddr, ListenerId>,
    by_conn: BTreeMap<ConnId, StreamId>,
    by_stream: BTreeMap<StreamId, ConnId>,
    pub stats: StreamStats,
}

impl StreamGlue {
    pub fn new() -> Self {
        StreamGlue::default()
    }

    /// Streams open (or opening) now.
    pub fn open_streams(&self) -> usize {
        self.by_stream.len()
    }

    /// The host connection behind a stream (to ask the host its addresses).
    pub fn conn(&self, id: StreamId) -> Option<ConnId> {
        self.by_stream.get(&id).copied()
    }

    /// The addresses listened on now.
    pub fn listening(&self) -> Vec<SocketAddr> {
        self.listeners.keys().copied().collect()
    }

    /// Executes every command `engine` has queued, including those its answers to
    /// failures queue.
    pub fn drain<E: StreamEngine + ?Sized>(&mut self, cx: &mut Ctx<'_>, now: u64, engine: &mut E) {
        while let Some(cmd) = engine.poll_stream_command() {
            self.execute(cx, now, engine, cmd);
        }
    }

    /// Executes one command; a failure goes back to `engine` at once.
    pub fn execute<E: StreamEngine + ?Sized>(
        &mut self,
        cx: &mut Ctx<'_>,
        now: u64,
        engine: &mut E,
        cmd: StreamCommand,
    ) {
        match cmd {
            StreamCommand::Listen { local } => {
                if self.listeners.contains_key(&local) {
                    self.stats.listen_failures += 1;
                    return engine.handle_listen_failed(now, local);
                }
                match cx.tcp_listen(local) {
                    Ok(l) => {
                        self.stats.listens += 1;
                        self.listeners.insert(local, l);
                    }
                    Err(_) => {
                        self.stats.listen_failures += 1;
                        engine.handle_listen_failed(now, local);
                    }
                }
            }
            StreamCommand::Unlisten { local } => match self.listeners.remove(&local) {
                Some(l) => {
                    let _ = cx.tcp_unlisten(l);
                }
                None => self.stats.unknown += 1,
            },
            StreamCommand::Connect { id, local, remote } => {
                self.stats.connects += 1;
                if let Some(old) = self.by_stream.remove(&id) {
                    // The engine reused a live number: it has forgotten the older stream.
                    self.by_conn.remove(&old);
                    cx.tcp_close(old);
                }
                match cx.tcp_connect_from(local, remote) {
                    Ok(conn) => {
                        self.by_stream.insert(id, conn);
                        self.by_conn.insert(conn, id);
                    }
                    Err(_) => {
                        self.stats.connect_failures += 1;
                        engine.handle_stream_closed(now, id);
                    }
                }
            }
            StreamCommand::Write { id, bytes } => {
                let Some(&conn) = self.by_stream.get(&id) else {
                    self.stats.unknown += 1;
                    return;
                };
                if cx.tcp_send(conn, &bytes).is_ok() {
                    self.stats.bytes_written += bytes.len() as u64;
                } else {
                    // The host already forgot it (reset in the same instant).
                    self.forget(conn);
                    engine.handle_stream_closed(now, id);
                }
            }
            StreamCommand::Close { id } => match self.by_stream.remove(&id) {
                Some(conn) => {
                    self.by_conn.remove(&conn);
                    cx.tcp_close(conn);
                }
                None => self.stats.unknown += 1,
            },
        }
    }

    /// Hands a host TCP event to `engine` if it concerns one of its streams or
    /// listeners (false otherwise: the event belongs to something else on the app, or to
    /// a stream the engine closed). Drains the engine's commands afterwards.
    pub fn on_tcp<E: StreamEngine + ?Sized>(
        &mut self,
        cx: &mut Ctx<'_>,
        now: u64,
        engine: &mut E,
        ev: &TcpEvent,
    ) -> bool {
        match *ev {
            TcpEvent::Accepted {
                listener,
                conn,
                remote,
            } => {
                let Some(local) = self
                    .listeners
                    .iter()
                    .find(|(_, l)| **l == listener)
                    .map(|(a, _)| *a)
                else {
                    return false;
                };
                self.stats.accepted += 1;
                let id = engine.handle_stream_accepted(now, local, remote);
                if let Some(old) = self.by_stream.insert(id, conn) {
                    // The engine reused a live number: the older stream is lost to it.
                    self.by_conn.remove(&old);
                    cx.tcp_close(old);
                }
                self.by_conn.insert(conn, id);
            }
            TcpEvent::Connected { conn } => {
                let Some(&id) = self.by_conn.get(&conn) else {
                    return false;
                };
                match cx.tcp_addrs(conn) {
                    Ok((local, _)) => engine.handle_stream_connected(now, id, local),
                    Err(_) => {
                        self.forget(conn);
                        engine.handle_stream_closed(now, id);
                    }
                }
            }
            TcpEvent::Data { conn, ref data } => {
                let Some(&id) = self.by_conn.get(&conn) else {
                    return false;
                };
                self.stats.bytes_read += data.len() as u64;
                engine.handle_stream_data(now, id, data);
            }
            TcpEvent::PeerClosed { conn } => {
                let Some(id) = self.forget(conn) else {
                    return false;
                };
                // The core sees the end; our side closes too so the host frees the socket.
                cx.tcp_close(conn);
                engine.handle_stream_closed(now, id);
            }
            TcpEvent::Reset { conn, .. } => {
                let Some(id) = self.forget(conn) else {
                    return false;
                };
                engine.handle_stream_closed(now, id);
            }
        }
        self.drain(cx, now, engine);
        true
    }

    fn forget(&mut self, conn: ConnId) -> Option<StreamId> {
        let id = self.by_conn.remove(&conn)?;
        self.by_stream.remove(&id);
        Some(id)
    }
}
