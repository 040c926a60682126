//! UDP and TCP echo servers: the simplest far side for reachability probes. They record
//! every peer address they saw, which is what privacy checks look at.

use crate::app::{App, Ctx, TcpEvent};
use crate::sim::SockId;
use std::collections::BTreeSet;
use std::net::SocketAddr;

/// Echoes every datagram and stream byte back to its sender.
#[derive(Default)]
pub struct Echo {
    pub port: u16,
    pub udp_peers: BTreeSet<SocketAddr>,
    pub tcp_peers: BTreeSet<SocketAddr>,
    pub udp_datagrams: u64,
    pub tcp_bytes: u64,
}

impl Echo {
    pub fn new(port: u16) -> Self {
        Echo {
            port,
            ..Default::default()
        }
    }
}

impl App for Echo {
    fn start(&mut self, cx: &mut Ctx<'_>) {
        // Serve on both families; a host without one of them simply serves nothing there.
        for any in [
            SocketAddr::from(([0, 0, 0, 0], self.port)),
            SocketAddr::from(([0u16; 8], self.port)),
        ] {
            let _ = cx.udp_bind(any);
            let _ = cx.tcp_listen(any);
        }
    }
    fn on_udp(
        &mut self,
        cx: &mut Ctx<'_>,
        sock: SockId,
        from: SocketAddr,
        _to: SocketAddr,
        data: &[u8],
    ) {
        self.udp_peers.insert(from);
        self.udp_datagrams += 1;
        let _ = cx.udp_send(sock, from, data);
    }
    fn on_tcp(&mut self, cx: &mut Ctx<'_>, ev: TcpEvent) {
        match ev {
            TcpEvent::Accepted { remote, .. } => {
                self.tcp_peers.insert(remote);
            }
            TcpEvent::Data { conn, data } => {
                self.tcp_bytes += data.len() as u64;
                let _ = cx.tcp_send(conn, &data);
            }
            TcpEvent::PeerClosed { conn } => cx.tcp_close(conn),
            _ => {}
        }
    }
    crate::app_any!();
}
