//! `jamisim node account link`: an archive published under a PIN on a loopback DHT
//! (two of our nodes: one stores, one publishes as an exporting device would) is
//! fetched, decrypted and turned into a new device of that account; a wrong PIN finds
//! nothing. `conformance/tests/jamid_archive.rs` does the same exchange with jamid.

use node::dht::engine::{Config, Dht, Event};
use node::dht::{InfoHash, Value};
use node::driver::{unix_ms, UdpDriver};
use node::identity::archive::generate_eth_key;
use node::identity::{link, AccountArchive, AccountIdentity};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

fn dht(seed: u64) -> Dht {
    Dht::new(
        Config::verifying(InfoHash::get(format!("link-cli-{seed}")), seed),
        unix_ms(),
    )
}

fn now() -> u64 {
    unix_ms() / 1000
}

#[test]
fn link_fetches_the_archive_published_under_a_pin() {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let account = AccountIdentity::generate(1024, now(), &mut rng).expect("account");
    let archive = AccountArchive::new(&account, generate_eth_key(&mut rng).to_vec());
    let pin = link::generate_pin(&mut rng);
    let (key, loc) = link::pin_key("pw", &pin, link::time_seed(now())).unwrap();
    let data = link::export_archive(&archive, &key, &mut rng).unwrap();

    let (addr_tx, addr_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let net = std::thread::spawn(move || {
        let mut store = UdpDriver::bind(dht(1), "127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = store.local_addr().unwrap();
        let mut publisher = UdpDriver::bind(dht(2), "127.0.0.1:0".parse().unwrap()).unwrap();
        publisher.dht.bootstrap(unix_ms(), addr);
        let mut stored = 0;
        let end = unix_ms() + 10_000;
        let mut put = false;
        while stored == 0 && unix_ms() < end {
            store
                .turn(Duration::from_millis(5), &mut |_, _| {})
                .unwrap();
            publisher
                .turn(Duration::from_millis(5), &mut |d, e| match e {
                    Event::Connected if !put => {
                        put = true;
                        d.put(unix_ms(), InfoHash(loc), Value::plain(1, 0, data.clone()));
                    }
                    Event::PutDone { stored_on, .. } => stored = stored_on,
                    _ => {}
                })
                .unwrap();
        }
        addr_tx.send((addr, stored)).unwrap();
        while stop_rx.try_recv().is_err() {
            store
                .turn(Duration::from_millis(20), &mut |_, _| {})
                .unwrap();
        }
    });
    let (addr, stored) = addr_rx.recv_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(stored, 1, "the archive is on the storing node");

    let tmp = std::env::temp_dir().join(format!("jamisim-link-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let run = |dir: &str, pin: &str| {
        Command::new(env!("CARGO_BIN_EXE_jamisim"))
            .args([
                "node",
                "account",
                "link",
                "--bits",
                "1024",
                "--timeout",
                "5",
            ])
            .args(["--dir", tmp.join(dir).to_str().unwrap()])
            .args(["--pin", pin, "--password", "pw"])
            .args(["--bootstrap", &addr.to_string()])
            .output()
            .expect("jamisim runs")
    };
    // PINs are shown lowercase and upper-cased before use.
    let out = run("ok", &pin.to_ascii_lowercase());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = node::crypto::hex(&account.account_id());
    assert!(text.contains(&format!("linked account {id}")), "{text}");
    let saved = AccountArchive::decode(&std::fs::read(tmp.join("ok/archive.gz")).unwrap(), "pw")
        .expect("saved with the password");
    assert_eq!(saved.account().unwrap().account_id(), account.account_id());
    let chain =
        node::identity::decode_chain(&std::fs::read(tmp.join("ok/ring_device.crt")).unwrap())
            .unwrap();
    assert_eq!(&chain[1..], account.chain());

    let wrong = run("wrong", "AAAAAAAA");
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        !wrong.status.success() && err.contains("no archive found"),
        "{err}"
    );
    assert!(!tmp.join("wrong").exists());

    stop_tx.send(()).unwrap();
    net.join().unwrap();
    std::fs::remove_dir_all(&tmp).unwrap();
}
