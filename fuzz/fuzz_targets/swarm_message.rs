//! Swarm commit messages (the JSON of any fetched commit, from any member): parsing
//! never panics, and what parses writes back to JSON that parses to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use node::swarm::message::Message;

fuzz_target!(
    init: jamisim_fuzz::seeds::write_if_asked("swarm_message"),
    |data: &[u8]| {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        if let Ok(m) = Message::parse(text) {
            let again = Message::parse(&m.to_json()).expect("our JSON parses");
            assert_eq!(again, m);
        }
    }
);
