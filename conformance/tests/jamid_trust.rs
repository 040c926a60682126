//! Trust requests between our node and the real jamid (Jami 13.7) over the official
//! dhtnode (PROTOCOLS §4.6): our request reaches jamid as `incomingTrustRequest` and
//! its acceptance confirms our contact; jamid's request reaches us with its payload and
//! a verified sender chain and our acceptance confirms jamid's contact; a contact's
//! request is auto-confirmed; jamid's decline and ban, and ours, behave as jamid's
//! sources say; jamid's own `contacts` file reads back with our decoder.

use conformance::jamid::{Details, Jamid, Signal};
use node::contacts::{
    self, ContactEvent, ContactList, ContactManager, Refusal, TrustEvent, TrustStats,
};
use node::dht::engine::{Config, Event};
use node::dht::secure::SecureDht;
use node::dht::InfoHash;
use node::driver::{unix_ms, UdpDriver};
use node::identity::{AccountIdentity, DeviceIdentity, NodeIdentity};
use node::presence::DeviceAnnouncer;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::{Duration, Instant};

const DHTNODE_PORT: u16 = 4248;
const STEP: Duration = Duration::from_secs(30);
/// How long "nothing happens" is watched for.
const QUIET: Duration = Duration::from_secs(8);
const GRACE: Duration = Duration::from_secs(3);

/// Our three devices: A and B (each its own account), C (for decline and ban).
const A: usize = 0;
const B: usize = 1;
const C: usize = 2;

enum Cmd {
    Send(usize, InfoHash, String, Vec<u8>),
    Accept(usize, InfoHash),
    Ban(usize, InfoHash),
    Snapshot(usize),
    Stop,
}

#[derive(Debug)]
enum Report {
    Connected(usize),
    Trust(usize, TrustEvent),
    Snapshot(usize, ContactList),
}

struct Dev {
    driver: UdpDriver<SecureDht>,
    announcer: DeviceAnnouncer,
    mgr: ContactManager,
    connected: bool,
}

fn run_node(
    ids: Vec<(AccountIdentity, DeviceIdentity)>,
    cmds: Receiver<Cmd>,
    tx: Sender<Report>,
) -> Vec<TrustStats> {
    let mut rng = ChaCha20Rng::seed_from_u64(60);
    let mut devs: Vec<Dev> = ids
        .iter()
        .enumerate()
        .map(|(i, (account, device))| {
            let identity =
                NodeIdentity::new(device.key().clone(), device.chain().to_vec()).unwrap();
            let cfg = Config::verifying(InfoHash::get("replaced"), 61 + i as u64);
            let dht = SecureDht::new(cfg, Some(identity), unix_ms());
            let mut driver = UdpDriver::bind(dht, "127.0.0.1:0".parse().unwrap()).unwrap();
            driver
                .dht
                .bootstrap(unix_ms(), SocketAddr::from(([127, 0, 0, 1], DHTNODE_PORT)));
            let announcer =
                DeviceAnnouncer::new(account, device, rng.random_range(1..1u64 << 53)).unwrap();
            let mgr = ContactManager::new(
                InfoHash(device.short_id()),
                ContactList::new(),
                70 + i as u64,
            );
            Dev {
                driver,
                announcer,
                mgr,
                connected: false,
            }
        })
        .collect();
    loop {
        while let Ok(c) = cmds.try_recv() {
            let now = unix_ms();
            match c {
                Cmd::Send(i, to, conv, payload) => {
                    let d = &mut devs[i];
                    assert!(d
                        .mgr
                        .send_request(&mut d.driver.dht, now, to, &conv, payload));
                }
                Cmd::Accept(i, from) => {
                    let d = &mut devs[i];
                    assert!(
                        d.mgr.accept(&mut d.driver.dht, now, from),
                        "a request to accept"
                    );
                }
                Cmd::Ban(i, who) => {
                    devs[i].mgr.remove(now, who, true);
                }
                Cmd::Snapshot(i) => {
                    let _ = tx.send(Report::Snapshot(i, devs[i].mgr.contacts().clone()));
                }
                Cmd::Stop => return devs.iter().map(|d| d.mgr.stats.clone()).collect(),
            }
        }
        for (i, d) in devs.iter_mut().enumerate() {
            let Dev {
                driver,
                announcer,
                mgr,
                connected,
            } = d;
            driver
                .turn(Duration::from_millis(5), &mut |dht, e| {
                    let now = unix_ms();
                    if matches!(e, Event::Connected) && !*connected {
                        *connected = true;
                        announcer.announce(dht, now);
                        mgr.start(dht, now);
                        let _ = tx.send(Report::Connected(i));
                    }
                    mgr.handle_event(dht, now, &e);
                })
                .unwrap();
            announcer.handle_timeout(&mut driver.dht, unix_ms());
            while let Some(e) = mgr.poll_event() {
                let _ = tx.send(Report::Trust(i, e));
            }
        }
    }
}

fn wait(rx: &Receiver<Report>, timeout: Duration, mut want: impl FnMut(&Report) -> bool) -> bool {
    let t0 = Instant::now();
    while let Some(left) = timeout.checked_sub(t0.elapsed()) {
        match rx.recv_timeout(left) {
            Ok(r) => {
                eprintln!("  ours: {r:?}");
                if want(&r) {
                    return true;
                }
            }
            Err(_) => break,
        }
    }
    false
}

fn snapshot(cmd: &Sender<Cmd>, rx: &Receiver<Report>, i: usize) -> ContactList {
    cmd.send(Cmd::Snapshot(i)).unwrap();
    let mut out = None;
    assert!(wait(rx, STEP, |r| match r {
        Report::Snapshot(j, l) if *j == i => {
            out = Some(l.clone());
            true
        }
        _ => false,
    }));
    out.unwrap()
}

fn tail(j: &Jamid) -> String {
    let t = j.log_text();
    let lines: Vec<&str> = t.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// The fields both sides must agree on (`added` is each side's own clock).
fn agreed(d: &Details) -> (String, String, Option<String>, Option<String>) {
    (
        d["id"].clone(),
        d.get("conversationId").cloned().unwrap_or_default(),
        d.get("confirmed").cloned(),
        d.get("banned").cloned(),
    )
}

fn jamid_contact(j: &Jamid, acc: &str, uri: &str) -> Option<Details> {
    let all: Vec<Details> = j
        .call("ConfigurationManager", "getContacts", &(acc,))
        .unwrap();
    all.into_iter()
        .find(|d| d.get("id").map(String::as_str) == Some(uri))
}

fn ours(l: &ContactList, who: &InfoHash) -> Option<Details> {
    l.contact(who).and_then(|c| c.details(who))
}

fn trust_signal(s: &Signal) -> (String, String, String, Vec<u8>, u64) {
    s.args().expect("incomingTrustRequest(s s s ay t)")
}

#[test]
fn trust_requests_between_our_node_and_jamid() {
    if !conformance::jamid_or_skip() {
        return;
    }
    let _serial = conformance::jamid::one_at_a_time();
    let t_keys = Instant::now();
    let ids = conformance::ours::identities(3, 62);
    eprintln!("our keys generated in {:?}", t_keys.elapsed());
    let key: Vec<InfoHash> = ids.iter().map(|(a, _)| InfoHash(a.account_id())).collect();
    let c_spki = ids[C].1.certificate().spki_der().to_vec();
    let uri: Vec<String> = key.iter().map(|k| k.to_string()).collect();

    // Bound namespace first, jamid last: jamid goes before the namespace is removed.
    let conformance::ours::JamidOnDht {
        ns,
        dir,
        dht: _dht,
        jamid,
        account: acc,
        uri: jk,
    } = conformance::ours::JamidOnDht::start("jstrust", DHTNODE_PORT);

    let (cmd, cmd_rx) = channel();
    let (tx, rx) = channel();
    let worker = ns.spawn(move || run_node(ids, cmd_rx, tx));
    let mut connected = [false; 3];
    assert!(
        wait(&rx, Duration::from_secs(20), |r| {
            if let Report::Connected(i) = r {
                connected[*i] = true;
            }
            connected.iter().all(|c| *c)
        }),
        "our devices connect to dhtnode"
    );
    // Let our announcements and certificates reach the DHT before jamid looks for them
    // (a request to an account with no announced device is silently lost, NOTES.md).
    std::thread::sleep(Duration::from_secs(2));

    // 1. A → jamid: jamid shows our request with its payload and conversation.
    let conv_a = "a".repeat(40);
    let vcard_a = b"BEGIN:VCARD\r\nVERSION:2.1\r\nFN:jamisim A\r\nEND:VCARD\r\n".to_vec();
    let mark = jamid.signals().mark();
    let t1 = Instant::now();
    cmd.send(Cmd::Send(A, jk, conv_a.clone(), vcard_a.clone()))
        .unwrap();
    assert!(
        wait(&rx, STEP, |r| matches!(
            r,
            Report::Trust(A, TrustEvent::Sent { devices: 1, .. })
        )),
        "A's request put at jamid's one device"
    );
    let s = jamid
        .signals()
        .wait("incomingTrustRequest", mark, STEP, |s| {
            trust_signal(s).2 == uri[A]
        })
        .unwrap_or_else(|e| panic!("jamid gets A's request: {e:#}\n{}", tail(&jamid)));
    let (sacc, sconv, _, spayload, _) = trust_signal(&s);
    eprintln!(
        "jamid incomingTrustRequest {:?} after our send",
        t1.elapsed()
    );
    assert_eq!(
        (sacc.as_str(), sconv.as_str()),
        (acc.as_str(), conv_a.as_str())
    );
    assert_eq!(spayload, vcard_a, "payload intact");
    let reqs: Vec<Details> = jamid
        .call("ConfigurationManager", "getTrustRequests", &(&acc,))
        .unwrap();
    assert!(reqs
        .iter()
        .any(|r| r["from"] == uri[A] && r["conversationId"] == conv_a));

    // jamid accepts: A sees the confirmation; both lists agree.
    let ok: bool = jamid
        .call(
            "ConfigurationManager",
            "acceptTrustRequest",
            &(&acc, &uri[A]),
        )
        .unwrap();
    assert!(ok);
    let t2 = Instant::now();
    assert!(
        wait(
            &rx,
            STEP,
            |r| matches!(r, Report::Trust(A, TrustEvent::Contact(ContactEvent::Confirmed { from, conversation_id })) if *from == jk && *conversation_id == conv_a)
        ),
        "A gets jamid's confirmation\n{}",
        tail(&jamid)
    );
    eprintln!(
        "our side confirmed {:?} after acceptTrustRequest",
        t2.elapsed()
    );
    let la = snapshot(&cmd, &rx, A);
    let theirs = jamid_contact(&jamid, &acc, &uri[A]).expect("jamid lists A");
    let mine = ours(&la, &jk).expect("A lists jamid");
    eprintln!("jamid: {theirs:?}\nours:  {mine:?}");
    assert_eq!(agreed(&theirs).1, agreed(&mine).1, "same conversation");
    assert_eq!(
        (agreed(&theirs).2, agreed(&mine).2),
        (Some("true".into()), Some("true".into())),
        "both confirmed"
    );

    // 2. jamid → B: we get it with its payload and a verified chain; we accept.
    let vcard_j = b"BEGIN:VCARD\r\nFN:jamid\r\nEND:VCARD\r\n".to_vec();
    let mark = jamid.signals().mark();
    let t3 = Instant::now();
    let () = jamid
        .call(
            "ConfigurationManager",
            "sendTrustRequest",
            &(&acc, &uri[B], &vcard_j),
        )
        .unwrap();
    let mut conv_j = String::new();
    assert!(
        wait(&rx, STEP, |r| match r {
            Report::Trust(
                B,
                TrustEvent::Contact(ContactEvent::IncomingRequest {
                    from,
                    conversation_id,
                    payload,
                    ..
                }),
            ) if *from == jk => {
                assert_eq!(*payload, vcard_j, "payload intact");
                conv_j = conversation_id.clone();
                true
            }
            _ => false,
        }),
        "B gets jamid's request\n{}",
        tail(&jamid)
    );
    eprintln!(
        "B got jamid's request {:?} after sendTrustRequest (conversation {conv_j})",
        t3.elapsed()
    );
    let convs: Vec<String> = jamid
        .call("ConfigurationManager", "getConversations", &(&acc,))
        .unwrap();
    assert!(
        convs.contains(&conv_j),
        "the 1:1 conversation jamid started: {convs:?}"
    );
    cmd.send(Cmd::Accept(B, jk)).unwrap();
    jamid
        .signals()
        .wait("contactAdded", mark, STEP, |s| {
            s.args::<(String, String, bool)>()
                .is_ok_and(|(_, u, c)| u == uri[B] && c)
        })
        .unwrap_or_else(|e| panic!("jamid's contact B confirmed: {e:#}\n{}", tail(&jamid)));
    let theirs = jamid_contact(&jamid, &acc, &uri[B]).expect("jamid lists B");
    let lb = snapshot(&cmd, &rx, B);
    let mine = ours(&lb, &jk).expect("B lists jamid");
    eprintln!("jamid: {theirs:?}\nours:  {mine:?}");
    assert_eq!(agreed(&theirs).2.as_deref(), Some("true"));
    assert_eq!(agreed(&mine).2.as_deref(), Some("true"));
    assert_eq!(agreed(&theirs).1, conv_j);
    assert_eq!(agreed(&mine).1, conv_j);

    // 3. A contact's new request is auto-confirmed by jamid with its own conversation.
    cmd.send(Cmd::Send(B, jk, "b".repeat(40), Vec::new()))
        .unwrap();
    assert!(
        wait(
            &rx,
            STEP,
            |r| matches!(r, Report::Trust(B, TrustEvent::Contact(ContactEvent::Confirmed { from, conversation_id })) if *from == jk && *conversation_id == conv_j)
        ),
        "jamid answers a contact's request with a confirmation of the existing conversation"
    );

    // 4. jamid declines C's request: gone from jamid's list, no contact, C hears nothing.
    let mark = jamid.signals().mark();
    cmd.send(Cmd::Send(C, jk, "c".repeat(40), b"C".to_vec()))
        .unwrap();
    jamid
        .signals()
        .wait("incomingTrustRequest", mark, STEP, |s| {
            trust_signal(s).2 == uri[C]
        })
        .unwrap_or_else(|e| panic!("jamid gets C's request: {e:#}\n{}", tail(&jamid)));
    // While it is pending, jamid's `incomingTrustRequests` file holds it: read it with
    // our decoder (device key, conversation, payload) and re-encode it byte for byte.
    let acc_dir = dir.path().join("data/jami").join(&acc);
    let bytes =
        std::fs::read(acc_dir.join(contacts::REQUESTS_FILE)).expect("jamid's requests file");
    let pending = contacts::store::decode_requests(&bytes).expect("decodes");
    eprintln!("jamid's incomingTrustRequests: {pending:?}");
    let r = &pending[&key[C]];
    assert_eq!(
        r.device.as_deref(),
        Some(c_spki.as_slice()),
        "the sender device key"
    );
    assert_eq!(
        (r.conversation_id.as_str(), r.payload.as_slice()),
        ("c".repeat(40).as_str(), &b"C"[..])
    );
    assert_eq!(
        contacts::store::encode_requests(&pending),
        bytes,
        "same bytes back"
    );
    let ok: bool = jamid
        .call(
            "ConfigurationManager",
            "discardTrustRequest",
            &(&acc, &uri[C]),
        )
        .unwrap();
    assert!(ok);
    let reqs: Vec<Details> = jamid
        .call("ConfigurationManager", "getTrustRequests", &(&acc,))
        .unwrap();
    assert!(!reqs.iter().any(|r| r["from"] == uri[C]));
    assert!(jamid_contact(&jamid, &acc, &uri[C]).is_none());
    assert!(
        !wait(&rx, QUIET, |r| matches!(
            r,
            Report::Trust(C, TrustEvent::Contact(ContactEvent::Confirmed { .. }))
        )),
        "a decline sends nothing"
    );
    let lc = snapshot(&cmd, &rx, C);
    assert_eq!(ours(&lc, &jk).unwrap()["confirmed"], "false");

    // 5. jamid bans C: listed as banned; C's next request is dropped.
    let () = jamid
        .call(
            "ConfigurationManager",
            "removeContact",
            &(&acc, &uri[C], true),
        )
        .unwrap();
    let banned = jamid_contact(&jamid, &acc, &uri[C]).expect("a banned contact is listed");
    assert_eq!(banned.get("banned").map(String::as_str), Some("true"));
    assert!(!banned.contains_key("confirmed"));
    let mark = jamid.signals().mark();
    let log_mark = jamid.log_text().len();
    cmd.send(Cmd::Send(C, jk, "d".repeat(40), b"C again".to_vec()))
        .unwrap();
    assert!(wait(&rx, STEP, |r| matches!(
        r,
        Report::Trust(C, TrustEvent::Sent { devices: 1, .. })
    )));
    let got = jamid
        .signals()
        .wait("incomingTrustRequest", mark, QUIET, |s| {
            trust_signal(s).2 == uri[C]
        });
    assert!(got.is_err(), "jamid drops a banned account's request");
    let log = jamid.log_text();
    let refused = log[log_mark.min(log.len())..]
        .lines()
        .find(|l| l.contains("Discarding message"))
        .map(str::to_string);
    eprintln!("jamid on the banned request: {refused:?}");
    // account_manager.cpp onPeerCertificate: the banned account fails isAllowed.
    assert!(refused.is_some(), "jamid logs the discarded request");

    // 6. We ban jamid (B): its next request is refused and counted.
    cmd.send(Cmd::Ban(B, jk)).unwrap();
    let () = jamid
        .call(
            "ConfigurationManager",
            "sendTrustRequest",
            &(&acc, &uri[B], &Vec::<u8>::new()),
        )
        .unwrap();
    assert!(
        wait(&rx, STEP, |r| matches!(
            r,
            Report::Trust(
                B,
                TrustEvent::Refused {
                    reason: Refusal::Banned
                }
            )
        )),
        "B refuses the banned account's request"
    );

    // 7. jamid's own `contacts` file reads back with our decoder and agrees with
    //    getContacts.
    let bytes =
        std::fs::read(acc_dir.join(contacts::CONTACTS_FILE)).expect("jamid's contacts file");
    let file = contacts::store::decode_contacts(&bytes).expect("decodes");
    let listed: Vec<Details> = jamid
        .call("ConfigurationManager", "getContacts", &(&acc,))
        .unwrap();
    let from_file: BTreeMap<String, Details> = file
        .iter()
        .filter_map(|(id, c)| c.details(id).map(|d| (id.to_string(), d)))
        .collect();
    let from_bus: BTreeMap<String, Details> =
        listed.into_iter().map(|d| (d["id"].clone(), d)).collect();
    eprintln!("jamid's contacts file: {file:?}");
    assert_eq!(
        from_file, from_bus,
        "jamid's file, read by us, is what jamid lists"
    );
    assert_eq!(
        contacts::store::encode_contacts(&file),
        bytes,
        "re-encoding jamid's file gives its bytes back"
    );
    if let Ok(b) = std::fs::read(acc_dir.join(contacts::REQUESTS_FILE)) {
        let r = contacts::store::decode_requests(&b).expect("requests file decodes");
        assert_eq!(contacts::store::encode_requests(&r), b);
    }

    cmd.send(Cmd::Stop).unwrap();
    let stats = worker.join().expect("node thread");
    eprintln!("our stats: {stats:?}");
    assert!(stats[B].verified >= 2 && stats[B].refused[&Refusal::Banned] >= 1);
    let stopped = jamid.stop(GRACE);
    eprintln!("jamid stopped: {stopped:?}");
}
