//! Per-host packet captures in the classic libpcap format (LINKTYPE_RAW: bare IPv4/IPv6
//! packets), with real IP, UDP and TCP headers and checksums so tshark and Wireshark
//! decode them. Timestamps are simulated time since the start of the run.

use crate::packet::{Body, Packet};
use crate::time::SimTime;
use std::net::{IpAddr, SocketAddr};

const LINKTYPE_RAW: u32 = 101;

/// An in-memory pcap file.
#[derive(Clone, Debug)]
pub struct Pcap {
    buf: Vec<u8>,
    pub packets: u64,
}

impl Default for Pcap {
    fn default() -> Self {
        Self::new()
    }
}

impl Pcap {
    pub fn new() -> Self {
        let mut buf = Vec::new();
        buf.extend_from_slice(&0xa1b2c3d4u32.to_le_bytes()); // microsecond resolution
        buf.extend_from_slice(&2u16.to_le_bytes());
        buf.extend_from_slice(&4u16.to_le_bytes());
        buf.extend_from_slice(&0i32.to_le_bytes());
        buf.extend_from_slice(&0u32.to_le_bytes());
        buf.extend_from_slice(&65535u32.to_le_bytes());
        buf.extend_from_slice(&LINKTYPE_RAW.to_le_bytes());
        Pcap { buf, packets: 0 }
    }

    pub fn record(&mut self, t: SimTime, p: &Packet) {
        let bytes = serialize(p);
        let us = t.as_nanos() / 1000;
        self.buf
            .extend_from_slice(&((us / 1_000_000) as u32).to_le_bytes());
        self.buf
            .extend_from_slice(&((us % 1_000_000) as u32).to_le_bytes());
        let len = bytes.len() as u32;
        self.buf.extend_from_slice(&len.to_le_bytes());
        self.buf.extend_from_slice(&len.to_le_bytes());
        self.buf.extend_from_slice(&bytes);
        self.packets += 1;
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }
}

/// Serialise a packet as a real IP datagram.
pub fn serialize(p: &Packet) -> Vec<u8> {
    let (proto, l4) = match &p.body {
        Body::Udp(d) => (17u8, udp(p.src, p.dst, d)),
        Body::Tcp(s) => {
            let mut h = Vec::with_capacity(20 + s.data.len());
            h.extend_from_slice(&p.src.port().to_be_bytes());
            h.extend_from_slice(&p.dst.port().to_be_bytes());
            h.extend_from_slice(&s.seq.to_be_bytes());
            h.extend_from_slice(&s.ack.to_be_bytes());
            h.push(5 << 4);
            h.push(s.flags);
            h.extend_from_slice(&(s.window.min(65535) as u16).to_be_bytes());
            h.extend_from_slice(&[0, 0, 0, 0]);
            h.extend_from_slice(&s.data);
            let c = checksum(&pseudo(p.src.ip(), p.dst.ip(), 6, h.len()), &h);
            h[16..18].copy_from_slice(&c.to_be_bytes());
            (6u8, h)
        }
        Body::Tunnel(inner) => {
            let mut payload = vec![0u8; crate::packet::TUNNEL_OVERHEAD];
            payload[0] = 4; // WireGuard-like "transport data" marker
            payload.extend_from_slice(&serialize(inner));
            (17u8, udp(p.src, p.dst, &payload))
        }
    };
    ip(p, proto, &l4)
}

fn udp(src: SocketAddr, dst: SocketAddr, data: &[u8]) -> Vec<u8> {
    let len = 8 + data.len();
    let mut h = Vec::with_capacity(len);
    h.extend_from_slice(&src.port().to_be_bytes());
    h.extend_from_slice(&dst.port().to_be_bytes());
    h.extend_from_slice(&(len.min(65535) as u16).to_be_bytes());
    h.extend_from_slice(&[0, 0]);
    h.extend_from_slice(data);
    let mut c = checksum(&pseudo(src.ip(), dst.ip(), 17, len), &h);
    if c == 0 {
        c = 0xffff;
    }
    h[6..8].copy_from_slice(&c.to_be_bytes());
    h
}

fn ip(p: &Packet, proto: u8, l4: &[u8]) -> Vec<u8> {
    match (p.src.ip(), p.dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = 20 + l4.len();
            let mut h = vec![0x45, 0];
            h.extend_from_slice(&(total.min(65535) as u16).to_be_bytes());
            h.extend_from_slice(&(p.id as u16).to_be_bytes());
            h.extend_from_slice(&[0x40, 0, p.ttl, proto, 0, 0]);
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&d.octets());
            let c = checksum(&[], &h);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            h.extend_from_slice(l4);
            h
        }
        (s, d) => {
            let (s, d) = (v6(s), v6(d));
            let mut h = vec![0x60, 0, 0, 0];
            h.extend_from_slice(&(l4.len().min(65535) as u16).to_be_bytes());
            h.push(proto);
            h.push(p.ttl);
            h.extend_from_slice(&s);
            h.extend_from_slice(&d);
            h.extend_from_slice(l4);
            h
        }
    }
}

fn v6(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V6(a) => a.octets(),
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
    }
}

fn pseudo(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> Vec<u8> {
    let mut v = Vec::new();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            v.extend_from_slice(&s.octets());
            v.extend_from_slice(&d.octets());
            v.extend_from_slice(&[0, proto]);
            v.extend_from_slice(&(len as u16).to_be_bytes());
        }
        (s, d) => {
            v.extend_from_slice(&v6(s));
            v.extend_from_slice(&v6(d));
            v.extend_from_slice(&(len as u32).to_be_bytes());
            v.extend_from_slice(&[0, 0, 0, proto]);
        }
    }
    v
}

/// The Internet checksum over `a` then `b`.
fn checksum(a: &[u8], b: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |data: &[u8]| {
        let mut chunks = data.chunks_exact(2);
        for c in &mut chunks {
            sum += u16::from_be_bytes([c[0], c[1]]) as u32;
        }
        if let [last] = chunks.remainder() {
            sum += (*last as u32) << 8;
        }
    };
    add(a);
    add(b);
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn ipv4_header_checksum_verifies() {
        let p = Packet {
            id: 7,
            src: "10.0.0.1:1000".parse().unwrap(),
            dst: "198.18.0.1:3478".parse().unwrap(),
            ttl: 64,
            body: Body::Udp(Bytes::from_static(b"hello")),
        };
        let b = serialize(&p);
        assert_eq!(b.len(), 20 + 8 + 5);
        assert_eq!(
            checksum(&[], &b[..20]),
            0,
            "header checksum verifies to zero"
        );
        let udp = &b[20..];
        assert_eq!(
            checksum(&pseudo(p.src.ip(), p.dst.ip(), 17, udp.len()), udp),
            0
        );
    }
}
