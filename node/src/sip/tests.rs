use super::channel::{content_type, ctime, received_via, TRANSACTION_TIMEOUT_MS};
use super::multipart;
use super::stream::DecoderStats;
use super::*;
use proptest::prelude::*;

const A: &str = "a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0";
const B: &str = "b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1";
const NOW: u64 = 1_790_000_000_000;

/// A MESSAGE as pjsip writes it for jamid 20230206 (`JamiAccount::sendSIPMessage`):
/// endpoint request headers, Via first, Date/Message-ID/User-Agent appended by jamid,
/// Content-Type and a 5-column Content-Length by `pjsip_msg_print`.
const PJSIP_MESSAGE: &str = "MESSAGE sips:b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1@10.0.0.2:40000;transport=tls SIP/2.0\r\n\
Via: SIP/2.0/TLS 10.0.0.1:38211;rport;branch=z9hG4bKPj5e5e8e1b-3d0a-4b8c-9c1e-51e4c1b8f7a2\r\n\
Max-Forwards: 70\r\n\
From: \"Alice\" <sip:a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0@ring.dht>;tag=0e2bd4b6-3f41-4bde-9f8a-7d2b4b3b2c11\r\n\
To: <sips:b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1@10.0.0.2:40000;transport=tls>\r\n\
Call-ID: 7f0c1a3e-6a4b-4c55-8f1d-2c9a0b7e6d54\r\n\
CSeq: 20713 MESSAGE\r\n\
Date: Mon Sep 21 14:13:20 2026\r\n\
Message-ID: 001f3c5d7e9a0b2c\r\n\
User-Agent: Jami Daemon 13.7.0 (linux)\r\n\
Content-Type: application/im-gitmessage-id\r\n\
Content-Length:    87\r\n\
\r\n\
{\"commit\":\"0123456789abcdef0123456789abcdef01234567\",\"deviceId\":\"d3v1c3\",\"id\":\"c0nv1d\"}";

fn cfg(own: &str, peer: &str, local: &str, remote: &str) -> ChannelConfig {
    ChannelConfig {
        own_account: own.into(),
        display_name: String::new(),
        peer_account: peer.into(),
        local_addr: local.into(),
        remote_addr: remote.into(),
        user_agent: "jamisim".into(),
    }
}

fn pair() -> (SipChannel, SipChannel) {
    let mut a = cfg(A, B, "10.0.0.1:38211", "10.0.0.2:40000");
    a.display_name = "Alice".into();
    let b = cfg(B, A, "10.0.0.2:40000", "10.0.0.1:38211");
    (SipChannel::new(a, 1), SipChannel::new(b, 2))
}

/// Move every pending write from `from` to `to`; returns the bytes moved.
fn pipe(now: u64, from: &mut SipChannel, to: &mut SipChannel) -> Vec<Vec<u8>> {
    let out: Vec<Vec<u8>> = std::iter::from_fn(|| from.poll_transmit()).collect();
    for b in &out {
        to.handle_stream_data(now, b);
    }
    out
}

fn events(c: &mut SipChannel) -> Vec<SipEvent> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

fn decode_all(bytes: &[u8]) -> (Vec<Result<SipMessage, StreamError>>, DecoderStats) {
    let mut d = StreamDecoder::new();
    d.push(bytes);
    let out = std::iter::from_fn(|| d.next()).collect();
    (out, d.stats)
}

#[test]
fn parses_a_message_as_pjsip_writes_it() {
    let (msgs, stats) = decode_all(PJSIP_MESSAGE.as_bytes());
    assert_eq!(stats.messages, 1);
    let m = msgs[0].clone().unwrap();
    assert_eq!(m.method(), Some("MESSAGE"));
    assert_eq!(m.header("message-id"), Some("001f3c5d7e9a0b2c"));
    assert_eq!(m.header("c"), Some("application/im-gitmessage-id"));
    assert_eq!(message::uri_user(m.header("From").unwrap()), Some(A));
    assert_eq!(message::param(m.header("f").unwrap(), "tag"), Some("0e2bd4b6-3f41-4bde-9f8a-7d2b4b3b2c11"));
    assert_eq!(m.body.len(), 87);
    assert!(m.header("Content-Length").is_none(), "framing, not kept");
    // Re-encoding gives pjsip's bytes back.
    assert_eq!(String::from_utf8(m.encode()).unwrap(), PJSIP_MESSAGE);
}

#[test]
fn compact_forms_folding_case_and_multiple_values() {
    let raw = "message sip:x@y SIP/2.0\r\n\
v: SIP/2.0/TCP a:1;branch=z9hG4bK1, SIP/2.0/TCP b:2;branch=z9hG4bK2\r\n\
VIA: SIP/2.0/TCP c:3;branch=z9hG4bK3\r\n\
f: <sip:alice@ring.dht>;tag=1\r\n\
t: \"Bob, Jr\" <sip:bob@h>\r\n\
i: abc\r\n\
cseq: 1 message\r\n\
Subject: a long\r\n  folded\r\n\tsubject\r\n\
l: 2\r\n\r\nhi";
    let (msgs, _) = decode_all(raw.as_bytes());
    let m = msgs[0].clone().unwrap();
    assert_eq!(m.values("Via").len(), 3);
    assert_eq!(message::param(m.values("via")[1], "branch"), Some("z9hG4bK2"));
    assert_eq!(m.values("To"), vec!["\"Bob, Jr\" <sip:bob@h>"], "no split inside quotes");
    assert_eq!(m.header("s"), Some("a long folded subject"));
    assert_eq!(m.header("CALL-ID"), Some("abc"));
    assert_eq!(m.body, b"hi");
    // Bare LF line ends, as pjsip's `\n\r\n` search also accepts.
    let lf = raw.replace("\r\n", "\n");
    let (msgs, _) = decode_all(lf.as_bytes());
    assert_eq!(msgs[0].clone().unwrap().header("s"), Some("a long folded subject"));
}

#[test]
fn malformed_heads_are_errors_and_the_stream_goes_on() {
    let good = PJSIP_MESSAGE.as_bytes();
    for (bad, want) in [
        ("FOO\r\nl: 0\r\n\r\n", "start line"),
        ("MESSAGE sip:x SIP/3.0\r\nl: 0\r\n\r\n", "start line"),
        ("SIP/2.0 99 Low\r\nl: 0\r\n\r\n", "start line"),
        ("MESSAGE sip:x SIP/2.0\r\nno colon\r\nl: 0\r\n\r\n", "header line"),
        ("MESSAGE sip:x SIP/2.0\r\n folded first\r\nl: 0\r\n\r\n", "continuation"),
        ("MESSAGE sip:x SIP/2.0\r\nTo: x\r\n\r\n", "missing Content-Length"),
        ("MESSAGE sip:x SIP/2.0\r\nl: 2\r\nl: 3\r\n\r\nabc", "Content-Length"),
        ("MESSAGE sip:x SIP/2.0\r\nl: -1\r\n\r\n", "Content-Length"),
        ("MESSAGE sip:x SIP/2.0\r\nX: \u{ff}\r\nl: 3\r\n\r\nabc", ""),
    ] {
        let mut bytes = bad.as_bytes().to_vec();
        if want.is_empty() {
            bytes[27] = 0xff; // not UTF-8
        }
        bytes.extend_from_slice(good);
        let (msgs, stats) = decode_all(&bytes);
        assert_eq!(msgs.len(), 2, "{bad:?}");
        let e = msgs[0].clone().unwrap_err().to_string();
        assert!(e.contains(want), "{bad:?}: {e}");
        assert_eq!(msgs[1].clone().unwrap().body.len(), 87, "{bad:?}: next message intact");
        assert_eq!((stats.malformed, stats.messages), (1, 1));
    }
}

#[test]
fn keepalives_coalesced_messages_and_limits() {
    // CRLF keep-alives (pjsip sends "\r\n\r\n") between coalesced messages.
    let mut bytes = b"\r\n\r\n".to_vec();
    bytes.extend_from_slice(PJSIP_MESSAGE.as_bytes());
    bytes.extend_from_slice(b"\r\n\r\n");
    bytes.extend_from_slice(PJSIP_MESSAGE.as_bytes());
    let (msgs, stats) = decode_all(&bytes);
    assert_eq!(msgs.iter().filter(|m| m.is_ok()).count(), 2);
    assert_eq!(stats.keepalive_bytes, 8);

    // A body over the limit: refused by its Content-Length, skipped as it arrives.
    let big = 9000;
    let mut d = StreamDecoder::new();
    d.push(format!("MESSAGE sip:x SIP/2.0\r\nl: {big}\r\n\r\n").as_bytes());
    assert!(matches!(d.next(), Some(Err(StreamError::TooLarge(_)))));
    for _ in 0..big / 100 {
        d.push(&[b'x'; 100]);
        assert!(d.next().is_none());
        assert!(d.buffered() == 0, "skipped bytes are not kept");
    }
    d.push(PJSIP_MESSAGE.as_bytes());
    assert_eq!(d.next().unwrap().unwrap().body.len(), 87);
    assert_eq!(d.stats.oversized, 1);

    // A head that never ends: cut at the limit, resynchronised at the next empty line.
    let mut d = StreamDecoder::new();
    d.push(b"MESSAGE sip:x SIP/2.0\r\n");
    for _ in 0..100 {
        d.push(b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    assert_eq!(d.next(), Some(Err(StreamError::HeadTooLong)));
    assert!(d.buffered() <= 2);
    d.push(b"X-More: b\r\n\r\n");
    d.push(PJSIP_MESSAGE.as_bytes());
    assert_eq!(d.next().unwrap().unwrap().body.len(), 87);
    assert!(d.next().is_none());
}

#[test]
fn a_limit_sized_message_passes_and_one_byte_more_does_not() {
    let head = "MESSAGE sip:x SIP/2.0\r\nl: 7000\r\n\r\n";
    let fits = MAX_MESSAGE_LEN - head.len() - 7000;
    let pad = format!("MESSAGE sip:x SIP/2.0\r\nX: {}\r\nl: 7000\r\n\r\n", "p".repeat(fits - 5));
    assert_eq!(pad.len() + 7000, MAX_MESSAGE_LEN);
    let mut bytes = pad.clone().into_bytes();
    bytes.extend(std::iter::repeat_n(b'b', 7000));
    let (msgs, _) = decode_all(&bytes);
    assert!(msgs[0].is_ok());
    let pad = pad.replace("X: ", "X: p");
    let mut bytes = pad.into_bytes();
    bytes.extend(std::iter::repeat_n(b'b', 7000));
    let (msgs, _) = decode_all(&bytes);
    assert_eq!(msgs[0], Err(StreamError::TooLarge(MAX_MESSAGE_LEN + 1)));
}

#[test]
fn outgoing_message_has_jamids_header_order_and_forms() {
    let (mut a, _) = pair();
    let token = a.send_message(NOW, "text/plain", b"hello").unwrap();
    assert!((1..=1u64 << 53).contains(&token));
    let bytes = a.poll_transmit().unwrap();
    let text = String::from_utf8(bytes).unwrap();
    let lines: Vec<&str> = text.split("\r\n").collect();
    assert_eq!(lines[0], format!("MESSAGE sips:{B}@10.0.0.2:40000;transport=tls SIP/2.0"));
    let names: Vec<&str> = lines[1..11].iter().map(|l| l.split(':').next().unwrap()).collect();
    assert_eq!(
        names,
        ["Via", "Max-Forwards", "From", "To", "Call-ID", "CSeq", "Date", "Message-ID", "User-Agent", "Content-Type"]
    );
    let branch = lines[1].strip_prefix("Via: SIP/2.0/TLS 10.0.0.1:38211;rport;branch=z9hG4bKPj").unwrap();
    assert_eq!(branch.len(), 36);
    assert_eq!(lines[2], "Max-Forwards: 70");
    assert!(lines[3].starts_with(&format!("From: \"Alice\" <sip:{A}@ring.dht>;tag=")));
    assert_eq!(lines[4], format!("To: <sips:{B}@10.0.0.2:40000;transport=tls>"));
    assert!(lines[6].ends_with(" MESSAGE"));
    assert_eq!(lines[7], "Date: Mon Sep 21 14:13:20 2026");
    assert_eq!(lines[8], format!("Message-ID: {token:016x}"));
    assert_eq!(lines[9], "User-Agent: jamisim");
    assert_eq!(lines[10], "Content-Type: text/plain");
    assert_eq!(lines[11], "Content-Length:     5");
    assert_eq!(&lines[12..], ["", "hello"]);
    // Fresh token, branch, tag and Call-ID for the next one.
    let t2 = a.send_message(NOW, "text/plain", b"hello").unwrap();
    let second = String::from_utf8(a.poll_transmit().unwrap()).unwrap();
    assert_ne!(t2, token);
    for l in [1, 3, 5] {
        assert_ne!(second.split("\r\n").nth(l), Some(lines[l]));
    }
}

#[test]
fn two_endpoints_exchange_messages_both_ways() {
    let (mut a, mut b) = pair();
    let git = r#"{"commit":"c0ffee","deviceId":"d3","id":"conv"}"#;
    let t1 = a.send_message(NOW, "application/im-gitmessage-id", git.as_bytes()).unwrap();
    let t2 = b.send_message(NOW, "message/imdn+xml", b"<imdn/>").unwrap();
    pipe(NOW, &mut a, &mut b);
    pipe(NOW, &mut b, &mut a);
    let replies = pipe(NOW, &mut b, &mut a);
    assert!(replies.is_empty());
    let ev_b = events(&mut b);
    assert_eq!(
        ev_b,
        vec![SipEvent::Received(ReceivedMessage {
            from: A.into(),
            message_id: format!("{t1:016x}"),
            mime: "application/im-gitmessage-id".into(),
            body: git.as_bytes().to_vec(),
        })]
    );
    // a got b's MESSAGE (answered) — now deliver a's 200 back to b.
    pipe(NOW, &mut a, &mut b);
    let ev_a = events(&mut a);
    assert!(ev_a.contains(&SipEvent::Delivered { token: t1 }), "{ev_a:?}");
    assert!(ev_a.iter().any(|e| matches!(e, SipEvent::Received(m) if m.mime == "message/imdn+xml" && m.from == B)));
    assert_eq!(events(&mut b), vec![SipEvent::Delivered { token: t2 }]);
    assert_eq!((a.stats.delivered, b.stats.delivered), (1, 1));
    assert_eq!(a.poll_timeout(), None, "nothing left in flight");
}

#[test]
fn the_200_ok_is_pjsips_stateless_response() {
    let (mut a, mut b) = pair();
    a.send_message(NOW, "text/plain", b"x").unwrap();
    let req = String::from_utf8(a.poll_transmit().unwrap()).unwrap();
    b.handle_stream_data(NOW, req.as_bytes());
    let resp = String::from_utf8(b.poll_transmit().unwrap()).unwrap();
    let field = |m: &str, name: &str| {
        m.split("\r\n").find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_owned)).unwrap()
    };
    let lines: Vec<&str> = resp.split("\r\n").collect();
    assert_eq!(lines[0], "SIP/2.0 200 OK");
    let names: Vec<&str> = lines[1..6].iter().map(|l| l.split(':').next().unwrap()).collect();
    assert_eq!(names, ["Via", "Call-ID", "From", "To", "CSeq"]);
    let branch = message::param(&field(&req, "Via"), "branch").unwrap().to_owned();
    assert_eq!(
        field(&resp, "Via"),
        format!("SIP/2.0/TLS 10.0.0.1:38211;rport=38211;received=10.0.0.1;branch={branch}")
    );
    assert_eq!(field(&resp, "To"), format!("{};tag={branch}", field(&req, "To")));
    for h in ["Call-ID", "From", "CSeq"] {
        assert_eq!(field(&resp, h), field(&req, h));
    }
    assert!(resp.ends_with("Content-Length:  0\r\n\r\n"));
}

#[test]
fn timeouts_fail_and_error_statuses_fail() {
    let (mut a, mut b) = pair();
    let t = a.send_message(NOW, "text/plain", b"lost").unwrap();
    let _ = a.poll_transmit();
    assert_eq!(a.poll_timeout(), Some(NOW + TRANSACTION_TIMEOUT_MS));
    a.handle_timeout(NOW + TRANSACTION_TIMEOUT_MS - 1);
    assert!(events(&mut a).is_empty());
    a.handle_timeout(NOW + TRANSACTION_TIMEOUT_MS);
    assert_eq!(events(&mut a), vec![SipEvent::Failed { token: t, reason: SendFailure::Timeout }]);
    // A late 200 is stray.
    let t2 = a.send_message(NOW, "text/plain", b"x").unwrap();
    let req = a.poll_transmit().unwrap();
    b.handle_stream_data(NOW, &req);
    let ok = b.poll_transmit().unwrap();
    a.handle_timeout(NOW + TRANSACTION_TIMEOUT_MS);
    a.handle_stream_data(NOW, &ok);
    assert_eq!(events(&mut a), vec![SipEvent::Failed { token: t2, reason: SendFailure::Timeout }]);
    assert_eq!(a.stats.stray_responses, 1);
    // An INVITE gets 405, a MESSAGE answered 405 fails with that status.
    let t3 = a.send_message(NOW, "text/plain", b"x").unwrap();
    let req = String::from_utf8(a.poll_transmit().unwrap()).unwrap();
    b.handle_stream_data(NOW, req.replace("MESSAGE", "INVITE").as_bytes());
    let resp = String::from_utf8(b.poll_transmit().unwrap()).unwrap();
    assert!(resp.starts_with("SIP/2.0 405 Method Not Allowed\r\n"));
    a.handle_stream_data(NOW, resp.replace("INVITE", "MESSAGE").as_bytes());
    assert_eq!(events(&mut a), vec![SipEvent::Failed { token: t3, reason: SendFailure::Status(405) }]);
}

#[test]
fn duplicates_are_answered_but_reported_once() {
    let (mut a, mut b) = pair();
    a.send_message(NOW, "text/plain", b"once").unwrap();
    let req = a.poll_transmit().unwrap();
    b.handle_stream_data(NOW, &req);
    b.handle_stream_data(NOW, &req);
    assert_eq!(std::iter::from_fn(|| b.poll_transmit()).count(), 2, "both answered 200");
    assert_eq!(events(&mut b).len(), 1);
    assert_eq!(b.stats.duplicates, 1);
    // Without a Message-ID there is nothing to de-duplicate by (jamid reports both).
    let text = String::from_utf8(req).unwrap();
    let no_id: String = text.split_inclusive("\r\n").filter(|l| !l.starts_with("Message-ID")).collect();
    b.handle_stream_data(NOW, no_id.as_bytes());
    b.handle_stream_data(NOW, no_id.as_bytes());
    assert_eq!(events(&mut b).len(), 2);
}

#[test]
fn malformed_requests_are_dropped_unanswered_and_the_channel_goes_on() {
    let (mut a, mut b) = pair();
    a.send_message(NOW, "text/plain", b"x").unwrap();
    let req = String::from_utf8(a.poll_transmit().unwrap()).unwrap();
    let without = |h: &str| -> String {
        req.split_inclusive("\r\n").filter(|l| !l.starts_with(h)).collect()
    };
    // pjsip drops a request missing a mandatory header, and one with a bad Content-Type.
    for bad in [
        without("Call-ID"),
        without("CSeq"),
        without("Via"),
        req.replace("CSeq: ", "CSeq: x"),
        req.replace("Content-Type: text/plain", "Content-Type: textplain"),
    ] {
        b.handle_stream_data(NOW, bad.as_bytes());
        assert!(b.poll_transmit().is_none(), "{bad}");
        assert!(matches!(events(&mut b)[..], [SipEvent::Dropped { .. }]));
    }
    // Answered 200 (jamid answers first), then dropped: no Content-Type, bad UTF-8.
    b.handle_stream_data(NOW, without("Content-Type").as_bytes());
    assert!(b.poll_transmit().unwrap().starts_with(b"SIP/2.0 200 OK"));
    assert!(matches!(events(&mut b)[..], [SipEvent::Dropped { .. }]));
    let mut bad_utf8 = req.clone().into_bytes();
    *bad_utf8.last_mut().unwrap() = 0xff;
    b.handle_stream_data(NOW, &bad_utf8);
    assert!(b.poll_transmit().unwrap().starts_with(b"SIP/2.0 200 OK"));
    assert!(matches!(events(&mut b)[..], [SipEvent::Dropped { .. }]));
    assert_eq!(b.stats.dropped, 7);
    // Oversized, then a good one.
    let big = format!("MESSAGE sip:x SIP/2.0\r\nl: 100000\r\n\r\n{}", "z".repeat(100_000));
    b.handle_stream_data(NOW, big.as_bytes());
    b.handle_stream_data(NOW, req.as_bytes());
    let ev = events(&mut b);
    assert!(matches!(&ev[0], SipEvent::Dropped { reason } if reason.contains("exceeds 8000")), "{ev:?}");
    assert!(matches!(&ev[1], SipEvent::Received(m) if m.body == b"x"));
    assert_eq!(b.decoder().stats.oversized, 1);
}

#[test]
fn every_mime_type_of_jamid_goes_through() {
    let (mut a, mut b) = pair();
    let bodies = [
        ("text/plain", "hello"),
        ("application/im-gitmessage-id", r#"{"id":"c","commit":"d","deviceId":"e"}"#),
        ("message/imdn+xml", "<?xml version=\"1.0\"?><imdn><message-id>1</message-id></imdn>"),
        ("application/im-iscomposing+xml", "<?xml version=\"1.0\"?><isComposing><state>active</state></isComposing>"),
        ("application/invite+json", r#"{"conversationId":"c","metadatas":{"title":"t"}}"#),
        ("text/plain; charset = utf-8", "é"),
    ];
    for (mime, body) in bodies {
        a.send_message(NOW, mime, body.as_bytes()).unwrap();
    }
    pipe(NOW, &mut a, &mut b);
    let got: Vec<(String, Vec<u8>)> = events(&mut b)
        .into_iter()
        .map(|e| match e {
            SipEvent::Received(m) => (m.mime, m.body),
            e => panic!("{e:?}"),
        })
        .collect();
    let want: Vec<(String, Vec<u8>)> = bodies
        .iter()
        .map(|(m, b)| (content_type(m).unwrap(), b.as_bytes().to_vec()))
        .collect();
    assert_eq!(got, want);
    assert_eq!(got[5].0, "text/plain;charset=utf-8", "parameters as jamid rebuilds them");
    assert_eq!(a.send_message(NOW, "plain", b"x"), Err(SendError::Mime("plain".into())));
    let too_big = vec![b'a'; MAX_MESSAGE_LEN];
    assert!(matches!(a.send_message(NOW, "text/plain", &too_big), Err(SendError::TooLarge(_))));
}

#[test]
fn multipart_messages_are_read_part_by_part_as_jamid_does() {
    let (mut a, mut b) = pair();
    let body = "preamble\r\n--b1\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b1\r\nc: application/x-y\r\n\r\n\r\n--b1--\r\n";
    a.send_message(NOW, "multipart/mixed;boundary=b1", body.as_bytes()).unwrap();
    pipe(NOW, &mut a, &mut b);
    let ev = events(&mut b);
    let parts: Vec<(&str, &[u8])> = ev
        .iter()
        .map(|e| match e {
            SipEvent::Received(m) => (m.mime.as_str(), m.body.as_slice()),
            e => panic!("{e:?}"),
        })
        .collect();
    assert_eq!(parts, [("application/x-y", &b""[..]), ("text/plain", &b"hello"[..])]);
    assert_eq!(multipart::split("multipart/mixed", b"--x\r\n"), Err(multipart::MultipartError::NoBoundary));
    assert_eq!(
        multipart::split("multipart/mixed;boundary=\"x\"", b"--x\r\nc: a/b\r\n\r\nno end"),
        Err(multipart::MultipartError::Unterminated)
    );
}

#[test]
fn via_rewrite_and_ctime() {
    assert_eq!(
        received_via("SIP/2.0/TLS h:1;branch=z9hG4bKx;rport;foo=bar", "1.2.3.4", Some(9)),
        "SIP/2.0/TLS h:1;rport=9;received=1.2.3.4;branch=z9hG4bKx;foo=bar"
    );
    assert_eq!(
        received_via("SIP/2.0/TLS h:1;received=old;branch=b", "::1", Some(9)),
        "SIP/2.0/TLS h:1;received=::1;branch=b"
    );
    assert_eq!(ctime(0), "Thu Jan  1 00:00:00 1970");
    assert_eq!(ctime(951_782_400), "Tue Feb 29 00:00:00 2000");
    assert_eq!(ctime(4_102_531_199), "Fri Jan  1 23:59:59 2100");
}

fn arb_token() -> impl Strategy<Value = String> {
    "[A-Za-z][A-Za-z0-9.!%*_+`'~-]{0,12}"
}

fn arb_value() -> impl Strategy<Value = String> {
    // No surrounding blanks and no line ends: those are not part of a value.
    "([!-~]([ -~]{0,30}[!-~])?)?"
}

fn arb_message() -> impl Strategy<Value = SipMessage> {
    let start = prop_oneof![
        (arb_token(), "[!-~]{1,40}").prop_map(|(method, uri)| StartLine::Request { method, uri }),
        (100u16..700, "[ -~]{0,20}").prop_map(|(code, reason)| StartLine::Status { code, reason }),
    ];
    let headers = proptest::collection::vec(
        (arb_token().prop_filter("framing", |n| !message::same_header(n, "Content-Length")), arb_value())
            .prop_map(|(name, value)| Header { name, value }),
        0..8,
    );
    (start, headers, proptest::collection::vec(any::<u8>(), 0..300))
        .prop_map(|(start, headers, body)| SipMessage { start, headers, body })
}

proptest! {
    #[test]
    fn messages_round_trip_through_any_split(
        msgs in proptest::collection::vec(arb_message(), 1..4),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let mut bytes = Vec::new();
        for m in &msgs {
            bytes.extend_from_slice(&m.encode());
            bytes.extend_from_slice(b"\r\n");
        }
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
        cuts.sort();
        let mut d = StreamDecoder::new();
        let mut got = Vec::new();
        let mut at = 0;
        for c in cuts.into_iter().chain([bytes.len()]) {
            d.push(&bytes[at..c]);
            at = c;
            while let Some(m) = d.next() {
                got.push(m.unwrap());
            }
        }
        prop_assert_eq!(got, msgs);
    }

    #[test]
    fn byte_by_byte_equals_all_at_once(msg in arb_message(), junk in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut bytes = junk;
        bytes.extend_from_slice(&msg.encode());
        bytes.extend_from_slice(PJSIP_MESSAGE.as_bytes());
        let (whole, _) = decode_all(&bytes);
        let mut d = StreamDecoder::new();
        let mut split = Vec::new();
        for b in &bytes {
            d.push(std::slice::from_ref(b));
            split.extend(std::iter::from_fn(|| d.next()));
        }
        prop_assert_eq!(&split, &whole);
        prop_assert!(whole.last().unwrap().as_ref().is_ok_and(|m| m.body.len() == 87));
    }

    #[test]
    fn random_bytes_never_panic_and_stay_bounded(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 0..8)) {
        let mut d = StreamDecoder::new();
        for c in &chunks {
            d.push(c);
            while d.next().is_some() {}
            prop_assert!(d.buffered() <= MAX_MESSAGE_LEN + 3000);
        }
        let _ = multipart::split("multipart/mixed;boundary=a", &chunks.concat());
    }

    #[test]
    fn mutated_messages_never_panic_the_channel(pos in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<prop::sample::Index>()) {
        let mut bytes = PJSIP_MESSAGE.as_bytes().to_vec();
        let i = pos.index(bytes.len());
        bytes[i] = byte;
        bytes.truncate(cut.index(bytes.len() + 1).max(i));
        let (_, mut b) = pair();
        b.handle_stream_data(NOW, &bytes);
        b.handle_stream_data(NOW, b"\r\n\r\n");
        b.handle_stream_data(NOW, PJSIP_MESSAGE.as_bytes());
        while b.poll_event().is_some() {}
        while b.poll_transmit().is_some() {}
    }
}
