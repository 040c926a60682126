//! The stream transport: a compact TCP (three-way handshake and simultaneous open,
//! cumulative ACKs, Reno-style congestion window, fast retransmit, RTO with exponential
//! backoff, FIN and RST). It is connection-level, not a faithful TCP, but it gives ordered
//! reliable bytes paced by the links, survives loss, and crosses NATs and firewalls as
//! real SYNs do.
//!
//! Simultaneous open (RFC 9293 §3.5, figure 8): a SYN that reaches a connection in
//! SYN-SENT moves it to SYN-RECEIVED and is answered with a SYN-ACK; each end becomes
//! ESTABLISHED once its SYN is acknowledged. ICE-TCP's simultaneous-open candidates
//! (RFC 6544 §2.2) depend on it. RST is accepted as RFC 9293 §3.10.7 says: in SYN-SENT
//! only when it acknowledges our SYN, elsewhere only when its sequence number is in the
//! receive window, so a stray or forged RST cannot kill a connection.

use crate::packet::{tcp_flags::*, TcpSegment};
use crate::time::SimTime;
use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

pub const MSS: usize = 1360;
const INIT_CWND: usize = 10 * MSS;
const RWND: u32 = 1 << 20;
const RTO_MIN: Duration = Duration::from_millis(200);
const RTO_INIT: Duration = Duration::from_secs(1);
const RTO_MAX: Duration = Duration::from_secs(60);
/// Retransmissions of one segment before the connection is declared dead.
const MAX_RETRIES: u32 = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpState {
    SynSent,
    SynReceived,
    Established,
    /// We sent FIN (and may still receive).
    Closing,
    Closed,
}

/// What the connection tells its owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnEvent {
    Connected,
    Data(Bytes),
    /// The peer closed its side (FIN) – no more data will arrive.
    PeerClosed,
    /// Refused (RST to our SYN), reset by the peer, or timed out.
    Reset(&'static str),
}

/// One end of a stream.
#[derive(Debug)]
pub struct TcpConn {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub state: TcpState,
    iss: u32,
    snd_una: u32,
    snd_nxt: u32,
    /// Highest sequence number ever sent (go-back-N rewinds `snd_nxt`, not this).
    snd_max: u32,
    /// Bytes from `snd_una` onwards: sent-but-unacked, then unsent.
    send_buf: VecDeque<u8>,
    fin_queued: bool,
    fin_sent: bool,
    rcv_nxt: u32,
    out_of_order: BTreeMap<u32, Bytes>,
    peer_fin: bool,
    cwnd: usize,
    ssthresh: usize,
    dup_acks: u32,
    srtt: Option<Duration>,
    rttvar: Duration,
    rto: Duration,
    retries: u32,
    /// Timed segment for RTT sampling (Karn: never a retransmitted one).
    rtt_probe: Option<(u32, SimTime)>,
    /// Deadline of the retransmission timer.
    pub rto_deadline: Option<SimTime>,
    out: Vec<TcpSegment>,
    events: Vec<ConnEvent>,
    pub bytes_acked: u64,
    pub retransmits: u64,
    /// Whether a SYN received in SYN-SENT starts a simultaneous open (true, as RFC 9293
    /// says). False only in tests that break the model on purpose.
    pub simultaneous_open: bool,
    /// The connection went through a simultaneous open.
    pub opened_simultaneously: bool,
    /// RSTs ignored because they did not acknowledge our SYN or were out of window.
    pub bad_rsts: u64,
}

fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}
fn seq_le(a: u32, b: u32) -> bool {
    a == b || seq_lt(a, b)
}

impl TcpConn {
    fn new(local: SocketAddr, remote: SocketAddr, iss: u32, state: TcpState) -> Self {
        TcpConn {
            local,
            remote,
            state,
            iss,
            snd_una: iss,
            snd_nxt: iss.wrapping_add(1),
            snd_max: iss.wrapping_add(1),
            send_buf: VecDeque::new(),
            fin_queued: false,
            fin_sent: false,
            rcv_nxt: 0,
            out_of_order: BTreeMap::new(),
            peer_fin: false,
            cwnd: INIT_CWND,
            ssthresh: usize::MAX,
            dup_acks: 0,
            srtt: None,
            rttvar: Duration::ZERO,
            rto: RTO_INIT,
            retries: 0,
            rtt_probe: None,
            rto_deadline: None,
            out: Vec::new(),
            events: Vec::new(),
            bytes_acked: 0,
            retransmits: 0,
            simultaneous_open: true,
            opened_simultaneously: false,
            bad_rsts: 0,
        }
    }

    /// Active open: queues the SYN.
    pub fn connect(now: SimTime, local: SocketAddr, remote: SocketAddr, iss: u32) -> Self {
        let mut c = TcpConn::new(local, remote, iss, TcpState::SynSent);
        c.send_syn(now);
        c
    }

    /// Passive open from a received SYN: queues the SYN-ACK.
    pub fn accept(
        now: SimTime,
        local: SocketAddr,
        remote: SocketAddr,
        iss: u32,
        syn: &TcpSegment,
    ) -> Self {
        let mut c = TcpConn::new(local, remote, iss, TcpState::SynReceived);
        c.rcv_nxt = syn.seq.wrapping_add(1);
        c.send_syn(now);
        c
    }

    fn send_syn(&mut self, now: SimTime) {
        let mut flags = SYN;
        if self.state == TcpState::SynReceived {
            flags |= ACK;
        }
        self.out.push(TcpSegment {
            flags,
            seq: self.iss,
            ack: self.rcv_nxt,
            window: RWND,
            data: Bytes::new(),
        });
        self.rto_deadline = Some(now + self.rto);
    }

    /// Queue application bytes; they go out as the window allows.
    pub fn send(&mut self, now: SimTime, data: &[u8]) {
        if self.fin_queued || self.state == TcpState::Closed {
            return;
        }
        self.send_buf.extend(data);
        self.pump(now);
    }

    /// Close our sending side once queued data is out.
    pub fn close(&mut self, now: SimTime) {
        if self.state == TcpState::Closed {
            return;
        }
        self.fin_queued = true;
        self.pump(now);
    }

    /// Abort: queue a RST and forget everything.
    pub fn abort(&mut self) {
        if self.state != TcpState::Closed {
            self.out.push(TcpSegment {
                flags: RST | ACK,
                seq: self.snd_nxt,
                ack: self.rcv_nxt,
                window: 0,
                data: Bytes::new(),
            });
            self.state = TcpState::Closed;
            self.rto_deadline = None;
        }
    }

    pub fn poll_segment(&mut self) -> Option<TcpSegment> {
        if self.out.is_empty() {
            None
        } else {
            Some(self.out.remove(0))
        }
    }

    pub fn poll_event(&mut self) -> Option<ConnEvent> {
        if self.events.is_empty() {
            None
        } else {
            Some(self.events.remove(0))
        }
    }

    /// Bytes accepted by `send` not yet acknowledged by the peer.
    pub fn unacked(&self) -> usize {
        self.send_buf.len()
    }

    fn in_flight(&self) -> usize {
        self.snd_nxt.wrapping_sub(self.snd_una) as usize
    }

    /// Send what the congestion window allows.
    fn pump(&mut self, now: SimTime) {
        if !matches!(self.state, TcpState::Established | TcpState::Closing) {
            return;
        }
        loop {
            let offset = self.in_flight();
            let unsent = self.send_buf.len().saturating_sub(offset);
            let room = self.cwnd.saturating_sub(offset);
            if unsent == 0 || room == 0 {
                break;
            }
            let n = unsent.min(MSS).min(room);
            let data: Vec<u8> = self.send_buf.range(offset..offset + n).copied().collect();
            let seq = self.snd_nxt;
            self.out.push(TcpSegment {
                flags: ACK,
                seq,
                ack: self.rcv_nxt,
                window: RWND,
                data: Bytes::from(data),
            });
            if self.rtt_probe.is_none() {
                self.rtt_probe = Some((seq.wrapping_add(n as u32), now));
            }
            self.snd_nxt = self.snd_nxt.wrapping_add(n as u32);
            if seq_lt(self.snd_max, self.snd_nxt) {
                self.snd_max = self.snd_nxt;
            }
            if self.rto_deadline.is_none() {
                self.rto_deadline = Some(now + self.rto);
            }
        }
        if self.fin_queued && !self.fin_sent && self.in_flight() == self.send_buf.len() {
            self.out.push(TcpSegment {
                flags: FIN | ACK,
                seq: self.snd_nxt,
                ack: self.rcv_nxt,
                window: RWND,
                data: Bytes::new(),
            });
            self.snd_nxt = self.snd_nxt.wrapping_add(1);
            if seq_lt(self.snd_max, self.snd_nxt) {
                self.snd_max = self.snd_nxt;
            }
            self.fin_sent = true;
            self.state = TcpState::Closing;
            if self.rto_deadline.is_none() {
                self.rto_deadline = Some(now + self.rto);
            }
        }
    }

    fn ack_now(&mut self) {
        self.out.push(TcpSegment {
            flags: ACK,
            seq: self.snd_nxt,
            ack: self.rcv_nxt,
            window: RWND,
            data: Bytes::new(),
        });
    }

    /// Feed a segment from the peer.
    pub fn on_segment(&mut self, now: SimTime, seg: &TcpSegment) {
        if self.state == TcpState::Closed {
            return;
        }
        if seg.flags & RST != 0 {
            let acceptable = if self.state == TcpState::SynSent {
                seg.flags & ACK != 0 && seg.ack == self.iss.wrapping_add(1)
            } else {
                seg.seq.wrapping_sub(self.rcv_nxt) < RWND
            };
            if !acceptable {
                self.bad_rsts += 1;
                return;
            }
            // RFC 9293 §3.10.7.4: a RST in SYN-RECEIVED refuses an active open (one
            // that went through a simultaneous open); a passive one just goes away.
            let refused = self.state == TcpState::SynSent
                || self.state == TcpState::SynReceived && self.opened_simultaneously;
            let why = if refused { "refused" } else { "reset by peer" };
            self.state = TcpState::Closed;
            self.rto_deadline = None;
            self.events.push(ConnEvent::Reset(why));
            return;
        }
        match self.state {
            TcpState::SynSent => {
                if seg.flags & (SYN | ACK) == SYN | ACK && seg.ack == self.iss.wrapping_add(1) {
                    self.rcv_nxt = seg.seq.wrapping_add(1);
                    self.snd_una = seg.ack;
                    self.state = TcpState::Established;
                    self.rto_deadline = None;
                    self.retries = 0;
                    self.ack_now();
                    self.events.push(ConnEvent::Connected);
                    self.pump(now);
                } else if seg.flags & (SYN | ACK) == SYN && self.simultaneous_open {
                    // Simultaneous open: their SYN crossed ours. Acknowledge it with a
                    // SYN-ACK (our SYN again) and wait for ours to be acknowledged.
                    self.rcv_nxt = seg.seq.wrapping_add(1);
                    self.state = TcpState::SynReceived;
                    self.opened_simultaneously = true;
                    self.retries = 0;
                    self.send_syn(now);
                }
                return;
            }
            TcpState::SynReceived => {
                let acks_our_syn = seg.flags & ACK != 0 && seg.ack == self.iss.wrapping_add(1);
                if seg.flags & SYN != 0 && !acks_our_syn {
                    // Our SYN-ACK was lost: say it again.
                    self.send_syn(now);
                    return;
                }
                if acks_our_syn {
                    self.snd_una = seg.ack;
                    self.state = TcpState::Established;
                    self.rto_deadline = None;
                    self.retries = 0;
                    self.events.push(ConnEvent::Connected);
                    if seg.flags & SYN != 0 {
                        // The peer's SYN-ACK of a simultaneous open: it wants our ACK.
                        self.ack_now();
                        self.pump(now);
                        return;
                    }
                } else {
                    return;
                }
            }
            _ => {
                if seg.flags & SYN != 0 {
                    // Duplicate SYN-ACK after our ACK was lost.
                    self.ack_now();
                    return;
                }
            }
        }
        if seg.flags & ACK != 0 {
            self.on_ack(now, seg.ack);
        }
        self.on_data(seg);
        self.pump(now);
    }

    fn on_ack(&mut self, now: SimTime, ack: u32) {
        if seq_lt(self.snd_una, ack) && seq_le(ack, self.snd_max) {
            if seq_lt(self.snd_nxt, ack) {
                self.snd_nxt = ack; // the peer had more than our rewound send point
            }
            let mut acked = ack.wrapping_sub(self.snd_una) as usize;
            if self.fin_sent && ack == self.snd_max {
                acked = acked.saturating_sub(1); // the FIN's sequence number is not a byte
            }
            let acked_data = acked.min(self.send_buf.len());
            self.send_buf.drain(..acked_data);
            self.bytes_acked += acked_data as u64;
            self.snd_una = ack;
            self.dup_acks = 0;
            self.retries = 0;
            if let Some((end, sent)) = self.rtt_probe {
                if seq_le(end, ack) {
                    self.rtt_sample(now - sent);
                    self.rtt_probe = None;
                }
            }
            // Slow start, then congestion avoidance.
            if self.cwnd < self.ssthresh {
                self.cwnd += acked_data.min(MSS);
            } else {
                self.cwnd += (MSS * MSS / self.cwnd).max(1);
            }
            self.rto_deadline = if self.in_flight() > 0 {
                Some(now + self.rto)
            } else {
                None
            };
            if self.fin_sent && ack == self.snd_nxt && self.peer_fin {
                self.state = TcpState::Closed;
            }
        } else if ack == self.snd_una && self.in_flight() > 0 {
            self.dup_acks += 1;
            if self.dup_acks == 3 {
                // Fast retransmit and recovery (halve the window).
                self.ssthresh = (self.in_flight() / 2).max(2 * MSS);
                self.cwnd = self.ssthresh;
                self.retransmit_head();
            }
        }
    }

    fn on_data(&mut self, seg: &TcpSegment) {
        let fin = seg.flags & FIN != 0;
        if seg.data.is_empty() && !fin {
            return;
        }
        if !seg.data.is_empty() {
            if seq_lt(seg.seq, self.rcv_nxt) {
                // Old or overlapping: deliver only the new tail.
                let skip = self.rcv_nxt.wrapping_sub(seg.seq) as usize;
                if skip < seg.data.len() {
                    let tail = seg.data.slice(skip..);
                    self.rcv_nxt = self.rcv_nxt.wrapping_add(tail.len() as u32);
                    self.events.push(ConnEvent::Data(tail));
                }
            } else if seg.seq == self.rcv_nxt {
                self.rcv_nxt = self.rcv_nxt.wrapping_add(seg.data.len() as u32);
                self.events.push(ConnEvent::Data(seg.data.clone()));
            } else {
                self.out_of_order.insert(seg.seq, seg.data.clone());
            }
            // Drain what is now contiguous.
            while let Some((&s, _)) = self.out_of_order.first_key_value() {
                if seq_lt(self.rcv_nxt, s) {
                    break;
                }
                let d = self.out_of_order.remove(&s).unwrap_or_default();
                let skip = self.rcv_nxt.wrapping_sub(s) as usize;
                if skip < d.len() {
                    let tail = d.slice(skip..);
                    self.rcv_nxt = self.rcv_nxt.wrapping_add(tail.len() as u32);
                    self.events.push(ConnEvent::Data(tail));
                }
            }
        }
        if fin && !self.peer_fin {
            let fin_seq = seg.seq.wrapping_add(seg.data.len() as u32);
            if fin_seq == self.rcv_nxt {
                self.rcv_nxt = self.rcv_nxt.wrapping_add(1);
                self.peer_fin = true;
                self.events.push(ConnEvent::PeerClosed);
                if self.fin_sent && self.snd_una == self.snd_nxt {
                    self.state = TcpState::Closed;
                    self.rto_deadline = None;
                }
            }
        }
        self.ack_now();
    }

    fn rtt_sample(&mut self, r: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2;
            }
            Some(s) => {
                let diff = s.abs_diff(r);
                self.rttvar = (self.rttvar * 3 + diff) / 4;
                self.srtt = Some((s * 7 + r) / 8);
            }
        }
        let s = self.srtt.unwrap_or(r);
        self.rto = (s + (self.rttvar * 4).max(Duration::from_millis(1))).clamp(RTO_MIN, RTO_MAX);
    }

    fn retransmit_head(&mut self) {
        self.retransmits += 1;
        self.rtt_probe = None;
        if matches!(self.state, TcpState::SynSent | TcpState::SynReceived) {
            let mut flags = SYN;
            if self.state == TcpState::SynReceived {
                flags |= ACK;
            }
            self.out.push(TcpSegment {
                flags,
                seq: self.iss,
                ack: self.rcv_nxt,
                window: RWND,
                data: Bytes::new(),
            });
            return;
        }
        let n = self.send_buf.len().min(MSS);
        if n > 0 {
            let data: Vec<u8> = self.send_buf.range(..n).copied().collect();
            self.out.push(TcpSegment {
                flags: ACK,
                seq: self.snd_una,
                ack: self.rcv_nxt,
                window: RWND,
                data: Bytes::from(data),
            });
        } else if self.fin_sent {
            self.out.push(TcpSegment {
                flags: FIN | ACK,
                seq: self.snd_nxt.wrapping_sub(1),
                ack: self.rcv_nxt,
                window: RWND,
                data: Bytes::new(),
            });
        }
    }

    /// The retransmission timer fired.
    pub fn on_timeout(&mut self, now: SimTime) {
        let Some(deadline) = self.rto_deadline else {
            return;
        };
        if now < deadline || self.state == TcpState::Closed {
            return;
        }
        self.retries += 1;
        if self.retries > MAX_RETRIES {
            self.state = TcpState::Closed;
            self.rto_deadline = None;
            self.events.push(ConnEvent::Reset("timed out"));
            return;
        }
        // Loss: collapse the window, go back to the first unacked byte.
        self.ssthresh = (self.in_flight() / 2).max(2 * MSS);
        self.cwnd = MSS;
        self.dup_acks = 0;
        self.rto = (self.rto * 2).min(RTO_MAX);
        self.retransmit_head();
        if matches!(self.state, TcpState::Established | TcpState::Closing) {
            // Go-back-N: everything after the head is sent again as the window reopens.
            let head = self.send_buf.len().min(MSS) as u32;
            self.snd_nxt = self.snd_una.wrapping_add(head);
            if self.fin_sent && self.send_buf.len() <= MSS {
                self.snd_nxt = self.snd_nxt.wrapping_add(1);
            } else if self.fin_sent {
                self.fin_sent = false;
                self.state = TcpState::Established;
            }
        }
        self.rto_deadline = Some(now + self.rto);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two connections wired back to back with a lossy "link" that drops chosen segments.
    fn pipe(
        a: &mut TcpConn,
        b: &mut TcpConn,
        now: SimTime,
        drop_every: usize,
        counter: &mut usize,
    ) {
        loop {
            let mut moved = false;
            while let Some(s) = a.poll_segment() {
                moved = true;
                *counter += 1;
                if drop_every == 0 || !(*counter).is_multiple_of(drop_every) {
                    b.on_segment(now, &s);
                }
            }
            while let Some(s) = b.poll_segment() {
                moved = true;
                *counter += 1;
                if drop_every == 0 || !(*counter).is_multiple_of(drop_every) {
                    a.on_segment(now, &s);
                }
            }
            if !moved {
                break;
            }
        }
    }

    fn received(c: &mut TcpConn) -> Vec<u8> {
        let mut v = Vec::new();
        while let Some(e) = c.poll_event() {
            if let ConnEvent::Data(d) = e {
                v.extend_from_slice(&d);
            }
        }
        v
    }

    #[test]
    fn lossy_transfer_delivers_every_byte_in_order() {
        let la: SocketAddr = "10.0.0.1:1000".parse().unwrap();
        let lb: SocketAddr = "10.0.0.2:80".parse().unwrap();
        let mut t = SimTime::ZERO;
        let mut a = TcpConn::connect(t, la, lb, 1000);
        let syn = a.poll_segment().unwrap();
        let mut b = TcpConn::accept(t, lb, la, 5000, &syn);
        let mut n = 0;
        pipe(&mut a, &mut b, t, 0, &mut n);
        assert_eq!(a.state, TcpState::Established);
        assert_eq!(b.state, TcpState::Established);
        let payload: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        a.send(t, &payload);
        a.close(t);
        let mut got = Vec::new();
        for _ in 0..2000 {
            pipe(&mut a, &mut b, t, 7, &mut n);
            got.extend(received(&mut b));
            t += Duration::from_millis(250);
            a.on_timeout(t);
            b.on_timeout(t);
            if a.state == TcpState::Closed || got.len() == payload.len() && a.unacked() == 0 {
                break;
            }
        }
        pipe(&mut a, &mut b, t, 0, &mut n);
        got.extend(received(&mut b));
        assert_eq!(got.len(), payload.len());
        assert!(got == payload, "bytes arrive in order");
        assert!(a.retransmits > 0, "the lossy pipe forced retransmissions");
    }

    #[test]
    fn rst_to_syn_is_refused() {
        let la: SocketAddr = "10.0.0.1:1000".parse().unwrap();
        let lb: SocketAddr = "10.0.0.2:80".parse().unwrap();
        let mut a = TcpConn::connect(SimTime::ZERO, la, lb, 1);
        let _ = a.poll_segment();
        a.on_segment(
            SimTime::ZERO,
            &TcpSegment {
                flags: RST | ACK,
                seq: 0,
                ack: 2,
                window: 0,
                data: Bytes::new(),
            },
        );
        assert!(matches!(a.poll_event(), Some(ConnEvent::Reset(_))));
        assert_eq!(a.state, TcpState::Closed);
    }

    fn addrs() -> (SocketAddr, SocketAddr) {
        (
            "198.18.0.1:40000".parse().unwrap(),
            "198.18.0.2:50000".parse().unwrap(),
        )
    }

    fn events(c: &mut TcpConn) -> Vec<ConnEvent> {
        std::iter::from_fn(|| c.poll_event()).collect()
    }

    /// Both SYNs cross in flight: each end answers the other's SYN with a SYN-ACK and
    /// both end ESTABLISHED with one connection that carries bytes both ways.
    #[test]
    fn crossing_syns_open_one_connection_simultaneously() {
        let (la, lb) = addrs();
        let t = SimTime::ZERO;
        let mut a = TcpConn::connect(t, la, lb, 100);
        let mut b = TcpConn::connect(t, lb, la, 9000);
        let syn_a = a.poll_segment().unwrap();
        let syn_b = b.poll_segment().unwrap();
        assert_eq!((syn_a.flags, syn_b.flags), (SYN, SYN));
        a.on_segment(t, &syn_b);
        b.on_segment(t, &syn_a);
        assert_eq!(
            (a.state, b.state),
            (TcpState::SynReceived, TcpState::SynReceived)
        );
        let sa_a = a.poll_segment().unwrap();
        let sa_b = b.poll_segment().unwrap();
        assert_eq!(sa_a.flags, SYN | ACK);
        assert_eq!(
            (sa_a.seq, sa_a.ack),
            (100, 9001),
            "our SYN again, acking theirs"
        );
        a.on_segment(t, &sa_b);
        b.on_segment(t, &sa_a);
        assert_eq!(
            (a.state, b.state),
            (TcpState::Established, TcpState::Established)
        );
        assert!(a.opened_simultaneously && b.opened_simultaneously);
        assert_eq!(events(&mut a), vec![ConnEvent::Connected]);
        assert_eq!(events(&mut b), vec![ConnEvent::Connected]);
        let mut n = 0;
        a.send(t, b"from a");
        b.send(t, b"from b");
        pipe(&mut a, &mut b, t, 0, &mut n);
        assert_eq!(received(&mut b), b"from a");
        assert_eq!(received(&mut a), b"from b");
    }

    /// One SYN is lost (a NAT dropped it as unsolicited); the other reaches its peer in
    /// SYN-SENT, which answers with a SYN-ACK: the usual case of NAT traversal.
    #[test]
    fn one_lost_syn_still_opens_simultaneously() {
        let (la, lb) = addrs();
        let t = SimTime::ZERO;
        let mut a = TcpConn::connect(t, la, lb, 100);
        let mut b = TcpConn::connect(t, lb, la, 9000);
        let _dropped = a.poll_segment().unwrap();
        let syn_b = b.poll_segment().unwrap();
        a.on_segment(t, &syn_b);
        let sa = a.poll_segment().unwrap();
        b.on_segment(t, &sa);
        assert_eq!(b.state, TcpState::Established);
        assert!(!b.opened_simultaneously, "b saw a plain SYN-ACK");
        let ack = b.poll_segment().unwrap();
        a.on_segment(t, &ack);
        assert_eq!(a.state, TcpState::Established);
        assert!(a.opened_simultaneously);
    }

    /// The check above fails when the model has no simultaneous open.
    #[test]
    fn without_simultaneous_open_crossing_syns_never_connect() {
        let (la, lb) = addrs();
        let t = SimTime::ZERO;
        let mut a = TcpConn::connect(t, la, lb, 100);
        let mut b = TcpConn::connect(t, lb, la, 9000);
        a.simultaneous_open = false;
        b.simultaneous_open = false;
        let mut n = 0;
        pipe(&mut a, &mut b, t, 0, &mut n);
        assert_eq!((a.state, b.state), (TcpState::SynSent, TcpState::SynSent));
    }

    #[test]
    fn a_rst_that_does_not_ack_our_syn_is_ignored() {
        let (la, lb) = addrs();
        let mut a = TcpConn::connect(SimTime::ZERO, la, lb, 1);
        let _ = a.poll_segment();
        for (flags, ack) in [(RST, 0), (RST | ACK, 7)] {
            let rst = TcpSegment {
                flags,
                seq: 0,
                ack,
                window: 0,
                data: Bytes::new(),
            };
            a.on_segment(SimTime::ZERO, &rst);
        }
        assert_eq!(a.state, TcpState::SynSent);
        assert_eq!(a.bad_rsts, 2);
        assert_eq!(a.poll_event(), None);
    }

    #[test]
    fn an_out_of_window_rst_is_ignored_and_an_in_window_one_resets() {
        let (la, lb) = addrs();
        let t = SimTime::ZERO;
        let mut a = TcpConn::connect(t, la, lb, 100);
        let syn = a.poll_segment().unwrap();
        let mut b = TcpConn::accept(t, lb, la, 5000, &syn);
        let mut n = 0;
        pipe(&mut a, &mut b, t, 0, &mut n);
        let _ = events(&mut a);
        let rst = |seq| TcpSegment {
            flags: RST,
            seq,
            ack: 0,
            window: 0,
            data: Bytes::new(),
        };
        a.on_segment(t, &rst(5001u32.wrapping_sub(10)));
        a.on_segment(t, &rst(5001 + RWND));
        assert_eq!(a.state, TcpState::Established);
        a.on_segment(t, &rst(5001));
        assert_eq!(a.state, TcpState::Closed);
        assert_eq!(events(&mut a), vec![ConnEvent::Reset("reset by peer")]);
    }

    /// A SYN to an established connection (a peer that restarted, or a forgery) does not
    /// reset it; it is answered with an ACK (RFC 5961 §4's challenge ACK).
    #[test]
    fn a_syn_to_an_established_connection_gets_an_ack() {
        let (la, lb) = addrs();
        let t = SimTime::ZERO;
        let mut a = TcpConn::connect(t, la, lb, 100);
        let syn = a.poll_segment().unwrap();
        let mut b = TcpConn::accept(t, lb, la, 5000, &syn);
        let mut n = 0;
        pipe(&mut a, &mut b, t, 0, &mut n);
        b.on_segment(t, &syn);
        assert_eq!(b.state, TcpState::Established);
        let ack = b.poll_segment().unwrap();
        assert_eq!(ack.flags, ACK);
    }
}
