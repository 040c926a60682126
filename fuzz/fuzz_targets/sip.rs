//! SIP over the `sip` channel (a stream from any peer): the stream decoder never panics
//! whatever the bytes and however they are split, keeps its buffer bounded, and what it
//! accepts re-encodes to bytes that decode to the same message; a channel fed the same
//! bytes never panics; multipart bodies split without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use node::sip::{multipart, ChannelConfig, SipChannel, StreamDecoder, MAX_MESSAGE_LEN};

fuzz_target!(
    init: jamisim_fuzz::seeds::write_if_asked("sip"),
    |data: &[u8]| {
        // First byte: where to split the rest, to exercise partial reads.
        let (cut, rest) = match data.split_first() {
            Some((c, r)) => (usize::from(*c), r),
            None => (0, data),
        };
        let cut = cut.min(rest.len());
        let mut whole = StreamDecoder::new();
        whole.push(rest);
        let a: Vec<_> = std::iter::from_fn(|| whole.next()).collect();
        let mut split = StreamDecoder::new();
        split.push(&rest[..cut]);
        let mut b: Vec<_> = std::iter::from_fn(|| split.next()).collect();
        split.push(&rest[cut..]);
        b.extend(std::iter::from_fn(|| split.next()));
        assert_eq!(a, b, "the split changed what was decoded");
        assert!(whole.buffered() <= MAX_MESSAGE_LEN.max(rest.len()));
        for m in a.into_iter().flatten() {
            let bytes = m.encode();
            let mut d = StreamDecoder::new();
            d.push(&bytes);
            assert_eq!(d.next(), Some(Ok(m.clone())), "re-encoding changed the message");
            if let Some(ct) = m.header("Content-Type") {
                let _ = multipart::split(ct, &m.body);
            }
        }
        let mut ch = SipChannel::new(
            ChannelConfig {
                own_account: "a".repeat(40),
                display_name: "fuzz".into(),
                peer_account: "b".repeat(40),
                local_addr: "10.0.0.1:1".into(),
                remote_addr: "10.0.0.2:2".into(),
                user_agent: "fuzz".into(),
            },
            0,
        );
        ch.handle_stream_data(0, rest);
        while ch.poll_transmit().is_some() {}
        while ch.poll_event().is_some() {}
    }
);
