//! RFC 5780 NAT behaviour discovery against the simulator's NATs: every mapping and
//! filtering behaviour, hairpinning, port preservation, nested NATs, loss, and a NAT
//! that secretly behaves unlike its configuration.

use netsim::apps::discovery::{DiscoveryResult, NatDiscovery};
use netsim::apps::stun_server::StunServer;
use netsim::nat::Behaviour;
use netsim::{HostOpts, LinkParams, Loss, NatConfig, NatType, NodeId, Sim, SimConfig};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// A two-address STUN server on the internet; returns its primary address.
fn stun_server(sim: &mut Sim) -> SocketAddr {
    let server = sim.add_host(
        "stun",
        HostOpts {
            extra_addrs: 1,
            ..Default::default()
        },
    );
    sim.add_app(server, || Box::new(StunServer::new(3478, 3479)));
    SocketAddr::new(sim.host(server).unwrap().addrs[0], 3478)
}

fn nat_cfg(kind: NatType, hairpin: bool, port_preservation: bool) -> NatConfig {
    NatConfig {
        kind,
        hairpin,
        port_preservation,
        ..NatConfig::default()
    }
}

fn add_nat(sim: &mut Sim, name: &str, cfg: NatConfig, behind: Option<NodeId>) -> NodeId {
    let (up, down) = LinkParams::preset("wifi").unwrap();
    sim.add_nat(name, cfg, behind, up, down)
}

fn wan(sim: &mut Sim, nat: NodeId) -> IpAddr {
    IpAddr::V4(sim.nat_mut(nat).unwrap().wan)
}

/// Run discovery on `host` and return the finished client.
fn discover(sim: &mut Sim, host: NodeId, server: SocketAddr) -> NatDiscovery {
    let app = sim.add_app(host, move || Box::new(NatDiscovery::new(server)));
    sim.run_for(Duration::from_secs(30));
    let d = sim.app::<NatDiscovery>(host, app).unwrap().clone();
    assert!(d.done(), "discovery finished");
    assert_eq!(d.error, None);
    d
}

/// Discovery from a host behind one NAT with `cfg`, over the host's access link `link`.
fn behind_one(seed: u64, cfg: NatConfig, link: Option<LinkParams>) -> (DiscoveryResult, IpAddr) {
    let mut sim = Sim::new(SimConfig {
        seed,
        ..Default::default()
    });
    let server = stun_server(&mut sim);
    let nat = add_nat(&mut sim, "home", cfg, None);
    let mut opts = HostOpts {
        behind: Some(nat),
        ..Default::default()
    };
    if let Some(l) = link {
        opts.up = l.clone();
        opts.down = l;
    }
    let host = sim.add_host("client", opts);
    let d = discover(&mut sim, host, server);
    (d.result.unwrap(), wan(&mut sim, nat))
}

fn check(r: &DiscoveryResult, kind: NatType, hairpin: bool, wan: IpAddr, what: &str) {
    assert!(!r.udp_blocked, "{what}");
    assert!(r.nat, "{what}");
    assert_eq!(
        (r.mapping, r.filtering),
        (kind.mapping, kind.filtering),
        "{what}: mapping, filtering"
    );
    assert_eq!(r.hairpin, hairpin, "{what}: hairpin");
    assert_eq!(r.mapped.ip(), wan, "{what}: mapped address");
}

#[test]
fn classifies_every_nat_type_with_and_without_hairpin() {
    for (i, kind) in NatType::all().enumerate() {
        for hairpin in [false, true] {
            let (r, wan) = behind_one(100 + i as u64, nat_cfg(kind, hairpin, true), None);
            let what = format!("{kind} hairpin={hairpin}");
            check(&r, kind, hairpin, wan, &what);
            assert!(r.port_preserved, "{what}");
        }
    }
}

#[test]
fn reports_ports_that_are_not_preserved() {
    for (i, kind) in NatType::all().enumerate() {
        let (r, wan) = behind_one(200 + i as u64, nat_cfg(kind, false, false), None);
        let what = format!("{kind} without port preservation");
        check(&r, kind, false, wan, &what);
        assert!(!r.port_preserved, "{what}");
    }
}

#[test]
fn hairpin_without_port_preservation_is_seen_when_a_filter_can_be_opened() {
    // With random ports, hairpinning shows only when one of our mappings can be made to
    // admit the other's hairpinned packet: the mapping is endpoint-independent (the
    // first socket sends to the second's mapped address first) or the filter is.
    // Address(-and-port)-dependent mapping with a dependent filter hides it: the
    // mapping the server saw never sent to the NAT's own address.
    for (i, kind) in NatType::all().enumerate() {
        let (r, _) = behind_one(300 + i as u64, nat_cfg(kind, true, false), None);
        let visible = kind.mapping == Behaviour::EndpointIndependent
            || kind.filtering == Behaviour::EndpointIndependent;
        assert_eq!(r.hairpin, visible, "{kind}");
    }
}

#[test]
fn public_host_has_no_nat() {
    let mut sim = Sim::new(SimConfig {
        seed: 5,
        ..Default::default()
    });
    let server = stun_server(&mut sim);
    let host = sim.add_host("public", HostOpts::default());
    let d = discover(&mut sim, host, server);
    let r = d.result.clone().unwrap();
    assert!(!r.nat);
    assert!(!r.udp_blocked);
    assert_eq!(r.mapped.ip(), sim.host(host).unwrap().addrs[0]);
    assert!(r.port_preserved);
    let open = NatType {
        mapping: Behaviour::EndpointIndependent,
        filtering: Behaviour::EndpointIndependent,
    };
    assert_eq!(d.nat_type(), Some(open));
}

#[test]
fn nested_nats_compose() {
    // Expected hairpin: the outer (carrier) NAT's setting. The mapped address belongs to
    // the outer NAT, so only it can loop a packet back; the inner NAT forwards packets
    // for that address upward like any other. The client opens every filter on the way
    // first, so the inner NAT's filtering does not hide a hairpin the outer one does.
    let kinds: Vec<NatType> = NatType::all().collect();
    for (i, &inner_kind) in kinds.iter().enumerate() {
        for (j, &outer_kind) in kinds.iter().enumerate() {
            let outer_hairpin = (i + j) % 2 == 0;
            let mut sim = Sim::new(SimConfig {
                seed: 400 + (i * 9 + j) as u64,
                ..Default::default()
            });
            let server = stun_server(&mut sim);
            let outer = add_nat(
                &mut sim,
                "cgnat",
                nat_cfg(outer_kind, outer_hairpin, true),
                None,
            );
            let inner = add_nat(
                &mut sim,
                "home",
                nat_cfg(inner_kind, !outer_hairpin, true),
                Some(outer),
            );
            let host = sim.add_host(
                "client",
                HostOpts {
                    behind: Some(inner),
                    ..Default::default()
                },
            );
            let d = discover(&mut sim, host, server);
            let what = format!("{inner_kind} behind {outer_kind}, outer hairpin={outer_hairpin}");
            let outer_wan = wan(&mut sim, outer);
            check(
                d.result.as_ref().unwrap(),
                inner_kind.compose(outer_kind),
                outer_hairpin,
                outer_wan,
                &what,
            );
            assert_eq!(d.nat_type(), Some(inner_kind.compose(outer_kind)), "{what}");
        }
    }
}

#[test]
fn lossy_access_link_still_classifies() {
    let lossy = LinkParams {
        loss: Loss::Random { p: 0.1 },
        ..LinkParams::preset("wifi").unwrap().0
    };
    for seed in 1..=4u64 {
        for (i, kind) in NatType::all().enumerate() {
            let hairpin = i % 2 == 0;
            let (r, wan) = behind_one(
                seed * 1000 + i as u64,
                nat_cfg(kind, hairpin, true),
                Some(lossy.clone()),
            );
            check(&r, kind, hairpin, wan, &format!("seed {seed}: {kind}"));
        }
    }
}

#[test]
fn classifier_reads_the_real_behaviour_not_the_configuration() {
    // The box is configured endpoint-independent but really runs other behaviours: the
    // classification follows what the box does, so it differs from the configuration.
    let config: NatType = "eim-eif".parse().unwrap();
    for actual in ["eim-apdf", "apdm-adf", "adm-eif"] {
        let actual: NatType = actual.parse().unwrap();
        let mut sim = Sim::new(SimConfig {
            seed: 77,
            ..Default::default()
        });
        let server = stun_server(&mut sim);
        let nat = add_nat(&mut sim, "liar", nat_cfg(config, false, true), None);
        sim.nat_mut(nat).unwrap().table.actual_override = Some(actual);
        let host = sim.add_host(
            "client",
            HostOpts {
                behind: Some(nat),
                ..Default::default()
            },
        );
        let d = discover(&mut sim, host, server);
        assert_eq!(d.nat_type(), Some(actual));
        assert_ne!(
            d.nat_type(),
            Some(config),
            "a check comparing with the config would fail"
        );
    }
}

#[test]
fn blocked_udp_and_servers_without_rfc5780() {
    // No STUN server at all: test I times out.
    let mut sim = Sim::new(SimConfig {
        seed: 3,
        ..Default::default()
    });
    let nowhere = sim.add_host("nowhere", HostOpts::default());
    let to = SocketAddr::new(sim.host(nowhere).unwrap().addrs[0], 3478);
    let host = sim.add_host("client", HostOpts::default());
    let d = discover(&mut sim, host, to);
    assert!(d.result.as_ref().unwrap().udp_blocked);
    assert_eq!(d.nat_type(), None);

    // A single-address server gives no OTHER-ADDRESS: discovery stops with an error.
    let mut sim = Sim::new(SimConfig {
        seed: 4,
        ..Default::default()
    });
    let server = sim.add_host("stun", HostOpts::default());
    sim.add_app(server, || Box::new(StunServer::new(3478, 3479)));
    let to = SocketAddr::new(sim.host(server).unwrap().addrs[0], 3478);
    let host = sim.add_host("client", HostOpts::default());
    let app = sim.add_app(host, move || Box::new(NatDiscovery::new(to)));
    sim.run_for(Duration::from_secs(30));
    let d = sim.app::<NatDiscovery>(host, app).unwrap();
    assert!(d.done());
    assert!(d.result.is_none());
    assert!(d.error.as_deref().unwrap_or("").contains("OTHER-ADDRESS"));
}

#[test]
fn discovery_is_deterministic_and_traced() {
    let run = || {
        let mut sim = Sim::new(SimConfig {
            seed: 9,
            ..Default::default()
        });
        let server = stun_server(&mut sim);
        let nat = add_nat(
            &mut sim,
            "home",
            nat_cfg("adm-apdf".parse().unwrap(), true, true),
            None,
        );
        let host = sim.add_host(
            "client",
            HostOpts {
                behind: Some(nat),
                ..Default::default()
            },
        );
        discover(&mut sim, host, server);
        assert!(sim
            .trace_text()
            .unwrap()
            .contains("nat-discovery nat=true type=adm-apdf hairpin=true"));
        sim.trace_hash()
    };
    assert_eq!(run(), run());
}
