//! The typed payloads inside DHT values (trust requests, IM messages, ICE candidates,
//! service messages, IP announcements) arrive from any peer: never panic, and what decodes
//! re-encodes to a payload that decodes to the same thing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use node::dht::payload::{
    DhtMessage, IceCandidates, ImMessage, IpServiceAnnouncement, TrustRequest,
};

fuzz_target!(
    init: jamisim_fuzz::seeds::write_if_asked("dht_payload"),
    |data: &[u8]| {
        if let Ok(t) = TrustRequest::unpack(data) {
            assert_eq!(TrustRequest::unpack(&t.pack()).as_ref(), Ok(&t));
        }
        if let Ok(m) = ImMessage::unpack(data) {
            assert_eq!(ImMessage::unpack(&m.pack()).as_ref(), Ok(&m));
        }
        if let Ok(i) = IceCandidates::unpack(data) {
            assert_eq!(IceCandidates::unpack(&i.pack()).as_ref(), Ok(&i));
        }
        if let Ok(d) = DhtMessage::unpack(data) {
            assert_eq!(DhtMessage::unpack(&d.pack()).as_ref(), Ok(&d));
        }
        if let Ok(a) = IpServiceAnnouncement::unpack(data) {
            assert_eq!(IpServiceAnnouncement::unpack(&a.pack()).as_ref(), Ok(&a));
        }
    }
);
