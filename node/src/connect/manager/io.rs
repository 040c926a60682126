//! The driver's sockets as the manager numbers them: which connection (and which of its
//! agent's or TURN client's connections) each stream and listener belongs to, and the
//! [`StreamCommand`]s that ask the driver to open, write and close them.

use super::peer::PeerConnection;
use crate::connect::ice::{self, ConnId};
use crate::connect::turn;
use crate::device::streams::{StreamCommand, StreamId};
use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// What a driver stream belongs to: an agent's TCP connection, or a TURN client's
/// connection to its server (control or relayed data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Sock {
    Ice(ConnId),
    Turn(turn::ConnId),
}

/// Streams and listeners by connection key (see the module doc).
#[derive(Default)]
pub struct Io {
    pub listeners: BTreeMap<SocketAddr, u64>,
    pub streams: BTreeMap<StreamId, (u64, Sock)>,
    by_sock: BTreeMap<(u64, Sock), StreamId>,
    next_stream: u64,
    pub commands: VecDeque<StreamCommand>,
}

impl Io {
    pub fn new_stream(&mut self, key: u64, sock: Sock) -> StreamId {
        let id = StreamId(self.next_stream);
        self.next_stream += 1;
        self.streams.insert(id, (key, sock));
        self.by_sock.insert((key, sock), id);
        id
    }

    /// A stream nobody owns: the driver is told to close it.
    pub fn refuse(&mut self) -> StreamId {
        let id = StreamId(self.next_stream);
        self.next_stream += 1;
        self.commands.push_back(StreamCommand::Close { id });
        id
    }

    pub fn remove(&mut self, id: StreamId) -> Option<(u64, Sock)> {
        let (key, sock) = self.streams.remove(&id)?;
        self.by_sock.remove(&(key, sock));
        Some((key, sock))
    }

    fn write(&mut self, key: u64, sock: Sock, bytes: Vec<u8>) {
        if let Some(&id) = self.by_sock.get(&(key, sock)) {
            self.commands.push_back(StreamCommand::Write { id, bytes });
        }
    }

    fn close(&mut self, key: u64, sock: Sock) {
        if let Some(id) = self.by_sock.remove(&(key, sock)) {
            self.streams.remove(&id);
            self.commands.push_back(StreamCommand::Close { id });
        }
    }

    /// Connection `key` is gone: its listeners and streams go too.
    pub fn drop_connection(&mut self, key: u64) {
        let listens: Vec<SocketAddr> = self
            .listeners
            .iter()
            .filter(|(_, k)| **k == key)
            .map(|(a, _)| *a)
            .collect();
        for local in listens {
            self.listeners.remove(&local);
            self.commands.push_back(StreamCommand::Unlisten { local });
        }
        let socks: Vec<Sock> = self
            .by_sock
            .range((key, Sock::Ice(ConnId(0)))..)
            .take_while(|((k, _), _)| *k == key)
            .map(|((_, s), _)| *s)
            .collect();
        for s in socks {
            self.close(key, s);
        }
    }

    /// The connection's agent commands and TCP transmits, and its TURN client's, as the
    /// driver's stream commands. Bytes on a relayed connection go through the TURN client.
    pub fn agent_io(&mut self, key: u64, c: &mut PeerConnection) {
        let Some(a) = c.agent.as_mut() else {
            return;
        };
        let mut relay = c.relay.as_mut();
        while let Some(cmd) = a.poll_command() {
            match cmd {
                ice::Command::Listen { local } => {
                    self.listeners.insert(local, key);
                    self.commands.push_back(StreamCommand::Listen { local });
                }
                ice::Command::Connect {
                    conn,
                    local,
                    remote,
                } => {
                    let id = self.new_stream(key, Sock::Ice(conn));
                    self.commands
                        .push_back(StreamCommand::Connect { id, local, remote });
                }
                ice::Command::Close { conn } => match relay.as_deref_mut() {
                    Some(r) if r.owns(conn) => r.close(conn),
                    _ => self.close(key, Sock::Ice(conn)),
                },
            }
        }
        while let Some(t) = a.poll_transmit() {
            // Connections use no UDP sockets (jamid's are TCP only), so only TCP comes out.
            if let ice::Transmit::Tcp { conn, payload } = t {
                match relay.as_deref_mut() {
                    Some(r) if r.owns(conn) => r.send(conn, &payload),
                    _ => self.write(key, Sock::Ice(conn), payload),
                }
            }
        }
        let Some(r) = relay else {
            return;
        };
        while let Some(t) = r.client.poll_transmit() {
            match t {
                turn::Transmit::Open { conn, to } => {
                    let id = self.new_stream(key, Sock::Turn(conn));
                    // Any local address: the route to the server picks it.
                    let any = match to {
                        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                    };
                    let local = SocketAddr::new(any, 0);
                    self.commands.push_back(StreamCommand::Connect {
                        id,
                        local,
                        remote: to,
                    });
                }
                turn::Transmit::Write { conn, data } => self.write(key, Sock::Turn(conn), data),
                turn::Transmit::Close { conn } => self.close(key, Sock::Turn(conn)),
                // The control channel is TCP (see `relay`).
                turn::Transmit::Datagram { .. } => {}
            }
        }
    }
}
