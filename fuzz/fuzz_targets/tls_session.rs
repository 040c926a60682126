//! TLS records arrive from the ICE stream, i.e. from anyone: a session fed arbitrary bytes
//! (in either role, in chunks of any size) never panics and keeps its events bounded by
//! its input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use node::connect::tls::TlsEvent;

fuzz_target!(
    init: jamisim_fuzz::seeds::write_if_asked("tls_session"),
    |data: &[u8]| {
        let [role, chunk, stream @ ..] = data else { return };
        let mut session = jamisim_fuzz::tls_session(role & 1 == 1, false);
        let _ = session.poll_stream_write();
        let chunk = usize::from(*chunk).max(1);
        for piece in stream.chunks(chunk) {
            session.handle_stream_bytes(jamisim_fuzz::TLS_NOW_MS, piece);
            let _ = session.poll_stream_write();
        }
        session.handle_timeout(jamisim_fuzz::TLS_NOW_MS + node::connect::tls::HANDSHAKE_TIMEOUT_MS);
        let mut events = 0usize;
        while let Some(e) = session.poll_event() {
            if let TlsEvent::Data(d) = &e {
                assert!(d.len() <= stream.len());
            }
            events += 1;
        }
        assert!(events <= stream.len() + 2);
    }
);
