//! turmoil's simulated TCP and UDP behind the node's transport traits (`node::net`),
//! so the tests of the HTTP services run their real code inside turmoil.
#![allow(dead_code)] // each test file uses some of these

use node::net::{Connector, Datagrams, Listener};
use std::future::Future;
use std::io;
use std::net::SocketAddr;

pub struct SimConnector;

impl Connector for SimConnector {
    type Io = turmoil::net::TcpStream;
    fn connect(&self, host_port: &str) -> impl Future<Output = io::Result<Self::Io>> + Send {
        let hp = host_port.to_string();
        async move { turmoil::net::TcpStream::connect(hp.as_str()).await }
    }
}

pub struct SimListener(pub turmoil::net::TcpListener);

impl Listener for SimListener {
    type Io = turmoil::net::TcpStream;
    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Io, SocketAddr)>> {
        self.0.accept()
    }
}

pub struct SimUdp(pub turmoil::net::UdpSocket);

impl Datagrams for SimUdp {
    fn send_to(&self, buf: &[u8], to: SocketAddr) -> impl Future<Output = io::Result<usize>> {
        self.0.send_to(buf, to)
    }
    fn recv_from(&self, buf: &mut [u8]) -> impl Future<Output = io::Result<(usize, SocketAddr)>> {
        self.0.recv_from(buf)
    }
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}
