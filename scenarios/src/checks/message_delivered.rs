//! `message_delivered`: the text `from`'s Jami device sent to `to`'s account arrived, by
//! `via` (sip, dht, any, or oracle: `sip` where a direct TCP path exists between them,
//! the DHT `ImMessage` fallback where none does), and `from` got its receipt.

use super::ice_connect::{account, record};
use super::{CheckKind, Outcome};
use crate::model::Params;
use crate::world::World;
use anyhow::{bail, Result};
use netsim::oracle::{self, TcpPath};
use node::device::jami::Via;

inventory::submit! { CheckKind { name: "message_delivered", params: &["from", "to", "via"], eval } }

fn eval(w: &World, _what: &str, p: &Params<'_>, out: &mut Outcome) -> Result<()> {
    let (from, to) = (p.str("from")?, p.str("to")?);
    let (rf, rt) = (record(w, from)?, record(w, to)?);
    let (acc_f, acc_t) = (account(w, from)?, account(w, to)?);
    let want: Option<Via> = match p.opt_str("via")?.unwrap_or("any") {
        "any" => None,
        "sip" => Some(Via::Sip),
        "dht" => Some(Via::Dht),
        "oracle" => {
            let path =
                oracle::tcp_path_so_on_listen_port(&w.sim, w.host_node(from)?, w.host_node(to)?);
            Some(if path == TcpPath::None {
                Via::Dht
            } else {
                Via::Sip
            })
        }
        x => bail!("`via` is sip, dht, any or oracle, not `{x}`"),
    };
    let sent: Vec<u64> = rf
        .sent
        .iter()
        .filter(|s| s.1 == acc_t)
        .map(|s| s.0)
        .collect();
    let got = rt.received.iter().find(|m| m.account == acc_f);
    let receipt = rf.delivered.iter().find(|d| sent.contains(&d.0));
    let via_ok = got.is_some_and(|m| want.is_none_or(|v| m.via == v));
    let passed = !sent.is_empty() && via_ok && receipt.is_some();
    out.push(
        "message_delivered",
        format!(
            "{from}'s text reaches {to}{}",
            want.map_or(String::new(), |v| format!(" via {v}"))
        ),
        passed,
        format!(
            "sent {}; received {}; receipt {}; failed {:?}",
            sent.len(),
            got.map_or("none".into(), |m| format!(
                "{:?} via {} at {}",
                m.body, m.via, m.at
            )),
            receipt.map_or("none".into(), |d| format!("via {} at {}", d.1, d.2)),
            rf.send_failed
        ),
    );
    if let Some(m) = got {
        out.summary.push(format!("text via {}", m.via));
    }
    Ok(())
}
