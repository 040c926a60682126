//! `jamisim node dht --proxy HOST:PORT`: the node's commands through a DHT proxy (ours
//! or OpenDHT's) instead of over UDP, as `dhtnode --proxyclient` and jamid with
//! `Account.proxyEnabled` use the DHT. Same command letters and JSON lines as on UDP;
//! what only a UDP node has (`lr`, `la`, `b`) is refused with an error line.

use crate::node_cmd::{key_of, load_identity, value_json, DhtNodeOpts, Printer, PutCmd, PutKind};
use anyhow::{bail, Result};
use node::dht::proxy::client::ProxyClient;
use node::dht::proxy::secure_client::SecureProxy;
use node::dht::{InfoHash, Value};
use node::net::TcpConnector;
use rand_chacha::ChaCha20Rng;
use serde_json::json;
use std::io::BufRead;
use std::sync::Arc;
use std::time::Duration;

type Proxy = Arc<SecureProxy<TcpConnector>>;

/// Run until `x` or end of input.
pub fn run(opts: &DhtNodeOpts, proxy: &str, mut rng: ChaCha20Rng) -> Result<()> {
    let identity = match &opts.identity {
        Some(dir) => Some(load_identity(dir, &mut rng)?),
        None => None,
    };
    let out = Arc::new(Printer { json: opts.json });
    let client = ProxyClient::with_connector(TcpConnector, proxy);
    let px: Proxy = Arc::new(SecureProxy::new(client, identity, rng.clone()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rt.block_on(async move {
        out.say(
            "started",
            format!("OpenDHT-compatible node using the DHT proxy at {proxy}"),
            json!({"addr": null, "proxy": proxy, "public_key_id": px.public_key_id().map(|k| k.to_string())}),
        );
        if let Some(k) = px.public_key_id() {
            out.say(
                "public_key_id",
                format!("Public key ID {k}"),
                json!({"public_key_id": k.to_string()}),
            );
        }
        tokio::spawn(connect(px.clone(), out.clone()));
        let mut next_op: u64 = 1;
        while let Some(line) = lines.recv().await {
            match command(&px, &out, &line, next_op, &mut rng) {
                Ok(true) => next_op += 1,
                Ok(false) => {}
                Err(e) if e.to_string() == "quit" => return,
                Err(e) => out.say(
                    "error",
                    format!("{e}"),
                    json!({"error": e.to_string()}),
                ),
            }
        }
    });
    Ok(())
}

/// Poll node info until the proxy's node has a good node (how OpenDHT's proxy client
/// decides it is connected), then announce our certificate.
async fn connect(px: Proxy, out: Arc<Printer>) {
    loop {
        match px.client.node_info().await {
            Ok(info) => {
                let good = ["ipv4", "ipv6"]
                    .iter()
                    .map(|f| info[f]["good"].as_u64().unwrap_or(0))
                    .sum::<u64>();
                if good > 0 {
                    out.say(
                        "connected",
                        format!("Connected to the DHT through the proxy ({good} good nodes)"),
                        json!({"proxy_node": info["node_id"], "good": good}),
                    );
                    break;
                }
            }
            Err(e) => out.say(
                "error",
                format!("proxy: {e}"),
                json!({"error": format!("proxy: {e}")}),
            ),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    if let Err(e) = px.announce().await {
        out.say(
            "error",
            format!("announcing our certificate: {e}"),
            json!({"error": format!("announcing our certificate: {e}")}),
        );
    }
}

fn failed(out: &Printer, op: u64, key: &InfoHash, e: &dyn std::fmt::Display) {
    out.say(
        "failed",
        format!("Operation {op} at {key} failed: {e}"),
        json!({"op": op, "key": key.to_string(), "reason": e.to_string()}),
    );
}

fn value_line(out: &Printer, what: &str, op: u64, key: &InfoHash, v: &Value, expired: bool) {
    let j = value_json(v);
    let kind = if expired { "expired" } else { "value" };
    out.say(
        kind,
        format!("{what} {key}: {}{j}", if expired { "expired " } else { "" }),
        json!({"op": op, "key": key.to_string(), "value": j}),
    );
}

/// One command line; true when it started an operation (`op` used). Quitting is the
/// error "quit".
fn command(
    px: &Proxy,
    out: &Arc<Printer>,
    line: &str,
    op: u64,
    rng: &mut ChaCha20Rng,
) -> Result<bool> {
    let mut words = line.split_whitespace();
    match (words.next(), words.next()) {
        (None, _) => Ok(false),
        (Some("x" | "q" | "quit"), _) => bail!("quit"),
        (Some("h" | "help"), _) => {
            println!("through a proxy: g <key>  get | p <key> <text>  put | s <key> <text>  signed put | e <key> <to> <text>  put encrypted (s, e need --identity) | l <key>  listen | ll  proxy node info | x  quit");
            Ok(false)
        }
        (Some("g"), Some(k)) => {
            let (px, out, key) = (px.clone(), out.clone(), key_of(k));
            tokio::spawn(async move {
                match px.get(&key).await {
                    Ok(values) => {
                        for v in &values {
                            value_line(&out, "get", op, &key, v, false);
                        }
                        out.say(
                            "get_done",
                            format!(
                                "Get: completed for {key} through the proxy ({} values)",
                                values.len()
                            ),
                            json!({"op": op, "key": key.to_string(), "values": values.len()}),
                        );
                    }
                    Err(e) => failed(&out, op, &key, &e),
                }
            });
            Ok(true)
        }
        (Some("l"), Some(k)) => {
            let (px, out, key) = (px.clone(), out.clone(), key_of(k));
            tokio::spawn(async move {
                let mut stream = match px.listen(&key).await {
                    Ok(s) => s,
                    Err(e) => return failed(&out, op, &key, &e),
                };
                out.say(
                    "listening",
                    format!("Listening at {key}, token: {op}"),
                    json!({"op": op, "key": key.to_string()}),
                );
                while let Some(item) = stream.next_value().await {
                    match item {
                        Ok(pv) => {
                            if let Some(pv) = px.filter_one(pv) {
                                value_line(&out, "listen", op, &key, &pv.value, pv.expired);
                            }
                        }
                        Err(e) => return failed(&out, op, &key, &e),
                    }
                }
                failed(&out, op, &key, &"the proxy closed the listen stream");
            });
            Ok(true)
        }
        (Some(c @ ("p" | "s" | "e")), Some(k)) => {
            let put = PutCmd::parse(c, k, words, px.public_key_id().is_some(), rng)?;
            PutCmd::say_putting(out, op, put.key, put.id);
            let (px, out, key) = (px.clone(), out.clone(), put.key);
            tokio::spawn(async move {
                let r = match put.kind {
                    PutKind::Encrypted(to) => px.put_encrypted(&key, &to, put.id, put.body).await,
                    PutKind::Signed => px.put_signed(&key, put.id, put.body).await,
                    PutKind::Plain => px.put(&key, &put.plain_value(), false).await,
                };
                match r {
                    Ok(_) => out.say(
                        "put_done",
                        format!("Put: success for {key} (through the proxy)"),
                        json!({"op": op, "key": key.to_string(), "ok": true, "stored_on": null}),
                    ),
                    Err(e) => failed(&out, op, &key, &e),
                }
            });
            Ok(true)
        }
        (Some("ll"), _) => {
            let (px, out) = (px.clone(), out.clone());
            tokio::spawn(async move {
                match px.client.node_info().await {
                    Ok(info) => out.say(
                        "info",
                        format!("proxy node: {info}"),
                        json!({"proxy": info}),
                    ),
                    Err(e) => out.say(
                        "error",
                        format!("proxy: {e}"),
                        json!({"error": format!("proxy: {e}")}),
                    ),
                }
            });
            Ok(false)
        }
        (Some(c @ ("lr" | "la" | "b")), _) => {
            bail!("`{c}` needs a UDP node: not available through a proxy")
        }
        (Some(other), _) => bail!("unknown or incomplete command `{other}` (h for help)"),
    }
}
