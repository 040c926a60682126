//! The client against a scripted server: each test plays the server's side by hand from
//! the requests the client emits, so every answer is checked against what was asked.

use super::*;
use crate::connect::stun_client::{INITIAL_RTO_MS, LAST_WAIT_FACTOR};
use stun::stream::{Frame, StreamDecoder};
use stun::{Attribute, Class, ErrorCode, Message, Method};

const SERVER: &str = "192.0.2.10:3478";
const RELAYED: &str = "192.0.2.10:50000";
const MAPPED: &str = "198.51.100.4:40000";

fn server() -> SocketAddr {
    SERVER.parse().unwrap()
}

fn key() -> [u8; 16] {
    stun::long_term_key("ring", "ring", "ring")
}

fn cfg(control: Transport, relay: Transport) -> ClientConfig {
    ClientConfig::from_account(&TurnAccountConfig::default(), server(), control, relay, 7)
}

/// The next STUN request the client sent (datagram or control write).
fn next_request(c: &mut TurnClient) -> (Message, Vec<u8>) {
    loop {
        match c.poll_transmit().expect("a transmit") {
            Transmit::Datagram { to, data } => {
                assert_eq!(to, server());
                return (Message::decode(&data).unwrap(), data);
            }
            Transmit::Write { data, .. } => return (Message::decode(&data).unwrap(), data),
            _ => {}
        }
    }
}

fn challenge(req: &Message, code: u16, nonce: &str) -> Vec<u8> {
    req.reply(Class::ErrorResponse)
        .with(Attribute::ErrorCode(ErrorCode::standard(code)))
        .with(Attribute::Realm("ring".into()))
        .with(Attribute::Nonce(nonce.into()))
        .encode()
}

fn allocated(req: &Message, lifetime: u32) -> Vec<u8> {
    req.reply(Class::SuccessResponse)
        .with(Attribute::XorRelayedAddress(RELAYED.parse().unwrap()))
        .with(Attribute::XorMappedAddress(MAPPED.parse().unwrap()))
        .with(Attribute::Lifetime(lifetime))
        .encode_with(Some(&key()), false)
}

/// A signed request must verify with ring/ring/ring and carry `nonce`.
fn assert_signed(req: &Message, raw: &[u8], nonce: &str) {
    assert_eq!(req.username(), Some("ring"));
    assert_eq!(req.realm(), Some("ring"));
    assert_eq!(req.nonce(), Some(nonce));
    assert!(req.check_integrity(raw, &key()));
}

/// UDP allocation through a 401 challenge; returns the client ready.
fn allocate_udp() -> TurnClient {
    let mut c = TurnClient::new(cfg(Transport::Udp, Transport::Udp));
    c.start(0);
    let (req, _) = next_request(&mut c);
    assert_eq!(req.method, Method::Allocate);
    assert_eq!(req.requested_transport(), Some(stun::TRANSPORT_UDP));
    assert!(
        req.message_integrity().is_none(),
        "first Allocate goes unsigned"
    );
    c.handle_datagram(5, server(), &challenge(&req, 401, "n1"));
    let (req2, raw2) = next_request(&mut c);
    assert_ne!(req2.txid, req.txid, "a retry is a new transaction");
    assert_signed(&req2, &raw2, "n1");
    c.handle_datagram(10, server(), &allocated(&req2, 600));
    assert_eq!(
        c.poll_event(),
        Some(TurnEvent::Allocated {
            relayed: RELAYED.parse().unwrap(),
            mapped: Some(MAPPED.parse().unwrap()),
            lifetime: 600
        })
    );
    c
}

#[test]
fn allocate_answers_the_challenge_with_long_term_credentials() {
    let c = allocate_udp();
    assert_eq!(c.stats().auth_retries, 1);
    assert_eq!(c.stats().realm_mismatch, 0);
}

#[test]
fn stale_nonce_is_retried_with_the_new_nonce() {
    let mut c = allocate_udp();
    c.create_permission(20, "203.0.113.9".parse().unwrap())
        .unwrap();
    let (req, _) = next_request(&mut c);
    c.handle_datagram(30, server(), &challenge(&req, 438, "n2"));
    let (req2, raw2) = next_request(&mut c);
    assert_eq!(req2.method, Method::CreatePermission);
    assert_signed(&req2, &raw2, "n2");
    let ok = req2
        .reply(Class::SuccessResponse)
        .encode_with(Some(&key()), false);
    c.handle_datagram(40, server(), &ok);
    assert_eq!(
        c.poll_event(),
        Some(TurnEvent::PermissionCreated("203.0.113.9".parse().unwrap()))
    );
}

#[test]
fn wrong_password_fails_after_one_retry() {
    let mut c = allocate_udp_with_password("wrong");
    let (req, _) = next_request(&mut c);
    c.handle_datagram(5, server(), &challenge(&req, 401, "n1"));
    let (req2, _) = next_request(&mut c);
    c.handle_datagram(10, server(), &challenge(&req2, 401, "n1"));
    assert_eq!(
        c.poll_event(),
        Some(TurnEvent::Failed(TurnError::Unauthorized))
    );
    assert!(c.poll_transmit().is_none(), "no third attempt");
}

fn allocate_udp_with_password(password: &str) -> TurnClient {
    let mut cfg = cfg(Transport::Udp, Transport::Udp);
    cfg.password = password.into();
    let mut c = TurnClient::new(cfg);
    c.start(0);
    c
}

#[test]
fn endless_stale_nonces_are_bounded() {
    let mut c = allocate_udp_with_password("ring");
    let mut sent = 0;
    while let Some(Transmit::Datagram { data, .. }) = c.poll_transmit() {
        sent += 1;
        let req = Message::decode(&data).unwrap();
        c.handle_datagram(5, server(), &challenge(&req, 438, &format!("n{sent}")));
    }
    assert_eq!(sent, 1 + usize::from(client::MAX_AUTH_RETRIES));
    assert!(matches!(
        c.poll_event(),
        Some(TurnEvent::Failed(TurnError::Server { code: 438, .. }))
    ));
}

#[test]
fn forged_success_without_integrity_is_ignored() {
    let mut c = allocate_udp_with_password("ring");
    let (req, _) = next_request(&mut c);
    c.handle_datagram(5, server(), &challenge(&req, 401, "n1"));
    let (req2, _) = next_request(&mut c);
    let forged = req2
        .reply(Class::SuccessResponse)
        .with(Attribute::XorRelayedAddress("6.6.6.6:6".parse().unwrap()))
        .encode_with(Some(b"not the key"), false);
    c.handle_datagram(10, server(), &forged);
    let unsigned = req2
        .reply(Class::SuccessResponse)
        .with(Attribute::XorRelayedAddress("6.6.6.6:6".parse().unwrap()))
        .encode();
    c.handle_datagram(10, server(), &unsigned);
    assert_eq!(c.poll_event(), None);
    assert_eq!(c.stats().bad_integrity, 2);
    assert!(c.relayed().is_none());
    // From another address: not even looked at.
    c.handle_datagram(
        10,
        "192.0.2.66:3478".parse().unwrap(),
        &allocated(&req2, 600),
    );
    assert!(c.relayed().is_none());
    c.handle_datagram(10, server(), &allocated(&req2, 600));
    assert!(c.relayed().is_some());
}

#[test]
fn allocation_is_refreshed_before_expiry() {
    let mut c = allocate_udp();
    // Granted at t=10 for 600 s: refreshed 60 s before it ends.
    assert_eq!(c.poll_timeout(), Some(10 + 540_000));
    c.handle_timeout(539_000);
    assert!(c.poll_transmit().is_none());
    c.handle_timeout(540_010);
    let (req, raw) = next_request(&mut c);
    assert_eq!(req.method, Method::Refresh);
    assert_eq!(req.lifetime(), Some(600));
    assert_signed(&req, &raw, "n1");
    let ok = req
        .reply(Class::SuccessResponse)
        .with(Attribute::Lifetime(120))
        .encode_with(Some(&key()), false);
    c.handle_datagram(540_020, server(), &ok);
    // Short lifetime: refreshed at half of it.
    assert_eq!(c.poll_timeout(), Some(540_020 + 60_000));
}

#[test]
fn unanswered_refresh_loses_the_allocation_after_the_rfc_schedule() {
    let mut c = allocate_udp();
    c.handle_timeout(540_010);
    let mut sends = 0;
    while let Some(t) = c.poll_timeout() {
        while c.poll_transmit().is_some() {
            sends += 1;
        }
        c.handle_timeout(t);
        if t > 540_010 + LAST_WAIT_FACTOR * INITIAL_RTO_MS * 4 {
            break;
        }
    }
    assert_eq!(sends, 7);
    assert_eq!(c.poll_event(), Some(TurnEvent::Failed(TurnError::Timeout)));
    assert!(c.relayed().is_none());
}

#[test]
fn channel_data_and_indications_carry_peer_datagrams() {
    let mut c = allocate_udp();
    let peer: SocketAddr = "203.0.113.9:7000".parse().unwrap();
    assert_eq!(
        c.send_to(peer, b"x"),
        Err(TurnError::NoPermission(peer.ip()))
    );
    let channel = c.bind_channel(20, peer).unwrap();
    let (req, _) = next_request(&mut c);
    assert_eq!(req.channel_number(), Some(channel));
    let ok = req
        .reply(Class::SuccessResponse)
        .encode_with(Some(&key()), false);
    c.handle_datagram(30, server(), &ok);
    assert_eq!(
        c.poll_event(),
        Some(TurnEvent::ChannelBound { peer, channel })
    );
    c.send_to(peer, b"ping").unwrap();
    let Some(Transmit::Datagram { data, .. }) = c.poll_transmit() else {
        panic!("no ChannelData")
    };
    assert_eq!(stun::ChannelData::decode(&data).unwrap().data, b"ping");
    let back = stun::ChannelData {
        channel,
        data: b"pong".to_vec(),
    }
    .encode();
    c.handle_datagram(40, server(), &back);
    assert_eq!(
        c.poll_event(),
        Some(TurnEvent::Data {
            peer,
            data: b"pong".to_vec()
        })
    );
    let stray = stun::ChannelData {
        channel: channel + 1,
        data: b"?".to_vec(),
    }
    .encode();
    c.handle_datagram(40, server(), &stray);
    assert_eq!(c.stats().unknown_channel, 1);
    let ind = Message::new(Class::Indication, Method::Data, [9; 12])
        .with(Attribute::XorPeerAddress(peer))
        .with(Attribute::Data(b"ind".to_vec()))
        .encode();
    c.handle_datagram(50, server(), &ind);
    assert_eq!(
        c.poll_event(),
        Some(TurnEvent::Data {
            peer,
            data: b"ind".to_vec()
        })
    );
}

/// TCP control + TCP relay: allocation over the stream, split at every byte.
fn allocate_tcp() -> TurnClient {
    let mut c = TurnClient::new(cfg(Transport::Tcp, Transport::Tcp));
    c.start(0);
    assert_eq!(
        c.poll_transmit(),
        Some(Transmit::Open {
            conn: CONTROL,
            to: server()
        })
    );
    c.handle_connected(1, CONTROL);
    let (req, _) = next_request(&mut c);
    assert_eq!(req.requested_transport(), Some(stun::TRANSPORT_TCP));
    for b in challenge(&req, 401, "n1") {
        c.handle_data(2, CONTROL, &[b]);
    }
    let (req2, _) = next_request(&mut c);
    c.handle_data(3, CONTROL, &allocated(&req2, 600));
    assert!(matches!(c.poll_event(), Some(TurnEvent::Allocated { .. })));
    c
}

#[test]
fn connection_attempt_opens_and_binds_a_data_connection() {
    let mut c = allocate_tcp();
    let peer: SocketAddr = "203.0.113.9:7000".parse().unwrap();
    let attempt = Message::new(Class::Indication, Method::ConnectionAttempt, [4; 12])
        .with(Attribute::ConnectionId(0xABCD))
        .with(Attribute::XorPeerAddress(peer))
        .encode();
    c.handle_data(10, CONTROL, &attempt);
    let Some(Transmit::Open { conn, to }) = c.poll_transmit() else {
        panic!("no data connection")
    };
    assert_eq!(to, server());
    c.handle_connected(11, conn);
    let Some(Transmit::Write { conn: on, data }) = c.poll_transmit() else {
        panic!("no ConnectionBind")
    };
    assert_eq!(on, conn, "ConnectionBind goes on the data connection");
    let bind = Message::decode(&data).unwrap();
    assert_eq!(bind.method, Method::ConnectionBind);
    assert_eq!(bind.connection_id(), Some(0xABCD));
    assert_signed(&bind, &data, "n1");
    // The response and the peer's first bytes in one read.
    let mut read = bind
        .reply(Class::SuccessResponse)
        .encode_with(Some(&key()), false);
    read.extend_from_slice(b"hello");
    c.handle_data(12, conn, &read);
    assert_eq!(
        c.poll_event(),
        Some(TurnEvent::PeerConnected {
            conn,
            peer,
            inbound: true
        })
    );
    assert_eq!(
        c.poll_event(),
        Some(TurnEvent::PeerStream {
            conn,
            data: b"hello".to_vec()
        })
    );
    c.send_stream(conn, b"raw").unwrap();
    assert_eq!(
        c.poll_transmit(),
        Some(Transmit::Write {
            conn,
            data: b"raw".to_vec()
        })
    );
    c.handle_closed(20, conn);
    assert_eq!(c.poll_event(), Some(TurnEvent::PeerClosed { conn }));
}

#[test]
fn connect_then_bind_reaches_a_listening_peer() {
    let mut c = allocate_tcp();
    let peer: SocketAddr = "203.0.113.9:8000".parse().unwrap();
    c.connect_peer(10, peer).unwrap();
    let (req, _) = next_request(&mut c);
    assert_eq!(req.method, Method::Connect);
    assert_eq!(req.xor_peer_address(), Some(peer));
    let ok = req
        .reply(Class::SuccessResponse)
        .with(Attribute::ConnectionId(77))
        .encode_with(Some(&key()), false);
    c.handle_data(11, CONTROL, &ok);
    let Some(Transmit::Open { conn, .. }) = c.poll_transmit() else {
        panic!("no data connection")
    };
    c.handle_connected(12, conn);
    let (bind, _) = next_request(&mut c);
    assert_eq!(bind.connection_id(), Some(77));
    c.handle_data(
        13,
        conn,
        &bind
            .reply(Class::SuccessResponse)
            .encode_with(Some(&key()), false),
    );
    assert_eq!(
        c.poll_event(),
        Some(TurnEvent::PeerConnected {
            conn,
            peer,
            inbound: false
        })
    );
}

#[test]
fn unbound_data_connection_is_dropped_after_the_deadline() {
    let mut c = allocate_tcp();
    let attempt = Message::new(Class::Indication, Method::ConnectionAttempt, [4; 12])
        .with(Attribute::ConnectionId(1))
        .with(Attribute::XorPeerAddress("203.0.113.9:1".parse().unwrap()))
        .encode();
    c.handle_data(10, CONTROL, &attempt);
    let Some(Transmit::Open { conn, .. }) = c.poll_transmit() else {
        panic!()
    };
    c.handle_timeout(10 + client::BIND_DEADLINE_MS);
    assert_eq!(c.poll_transmit(), Some(Transmit::Close { conn }));
    assert!(matches!(
        c.poll_event(),
        Some(TurnEvent::PeerFailed {
            error: TurnError::Timeout,
            ..
        })
    ));
}

#[test]
fn too_many_connection_attempts_are_refused() {
    let mut c = allocate_tcp();
    for i in 0..client::MAX_DATA_CONNS as u32 + 5 {
        let attempt = Message::new(Class::Indication, Method::ConnectionAttempt, [4; 12])
            .with(Attribute::ConnectionId(i))
            .with(Attribute::XorPeerAddress("203.0.113.9:1".parse().unwrap()))
            .encode();
        c.handle_data(10, CONTROL, &attempt);
    }
    assert_eq!(c.stats().refused_attempts, 5);
}

#[test]
fn desynced_control_stream_loses_the_allocation() {
    let mut c = allocate_tcp();
    c.handle_data(10, CONTROL, &[0xFF, 0, 0, 0]);
    assert!(matches!(
        c.poll_event(),
        Some(TurnEvent::Failed(TurnError::Stream(_)))
    ));
    assert_eq!(c.poll_transmit(), Some(Transmit::Close { conn: CONTROL }));
}

#[test]
fn channel_data_over_tcp_is_padded() {
    let mut c = TurnClient::new(cfg(Transport::Tcp, Transport::Udp));
    c.start(0);
    c.poll_transmit();
    c.handle_connected(1, CONTROL);
    let (req, _) = next_request(&mut c);
    c.handle_data(2, CONTROL, &challenge(&req, 401, "n1"));
    let (req2, _) = next_request(&mut c);
    c.handle_data(3, CONTROL, &allocated(&req2, 600));
    let peer: SocketAddr = "203.0.113.9:7000".parse().unwrap();
    let channel = c.bind_channel(4, peer).unwrap();
    let (bind, _) = next_request(&mut c);
    c.handle_data(
        5,
        CONTROL,
        &bind
            .reply(Class::SuccessResponse)
            .encode_with(Some(&key()), false),
    );
    c.send_to(peer, b"abcde").unwrap();
    let Some(Transmit::Write { data, .. }) = c.poll_transmit() else {
        panic!()
    };
    assert_eq!(data.len(), 4 + 8);
    let mut dec = StreamDecoder::new();
    dec.push(&data).unwrap();
    assert_eq!(
        dec.next_frame().unwrap(),
        Some(Frame::ChannelData(stun::ChannelData {
            channel,
            data: b"abcde".to_vec()
        }))
    );
}
