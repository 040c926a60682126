//! Applications running on simulated hosts, and the context through which they act.
//! An application is a plain state machine: the simulator calls it with what happened
//! (start, a datagram, a timer, a stream event) and it acts only through [`Ctx`], which
//! gives it its host's clock, its host's seeded RNG, sockets, timers and disk.

use crate::sim::{ConnId, Core, ListenerId, NodeId, SockId};
use crate::time::SimTime;
use bytes::Bytes;
use rand_chacha::ChaCha8Rng;
use std::any::Any;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Index of an application on its host.
pub type AppId = usize;

/// A stream event delivered to the application that owns the connection or listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TcpEvent {
    Accepted {
        listener: ListenerId,
        conn: ConnId,
        remote: SocketAddr,
    },
    Connected {
        conn: ConnId,
    },
    Data {
        conn: ConnId,
        data: Bytes,
    },
    PeerClosed {
        conn: ConnId,
    },
    /// Refused, reset or timed out; the connection is gone.
    Reset {
        conn: ConnId,
        reason: &'static str,
    },
}

/// A program on a simulated host.
pub trait App: Any {
    /// Called when the host starts (and again after every restart, on a fresh instance).
    fn start(&mut self, _cx: &mut Ctx<'_>) {}
    /// A datagram arrived on `sock`; `to` is the address it was sent to.
    fn on_udp(
        &mut self,
        _cx: &mut Ctx<'_>,
        _sock: SockId,
        _from: SocketAddr,
        _to: SocketAddr,
        _data: &[u8],
    ) {
    }
    fn on_timer(&mut self, _cx: &mut Ctx<'_>, _token: u64) {}
    fn on_tcp(&mut self, _cx: &mut Ctx<'_>, _ev: TcpEvent) {}
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

/// Implements the `as_any` boilerplate of [`App`].
#[macro_export]
macro_rules! app_any {
    () => {
        fn as_any(&self) -> &dyn ::std::any::Any {
            self
        }
        fn as_any_mut(&mut self) -> &mut dyn ::std::any::Any {
            self
        }
    };
}

/// Errors a socket call can return.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    #[error("address {0} is in use")]
    AddrInUse(SocketAddr),
    #[error("address {0} is not one of this host's")]
    AddrNotAvailable(IpAddr),
    #[error("no such socket or connection")]
    BadHandle,
    #[error("host has no address of that family")]
    NoAddress,
}

/// What an application can do. Borrowed from the simulator for the length of one call.
pub struct Ctx<'a> {
    pub(crate) core: &'a mut Core,
    pub(crate) node: NodeId,
    pub(crate) app: AppId,
}

impl<'a> Ctx<'a> {
    /// The host's clock (global time through the host's offset and drift).
    pub fn now(&self) -> SimTime {
        self.core.host_now(self.node)
    }
    /// Global simulated time, for measurements that must not drift (reports only).
    pub fn sim_now(&self) -> SimTime {
        self.core.now
    }
    /// This host's random stream, derived from the scenario seed and the host's name.
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        self.core.host_rng(self.node)
    }
    pub fn node(&self) -> NodeId {
        self.node
    }
    pub fn host_name(&self) -> &str {
        self.core.node_name(self.node)
    }
    /// Addresses sockets can bind (the tunnel address first when the host uses one).
    pub fn addrs(&self) -> Vec<IpAddr> {
        self.core.host_addrs(self.node)
    }
    /// Bind a UDP socket; port 0 picks an ephemeral port, an unspecified IP the host's
    /// primary address of that family.
    pub fn udp_bind(&mut self, addr: SocketAddr) -> Result<SockId, NetError> {
        self.core.udp_bind(self.node, self.app, addr)
    }
    pub fn udp_send(&mut self, sock: SockId, to: SocketAddr, data: &[u8]) -> Result<(), NetError> {
        self.core
            .udp_send(self.node, sock, to, Bytes::copy_from_slice(data))
    }
    pub fn udp_join_multicast(&mut self, sock: SockId, group: IpAddr) -> Result<(), NetError> {
        self.core.udp_join(self.node, sock, group)
    }
    pub fn udp_close(&mut self, sock: SockId) {
        self.core.udp_close(self.node, sock)
    }
    pub fn local_addr(&self, sock: SockId) -> Result<SocketAddr, NetError> {
        self.core.udp_local_addr(self.node, sock)
    }
    pub fn tcp_listen(&mut self, addr: SocketAddr) -> Result<ListenerId, NetError> {
        self.core.tcp_listen(self.node, self.app, addr)
    }
    pub fn tcp_connect(&mut self, to: SocketAddr) -> Result<ConnId, NetError> {
        self.core.tcp_connect(self.node, self.app, None, to)
    }
    /// Connect from a chosen local address and port (port 0: ephemeral). The port may be
    /// shared with a listener and other connections to other remotes (SO_REUSEADDR), as
    /// ICE-TCP's simultaneous-open and server-reflexive candidates need (RFC 6544 §5).
    /// If a SYN from `to` arrives while this connection is in SYN-SENT, the two open
    /// simultaneously (RFC 9293 §3.5): the app sees `Connected` either way.
    pub fn tcp_connect_from(
        &mut self,
        from: SocketAddr,
        to: SocketAddr,
    ) -> Result<ConnId, NetError> {
        self.core.tcp_connect(self.node, self.app, Some(from), to)
    }
    /// Stop listening (connections it accepted stay open); its address may be listened
    /// on again.
    pub fn tcp_unlisten(&mut self, listener: ListenerId) -> Result<(), NetError> {
        self.core.tcp_unlisten(self.node, listener)
    }
    /// The local address a listener is bound to (to learn an ephemeral port).
    pub fn tcp_listener_addr(&self, listener: ListenerId) -> Result<SocketAddr, NetError> {
        self.core.tcp_listener_addr(self.node, listener)
    }
    pub fn tcp_send(&mut self, conn: ConnId, data: &[u8]) -> Result<(), NetError> {
        self.core.tcp_send(self.node, conn, data)
    }
    pub fn tcp_close(&mut self, conn: ConnId) {
        self.core.tcp_close(self.node, conn)
    }
    pub fn tcp_addrs(&self, conn: ConnId) -> Result<(SocketAddr, SocketAddr), NetError> {
        self.core.tcp_addrs(self.node, conn)
    }
    /// Call `on_timer(token)` after `after` of this host's clock.
    pub fn set_timer(&mut self, after: Duration, token: u64) {
        self.core.set_timer(self.node, self.app, after, token)
    }
    /// Persistent storage that survives a crash and restart of the host.
    pub fn disk(&mut self) -> &mut BTreeMap<String, Vec<u8>> {
        self.core.disk(self.node)
    }
    /// Add a line to the run's trace.
    pub fn trace(&mut self, msg: &str) {
        let line = format!("app   {} {}", self.core.node_name(self.node), msg);
        self.core.trace_line(&line);
    }
    /// Record a point of a named metric (plotted in reports), at global time.
    pub fn metric(&mut self, name: &str, value: f64) {
        let t = self.core.now;
        self.core.metric(name, t, value);
    }
}
