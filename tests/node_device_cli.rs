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

#[test]
fn two_devices_see_each_other_seem_reachable() {
    let tmp = std::env::temp_dir().join(format!("jamisim-device-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let (da, db) = (tmp.join("a"), tmp.join("b"));
    create_account(&da);
    create_account(&db);
    // A plain DHT node both devices join through, as devices join through a bootstrap.
    let boot = CliNode::spawn(&[
        "node",
        "dht",
        "--bind",
        "127.0.0.1",
        "--port",
        "0",
        "--json",
    ]);
    let mut a = device(&da, &["--bootstrap", &boot.addr]);
    let mut b = device(&db, &["--bootstrap", &boot.addr]);
    let started = |n: &CliNode| n.started["account"].as_str().expect("account").to_string();
    let (a_id, b_id) = (started(&a), started(&b));
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
