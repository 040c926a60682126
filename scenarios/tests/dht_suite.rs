//! The `dht` suite: our OpenDHT-compatible node on LANs, behind every NAT type, through
//! a VPN, over Tor (where plain UDP must fail), under churn and a flood, at 1,000 nodes.

mod common;

#[test]
fn every_dht_scenario_passes() {
    let report = common::run_suite_all_passing("dht");
    assert!(report.scenarios.len() >= 16);
    let scale = report
        .scenarios
        .iter()
        .find(|s| s.name == "dht/scale-1000")
        .expect("the 1,000-node case ran");
    assert!(
        scale
            .series
            .iter()
            .any(|s| s.chart == "DHT get latency" && s.points.len() >= 990),
        "latency plotted for every get"
    );
}
