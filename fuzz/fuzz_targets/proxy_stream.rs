//! A DHT proxy's HTTP/1.1 answers reach the sans-IO proxy client from the network (a
//! device behind Tor trusts whatever node serves its proxy): any bytes, split anywhere,
//! never panic the response decoder, and a get through the client always ends exactly
//! once (first byte: where the answer is split; second: whether the proxy then closes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use node::device::streams::StreamCommand;
use node::dht::engine::Event;
use node::dht::proxy::http1::ResponseDecoder;
use node::dht::proxy::stream::{ProxyEngine, REQUEST_TIMEOUT_MS};
use node::dht::secure::PlainDht;
use node::dht::InfoHash;

fuzz_target!(
    init: jamisim_fuzz::seeds::write_if_asked("proxy_stream"),
    |data: &[u8]| {
        let [cut, close, answer @ ..] = data else {
            return;
        };
        let cut = (*cut as usize).min(answer.len());
        let mut d = ResponseDecoder::new();
        let _ = d.feed(&answer[..cut]);
        let _ = d.feed(&answer[cut..]);
        let _ = d.close();

        let mut e = ProxyEngine::new("198.18.0.5:8000".parse().expect("literal"), 0);
        let op = e.get(0, InfoHash::get("fuzz"));
        let id = std::iter::from_fn(|| e.poll_stream_command())
            .filter_map(|c| match c {
                StreamCommand::Connect { id, .. } => Some(id),
                _ => None,
            })
            .last()
            .expect("the get's stream");
        e.handle_stream_connected(1, id);
        e.handle_stream_data(2, id, &answer[..cut]);
        e.handle_stream_data(3, id, &answer[cut..]);
        if close & 1 == 1 {
            e.handle_stream_closed(4, id);
        }
        e.handle_timeout(REQUEST_TIMEOUT_MS + 10);
        let ends = std::iter::from_fn(|| e.poll_event())
            .filter(|ev| matches!(ev, Event::GetDone { op: o, .. } if *o == op))
            .count();
        assert_eq!(ends, 1, "a get ends exactly once");
    }
);
