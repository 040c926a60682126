//! The multiplexed socket's input is the TLS plaintext of any peer that completed a
//! handshake. First byte: the size of the pieces the stream arrives in. The frame decoder
//! must see the same frames whatever the split; the mux (accepting every request, reading
//! every readable channel) must never panic and keep its buffers within their caps.
#![no_main]

use libfuzzer_sys::fuzz_target;
use node::connect::mux::frame::{Frame, FrameDecoder, FrameError};
use node::connect::mux::{Event, Mux, MUX_RECV_BUFFER};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

fuzz_target!(
    init: jamisim_fuzz::seeds::write_if_asked("mux_frames"),
    |data: &[u8]| {
        let Some((&step, stream)) = data.split_first() else { return };
        let step = usize::from(step).max(1);
        assert_eq!(decode(stream, usize::MAX), decode(stream, step), "split changed the frames");
        drive(stream, step);
    }
);

fn decode(stream: &[u8], step: usize) -> (Vec<Frame>, Option<FrameError>) {
    let mut d = FrameDecoder::new();
    let mut frames = Vec::new();
    for mut chunk in stream.chunks(step.min(stream.len().max(1))) {
        while !chunk.is_empty() {
            match d.push(chunk) {
                Ok((used, f)) => {
                    assert!(used <= chunk.len() && (used > 0 || f.is_some()));
                    chunk = &chunk[used..];
                    frames.extend(f);
                }
                Err(e) => return (frames, Some(e)),
            }
        }
    }
    (frames, None)
}

fn drive(stream: &[u8], step: usize) {
    let mut m = Mux::new(ChaCha20Rng::seed_from_u64(0));
    let mut pending = Vec::new();
    let mut buf = [0u8; 4096];
    for chunk in stream.chunks(step.min(stream.len().max(1))) {
        pending.extend_from_slice(chunk);
        loop {
            let n = m.handle_stream_bytes(0, &pending);
            assert!(n <= pending.len());
            pending.drain(..n);
            assert!(m.buffered() <= MUX_RECV_BUFFER);
            while let Some(ev) = m.poll_event() {
                match ev {
                    Event::ChannelRequested { channel, .. } => {
                        // It may be gone already (its requester gave up in the same batch).
                        let _ = m.accept(channel);
                    }
                    Event::Readable { channel } => while let Ok(1..) = m.read(channel, &mut buf) {},
                    _ => {}
                }
            }
            let _ = m.poll_stream_write();
            if n == 0 || pending.is_empty() {
                break;
            }
        }
    }
}
