//! Name server requests come from anyone over HTTP: names, addresses and registration
//! bodies never panic the domain logic, and what it accepts obeys its own rules.
#![no_main]

use libfuzzer_sys::fuzz_target;
use node::nameserver::domain::{verify_registration, Addr, Name};

fuzz_target!(
    init: jamisim_fuzz::seeds::write_if_asked("nameserver"),
    |data: &[u8]| {
        let text = String::from_utf8_lossy(data);
        if let Ok(n) = Name::parse(&text) {
            assert_eq!(Name::parse(n.as_str()).map(|m| m.as_str().to_string()), Ok(n.as_str().to_string()));
        }
        if let Ok(a) = Addr::parse(&text) {
            assert_eq!(Addr::parse(&a.hex()).map(|b| b.hex()), Ok(a.hex()));
        }
        let name = Name::parse("fuzzed-name").expect("a valid name");
        if let Ok(r) = verify_registration(&name, data) {
            assert_eq!(r.name, "fuzzed-name");
        }
    }
);
