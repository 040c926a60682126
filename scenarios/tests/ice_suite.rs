//! The `ice` suite: our Device (request over the DHT, ICE-TCP, TLS, the multiplexed
//! socket, the `sip` channel, the DHT `ImMessage` fallback) end to end on netsim. Each
//! suite file runs with every check passing; then each check is shown to fail when its
//! model is broken (an agent without simultaneous-open candidates, one whose STUN server
//! does not answer (no server-reflexive candidates), a device that refuses non-contacts, a
//! TURN server that is not there, an expectation forced wrong).

mod common;

use scenarios::checks::{self, Outcome};
use scenarios::world::{BuildOpts, World};
use scenarios::{runner, steps, Case};

fn case(id: &str) -> Case {
    runner::select(&[id.to_string()])
        .expect("suite loads")
        .into_iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("no case {id}"))
}

/// Runs `id` with seed 1 after `edit` changed its scenario; returns the checks.
fn run_edited(id: &str, edit: impl FnOnce(&mut Case)) -> Outcome {
    let mut c = case(id);
    edit(&mut c);
    let mut w = World::build(&c, 1, &BuildOpts::default()).expect("builds");
    steps::run(&mut w, &c.spec.step).expect("runs");
    let mut out = Outcome::default();
    for spec in &c.spec.check {
        checks::evaluate(&w, spec, &mut out);
    }
    out
}

/// Sets `key = value` on the `dht-node` actors of alice and bob.
fn on_devices(c: &mut Case, key: &str, value: Option<toml::Value>) {
    for a in c.spec.actor.iter_mut() {
        if a.run == "dht-node" && (a.host == "alice" || a.host == "bob") {
            match &value {
                Some(v) => a.params.insert(key.into(), v.clone()),
                None => a.params.remove(key),
            };
        }
    }
}

/// Sets `key = value` on the checks named `what`.
fn on_check(c: &mut Case, what: &str, key: &str, value: &str) {
    for ch in c.spec.check.iter_mut().filter(|ch| ch.what == what) {
        ch.params.insert(key.into(), value.into());
    }
}

fn check<'a>(out: &'a Outcome, what: &str) -> &'a reports::CheckResult {
    out.checks
        .iter()
        .find(|c| c.what == what)
        .unwrap_or_else(|| panic!("no `{what}` check ran: {:?}", out.checks))
}

fn passes(out: &Outcome, what: &str) -> bool {
    check(out, what).passed
}

// ---- every suite file passes -----------------------------------------------------------

#[test]
fn nat_matrix_passes_and_plots_set_up_times() {
    let report = common::run_suite_all_passing("ice/nat-matrix");
    assert_eq!(report.scenarios.len(), 100);
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    for s in &report.scenarios {
        for w in s.summary.split(", ").filter(|w| w.starts_with("ice ")) {
            *kinds.entry(w.to_string()).or_default() += 1;
        }
    }
    // Every kind of direct TCP path shows up somewhere, and so does no path at all.
    for k in ["ice host", "ice srflx", "ice so", "ice none"] {
        assert!(kinds.contains_key(k), "{k} never happens: {kinds:?}");
    }
    let timed = report
        .scenarios
        .iter()
        .filter(|s| {
            s.series
                .iter()
                .any(|se| se.chart == "Connection set-up time" && se.points.len() == 1)
        })
        .count();
    assert_eq!(
        timed,
        100 - kinds["ice none"],
        "a set-up time for every connection"
    );
}

#[test]
fn with_turn_every_cell_connects_through_the_relay_only_where_no_direct_path_exists() {
    let report = common::run_suite_all_passing("ice/nat-matrix-turn");
    assert_eq!(report.scenarios.len(), 100);
    let kinds: Vec<&str> = report
        .scenarios
        .iter()
        .flat_map(|s| s.summary.split(", "))
        .filter(|w| w.starts_with("ice "))
        .collect();
    assert_eq!(kinds.len(), 100, "every cell connects: {kinds:?}");
    let relayed = kinds.iter().filter(|k| **k == "ice relay").count();
    // The check holds each cell to the oracle; here: both kinds happen.
    assert!(relayed > 0 && relayed < 100, "{relayed} relayed");
}

#[test]
fn a_turn_server_that_is_not_there_leaves_the_no_path_cells_unconnected() {
    // Model break: the devices' `turn` host runs no TURN server, so the allocation fails
    // and the cell the relay should save has no path; a direct cell is unaffected.
    let relay_cell = "ice/nat-matrix-turn[a=apdm-apdf,b=apdm-apdf]";
    let ok = run_edited(relay_cell, |_| {});
    assert!(passes(&ok, "ice_connect"), "{:?}", ok.checks);
    assert!(check(&ok, "ice_connect").detail.contains("achieved relay"));
    let broken = run_edited(relay_cell, |c| on_devices(c, "turn", Some("boot".into())));
    let ch = check(&broken, "ice_connect");
    assert!(
        !ch.passed && ch.detail.contains("achieved none"),
        "{}",
        ch.detail
    );
    assert!(!passes(&broken, "message_delivered"));
    let direct = run_edited("ice/nat-matrix-turn[a=eim-eif,b=eim-eif]", |c| {
        on_devices(c, "turn", Some("boot".into()))
    });
    assert!(passes(&direct, "ice_connect"), "{:?}", direct.checks);
}

#[test]
fn cgnat_passes() {
    assert_eq!(
        common::run_suite_all_passing("ice/cgnat").scenarios.len(),
        9
    );
}

#[test]
fn same_lan_passes() {
    let r = common::run_suite_all_passing("ice/same-lan");
    assert_eq!(r.scenarios.len(), 3);
}

#[test]
fn hairpin_passes() {
    let r = common::run_suite_all_passing("ice/hairpin");
    assert_eq!(r.scenarios.len(), 12);
}

#[test]
fn no_path_passes() {
    let r = common::run_suite_all_passing("ice/no-path");
    assert_eq!(r.scenarios.len(), 1);
}

#[test]
fn vpn_passes() {
    let r = common::run_suite_all_passing("ice/vpn");
    assert_eq!(r.scenarios.len(), 4);
}

#[test]
fn tor_passes() {
    let r = common::run_suite_all_passing("ice/tor");
    assert_eq!(r.scenarios.len(), 1);
}

#[test]
fn the_same_seed_gives_the_same_trace() {
    let build = BuildOpts {
        keep_trace: true,
        ..Default::default()
    };
    for id in ["ice/nat-matrix[a=eim-adf,b=eim-apdf]", "ice/no-path"] {
        let c = case(id);
        let a = runner::run_case(&c, 7, &build);
        let b = runner::run_case(&c, 7, &build);
        assert_eq!(a.result.trace_hash, b.result.trace_hash, "{id}");
        assert_eq!(a.trace, b.trace, "{id}");
        assert!(a.result.passed, "{id}: {:?}", a.result.checks);
    }
}

// ---- each check fails when its model is broken -----------------------------------------

/// Cells the oracle gives to a simultaneous open, or to a server-reflexive path that only
/// the S-O SYN from the listening port opens.
const SO_CELLS: [&str; 2] = [
    "ice/nat-matrix[a=eim-adf,b=eim-apdf]",
    "ice/nat-matrix[a=eim-apdf,b=eim-adf]",
];

#[test]
fn devices_without_so_candidates_miss_the_cells_that_need_them() {
    for id in SO_CELLS {
        assert!(passes(&run_edited(id, |_| {}), "ice_connect"), "{id}");
        let out = run_edited(id, |c| {
            on_devices(c, "tcp_so", Some(false.into()));
        });
        let ch = check(&out, "ice_connect");
        assert!(!ch.passed, "{id} without S-O: {}", ch.detail);
        assert!(ch.detail.contains("achieved none"), "{id}: {}", ch.detail);
    }
}

#[test]
fn devices_without_stun_have_no_server_reflexive_path() {
    // A passive srflx cell: bob's eim-eif NAT admits the SYN to his mapping.
    let id = "ice/nat-matrix[a=apdm-apdf,b=eim-eif]";
    let ok = run_edited(id, |_| {});
    assert!(passes(&ok, "ice_connect"), "{:?}", ok.checks);
    assert!(check(&ok, "ice_connect").detail.contains("achieved srflx"));
    // Their `stun` host runs no STUN server: no server-reflexive candidates.
    let out = run_edited(id, |c| on_devices(c, "stun", Some("boot".into())));
    let ch = check(&out, "ice_connect");
    assert!(!ch.passed, "{}", ch.detail);
    // The text still arrives, through the DHT: the `oracle` expectation (sip) fails.
    assert!(!passes(&out, "message_delivered"));
    let dht = run_edited(id, |c| {
        on_devices(c, "stun", Some("boot".into()));
        on_check(c, "message_delivered", "via", "dht");
    });
    assert!(passes(&dht, "message_delivered"), "{:?}", dht.checks);
}

#[test]
fn a_device_that_refuses_non_contacts_never_connects() {
    let id = "ice/nat-matrix[a=none,b=none]";
    let out = run_edited(id, |c| {
        for a in c.spec.actor.iter_mut().filter(|a| a.host == "bob") {
            a.params.insert("contacts_only".into(), true.into());
        }
    });
    let ch = check(&out, "ice_connect");
    assert!(!ch.passed, "{}", ch.detail);
    assert!(
        !ch.detail.contains("refused 0/0"),
        "bob counts the refusal: {}",
        ch.detail
    );
}

#[test]
fn a_wrong_expectation_fails() {
    let srflx = "ice/nat-matrix[a=eim-eif,b=eim-apdf]";
    for wrong in ["host", "so", "none"] {
        let out = run_edited(srflx, |c| on_check(c, "ice_connect", "expect", wrong));
        assert!(!passes(&out, "ice_connect"), "expect {wrong}");
    }
    let out = run_edited(srflx, |c| on_check(c, "ice_connect", "expect", "srflx"));
    assert!(passes(&out, "ice_connect"), "{:?}", out.checks);
    // Where the text went over `sip`, `dht` is wrong; on the no-path case, `sip` is.
    let out = run_edited(srflx, |c| on_check(c, "message_delivered", "via", "dht"));
    assert!(!passes(&out, "message_delivered"));
    let out = run_edited("ice/no-path", |c| {
        on_check(c, "message_delivered", "via", "sip");
        on_check(c, "ice_connect", "expect", "host");
    });
    assert!(!passes(&out, "message_delivered"));
    assert!(!passes(&out, "ice_connect"));
}

#[test]
fn a_text_never_sent_is_not_delivered() {
    let out = run_edited("ice/no-path", |c| {
        for a in c.spec.actor.iter_mut().filter(|a| a.host == "alice") {
            a.params.remove("message");
        }
    });
    let ch = check(&out, "message_delivered");
    assert!(
        !ch.passed && ch.detail.starts_with("sent 0"),
        "{}",
        ch.detail
    );
}

/// The exposure audit's model broken: the same alice without her VPN. Bob then learns her
/// home address (her server-reflexive candidate, and the source of her packets), and
/// `never_learns` fails with it in its table; with the VPN it passes (`vpn_passes`).
#[test]
fn without_the_vpn_bob_learns_the_home_address() {
    let id = "ice/vpn[b=eim-eif]";
    let out = run_edited(id, |c| {
        for h in c.spec.host.iter_mut().filter(|h| h.name == "alice") {
            h.via = None;
        }
    });
    let r = check(&out, "never_learns");
    assert!(!r.passed, "{r:?}");
    assert!(r.detail.contains("bob learnt"), "{}", r.detail);
    assert!(r.detail.contains("ICE candidate"), "{}", r.detail);
    let with_vpn = run_edited(id, |_| {});
    assert!(
        passes(&with_vpn, "never_learns"),
        "{:?}",
        check(&with_vpn, "never_learns")
    );
}

#[test]
fn in_the_classic_set_up_the_peer_and_the_dht_node_learn_her_addresses() {
    let r = common::run_suite_all_passing("ice/exposure-classic");
    let t = &r.scenarios[0].tables[0];
    let learnt: Vec<(String, String)> = t
        .rows
        .iter()
        .map(|row| (row[0].text.clone(), row[2].text.clone()))
        .collect();
    // Bob decrypts her LAN (host) and public (srflx) addresses from the candidates.
    assert!(
        learnt
            .iter()
            .filter(|(h, via)| h == "bob" && via.contains("ICE candidate"))
            .count()
            >= 2,
        "{learnt:?}"
    );
    assert!(learnt.iter().any(|(h, _)| h == "boot"), "{learnt:?}");
    // The assertion can fail: behind the VPN, bob learns nothing of her home.
    let out = run_edited("ice/vpn[b=eim-eif]", |c| {
        for ch in c
            .spec
            .check
            .iter_mut()
            .filter(|ch| ch.what == "never_learns")
        {
            ch.params.insert("learns".into(), true.into());
            ch.params.insert("hosts".into(), vec!["bob"].into());
        }
    });
    let ch = check(&out, "never_learns");
    assert!(
        !ch.passed && ch.detail.contains("learnt nothing"),
        "{}",
        ch.detail
    );
}

#[test]
fn a_message_alone_shows_bob_her_addresses_because_it_asks_for_a_channel() {
    let r = common::run_suite_all_passing("ice/exposure-message");
    let rows = &r.scenarios[0].tables[0].rows;
    assert!(
        rows.iter()
            .any(|row| row[0].text == "bob" && row[2].text.contains("ICE candidate")),
        "{rows:?}"
    );
    // The DHT node sees her packets, never her candidates (the request is encrypted).
    assert!(
        rows.iter()
            .filter(|row| row[0].text == "boot")
            .all(|row| row[2].text == "packet source"),
        "{rows:?}"
    );
}

/// Behind Tor the relay is the only path, and Tor is what hides the home address. Model
/// breaks: without a TURN server no connection forms (the text then goes through the
/// proxy's DHT only); without Tor, alice's STUN candidate is her home NAT's address and
/// bob learns it.
#[test]
fn behind_tor_only_the_relay_connects_and_only_tor_hides_the_home_address() {
    let id = "ice/tor";
    let ok = run_edited(id, |_| {});
    for what in ["ice_connect", "message_delivered", "never_learns"] {
        assert!(passes(&ok, what), "{:?}", check(&ok, what));
    }
    assert!(check(&ok, "ice_connect").detail.contains("achieved relay"));
    let no_turn = run_edited(id, |c| on_devices(c, "turn", Some("boot".into())));
    let ch = check(&no_turn, "ice_connect");
    assert!(
        !ch.passed && ch.detail.contains("achieved none"),
        "{}",
        ch.detail
    );
    assert!(!passes(&no_turn, "message_delivered"));
    // The text still arrives: encrypted to bob (his certificate fetched through the
    // proxy), put in his inbox through the proxy, and the receipt back the same way.
    let via_dht = run_edited(id, |c| {
        on_devices(c, "turn", Some("boot".into()));
        on_check(c, "message_delivered", "via", "dht");
    });
    assert!(
        passes(&via_dht, "message_delivered"),
        "{:?}",
        check(&via_dht, "message_delivered")
    );
    let no_tor = run_edited(id, |c| {
        for h in c.spec.host.iter_mut().filter(|h| h.name == "alice") {
            h.via = None;
        }
    });
    let r = check(&no_tor, "never_learns");
    assert!(!r.passed, "{r:?}");
    assert!(r.detail.contains("bob learnt"), "{}", r.detail);
}
