//! Local peer discovery datagrams come from anyone on the LAN: the codec and the state
//! machine must never panic, payloads that decode must re-encode to themselves, and the
//! state machine's memory must stay within its caps whatever arrives.
#![no_main]

use libfuzzer_sys::fuzz_target;
use node::dht::InfoHash;
use node::discovery::codec::{self, Datagram};
use node::discovery::peer_discovery::{MAX_JAMI_PEERS, MAX_QUEUED_EVENTS, MAX_QUEUED_TRANSMITS};
use node::discovery::{Config, DhtPayload, Discover, JamiPayload, PeerDiscovery};

fuzz_target!(
    init: jamisim_fuzz::seeds::write_if_asked("discovery"),
    |data: &[u8]| {
        if let Ok(Datagram::Announcement(services)) = codec::decode(data) {
            for (_, raw) in services {
                if let Ok(p) = DhtPayload::decode(raw) {
                    assert_eq!(DhtPayload::decode(&p.encode()), Ok(p));
                }
                if let Ok(p) = JamiPayload::decode(raw) {
                    assert_eq!(JamiPayload::decode(&p.encode()).as_ref(), Ok(&p));
                }
            }
        }
        let mut d = PeerDiscovery::new(Config::ipv4());
        let own = InfoHash([0; 20]);
        d.start_discovery(0, Discover::Dht { own_id: own, net_id: 0 });
        d.start_discovery(0, Discover::Jami { own_account: own });
        let _ = d.publish(0, "dht", DhtPayload { node_id: own, port: 1, net_id: 0 }.encode());
        let from = "192.0.2.1:8888".parse().unwrap();
        // The same datagram many times, as a flood would send it.
        for i in 0..(MAX_QUEUED_TRANSMITS as u64 + 2) {
            let _ = d.handle_datagram(i, from, data);
        }
        d.handle_timeout(u64::MAX);
        assert!(d.jami_peers().count() <= MAX_JAMI_PEERS);
        let sent = std::iter::from_fn(|| d.poll_transmit()).count();
        let events = std::iter::from_fn(|| d.poll_event()).count();
        assert!(sent <= MAX_QUEUED_TRANSMITS && events <= MAX_QUEUED_EVENTS);
    }
);
