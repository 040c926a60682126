//! TURN-over-TCP stream framing (RFC 5766 §11.5, RFC 6062): the decoder never panics and
//! never holds more than MAX_BUFFERED bytes whatever the chunks; every STUN frame it
//! returns is exactly one aligned message, every ChannelData re-encodes padded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netsim::stun::stream::{Frame, StreamDecoder, MAX_BUFFERED};

fuzz_target!(
    init: jamisim_fuzz::seeds::write_if_asked("stun_stream"),
    |data: &[u8]| {
        // The first byte chooses the chunk size so splits vary with the input.
        let Some((&size, rest)) = data.split_first() else { return };
        let chunk = usize::from(size).max(1);
        let mut dec = StreamDecoder::new();
        for piece in rest.chunks(chunk) {
            if dec.push(piece).is_err() {
                return;
            }
            loop {
                match dec.next_frame() {
                    Ok(Some(Frame::Stun { msg, raw })) => {
                        assert!(raw.len() % 4 == 0, "unaligned STUN frame");
                        assert_eq!(netsim::stun::Message::decode(&raw).as_ref(), Ok(&msg));
                    }
                    Ok(Some(Frame::ChannelData(cd))) => {
                        assert_eq!(cd.encode_padded().len() % 4, 0);
                    }
                    Ok(None) => break,
                    Err(e) if e.is_fatal() => return,
                    Err(_) => {}
                }
            }
            assert!(dec.buffered() <= MAX_BUFFERED);
        }
    }
);
