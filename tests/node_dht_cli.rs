//! `jamisim node dht` as a script uses it: two nodes on loopback, JSON lines out,
//! dhtnode's command letters in.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

mod common;
use common::CliNode;

impl CliNode {
    fn start(extra: &[&str]) -> CliNode {
        let args = [
            "node",
            "dht",
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--json",
        ];
        CliNode::spawn(&[&args[..], extra].concat())
    }
}

impl CliNode {
    /// The public key id the node prints at start (with `--identity`).
    fn public_key_id(&self) -> String {
        self.wait("public_key_id", Duration::from_secs(10))
            .expect("a public_key_id line")["public_key_id"]
            .as_str()
            .expect("hex")
            .to_string()
    }
}

#[test]
fn two_cli_nodes_put_and_get_over_loopback() {
    let mut a = CliNode::start(&[]);
    let mut b = CliNode::start(&["--bootstrap", &a.addr.clone()]);
    assert!(
        b.wait("connected", Duration::from_secs(5)).is_some(),
        "b joins through a"
    );
    b.send("p some-key hello from b");
    let done = b
        .wait("put_done", Duration::from_secs(10))
        .expect("put finishes");
    assert!(done["stored_on"].as_u64().unwrap() >= 1, "{done}");
    a.send("g some-key");
    let v = a
        .wait("value", Duration::from_secs(10))
        .expect("a gets the value");
    assert_eq!(v["value"]["data"], hex("hello from b"));
    a.send("ll");
    let info = a.wait("info", Duration::from_secs(5)).expect("node info");
    assert_eq!(info["nodes"], 1, "a knows b: {info}");
    b.send("la");
    let la = b
        .wait("public_address", Duration::from_secs(5))
        .expect("b learnt its address from a");
    assert_eq!(la["addr"], "127.0.0.1");
    a.send("nonsense");
    assert!(
        a.wait("error", Duration::from_secs(5)).is_some(),
        "a bad command is an error line, not a crash"
    );
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// An identity directory holding a 2048-bit key (the CLI certifies it on first use;
/// RSA-4096 generation would only slow the test down).
fn identity_dir(tag: &str, seed: u64) -> std::path::PathBuf {
    use rand::SeedableRng;
    let dir = std::env::temp_dir().join(format!("jamisim-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
    let key = node::crypto::PrivateKey::generate(2048, &mut rng).unwrap();
    std::fs::write(dir.join("dht.key"), key.to_pkcs8_pem().unwrap()).unwrap();
    dir
}

#[test]
fn signed_and_encrypted_puts_between_two_cli_nodes() {
    let (da, db) = (identity_dir("a", 1), identity_dir("b", 2));
    let mut a = CliNode::start(&["--identity", da.to_str().unwrap()]);
    let a_key = a.public_key_id();
    let mut b = CliNode::start(&[
        "--identity",
        db.to_str().unwrap(),
        "--bootstrap",
        &a.addr.clone(),
    ]);
    assert!(b.wait("connected", Duration::from_secs(5)).is_some());
    assert!(
        da.join("dht.crt").exists(),
        "the key was certified and saved"
    );
    // b finds a's certificate on the DHT, encrypts for a; a decrypts what it gets.
    b.send(&format!("e secret-key {a_key} only for a"));
    let done = b
        .wait("put_done", Duration::from_secs(10))
        .expect("encrypted put finishes");
    assert!(done["stored_on"].as_u64().unwrap() >= 1, "{done}");
    a.send("g secret-key");
    let v = a
        .wait("value", Duration::from_secs(10))
        .expect("a gets and decrypts the value");
    assert_eq!(v["value"]["data"], hex("only for a"), "{v}");
    assert_eq!(v["value"]["to"], a_key, "{v}");
    // A signed put, then one more at the same key: each value is signed by b.
    b.send("s signed-key from b");
    assert!(b.wait("put_done", Duration::from_secs(10)).is_some());
    a.send("g signed-key");
    let v = a.wait("value", Duration::from_secs(10)).expect("a gets it");
    assert_eq!(v["value"]["data"], hex("from b"));
    assert!(v["value"]["owner"].is_string(), "signed: {v}");
    // An encrypted put for a key nobody announced fails with a reason.
    b.send(&format!("e other-key {} lost", "00".repeat(20)));
    let failed = b
        .wait("failed", Duration::from_secs(15))
        .expect("no certificate: the put fails");
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains("no certificate"),
        "{failed}"
    );
    let _ = std::fs::remove_dir_all(&da);
    let _ = std::fs::remove_dir_all(&db);
}

/// `--identity DIR`: a directory holding only `dht.key` (older jamisim) gets a
/// `dht.crt` chain for that key; the node id derives from it and survives restarts.
#[test]
fn identity_dir_gains_a_certificate_and_keeps_its_node_id() {
    use rand::SeedableRng;
    let dir = std::env::temp_dir().join(format!("jamisim-cli-identity-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
    let key = node::crypto::PrivateKey::generate(1024, &mut rng).unwrap();
    std::fs::write(dir.join("dht.key"), key.to_pkcs8_pem().unwrap()).unwrap();
    let expected = node::crypto::hex(&key.public_key().node_id());
    let dir_arg = dir.to_str().unwrap().to_string();
    let node_id = |dir_arg: &str| {
        let mut n = CliNode::start(&["--identity", dir_arg]);
        n.send("ll");
        let info = n.wait("info", Duration::from_secs(10)).expect("node info");
        info["id"].as_str().unwrap().to_string()
    };
    assert_eq!(node_id(&dir_arg), expected);
    let crt = std::fs::read(dir.join("dht.crt")).expect("dht.crt written");
    let chain = node::identity::decode_chain(&crt).expect("PEM chain");
    assert_eq!(chain[0].public_key(), Some(&key.public_key()));
    node::identity::verify_chain(&chain).expect("valid chain");
    assert_eq!(node_id(&dir_arg), expected);
    assert_eq!(std::fs::read(dir.join("dht.crt")).unwrap(), crt, "reused");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `jamisim node proxy` on loopback, joined to the DHT through `bootstrap`.
struct CliProxy {
    child: Child,
    addr: String,
}

impl CliProxy {
    fn start(bootstrap: &str) -> CliProxy {
        let mut child = Command::new(env!("CARGO_BIN_EXE_jamisim"))
            .args(["node", "proxy", "--port", "0", "--bind", "127.0.0.1"])
            .args(["--bootstrap", bootstrap])
            .stdout(Stdio::piped())
            .spawn()
            .expect("jamisim node proxy starts");
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        // "DHT proxy on http://127.0.0.1:PORT (node ... on UDP ...)"
        let addr = first
            .split("http://")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("proxy address in {first:?}"))
            .to_string();
        CliProxy { child, addr }
    }
}

impl Drop for CliProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `--proxy`: a node that never touches UDP puts, gets, listens, signs and encrypts
/// through `jamisim node proxy`, with a plain UDP node on the other side.
#[test]
fn a_cli_node_in_proxy_client_mode_uses_the_dht_through_the_proxy() {
    let (da, db) = (identity_dir("pa", 3), identity_dir("pb", 4));
    let mut a = CliNode::start(&["--identity", da.to_str().unwrap()]);
    let a_key = a.public_key_id();
    let proxy = CliProxy::start(&a.addr.clone());
    let mut b = CliNode::start(&["--identity", db.to_str().unwrap(), "--proxy", &proxy.addr]);
    let b_key = b.public_key_id();
    assert!(
        b.wait("connected", Duration::from_secs(10)).is_some(),
        "b is connected once the proxy's node knows a"
    );
    // Plain put through the proxy; the UDP node gets it.
    b.send("p via-proxy hello through the proxy");
    let done = b.wait("put_done", Duration::from_secs(10)).expect("put");
    assert_eq!(done["ok"], true, "{done}");
    a.send("g via-proxy");
    let v = a.wait("value", Duration::from_secs(10)).expect("a gets it");
    assert_eq!(v["value"]["data"], hex("hello through the proxy"));
    // b listens through the proxy and hears a's put over UDP.
    b.send("l to-b");
    assert!(b.wait("listening", Duration::from_secs(10)).is_some());
    a.send("p to-b hello from udp");
    let v = b
        .wait("value", Duration::from_secs(10))
        .expect("b hears it");
    assert_eq!(v["value"]["data"], hex("hello from udp"));
    // Signed through the proxy: a sees b's signature.
    b.send("s signed-via-proxy signed by b");
    assert!(b.wait("put_done", Duration::from_secs(10)).is_some());
    a.send("g signed-via-proxy");
    let v = a.wait("value", Duration::from_secs(10)).expect("a gets it");
    assert_eq!(v["value"]["owner"], b_key, "{v}");
    // b finds a's certificate through the proxy and encrypts for a.
    b.send(&format!("e secret-via-proxy {a_key} only for a"));
    let done = b.wait("put_done", Duration::from_secs(10)).expect("put");
    assert_eq!(done["ok"], true, "{done}");
    a.send("g secret-via-proxy");
    let v = a
        .wait("value", Duration::from_secs(10))
        .expect("a decrypts it");
    assert_eq!(v["value"]["data"], hex("only for a"), "{v}");
    // a finds b's certificate (announced through the proxy) and encrypts for b.
    a.send(&format!("e secret-for-b {b_key} only for b"));
    let done = a.wait("put_done", Duration::from_secs(15)).expect("put");
    assert!(done["stored_on"].as_u64().unwrap() >= 1, "{done}");
    b.send("g secret-for-b");
    let v = b
        .wait("value", Duration::from_secs(10))
        .expect("b decrypts it");
    assert_eq!(v["value"]["data"], hex("only for b"), "{v}");
    assert_eq!(v["value"]["to"], b_key, "{v}");
    // What needs UDP is refused, not faked.
    b.send("lr");
    let e = b
        .wait("error", Duration::from_secs(5))
        .expect("an error line");
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("not available through a proxy"),
        "{e}"
    );
    drop(b);
    drop(proxy);
    let _ = std::fs::remove_dir_all(&da);
    let _ = std::fs::remove_dir_all(&db);
}
