//! Account archives (PROTOCOLS §4.3) exchanged with the real jamid 13.7 in both
//! directions, without and with a password: jamid imports an archive we wrote and runs
//! the same account (Jami ID, account certificate byte for byte, REGISTERED on the
//! official dhtnode); we read the archives jamid exports and find the account and the
//! device chain jamid runs with. Malformed archives and wrong passwords are refused by
//! both sides. PIN linking over the DHT works both ways.

use conformance::dhtnode::DhtNode;
use conformance::jamid::{AccountSetup, Jamid};
use conformance::netns::Netns;
use conformance::TempDir;
use node::crypto::hex;
use node::dht::engine::{Config, Dht, Event};
use node::dht::{InfoHash as DhtKey, Value, ValueData};
use node::driver::{unix_ms, UdpDriver};
use node::identity::account::JAMI_RSA_BITS;
use node::identity::archive::generate_eth_key;
use node::identity::link;
use node::identity::{
    decode_chain, verify_device_chain, AccountArchive, AccountIdentity, ArchiveError, Certificate,
};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const DHTNODE_PORT: u16 = 4223;
/// Import = Argon2 key stretching (password case) plus a new RSA-4096 device key plus
/// DHT bootstrap, on a shared 2-core machine.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(120);
const GRACE: Duration = Duration::from_secs(3);
const PASSWORD: &str = "archive pw é";

fn bootstrap() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], DHTNODE_PORT))
}

fn rng() -> ChaCha20Rng {
    let mut seed = [0u8; 32];
    rand::rng().fill(&mut seed);
    ChaCha20Rng::from_seed(seed)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The files jamid keeps for `account`: `$XDG_DATA_HOME/jami/<account>/`.
fn account_dir(home: &Path, account: &str) -> PathBuf {
    home.join("data").join("jami").join(account)
}

/// The device chain jamid runs the account with (`ring_device.crt`).
fn device_chain(home: &Path, account: &str) -> Vec<Certificate> {
    let path = account_dir(home, account).join("ring_device.crt");
    let pem = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    decode_chain(&pem).expect("jamid's ring_device.crt parses")
}

fn tail(j: &Jamid) -> String {
    let t = j.log_text();
    let lines: Vec<&str> = t.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

#[test]
fn jamid_runs_the_accounts_of_our_archives() {
    if !conformance::jamid_or_skip() {
        return;
    }
    let _one = conformance::jamid::one_at_a_time();
    let mut rng = rng();
    let home = TempDir::new("jamid-import").expect("temp dir");
    let t0 = Instant::now();
    let ours: Vec<_> = ["", PASSWORD]
        .into_iter()
        .enumerate()
        .map(|(i, pw)| {
            let account = AccountIdentity::generate(JAMI_RSA_BITS, now(), &mut rng).expect("keys");
            let mut archive = AccountArchive::new(&account, generate_eth_key(&mut rng).to_vec());
            // An old device, revoked: the archive carries the account CRL.
            let old = account.new_device(1024, now(), &mut rng).expect("device");
            archive
                .revoke_device(old.certificate(), now(), &mut rng)
                .expect("revoke");
            let path = home.path().join(format!("ours{i}.gz"));
            std::fs::write(&path, archive.encode(pw, &mut rng).expect("encode")).unwrap();
            (pw, account, path, archive.crl)
        })
        .collect();
    let (ours, crls): (Vec<_>, Vec<_>) = ours
        .into_iter()
        .map(|(pw, a, p, crl)| ((pw, a, p), crl))
        .unzip();
    eprintln!("two RSA-4096 accounts + archives in {:?}", t0.elapsed());
    // A malformed archive: ours, cut in half.
    let cut = home.path().join("cut.gz");
    let whole = std::fs::read(&ours[0].2).unwrap();
    std::fs::write(&cut, &whole[..whole.len() / 2]).unwrap();

    let ns = Netns::create("jsjarch").expect("namespace");
    let _dht = DhtNode::start(&ns, DHTNODE_PORT, None, false).expect("dhtnode");
    let jamid = Jamid::start(&ns, home.path()).expect("jamid");
    for (i, (pw, account, path)) in ours.iter().enumerate() {
        let t1 = Instant::now();
        let setup = AccountSetup::new("imported", bootstrap()).with_archive(path, pw);
        let acc = jamid.create_account(&setup).expect("addAccount");
        let waited = jamid
            .wait_for_registration(&acc, REGISTER_TIMEOUT)
            .unwrap_or_else(|e| panic!("{e:#}\n{}", tail(&jamid)));
        eprintln!(
            "password {:?}: REGISTERED {waited:?} after addAccount ({:?} with the call)",
            !pw.is_empty(),
            t1.elapsed()
        );
        assert_eq!(
            jamid.account_uri(&acc).unwrap(),
            hex(&account.account_id()),
            "Account.username is our Jami ID"
        );
        // jamid's new device is certified by our account certificate, which it carries
        // byte for byte, above our CA.
        let chain = device_chain(home.path(), &acc);
        assert_eq!(&chain[1..], account.chain(), "our account chain, verbatim");
        let info = verify_device_chain(&chain).expect("device chain verifies");
        assert_eq!(info.account_id, account.account_id());
        assert_eq!(hex(&info.device_id), jamid.device_id(&acc).unwrap());
        // The archive jamid keeps for the account holds our keys.
        let kept = std::fs::read(account_dir(home.path(), &acc).join("archive.gz")).unwrap();
        let kept = AccountArchive::decode(&kept, pw).expect("jamid's copy decodes");
        assert_eq!(
            kept.account_key.public_key(),
            account.account_key().public_key()
        );
        assert_eq!(
            kept.ca_key.map(|k| k.public_key()),
            account.ca_key().map(|k| k.public_key())
        );
        assert_eq!(kept.account_chain, account.chain());
        assert_eq!(
            kept.crl.as_ref().map(|c| c.der()),
            crls[i].as_ref().map(|c| c.der()),
            "jamid keeps our CRL verbatim"
        );
    }

    // jamid refuses what our decoder refuses: a wrong password, a cut archive.
    for (what, path, pw) in [
        ("wrong password", &ours[1].2, "not it"),
        ("truncated archive", &cut, ""),
    ] {
        let bytes = std::fs::read(path).unwrap();
        let ours_err = AccountArchive::decode(&bytes, pw).expect_err(what);
        let t1 = Instant::now();
        let setup = AccountSetup::new("bad", bootstrap()).with_archive(path, pw);
        let acc = jamid.create_account(&setup).expect("addAccount answers");
        let outcome = refused(&jamid, &acc, Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("jamid accepted a {what}: {e:#}\n{}", tail(&jamid)));
        eprintln!(
            "{what}: ours {ours_err:?} ({ours_err}); jamid: {outcome} after {:?}",
            t1.elapsed()
        );
    }
    jamid.stop(GRACE);
}

/// Waits until jamid gives up on `account`: an `ERROR_*` registration state, or the
/// account gone from the list. Errors if it registers or neither happens in time.
fn refused(jamid: &Jamid, account: &str, timeout: Duration) -> anyhow::Result<String> {
    let t0 = Instant::now();
    loop {
        if !jamid.account_list()?.iter().any(|a| a == account) {
            return Ok("account removed".into());
        }
        let status = jamid
            .volatile_details(account)?
            .get("Account.registrationStatus")
            .cloned()
            .unwrap_or_default();
        if status.starts_with("ERROR") {
            return Ok(format!("registration status {status}"));
        }
        anyhow::ensure!(status != "REGISTERED", "account registered");
        anyhow::ensure!(t0.elapsed() < timeout, "still {status:?} after {timeout:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn we_read_the_archives_jamid_exports() {
    if !conformance::jamid_or_skip() {
        return;
    }
    let _one = conformance::jamid::one_at_a_time();
    let mut rng = rng();
    let home = TempDir::new("jamid-export").expect("temp dir");
    let ns = Netns::create("jsjarch").expect("namespace");
    let _dht = DhtNode::start(&ns, DHTNODE_PORT, None, false).expect("dhtnode");
    let jamid = Jamid::start(&ns, home.path()).expect("jamid");
    for (i, pw) in ["", PASSWORD].into_iter().enumerate() {
        let mut setup = AccountSetup::new(&format!("exporter{i}"), bootstrap());
        if !pw.is_empty() {
            setup
                .extra
                .insert("Account.archivePassword".into(), pw.into());
            setup
                .extra
                .insert("Account.archiveHasPassword".into(), "true".into());
        }
        let t1 = Instant::now();
        let acc = jamid.create_account(&setup).expect("addAccount");
        jamid
            .wait_for_registration(&acc, REGISTER_TIMEOUT)
            .unwrap_or_else(|e| panic!("{e:#}\n{}", tail(&jamid)));
        eprintln!(
            "password {:?}: created and REGISTERED in {:?}",
            !pw.is_empty(),
            t1.elapsed()
        );
        let path = home.path().join(format!("export{i}.gz"));
        assert!(
            jamid.export_to_file(&acc, &path, pw).unwrap(),
            "exportToFile"
        );
        let file = std::fs::read(&path).unwrap();
        assert_eq!(
            file.starts_with(&[0x1f, 0x8b]),
            pw.is_empty(),
            "gzip exactly when there is no password"
        );

        let t2 = Instant::now();
        let archive = AccountArchive::decode(&file, pw).expect("decode jamid's export");
        eprintln!("decoded in {:?}", t2.elapsed());
        let account = archive.account().expect("keys match certificates");
        let uri = jamid.account_uri(&acc).unwrap();
        assert_eq!(hex(&account.account_id()), uri, "same Jami ID");
        assert!(account.ca_key().is_some(), "the CA key travels too");
        assert_eq!(archive.eth_key.len(), 32);

        // The device jamid runs is issued by the exported account certificate.
        let chain = device_chain(home.path(), &acc);
        assert_eq!(&chain[1..], account.chain());
        let info = verify_device_chain(&chain).expect("jamid's chain verifies");
        assert_eq!(hex(&info.device_id), jamid.device_id(&acc).unwrap());
        assert_eq!(info.account_id, account.account_id());

        // Importing = a new device of the same account.
        let dev = account.new_device(1024, now(), &mut rng).expect("device");
        assert_eq!(dev.account_id(), account.account_id());
        assert_ne!(dev.device_id(), info.device_id);

        // The wrong password, or none, is refused with a clear error.
        if pw.is_empty() {
            assert!(AccountArchive::decode(&file[..file.len() / 2], "").is_err());
        } else {
            assert_eq!(
                AccountArchive::decode(&file, "wrong").unwrap_err(),
                ArchiveError::Decrypt
            );
            assert_eq!(
                AccountArchive::decode(&file, "").unwrap_err(),
                ArchiveError::PasswordRequired
            );
            // jamid itself will not export with a wrong password.
            let other = home.path().join("wrong.gz");
            assert!(!jamid.export_to_file(&acc, &other, "wrong").unwrap());
        }
    }
    jamid.stop(GRACE);
}

fn our_dht_node(seed: u64) -> Dht {
    Dht::new(
        Config::verifying(DhtKey::get(format!("jamisim-link-{seed}")), seed),
        unix_ms(),
    )
}

/// PIN linking (§4.4) with jamid, both ways, through the official dhtnode: jamid's
/// `exportOnRing` PIN lets our node fetch and decrypt its archive; an archive we put
/// under our PIN is imported by jamid (`Account.archivePIN`) as a new device of our
/// account.
#[test]
fn pin_linking_with_jamid_both_ways() {
    if !conformance::jamid_or_skip() {
        return;
    }
    let _one = conformance::jamid::one_at_a_time();
    let mut rng = rng();
    let home = TempDir::new("jamid-link").expect("temp dir");
    let ns = Netns::create("jsjarch").expect("namespace");
    let _dht = DhtNode::start(&ns, DHTNODE_PORT, None, false).expect("dhtnode");
    let jamid = Jamid::start(&ns, home.path()).expect("jamid");

    // jamid → us.
    let mut setup = AccountSetup::new("exporter", bootstrap());
    setup
        .extra
        .insert("Account.archivePassword".into(), PASSWORD.into());
    setup
        .extra
        .insert("Account.archiveHasPassword".into(), "true".into());
    let acc = jamid.create_account(&setup).expect("addAccount");
    jamid
        .wait_for_registration(&acc, REGISTER_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", tail(&jamid)));
    let uri = jamid.account_uri(&acc).unwrap();
    let t0 = Instant::now();
    let (status, pin) = jamid
        .export_on_ring(&acc, PASSWORD, Duration::from_secs(60))
        .expect("exportOnRingEnded");
    eprintln!(
        "exportOnRing: status {status}, PIN {pin:?} in {:?}",
        t0.elapsed()
    );
    assert_eq!(status, 0, "export succeeded");
    assert_eq!(pin.len(), link::PIN_LEN);
    let seed = link::time_seed(now());
    let keys: Vec<([u8; 32], [u8; 20])> = [seed, seed - 1]
        .iter()
        .map(|s| link::pin_key(PASSWORD, &pin, *s).expect("stretch"))
        .collect();
    let fetched = ns
        .spawn(move || -> anyhow::Result<(Vec<u8>, usize)> {
            let mut d = UdpDriver::bind(our_dht_node(1), "127.0.0.1:0".parse()?)?;
            d.dht.bootstrap(unix_ms(), bootstrap());
            anyhow::ensure!(
                d.run_until(Duration::from_secs(10), |e| matches!(e, Event::Connected))?,
                "no bootstrap"
            );
            for (i, (_, loc)) in keys.iter().enumerate() {
                let op = d.dht.get(unix_ms(), DhtKey(*loc));
                let mut found = None;
                d.run_until(Duration::from_secs(10), |e| match e {
                    Event::Values { op: o, values, .. } if *o == op => {
                        found = values.iter().find_map(|v| match &v.data {
                            ValueData::Plain(b) => Some(b.data.clone()),
                            _ => None,
                        });
                        found.is_some()
                    }
                    Event::GetDone { op: o, .. } => *o == op,
                    _ => false,
                })?;
                if let Some(data) = found {
                    return Ok((data, i));
                }
            }
            anyhow::bail!("nothing at the PIN locations")
        })
        .join()
        .expect("our node thread")
        .expect("our node gets jamid's export");
    let (data, which) = fetched;
    let key = link::pin_key(PASSWORD, &pin, seed - which as u64)
        .unwrap()
        .0;
    let archive = link::import_archive(&data, &key).expect("decrypts with the PIN key");
    assert_eq!(
        hex(&archive.account().unwrap().account_id()),
        uri,
        "jamid's account"
    );
    assert!(
        link::import_archive(&data, &link::pin_key("wrong", &pin, seed).unwrap().0).is_err(),
        "a wrong password gives another key"
    );
    eprintln!(
        "our node linked jamid's account {uri} in {:?}",
        t0.elapsed()
    );

    // us → jamid.
    let account = AccountIdentity::generate(JAMI_RSA_BITS, now(), &mut rng).expect("keys");
    let ours = AccountArchive::new(&account, generate_eth_key(&mut rng).to_vec());
    let pin = link::generate_pin(&mut rng);
    let (key, loc) = link::pin_key("", &pin, link::time_seed(now())).unwrap();
    let data = link::export_archive(&ours, &key, &mut rng).expect("export");
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let server = ns.spawn(move || -> anyhow::Result<usize> {
        let mut d = UdpDriver::bind(our_dht_node(2), "127.0.0.1:0".parse()?)?;
        d.dht.bootstrap(unix_ms(), bootstrap());
        d.run_until(Duration::from_secs(10), |e| matches!(e, Event::Connected))?;
        d.dht.put(unix_ms(), DhtKey(loc), Value::plain(1, 0, data));
        let mut stored = 0;
        d.run_until(Duration::from_secs(10), |e| {
            if let Event::PutDone { stored_on, .. } = e {
                stored = *stored_on;
            }
            matches!(e, Event::PutDone { .. })
        })?;
        // Keep serving until jamid is done.
        while stop_rx.try_recv().is_err() {
            d.turn(Duration::from_millis(50), &mut |_, _| {})?;
        }
        Ok(stored)
    });
    let t1 = Instant::now();
    let setup = AccountSetup::new("linked", bootstrap()).with_pin(&pin, "");
    let acc = jamid.create_account(&setup).expect("addAccount with a PIN");
    let res = jamid.wait_for_registration(&acc, REGISTER_TIMEOUT);
    stop_tx.send(()).ok();
    let stored = server.join().expect("server thread").expect("our node");
    res.unwrap_or_else(|e| panic!("jamid links with our PIN: {e:#}\n{}", tail(&jamid)));
    eprintln!(
        "jamid linked our account with PIN {pin} in {:?} (our put stored on {stored} node(s))",
        t1.elapsed()
    );
    assert_eq!(jamid.account_uri(&acc).unwrap(), hex(&account.account_id()));
    let chain = device_chain(home.path(), &acc);
    assert_eq!(&chain[1..], account.chain());
    jamid.stop(GRACE);
}
