//! `online`: each of `hosts` (`dht-node`s, on UDP or through a proxy, that `track` them)
//! saw each of `of` online, with that account's own device verified (by `by`, when
//! given); `expect = false` asserts the opposite, and `rejected` names a refusal (a
//! `Rejection`) that must be counted.

use super::{CheckKind, Outcome};
use crate::glue::DhtApp;
use crate::model::Params;
use crate::world::World;
use anyhow::{anyhow, Result};
use netsim::SimTime;
use reports::{Series, SeriesKind};
use std::time::Duration;

inventory::submit! { CheckKind { name: "online", params: &["hosts", "of", "by", "expect", "rejected"], eval } }

fn eval(w: &World, _what: &str, p: &Params<'_>, out: &mut Outcome) -> Result<()> {
    let expect = p.bool("expect", true)?;
    let by = p
        .opt_str("by")?
        .map(|s| netsim::parse_duration(s).map_err(|e| anyhow!("`by`: {e}")))
        .transpose()?;
    let rejected = p.opt_str("rejected")?;
    let (mut lines, mut ok, mut points) = (Vec::new(), true, Vec::new());
    for h in p.strs("hosts")? {
        // A device on the DHT, or through a proxy.
        let seen_by = &w.actor_state::<DhtApp>(h, "dht-node")?.1.seen;
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
