//! The `identity` suite: name registration races, a name server that restarts from its
//! disk, and a device behind Tor. The checks must catch a server that forgets.

mod common;

use scenarios::checks::{self, Outcome};
use scenarios::world::{BuildOpts, World};
use scenarios::{runner, steps};

#[test]
fn every_identity_scenario_passes() {
    let report = common::run_suite_all_passing("identity");
    assert!(report.scenarios.len() >= 2);
}

/// Run `id` with seed 1 after `tamper` changed its scenario; the checks' results.
fn run_case(id: &str, tamper: impl FnOnce(&mut scenarios::Case)) -> Outcome {
    let mut c = runner::select(&[id.to_string()])
        .expect("suite loads")
        .into_iter()
        .next()
        .expect("the case");
    tamper(&mut c);
    let mut w = World::build(&c, 1, &BuildOpts::default()).expect("builds");
    steps::run(&mut w, &c.spec.step).expect("runs");
    let mut out = Outcome::default();
    for spec in &c.spec.check {
        checks::evaluate(&w, spec, &mut out);
    }
    out
}

/// The `names` case with the name server's `persist` set as given.
fn names_with_persist(persist: bool) -> Outcome {
    run_case("identity/names", |c| {
        for a in c.spec.actor.iter_mut().filter(|a| a.run == "name-server") {
            a.params
                .insert("persist".into(), toml::Value::Boolean(persist));
        }
    })
}

#[test]
fn a_name_server_that_forgets_on_restart_fails_the_owner_check() {
    let owner = |out: &Outcome| {
        out.checks
            .iter()
            .find(|c| c.what == "name_owner")
            .map(|c| (c.passed, c.detail.clone()))
            .expect("the check ran")
    };
    let (kept, detail) = owner(&names_with_persist(true));
    assert!(kept, "{detail}");
    let (forgot, detail) = owner(&names_with_persist(false));
    assert!(!forgot, "lookups after the restart must fail: {detail}");
    assert!(detail.contains("replayed 0"), "{detail}");
}

#[test]
fn without_a_proxy_the_device_behind_tor_is_not_found() {
    let out = run_case("identity/dht-via-proxy", |c| {
        for a in c.spec.actor.iter_mut().filter(|a| a.run == "dht-node") {
            a.params.remove("proxy_port");
        }
    });
    let passed = |what: &str| out.checks.iter().find(|c| c.what == what).map(|c| c.passed);
    assert_eq!(passed("proxy_put"), Some(false), "{:?}", out.checks);
    assert_eq!(passed("dht_gets"), Some(false), "{:?}", out.checks);
    assert_eq!(passed("never_sees"), Some(true));
}

/// `identity/presence-via-proxy` with the honest device behind Tor replaced by a forging
/// one (`jami-device`, through the same proxy) whose announcement is spoiled as `forge`;
/// it tracks nobody, so the check of its own view goes.
fn presence_forged(forge: &str) -> Outcome {
    run_case("identity/presence-via-proxy", |c| {
        for a in c.spec.actor.iter_mut().filter(|a| a.host == "hidden") {
            a.run = "jami-device".into();
            let proxy = a.params["proxy"].clone();
            a.params.clear();
            a.params.insert("proxy".into(), proxy);
            a.params.insert("announce_at".into(), "15s".into());
            a.params
                .insert("forge".into(), toml::Value::String(forge.into()));
        }
        c.spec.check.retain(|ch| {
            let hosts = ch.params.get("hosts").and_then(|h| h.as_array());
            !(ch.what == "online"
                && hosts.is_some_and(|h| h.len() == 1 && h[0].as_str() == Some("hidden")))
        });
    })
}

/// The `online` checks' results (passed, detail).
fn online_checks(out: &Outcome) -> Vec<(bool, String)> {
    out.checks
        .iter()
        .filter(|c| c.what == "online")
        .map(|c| (c.passed, c.detail.clone()))
        .collect()
}

#[test]
fn forged_presence_is_refused_by_every_watcher() {
    // Announcement signed by another account; device issued by another account; device
    // revoked by its own account (CRL at the account id): never online, refusal counted.
    for (forge, reason) in [
        ("signer", "WrongAccount"),
        ("issuer", "NotIssuedByAccount"),
        ("revoked", "Revoked"),
    ] {
        let out = presence_forged(forge);
        let all = online_checks(&out);
        let online: Vec<_> = all
            .into_iter()
            .filter(|(_, d)| d.contains("sees hidden"))
            .collect();
        assert_eq!(online.len(), 2, "{forge}: {:?}", out.checks);
        for (passed, detail) in online {
            assert!(!passed, "{forge}: must not be online: {detail}");
            // A revocation may land after the device was verified: then it goes offline.
            let never = detail.contains("online at never");
            assert!(
                never || (forge == "revoked" && !detail.contains("offline at never")),
                "{forge}: {detail}"
            );
            assert!(
                detail.contains(reason),
                "{forge}: {reason} counted: {detail}"
            );
        }
        let announced = out.checks.iter().find(|c| c.what == "jami_announced");
        assert_eq!(
            announced.map(|c| c.passed),
            Some(true),
            "the proxy took the puts: {announced:?}"
        );
    }
}

#[test]
fn without_a_proxy_the_device_behind_tor_is_never_online() {
    let out = run_case("identity/presence-via-proxy", |c| {
        for a in c.spec.actor.iter_mut().filter(|a| a.run == "dht-node") {
            a.params.remove("proxy_port");
        }
    });
    for (passed, detail) in online_checks(&out) {
        assert!(!passed, "{detail}");
        assert!(detail.contains("online at never"), "{detail}");
    }
    let announced = out.checks.iter().find(|c| c.what == "jami_announced");
    assert_eq!(announced.map(|c| c.passed), Some(false));
}
