use super::control::{self, ChannelRequest, ChannelState, ControlMsg};
use super::frame::{self, FrameDecoder, FrameError};
use super::*;
use proptest::prelude::*;
use rand::SeedableRng;

fn mux(seed: u64) -> Mux {
    Mux::new(ChaCha20Rng::seed_from_u64(seed))
}

/// Two muxes wired back to back through in-memory pipes that keep what the receiver did
/// not consume (as a TCP receive buffer would).
struct Pair {
    a: Mux,
    b: Mux,
    a_to_b: Vec<u8>,
    b_to_a: Vec<u8>,
    now: u64,
}

impl Pair {
    fn new() -> Self {
        let mut p = Pair {
            a: mux(1),
            b: mux(2),
            a_to_b: Vec::new(),
            b_to_a: Vec::new(),
            now: 0,
        };
        p.pump();
        p
    }

    /// Move bytes both ways until nothing moves.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            if let Some(b) = self.a.poll_stream_write() {
                self.a_to_b.extend(b);
            }
            if let Some(b) = self.b.poll_stream_write() {
                self.b_to_a.extend(b);
            }
            let n = self.b.handle_stream_bytes(self.now, &self.a_to_b);
            moved |= n > 0;
            self.a_to_b.drain(..n);
            let n = self.a.handle_stream_bytes(self.now, &self.b_to_a);
            moved |= n > 0;
            self.b_to_a.drain(..n);
            if !moved {
                return;
            }
        }
    }

    /// A channel opened by `a` and accepted by `b`.
    fn open(&mut self, name: &str) -> u16 {
        let id = self.a.open_channel(name).unwrap();
        self.pump();
        assert_eq!(
            self.b.poll_event(),
            Some(Event::ChannelRequested {
                channel: id,
                name: name.into()
            })
        );
        self.b.accept(id).unwrap();
        self.pump();
        assert_eq!(
            self.a.poll_event(),
            Some(Event::ChannelOpened {
                channel: id,
                name: name.into()
            })
        );
        id
    }
}

fn events(m: &mut Mux) -> Vec<Event> {
    std::iter::from_fn(|| m.poll_event()).collect()
}

fn read_all(m: &mut Mux, ch: u16) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match m.read(ch, &mut buf) {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

fn frame_bytes(channel: u16, data: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    frame::encode(&mut f, channel, data);
    f
}

fn request_frame(name: &str, channel: u16, state: ChannelState) -> Vec<u8> {
    let r = ChannelRequest {
        name: name.into(),
        channel,
        state,
    };
    frame_bytes(CONTROL_CHANNEL, &r.pack())
}

fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

// ---- bytes as msgpack-c packs them ----

#[test]
fn version_is_the_first_frame_as_jamid_packs_it() {
    let mut m = mux(0);
    // [0xFFFF (uint16), bin {"v": 1}]
    assert_eq!(
        hex::encode(m.poll_stream_write().unwrap()),
        "92cdffffc40481a17601"
    );
    assert_eq!(m.poll_stream_write(), None);
}

#[test]
fn frames_use_the_smallest_channel_encoding_and_bin_sizes() {
    assert_eq!(hex::encode(frame_bytes(5, b"hi")), "9205c4026869");
    assert_eq!(hex::encode(frame_bytes(200, b"")), "92ccc8c400");
    assert_eq!(hex::encode(frame_bytes(0x1234, b"x")), "92cd1234c40178");
    let big = frame_bytes(1, &[0; 256]);
    assert_eq!(hex::encode(&big[..5]), "9201c50100");
    let max = frame_bytes(1, &[0; MAX_FRAME_PAYLOAD]);
    assert_eq!(hex::encode(&max[..5]), "9201c5ffff");
}

#[test]
fn channel_request_and_beacons_as_jamid_packs_them() {
    let r = ChannelRequest {
        name: "sip".into(),
        channel: 0x1234,
        state: ChannelState::Request,
    };
    // [str "sip", uint16 0x1234, int 0] on channel 0.
    assert_eq!(hex::encode(r.pack()), "93a3736970cd123400");
    assert_eq!(
        hex::encode(request_frame("sip", 7, ChannelState::Decline)),
        "9200c40793a37369700702"
    );
    assert_eq!(
        hex::encode(control::pack(&ControlMsg::Beacon(true))),
        "81a170c3"
    );
    assert_eq!(
        hex::encode(control::pack(&ControlMsg::Beacon(false))),
        "81a170c2"
    );
}

#[test]
fn decoder_reads_every_layout_msgpack_c_may_write() {
    // array16 header, uint64 channel, str8 data: same frame for msgpack-c.
    let mut d = FrameDecoder::new();
    let bytes = hex::decode("dc0002cf0000000000000009d9026869").unwrap();
    let (n, f) = d.push(&bytes).unwrap();
    assert_eq!(n, bytes.len());
    let f = f.unwrap();
    assert_eq!((f.channel, f.data.as_slice()), (Some(9), &b"hi"[..]));
    // Channel out of u16 (70000) and negative (-1): delimited, reported as None.
    for hex_frame in ["92ce00011170c40101", "92ffc40101", "92d0ffc40101"] {
        let b = hex::decode(hex_frame).unwrap();
        let (n, f) = FrameDecoder::new().push(&b).unwrap();
        assert_eq!((n, f.unwrap().channel), (b.len(), None), "{hex_frame}");
    }
    // Layouts that cannot be delimited.
    for (hex_frame, err) in [
        ("93010203", FrameError::NotAnArrayOfTwo(0x93)),
        ("81a17601", FrameError::NotAnArrayOfTwo(0x81)),
        ("92c0c400", FrameError::ChannelNotInteger(0xc0)),
        ("920190", FrameError::DataNotBinary(0x90)),
        ("9201c600010000", FrameError::Oversized(65_536)),
    ] {
        let b = hex::decode(hex_frame).unwrap();
        assert_eq!(FrameDecoder::new().push(&b), Err(err), "{hex_frame}");
    }
}

// ---- channels ----

#[test]
fn version_exchange_on_start() {
    let p = Pair::new();
    assert_eq!((p.a.peer_version(), p.b.peer_version()), (Some(1), Some(1)));
}

#[test]
fn channels_both_ways_carry_data_and_close() {
    let mut p = Pair::new();
    let ab = p.open("sip");
    // b opens one towards a too.
    let ba = p.b.open_channel("git://dev/conv").unwrap();
    p.pump();
    assert!(matches!(
        p.a.poll_event(),
        Some(Event::ChannelRequested { channel, .. }) if channel == ba
    ));
    p.a.accept(ba).unwrap();
    p.pump();
    assert!(matches!(
        p.b.poll_event(),
        Some(Event::ChannelOpened { .. })
    ));

    let big = payload(200_000, 3);
    assert_eq!(p.a.write(ab, &big).unwrap(), big.len());
    p.b.write(ba, b"from b").unwrap();
    p.pump();
    let mut got = Vec::new();
    while got.len() < big.len() {
        let chunk = read_all(&mut p.b, ab);
        assert!(!chunk.is_empty(), "stalled with {} bytes", got.len());
        got.extend(chunk);
        p.pump();
    }
    assert_eq!(got, big);
    assert_eq!(read_all(&mut p.a, ba), b"from b");
    // Open and drained: nothing to read, which is not an end of stream.
    assert_eq!(p.a.read(ba, &mut [0; 8]), Err(MuxError::NothingToRead));

    // a closes ab: b sees the EOF; its read then reports 0 and the channel is gone.
    p.a.close(ab).unwrap();
    p.pump();
    assert!(events(&mut p.b).contains(&Event::ChannelClosed { channel: ab }));
    assert_eq!(p.b.read(ab, &mut [0; 8]), Ok(0));
    assert_eq!(p.b.read(ab, &mut [0; 8]), Err(MuxError::UnknownChannel(ab)));
    assert_eq!(p.a.write(ab, b"x"), Err(MuxError::UnknownChannel(ab)));
    // The other channel is untouched.
    p.a.write(ba, b"still").unwrap();
    p.pump();
    assert_eq!(read_all(&mut p.b, ba), b"still");
}

#[test]
fn writes_split_at_65535_bytes() {
    let mut m = mux(0);
    let _ = m.poll_stream_write();
    m.channels.insert(9, Channel::new("x", State::Open));
    m.write(9, &payload(MAX_FRAME_PAYLOAD + 1, 0)).unwrap();
    let bytes = m.poll_stream_write().unwrap();
    // Two frames: 65,535 bytes then 1 byte.
    assert_eq!(&bytes[..5], &hex::decode("9209c5ffff").unwrap()[..]);
    assert_eq!(
        &bytes[5 + MAX_FRAME_PAYLOAD..],
        &[
            0x92,
            0x09,
            0xc4,
            0x01,
            payload(MAX_FRAME_PAYLOAD + 1, 0)[MAX_FRAME_PAYLOAD]
        ][..]
    );
    // An empty write sends nothing (an empty frame would close the channel).
    assert_eq!(m.write(9, b""), Ok(0));
    assert_eq!(m.poll_stream_write(), None);
}

#[test]
fn declined_channel() {
    let mut p = Pair::new();
    let id = p.a.open_channel("unknown://x").unwrap();
    p.pump();
    assert!(matches!(
        p.b.poll_event(),
        Some(Event::ChannelRequested { .. })
    ));
    p.b.decline(id).unwrap();
    assert_eq!(p.b.accept(id), Err(MuxError::UnknownChannel(id)));
    p.pump();
    assert_eq!(
        p.a.poll_event(),
        Some(Event::ChannelDeclined {
            channel: id,
            name: "unknown://x".into()
        })
    );
    assert_eq!(p.a.write(id, b"x"), Err(MuxError::UnknownChannel(id)));
    assert!(p.a.channel_ids().is_empty() && p.b.channel_ids().is_empty());
}

#[test]
fn several_control_objects_in_one_frame() {
    let mut m = mux(0);
    let one = ChannelRequest {
        name: "a".into(),
        channel: 10,
        state: ChannelState::Request,
    }
    .pack();
    let two = ChannelRequest {
        name: "b".into(),
        channel: 11,
        state: ChannelState::Request,
    }
    .pack();
    let beacon = control::pack(&ControlMsg::Beacon(true));
    let f = frame_bytes(CONTROL_CHANNEL, &[one, two, beacon].concat());
    m.handle_stream_bytes(0, &f);
    assert_eq!(
        events(&mut m),
        vec![
            Event::ChannelRequested {
                channel: 10,
                name: "a".into()
            },
            Event::ChannelRequested {
                channel: 11,
                name: "b".into()
            },
        ]
    );
    // The beacon request on channel 0 is answered too (jamid accepts maps there).
    let out = m.poll_stream_write().unwrap();
    assert!(out.ends_with(&hex::decode("92cdffffc40481a170c2").unwrap()));
    // A malformed object stops the frame: what follows it is dropped, and counted.
    let bad = [
        vec![0x93, 0xc0, 0x01, 0x00],
        ChannelRequest {
            name: "c".into(),
            channel: 12,
            state: ChannelState::Request,
        }
        .pack(),
    ]
    .concat();
    m.handle_stream_bytes(0, &frame_bytes(CONTROL_CHANNEL, &bad));
    assert_eq!(m.poll_event(), None);
    assert_eq!(m.stats.malformed_control, 1);
}

#[test]
fn channel_ids_follow_jamids_random_offset_rule() {
    for seed in 0..50u64 {
        let mut m = mux(seed);
        let offset = u32::from(ChaCha20Rng::seed_from_u64(seed).random::<u16>());
        let first = ((offset + 1) % 65_535) as u16;
        let expect = if first == 0 { 1 } else { first };
        let id = m.open_channel("x").unwrap();
        assert_eq!(id, expect, "seed {seed}");
        assert!(id != CONTROL_CHANNEL && id != PROTOCOL_CHANNEL);
    }
    // Wrap-around: offset 65533 gives 65534, offset 65534 wraps past 0 to 1; 0xFFFF never.
    for (offset, expect) in [(65_533u16, 65_534u16), (65_534, 1), (65_535, 1)] {
        let seed = (0u64..)
            .find(|s| ChaCha20Rng::seed_from_u64(*s).random::<u16>() == offset)
            .unwrap();
        assert_eq!(mux(seed).open_channel("x"), Ok(expect), "offset {offset}");
    }
    // A taken id is skipped: the next free one follows.
    let mut m = mux(9);
    let offset = u32::from(ChaCha20Rng::seed_from_u64(9).random::<u16>());
    let first = ((offset + 1) % 65_535) as u16;
    m.channels.insert(first, Channel::new("busy", State::Open));
    let id = m.open_channel("x").unwrap();
    assert_eq!(id, ((offset + 2) % 65_535) as u16);
}

// ---- beacons ----

#[test]
fn beacon_answered_in_time_keeps_the_socket() {
    let mut p = Pair::new();
    assert!(p.a.send_beacon(0));
    assert_eq!(p.a.poll_timeout(), Some(BEACON_TIMEOUT_MS));
    p.pump();
    assert_eq!(p.a.poll_timeout(), None);
    p.a.handle_timeout(10 * BEACON_TIMEOUT_MS);
    assert!(!p.a.is_shutdown());
}

#[test]
fn beacon_timeout_shuts_the_socket_down() {
    let mut p = Pair::new();
    let id = p.open("sip");
    p.now = 1_000;
    assert!(p.a.send_beacon(p.now));
    // b never sees it.
    let _ = p.a.poll_stream_write();
    p.a.handle_timeout(1_000 + BEACON_TIMEOUT_MS - 1);
    assert!(!p.a.is_shutdown());
    p.a.handle_timeout(1_000 + BEACON_TIMEOUT_MS);
    assert_eq!(
        events(&mut p.a),
        vec![
            Event::ChannelClosed { channel: id },
            Event::Shutdown(ShutdownReason::BeaconTimeout)
        ]
    );
    assert_eq!(p.a.stats.beacon_timeouts, 1);
    assert_eq!(p.a.write(id, b"x"), Err(MuxError::Shutdown));
}

#[test]
fn no_beacon_before_the_peer_announces_version_1() {
    let mut m = mux(0);
    assert!(!m.send_beacon(0));
    m.handle_stream_bytes(
        0,
        &frame_bytes(PROTOCOL_CHANNEL, &control::pack(&ControlMsg::Version(0))),
    );
    assert!(!m.send_beacon(0));
    m.handle_stream_bytes(
        0,
        &frame_bytes(PROTOCOL_CHANNEL, &control::pack(&ControlMsg::Version(1))),
    );
    assert!(m.send_beacon(0));
    // An unsolicited response is counted.
    let resp = frame_bytes(PROTOCOL_CHANNEL, &control::pack(&ControlMsg::Beacon(false)));
    m.handle_stream_bytes(0, &resp);
    m.handle_stream_bytes(0, &resp);
    assert_eq!(m.stats.unexpected_answers, 1);
}

// ---- shutdown ----

#[test]
fn shutdown_and_stream_end_close_every_channel() {
    let mut p = Pair::new();
    let ids = [p.open("a"), p.open("b"), p.open("c")];
    p.a.shutdown();
    let ev = events(&mut p.a);
    for id in ids {
        assert!(ev.contains(&Event::ChannelClosed { channel: id }));
    }
    assert_eq!(ev.last(), Some(&Event::Shutdown(ShutdownReason::Local)));
    assert_eq!(p.a.open_channel("d"), Err(MuxError::Shutdown));
    p.b.handle_stream_end(0);
    let ev = events(&mut p.b);
    assert_eq!(ev.len(), 4);
    assert_eq!(
        ev.last(),
        Some(&Event::Shutdown(ShutdownReason::StreamEnded))
    );
}

// ---- limits ----

#[test]
fn oversized_frame_cuts_the_socket_off() {
    let mut m = mux(0);
    // 65,535 bytes is the largest legal frame.
    let mut ok = hex::decode("9201c5ffff").unwrap();
    ok.resize(5 + MAX_FRAME_PAYLOAD, 0);
    m.handle_stream_bytes(0, &ok);
    assert!(!m.is_shutdown());
    assert_eq!(m.stats.unknown_channel_frames, 1);
    // One more byte announced: cut off before any of it is buffered.
    m.handle_stream_bytes(0, &hex::decode("9201c600010000").unwrap());
    assert_eq!(
        events(&mut m),
        vec![Event::Shutdown(ShutdownReason::Frame(
            FrameError::Oversized(65_536)
        ))]
    );
    assert_eq!(m.stats.frame_errors, 1);
}

#[test]
fn bad_and_unknown_channel_frames_are_skipped_and_counted() {
    let mut m = mux(0);
    let stream = [
        hex::decode("92ce00011170c40101").unwrap(), // channel 70000
        frame_bytes(42, b"nobody"),
        frame_bytes(42, b""), // EOF for an unknown channel: silent
        request_frame("after", 5, ChannelState::Request),
    ]
    .concat();
    assert_eq!(m.handle_stream_bytes(0, &stream), stream.len());
    assert_eq!(m.stats.bad_channel_frames, 1);
    assert_eq!(m.stats.unknown_channel_frames, 1);
    assert!(matches!(
        m.poll_event(),
        Some(Event::ChannelRequested { channel: 5, .. })
    ));
    // Data for a channel still awaiting our answer is dropped as well.
    m.handle_stream_bytes(0, &frame_bytes(5, b"early"));
    assert_eq!(m.stats.unknown_channel_frames, 2);
    // Its requester giving up removes the request.
    m.handle_stream_bytes(0, &frame_bytes(5, b""));
    assert_eq!(m.poll_event(), Some(Event::ChannelClosed { channel: 5 }));
    assert_eq!(m.accept(5), Err(MuxError::UnknownChannel(5)));
}

#[test]
fn invalid_requests_are_declined_and_counted() {
    let mut m = mux(0);
    let _ = m.poll_stream_write();
    let long = "x".repeat(MAX_CHANNEL_NAME + 1);
    let stream = [
        request_frame("zero", CONTROL_CHANNEL, ChannelState::Request),
        request_frame("proto", PROTOCOL_CHANNEL, ChannelState::Request),
        request_frame(&long, 3, ChannelState::Request),
        request_frame("ok", 4, ChannelState::Request),
        request_frame("dup", 4, ChannelState::Request),
    ]
    .concat();
    m.handle_stream_bytes(0, &stream);
    assert_eq!(m.stats.refused_invalid, 4);
    assert_eq!(events(&mut m).len(), 1);
    let out = m.poll_stream_write().unwrap();
    let expect = [
        request_frame("zero", CONTROL_CHANNEL, ChannelState::Decline),
        request_frame("proto", PROTOCOL_CHANNEL, ChannelState::Decline),
        request_frame("", 3, ChannelState::Decline),
        request_frame("dup", 4, ChannelState::Decline),
    ]
    .concat();
    assert_eq!(out, expect);
}

#[test]
fn a_peer_opening_thousands_of_channels_is_refused_then_cut_off() {
    let mut m = mux(0);
    // Accept the first MAX_CHANNELS as they come, then keep asking.
    let mut accepted = 0;
    let mut id = 1u16;
    while !m.is_shutdown() && id < 5_000 {
        m.handle_stream_bytes(0, &request_frame("sip", id, ChannelState::Request));
        let _ = m.poll_stream_write();
        while let Some(ev) = m.poll_event() {
            if let Event::ChannelRequested { channel, .. } = ev {
                m.accept(channel).unwrap();
                accepted += 1;
            }
        }
        id += 1;
    }
    assert_eq!(accepted, MAX_CHANNELS);
    assert_eq!(m.stats.refused_channel_cap, MAX_REFUSALS + 1);
    assert!(m.is_shutdown());
    assert_eq!(
        usize::from(id) - 1,
        MAX_CHANNELS + MAX_REFUSALS as usize + 1
    );
    // Unanswered requests: only MAX_PENDING_REQUESTS wait for the user.
    let mut m = mux(0);
    let stream: Vec<u8> = (1..=200u16)
        .flat_map(|i| request_frame("sip", i, ChannelState::Request))
        .collect();
    m.handle_stream_bytes(0, &stream);
    assert_eq!(events(&mut m).len(), MAX_PENDING_REQUESTS);
    assert_eq!(
        m.stats.refused_pending_cap,
        200 - MAX_PENDING_REQUESTS as u64
    );
    assert!(!m.is_shutdown());
}

#[test]
fn local_channel_cap() {
    let mut m = mux(0);
    for _ in 0..MAX_CHANNELS {
        m.open_channel("x").unwrap();
    }
    assert_eq!(m.open_channel("x"), Err(MuxError::TooManyChannels));
    assert_eq!(
        m.open_channel(&"y".repeat(MAX_CHANNEL_NAME + 1)),
        Err(MuxError::NameTooLong)
    );
}

#[test]
fn flow_control_pauses_the_stream_until_the_user_reads() {
    let mut p = Pair::new();
    let id = p.open("data-transfer://x");
    let data = payload(CHANNEL_RECV_BUFFER * 3, 7);
    let mut sent = 0;
    while sent < data.len() {
        sent += p.a.write(id, &data[sent..]).unwrap();
        p.pump();
    }
    p.pump();
    // b buffered at most its cap and left the rest in the pipe.
    assert!(p.b.is_stalled());
    assert!(p.b.buffered() <= CHANNEL_RECV_BUFFER);
    assert!(!p.a_to_b.is_empty());
    assert!(p.b.stats.flow_stalls >= 1);
    let mut got = Vec::new();
    while got.len() < data.len() {
        let chunk = read_all(&mut p.b, id);
        assert!(!chunk.is_empty());
        got.extend(chunk);
        p.pump();
        assert!(p.b.buffered() <= CHANNEL_RECV_BUFFER);
    }
    assert_eq!(got, data);
    assert!(!p.b.is_stalled());
    // Readable is signalled once per read, not per frame.
    let readable = events(&mut p.b)
        .iter()
        .filter(|e| matches!(e, Event::Readable { .. }))
        .count();
    assert!(readable <= 4 * 4, "{readable} Readable events");
}

#[test]
fn send_queue_is_bounded() {
    let mut m = mux(0);
    m.channels.insert(9, Channel::new("x", State::Open));
    let big = payload(MAX_SEND_QUEUE * 2, 1);
    let took = m.write(9, &big).unwrap();
    assert!(took < big.len() && took > 0);
    assert_eq!(m.write(9, &big), Err(MuxError::Blocked));
    let out = m.poll_stream_write().unwrap();
    assert!(out.len() <= MAX_SEND_QUEUE + 64 * 8);
    assert!(m.write(9, &big).unwrap() > 0);
}

// ---- streaming: every split gives the same result ----

/// What `b` sends `a` on an accepted channel: data of several sizes, then an EOF.
fn scripted_stream(sizes: &[usize]) -> (Mux, u16, Vec<u8>, Vec<u8>) {
    let mut p = Pair::new();
    let id = p.open("sync://dev");
    let mut all = Vec::new();
    for (i, n) in sizes.iter().enumerate() {
        let d = payload(*n, i as u8);
        p.b.write(id, &d).unwrap();
        all.extend(d);
    }
    p.b.close(id).unwrap();
    let wire = p.b.poll_stream_write().unwrap();
    (p.a, id, wire, all)
}

fn feed_in_pieces(a: &mut Mux, id: u16, wire: &[u8], cuts: &[usize]) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut pos = 0;
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
    cuts.push(wire.len());
    cuts.sort_unstable();
    for c in cuts {
        pending.extend_from_slice(&wire[pos..c.max(pos)]);
        pos = c.max(pos);
        loop {
            let n = a.handle_stream_bytes(0, &pending);
            pending.drain(..n);
            got.extend(read_all(a, id));
            if n == 0 || pending.is_empty() {
                break;
            }
        }
    }
    let closed = events(a).contains(&Event::ChannelClosed { channel: id });
    (got, closed)
}

#[test]
fn one_byte_at_a_time() {
    let (mut a, id, wire, all) = scripted_stream(&[1, 0, 300, MAX_FRAME_PAYLOAD + 10]);
    let cuts: Vec<usize> = (0..wire.len()).collect();
    let (got, closed) = feed_in_pieces(&mut a, id, &wire, &cuts);
    assert_eq!(got, all);
    assert!(closed);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_split_gives_the_same_data(
        sizes in proptest::collection::vec(0usize..3_000, 1..6),
        cuts in proptest::collection::vec(any::<usize>(), 0..40),
    ) {
        let (mut a, id, wire, all) = scripted_stream(&sizes);
        let (got, closed) = feed_in_pieces(&mut a, id, &wire, &cuts);
        prop_assert_eq!(got, all);
        prop_assert!(closed);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut m = mux(0);
        let n = m.handle_stream_bytes(0, &bytes);
        prop_assert!(n <= bytes.len());
        while m.poll_event().is_some() {}
        prop_assert!(m.buffered() <= MUX_RECV_BUFFER);
    }

    #[test]
    fn mutated_streams_never_panic(pos in any::<usize>(), byte: u8, sizes in proptest::collection::vec(0usize..300, 1..4)) {
        let (_, _, mut wire, _) = scripted_stream(&sizes);
        let mut m = mux(3);
        let req = request_frame("sync://dev", 1, ChannelState::Request);
        let i = pos % wire.len();
        wire[i] = byte;
        m.handle_stream_bytes(0, &[req, wire].concat());
        while m.poll_event().is_some() {}
    }
}

proptest! {
    #[test]
    fn frames_round_trip_through_the_decoder(channel: u16, data in proptest::collection::vec(any::<u8>(), 0..700)) {
        let bytes = frame_bytes(channel, &data);
        let (n, f) = FrameDecoder::new().push(&bytes).unwrap();
        prop_assert_eq!(n, bytes.len());
        let f = f.unwrap();
        prop_assert_eq!(f.channel, Some(channel));
        prop_assert_eq!(f.data, data);
    }

    #[test]
    fn frame_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut d = FrameDecoder::new();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            match d.push(rest) {
                Ok((n, _)) => { prop_assert!(n > 0 && n <= rest.len()); rest = &rest[n..]; }
                Err(_) => break,
            }
        }
        prop_assert!(d.buffered() <= MAX_FRAME_PAYLOAD);
    }

    #[test]
    fn control_objects_round_trip(name in "[ -~]{0,40}", channel: u16, state in 0u8..3, v: i64, p: bool) {
        let state = [ChannelState::Request, ChannelState::Accept, ChannelState::Decline][usize::from(state)];
        let req = ChannelRequest { name, channel, state };
        let msgs = [ControlMsg::Channel(req), ControlMsg::Version(v), ControlMsg::Beacon(p)];
        let bytes: Vec<u8> = msgs.iter().flat_map(control::pack).collect();
        let back: Vec<ControlMsg> = control::parse_all(&bytes).map(|m| m.unwrap()).collect();
        prop_assert_eq!(back, msgs.to_vec());
    }

    #[test]
    fn control_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let n = control::parse_all(&bytes).count();
        prop_assert!(n <= bytes.len());
    }
}
