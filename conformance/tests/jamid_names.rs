//! Our name server (`node::nameserver`, behind `jamisim node nameserver`) against the
//! real jamid 13.7: jamid registers names on it and resolves them both ways, gets the
//! right statuses for taken and invalid names, resolves names our own client
//! registered, and refuses records whose signature or key does not check out.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use conformance::dhtnode::DhtNode;
use conformance::jamid::{AccountSetup, Jamid, NameLookup};
use conformance::jamid::{LOOKUP_FOUND, LOOKUP_INVALID_NAME, LOOKUP_NOT_FOUND};
use conformance::jamid::{REGISTER_ALREADY_TAKEN, REGISTER_INVALID_NAME, REGISTER_SUCCESS};
use conformance::nameserver::{block_on_in, NameServer};
use conformance::netns::Netns;
use conformance::TempDir;
use node::crypto::{self, PrivateKey};
use node::identity::AccountIdentity;
use node::nameserver::{ClientConfig, Name, NsClient, Record, TcpConnector};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

const DHTNODE_PORT: u16 = 4222;
/// Key generation plus DHT bootstrap on a loaded 2-core machine (see jamid_basics.rs).
const REGISTER_TIMEOUT: Duration = Duration::from_secs(90);
/// One name request: NOTES.md measured about 0.11 s; jamid's own HTTP timeout is longer.
const NAME_TIMEOUT: Duration = Duration::from_secs(30);
const GRACE: Duration = Duration::from_secs(3);

fn bootstrap() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], DHTNODE_PORT))
}

struct Peer {
    jamid: Jamid,
    account: String,
    uri: String,
    _dir: TempDir,
}

fn start_peer(ns: &Netns, alias: &str, name_server: &str) -> Peer {
    let dir = TempDir::new(&format!("jamid-{alias}")).expect("temp dir");
    let jamid = Jamid::start(ns, dir.path()).expect("jamid starts on its private bus");
    let mut setup = AccountSetup::new(alias, bootstrap());
    setup.name_server = name_server.to_string();
    let account = jamid.create_account(&setup).expect("addAccount");
    jamid
        .wait_for_registration(&account, REGISTER_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", tail(&jamid)));
    let uri = jamid.account_uri(&account).unwrap();
    Peer {
        jamid,
        account,
        uri,
        _dir: dir,
    }
}

impl Peer {
    fn register(&self, name: &str) -> i32 {
        let t = Instant::now();
        let status = self
            .jamid
            .register_name(&self.account, "", name, NAME_TIMEOUT)
            .unwrap_or_else(|e| panic!("registerName {name}: {e:#}\n{}", tail(&self.jamid)));
        eprintln!("registerName({name:?}) -> {status} in {:?}", t.elapsed());
        status
    }
    fn lookup_name(&self, name: &str) -> NameLookup {
        let t = Instant::now();
        let r = self
            .jamid
            .lookup_name(&self.account, "", name, NAME_TIMEOUT)
            .unwrap_or_else(|e| panic!("lookupName {name}: {e:#}\n{}", tail(&self.jamid)));
        eprintln!("lookupName({name:?}) -> {r:?} in {:?}", t.elapsed());
        r
    }
    fn lookup_address(&self, addr: &str) -> NameLookup {
        let t = Instant::now();
        let r = self
            .jamid
            .lookup_address(&self.account, "", addr, NAME_TIMEOUT)
            .unwrap_or_else(|e| panic!("lookupAddress {addr}: {e:#}\n{}", tail(&self.jamid)));
        eprintln!("lookupAddress({addr:?}) -> {r:?} in {:?}", t.elapsed());
        r
    }
}

fn found(address: &str, name: &str) -> NameLookup {
    NameLookup {
        status: LOOKUP_FOUND,
        address: address.to_string(),
        name: name.to_string(),
    }
}

/// The store's records, read back from its file (one JSON object a line).
fn records(db: &Path) -> Vec<Record> {
    std::fs::read_to_string(db)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn client(server: &NameServer) -> NsClient<TcpConnector> {
    NsClient::new(TcpConnector, ClientConfig::new(server.addr().to_string()))
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn jamid_registers_and_resolves_names_on_our_server() {
    if !conformance::jamid_or_skip() {
        return;
    }
    let _one = conformance::jamid::one_at_a_time();
    let t0 = Instant::now();
    let ns = Netns::create("jsnames").expect("namespace");
    let _dht = DhtNode::start(&ns, DHTNODE_PORT, None, false).expect("dhtnode");
    let tmp = TempDir::new("names-db").expect("temp dir");
    let db = tmp.path().join("names.jsonl");
    let server = NameServer::start(&ns, &db).expect("our name server");
    let a = start_peer(&ns, "alice", &server.uri());
    let b = start_peer(&ns, "bob", &server.uri());
    eprintln!(
        "name server {} and two REGISTERED jamids in {:?}",
        server.uri(),
        t0.elapsed()
    );

    // jamid A registers; what it sent is what the store kept (verbatim but for addr).
    assert_eq!(a.register("alice_jami-1"), REGISTER_SUCCESS);
    let recs = records(&db);
    assert_eq!(recs.len(), 1, "{recs:?}");
    let rec = &recs[0];
    assert_eq!(
        (rec.name.as_str(), rec.addr.as_str()),
        ("alice_jami-1", a.uri.as_str())
    );
    let pem = String::from_utf8(B64.decode(&rec.publickey).expect("publickey is base64"))
        .expect("publickey is PEM text");
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
    let sig = B64.decode(&rec.signature).expect("signature is base64");
    eprintln!(
        "jamid's registration: owner {:?}, publickey = base64(PEM, {} bytes), signature {} bytes",
        rec.owner,
        pem.len(),
        sig.len()
    );
    a.jamid
        .wait_for_volatile(
            &a.account,
            "Account.registeredName",
            "alice_jami-1",
            NAME_TIMEOUT,
        )
        .expect("jamid records the name it registered");

    // jamid B resolves it both ways (and re-verifies A's signature on the name answer).
    assert_eq!(b.lookup_name("alice_jami-1"), found(&a.uri, "alice_jami-1"));
    assert_eq!(b.lookup_address(&a.uri), found(&a.uri, "alice_jami-1"));
    assert_eq!(b.lookup_name("nobody-here").status, LOOKUP_NOT_FOUND);
    let unknown = "0123456789abcdef0123456789abcdef01234567";
    assert_eq!(b.lookup_address(unknown).status, LOOKUP_NOT_FOUND);

    // A taken name, an invalid one, then B's own.
    assert_eq!(b.register("alice_jami-1"), REGISTER_ALREADY_TAKEN);
    // jamid checks names itself: invalid ones never reach the server.
    let asked = server.connections();
    assert_eq!(b.register("no"), REGISTER_INVALID_NAME);
    assert_eq!(b.register("bad name!"), REGISTER_INVALID_NAME);
    assert_eq!(server.connections(), asked, "invalid names were sent");
    assert_eq!(
        records(&db).len(),
        1,
        "refused registrations stored nothing"
    );
    // It lower-cases a name before signing and sending it.
    assert_eq!(b.register("Bob_Jami"), REGISTER_SUCCESS);
    assert!(
        server.connections() > asked,
        "registrations reach the server"
    );
    assert_eq!(records(&db)[1].name, "bob_jami");
    // Registering one's own name again succeeds.
    assert_eq!(b.register("bob_jami"), REGISTER_SUCCESS);
    // Any case resolves; jamid echoes the name as it was asked.
    assert_eq!(a.lookup_name("BOB_jami"), found(&b.uri, "BOB_jami"));
    // A already has a name: our server answers 403, which jamid reports as taken.
    assert_eq!(a.register("alice-second"), REGISTER_ALREADY_TAKEN);
    assert_eq!(records(&db).len(), 2);

    // Our client registers for an account we generated; jamid resolves it both ways.
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let ours = AccountIdentity::generate(2048, now_secs(), &mut rng).expect("our account");
    let our_uri = ours.uri().trim_start_matches("jami:").to_string();
    let key = ours.account_key().clone();
    let c = client(&server);
    let t = Instant::now();
    let reg = block_on_in(&ns, async move {
        let r = c.register_name(&key, "our-node-1", "").await;
        // And our client reads jamid's registration, verifying jamid's signature.
        (r, c.lookup_name("alice_jami-1").await)
    })
    .unwrap();
    eprintln!("our client: register + lookup {reg:?} in {:?}", t.elapsed());
    assert_eq!(reg, (Ok(()), Ok(a.uri.clone())));
    assert_eq!(a.lookup_name("our-node-1"), found(&our_uri, "our-node-1"));
    assert_eq!(a.lookup_address(&our_uri), found(&our_uri, "our-node-1"));
    assert_eq!(records(&db).len(), 3);

    let (a, b) = (a.jamid, b.jamid);
    Jamid::stop_all(vec![a, b], GRACE);
    eprintln!("whole scenario {:?}", t0.elapsed());
}

/// Appends `rec` to the store file (as the store itself writes it).
fn plant(db: &Path, rec: &Record) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(db)
        .unwrap();
    writeln!(f, "{}", serde_json::to_string(rec).unwrap()).unwrap();
}

fn signed(key: &PrivateKey, name: &str, signed_text: &str) -> Record {
    let pk = key.public_key();
    Record {
        name: Name::parse(name).unwrap().as_str().to_string(),
        addr: crypto::hex(&pk.short_id()),
        owner: String::new(),
        publickey: B64.encode(pk.to_pem().unwrap()),
        signature: B64.encode(key.sign(signed_text.as_bytes()).unwrap()),
    }
}

#[test]
fn jamid_refuses_records_that_do_not_verify() {
    if !conformance::jamid_or_skip() {
        return;
    }
    let _one = conformance::jamid::one_at_a_time();
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let (k1, k2, k3) = (
        PrivateKey::generate(2048, &mut rng).unwrap(),
        PrivateKey::generate(2048, &mut rng).unwrap(),
        PrivateKey::generate(2048, &mut rng).unwrap(),
    );
    let tmp = TempDir::new("names-db").expect("temp dir");
    let db = tmp.path().join("names.jsonl");
    // Control: a correct record put straight into the store.
    let honest = signed(&k1, "honest-rec", "honest-rec");
    // Signed by the right key, but over another name.
    let bad_sig = signed(&k2, "forged-sig", "other-name");
    // A valid signature by k3, under an address k3's key does not hash to.
    let mut bad_key = signed(&k3, "forged-key", "forged-key");
    bad_key.addr = "00112233445566778899aabbccddeeff00112233".into();
    for r in [&honest, &bad_sig, &bad_key] {
        plant(&db, r);
    }

    let ns = Netns::create("jsnames").expect("namespace");
    let _dht = DhtNode::start(&ns, DHTNODE_PORT, None, false).expect("dhtnode");
    let server = NameServer::start(&ns, &db).expect("our name server");
    let p = start_peer(&ns, "carol", &server.uri());

    assert_eq!(
        p.lookup_name("honest-rec"),
        found(&honest.addr, "honest-rec")
    );
    let forged_sig = p.lookup_name("forged-sig");
    let forged_key = p.lookup_name("forged-key");
    // The address answer carries no key or signature, so nothing there to refuse.
    let by_addr = p.lookup_address(&bad_sig.addr);
    eprintln!("bad signature: {forged_sig:?}; key/addr mismatch: {forged_key:?}; addr lookup of the bad-signature record: {by_addr:?}");
    // Status 1 is jamid's `invalidResponse` (the same code as an invalid name).
    for r in [&forged_sig, &forged_key] {
        assert_eq!(
            r.status, LOOKUP_INVALID_NAME,
            "jamid must refuse a forged record: {r:?}"
        );
        assert!(r.address.is_empty(), "{r:?}");
    }
    assert_eq!(by_addr, found(&bad_sig.addr, "forged-sig"));
    p.jamid.stop(GRACE);
}

fn tail(j: &Jamid) -> String {
    let t = j.log_text();
    let lines: Vec<&str> = t.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
