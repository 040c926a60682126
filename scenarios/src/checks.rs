//! Checks: what a scenario asserts once its timeline has run. Each produces a pass/fail
//! with a detail line a person can act on, and may add a summary word, plots and tables
//! to the report.

use crate::glue::DhtApp;
use crate::model::{CheckSpec, Params};
use crate::world::World;
use anyhow::{anyhow, bail, Result};
use netsim::apps::discovery::NatDiscovery;
use netsim::apps::probe::{Multicast, TcpProbe, UdpProbe};
use netsim::apps::punch::PunchPeer;
use netsim::apps::tcp_punch::TcpPunchPeer;
use netsim::apps::traffic::Sink;
use netsim::link::parse_rate;
use netsim::oracle::{self, PathKind, TcpPath};
use netsim::{NodeKind, SimTime};
use reports::{Cell, CheckResult, Series, SeriesKind, Table};
use std::time::Duration;

pub const CHECK_KINDS: &[&str] = &[
    "nat_type",
    "path",
    "udp_echo",
    "udp_blocked",
    "udp_delivery",
    "tcp_echo",
    "tcp_refused",
    "tcp_path",
    "tcp_punch",
    "peer_address",
    "never_sees",
    "multicast",
    "goodput",
    "queue_drops",
    "deterministic",
    "dht_connected",
    "dht_gets",
    "dht_flood",
    "name_owner",
    "proxy_put",
    "online",
    "jami_announced",
];

/// What the checks of one run produced.
#[derive(Default, Debug)]
pub struct Outcome {
    pub checks: Vec<CheckResult>,
    pub summary: Vec<String>,
    pub series: Vec<Series>,
    pub tables: Vec<Table>,
}

impl Outcome {
    fn push(&mut self, what: &str, description: String, passed: bool, detail: String) {
        self.checks.push(CheckResult {
            what: what.to_string(),
            description,
            passed,
            detail,
        });
    }
}

/// Evaluate one check; a malformed check is a failed check that says why.
pub fn evaluate(w: &World, c: &CheckSpec, out: &mut Outcome) {
    if let Err(e) = eval(w, c, out) {
        out.push(
            &c.what,
            format!("{} (invalid check)", c.what),
            false,
            format!("{e:#}"),
        );
    }
}

fn eval(w: &World, c: &CheckSpec, out: &mut Outcome) -> Result<()> {
    let p = Params::new(format!("check `{}`", c.what), &c.params);
    match c.what.as_str() {
        "nat_type" => nat_type(w, &p, out),
        "path" => path(w, &p, out),
        "tcp_punch" => tcp_punch(w, &p, out),
        "udp_echo" | "udp_blocked" => {
            p.only(&["host"])?;
            let host = p.str("host")?;
            let (_, probe) = w.actor_state::<UdpProbe>(host, "udp-probe")?;
            let want_echo = c.what == "udp_echo";
            let passed = probe.sent > 0
                && if want_echo {
                    probe.echoed > 0
                } else {
                    probe.echoed == 0
                };
            let desc = if want_echo {
                format!("UDP from {host} to {} is echoed", probe.to)
            } else {
                format!("UDP from {host} to {} never arrives", probe.to)
            };
            out.push(
                &c.what,
                desc,
                passed,
                format!("sent {} datagrams, {} echoed", probe.sent, probe.echoed),
            );
            out.summary
                .push(format!("udp {}/{}", probe.echoed, probe.sent));
            Ok(())
        }
        "udp_delivery" => {
            p.only(&["min_ratio"])?;
            let min = p.float("min_ratio", 0.99)?;
            let (mut sent, mut echoed, mut probes) = (0u64, 0u64, 0u64);
            for a in w.actors.iter().filter(|a| a.run == "udp-probe") {
                if let Some(pr) = w.sim.app::<UdpProbe>(a.node, a.app) {
                    sent += pr.sent as u64;
                    echoed += pr.echoed as u64;
                    probes += 1;
                }
            }
            let ratio = if sent == 0 {
                0.0
            } else {
                echoed as f64 / sent as f64
            };
            out.push(
                "udp_delivery",
                format!("at least {:.1}% of UDP probes come back", min * 100.0),
                ratio >= min,
                format!(
                    "{echoed} of {sent} datagrams echoed ({:.2}%) across {probes} probes",
                    ratio * 100.0
                ),
            );
            out.summary.push(format!("{:.2}% echoed", ratio * 100.0));
            Ok(())
        }
        "tcp_echo" | "tcp_refused" => {
            p.only(&["host"])?;
            let host = p.str("host")?;
            let (_, probe) = w.actor_state::<TcpProbe>(host, "tcp-probe")?;
            let detail = format!(
                "connected: {}, echoed {}/{} bytes, reset: {}",
                probe.connected,
                probe.echoed,
                probe.bytes,
                probe.reset.as_deref().unwrap_or("no")
            );
            if c.what == "tcp_echo" {
                let passed = probe.connected && probe.echoed == probe.bytes;
                out.push(
                    &c.what,
                    format!("TCP from {host} to {} carries every byte", probe.to),
                    passed,
                    detail,
                );
                out.summary
                    .push(format!("tcp {}", if passed { "ok" } else { "failed" }));
            } else {
                let passed = !probe.connected && probe.reset.is_some();
                out.push(
                    &c.what,
                    format!("TCP from {host} to {} is refused", probe.to),
                    passed,
                    detail,
                );
            }
            Ok(())
        }
        "tcp_path" => {
            p.only(&["host", "expect"])?;
            let host = p.str("host")?;
            let (a, probe) = w.actor_state::<TcpProbe>(host, "tcp-probe")?;
            let target = w
                .host_at(probe.to.ip())
                .ok_or_else(|| anyhow!("no host has {}", probe.to.ip()))?;
            let predicted = oracle::tcp_reachable(&w.sim, a.node, target);
            let expect = match p.opt_str("expect")?.unwrap_or("oracle") {
                "oracle" => predicted,
                "yes" => true,
                "no" => false,
                x => bail!("`expect` must be oracle, yes or no, not `{x}`"),
            };
            out.push(
                "tcp_path",
                format!(
                    "{host} {} open a TCP connection to {}",
                    if expect { "can" } else { "cannot" },
                    probe.to
                ),
                probe.connected == expect,
                format!(
                    "connected: {}, reset: {}, oracle: {predicted}",
                    probe.connected,
                    probe.reset.as_deref().unwrap_or("no")
                ),
            );
            out.summary.push(format!(
                "{host}: {}",
                if probe.connected {
                    "connects"
                } else {
                    "no path"
                }
            ));
            Ok(())
        }
        "peer_address" => {
            p.only(&["host", "equals"])?;
            let host = p.str("host")?;
            let expect = p.str("equals")?;
            let want = w.addr_of(expect)?;
            let h = w
                .sim
                .host(w.host_node(host)?)
                .ok_or_else(|| anyhow!("not a host"))?;
            let seen: Vec<String> = h.seen_sources.iter().map(|a| a.to_string()).collect();
            let passed = !h.seen_sources.is_empty() && h.seen_sources.iter().all(|a| *a == want);
            out.push(
                "peer_address",
                format!("{host} sees only {expect}'s address {want}"),
                passed,
                format!("source addresses seen by {host}: [{}]", seen.join(", ")),
            );
            Ok(())
        }
        "never_sees" => never_sees(w, &p, out),
        "multicast" => multicast(w, &p, out),
        "goodput" => goodput(w, &p, out),
        "queue_drops" => {
            p.only(&["host", "min"])?;
            let host = p.str("host")?;
            let id = w.node(host)?;
            let link = w
                .sim
                .uplink(id)
                .ok_or_else(|| anyhow!("`{host}` has no link"))?;
            let l = &w.sim.core.links[link];
            let dir = if l.ends[0] == id { 0 } else { 1 };
            let stats = &l.dirs[dir].stats;
            let min = p.int("min", 1)?.max(0) as u64;
            out.push(
                "queue_drops",
                format!("{host}'s uplink queue drops at least {min} packets"),
                stats.queue_drops >= min,
                format!(
                    "{} queue drops of {} packets offered",
                    stats.queue_drops, stats.sent_packets
                ),
            );
            Ok(())
        }
        "deterministic" => Ok(()), // evaluated by the runner, which reruns the case
        "dht_connected" => {
            p.only(&["host", "expect"])?;
            let host = p.str("host")?;
            let (_, app) = w.actor_state::<DhtApp>(host, "dht-node")?;
            let want = p.bool("expect", true)?;
            let got = app.connected_at.is_some();
            out.push(
                "dht_connected",
                format!(
                    "{host} {} the DHT",
                    if want { "joins" } else { "cannot join" }
                ),
                got == want,
                format!(
                    "connected at {:?}; routing table {} nodes",
                    app.connected_at,
                    app.engine().map(|d| d.routing_table().len()).unwrap_or(0)
                ),
            );
            Ok(())
        }
        "dht_gets" => dht_gets(w, &p, out),
        "name_owner" => name_owner(w, &p, out),
        "proxy_put" => {
            p.only(&["host"])?;
            let host = p.str("host")?;
            let (_, app) = w.actor_state::<crate::glue::ProxyPutApp>(host, "proxy-put")?;
            out.push(
                "proxy_put",
                format!("{host} puts its value through the DHT proxy"),
                app.status == Some(200) && app.echoed,
                format!("status {:?}, value echoed: {}", app.status, app.echoed),
            );
            Ok(())
        }
        "online" => online(w, &p, out),
        "jami_announced" => {
            p.only(&["host"])?;
            let host = p.str("host")?;
            let (_, app) = w.actor_state::<crate::jami::JamiDeviceApp>(host, "jami-device")?;
            let got: Vec<String> = app
                .exchanges
                .iter()
                .map(|e| format!("{} {:?} echoed {}", e.what, e.status, e.echoed))
                .collect();
            out.push(
                "jami_announced",
                format!("{host} puts its certificate and device announcement through the proxy"),
                app.announced(),
                got.join("; "),
            );
            Ok(())
        }
        "dht_flood" => {
            p.only(&["host", "flooder", "max_pending", "max_sources"])?;
            let host = p.str("host")?;
            let (_, app) = w.actor_state::<DhtApp>(host, "dht-node")?;
            let (_, flood) =
                w.actor_state::<crate::glue::DhtFlood>(p.str("flooder")?, "dht-flood")?;
            let d = app
                .engine()
                .ok_or_else(|| anyhow!("`{host}` runs no engine"))?;
            let (max_pending, max_sources) = (
                p.int("max_pending", 1000)? as usize,
                p.int("max_sources", 10_000)? as usize,
            );
            let limited = d.stats.rate_limited;
            let bounded = d.pending_requests() <= max_pending && d.tracked_sources() <= max_sources;
            out.push(
                "dht_flood",
                format!("{host} drops a request flood above its rate limit and stays bounded"),
                limited > 0 && flood.answers < flood.sent && bounded,
                format!(
                    "flood sent {} requests, {} answered, {} dropped by the limiter; {} requests pending, {} sources tracked, {} bytes stored",
                    flood.sent,
                    flood.answers,
                    limited,
                    d.pending_requests(),
                    d.tracked_sources(),
                    d.storage().total_bytes()
                ),
            );
            out.summary.push(format!("{limited} dropped"));
            Ok(())
        }
        other => bail!(
            "unknown check `{other}` (known: {})",
            CHECK_KINDS.join(", ")
        ),
    }
}

fn dht_gets(w: &World, p: &Params<'_>, out: &mut Outcome) -> Result<()> {
    p.only(&["hosts", "min_ratio"])?;
    let min = p.float("min_ratio", 0.99)?;
    let only: Vec<&str> = p.strs("hosts")?;
    let (mut total, mut found) = (0usize, 0usize);
    let (mut latencies, mut hops) = (Vec::new(), Vec::new());
    for a in w
        .actors
        .iter()
        .filter(|a| a.run == "dht-node" && (only.is_empty() || only.contains(&a.host.as_str())))
    {
        let Some(app) = w.sim.app::<DhtApp>(a.node, a.app) else {
            continue;
        };
        for g in app.gets.values() {
            total += 1;
            if let Some(t) = g.found_at {
                found += 1;
                latencies.push((0.0, (t - g.started).as_secs_f64() * 1000.0));
                hops.push((0.0, g.hops as f64));
            }
        }
    }
    let ratio = if total == 0 {
        0.0
    } else {
        found as f64 / total as f64
    };
    out.push(
        "dht_gets",
        format!("at least {:.1}% of gets find their value", min * 100.0),
        total > 0 && ratio >= min,
        format!(
            "{found} of {total} gets found the value ({:.2}%)",
            ratio * 100.0
        ),
    );
    out.summary.push(format!("{:.1}% found", ratio * 100.0));
    let mut sorted: Vec<f64> = latencies.iter().map(|p| p.1).collect();
    sorted.sort_by(|a, b| a.total_cmp(b));
    if let Some(median) = sorted.get(sorted.len() / 2) {
        out.summary.push(format!("median {median:.0} ms"));
    }
    out.series.push(Series {
        chart: "DHT get latency".into(),
        label: "time to value".into(),
        kind: SeriesKind::Cdf,
        x_label: "ms".into(),
        y_label: "fraction of gets".into(),
        points: latencies,
    });
    out.series.push(Series {
        chart: "DHT lookup rounds".into(),
        label: "rounds until the value was found".into(),
        kind: SeriesKind::Cdf,
        x_label: "rounds".into(),
        y_label: "fraction of gets".into(),
        points: hops,
    });
    Ok(())
}

fn nat_type(w: &World, p: &Params<'_>, out: &mut Outcome) -> Result<()> {
    p.only(&["host", "expect", "hairpin"])?;
    let host = p.str("host")?;
    let (a, d) = w.actor_state::<NatDiscovery>(host, "nat-discovery")?;
    let expect = p.opt_str("expect")?.unwrap_or("oracle");
    let predicted = oracle::expected_discovery(&w.sim, a.node);
    let (want_type, want_hairpin) = match expect {
        "oracle" => match predicted {
            Some((t, h)) => (Some(t), Some(h)),
            None => (None, None),
        },
        "none" => (None, None),
        s => (Some(s.parse().map_err(|e: String| anyhow!(e))?), None),
    };
    let want_hairpin = match p.opt_str("hairpin")? {
        Some("oracle") | None => want_hairpin,
        Some("yes") => Some(true),
        Some("no") => Some(false),
        Some(x) => bail!("`hairpin` must be oracle, yes or no, not `{x}`"),
    };
    let Some(r) = &d.result else {
        out.push(
            "nat_type",
            format!("{host} classifies its NAT"),
            false,
            "discovery did not finish".into(),
        );
        return Ok(());
    };
    let got = r.nat.then(|| d.nat_type()).flatten();
    let type_ok = got == want_type;
    let hairpin_ok = match want_hairpin {
        Some(h) if r.nat => r.hairpin == h,
        _ => true,
    };
    let show =
        |t: Option<netsim::NatType>| t.map(|t| t.to_string()).unwrap_or_else(|| "no NAT".into());
    out.push(
        "nat_type",
        format!(
            "{host} classifies its NAT as {}{}",
            show(want_type),
            match want_hairpin {
                Some(true) => " with hairpinning",
                Some(false) => " without hairpinning",
                None => "",
            }
        ),
        type_ok && hairpin_ok,
        format!(
            "measured {} hairpin={} port_preserved={} mapped={}",
            show(got),
            r.hairpin,
            r.port_preserved,
            r.mapped
        ),
    );
    out.summary.push(format!(
        "{}{}",
        show(got),
        if r.hairpin { " +hairpin" } else { "" }
    ));
    out.tables.push(Table {
        title: "NAT discovery (RFC 5780)".into(),
        columns: vec![
            "host".into(),
            "configured".into(),
            "measured".into(),
            "hairpin".into(),
            "port preserved".into(),
        ],
        rows: vec![vec![
            Cell::text(host),
            Cell::text(show(want_type)),
            Cell {
                text: show(got),
                status: Some(type_ok),
            },
            Cell {
                text: r.hairpin.to_string(),
                status: Some(hairpin_ok),
            },
            Cell::text(r.port_preserved.to_string()),
        ]],
    });
    Ok(())
}

fn path(w: &World, p: &Params<'_>, out: &mut Outcome) -> Result<()> {
    p.only(&["between", "expect", "relay"])?;
    let between = p.strs("between")?;
    let [a, b] = between[..] else {
        bail!("`between` must name two hosts")
    };
    let (pa, ra) = w.actor_state::<PunchPeer>(a, "punch")?;
    let (pb, rb) = w.actor_state::<PunchPeer>(b, "punch")?;
    let predicted = oracle::udp_path(&w.sim, pa.node, pb.node);
    let expect = match p.opt_str("expect")?.unwrap_or("oracle") {
        "oracle" => predicted,
        "host" => PathKind::Host,
        "srflx" => PathKind::Srflx,
        "relay" => PathKind::Relay,
        "none" => PathKind::None,
        x => bail!("`expect` must be oracle, host, srflx, relay or none, not `{x}`"),
    };
    let direct = ra.achieved().min(rb.achieved());
    let direct = if direct.is_direct() {
        direct
    } else {
        PathKind::None
    };
    let relay_ok = ra.relay_ok && rb.relay_ok;
    let achieved = if direct.is_direct() {
        direct
    } else if relay_ok {
        PathKind::Relay
    } else {
        PathKind::None
    };
    let detail = format!(
        "{a}: {} (checks {}/{} answered, srflx {:?}, relay {:?}); {b}: {} (checks {}/{}); oracle: {predicted}",
        ra.achieved(),
        ra.checks_answered,
        ra.checks_sent,
        ra.local.srflx,
        ra.local.relay,
        rb.achieved(),
        rb.checks_answered,
        rb.checks_sent
    );
    out.push(
        "path",
        format!("best path {a} <-> {b} is {expect}"),
        achieved == expect,
        detail.clone(),
    );
    if p.bool("relay", false)? {
        out.push(
            "relay",
            format!("TURN relaying works between {a} and {b}"),
            relay_ok,
            detail,
        );
    }
    out.summary.push(achieved.to_string());
    Ok(())
}

/// `tcp_punch`: the best direct TCP path two `tcp-punch` peers found is the one the
/// oracle predicts (or `expect`: host, srflx, so, none).
fn tcp_punch(w: &World, p: &Params<'_>, out: &mut Outcome) -> Result<()> {
    p.only(&["between", "expect"])?;
    let between = p.strs("between")?;
    let [a, b] = between[..] else {
        bail!("`between` must name two hosts")
    };
    let (pa, ra) = w.actor_state::<TcpPunchPeer>(a, "tcp-punch")?;
    let (pb, rb) = w.actor_state::<TcpPunchPeer>(b, "tcp-punch")?;
    let predicted = oracle::tcp_path(&w.sim, pa.node, pb.node);
    let expect = match p.opt_str("expect")?.unwrap_or("oracle") {
        "oracle" => predicted,
        x => x.parse::<TcpPath>().map_err(|e| anyhow!("`expect`: {e}"))?,
    };
    let achieved = ra.achieved().min(rb.achieved());
    let side = |r: &TcpPunchPeer| {
        let ok: Vec<String> = r.succeeded.keys().map(|k| k.to_string()).collect();
        let failed: Vec<String> = r
            .failed
            .iter()
            .map(|(k, to, why)| format!("{k} to {to}: {why}"))
            .collect();
        format!(
            "ok [{}], failed [{}], local {:?}",
            ok.join(","),
            failed.join("; "),
            r.local.as_ref().map(|l| (l.srflx, l.so))
        )
    };
    out.push(
        "tcp_punch",
        format!("best direct TCP path {a} <-> {b} is {expect}"),
        achieved == expect,
        format!(
            "achieved {achieved}; {a}: {}; {b}: {}; oracle: {predicted}",
            side(ra),
            side(rb)
        ),
    );
    out.summary.push(format!("tcp {achieved}"));
    Ok(())
}

/// `online`: each of `hosts` (DHT nodes or proxy devices that `track` them) saw each of
/// `of` online, with
/// that account's own device verified (by `by`, when given); `expect = false` asserts
/// the opposite, and `rejected` names a refusal (a `Rejection`) that must be counted.
fn online(w: &World, p: &Params<'_>, out: &mut Outcome) -> Result<()> {
    p.only(&["hosts", "of", "by", "expect", "rejected"])?;
    let expect = p.bool("expect", true)?;
    let by = p
        .opt_str("by")?
        .map(|s| netsim::parse_duration(s).map_err(|e| anyhow!("`by`: {e}")))
        .transpose()?;
    let rejected = p.opt_str("rejected")?;
    let (mut lines, mut ok, mut points) = (Vec::new(), true, Vec::new());
    for h in p.strs("hosts")? {
        // A node on the DHT, or a device that tracks through a proxy.
        let seen_by = match w.actor_state::<DhtApp>(h, "dht-node") {
            Ok((_, app)) => &app.seen,
            Err(_) => {
                &w.actor_state::<crate::jami::JamiDeviceApp>(h, "jami-device")
                    .map_err(|_| anyhow!("`{h}` runs no `dht-node` or `jami-device` that tracks"))?
                    .1
                    .seen
            }
        };
        for o in p.strs("of")? {
            let id = w
                .jami
                .get(&(o.to_string(), String::new()))
                .ok_or_else(|| anyhow!("`{o}` has no Jami account (is it tracked by `{h}`?)"))?;
            let seen = seen_by
                .get(&id.account_id())
                .ok_or_else(|| anyhow!("`{h}` does not track `{o}`"))?;
            let device = id.device.device_id();
            let verified = seen.devices.iter().any(|d| d.device_id == device);
            let at = seen.first_online().map(|t| t.since(SimTime::ZERO));
            let off = seen.last_offline().map(|t| t.since(SimTime::ZERO));
            let online_now = seen.online_at_end();
            let in_time = at.is_some_and(|t| by.is_none_or(|b| t <= b));
            let pass = if expect {
                in_time && online_now && verified
            } else {
                !online_now
            } && rejected.is_none_or(|r| seen.rejected.contains_key(r));
            ok &= pass;
            let secs = |t: Option<Duration>| {
                t.map(|t| format!("{:.3} s", t.as_secs_f64()))
                    .unwrap_or_else(|| "never".into())
            };
            lines.push(format!(
                "{h} sees {o}: online at {}, offline at {}, own device verified: {verified}, refused: {:?}",
                secs(at),
                secs(off),
                seen.rejected
            ));
            if let (true, Some(t)) = (expect, at) {
                out.summary
                    .push(format!("{o} online at {:.2} s", t.as_secs_f64()));
            }
            // Online (1) or not (0) over the run, as this watcher saw it: a step line.
            let mut line = vec![(0.0, 0.0)];
            for (t, online) in &seen.changes {
                let (x, y) = (
                    t.since(SimTime::ZERO).as_secs_f64(),
                    f64::from(u8::from(*online)),
                );
                line.extend([(x, 1.0 - y), (x, y)]);
            }
            line.push((w.duration.as_secs_f64(), f64::from(u8::from(online_now))));
            points.push((format!("{h} sees {o}"), line));
        }
    }
    for (label, line) in points {
        out.series.push(Series {
            chart: "Presence".into(),
            label,
            kind: SeriesKind::Line,
            x_label: "simulated s".into(),
            y_label: "online".into(),
            points: line,
        });
    }
    let what = if expect { "online" } else { "not online" };
    out.push(
        "online",
        format!(
            "{} see {} {what}{}",
            p.strs("hosts")?.join(", "),
            p.strs("of")?.join(", "),
            rejected
                .map(|r| format!(", refusing {r}"))
                .unwrap_or_default()
        ),
        ok && !lines.is_empty(),
        lines.join("; "),
    );
    Ok(())
}

fn never_sees(w: &World, p: &Params<'_>, out: &mut Outcome) -> Result<()> {
    p.only(&["hosts", "address_of"])?;
    let owners = p.strs("address_of")?;
    let mut secret = Vec::new();
    for o in &owners {
        secret.extend(w.addrs_of(o)?);
    }
    let wanted = p.strs("hosts")?;
    // "*" means every host that does not own one of the secret addresses.
    let hosts: Vec<String> = if wanted.contains(&"*") {
        w.nodes
            .iter()
            .filter(|(n, &id)| {
                matches!(w.sim.node(id).kind, NodeKind::Host(_)) && !owners.contains(&n.as_str())
            })
            .map(|(n, _)| n.clone())
            .collect()
    } else {
        wanted.iter().map(|s| s.to_string()).collect()
    };
    let mut leaks = Vec::new();
    for h in &hosts {
        let host = w
            .sim
            .host(w.host_node(h)?)
            .ok_or_else(|| anyhow!("not a host"))?;
        for a in &secret {
            if host.seen_sources.contains(a) {
                leaks.push(format!("{h} saw {a}"));
            }
        }
    }
    let shown: Vec<String> = secret.iter().map(|a| a.to_string()).collect();
    out.push(
        "never_sees",
        format!(
            "no packet to {} carries the address of {}",
            hosts.join(", "),
            owners.join(", ")
        ),
        leaks.is_empty(),
        if leaks.is_empty() {
            format!("checked {} hosts for [{}]", hosts.len(), shown.join(", "))
        } else {
            leaks.join("; ")
        },
    );
    Ok(())
}

fn multicast(w: &World, p: &Params<'_>, out: &mut Outcome) -> Result<()> {
    p.only(&["sender", "reaches", "not_reaches"])?;
    let sender = p.str("sender")?;
    let from = w.addr_of(sender)?;
    let heard = |h: &str| -> Result<bool> {
        let (_, m) = w.actor_state::<Multicast>(h, "multicast")?;
        Ok(m.heard_from.contains(&from))
    };
    let (mut missing, mut leaked) = (Vec::new(), Vec::new());
    for h in p.strs("reaches")? {
        if !heard(h)? {
            missing.push(h);
        }
    }
    for h in p.strs("not_reaches")? {
        if heard(h)? {
            leaked.push(h);
        }
    }
    out.push(
        "multicast",
        format!("{sender}'s multicast reaches its segment and nothing else"),
        missing.is_empty() && leaked.is_empty(),
        format!(
            "missed by: [{}]; heard outside the segment by: [{}]",
            missing.join(", "),
            leaked.join(", ")
        ),
    );
    Ok(())
}

fn goodput(w: &World, p: &Params<'_>, out: &mut Outcome) -> Result<()> {
    p.only(&["host", "rate", "tolerance", "from", "to"])?;
    let host = p.str("host")?;
    let (_, sink) = w.actor_state::<Sink>(host, "sink")?;
    let want = parse_rate(p.str("rate")?).map_err(|e| anyhow!(e))? as f64;
    let tol = p.float("tolerance", 0.02)?;
    let from = SimTime::ZERO + p.duration("from", "2s")?;
    let to = SimTime::ZERO + p.duration("to", "10s")?;
    let got = sink.rate_bps(from, to);
    let err = (got - want).abs() / want;
    out.push(
        "goodput",
        format!(
            "{host} receives {:.3} Mbit/s ± {:.1}% between {} and {}",
            want / 1e6,
            tol * 100.0,
            from,
            to
        ),
        err <= tol,
        format!(
            "measured {:.4} Mbit/s ({:+.2}%)",
            got / 1e6,
            (got - want) / want * 100.0
        ),
    );
    out.summary.push(format!("{:.3} Mbit/s", got / 1e6));
    out.series.push(Series {
        chart: format!("Goodput at {host}"),
        label: "received (IP layer)".into(),
        kind: SeriesKind::Line,
        x_label: "time (s)".into(),
        y_label: "Mbit/s".into(),
        points: sink
            .series()
            .into_iter()
            .map(|(t, r)| (t, r / 1e6))
            .collect(),
    });
    let horizon = w.duration.as_secs_f64();
    out.series.push(Series {
        chart: format!("Goodput at {host}"),
        label: "link capacity".into(),
        kind: SeriesKind::Line,
        x_label: "time (s)".into(),
        y_label: "Mbit/s".into(),
        points: vec![(0.0, want / 1e6), (horizon, want / 1e6)],
    });
    Ok(())
}

/// Devices raced to register one name: exactly one got it (the others were told it is
/// taken), and every lookup any device made afterwards, including after a name server
/// crash and restart, returned the winner's address.
fn name_owner(w: &World, p: &Params, out: &mut Outcome) -> Result<()> {
    use crate::names::{NameDeviceApp, NameServerApp, Request};
    p.only(&["devices", "lookers", "server", "min_replayed"])?;
    let devices = p.strs("devices")?;
    let (mut regs, mut lookups) = (Vec::new(), Vec::new());
    for h in devices.iter().chain(p.strs("lookers")?.iter()) {
        let (_, app) = w.actor_state::<NameDeviceApp>(h, "name-device")?;
        for e in &app.done {
            match e.request {
                Request::Register => regs.push((h.to_string(), app.address(), e.status)),
                Request::Lookup => lookups.push((
                    h.to_string(),
                    e.at,
                    e.status,
                    e.addr
                        .as_deref()
                        .map(|a| a.trim_start_matches("0x").to_string()),
                )),
            }
        }
    }
    let winners: Vec<&(String, String, Option<u16>)> =
        regs.iter().filter(|r| r.2 == Some(200)).collect();
    let others_told_taken = regs
        .iter()
        .filter(|r| r.2 != Some(200))
        .all(|r| r.2 == Some(409));
    let one_owner = regs.len() == devices.len() && winners.len() == 1 && others_told_taken;
    let owner = winners.first().map(|w| w.1.clone());
    let lookups_ok = !lookups.is_empty()
        && lookups
            .iter()
            .all(|l| l.2 == Some(200) && l.3.is_some() && l.3 == owner);
    let (_, server) = w.actor_state::<NameServerApp>(p.str("server")?, "name-server")?;
    let min_replayed = p.int("min_replayed", 0)? as u64;
    let replayed_ok = server.replayed >= min_replayed;
    let winner = winners.first().map(|w| w.0.as_str()).unwrap_or("nobody");
    out.push(
        "name_owner",
        format!(
            "{} devices race for one name: one owner, every lookup returns it{}",
            devices.len(),
            if min_replayed > 0 { " (also after the name server restarted)" } else { "" }
        ),
        one_owner && lookups_ok && replayed_ok,
        format!(
            "registrations {:?}; owner {winner}; {} lookups, {} returned the owner; server replayed {} records after its last start",
            regs.iter().map(|r| (r.0.as_str(), r.2)).collect::<Vec<_>>(),
            lookups.len(),
            lookups.iter().filter(|l| l.2 == Some(200) && l.3 == owner).count(),
            server.replayed
        ),
    );
    out.summary.push(format!("name owner: {winner}"));
    Ok(())
}
