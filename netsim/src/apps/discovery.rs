//! NAT behaviour discovery (RFC 5780 §4) against a two-address STUN server: mapping
//! (§4.3), filtering (§4.4), hairpinning (§4.5) and port preservation.
//!
//! The tests run one after another, each on the socket whose NAT state it needs:
//! mapping tests on one socket, filtering tests on a fresh socket that has only ever
//! sent to the server's primary address (so the filter admits exactly that address),
//! and hairpinning on further fresh sockets. Every request is resent a few times so the
//! classification survives a lossy access link.

use crate::app::{App, Ctx};
use crate::nat::{Behaviour, NatType};
use crate::sim::SockId;
use crate::stun::{Attribute, Class, Message, Method};
use rand::RngExt;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Sends of each request: with 10% loss each way a test is misread about once in 10^5.
const SENDS: u64 = 7;
/// Time between sends (and between timer ticks).
const INTERVAL: Duration = Duration::from_millis(400);
/// Ticks after the first send at which a test gives up (4 s: 1.6 s after the last send,
/// room for a satellite round trip).
const TIMEOUT_TICKS: u64 = 10;

/// What the discovery measured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiscoveryResult {
    /// The mapped address differs from the local one.
    pub nat: bool,
    pub mapping: Behaviour,
    pub filtering: Behaviour,
    /// A packet to our own mapped address came back in. Without a NAT the host's own
    /// address loops back, so this is true.
    pub hairpin: bool,
    /// The first mapping kept the local port.
    pub port_preserved: bool,
    /// Our address as the server saw it (test I).
    pub mapped: SocketAddr,
    /// Test I got no answer: nothing else is known (the other fields are the most
    /// restrictive values).
    pub udp_blocked: bool,
}

impl DiscoveryResult {
    fn blank() -> Self {
        DiscoveryResult {
            nat: false,
            mapping: Behaviour::EndpointIndependent,
            filtering: Behaviour::EndpointIndependent,
            hairpin: false,
            port_preserved: false,
            mapped: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            udp_blocked: false,
        }
    }
}

/// The tests, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Test {
    /// §4.3 test I: Binding to the primary address.
    MappingI,
    /// §4.3 test II: to the alternate IP, primary port.
    MappingII,
    /// §4.3 test III: to the alternate IP and port.
    MappingIII,
    /// §4.4 test II: change IP and port.
    FilteringII,
    /// §4.4 test III: change port only.
    FilteringIII,
    /// Learn a second socket's mapped address for the hairpin test.
    HairpinBinding,
    /// §4.5: marked requests to our own mapped addresses.
    Hairpin,
}

/// One request, resent to every target on each tick until answered or timed out.
#[derive(Clone, Debug)]
struct Probe {
    test: Test,
    txid: [u8; 12],
    bytes: Vec<u8>,
    targets: Vec<(SockId, SocketAddr)>,
    serial: u64,
}

/// RFC 5780 NAT behaviour discovery client (an app).
#[derive(Clone, Debug)]
pub struct NatDiscovery {
    /// The server's primary address; the alternate comes from OTHER-ADDRESS.
    pub server: SocketAddr,
    pub result: Option<DiscoveryResult>,
    /// Why the discovery stopped without a result.
    pub error: Option<String>,
    finished: bool,
    other: Option<SocketAddr>,
    /// Socket of the mapping tests and its local address.
    main: Option<(SockId, SocketAddr)>,
    /// Socket of the filtering tests.
    filter_sock: Option<SockId>,
    /// Mapped addresses of mapping tests I, II (III is compared on arrival).
    mapped: [Option<SocketAddr>; 2],
    partial: DiscoveryResult,
    probe: Option<Probe>,
    serial: u64,
    /// Every socket opened, closed at the end.
    socks: Vec<SockId>,
}

impl NatDiscovery {
    pub fn new(server: SocketAddr) -> Self {
        NatDiscovery {
            server,
            result: None,
            error: None,
            finished: false,
            other: None,
            main: None,
            filter_sock: None,
            mapped: [None; 2],
            partial: DiscoveryResult::blank(),
            probe: None,
            serial: 0,
            socks: Vec::new(),
        }
    }

    /// True once finished, with a result or an error.
    pub fn done(&self) -> bool {
        self.finished
    }

    /// The measured NAT type; None until done, or when UDP is blocked.
    pub fn nat_type(&self) -> Option<NatType> {
        let r = self.result.as_ref().filter(|r| !r.udp_blocked)?;
        Some(NatType {
            mapping: r.mapping,
            filtering: r.filtering,
        })
    }

    fn bind(&mut self, cx: &mut Ctx<'_>) -> Option<(SockId, SocketAddr)> {
        let sock = cx
            .udp_bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))
            .ok()?;
        self.socks.push(sock);
        Some((sock, cx.local_addr(sock).ok()?))
    }

    /// Start a test: a Binding request with a fresh transaction id to every target.
    fn launch(
        &mut self,
        cx: &mut Ctx<'_>,
        test: Test,
        targets: Vec<(SockId, SocketAddr)>,
        change: Option<(bool, bool)>,
    ) {
        let txid: [u8; 12] = cx.rng().random();
        let mut msg = Message::new(Class::Request, Method::Binding, txid);
        if let Some((change_ip, change_port)) = change {
            msg.add(Attribute::ChangeRequest {
                change_ip,
                change_port,
            });
        }
        self.serial += 1;
        let probe = Probe {
            test,
            txid,
            bytes: msg.encode(),
            targets,
            serial: self.serial,
        };
        send_all(cx, &probe);
        cx.set_timer(INTERVAL, self.serial << 8 | 1);
        self.probe = Some(probe);
    }

    fn start_mapping(&mut self, cx: &mut Ctx<'_>) {
        let Some(main) = self.bind(cx) else {
            return self.fail(cx, "cannot bind a socket");
        };
        self.main = Some(main);
        self.launch(cx, Test::MappingI, vec![(main.0, self.server)], None);
    }

    /// Filtering tests on a fresh socket: its NAT filter admits only the primary address.
    fn start_filtering(&mut self, cx: &mut Ctx<'_>) {
        let Some((sock, _)) = self.bind(cx) else {
            return self.fail(cx, "cannot bind a socket");
        };
        self.filter_sock = Some(sock);
        self.launch(
            cx,
            Test::FilteringII,
            vec![(sock, self.server)],
            Some((true, true)),
        );
    }

    fn start_hairpin(&mut self, cx: &mut Ctx<'_>) {
        let Some((sock, _)) = self.bind(cx) else {
            return self.fail(cx, "cannot bind a socket");
        };
        self.launch(cx, Test::HairpinBinding, vec![(sock, self.server)], None);
    }

    /// §4.5 with the filters opened first, so a filtering NAT that does hairpin is not
    /// mistaken for one that does not:
    /// - the main socket sends to the second socket's mapped address before the second
    ///   socket sends its request to the main socket's mapped address (enough when
    ///   mapping is endpoint-independent or filtering is);
    /// - when ports are preserved, two fresh sockets send to each other's local port on
    ///   the NAT's address: their first mappings (toward the NAT itself) keep those
    ///   ports and each has sent to the other's, which any filter admits.
    ///
    /// A marked packet arriving on any of our sockets proves hairpinning.
    fn hairpin_probe(&mut self, cx: &mut Ctx<'_>, second: SockId, second_mapped: SocketAddr) {
        let Some((main, _)) = self.main else {
            return self.finish(cx);
        };
        let mut targets = vec![(main, second_mapped), (second, self.partial.mapped)];
        if self.partial.nat && self.partial.port_preserved {
            if let (Some(a), Some(b)) = (self.bind(cx), self.bind(cx)) {
                let wan = self.partial.mapped.ip();
                targets.push((a.0, SocketAddr::new(wan, b.1.port())));
                targets.push((b.0, SocketAddr::new(wan, a.1.port())));
            }
        }
        self.launch(cx, Test::Hairpin, targets, None);
    }

    fn on_answer(
        &mut self,
        cx: &mut Ctx<'_>,
        test: Test,
        sock: SockId,
        from: SocketAddr,
        msg: &Message,
    ) {
        if msg.class == Class::ErrorResponse {
            let code = msg.error_code().map_or(0, |e| e.code);
            return self.fail(cx, &format!("{test:?}: server answered error {code}"));
        }
        let mapped = msg.xor_mapped().or(msg.mapped_address());
        match test {
            Test::MappingI => self.after_mapping_i(cx, mapped, msg.other_address()),
            Test::MappingII => {
                self.mapped[1] = mapped;
                if mapped == self.mapped[0] {
                    self.partial.mapping = Behaviour::EndpointIndependent;
                    return self.start_filtering(cx);
                }
                let Some(other) = self.other else {
                    return self.fail(cx, "no alternate address");
                };
                let Some((main, _)) = self.main else {
                    return self.fail(cx, "no socket");
                };
                self.launch(cx, Test::MappingIII, vec![(main, other)], None);
            }
            Test::MappingIII => {
                self.partial.mapping = if mapped == self.mapped[1] {
                    Behaviour::AddressDependent
                } else {
                    Behaviour::AddressAndPortDependent
                };
                self.start_filtering(cx);
            }
            // An answer from the address we sent to means the server ignored the change
            // asked for: keep waiting rather than misread it.
            Test::FilteringII if from.ip() != self.server.ip() => {
                self.partial.filtering = Behaviour::EndpointIndependent;
                self.start_hairpin(cx);
            }
            Test::FilteringIII if from.port() != self.server.port() => {
                self.partial.filtering = Behaviour::AddressDependent;
                self.start_hairpin(cx);
            }
            Test::HairpinBinding => match mapped {
                Some(m) => self.hairpin_probe(cx, sock, m),
                None => self.finish(cx),
            },
            _ => {}
        }
    }

    fn after_mapping_i(
        &mut self,
        cx: &mut Ctx<'_>,
        mapped: Option<SocketAddr>,
        other: Option<SocketAddr>,
    ) {
        let (Some(mapped), Some((_, local))) = (mapped, self.main) else {
            return self.fail(cx, "test I answer lacks a mapped address");
        };
        let Some(other) = other else {
            return self.fail(cx, "server gives no OTHER-ADDRESS (no RFC 5780 support)");
        };
        self.other = Some(other);
        self.mapped[0] = Some(mapped);
        self.partial.mapped = mapped;
        self.partial.nat = mapped != local;
        self.partial.port_preserved = mapped.port() == local.port();
        if !self.partial.nat {
            return self.start_filtering(cx);
        }
        let Some((main, _)) = self.main else { return };
        self.launch(
            cx,
            Test::MappingII,
            vec![(main, SocketAddr::new(other.ip(), self.server.port()))],
            None,
        );
    }

    fn on_timeout(&mut self, cx: &mut Ctx<'_>, test: Test) {
        match test {
            Test::MappingI => {
                self.partial.udp_blocked = true;
                self.partial.nat = true;
                self.partial.mapping = Behaviour::AddressAndPortDependent;
                self.partial.filtering = Behaviour::AddressAndPortDependent;
                self.finish(cx);
            }
            Test::MappingII | Test::MappingIII => self.fail(cx, &format!("{test:?} timed out")),
            Test::FilteringII => match self.filter_sock {
                Some(s) => self.launch(
                    cx,
                    Test::FilteringIII,
                    vec![(s, self.server)],
                    Some((false, true)),
                ),
                None => self.fail(cx, "no socket"),
            },
            Test::FilteringIII => {
                self.partial.filtering = Behaviour::AddressAndPortDependent;
                self.start_hairpin(cx);
            }
            Test::HairpinBinding | Test::Hairpin => {
                self.partial.hairpin = false;
                self.finish(cx);
            }
        }
    }

    fn finish(&mut self, cx: &mut Ctx<'_>) {
        let r = self.partial.clone();
        let line = if r.udp_blocked {
            "nat-discovery udp blocked".to_string()
        } else {
            let kind = NatType {
                mapping: r.mapping,
                filtering: r.filtering,
            };
            format!(
                "nat-discovery nat={} type={kind} hairpin={} port_preserved={} mapped={}",
                r.nat, r.hairpin, r.port_preserved, r.mapped
            )
        };
        cx.trace(&line);
        self.result = Some(r);
        self.stop(cx);
    }

    fn fail(&mut self, cx: &mut Ctx<'_>, why: &str) {
        cx.trace(&format!("nat-discovery failed: {why}"));
        self.error = Some(why.to_string());
        self.stop(cx);
    }

    fn stop(&mut self, cx: &mut Ctx<'_>) {
        self.finished = true;
        self.probe = None;
        for s in std::mem::take(&mut self.socks) {
            cx.udp_close(s);
        }
    }
}

fn send_all(cx: &mut Ctx<'_>, probe: &Probe) {
    for &(sock, to) in &probe.targets {
        let _ = cx.udp_send(sock, to, &probe.bytes);
    }
}

impl App for NatDiscovery {
    fn start(&mut self, cx: &mut Ctx<'_>) {
        self.start_mapping(cx);
    }

    fn on_udp(
        &mut self,
        cx: &mut Ctx<'_>,
        sock: SockId,
        from: SocketAddr,
        _to: SocketAddr,
        data: &[u8],
    ) {
        let Some(probe) = &self.probe else { return };
        let Ok(msg) = Message::decode(data) else {
            return;
        };
        if msg.txid != probe.txid || msg.method != Method::Binding {
            return;
        }
        let test = probe.test;
        if test == Test::Hairpin {
            if msg.class == Class::Request {
                self.partial.hairpin = true;
                self.finish(cx);
            }
            return;
        }
        let answered_on = probe.targets.first().map(|t| t.0);
        if msg.class != Class::Request && answered_on == Some(sock) {
            self.on_answer(cx, test, sock, from, &msg);
        }
    }

    fn on_timer(&mut self, cx: &mut Ctx<'_>, token: u64) {
        let Some(probe) = self.probe.clone().filter(|p| p.serial == token >> 8) else {
            return;
        };
        let tick = token & 0xff;
        if tick >= TIMEOUT_TICKS {
            return self.on_timeout(cx, probe.test);
        }
        if tick < SENDS {
            send_all(cx, &probe);
        }
        cx.set_timer(INTERVAL, probe.serial << 8 | (tick + 1));
    }

    crate::app_any!();
}
