//! Packets as the simulator carries them: IP endpoints, a transport body and a size that
//! the links charge for. Headers are not serialised except when a pcap is written.

use bytes::Bytes;
use std::fmt;
use std::net::SocketAddr;

/// Transport protocol of a packet or a NAT mapping.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Udp,
    Tcp,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Udp => "udp",
            Proto::Tcp => "tcp",
        })
    }
}

/// TCP control flags used by the stream model.
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const ACK: u8 = 0x10;
}

/// One TCP segment of the stream model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpSegment {
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
    pub window: u32,
    pub data: Bytes,
}

/// What a packet carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    Udp(Bytes),
    Tcp(TcpSegment),
    /// A UDP datagram carrying a whole inner IP packet (VPN and Tor client tunnels).
    Tunnel(Box<Packet>),
}

/// A simulated IP packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// Unique within a run; traces use it to follow one packet across hops.
    pub id: u64,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub ttl: u8,
    pub body: Body,
}

/// Bytes of tunnel framing inside the outer UDP payload (WireGuard-like).
pub const TUNNEL_OVERHEAD: usize = 32;

impl Packet {
    /// The TCP flags, for a TCP packet.
    pub fn tcp_flags(&self) -> Option<u8> {
        match &self.body {
            Body::Tcp(seg) => Some(seg.flags),
            _ => None,
        }
    }

    /// A SYN without ACK: the first packet of a connection.
    pub fn is_syn(&self) -> bool {
        self.tcp_flags()
            .is_some_and(|f| f & tcp_flags::SYN != 0 && f & tcp_flags::ACK == 0)
    }

    pub fn proto(&self) -> Proto {
        match self.body {
            Body::Tcp(_) => Proto::Tcp,
            Body::Udp(_) | Body::Tunnel(_) => Proto::Udp,
        }
    }

    fn ip_header_len(&self) -> usize {
        if self.src.is_ipv4() {
            20
        } else {
            40
        }
    }

    /// Size on the wire at the IP layer, which is what links serialise and queue.
    pub fn wire_len(&self) -> usize {
        self.ip_header_len()
            + match &self.body {
                Body::Udp(d) => 8 + d.len(),
                Body::Tcp(s) => 20 + s.data.len(),
                Body::Tunnel(inner) => 8 + TUNNEL_OVERHEAD + inner.wire_len(),
            }
    }

    /// Payload length as an application sees it (for traces).
    pub fn payload_len(&self) -> usize {
        match &self.body {
            Body::Udp(d) => d.len(),
            Body::Tcp(s) => s.data.len(),
            Body::Tunnel(inner) => TUNNEL_OVERHEAD + inner.wire_len(),
        }
    }

    pub fn is_multicast(&self) -> bool {
        let ip = self.dst.ip();
        ip.is_multicast() || matches!(ip, std::net::IpAddr::V4(v4) if v4.is_broadcast())
    }
}

impl fmt::Display for Packet {
    /// `udp 10.0.0.2:4000 > 198.18.0.1:3478 len=20`, with TCP flags and tunnels spelled out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.body {
            Body::Udp(d) => write!(f, "udp {} > {} len={}", self.src, self.dst, d.len()),
            Body::Tcp(s) => {
                let mut flags = String::new();
                for (bit, c) in [
                    (tcp_flags::SYN, 'S'),
                    (tcp_flags::FIN, 'F'),
                    (tcp_flags::RST, 'R'),
                    (tcp_flags::ACK, '.'),
                ] {
                    if s.flags & bit != 0 {
                        flags.push(c);
                    }
                }
                write!(
                    f,
                    "tcp {} > {} [{}] seq={} ack={} len={}",
                    self.src,
                    self.dst,
                    flags,
                    s.seq,
                    s.ack,
                    s.data.len()
                )
            }
            Body::Tunnel(inner) => write!(f, "tun {} > {} ({})", self.src, self.dst, inner),
        }
    }
}
