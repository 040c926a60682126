//! `ice_connect`: the Jami devices (`dht-node` with `jami` and `connect`) of `between =
//! [requester, answerer]` connect exactly where the direct TCP path oracle says one
//! exists, and over the kind of path it names (or `expect`: host, srflx, so, none), with
//! no request refused on either side. With `turn = true` (the devices have a TURN server)
//! every pair connects: directly where the oracle says so, through the relay elsewhere.
//!
//! The kind is judged from the connection, not from the devices' labels (as
//! `tests/ice_agent_sim.rs` judges the bare agent): the side whose selected local
//! candidate is TCP active dialled the other's remote candidate address, which is the
//! other's host address (host) or its NAT mapping (srflx); both sides on simultaneous-open
//! candidates is a simultaneous open (host when one dialled a host address). Where the
//! oracle allows both a passive server-reflexive path and a simultaneous open (ours puts
//! its S-O candidate on the listening port, see `oracle::tcp_path_so_on_listen_port`),
//! either is right.

use super::{CheckKind, Outcome};
use crate::glue::DhtApp;
use crate::model::Params;
use crate::services::{ConnRecord, JamiRecord};
use crate::world::World;
use anyhow::{anyhow, bail, Result};
use netsim::oracle::{self, TcpPath};
use node::connect::ice::{CandidateType, Transport};
use reports::{Series, SeriesKind};
use std::net::IpAddr;

inventory::submit! { CheckKind { name: "ice_connect", params: &["between", "expect", "turn"], eval } }

/// The Jami record of the `dht-node` on `host`.
pub(super) fn record<'w>(w: &'w World, host: &str) -> Result<&'w JamiRecord> {
    let (_, app) = w.actor_state::<DhtApp>(host, "dht-node")?;
    app.jami_record()
        .ok_or_else(|| anyhow!("the `dht-node` on `{host}` runs no Jami services"))
}

/// `host`'s account id.
pub(super) fn account(w: &World, host: &str) -> Result<node::dht::InfoHash> {
    w.jami
        .get(&(host.to_string(), String::new()))
        .map(|j| j.account_id())
        .ok_or_else(|| anyhow!("`{host}` has no Jami account (`jami = true`)"))
}

/// What kind of path a connection is, from both sides' records of it (`a_host`/`b_host`:
/// each side's own addresses); Err when the records contradict each other or the labels.
pub fn judge(
    a: &ConnRecord,
    b: Option<&ConnRecord>,
    a_host: &[IpAddr],
    b_host: &[IpAddr],
) -> Result<TcpPath, String> {
    let dialled_host = |r: &ConnRecord, other: &[IpAddr]| other.contains(&r.remote.addr.ip());
    let labelled = |r: &ConnRecord, other: &[IpAddr]| {
        let want = if dialled_host(r, other) {
            CandidateType::Host
        } else {
            CandidateType::Srflx
        };
        if r.remote.typ == want {
            Ok(())
        } else {
            Err(format!(
                "dialled {} but labels it {}",
                r.remote.addr,
                r.remote.typ.as_str()
            ))
        }
    };
    let kind_of_dial = |r: &ConnRecord, other: &[IpAddr]| -> Result<TcpPath, String> {
        labelled(r, other)?;
        Ok(if dialled_host(r, other) {
            TcpPath::Host
        } else {
            TcpPath::Srflx
        })
    };
    let passive =
        |r: Option<&ConnRecord>| r.is_some_and(|r| r.local.transport == Transport::TcpPassive);
    // An accepted connection was dialled by the other side (an S-O SYN that met a
    // listener counts as a dial): its remote candidate is the address it dialled.
    if a.local.transport == Transport::TcpPassive {
        return match b {
            Some(b) if b.local.transport != Transport::TcpPassive => kind_of_dial(b, a_host),
            _ => Err(
                "the requester accepted the connection but its peer has no dialling record".into(),
            ),
        };
    }
    if a.local.transport == Transport::TcpActive || passive(b) {
        return kind_of_dial(a, b_host);
    }
    match (a.local.transport, b.map(|b| b.local.transport)) {
        (Transport::TcpSo, None | Some(Transport::TcpSo)) => {
            let host = dialled_host(a, b_host) || b.is_some_and(|b| dialled_host(b, a_host));
            Ok(if host {
                TcpPath::Host
            } else {
                TcpPath::SimultaneousOpen
            })
        }
        (t, u) => Err(format!("selected {t:?} against {u:?}")),
    }
}

/// What a connection went over: a direct TCP path, or a TURN relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Direct(TcpPath),
    Relay,
}

impl std::fmt::Display for Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Path::Direct(k) => k.fmt(f),
            Path::Relay => f.write_str("relay"),
        }
    }
}

/// Either end of the selected pair is a relayed candidate.
fn relayed(c: &ConnRecord) -> bool {
    c.local.typ == CandidateType::Relay || c.remote.typ == CandidateType::Relay
}

fn eval(w: &World, _what: &str, p: &Params<'_>, out: &mut Outcome) -> Result<()> {
    let between = p.strs("between")?;
    let [a, b] = between[..] else {
        bail!("`between` must name two hosts")
    };
    let (ra, rb) = (record(w, a)?, record(w, b)?);
    let (acc_a, acc_b) = (account(w, a)?, account(w, b)?);
    let (na, nb) = (w.host_node(a)?, w.host_node(b)?);
    let predicted = oracle::tcp_path_so_on_listen_port(&w.sim, na, nb);
    let own_port = oracle::tcp_path(&w.sim, na, nb);
    let accepted: Vec<TcpPath> = match p.opt_str("expect")?.unwrap_or("oracle") {
        "oracle" => vec![predicted, own_port],
        x => vec![x.parse::<TcpPath>().map_err(|e| anyhow!("`expect`: {e}"))?],
    };
    let turn = p.bool("turn", false)?;
    // With a relay, which direct pair wins depends on when each check succeeds; any
    // direct kind is right where the oracle says a direct path exists.
    let direct = [TcpPath::Host, TcpPath::Srflx, TcpPath::SimultaneousOpen].map(Path::Direct);
    let accepted: Vec<Path> = match (turn, accepted.as_slice()) {
        (true, [TcpPath::None, ..]) => vec![Path::Relay],
        (true, _) => direct.to_vec(),
        _ => accepted.into_iter().map(Path::Direct).collect(),
    };
    let ca = ra.connected.iter().find(|c| c.account == acc_b);
    let cb = rb.connected.iter().find(|c| c.account == acc_a);
    let achieved = match ca {
        None => Ok(Path::Direct(TcpPath::None)),
        Some(c) if relayed(c) || cb.is_some_and(relayed) => Ok(Path::Relay),
        Some(c) => judge(c, cb, &w.addrs_of(a)?, &w.addrs_of(b)?).map(Path::Direct),
    };
    let show = |c: Option<&ConnRecord>| match c {
        None => "-".to_string(),
        Some(c) => format!(
            "{} {:?} {} -> {} {:?} {}{} in {} ms",
            c.local.typ.as_str(),
            c.local.transport,
            c.local.addr,
            c.remote.typ.as_str(),
            c.remote.transport,
            c.remote.addr,
            if c.initiator { " (requester)" } else { "" },
            c.setup_ms
        ),
    };
    let requester_ok = ca.is_none_or(|c| c.initiator);
    // Honest peers refuse nothing (a refusal is a forged, replayed or unverifiable
    // request, or a trust setting).
    let no_refusals = ra.refused.is_empty() && rb.refused.is_empty();
    let passed =
        requester_ok && no_refusals && achieved.as_ref().is_ok_and(|k| accepted.contains(k));
    let want: Vec<String> = accepted.iter().map(|k| k.to_string()).collect();
    out.push(
        "ice_connect",
        format!("{a} connects to {b} over a {} TCP path", want.join("/")),
        passed,
        format!(
            "achieved {}; {a}: {}; {b}: {}; oracle {predicted} (S-O on its own port: {own_port}); refused {}/{}, closed {}/{}",
            match &achieved {
                Ok(k) => k.to_string(),
                Err(e) => format!("? ({e})"),
            },
            show(ca),
            show(cb),
            ra.refused.len(),
            rb.refused.len(),
            ra.closed.len(),
            rb.closed.len(),
        ),
    );
    if let Ok(k) = &achieved {
        out.summary.push(format!("ice {k}"));
    }
    if let Some(c) = ca {
        out.summary.push(format!("set-up {} ms", c.setup_ms));
        // One curve per kind of path: the report pools every cell and seed of the
        // scenario into it (`jamisim run ice --seeds N`).
        let kind = achieved
            .as_ref()
            .map_or_else(|_| "unjudged".to_string(), |k| k.to_string());
        out.series.push(Series {
            chart: "Connection set-up time".into(),
            label: format!("{kind} path"),
            kind: SeriesKind::Cdf,
            x_label: "ms".into(),
            y_label: "fraction of connections".into(),
            points: vec![(0.0, c.setup_ms as f64)],
        });
    }
    Ok(())
}
