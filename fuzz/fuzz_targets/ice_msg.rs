//! The ice_msg text of connection requests (jamid's candidate lines): parsing never
//! panics, and whatever parses prints to text that parses to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use node::connect::ice_msg::{parse_candidate, IceMsg};

fuzz_target!(
    init: jamisim_fuzz::seeds::write_if_asked("ice_msg"),
    |data: &[u8]| {
        let Ok(text) = std::str::from_utf8(data) else { return };
        if let Ok(c) = parse_candidate(text) {
            assert_eq!(parse_candidate(&c.to_string()).as_ref(), Ok(&c));
        }
        let Ok(m) = IceMsg::parse(text) else { return };
        // Printing drops the skipped lines and anything a ufrag/pwd line cannot hold.
        if m.ufrag.contains('\n') || m.pwd.contains('\n') {
            return;
        }
        let again = IceMsg::parse(&m.to_string()).expect("own output parses");
        assert_eq!(again.candidates, m.candidates);
        assert_eq!((again.ufrag, again.pwd, again.rejected), (m.ufrag, m.pwd, 0));
    }
);
