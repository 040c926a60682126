//! Swarm repositories: the ones jamid 13.7 wrote (tests/fixtures/swarm-13.7, made by
//! the official daemon; see its README) pass our validator commit for commit, their
//! signatures verify, and our JSON writer gives back jamid's exact message bytes; ours
//! validate too; and each forgery or rule break is refused with its reason.

mod swarm_fixtures;
use base64::Engine;
use node::swarm::message::{MemberAction, Message, Mode};
use node::swarm::repo::{commit_signature, write_signed, Author, Change, Conversation};
use node::swarm::validate::{new_commits, validate_commits, Refusal};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::path::{Path, PathBuf};
use swarm_fixtures::{author, ids, NOW};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/swarm-13.7");
const ONE_TO_ONE: &str = "2b1d45cc5c219cd9016a30c03df750f7b0b6b4aa";
const GROUP: &str = "b2e8b92f2745cbe584b37e2db6a6dbe15b8260a7";

/// A copy of a fixture repository in a temporary directory (tests may write to it).
fn fixture(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let dst = dir.path().join(name);
    copy_dir(&Path::new(FIXTURES).join(name), &dst);
    (dir, dst)
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
}

#[test]
fn jamids_repositories_validate_and_its_messages_are_our_bytes() {
    let mut kinds = std::collections::BTreeSet::new();
    for (name, id) in [
        ("A-one_to_one", ONE_TO_ONE),
        ("B-one_to_one", ONE_TO_ONE),
        ("A-group", GROUP),
        ("B-group", GROUP),
    ] {
        let (_d, path) = fixture(name);
        let conv = Conversation::open(&path).unwrap();
        assert_eq!(conv.id(), id, "{name}: the id is the initial commit");
        let repo = conv.repo();
        let all = new_commits(repo, None, conv.head().unwrap()).unwrap();
        validate_commits(repo, id, &all)
            .unwrap_or_else(|(c, r)| panic!("{name}: {c} refused: {r}"));
        for oid in &all {
            let c = repo.find_commit(*oid).unwrap();
            let raw = c.message_raw().unwrap();
            assert!(
                commit_signature(repo, *oid).is_some(),
                "{name}: {oid} signed"
            );
            if c.parent_count() > 1 {
                assert_eq!(raw, format!("Merge commit '{}'", c.parent_id(1).unwrap()));
                kinds.insert("merge".to_string());
                continue;
            }
            let m = Message::parse(raw).unwrap();
            assert_eq!(
                m.to_json(),
                raw,
                "{name}: {oid}: our writer gives jamid's bytes"
            );
            kinds.insert(m.kind());
        }
    }
    // Every commit type the fixture script made.
    for k in [
        "initial",
        "member",
        "text/plain",
        "application/edited-message",
        "application/data-transfer+json",
        "application/update-profile",
        "vote",
        "merge",
    ] {
        assert!(kinds.contains(k), "no {k} in {kinds:?}");
    }
}

/// A text commit by `dev`'s device of `account`, with `changes`, on top of `main`.
fn commit(conv: &mut Conversation, me: &Author, msg: &Message, changes: Vec<Change>) -> git2::Oid {
    conv.commit_with(me, msg, changes, NOW).unwrap()
}

/// Move `main` back to `to` (the next case starts from there).
fn reset(conv: &Conversation, to: git2::Oid) {
    conv.repo()
        .reference("refs/heads/main", to, true, "reset")
        .unwrap();
}

fn refused(conv: &Conversation, base: git2::Oid) -> Refusal {
    let repo = conv.repo();
    let new = new_commits(repo, Some(base), conv.head().unwrap()).unwrap();
    validate_commits(repo, conv.id(), &new)
        .expect_err("refused")
        .1
}

#[test]
fn our_repositories_validate_every_commit_type() {
    let i = ids();
    let dir = tempfile::tempdir().unwrap();
    let a = author(&i.a_dev, "Alice <a>");
    let b = author(&i.b_dev, "");
    let b_uri = hex::encode(i.b.account_id());
    let mut conv = Conversation::create(dir.path(), &a, Mode::InvitesOnly, None, NOW).unwrap();
    assert!(dir
        .path()
        .join(conv.id())
        .join("admins")
        .join(format!("{}.crt", hex::encode(i.a.account_id())))
        .exists());
    let t1 = conv
        .commit_message(&a, &Message::text("hello"), NOW + 1)
        .unwrap();
    conv.add_member(&a, &b_uri, NOW + 2).unwrap();
    conv.join(&b, NOW + 3).unwrap();
    conv.commit_message(&b, &Message::reply("hi", &t1.to_string()), NOW + 4)
        .unwrap();
    conv.commit_message(&a, &Message::edit("hello!", &t1.to_string()), NOW + 5)
        .unwrap();
    conv.commit_message(&b, &Message::reaction("👍", &t1.to_string()), NOW + 6)
        .unwrap();
    conv.update_profile(&a, b"BEGIN:VCARD\nVERSION:2.1\nFN:ours\nEND:VCARD", NOW + 7)
        .unwrap();
    let repo = conv.repo();
    let all = new_commits(repo, None, conv.head().unwrap()).unwrap();
    assert_eq!(all.len(), 8);
    validate_commits(repo, conv.id(), &all).unwrap_or_else(|(c, r)| panic!("{c}: {r}"));
    // Author names as jamid writes them: display name without <>, else the device id.
    let first = repo.find_commit(all[1]).unwrap();
    assert_eq!(first.author().name().ok(), Some("Alice a"));
    assert_eq!(
        first.author().email().ok(),
        Some(hex::encode(i.a_dev.device_id()).as_str())
    );
    let join = repo.find_commit(all[3]).unwrap();
    assert_eq!(
        join.author().name().ok(),
        Some(hex::encode(i.b_dev.device_id()).as_str())
    );
    // The signature is the device's RSA/SHA-512 over the commit without its header.
    let (sig, signed) = commit_signature(repo, all[1]).unwrap();
    assert!(i.a_dev.key().public_key().verify(&signed, &sig));
    let raw = String::from_utf8(
        repo.find_object(all[1], None)
            .unwrap()
            .as_commit()
            .unwrap()
            .raw_header_bytes()
            .to_vec(),
    )
    .unwrap();
    assert!(raw.contains(&format!(
        "signature {}\n",
        base64::engine::general_purpose::STANDARD.encode(&sig)
    )));
}

#[test]
fn forged_and_unruly_commits_are_refused() {
    let i = ids();
    let a = author(&i.a_dev, "A");
    let b = author(&i.b_dev, "B");
    let c = author(&i.c_dev, "C");
    let b_uri = hex::encode(i.b.account_id());
    let dir = tempfile::tempdir().unwrap();
    let mut conv = Conversation::create(dir.path(), &a, Mode::OneToOne, Some(&b_uri), NOW).unwrap();
    let base = conv.head().unwrap();

    // A forged signature: the commit re-signed with a byte flipped.
    let t = conv.commit_message(&a, &Message::text("x"), NOW).unwrap();
    let (mut sig, signed) = commit_signature(conv.repo(), t).unwrap();
    sig[10] ^= 1;
    let forged = write_signed(conv.repo(), &signed, &sig).unwrap();
    conv.repo()
        .reference("refs/heads/main", forged, true, "forge")
        .unwrap();
    assert_eq!(refused(&conv, base), Refusal::BadSignature);
    reset(&conv, base);

    // Signed by another device than the author it names.
    let t = conv.commit_message(&a, &Message::text("x"), NOW).unwrap();
    let (_, signed) = commit_signature(conv.repo(), t).unwrap();
    let other = i.b_dev.key().sign(&signed).unwrap();
    let forged = write_signed(conv.repo(), &signed, &other).unwrap();
    conv.repo()
        .reference("refs/heads/main", forged, true, "forge")
        .unwrap();
    assert_eq!(refused(&conv, base), Refusal::BadSignature);
    reset(&conv, base);

    // A message by a non-member (its own device file comes along).
    commit(&mut conv, &c, &Message::text("let me in"), vec![]);
    assert_eq!(refused(&conv, base), Refusal::NotAMember);
    reset(&conv, base);

    // The invited peer posting before joining.
    commit(&mut conv, &b, &Message::text("early"), vec![]);
    assert_eq!(refused(&conv, base), Refusal::NotAMember);
    reset(&conv, base);

    // A text commit that sneaks in a file.
    commit(
        &mut conv,
        &a,
        &Message::text("x"),
        vec![Change::Put("admins/evil.crt".into(), vec![0, 1, 2])],
    );
    assert_eq!(
        refused(&conv, base),
        Refusal::UnwantedFile("admins/evil.crt".into())
    );
    reset(&conv, base);

    // Adding a third member to a one-to-one conversation.
    let c_uri = hex::encode(i.c_dev.account_id());
    conv.add_member(&a, &c_uri, NOW).unwrap();
    assert_eq!(
        refused(&conv, base),
        Refusal::Rule("an add to a one-to-one conversation")
    );
    reset(&conv, base);

    // B joins, then edits A's message.
    conv.join(&b, NOW).unwrap();
    let joined = conv.head().unwrap();
    let t = conv
        .commit_message(&a, &Message::text("mine"), NOW)
        .unwrap();
    conv.commit_message(&b, &Message::edit("yours now", &t.to_string()), NOW)
        .unwrap();
    assert_eq!(
        refused(&conv, joined),
        Refusal::Rule("an edit of another member's message")
    );
    // A profile update by a member who is not an admin.
    reset(&conv, t);
    conv.update_profile(&b, b"BEGIN:VCARD\nEND:VCARD", NOW)
        .unwrap();
    assert_eq!(
        refused(&conv, t),
        Refusal::Rule("a profile update by a non-admin")
    );
    // B removing A (jamid would take it; we take a removal only from the member itself
    // or an admin).
    reset(&conv, t);
    let a_uri = hex::encode(i.a.account_id());
    commit(
        &mut conv,
        &b,
        &Message::member(MemberAction::Remove, &a_uri),
        vec![Change::Delete(format!("admins/{a_uri}.crt"))],
    );
    assert_eq!(
        refused(&conv, t),
        Refusal::Rule("a removal of another member by a non-admin")
    );
    // B leaving is fine.
    reset(&conv, t);
    commit(
        &mut conv,
        &b,
        &Message::member(MemberAction::Remove, &b_uri),
        vec![Change::Delete(format!("members/{b_uri}.crt"))],
    );
    let left = new_commits(conv.repo(), Some(t), conv.head().unwrap()).unwrap();
    validate_commits(conv.repo(), conv.id(), &left).unwrap();
    // A vote by a non-admin.
    reset(&conv, t);
    let a_uri = hex::encode(i.a.account_id());
    commit(
        &mut conv,
        &b,
        &Message::vote(&a_uri),
        vec![Change::Put(
            format!("votes/ban/admins/{a_uri}/{b_uri}"),
            vec![],
        )],
    );
    assert_eq!(refused(&conv, t), Refusal::Rule("a vote by a non-admin"));
    // The whole valid history still validates.
    reset(&conv, t);
    let all = new_commits(conv.repo(), None, t).unwrap();
    validate_commits(conv.repo(), conv.id(), &all).unwrap();
}

#[test]
fn a_forged_commit_on_jamids_history_is_refused() {
    // B's device signs a text commit authored as A's device, on A's real 1:1 history.
    let (_d, path) = fixture("A-one_to_one");
    let conv = Conversation::open(&path).unwrap();
    let repo = conv.repo();
    let head = conv.head().unwrap();
    let parent = repo.find_commit(head).unwrap();
    let a_dev = "ef38c6fc45d97b30832d6aa86e91217d8f0317a7d6a3fef61015284417be3815";
    let sig = git2::Signature::new("A", a_dev, &git2::Time::new(NOW, 0)).unwrap();
    let msg = Message::text("not really A").to_json();
    let buf = repo
        .commit_create_buffer(&sig, &sig, &msg, &parent.tree().unwrap(), &[&parent])
        .unwrap();
    let mallory = &ids().c_dev;
    let s = mallory.key().sign(&buf).unwrap();
    let forged = write_signed(repo, &buf, &s).unwrap();
    let err = validate_commits(repo, conv.id(), &[forged]).unwrap_err();
    assert_eq!(err, (forged, Refusal::BadSignature));
}

/// Every map jamid gave its client during the fixture run (`messageReceived`, and the
/// lists of `conversationLoaded`, recorded in signals.jsonl) is the map we make of that
/// commit, key for key (less `linearizedParent`, an artefact of jamid's walk).
#[test]
fn our_message_maps_are_jamids() {
    let signals = std::fs::read_to_string(Path::new(FIXTURES).join("signals.jsonl")).unwrap();
    let mut compared = 0;
    for line in signals.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let maps: Vec<&serde_json::Value> = match v["signal"].as_str() {
            Some("messageReceived") => vec![&v["args"][2]],
            Some("conversationLoaded") => v["args"][3].as_array().unwrap().iter().collect(),
            _ => continue,
        };
        let conv = v["args"][if v["signal"] == "messageReceived" {
            1
        } else {
            2
        }]
        .as_str()
        .unwrap();
        let kind = if conv == ONE_TO_ONE {
            "one_to_one"
        } else {
            "group"
        };
        let name = format!("{}-{kind}", v["peer"].as_str().unwrap());
        let repo = git2::Repository::open(Path::new(FIXTURES).join(&name)).unwrap();
        for m in maps {
            let mut theirs: std::collections::BTreeMap<String, String> =
                serde_json::from_value(m.clone()).unwrap();
            theirs.remove("linearizedParent");
            let oid = git2::Oid::from_str(&theirs["id"]).unwrap();
            let ours = node::swarm::history::commit_map(&repo, oid).expect("a map");
            assert_eq!(ours, theirs, "{name} {oid}");
            compared += 1;
        }
    }
    assert!(compared >= 39, "{compared} maps compared");
}

/// Two devices commit at once: a fetch merges (signed merge commit, validated by the
/// other side), the other side fast-forwards, and both end on the same commit. Two
/// admin devices changing the profile at once: the greater commit id wins, as in jamid;
/// a conflict on any other file refuses the merge.
#[test]
fn concurrent_commits_merge_and_converge() {
    use node::swarm::repo::Pull;
    let i = ids();
    let mut rng = ChaCha20Rng::seed_from_u64(92);
    let a2_dev = i.a.new_device(1024, NOW as u64 - 1000, &mut rng).unwrap();
    let a1 = author(&i.a_dev, "A1");
    let a2 = author(&a2_dev, "A2");
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut c1 = Conversation::create(d1.path(), &a1, Mode::InvitesOnly, None, NOW).unwrap();
    let p2 = d2.path().join(c1.id());
    git2::Repository::clone(c1.path().to_str().unwrap(), &p2).unwrap();
    let mut c2 = Conversation::open(&p2).unwrap();
    let fetch_into = |into: &Conversation, from: &Conversation| -> git2::Oid {
        let tip = from.head().unwrap();
        let mut remote = into
            .repo()
            .remote_anonymous(from.path().to_str().unwrap())
            .unwrap();
        remote
            .fetch(&["+refs/heads/main:refs/remotes/peer/main"], None, None)
            .unwrap();
        let new = new_commits(into.repo(), Some(into.head().unwrap()), tip).unwrap();
        validate_commits(into.repo(), into.id(), &new).unwrap_or_else(|(c, r)| panic!("{c}: {r}"));
        tip
    };

    c1.commit_message(&a1, &Message::text("from 1"), NOW + 1)
        .unwrap();
    c2.commit_message(&a2, &Message::text("from 2"), NOW + 1)
        .unwrap();
    let tip = fetch_into(&c1, &c2);
    let Pull::Merged(m) = c1.pull(&a1, tip, NOW + 2).unwrap() else {
        panic!("a merge")
    };
    {
        // jamid's merge: parents HEAD then the fetched tip, plain-text message.
        let merge = c1.repo().find_commit(m).unwrap();
        assert_eq!(
            merge.message_raw().unwrap(),
            format!("Merge commit '{tip}'")
        );
        assert_eq!(merge.parent_id(1).unwrap(), tip);
    }
    let tip = fetch_into(&c2, &c1);
    assert_eq!(c2.pull(&a2, tip, NOW + 3).unwrap(), Pull::FastForward);
    assert_eq!(c1.head().unwrap(), c2.head().unwrap());
    assert_eq!(c2.pull(&a2, tip, NOW + 3).unwrap(), Pull::UpToDate);

    // Both admin devices change the profile at once. (jamid resolves only a conflict
    // whose three sides exist: a first profile written on both sides at once is an
    // add/add conflict, which aborts its merge; so a first profile is shared first.)
    c1.update_profile(&a1, b"BEGIN:VCARD\nFN:zero\nEND:VCARD", NOW + 3)
        .unwrap();
    let tip = fetch_into(&c2, &c1);
    assert_eq!(c2.pull(&a2, tip, NOW + 3).unwrap(), Pull::FastForward);
    let v1 = b"BEGIN:VCARD\nFN:one\nEND:VCARD".to_vec();
    let v2 = b"BEGIN:VCARD\nFN:two\nEND:VCARD".to_vec();
    c1.update_profile(&a1, &v1, NOW + 4).unwrap();
    c2.update_profile(&a2, &v2, NOW + 4).unwrap();
    let (h1, h2) = (c1.head().unwrap(), c2.head().unwrap());
    let tip = fetch_into(&c1, &c2);
    assert!(matches!(
        c1.pull(&a1, tip, NOW + 5).unwrap(),
        Pull::Merged(_)
    ));
    let winner = if h2.to_string() > h1.to_string() {
        &v2
    } else {
        &v1
    };
    assert_eq!(
        &std::fs::read(c1.path().join("profile.vcf")).unwrap(),
        winner
    );
    // Let the other side check the merge commit too.
    let tip = fetch_into(&c2, &c1);
    assert_eq!(c2.pull(&a2, tip, NOW + 6).unwrap(), Pull::FastForward);

    // A conflict elsewhere refuses the merge and leaves main alone.
    let head = c1.head().unwrap();
    c1.commit_with(
        &a1,
        &Message::text("x"),
        vec![Change::Put("notes".into(), b"1".to_vec())],
        NOW + 7,
    )
    .unwrap();
    reset(&c2, head);
    c2.commit_with(
        &a2,
        &Message::text("y"),
        vec![Change::Put("notes".into(), b"2".to_vec())],
        NOW + 7,
    )
    .unwrap();
    let mine = c1.head().unwrap();
    {
        let mut remote = c1
            .repo()
            .remote_anonymous(c2.path().to_str().unwrap())
            .unwrap();
        remote
            .fetch(&["+refs/heads/main:refs/remotes/peer/main"], None, None)
            .unwrap();
    }
    let err = c1.pull(&a1, c2.head().unwrap(), NOW + 8).unwrap_err();
    assert!(err.to_string().contains("merge conflict on notes"), "{err}");
    assert_eq!(c1.head().unwrap(), mine);
}
