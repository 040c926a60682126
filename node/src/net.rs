//! The transports the node's services and clients run on, as traits: real tokio sockets
//! for the CLI and conformance, turmoil's simulated ones in tests (DESIGN.md §2: the
//! same test body runs on both). The node itself knows nothing of turmoil.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncWrite};

/// Opens byte streams to a server, by `host:port`.
pub trait Connector: Send + Sync {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn connect(&self, host_port: &str) -> impl Future<Output = io::Result<Self::Io>> + Send;
}

/// Real TCP.
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpConnector;

impl Connector for TcpConnector {
    type Io = tokio::net::TcpStream;
    fn connect(&self, host_port: &str) -> impl Future<Output = io::Result<Self::Io>> + Send {
        tokio::net::TcpStream::connect(host_port.to_string())
    }
}

/// Accepts byte streams.
pub trait Listener {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Io, SocketAddr)>>;
}

impl Listener for tokio::net::TcpListener {
    type Io = tokio::net::TcpStream;
    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Io, SocketAddr)>> {
        tokio::net::TcpListener::accept(self)
    }
}

/// A datagram socket (the DHT's UDP).
pub trait Datagrams {
    fn send_to(&self, buf: &[u8], to: SocketAddr) -> impl Future<Output = io::Result<usize>>;
    fn recv_from(&self, buf: &mut [u8]) -> impl Future<Output = io::Result<(usize, SocketAddr)>>;
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

impl Datagrams for tokio::net::UdpSocket {
    fn send_to(&self, buf: &[u8], to: SocketAddr) -> impl Future<Output = io::Result<usize>> {
        tokio::net::UdpSocket::send_to(self, buf, to)
    }
    fn recv_from(&self, buf: &mut [u8]) -> impl Future<Output = io::Result<(usize, SocketAddr)>> {
        tokio::net::UdpSocket::recv_from(self, buf)
    }
    fn local_addr(&self) -> io::Result<SocketAddr> {
        tokio::net::UdpSocket::local_addr(self)
    }
}
