//! `jamisim node device` on loopback: two accounts written by `node account create`,
//! two devices that join through a `node dht` node, each announces itself on the DHT,
//! and each sees the other "seem reachable"
//! (the FAQ's word for an account with a device announced), while an account nobody
//! announced stays at none.

use std::process::Command;
use std::time::Duration;

mod common;
use common::CliNode;

fn create_account(dir: &std::path::Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_jamisim"))
        .args(["node", "account", "create", "--bits", "1024", "--dir"])
        .arg(dir)
        .output()
        .expect("jamisim node account create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn device(dir: &std::path::Path, extra: &[&str]) -> CliNode {
    let dir = dir.to_str().expect("utf-8 path");
    let args = [
        "node",
        "device",
        "--bind",
        "127.0.0.1",
        "--json",
        "--dir",
        dir,
    ];
    CliNode::spawn(&[&args[..], extra].concat())
}

/// Two accounts in `tmp`, a plain DHT node both devices join through (as devices join
/// through a bootstrap), and the two devices.
struct Pair {
    boot: CliNode,
    a: CliNode,
    b: CliNode,
    a_id: String,
    b_id: String,
    db: std::path::PathBuf,
}

fn pair(tmp: &std::path::Path) -> Pair {
    let _ = std::fs::remove_dir_all(tmp);
    let (da, db) = (tmp.join("a"), tmp.join("b"));
    create_account(&da);
    create_account(&db);
    let boot = CliNode::spawn(&[
        "node",
        "dht",
        "--bind",
        "127.0.0.1",
        "--port",
        "0",
        "--json",
    ]);
    let a = device(&da, &["--bootstrap", &boot.addr]);
    let b = device(&db, &["--bootstrap", &boot.addr]);
    let started = |n: &CliNode| n.started["account"].as_str().expect("account").to_string();
    let (a_id, b_id) = (started(&a), started(&b));
    Pair {
        boot,
        a,
        b,
        a_id,
        b_id,
        db,
    }
}

#[test]
fn two_devices_see_each_other_seem_reachable() {
    let tmp = std::env::temp_dir().join(format!("jamisim-device-cli-{}", std::process::id()));
    let Pair {
        boot,
        mut a,
        mut b,
        a_id,
        b_id,
        db: _,
    } = pair(&tmp);
    assert!(
        b.wait("connected", Duration::from_secs(10)).is_some(),
        "b joins through a"
    );
    let nobody = "0123456789abcdef0123456789abcdef01234567";
    a.send(&format!("track {b_id}"));
    b.send(&format!("track {a_id}"));
    b.send(&format!("track {nobody}"));
    for (watcher, of) in [(&a, &b_id), (&b, &a_id)] {
        let seen = watcher
            .wait_for(Duration::from_secs(20), |v| {
                v["event"] == "presence" && v["account"] == of.as_str()
            })
            .expect("presence line");
        assert_eq!(seen["state"], "seems reachable", "{seen}");
    }
    b.send("presence");
    let list = b
        .wait("presence_list", Duration::from_secs(5))
        .expect("presence list");
    let states: Vec<(String, String)> = list["contacts"]
        .as_array()
        .expect("contacts")
        .iter()
        .map(|c| {
            (
                c["account"].as_str().unwrap().into(),
                c["state"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        states.contains(&(a_id.clone(), "seems reachable".into())),
        "{states:?}"
    );
    assert!(
        states.contains(&(nobody.into(), "none".into())),
        "{states:?}"
    );
    b.send("ll");
    let info = b.wait("info", Duration::from_secs(5)).expect("info");
    assert!(info["announcements"].as_u64() >= Some(1), "{info}");
    drop((a, b, boot));
    let _ = std::fs::remove_dir_all(&tmp);
}

/// The whole device on real sockets: A sends B a trust request, B accepts, A connects
/// to B (the selected ICE pair is shown), a text crosses each way over the `sip`
/// channel, and both contact lists survive a restart of B (kept in its directory as
/// jamid keeps them).
#[test]
fn two_devices_become_contacts_connect_and_exchange_texts() {
    let tmp = std::env::temp_dir().join(format!("jamisim-device-conn-{}", std::process::id()));
    let Pair {
        boot,
        mut a,
        mut b,
        a_id,
        b_id,
        db,
    } = pair(&tmp);
    assert_eq!(a.started["ice_ips"][0], "127.0.0.1", "{}", a.started);
    let t = Duration::from_secs(30);
    for n in [&a, &b] {
        assert!(n.wait("connected", t).is_some(), "joins the DHT");
    }
    a.send(&format!("add {b_id} BEGIN:VCARD"));
    let req = b
        .wait_for(t, |v| {
            v["event"] == "trust_request" && v["from"] == a_id.as_str()
        })
        .expect("B gets A's request");
    assert_eq!(req["payload"], "BEGIN:VCARD", "{req}");
    b.send(&format!("accept {a_id}"));
    assert!(
        a.wait_for(t, |v| v["event"] == "confirmed"
            && v["from"] == b_id.as_str())
            .is_some(),
        "A sees B's acceptance"
    );
    a.send(&format!("connect {b_id}"));
    let up = a
        .wait_for(t, |v| {
            v["event"] == "peer_connected" && v["account"] == b_id.as_str()
        })
        .expect("A connects to B");
    assert_eq!(up["initiator"], true, "{up}");
    assert_eq!(
        up["local"]["addr"]
            .as_str()
            .map(|s| s.starts_with("127.0.0.1:")),
        Some(true),
        "{up}"
    );
    assert_eq!(up["state"], "connected", "{up}");
    let up_b = b
        .wait_for(t, |v| {
            v["event"] == "peer_connected" && v["account"] == a_id.as_str()
        })
        .expect("B sees the connection");
    assert_eq!(up_b["initiator"], false, "{up_b}");
    assert!(
        a.wait_for(t, |v| v["event"] == "channel_opened" && v["name"] == "sip")
            .is_some(),
        "the sip channel opens"
    );
    a.send(&format!("msg {b_id} hello from A"));
    let m = b
        .wait_for(t, |v| v["event"] == "message" && v["from"] == a_id.as_str())
        .expect("B gets A's text");
    assert_eq!(
        (m["body"].as_str(), m["via"].as_str()),
        (Some("hello from A"), Some("sip")),
        "{m}"
    );
    assert!(a.wait("delivered", t).is_some(), "A hears it was delivered");
    b.send(&format!("msg {a_id} hi A, B here"));
    let m = a
        .wait_for(t, |v| v["event"] == "message" && v["from"] == b_id.as_str())
        .expect("A gets B's text");
    assert_eq!(m["body"], "hi A, B here", "{m}");
    // B restarts: its contact list comes back from its directory.
    b.send("x");
    drop(b);
    let mut b = device(&db, &["--bootstrap", &boot.addr]);
    b.send("contacts");
    let list = b.wait("contacts", t).expect("contacts");
    let rows = list["contacts"].as_array().expect("rows").clone();
    assert!(
        rows.iter()
            .any(|r| r["account"] == a_id.as_str() && r["active"] == true),
        "{list}"
    );
    drop((a, b, boot));
    let _ = std::fs::remove_dir_all(&tmp);
}

/// `--proxy`: a device with no UDP DHT node of its own (as behind Tor) reaches the DHT
/// through `jamisim node proxy`; a device on UDP sees it announced, it sees that one,
/// and A, through the proxy, connects to B and a text crosses over `sip`.
#[test]
fn a_device_through_a_dht_proxy_is_a_full_device() {
    use std::io::{BufRead, BufReader};
    let tmp = std::env::temp_dir().join(format!("jamisim-device-proxy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let (da, db) = (tmp.join("a"), tmp.join("b"));
    create_account(&da);
    create_account(&db);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut proxy = Command::new(env!("CARGO_BIN_EXE_jamisim"))
        .args([
            "node",
            "proxy",
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("jamisim node proxy");
    // "DHT proxy on http://127.0.0.1:P (node <id> on UDP 127.0.0.1:Q)"
    let mut first = String::new();
    BufReader::new(proxy.stdout.take().unwrap())
        .read_line(&mut first)
        .expect("the proxy's first line");
    let udp = first
        .rsplit("UDP ")
        .next()
        .and_then(|s| s.trim().strip_suffix(')'))
        .expect("the proxy's UDP address")
        .to_string();
    let mut a = device(&da, &["--proxy", &format!("127.0.0.1:{port}")]);
    let mut b = device(&db, &["--bootstrap", &udp]);
    let id = |n: &CliNode| n.started["account"].as_str().expect("account").to_string();
    let (a_id, b_id) = (id(&a), id(&b));
    assert!(a.started["node"].is_null(), "no UDP node: {}", a.started);
    let t = Duration::from_secs(30);
    b.send(&format!("track {a_id}"));
    a.send(&format!("track {b_id}"));
    for (watcher, of) in [(&b, &a_id), (&a, &b_id)] {
        let seen = watcher
            .wait_for(t, |v| {
                v["event"] == "presence"
                    && v["account"] == of.as_str()
                    && v["state"] == "seems reachable"
            })
            .expect("seems reachable");
        assert_eq!(seen["state"], "seems reachable");
    }
    a.send(&format!("connect {b_id}"));
    assert!(
        a.wait_for(t, |v| v["event"] == "channel_opened" && v["name"] == "sip")
            .is_some(),
        "A, through the proxy, connects to B and opens sip"
    );
    a.send(&format!("msg {b_id} through the proxy"));
    let m = b
        .wait_for(t, |v| v["event"] == "message" && v["from"] == a_id.as_str())
        .expect("B gets A's text");
    assert_eq!(m["body"], "through the proxy", "{m}");
    a.send("x");
    b.send("x");
    drop((a, b));
    let _ = proxy.kill();
    let _ = proxy.wait();
    let _ = std::fs::remove_dir_all(&tmp);
}
