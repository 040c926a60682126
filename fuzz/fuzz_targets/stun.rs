//! STUN/TURN codec (netsim's servers and clients parse every datagram with it): decoding,
//! MESSAGE-INTEGRITY and FINGERPRINT checks and ChannelData framing never panic; an
//! accepted message or ChannelData re-encodes to bytes that decode to the same value and
//! re-encode to the same bytes; the cheap demultiplexing tests agree with the decoders;
//! STUN-over-TCP framing finds whole, bounded messages.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netsim::stun::{self, ChannelData, Message};

fuzz_target!(
    init: jamisim_fuzz::seeds::write_if_asked("stun"),
    |data: &[u8]| {
        message(data);
        channel_data(data);
        stream(data);
    }
);

/// STUN over TCP (netsim's stream framing, RFC 5389 §7.2.2): never panics, and every
/// frame it finds is a whole message within the bound, so a stream is consumed in order.
fn stream(data: &[u8]) {
    use netsim::apps::stun_server::{stream_frame, MAX_STREAM_MESSAGE};
    let mut rest = data;
    while let Ok(Some(len)) = stream_frame(rest, MAX_STREAM_MESSAGE) {
        assert!(len >= 20 && len <= rest.len() && len <= MAX_STREAM_MESSAGE);
        rest = &rest[len..];
    }
}

fn message(data: &[u8]) {
    let Ok(m) = Message::decode(data) else { return };
    let key = stun::long_term_key("user", "realm", "pass");
    assert!(stun::is_stun(data), "decoded a message is_stun rejects");
    let _ = m.check_integrity(data, &key);
    let _ = Message::check_fingerprint(data);
    let _ = (m.unknown_comprehension_required(), m.change_request());
    let bytes = m.encode();
    let again = Message::decode(&bytes).expect("own encoding decodes");
    assert_eq!(again, m, "an attribute did not survive encode → decode");
    assert_eq!(again.encode(), bytes, "encode is not a fixpoint");
    // Fresh integrity and fingerprint over what was decoded verify, when the 32 bytes
    // they add still fit the 16-bit length (beyond that, encoding is a caller bug).
    if bytes.len() - stun::HEADER_LEN + 32 > usize::from(u16::MAX) {
        return;
    }
    let signed = m.encode_with(Some(&key), true);
    let s = Message::decode(&signed).expect("signed encoding decodes");
    assert!(
        s.check_integrity(&signed, &key),
        "fresh MESSAGE-INTEGRITY fails"
    );
    assert!(
        Message::check_fingerprint(&signed),
        "fresh FINGERPRINT fails"
    );
}

fn channel_data(data: &[u8]) {
    let Ok(cd) = ChannelData::decode(data) else {
        return;
    };
    assert!(
        stun::is_channel_data(data),
        "decoded ChannelData is_channel_data rejects"
    );
    for bytes in [cd.encode(), cd.encode_padded()] {
        assert_eq!(ChannelData::decode(&bytes).as_ref(), Ok(&cd));
    }
}
