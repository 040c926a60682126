//! RFC 4571 framing of ICE-TCP streams: the streaming decoder never panics, whatever the
//! bytes and however they are split; frames it yields re-frame to the bytes consumed; the
//! backlog bound holds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use node::connect::framing::{frame, Decoder, MAX_BUFFERED_FRAMES};

fuzz_target!(
    init: jamisim_fuzz::seeds::write_if_asked("framing"),
    |data: &[u8]| {
        let split = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
        let (mut whole, mut parts) = (Decoder::new(), Decoder::new());
        let r1 = whole.push(data);
        let r2 = parts.push(&data[..split]).and_then(|()| parts.push(&data[split..]));
        assert_eq!(r1.is_ok(), r2.is_ok(), "split changed the outcome");
        let a: Vec<Vec<u8>> = std::iter::from_fn(|| whole.pop()).collect();
        let b: Vec<Vec<u8>> = std::iter::from_fn(|| parts.pop()).collect();
        assert_eq!(a, b, "split changed the frames");
        assert!(a.len() <= MAX_BUFFERED_FRAMES);
        if r1.is_ok() {
            let again: Vec<u8> = a.iter().flat_map(|f| frame(f).expect("decoded frame fits")).collect();
            assert_eq!(again.len() + whole.pending(), data.len(), "bytes lost or invented");
            assert_eq!(&again[..], &data[..again.len()]);
        }
    }
);
