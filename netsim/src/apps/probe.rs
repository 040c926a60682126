//! Reachability probes: a UDP prober and a TCP prober that talk to an [`Echo`] server and
//! record what came back, plus a multicast sender/listener.
//!
//! [`Echo`]: crate::apps::echo::Echo

use crate::app::{App, Ctx, TcpEvent};
use crate::sim::SockId;
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Sends `count` datagrams, one every 100 ms, and counts echoes.
pub struct UdpProbe {
    pub to: SocketAddr,
    pub count: u32,
    pub sent: u32,
    pub echoed: u32,
    sock: Option<SockId>,
}

impl UdpProbe {
    pub fn new(to: SocketAddr, count: u32) -> Self {
        UdpProbe {
            to,
            count,
            sent: 0,
            echoed: 0,
            sock: None,
        }
    }
}

impl App for UdpProbe {
    fn start(&mut self, cx: &mut Ctx<'_>) {
        self.sock = cx.udp_bind(SocketAddr::from(([0, 0, 0, 0], 0))).ok();
        cx.set_timer(Duration::from_millis(100), 0);
    }
    fn on_timer(&mut self, cx: &mut Ctx<'_>, _t: u64) {
        if self.sent >= self.count {
            return;
        }
        if let Some(s) = self.sock {
            let _ = cx.udp_send(s, self.to, b"probe");
            self.sent += 1;
        }
        cx.set_timer(Duration::from_millis(100), 0);
    }
    fn on_udp(
        &mut self,
        _cx: &mut Ctx<'_>,
        _s: SockId,
        from: SocketAddr,
        _to: SocketAddr,
        _d: &[u8],
    ) {
        if from == self.to {
            self.echoed += 1;
        }
    }
    crate::app_any!();
}

/// Opens a TCP connection, sends `bytes` and counts the echo.
pub struct TcpProbe {
    pub to: SocketAddr,
    pub bytes: usize,
    pub connected: bool,
    pub reset: Option<String>,
    pub echoed: usize,
}

impl TcpProbe {
    pub fn new(to: SocketAddr, bytes: usize) -> Self {
        TcpProbe {
            to,
            bytes,
            connected: false,
            reset: None,
            echoed: 0,
        }
    }
}

impl App for TcpProbe {
    fn start(&mut self, cx: &mut Ctx<'_>) {
        cx.set_timer(Duration::from_millis(100), 0);
    }
    fn on_timer(&mut self, cx: &mut Ctx<'_>, _t: u64) {
        if let Err(e) = cx.tcp_connect(self.to) {
            self.reset = Some(e.to_string());
        }
    }
    fn on_tcp(&mut self, cx: &mut Ctx<'_>, ev: TcpEvent) {
        match ev {
            TcpEvent::Connected { conn } => {
                self.connected = true;
                let data: Vec<u8> = (0..self.bytes).map(|i| (i % 251) as u8).collect();
                let _ = cx.tcp_send(conn, &data);
            }
            TcpEvent::Data { data, .. } => self.echoed += data.len(),
            TcpEvent::Reset { reason, .. } => self.reset = Some(reason.to_string()),
            _ => {}
        }
    }
    crate::app_any!();
}

/// Joins a multicast group on a port, records who it heard, and (if `announce`) sends a
/// few announcements to the group, as local peer discovery does.
pub struct Multicast {
    pub group: IpAddr,
    pub port: u16,
    pub announce: bool,
    pub heard_from: BTreeSet<IpAddr>,
    sock: Option<SockId>,
    sent: u32,
}

impl Multicast {
    pub fn new(group: IpAddr, port: u16, announce: bool) -> Self {
        Multicast {
            group,
            port,
            announce,
            heard_from: BTreeSet::new(),
            sock: None,
            sent: 0,
        }
    }
}

impl App for Multicast {
    fn start(&mut self, cx: &mut Ctx<'_>) {
        let any = if self.group.is_ipv4() {
            "0.0.0.0"
        } else {
            "::"
        };
        let Ok(any) = any.parse::<IpAddr>() else {
            return;
        };
        if let Ok(s) = cx.udp_bind(SocketAddr::new(any, self.port)) {
            let _ = cx.udp_join_multicast(s, self.group);
            self.sock = Some(s);
        }
        if self.announce {
            cx.set_timer(Duration::from_millis(200), 0);
        }
    }
    fn on_timer(&mut self, cx: &mut Ctx<'_>, _t: u64) {
        if let Some(s) = self.sock {
            let _ = cx.udp_send(s, SocketAddr::new(self.group, self.port), b"hello");
            self.sent += 1;
        }
        if self.sent < 3 {
            cx.set_timer(Duration::from_millis(500), 0);
        }
    }
    fn on_udp(
        &mut self,
        _cx: &mut Ctx<'_>,
        _s: SockId,
        from: SocketAddr,
        _to: SocketAddr,
        _d: &[u8],
    ) {
        self.heard_from.insert(from.ip());
    }
    crate::app_any!();
}
