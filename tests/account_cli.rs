//! `jamisim node account` as a user drives it: create an account, show it, export it
//! with a password, import it as a second device elsewhere, revoke that device from the
//! first directory. Keys are 1024-bit (`--bits`, a hidden test option) to keep it quick.

use node::identity::{decode_chain, AccountArchive};
use std::path::Path;
use std::process::Command;

fn jamisim(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_jamisim"))
        .args(["node", "account"])
        .args(args)
        .output()
        .expect("jamisim runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(args: &[&str]) -> String {
    let (success, out, err) = jamisim(args);
    assert!(success, "jamisim node account {args:?} failed:\n{out}{err}");
    out
}

fn show(dir: &Path, password: &str) -> serde_json::Value {
    let out = ok(&[
        "show",
        "--dir",
        dir.to_str().unwrap(),
        "--password",
        password,
        "--json",
    ]);
    serde_json::from_str(out.trim()).expect("one JSON object")
}

#[test]
fn create_show_export_import_revoke() {
    let tmp = std::env::temp_dir().join(format!("jamisim-account-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let (a, b) = (tmp.join("a"), tmp.join("b"));
    let (a_s, b_s) = (a.to_str().unwrap(), b.to_str().unwrap());
    let bits = ["--bits", "1024"];

    let out = ok(&[&["create", "--dir", a_s][..], &bits].concat());
    assert!(out.contains("created account"), "{out}");
    for f in ["archive.gz", "ring_device.key", "ring_device.crt"] {
        assert!(a.join(f).is_file(), "{f} written");
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(a.join("ring_device.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "device key is private");
    // A second create would overwrite the account: refused.
    let (again, _, err) = jamisim(&[&["create", "--dir", a_s][..], &bits].concat());
    assert!(!again && err.contains("already holds an account"), "{err}");

    // What `show` reports is what the files say.
    let sa = show(&a, "");
    let id = sa["jami_id"].as_str().unwrap().to_string();
    let archive = AccountArchive::decode(&std::fs::read(a.join("archive.gz")).unwrap(), "")
        .expect("plain archive");
    let account = archive.account().unwrap();
    assert_eq!(id, node::crypto::hex(&account.account_id()));
    assert_eq!(sa["uri"], format!("jami:{id}"));
    let chain = decode_chain(&std::fs::read(a.join("ring_device.crt")).unwrap()).unwrap();
    assert_eq!(sa["device_id"], node::crypto::hex(&chain[0].long_id()));
    assert_eq!(sa["device_key_matches"], true);
    assert_eq!(sa["archive"], "readable");
    let names: Vec<&str> = sa["chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Jami device", "Jami", "Jami CA"]);
    assert!(
        sa["chain"][0]["not_after"].as_str().unwrap()
            > sa["chain"][0]["not_before"].as_str().unwrap()
    );
    let text = ok(&["show", "--dir", a_s]);
    assert!(text.contains(&id) && text.contains("Jami CA"), "{text}");
    // The eth key's address and the device receipt jamid would keep in its config.
    let eth = node::identity::eth::eth_address(&archive.eth_key).unwrap();
    assert_eq!(sa["eth_address"], eth);
    assert!(text.contains(&eth), "{text}");
    let receipt = sa["receipt"]
        .as_str()
        .expect("a receipt")
        .as_bytes()
        .to_vec();
    let sig = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(sa["receipt_signature"].as_str().unwrap())
            .unwrap()
    };
    let r = node::presence::Receipt::verify(&receipt, &sig, &account.account_key().public_key())
        .expect("the receipt verifies with the account key");
    assert_eq!(r.eth, eth);
    assert_eq!(r.dev.0, chain[0].short_id());

    // Export with a password; the file needs it.
    let exported = tmp.join("export.gz");
    let ex = exported.to_str().unwrap();
    ok(&["export", "--dir", a_s, "--out", ex, "--out-password", "pw"]);
    let bytes = std::fs::read(&exported).unwrap();
    assert!(AccountArchive::decode(&bytes, "").is_err());
    assert!(AccountArchive::decode(&bytes, "pw").is_ok());
    let (wrong, _, err) = jamisim(
        &[
            &["import", ex, "--dir", b_s, "--password", "nope"][..],
            &bits,
        ]
        .concat(),
    );
    assert!(!wrong && err.contains("wrong password"), "{err}");
    assert!(!b.join("archive.gz").exists(), "nothing written on failure");
    let junk = tmp.join("junk.gz");
    std::fs::write(&junk, &bytes[..bytes.len() / 2]).unwrap();
    let (bad, _, err) = jamisim(
        &[
            &[
                "import",
                junk.to_str().unwrap(),
                "--dir",
                b_s,
                "--password",
                "pw",
            ][..],
            &bits,
        ]
        .concat(),
    );
    assert!(!bad && err.contains("wrong password or corrupted"), "{err}");
    std::fs::write(&junk, b"\x1f\x8b\x08not really gzip").unwrap();
    let (bad, _, err) =
        jamisim(&[&["import", junk.to_str().unwrap(), "--dir", b_s][..], &bits].concat());
    assert!(!bad && err.contains("not gzip or zlib"), "{err}");

    // Import: same account, new device; b's archive keeps the password.
    ok(&[&["import", ex, "--dir", b_s, "--password", "pw"][..], &bits].concat());
    let sb = show(&b, "pw");
    assert_eq!(sb["jami_id"], id.as_str());
    assert_ne!(sb["device_id"], sa["device_id"]);
    let locked = show(&b, "");
    assert_eq!(
        locked["jami_id"],
        id.as_str(),
        "ids come from the device chain"
    );
    assert!(
        locked["archive"]
            .as_str()
            .unwrap()
            .contains("password is needed"),
        "{locked}"
    );

    // Revoke b's device from a, by certificate; then a's own device by id.
    let b_crt = b.join("ring_device.crt");
    let out = ok(&["revoke", "--dir", a_s, "--cert", b_crt.to_str().unwrap()]);
    assert!(out.contains(sb["device_id"].as_str().unwrap()), "{out}");
    let sa2 = show(&a, "");
    assert_eq!(sa2["revoked"].as_array().unwrap().len(), 1);
    assert_eq!(sa2["device_revoked"], false);
    let (twice, _, err) = jamisim(&["revoke", "--dir", a_s, "--cert", b_crt.to_str().unwrap()]);
    assert!(!twice && err.contains("already revoked"), "{err}");
    let crl = AccountArchive::decode(&std::fs::read(a.join("archive.gz")).unwrap(), "")
        .unwrap()
        .crl
        .expect("CRL in the archive");
    crl.verify_signed_by(account.certificate())
        .expect("signed by the account key");
    let b_cert = &decode_chain(&std::fs::read(&b_crt).unwrap()).unwrap()[0];
    assert!(crl.is_revoked(b_cert));
    ok(&[
        "revoke",
        "--dir",
        a_s,
        "--device",
        sa["device_id"].as_str().unwrap(),
    ]);
    let sa3 = show(&a, "");
    assert_eq!(sa3["device_revoked"], true);
    assert_eq!(sa3["revoked"].as_array().unwrap().len(), 2);

    // A device of another account cannot be revoked here.
    let c = tmp.join("c");
    ok(&[&["create", "--dir", c.to_str().unwrap()][..], &bits].concat());
    let (foreign, _, err) = jamisim(&[
        "revoke",
        "--dir",
        a_s,
        "--cert",
        c.join("ring_device.crt").to_str().unwrap(),
    ]);
    assert!(!foreign && err.contains("does not belong"), "{err}");
    std::fs::remove_dir_all(&tmp).unwrap();
}
