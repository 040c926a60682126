//! The `netsim` suite proves the simulator is faithful. These tests run it, check that
//! every seed replays byte for byte, and show that each check fails when the model it
//! relies on is deliberately broken.

mod common;

use netsim::{NatType, Sabotage, UnsolicitedSyn};
use scenarios::checks::{self, Outcome};
use scenarios::world::{BuildOpts, World};
use scenarios::{runner, steps, Case};
use std::time::Duration;

fn case(id: &str) -> Case {
    let cases = runner::select(&[id.to_string()]).expect("suite loads");
    cases
        .into_iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("no case {id}"))
}

/// Build and run a case, letting `tamper` break the world first; return the checks.
fn run_with(id: &str, seed: u64, sabotage: Sabotage, tamper: impl FnOnce(&mut World)) -> Outcome {
    let c = case(id);
    let mut w = World::build(
        &c,
        seed,
        &BuildOpts {
            sabotage,
            ..Default::default()
        },
    )
    .expect("builds");
    tamper(&mut w);
    steps::run(&mut w, &c.spec.step).expect("runs");
    let mut out = Outcome::default();
    for spec in &c.spec.check {
        checks::evaluate(&w, spec, &mut out);
    }
    out
}

fn failed(out: &Outcome, what: &str) -> bool {
    let matching: Vec<_> = out.checks.iter().filter(|c| c.what == what).collect();
    assert!(
        !matching.is_empty(),
        "no `{what}` check ran: {:?}",
        out.checks
    );
    matching.iter().any(|c| !c.passed)
}

fn all_pass(out: &Outcome) {
    for c in &out.checks {
        assert!(c.passed, "{}: {}", c.description, c.detail);
    }
}

#[test]
fn every_netsim_scenario_passes() {
    let report = common::run_suite_all_passing("netsim");
    assert!(
        report.scenarios.len() >= 150,
        "the suite has {} cases",
        report.scenarios.len()
    );
}

#[test]
fn the_same_seed_gives_a_byte_identical_trace() {
    let ids = [
        "netsim/faults",
        "netsim/hole-punch[a=eim-apdf,b=apdm-eif]",
        "netsim/tcp-punch[a=eim-apdf,b=eim-adf]",
        "netsim/tor",
    ];
    let build = BuildOpts {
        keep_trace: true,
        ..Default::default()
    };
    for id in ids {
        let c = case(id);
        let mut hashes = std::collections::BTreeSet::new();
        for seed in 1..=20 {
            let a = runner::run_case(&c, seed, &build);
            let b = runner::run_case(&c, seed, &build);
            assert_eq!(a.result.trace_hash, b.result.trace_hash, "{id} seed {seed}");
            assert_eq!(a.trace, b.trace, "{id} seed {seed}: trace text");
            hashes.insert(a.result.trace_hash);
        }
        // Seeds matter: lossy, jittery links draw differently for different seeds.
        assert!(
            hashes.len() > 10,
            "{id}: only {} distinct traces over 20 seeds",
            hashes.len()
        );
    }
}

#[test]
fn determinism_check_fails_with_an_unseeded_random_source() {
    let c = case("netsim/faults");
    let broken = BuildOpts {
        sabotage: Sabotage {
            unseeded_jitter: true,
            ..Default::default()
        },
        ..Default::default()
    };
    let r = runner::run_case(&c, 3, &broken);
    let det = r
        .result
        .checks
        .iter()
        .find(|c| c.what == "deterministic")
        .expect("check ran");
    assert!(!det.passed, "{}", det.detail);
    let ok = runner::run_case(&c, 3, &BuildOpts::default());
    assert!(ok.result.passed, "{:?}", ok.result.checks);
}

#[test]
fn nat_classification_notices_a_box_that_filters_differently() {
    let id = "netsim/nat-discovery[type=eim-adf,hairpin=true]";
    all_pass(&run_with(id, 1, Sabotage::default(), |_| {}));
    let out = run_with(id, 1, Sabotage::default(), |w| {
        let nat = w.node("home").unwrap();
        w.sim.nat_mut(nat).unwrap().table.actual_override =
            Some("eim-apdf".parse::<NatType>().unwrap());
    });
    assert!(failed(&out, "nat_type"));
}

#[test]
fn nat_classification_notices_a_box_that_maps_differently() {
    let id = "netsim/nat-discovery[type=adm-eif,hairpin=false]";
    let out = run_with(id, 1, Sabotage::default(), |w| {
        let nat = w.node("home").unwrap();
        w.sim.nat_mut(nat).unwrap().table.actual_override =
            Some("apdm-eif".parse::<NatType>().unwrap());
    });
    assert!(failed(&out, "nat_type"));
}

#[test]
fn nat_classification_notices_hairpinning_that_is_not_there() {
    let id = "netsim/nat-discovery[type=eim-eif,hairpin=true]";
    let out = run_with(id, 1, Sabotage::default(), |w| {
        let nat = w.node("home").unwrap();
        w.sim.nat_mut(nat).unwrap().table.actual_hairpin = Some(false);
    });
    assert!(failed(&out, "nat_type"));
}

#[test]
fn hole_punching_check_notices_a_filter_the_oracle_did_not_expect() {
    // eim-apdf against eim-adf punches (srflx); if B really filters by port and A's
    // probes come from a new binding each time, it must not.
    let id = "netsim/hole-punch[a=apdm-apdf,b=eim-adf]";
    all_pass(&run_with(id, 1, Sabotage::default(), |_| {}));
    let out = run_with(id, 1, Sabotage::default(), |w| {
        let nat = w.node("nat-b").unwrap();
        w.sim.nat_mut(nat).unwrap().table.actual_override =
            Some("eim-apdf".parse::<NatType>().unwrap());
    });
    assert!(failed(&out, "path"));
}

/// Cells where the oracle predicts a simultaneous open and a passive srflx path.
const TCP_SO: &str = "netsim/tcp-punch[a=eim-apdf,b=eim-adf]";
const TCP_SRFLX: &str = "netsim/tcp-punch[a=eim-eif,b=apdm-apdf]";

#[test]
fn tcp_punch_check_notices_a_nat_that_forgets_its_tcp_mappings() {
    for id in [TCP_SO, TCP_SRFLX] {
        all_pass(&run_with(id, 1, Sabotage::default(), |_| {}));
        let out = run_with(id, 1, Sabotage::default(), |w| {
            let nat = w.node("nat-a").unwrap();
            w.sim.nat_mut(nat).unwrap().table.actual_tcp_lifetime = Some(Duration::ZERO);
        });
        assert!(failed(&out, "tcp_punch"), "{id}");
    }
}

#[test]
fn tcp_punch_check_notices_nats_that_answer_unsolicited_syns_with_rst() {
    let out = run_with(TCP_SO, 1, Sabotage::default(), |w| {
        for n in ["nat-a", "nat-b"] {
            let nat = w.node(n).unwrap();
            w.sim.nat_mut(nat).unwrap().table.actual_unsolicited_syn = Some(UnsolicitedSyn::Rst);
        }
    });
    assert!(failed(&out, "tcp_punch"));
    // A passive srflx path needs no unsolicited SYN to be dropped: it still works.
    all_pass(&run_with(TCP_SRFLX, 1, Sabotage::default(), |w| {
        for n in ["nat-a", "nat-b"] {
            let nat = w.node(n).unwrap();
            w.sim.nat_mut(nat).unwrap().table.actual_unsolicited_syn = Some(UnsolicitedSyn::Rst);
        }
    }));
}

#[test]
fn tcp_punch_check_notices_a_tcp_without_simultaneous_open() {
    let no_so = Sabotage {
        tcp_no_simultaneous_open: true,
        ..Default::default()
    };
    assert!(failed(
        &run_with(TCP_SO, 1, no_so.clone(), |_| {}),
        "tcp_punch"
    ));
    all_pass(&run_with(TCP_SRFLX, 1, no_so, |_| {}));
}

#[test]
fn tcp_punch_check_notices_a_filter_the_oracle_did_not_expect() {
    let out = run_with(TCP_SRFLX, 1, Sabotage::default(), |w| {
        let nat = w.node("nat-a").unwrap();
        w.sim.nat_mut(nat).unwrap().table.actual_override =
            Some("eim-apdf".parse::<NatType>().unwrap());
    });
    assert!(failed(&out, "tcp_punch"));
}

#[test]
fn relay_check_notices_a_turn_server_that_drops_data() {
    let id = "netsim/hole-punch[a=apdm-apdf,b=apdm-apdf]";
    all_pass(&run_with(id, 1, Sabotage::default(), |_| {}));
    let out = run_with(id, 1, Sabotage::default(), |w| {
        let a = w.actor("turn", "turn-server").unwrap().clone();
        w.sim
            .app_mut::<netsim::apps::turn::TurnServer>(a.node, a.app)
            .unwrap()
            .config
            .drop_data = true;
    });
    assert!(failed(&out, "relay"));
    assert!(failed(&out, "path"));
}

#[test]
fn tor_checks_notice_udp_leaking_and_the_real_address_leaking() {
    all_pass(&run_with("netsim/tor", 1, Sabotage::default(), |_| {}));
    let udp = run_with(
        "netsim/tor",
        1,
        Sabotage {
            tor_forwards_udp: true,
            ..Default::default()
        },
        |_| {},
    );
    assert!(failed(&udp, "udp_blocked"));
    let leak = run_with(
        "netsim/tor",
        1,
        Sabotage {
            tunnel_leaks_source: true,
            ..Default::default()
        },
        |_| {},
    );
    assert!(failed(&leak, "peer_address"));
    assert!(failed(&leak, "never_sees"));
}

#[test]
fn vpn_checks_notice_the_real_address_leaking() {
    all_pass(&run_with("netsim/vpn", 1, Sabotage::default(), |_| {}));
    let leak = run_with(
        "netsim/vpn",
        1,
        Sabotage {
            tunnel_leaks_source: true,
            ..Default::default()
        },
        |_| {},
    );
    assert!(failed(&leak, "never_sees"));
    assert!(failed(&leak, "peer_address"));
}

#[test]
fn multicast_check_notices_multicast_escaping_the_lan() {
    all_pass(&run_with(
        "netsim/lan-multicast",
        1,
        Sabotage::default(),
        |_| {},
    ));
    let out = run_with(
        "netsim/lan-multicast",
        1,
        Sabotage {
            multicast_escapes_lan: true,
            ..Default::default()
        },
        |_| {},
    );
    assert!(failed(&out, "multicast"));
}

#[test]
fn bandwidth_checks_notice_a_wrong_rate_and_an_unbounded_queue() {
    all_pass(&run_with(
        "netsim/bandwidth",
        1,
        Sabotage::default(),
        |_| {},
    ));
    let fast = run_with(
        "netsim/bandwidth",
        1,
        Sabotage {
            bandwidth_error: 1.05,
            ..Default::default()
        },
        |_| {},
    );
    assert!(failed(&fast, "goodput"));
    let deep = run_with(
        "netsim/bandwidth",
        1,
        Sabotage {
            unbounded_queues: true,
            ..Default::default()
        },
        |_| {},
    );
    assert!(failed(&deep, "queue_drops"));
}

#[test]
fn a_broken_scenario_file_is_a_clear_error_not_a_panic() {
    let bad = "[scenario]\nname = \"x\"\nduration = \"1s\"\n[[host]]\nname = \"a\"\nbehind = \"nowhere\"\n[[check]]\nwhat = \"udp_echo\"\nhost = \"a\"\n";
    let cases = scenarios::expand::cases("t", "t.toml", bad).unwrap();
    let r = runner::run_case(&cases[0], 1, &BuildOpts::default());
    assert!(!r.result.passed);
    let e = r.result.error.expect("an error");
    assert!(e.contains("nowhere"), "{e}");
}
