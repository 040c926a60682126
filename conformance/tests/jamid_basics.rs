//! The jamid harness against the real daemon (Debian jami-daemon, Jami 13.7): accounts
//! on loopback reach REGISTERED on the official dhtnode, two daemons see each other
//! online, and every process the harness started is gone once it is dropped.

use conformance::dhtnode::DhtNode;
use conformance::jamid::{internet_refs, AccountSetup, Jamid, LOOKUP_ERROR, NO_NAME_SERVER};
use conformance::jamid::{PrivateBus, BUS_NAME};
use conformance::netns::Netns;
use conformance::TempDir;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const DHTNODE_PORT: u16 = 4222;
/// Key generation (RSA-4096 CA, account and device keys) plus DHT bootstrap; NOTES.md
/// measured 1.5–4 s, so this leaves room for a loaded 2-core CI machine.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(90);
/// SIGTERM grace at the end. A fresh account's shutdown waits for its 3072-bit DH
/// parameters (about 5 s, longer on a busy machine); these tests only need the
/// processes gone, so they do not wait for that.
const GRACE: Duration = Duration::from_secs(3);

fn bootstrap() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], DHTNODE_PORT))
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether a process with this PID still exists (zombies included).
fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

struct Peer {
    jamid: Jamid,
    account: String,
    dir: TempDir,
}

fn start_peer(ns: &Netns, alias: &str) -> Peer {
    let dir = TempDir::new(&format!("jamid-{alias}")).expect("temp dir");
    let t0 = Instant::now();
    let jamid = Jamid::start(ns, dir.path()).expect("jamid starts on its private bus");
    eprintln!(
        "{alias}: jamid up on {} in {:?}",
        jamid.bus_address(),
        t0.elapsed()
    );
    let account = jamid
        .create_account(&AccountSetup::new(alias, bootstrap()))
        .expect("addAccount");
    Peer {
        jamid,
        account,
        dir,
    }
}

#[test]
fn account_reaches_registered_on_the_official_dhtnode() {
    if !conformance::jamid_or_skip() {
        return;
    }
    let _one = conformance::jamid::one_at_a_time();
    let ns = Netns::create("jsjamid").expect("namespace");
    let _dht = DhtNode::start(&ns, DHTNODE_PORT, None, false).expect("dhtnode");
    let t0 = Instant::now();
    let p = start_peer(&ns, "solo");
    let pids = p.jamid.pids();
    let waited = p
        .jamid
        .wait_for_registration(&p.account, REGISTER_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", tail(&p.jamid)));
    eprintln!(
        "REGISTERED {:?} after addAccount ({:?} from start)",
        waited,
        t0.elapsed()
    );

    assert_eq!(p.jamid.account_list().unwrap(), vec![p.account.clone()]);
    let uri = p.jamid.account_uri(&p.account).unwrap();
    let device = p.jamid.device_id(&p.account).unwrap();
    eprintln!("account {} jami id {uri} device {device}", p.account);
    assert!(is_hex(&uri, 40), "Account.username is the 40-hex id: {uri}");
    assert!(is_hex(&device, 64), "Account.deviceID is 64 hex: {device}");

    // Nothing in the live account points outside loopback.
    let details = p.jamid.account_details(&p.account).unwrap();
    assert_eq!(internet_refs(&details), vec![], "loopback-only account");
    assert_eq!(details["Account.hostname"], bootstrap().to_string());
    assert!(!details["RingNS.uri"].is_empty());
    assert_eq!(details["Account.upnpEnabled"], "false");

    // The registration signal was recorded as well as the state. The state can be read
    // over D-Bus a moment before the recorder thread has logged the signal, so allow it
    // a few seconds to arrive.
    let sig = p
        .jamid
        .signals()
        .wait("registrationStateChanged", 0, Duration::from_secs(5), |s| {
            s.args::<(String, String, i32, String)>()
                .is_ok_and(|(a, st, _, _)| a == p.account && st == "REGISTERED")
        })
        .expect("registrationStateChanged REGISTERED was signalled");
    assert_eq!(sig.interface, "ConfigurationManager");

    // The archive export writes a gzip file.
    let archive = p.dir.path().join("export.gz");
    assert!(p.jamid.export_to_file(&p.account, &archive, "").unwrap());
    let bytes = std::fs::read(&archive).unwrap();
    assert!(
        bytes.len() > 1000 && bytes.starts_with(&[0x1f, 0x8b]),
        "gzip archive"
    );

    // Name queries are answered by signal; with no name server listening the answer is
    // an error, at once (nothing leaves the namespace).
    let t2 = Instant::now();
    let found = p
        .jamid
        .lookup_address(&p.account, "", &uri, Duration::from_secs(20))
        .unwrap();
    eprintln!(
        "lookupAddress via {NO_NAME_SERVER}: {found:?} in {:?}",
        t2.elapsed()
    );
    assert_eq!(found.status, LOOKUP_ERROR);
    assert_eq!(
        (found.address.as_str(), found.name.as_str()),
        (uri.as_str(), "")
    );

    let mark = p.jamid.signals().mark();
    p.jamid.remove_account(&p.account).unwrap();
    p.jamid
        .signals()
        .wait("accountsChanged", mark, Duration::from_secs(10), |_| true)
        .expect("accountsChanged after removeAccount");
    assert!(p.jamid.account_list().unwrap().is_empty());

    let t1 = Instant::now();
    let log = p.jamid.log.clone();
    let stopped = p.jamid.stop(GRACE);
    eprintln!("stopped in {:?}: {stopped:?}", t1.elapsed());
    if stopped.killed {
        let t = std::fs::read_to_string(&log).unwrap_or_default();
        eprintln!(
            "jamid ignored SIGTERM; its log ends:\n{}",
            &t[t.len().saturating_sub(3000)..]
        );
    }
    for pid in pids {
        assert!(!alive(pid), "process {pid} started by the harness is gone");
    }
}

#[test]
fn two_jamids_see_each_other_online() {
    if !conformance::jamid_or_skip() {
        return;
    }
    let _one = conformance::jamid::one_at_a_time();
    let ns = Netns::create("jsjamid").expect("namespace");
    let _dht = DhtNode::start(&ns, DHTNODE_PORT, None, false).expect("dhtnode");
    let t0 = Instant::now();
    let a = start_peer(&ns, "alice");
    let b = start_peer(&ns, "bob");
    for p in [&a, &b] {
        p.jamid
            .wait_for_registration(&p.account, REGISTER_TIMEOUT)
            .unwrap_or_else(|e| panic!("{e:#}\n{}", tail(&p.jamid)));
    }
    eprintln!("both REGISTERED {:?} after start", t0.elapsed());
    let a_uri = a.jamid.account_uri(&a.account).unwrap();
    let b_uri = b.jamid.account_uri(&b.account).unwrap();
    assert_ne!(a_uri, b_uri);

    // Presence comes from the peer's device announcement on the DHT.
    let t1 = Instant::now();
    let (ma, mb) = (a.jamid.signals().mark(), b.jamid.signals().mark());
    // A well-formed id nobody announces: must stay offline.
    let nobody = "0123456789abcdef0123456789abcdef01234567";
    a.jamid.subscribe_buddy(&a.account, nobody, true).unwrap();
    a.jamid.subscribe_buddy(&a.account, &b_uri, true).unwrap();
    b.jamid.subscribe_buddy(&b.account, &a_uri, true).unwrap();
    let timeout = Duration::from_secs(30);
    a.jamid
        .wait_for_presence(&a.account, &b_uri, true, ma, timeout)
        .unwrap_or_else(|e| panic!("alice sees bob online: {e:#}\n{}", tail(&a.jamid)));
    b.jamid
        .wait_for_presence(&b.account, &a_uri, true, mb, timeout)
        .unwrap_or_else(|e| panic!("bob sees alice online: {e:#}\n{}", tail(&b.jamid)));
    eprintln!(
        "both online to each other {:?} after subscribeBuddy",
        t1.elapsed()
    );
    let status = |uri: &str| {
        let subs = a.jamid.subscriptions(&a.account).unwrap();
        subs.iter()
            .find(|s| s.get("Buddy").map(String::as_str) == Some(uri))
            .and_then(|s| s.get("Status").cloned())
    };
    assert_eq!(status(&b_uri).as_deref(), Some("Online"));
    assert_eq!(status(nobody).as_deref(), Some("Offline"));
    assert!(
        a.jamid
            .wait_for_presence(&a.account, nobody, true, ma, Duration::ZERO)
            .is_err(),
        "no online notification for an id nobody announced"
    );

    let pids: Vec<u32> = [&a, &b].iter().flat_map(|p| p.jamid.pids()).collect();
    let t2 = Instant::now();
    let (a, _a_dir) = (a.jamid, a.dir);
    let (b, _b_dir) = (b.jamid, b.dir);
    let stopped = Jamid::stop_all(vec![a, b], GRACE);
    eprintln!("both stopped in {:?}: {stopped:?}", t2.elapsed());
    for pid in pids {
        assert!(!alive(pid), "process {pid} started by the harness is gone");
    }
}

#[test]
fn private_bus_cannot_start_jamid() {
    if !conformance::jamid_or_skip() {
        return;
    }
    let dir = TempDir::new("jamid-bus").expect("temp dir");
    let bus = PrivateBus::start(dir.path()).expect("dbus-daemon");
    let conn = bus.connect().expect("connect");
    let err = conn
        .call_method(
            Some("org.freedesktop.DBus"),
            "/org/freedesktop/DBus",
            Some("org.freedesktop.DBus"),
            "StartServiceByName",
            &(BUS_NAME, 0u32),
        )
        .expect_err("a bus without service files cannot activate jamid");
    assert!(
        err.to_string().contains("ServiceUnknown"),
        "activation refused as unknown: {err}"
    );
}

fn tail(j: &Jamid) -> String {
    let t = j.log_text();
    let lines: Vec<&str> = t.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
