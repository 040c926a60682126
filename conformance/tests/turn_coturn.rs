//! Our sans-IO TURN client (node::connect::turn) against the official coturn, on loopback
//! in a namespace each test creates, with jamid's default credentials ring/ring realm
//! ring: UDP allocations relaying datagrams to an echo peer (Send/Data indications and
//! ChannelData, over UDP and over a TCP control connection), RFC 6062 TCP allocations
//! carrying streams both ways (a peer connecting to the relayed address, and us
//! connecting to a listening peer), and a wrong password refused.

use conformance::coturn::Coturn;
use conformance::netns::Netns;
use node::connect::turn::{
    ClientConfig, ConnId, Transmit, Transport, TurnAccountConfig, TurnClient, TurnError, TurnEvent,
};
use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

/// How long any one step may take on a loaded 2-core machine.
const STEP: Duration = Duration::from_secs(20);

/// Drives a [`TurnClient`] with std sockets: a non-blocking poll loop, time in ms since
/// the driver started.
struct Driver {
    client: TurnClient,
    udp: UdpSocket,
    conns: BTreeMap<ConnId, TcpStream>,
    start: Instant,
}

impl Driver {
    fn new(cfg: ClientConfig) -> Driver {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("udp socket");
        udp.set_nonblocking(true).unwrap();
        Driver {
            client: TurnClient::new(cfg),
            udp,
            conns: BTreeMap::new(),
            start: Instant::now(),
        }
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn flush(&mut self) {
        while let Some(t) = self.client.poll_transmit() {
            match t {
                Transmit::Datagram { to, data } => {
                    self.udp.send_to(&data, to).expect("send datagram");
                }
                Transmit::Open { conn, to } => match TcpStream::connect(to) {
                    Ok(s) => {
                        s.set_nonblocking(true).unwrap();
                        s.set_nodelay(true).unwrap();
                        self.conns.insert(conn, s);
                        let now = self.now();
                        self.client.handle_connected(now, conn);
                    }
                    Err(_) => {
                        let now = self.now();
                        self.client.handle_closed(now, conn);
                    }
                },
                Transmit::Write { conn, data } => {
                    if let Some(s) = self.conns.get_mut(&conn) {
                        write_all(s, &data);
                    }
                }
                Transmit::Close { conn } => {
                    self.conns.remove(&conn);
                }
            }
        }
    }

    /// One round: send what is queued, read what arrived, fire due timers.
    fn turn(&mut self) {
        self.flush();
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = self.udp.recv_from(&mut buf) {
            let now = self.now();
            self.client.handle_datagram(now, from, &buf[..n]);
        }
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in ids {
            let Some(s) = self.conns.get_mut(&conn) else {
                continue;
            };
            match s.read(&mut buf) {
                Ok(0) => {
                    self.conns.remove(&conn);
                    let now = self.now();
                    self.client.handle_closed(now, conn);
                }
                Ok(n) => {
                    let now = self.now();
                    self.client.handle_data(now, conn, &buf[..n]);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => {
                    self.conns.remove(&conn);
                    let now = self.now();
                    self.client.handle_closed(now, conn);
                }
            }
        }
        let now = self.now();
        if self.client.poll_timeout().is_some_and(|t| t <= now) {
            self.client.handle_timeout(now);
        }
        self.flush();
    }

    /// Runs until an event matches `want` (events before it are returned too).
    fn until(&mut self, what: &str, want: impl Fn(&TurnEvent) -> bool) -> TurnEvent {
        let deadline = Instant::now() + STEP;
        loop {
            self.turn();
            while let Some(e) = self.client.poll_event() {
                if want(&e) {
                    return e;
                }
                eprintln!("event while waiting for {what}: {e:?}");
            }
            assert!(Instant::now() < deadline, "no {what} within {STEP:?}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn allocate(&mut self) -> SocketAddr {
        let now = self.now();
        self.client.start(now);
        match self.until("allocation", |e| {
            matches!(e, TurnEvent::Allocated { .. } | TurnEvent::Failed(_))
        }) {
            TurnEvent::Allocated {
                relayed, mapped, ..
            } => {
                if let Some(m) = mapped {
                    // Over UDP coturn reflects our socket; over TCP our connection.
                    assert_eq!(m.ip(), self.udp.local_addr().unwrap().ip());
                }
                relayed
            }
            other => panic!("allocation failed: {other:?}"),
        }
    }

    fn permit(&mut self, peer: SocketAddr) {
        let now = self.now();
        self.client.create_permission(now, peer.ip()).unwrap();
        self.until("permission", |e| {
            matches!(e, TurnEvent::PermissionCreated(_))
        });
    }
}

fn write_all(s: &mut TcpStream, mut data: &[u8]) {
    let deadline = Instant::now() + STEP;
    while !data.is_empty() {
        match s.write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "write stalled");
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("write: {e}"),
        }
    }
}

fn config(
    server: SocketAddr,
    password: &str,
    control: Transport,
    relay: Transport,
) -> ClientConfig {
    let account = TurnAccountConfig {
        password: password.into(),
        ..TurnAccountConfig::default()
    };
    ClientConfig::from_account(&account, server, control, relay, 42)
}

/// Runs `f` inside a fresh namespace with coturn started there.
fn with_coturn(tag: &str, f: impl FnOnce(SocketAddr) + Send + 'static) {
    if !conformance::coturn_or_skip() {
        return;
    }
    let ns = Netns::create(tag).expect("namespace");
    let coturn = Coturn::start(&ns, "ring", "ring", "ring").expect("coturn");
    let addr = coturn.addr();
    let result = ns.spawn(move || f(addr)).join();
    if result.is_err() {
        eprintln!("coturn log:\n{}", coturn.log_text());
        panic!("test failed inside the namespace");
    }
}

/// A UDP peer that echoes every datagram back, uppercased so an echo is recognisable.
fn udp_echo() -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let _ = sock.send_to(&buf[..n].to_ascii_uppercase(), from);
        }
    });
    addr
}

fn udp_relay_round_trips(control: Transport) {
    with_coturn("jsturn", move |server| {
        let mut d = Driver::new(config(server, "ring", control, Transport::Udp));
        let relayed = d.allocate();
        assert_eq!(relayed.ip(), server.ip());
        assert_ne!(relayed.port(), server.port());
        let peer = udp_echo();
        d.permit(peer);
        // Send indication out, Data indication back.
        d.client.send_to(peer, b"via send indication").unwrap();
        let e = d.until("echo", |e| matches!(e, TurnEvent::Data { .. }));
        assert_eq!(
            e,
            TurnEvent::Data {
                peer,
                data: b"VIA SEND INDICATION".to_vec()
            }
        );
        // ChannelData both ways once a channel is bound.
        let now = d.now();
        let channel = d.client.bind_channel(now, peer).unwrap();
        d.until("channel", |e| matches!(e, TurnEvent::ChannelBound { .. }));
        assert_eq!(d.client.channel(peer), Some(channel));
        for msg in [&b"odd"[..], b"four", b"channel data!"] {
            d.client.send_to(peer, msg).unwrap();
            let e = d.until("channel echo", |e| matches!(e, TurnEvent::Data { .. }));
            assert_eq!(
                e,
                TurnEvent::Data {
                    peer,
                    data: msg.to_ascii_uppercase()
                }
            );
        }
        let s = d.client.stats().clone();
        assert_eq!(s.auth_retries, 1, "{s:?}");
        assert_eq!(
            (s.bad_integrity, s.malformed, s.unmatched),
            (0, 0, 0),
            "{s:?}"
        );
        // A refresh is answered and LIFETIME 0 releases the allocation.
        let now = d.now();
        d.client.release(now);
        d.until("release", |e| matches!(e, TurnEvent::Released));
    });
}

#[test]
fn udp_allocation_relays_datagrams_over_udp() {
    udp_relay_round_trips(Transport::Udp);
}

#[test]
fn udp_allocation_relays_datagrams_over_a_tcp_control_connection() {
    udp_relay_round_trips(Transport::Tcp);
}

/// Reads exactly `n` bytes from a blocking stream.
fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf).expect("peer read");
    buf
}

/// Collects PeerStream bytes for `conn` until `n` have arrived.
fn stream_bytes(d: &mut Driver, conn: ConnId, n: usize) -> Vec<u8> {
    let mut got = Vec::new();
    while got.len() < n {
        match d.until("peer bytes", |e| matches!(e, TurnEvent::PeerStream { .. })) {
            TurnEvent::PeerStream { conn: c, data } if c == conn => got.extend(data),
            other => panic!("unexpected {other:?}"),
        }
    }
    got
}

#[test]
fn tcp_allocation_carries_streams_both_ways() {
    with_coturn("jsturntcp", |server| {
        let mut d = Driver::new(config(server, "ring", Transport::Tcp, Transport::Tcp));
        let relayed = d.allocate();
        assert_eq!(relayed.ip(), server.ip());

        // Inbound: a peer connects to the relayed address → ConnectionAttempt → bind.
        // coturn lets in only peers whose address has a permission.
        d.permit(SocketAddr::from(([127, 0, 0, 1], 0)));
        let mut inbound = TcpStream::connect(relayed).expect("peer connects to relayed address");
        inbound.set_read_timeout(Some(STEP)).unwrap();
        let (conn, from) = match d.until("inbound peer", |e| {
            matches!(
                e,
                TurnEvent::PeerConnected { .. } | TurnEvent::PeerFailed { .. }
            )
        }) {
            TurnEvent::PeerConnected {
                conn,
                peer,
                inbound: true,
            } => (conn, peer),
            other => panic!("inbound peer not connected: {other:?}"),
        };
        assert_eq!(from, inbound.local_addr().unwrap());
        inbound.write_all(b"hello from the peer").unwrap();
        assert_eq!(stream_bytes(&mut d, conn, 19), b"hello from the peer");
        d.client.send_stream(conn, b"hello from jamisim").unwrap();
        d.turn();
        assert_eq!(read_n(&mut inbound, 18), b"hello from jamisim");
        drop(inbound);
        d.until("peer close", |e| matches!(e, TurnEvent::PeerClosed { .. }));

        // Outbound: Connect to a listening peer.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = listener.local_addr().unwrap();
        let now = d.now();
        d.client.connect_peer(now, target).unwrap();
        let accepted = std::thread::spawn(move || listener.accept().map(|(s, _)| s));
        let conn = match d.until("outbound peer", |e| {
            matches!(
                e,
                TurnEvent::PeerConnected { .. } | TurnEvent::PeerFailed { .. }
            )
        }) {
            TurnEvent::PeerConnected {
                conn,
                peer,
                inbound: false,
            } => {
                assert_eq!(peer, target);
                conn
            }
            other => panic!("outbound peer not connected: {other:?}"),
        };
        let mut outbound = accepted.join().unwrap().expect("peer accepted");
        outbound.set_read_timeout(Some(STEP)).unwrap();
        d.client.send_stream(conn, b"to the listener").unwrap();
        d.turn();
        assert_eq!(read_n(&mut outbound, 15), b"to the listener");
        outbound.write_all(b"from the listener").unwrap();
        assert_eq!(stream_bytes(&mut d, conn, 17), b"from the listener");
        let s = d.client.stats().clone();
        assert_eq!(
            (s.bad_integrity, s.malformed, s.unmatched),
            (0, 0, 0),
            "{s:?}"
        );
    });
}

#[test]
fn wrong_password_is_refused() {
    with_coturn("jsturnpw", |server| {
        for control in [Transport::Udp, Transport::Tcp] {
            let mut d = Driver::new(config(server, "not ring", control, Transport::Udp));
            let now = d.now();
            d.client.start(now);
            let e = d.until("refusal", |e| {
                matches!(e, TurnEvent::Failed(_) | TurnEvent::Allocated { .. })
            });
            assert_eq!(e, TurnEvent::Failed(TurnError::Unauthorized), "{control:?}");
            assert_eq!(d.client.stats().auth_retries, 1);
        }
    });
}
