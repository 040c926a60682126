//! Name server domain rules (§5): names, addresses, the signed registration, the
//! registry's conflicts, and the JSON/status of every route — plus properties that
//! parsing arbitrary request bodies never panics.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hyper::Method;
use node::crypto::{self, PrivateKey};
use node::nameserver::client::verify_name_answer;
use node::nameserver::domain::{registration_body, verify_registration};
use node::nameserver::http::respond;
use node::nameserver::{Addr, FileStore, Insert, LookupError, Name, NsError, Registry};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde_json::json;
use std::sync::OnceLock;

/// Two 1024-bit account keys (size does not matter to the rules; generation is slow).
fn keys() -> &'static [PrivateKey; 2] {
    static KEYS: OnceLock<[PrivateKey; 2]> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        [
            PrivateKey::generate(1024, &mut rng).unwrap(),
            PrivateKey::generate(1024, &mut rng).unwrap(),
        ]
    })
}

fn addr_of(k: &PrivateKey) -> String {
    crypto::hex(&k.public_key().short_id())
}

fn name(s: &str) -> Name {
    Name::parse(s).unwrap()
}

/// The regex both ends use: `^[a-zA-Z0-9-_]{3,32}$`.
fn regex_ok(s: &str) -> bool {
    (3..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[test]
fn name_rules() {
    assert_eq!(name("Alice_B-1").as_str(), "alice_b-1");
    assert_eq!(name("abc").as_str(), "abc");
    assert!(Name::parse(&"a".repeat(32)).is_ok());
    for bad in ["ab", "", "a b c", "alice.x", "élise", "al/ce", "abc\n"] {
        assert_eq!(Name::parse(bad), Err(NsError::InvalidName), "{bad:?}");
    }
    assert_eq!(Name::parse(&"a".repeat(33)), Err(NsError::InvalidName));
}

#[test]
fn address_forms() {
    let hex = "00112233445566778899aabbccddeeff00112233";
    for form in [
        hex.to_string(),
        format!("0x{hex}"),
        format!("ring:{hex}"),
        hex.to_uppercase(),
    ] {
        let a = Addr::parse(&form).unwrap();
        assert_eq!(a.hex(), hex);
        assert_eq!(a.wire(), format!("0x{hex}"));
    }
    for bad in [
        "",
        "0x",
        &hex[1..],
        "zz112233445566778899aabbccddeeff00112233",
    ] {
        assert_eq!(Addr::parse(bad), Err(NsError::InvalidAddress), "{bad:?}");
    }
}

#[test]
fn valid_registration_is_accepted_with_pem_or_der_key() {
    let k = &keys()[0];
    let body = registration_body(k, &name("alice"), "0xabc").unwrap();
    let rec = verify_registration(&name("alice"), body.as_bytes()).unwrap();
    assert_eq!(rec.addr, addr_of(k));
    assert_eq!(rec.owner, "0xabc");
    // The key as base64 DER (also accepted by jamid's PublicKey loader).
    let mut v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["publickey"] = json!(B64.encode(k.public_key().spki_der()));
    assert!(verify_registration(&name("alice"), v.to_string().as_bytes()).is_ok());
    // The signature is over the lower-cased name: "ALICE" names the same thing.
    assert!(verify_registration(&name("ALICE"), body.as_bytes()).is_ok());
}

#[test]
fn registration_errors_and_their_status() {
    let [k0, k1] = keys();
    let good: serde_json::Value =
        serde_json::from_str(&registration_body(k0, &name("alice"), "").unwrap()).unwrap();
    let with = |f: &str, v: serde_json::Value| {
        let mut b = good.clone();
        b[f] = v;
        b.to_string()
    };
    let without = |f: &str| {
        let mut b = good.clone();
        b.as_object_mut().unwrap().remove(f);
        b.to_string()
    };
    let other_sig = B64.encode(k0.sign(b"bob").unwrap());
    let other_key = B64.encode(k1.public_key().to_pem().unwrap());
    let cases: Vec<(String, NsError, u16)> = vec![
        ("not json".into(), NsError::InvalidBody, 400),
        ("[1,2]".into(), NsError::InvalidBody, 400),
        (without("addr"), NsError::Missing("addr"), 400),
        (without("signature"), NsError::Missing("signature"), 400),
        (without("publickey"), NsError::Missing("publickey"), 400),
        (with("addr", json!("12")), NsError::InvalidAddress, 400),
        (with("addr", json!(5)), NsError::InvalidBody, 400),
        (
            with("publickey", json!("!!")),
            NsError::InvalidPublicKey,
            400,
        ),
        (
            with("publickey", json!(B64.encode("junk"))),
            NsError::InvalidPublicKey,
            400,
        ),
        (
            with("publickey", json!(other_key)),
            NsError::KeyMismatch,
            401,
        ),
        (
            with("signature", json!(other_sig)),
            NsError::BadSignature,
            401,
        ),
        (with("signature", json!("%%%")), NsError::BadSignature, 401),
    ];
    for (body, err, status) in cases {
        let got = verify_registration(&name("alice"), body.as_bytes());
        assert_eq!(got, Err(err.clone()), "{body}");
        assert_eq!(err.status(), status);
    }
    // A missing owner is accepted (accounts without an Ethereum key send "").
    assert!(verify_registration(&name("alice"), without("owner").as_bytes()).is_ok());
}

#[test]
fn registry_conflicts() {
    let [k0, k1] = keys();
    let reg = Registry::new(FileStore::in_memory());
    let body = |k, n| registration_body(k, &name(n), "").unwrap();
    assert_eq!(
        reg.register("Alice", body(k0, "alice").as_bytes()),
        Ok(Insert::Inserted)
    );
    assert_eq!(
        reg.register("alice", body(k0, "alice").as_bytes()),
        Ok(Insert::AlreadyOwned)
    );
    assert_eq!(
        reg.register("alice", body(k1, "alice").as_bytes()),
        Err(NsError::NameTaken)
    );
    assert_eq!(
        reg.register("alice2", body(k0, "alice2").as_bytes()),
        Err(NsError::AddressTaken)
    );
    assert_eq!(
        reg.register("x", body(k1, "xyz").as_bytes()),
        Err(NsError::InvalidName)
    );
    assert_eq!(reg.lookup_name("ALICE").unwrap().addr, addr_of(k0));
    assert_eq!(
        reg.lookup_addr(&format!("0x{}", addr_of(k0))).unwrap().name,
        "alice"
    );
    assert_eq!(reg.lookup_name("bob"), Err(NsError::NameNotFound));
    assert_eq!(reg.lookup_addr(&addr_of(k1)), Err(NsError::AddressNotFound));
    assert_eq!(reg.lookup_addr("nothex"), Err(NsError::InvalidAddress));
}

#[test]
fn routes_answer_json_as_section_5() {
    let k = &keys()[0];
    let reg = Registry::new(FileStore::in_memory());
    let body = registration_body(k, &name("alice"), "0xowner").unwrap();
    let sent: serde_json::Value = serde_json::from_str(&body).unwrap();
    let a = addr_of(k);
    let get = |p: &str| respond(&reg, &Method::GET, p, b"");

    assert_eq!(
        get("/name/alice"),
        (404, json!({"error": "name not registered"}))
    );
    assert_eq!(
        get(&format!("/addr/{a}")),
        (404, json!({"error": "address not registered"}))
    );
    assert_eq!(get("/addr/xyz"), (400, json!({"error": "invalid address"})));
    assert_eq!(
        respond(&reg, &Method::POST, "/name/alice", body.as_bytes()),
        (200, json!({"success": true}))
    );
    let (status, v) = get("/name/alice");
    assert_eq!(status, 200);
    assert_eq!(
        v,
        json!({"name": "alice", "addr": format!("0x{a}"),
               "publickey": sent["publickey"], "signature": sent["signature"]})
    );
    // What jamid does with that answer: strip 0x, check key id and signature.
    assert_eq!(
        verify_name_answer("alice", v.to_string().as_bytes()),
        Ok(a.clone())
    );
    assert_eq!(
        get(&format!("/addr/0x{a}")),
        (200, json!({"name": "alice"}))
    );
    assert_eq!(
        get("/name/alice/owner"),
        (200, json!({"name": "alice", "owner": "0xowner"}))
    );
    assert_eq!(
        get("/name/alice/publickey"),
        (
            200,
            json!({"name": "alice", "publickey": sent["publickey"]})
        )
    );
    assert_eq!(
        respond(
            &reg,
            &Method::POST,
            "/name/alice",
            body.replace(&a, &"0".repeat(40)).as_bytes()
        ),
        (
            401,
            json!({"success": false, "error": "public key does not match address"})
        )
    );
    let other = registration_body(&keys()[1], &name("alice"), "").unwrap();
    assert_eq!(
        respond(&reg, &Method::POST, "/name/alice", other.as_bytes()),
        (
            409,
            json!({"success": false, "error": "name already taken"})
        )
    );
    assert_eq!(
        respond(&reg, &Method::POST, "/name/a", b"{}").0,
        400,
        "invalid name"
    );
    assert_eq!(get("/").0, 404);
    assert_eq!(respond(&reg, &Method::DELETE, "/name/alice", b"").0, 405);
}

#[test]
fn forged_answers_are_refused_like_jamid() {
    let [k0, k1] = keys();
    let sig = B64.encode(k0.sign(b"alice").unwrap());
    let pk = B64.encode(k0.public_key().to_pem().unwrap());
    let a0 = addr_of(k0);
    let answer = |addr: &str, pk: &str, sig: &str| {
        json!({"name": "alice", "addr": addr, "publickey": pk, "signature": sig}).to_string()
    };
    let check = |body: String| verify_name_answer("alice", body.as_bytes());
    assert_eq!(check(answer(&format!("0x{a0}"), &pk, &sig)), Ok(a0.clone()));
    // Redirected to another account: key id no longer matches.
    assert!(matches!(
        check(answer(&addr_of(k1), &pk, &sig)),
        Err(LookupError::Invalid(_))
    ));
    // Signature over another name.
    let bob = B64.encode(k0.sign(b"bob").unwrap());
    assert!(matches!(
        check(answer(&a0, &pk, &bob)),
        Err(LookupError::Invalid(_))
    ));
    // Without key and signature the address is taken as is (jamid does the same).
    assert_eq!(check(json!({"addr": a0}).to_string()), Ok(a0.clone()));
    assert_eq!(
        check(json!({"addr": ""}).to_string()),
        Err(LookupError::NotFound)
    );
}

proptest! {
    #[test]
    fn name_parse_matches_the_regex(s in "[a-zA-Z0-9_.é/ -]{0,40}") {
        match Name::parse(&s) {
            Ok(n) => {
                prop_assert!(regex_ok(&s));
                prop_assert_eq!(n.as_str(), s.to_ascii_lowercase());
            }
            Err(e) => {
                prop_assert!(!regex_ok(&s));
                prop_assert_eq!(e, NsError::InvalidName);
            }
        }
    }

    #[test]
    fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..600)) {
        let reg = Registry::new(FileStore::in_memory());
        let (status, _) = respond(&reg, &Method::POST, "/name/alice", &body);
        prop_assert!(status == 400 || status == 401);
        let _ = verify_name_answer("alice", &body);
    }

    #[test]
    fn arbitrary_json_fields_never_panic(
        addr in proptest::option::of("(0x|ring:)?[0-9a-fA-F]{0,44}"),
        sig in proptest::option::of("[A-Za-z0-9+/=]{0,400}"),
        pk in proptest::option::of("[A-Za-z0-9+/=]{0,400}"),
        owner in proptest::option::of(".{0,20}"),
    ) {
        let mut v = serde_json::Map::new();
        for (k, f) in [("addr", addr), ("signature", sig), ("publickey", pk), ("owner", owner)] {
            if let Some(f) = f { v.insert(k.into(), json!(f)); }
        }
        let body = serde_json::Value::Object(v).to_string();
        let got = verify_registration(&name("alice"), body.as_bytes());
        prop_assert!(got.is_err());
        let _ = verify_name_answer("alice", body.as_bytes());
    }

    #[test]
    fn arbitrary_paths_never_panic(path in "[/a-z0-9%.]{0,60}") {
        let reg = Registry::new(FileStore::in_memory());
        let (status, _) = respond(&reg, &Method::GET, &path, b"");
        prop_assert!([400, 404].contains(&status));
    }
}
