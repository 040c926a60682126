//! Swarm repositories written live by the official jamid (Jami 13.7) validate on our
//! side commit for commit, signatures included; every commit message is byte for byte
//! what our writer produces; and every map jamid signals to its client
//! (`messageReceived`) is the map we make of that commit. One jamid, no peer: a group
//! conversation (messages, a reply, an edit, a reaction, an invitation, a profile) and
//! the one-to-one conversation a trust request creates.

use conformance::dhtnode::DhtNode;
use conformance::jamid::{one_at_a_time, AccountSetup, Jamid};
use conformance::netns::Netns;
use conformance::TempDir;
use node::swarm::history::commit_map;
use node::swarm::message::Message;
use node::swarm::repo::Conversation;
use node::swarm::validate::{new_commits, validate_commits};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

const DHTNODE_PORT: u16 = 4262;
const STEP: Duration = Duration::from_secs(30);

type Map = HashMap<String, String>;

/// `sendMessage(account, conversation, body, parent, flag)`; the commit's map as jamid
/// signals it.
fn send(jamid: &Jamid, acc: &str, conv: &str, body: &str, parent: &str, flag: i32) -> Map {
    let mark = jamid.signals().mark();
    let () = jamid
        .call(
            "ConfigurationManager",
            "sendMessage",
            &(acc, conv, body, parent, flag),
        )
        .unwrap();
    let s = jamid
        .signals()
        .wait("messageReceived", mark, STEP, |s| {
            s.args::<(String, String, Map)>()
                .is_ok_and(|(_, c, m)| c == conv && m.get("body").map(String::as_str) == Some(body))
        })
        .expect("jamid signals its own message");
    s.args::<(String, String, Map)>().unwrap().2
}

/// Validate jamid's repository of `conv`; check every message and the signalled maps.
fn check(jamid_dir: &std::path::Path, acc: &str, conv: &str, signalled: &[Map], want: usize) {
    let path = jamid_dir
        .join("data/jami")
        .join(acc)
        .join("conversations")
        .join(conv);
    let c = Conversation::open(&path).unwrap();
    assert_eq!(c.id(), conv);
    let repo = c.repo();
    let all = new_commits(repo, None, c.head().unwrap()).unwrap();
    assert!(all.len() >= want, "{} commits in {conv}", all.len());
    validate_commits(repo, conv, &all).unwrap_or_else(|(c, r)| panic!("jamid's {c} refused: {r}"));
    for oid in &all {
        let raw = repo
            .find_commit(*oid)
            .unwrap()
            .message_raw()
            .unwrap()
            .to_string();
        let m = Message::parse(&raw).unwrap();
        assert_eq!(m.to_json(), raw, "{oid}: our writer gives jamid's bytes");
    }
    for theirs in signalled {
        let mut theirs: BTreeMap<String, String> = theirs.clone().into_iter().collect();
        theirs.remove("linearizedParent");
        let oid = all
            .iter()
            .find(|o| o.to_string() == theirs["id"])
            .expect("a signalled commit is in the repository");
        assert_eq!(commit_map(repo, *oid).unwrap(), theirs);
    }
    eprintln!("{conv}: {} commits validated", all.len());
}

#[test]
fn jamids_conversations_validate_on_our_side() {
    if !conformance::jamid_or_skip() {
        return;
    }
    let _one = one_at_a_time();
    let ns = Netns::create("jsswarm").expect("namespace");
    let _dht = DhtNode::start(&ns, DHTNODE_PORT, None, false).expect("dhtnode");
    let dir = TempDir::new("jamid-swarm").expect("temp dir");
    let jamid = Jamid::start(&ns, dir.path()).expect("jamid");
    let boot = SocketAddr::from(([127, 0, 0, 1], DHTNODE_PORT));
    let acc = jamid
        .create_account(&AccountSetup::new("swarm", boot))
        .unwrap();
    jamid
        .wait_for_registration(&acc, Duration::from_secs(90))
        .unwrap();

    // A group conversation with every commit kind one device can make alone.
    let conv: String = jamid
        .call("ConfigurationManager", "startConversation", &(&acc,))
        .unwrap();
    let mut maps = vec![send(
        &jamid,
        &acc,
        &conv,
        "hello ünï \"q\" </t> \\ \t 😀",
        "",
        0,
    )];
    let first = maps[0]["id"].clone();
    maps.push(send(&jamid, &acc, &conv, "a reply", &first, 0));
    maps.push(send(&jamid, &acc, &conv, "hello (edited)", &first, 1));
    maps.push(send(&jamid, &acc, &conv, "👍", &first, 2));
    let invitee = "0123456789abcdef0123456789abcdef01234567";
    let () = jamid
        .call(
            "ConfigurationManager",
            "addConversationMember",
            &(&acc, &conv, invitee),
        )
        .unwrap();
    let mut infos = HashMap::new();
    infos.insert("title".to_string(), "A group".to_string());
    let mark = jamid.signals().mark();
    let () = jamid
        .call(
            "ConfigurationManager",
            "updateConversationInfos",
            &(&acc, &conv, infos),
        )
        .unwrap();
    jamid
        .signals()
        .wait("conversationProfileUpdated", mark, STEP, |_| true)
        .expect("the profile commit");
    // initial, 4 messages, add, profile.
    check(dir.path(), &acc, &conv, &maps, 7);

    // The one-to-one conversation a trust request creates (mode 0, `invited/`).
    let mark = jamid.signals().mark();
    let () = jamid
        .call(
            "ConfigurationManager",
            "sendTrustRequest",
            &(&acc, invitee, b"hi".to_vec()),
        )
        .unwrap();
    let s = jamid
        .signals()
        .wait("conversationReady", mark, STEP, |_| true)
        .expect("a one-to-one conversation");
    let (_, one) = s.args::<(String, String)>().unwrap();
    check(dir.path(), &acc, &one, &[], 1);
    jamid.stop(Duration::from_secs(3));
}
