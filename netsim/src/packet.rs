//! Packets as the simulator carries them: IP endpoints, a transport body and a size that
//! the links charge for. Headers are not serialised except when a pcap is written.

use bytes::Bytes;
use std::fmt;
use std::net::SocketAddr;

/// Writes `n` in decimal into the end of `buf`; returns where the digits start.
pub(crate) fn decimal(mut n: u64, buf: &mut [u8; 20]) -> usize {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return i;
        }
    }
}

/// A socket address written as `Display` writes it, without the formatter machinery:
/// two addresses per packet line make this the trace's hottest formatting.
pub struct FastAddr<'a>(pub &'a SocketAddr);

impl fmt::Display for FastAddr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let SocketAddr::V4(a) = self.0 else {
            return write!(f, "{}", self.0);
        };
        let mut out = [0u8; 21];
        let mut len = 0;
        let mut digits = [0u8; 20];
        for (k, o) in a.ip().octets().into_iter().enumerate() {
            if k > 0 {
                out[len] = b'.';
                len += 1;
            }
            let at = decimal(o as u64, &mut digits);
            out[len..len + 20 - at].copy_from_slice(&digits[at..]);
            len += 20 - at;
        }
        out[len] = b':';
        len += 1;
        let at = decimal(a.port() as u64, &mut digits);
        out[len..len + 20 - at].copy_from_slice(&digits[at..]);
        len += 20 - at;
        // Only ASCII digits, dots and a colon were written.
        f.write_str(std::str::from_utf8(&out[..len]).unwrap_or(""))
    }
}

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
            Body::Udp(d) => write!(
                f,
                "udp {} > {} len={}",
                FastAddr(&self.src),
                FastAddr(&self.dst),
                d.len()
            ),
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

#[cfg(test)]
mod fast_addr_tests {
    use super::*;

    #[test]
    fn fast_addresses_match_display() {
        for a in [
            "0.0.0.0:0",
            "10.0.0.2:4000",
            "255.255.255.255:65535",
            "198.18.0.1:3478",
            "[2001:db8::1]:4222",
        ] {
            let a: SocketAddr = a.parse().unwrap();
            assert_eq!(FastAddr(&a).to_string(), a.to_string());
        }
    }
}
