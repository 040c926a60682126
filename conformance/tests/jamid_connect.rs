//! Connections and messages between our device and the real jamid (Jami 13.7) over the
//! official dhtnode, in a namespace the test creates (PROTOCOLS §6):
//! - jamid connects to our device (its request over the DHT, ICE-TCP, TLS with both
//!   chains checked, the multiplexed socket, the `sip` channel) and its
//!   `sendTextMessage` arrives at our device; our answer arrives at jamid as
//!   `incomingAccountMessage`;
//! - our device connects to jamid the same way (we request: ICE controlled, TLS server)
//!   and a text crosses over SIP to jamid;
//! - a device of ours that refuses jamid's connection still gets jamid's message through
//!   the DHT `ImMessage` fallback, and jamid hears our receipt.
//!
//! Each step prints the selected ICE pair and its timings.

use conformance::jamid::{Details, Signal};
use conformance::ours::{self, connected, jamid_log as tail, wait, Cmd, Report, Spec};
use node::connect::manager::{ConnectionEvent, ManagerConfig};
use node::device::jami::{JamiEvent, Via};
use node::dht::InfoHash;
use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

const DHTNODE_PORT: u16 = 4251;
/// A first connection to a brand-new jamid account waits for its DH parameters (about
/// 6 s here, NOTES.md gotcha 4); ICE and TLS add a few seconds.
const STEP: Duration = Duration::from_secs(60);
/// The namespace's non-loopback address (jamid's ICE ignores loopback): our host
/// candidates use it too.
const HOST_IP: [u8; 4] = [198, 51, 100, 1];
/// libjami's `MessageStates::SENT`: the receipt came back.
const SENT: i32 = 2;

/// A: jamid connects to it. C: connects to jamid. D: refuses jamid's connection.
const A: usize = 0;
const C: usize = 1;
const D: usize = 2;

/// `incomingAccountMessage`: (account, from, message id, payloads). The introspection XML
/// names the second and third arguments `messageID`, `from`, but jamid 13.7 emits
/// `(accountID_, from, id, payloads)` (sipaccountbase.cpp `onTextMessage`).
fn account_message(s: &Signal) -> (String, String, String, Details) {
    s.args().expect("incomingAccountMessage(s s s a{ss})")
}

#[test]
fn connections_and_messages_between_our_device_and_jamid() {
    if !conformance::jamid_or_skip() {
        return;
    }
    let _serial = conformance::jamid::one_at_a_time();
    let ids = ours::identities(3, 91);
    let uri: Vec<String> = ids
        .iter()
        .map(|(a, _)| InfoHash(a.account_id()).to_string())
        .collect();

    let lab = ours::JamidOnDht::start("jsconn", DHTNODE_PORT);
    let (ns, jamid, acc, jk) = (&lab.ns, &lab.jamid, &lab.account, lab.uri);

    let (cmd, cmd_rx) = channel();
    let (tx, rx) = channel();
    let specs: Vec<Spec> = ids
        .into_iter()
        .enumerate()
        .map(|(i, (account, device))| Spec {
            account,
            device,
            manager: ManagerConfig {
                host_ips: vec![IpAddr::from(HOST_IP)],
                allow_public: i != D,
                seed: 95 + i as u64,
                ..ManagerConfig::default()
            },
        })
        .collect();
    let boot = SocketAddr::from(([127, 0, 0, 1], DHTNODE_PORT));
    let worker = ns.spawn(move || ours::run(specs, boot, cmd_rx, tx));
    let mut up = [false; 3];
    assert!(
        wait(&rx, Duration::from_secs(20), |r| {
            if let Report::DhtUp(i) = r {
                up[*i] = true;
            }
            up.iter().all(|u| *u)
        }),
        "our devices join dhtnode"
    );
    for i in [A, C, D] {
        cmd.send(Cmd::Track(i, jk)).unwrap();
    }
    let mut online = [false; 3];
    assert!(
        wait(&rx, STEP, |r| {
            if let Report::Online(i, a) = r {
                online[*i] |= *a == jk;
            }
            online.iter().all(|o| *o)
        }),
        "our devices see jamid's device announced"
    );
    // jamid must find our announcements and certificates too.
    std::thread::sleep(Duration::from_secs(2));

    // 1. jamid -> A: jamid connects to A and sends over SIP (and the DHT, as it always
    //    does without a channel); A reports the message once.
    let t1 = Instant::now();
    let _id: u64 = jamid
        .call(
            "ConfigurationManager",
            "sendTextMessage",
            &(
                &acc,
                &uri[A],
                Details::from([("text/plain".to_string(), "hello from jamid".to_string())]),
            ),
        )
        .unwrap();
    let mut pair = None;
    let mut got = None;
    let mut sip = false;
    assert!(
        wait(&rx, STEP, |r| {
            if let Some(p) = connected(r, A, &jk) {
                pair = Some(p);
            }
            if let Report::Jami(A, JamiEvent::Connection(ConnectionEvent::ChannelRequested { name, .. })) = r {
                sip |= name == "sip";
            }
            if let Report::Jami(A, JamiEvent::Message { account, body, via, .. }) = r {
                if *account == jk {
                    got = Some((String::from_utf8_lossy(body).into_owned(), *via, t1.elapsed()));
                }
            }
            pair.is_some() && got.is_some() && sip
        }),
        "jamid connects to A, opens sip, and its text arrives: pair {pair:?}, sip {sip}, message {got:?}\n{}",
        tail(jamid)
    );
    let (pair_a, init, setup) = pair.unwrap();
    let (body, via, after) = got.unwrap();
    eprintln!("jamid -> A: connected in {setup} ms over {pair_a}; text via {via} after {after:?}");
    assert!(
        !init,
        "jamid requested: we are ICE controlling and TLS client"
    );
    assert_eq!(body, "hello from jamid");

    // 2. A -> jamid over the channel jamid opened.
    let mark = jamid.signals().mark();
    let t2 = Instant::now();
    cmd.send(Cmd::Msg(A, jk, "hello jamid, A here".into()))
        .unwrap();
    let s = jamid
        .signals()
        .wait("incomingAccountMessage", mark, STEP, |s| {
            account_message(s).1 == uri[A]
        })
        .unwrap_or_else(|e| panic!("jamid gets A's text: {e:#}\n{}", tail(jamid)));
    let (_, _, _, payloads) = account_message(&s);
    eprintln!(
        "A -> jamid: incomingAccountMessage after {:?}",
        t2.elapsed()
    );
    assert_eq!(
        payloads.get("text/plain").map(String::as_str),
        Some("hello jamid, A here")
    );
    let mut via_a = None;
    assert!(wait(&rx, STEP, |r| match r {
        Report::Jami(A, JamiEvent::Delivered { via, .. }) => {
            via_a = Some(*via);
            true
        }
        _ => false,
    }));
    eprintln!("A's text delivered via {via_a:?}");
    assert_eq!(via_a, Some(Via::Sip), "the channel was open");

    // 3. C -> jamid: we request (ICE controlled, TLS server), then SIP.
    let t3 = Instant::now();
    cmd.send(Cmd::Connect(C, jk)).unwrap();
    let mut pair = None;
    let mut sip_open = false;
    assert!(
        wait(&rx, STEP, |r| {
            if let Some(p) = connected(r, C, &jk) {
                pair = Some(p);
            }
            if let Report::Jami(
                C,
                JamiEvent::Connection(ConnectionEvent::ChannelOpened { name, .. }),
            ) = r
            {
                sip_open |= name == "sip";
            }
            pair.is_some() && sip_open
        }),
        "C connects to jamid and opens sip: {pair:?}\n{}",
        tail(jamid)
    );
    let (pair_c, init, setup) = pair.unwrap();
    eprintln!(
        "C -> jamid: connected in {setup} ms ({:?}) over {pair_c}",
        t3.elapsed()
    );
    assert!(init);
    let mark = jamid.signals().mark();
    cmd.send(Cmd::Msg(C, jk, "from C over sip".into())).unwrap();
    let s = jamid
        .signals()
        .wait("incomingAccountMessage", mark, STEP, |s| {
            account_message(s).1 == uri[C]
        })
        .unwrap_or_else(|e| panic!("jamid gets C's text: {e:#}\n{}", tail(jamid)));
    assert_eq!(
        account_message(&s).3.get("text/plain").map(String::as_str),
        Some("from C over sip")
    );
    let mut via_c = None;
    assert!(wait(&rx, STEP, |r| match r {
        Report::Jami(C, JamiEvent::Delivered { via, .. }) => {
            via_c = Some(*via);
            true
        }
        _ => false,
    }));
    assert_eq!(via_c, Some(Via::Sip));

    // 4. jamid -> D, which refuses jamid's connection (public requests off): the text
    //    still arrives, through the DHT, and jamid hears D's receipt.
    let mark = jamid.signals().mark();
    let t4 = Instant::now();
    let msg_id: u64 = jamid
        .call(
            "ConfigurationManager",
            "sendTextMessage",
            &(
                &acc,
                &uri[D],
                Details::from([("text/plain".to_string(), "via the dht".to_string())]),
            ),
        )
        .unwrap();
    let mut refused = false;
    let mut got = None;
    assert!(
        wait(&rx, STEP, |r| {
            match r {
                Report::Jami(D, JamiEvent::Connection(ConnectionEvent::Refused { .. })) => {
                    refused = true
                }
                Report::Jami(D, JamiEvent::Message { body, via, .. }) => {
                    got = Some((String::from_utf8_lossy(body).into_owned(), *via))
                }
                _ => {}
            }
            refused && got.is_some()
        }),
        "D refuses the connection and gets the text: refused {refused}, {got:?}\n{}",
        tail(jamid)
    );
    eprintln!("jamid -> D via the DHT after {:?}", t4.elapsed());
    assert_eq!(got, Some(("via the dht".to_string(), Via::Dht)));
    // jamid names the message by its token in decimal here (its log does too).
    let status = jamid
        .signals()
        .wait("accountMessageStatusChanged", mark, STEP, |s| {
            let (_, _, peer, id, state): (String, String, String, String, i32) = s.args().unwrap();
            eprintln!("  jamid: accountMessageStatusChanged {peer} {id} {state}");
            peer == uri[D] && id == msg_id.to_string() && state == SENT
        });
    match &status {
        Ok(s) => {
            let args: (String, String, String, String, i32) = s.args().unwrap();
            eprintln!(
                "jamid status for its DHT message: {args:?} after {:?}",
                t4.elapsed()
            );
        }
        Err(e) => panic!("jamid hears D's receipt: {e:#}\n{}", tail(jamid)),
    }

    cmd.send(Cmd::Stop).unwrap();
    let stats = worker.join().expect("worker");
    eprintln!("our connection managers: {stats:#?}");
}
