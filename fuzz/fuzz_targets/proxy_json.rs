//! A DHT proxy's answers and its clients' put bodies are JSON from the network: value
//! JSON never panics the decoder, and what it accepts survives re-encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use node::dht::proxy::json;

fuzz_target!(
    init: jamisim_fuzz::seeds::write_if_asked("proxy_json"),
    |data: &[u8]| {
        let text = String::from_utf8_lossy(data);
        if let Ok(pv) = json::from_str(&text) {
            let again = json::from_json(&json::to_json(&pv.value)).expect("our own JSON parses");
            assert_eq!(again.value, pv.value);
        }
    }
);
