//! The ICE agent fed hostile bytes as UDP datagrams and as TCP stream data once checks
//! are under way: no panic, no answer to anything that is not a check signed with our
//! password.
#![no_main]

use libfuzzer_sys::fuzz_target;
use node::connect::ice::{Agent, Config, IceMsg};

fuzz_target!(
    init: jamisim_fuzz::seeds::write_if_asked("ice_agent"),
    |data: &[u8]| {
        let cfg = Config {
            seed: 1,
            controlling: data.first().is_some_and(|b| b & 1 == 1),
            udp_sockets: vec!["10.0.0.1:5000".parse().unwrap()],
            tcp_listen: vec!["10.0.0.1:6000".parse().unwrap()],
            ..Config::default()
        };
        let mut a = Agent::new(cfg, 0);
        let remote = IceMsg::parse(
            "rfrag\nremotepasswordremotepass\nH1 1 UDP 2130706431 10.0.0.2 5000 typ host\n\
             H1 1 TCP 2130706175 10.0.0.2 9 typ host tcptype active\n",
        )
        .unwrap();
        a.set_remote(0, &remote);
        let (local, from) = ("10.0.0.1:5000".parse().unwrap(), "10.0.0.2:5000".parse().unwrap());
        let conn = a.handle_tcp_accepted(1, "10.0.0.1:6000".parse().unwrap(), "10.0.0.2:40000".parse().unwrap());
        for (i, chunk) in data.chunks(600).enumerate() {
            let now = 1 + i as u64;
            a.handle_datagram(now, local, from, chunk);
            a.handle_tcp_data(now, conn, chunk);
            a.handle_timeout(now);
            while a.poll_transmit().is_some() {}
            while a.poll_command().is_some() {}
            while a.poll_event().is_some() {}
        }
        // Without our password (drawn from the seeded RNG, never in the input) no request
        // can carry a valid MESSAGE-INTEGRITY: nothing may be answered.
        let st = a.stats();
        assert_eq!((st.checks_answered, st.role_conflicts_sent), (0, 0), "answered a forged check");
    }
);
