//! Swarm sync over the git protocol: libgit2's smart client (the client jamid uses, with
//! a transport registered for `git://` as jamid's `gittransport.cpp` does) fetches and
//! clones through our upload-pack server; what it gets validates, fast-forwards and
//! ends identical commit for commit; a forged commit offered this way is refused and
//! nothing is merged. The channel is in memory here (one thread, bytes both ways).

mod swarm_fixtures;
use git2::transport::{Service, SmartSubtransport, SmartSubtransportStream, Transport};
use node::swarm::gitproto::{request_line, UploadPack};
use node::swarm::message::{Message, Mode};
use node::swarm::repo::{commit_signature, write_signed, Conversation};
use node::swarm::validate::{new_commits, validate_commits, Refusal};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use swarm_fixtures::{author, ids, NOW};

/// The repository the registered transport serves (one test at a time).
static SERVED: Mutex<Option<PathBuf>> = Mutex::new(None);
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

struct Conn {
    repo: git2::Repository,
    server: UploadPack,
    pending: Vec<u8>,
    asked: bool,
    url: String,
}

/// The channel's client end: the request line goes out on the first read, as in
/// jamid's `P2PStreamRead`.
#[derive(Clone)]
struct Stream(Arc<Mutex<Conn>>);

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut c = self.0.lock().unwrap();
        if !c.asked {
            c.asked = true;
            // git://<device>/<conversation>
            let rest = c.url.trim_start_matches("git://").to_string();
            let (dev, conv) = rest.split_once('/').unwrap();
            let line = request_line(conv, dev);
            let Conn {
                repo,
                server,
                pending,
                ..
            } = &mut *c;
            server.handle(repo, &line).map_err(std::io::Error::other)?;
            pending.extend(server.poll_output());
        }
        let n = buf.len().min(c.pending.len());
        buf[..n].copy_from_slice(&c.pending[..n]);
        c.pending.drain(..n);
        Ok(n)
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut c = self.0.lock().unwrap();
        let Conn {
            repo,
            server,
            pending,
            ..
        } = &mut *c;
        server.handle(repo, buf).map_err(std::io::Error::other)?;
        pending.extend(server.poll_output());
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Sub(Mutex<Option<Stream>>);

impl SmartSubtransport for Sub {
    fn action(
        &self,
        url: &str,
        action: Service,
    ) -> Result<Box<dyn SmartSubtransportStream>, git2::Error> {
        let mut s = self.0.lock().unwrap();
        if matches!(action, Service::UploadPackLs) || s.is_none() {
            let path = SERVED.lock().unwrap().clone().expect("a served repository");
            let repo =
                git2::Repository::open(path).map_err(|e| git2::Error::from_str(&e.to_string()))?;
            *s = Some(Stream(Arc::new(Mutex::new(Conn {
                repo,
                server: UploadPack::new(),
                pending: Vec::new(),
                asked: false,
                url: url.to_string(),
            }))));
        }
        Ok(Box::new(s.clone().unwrap()))
    }
    fn close(&self) -> Result<(), git2::Error> {
        Ok(())
    }
}

fn register() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| unsafe {
        git2::transport::register("git", |remote| {
            Transport::smart(remote, false, Sub(Mutex::new(None)))
        })
        .unwrap();
    });
}

fn serve(path: &Path) {
    *SERVED.lock().unwrap() = Some(path.to_path_buf());
}

/// Fetch `conv` from the device `dev` (served at `from`) into `into` as jamid does:
/// remote named by the device, validate what is new, fast-forward `main`.
fn fetch(into: &Conversation, dev: &str, from: &Path) -> Result<git2::Oid, (git2::Oid, Refusal)> {
    serve(from);
    let repo = into.repo();
    let url = format!("git://{dev}/{}", into.id());
    let mut remote = repo.remote_anonymous(&url).unwrap();
    remote
        .fetch(
            &[format!("+refs/heads/main:refs/remotes/{dev}/main")],
            None,
            None,
        )
        .unwrap();
    let tip = repo
        .refname_to_id(&format!("refs/remotes/{dev}/main"))
        .unwrap();
    let head = into.head().unwrap();
    let new = new_commits(repo, Some(head), tip).unwrap();
    validate_commits(repo, into.id(), &new)?;
    if repo.graph_descendant_of(tip, head).unwrap() {
        repo.reference("refs/heads/main", tip, true, "fast-forward")
            .unwrap();
        repo.checkout_head(Some(git2::build::CheckoutBuilder::new().force()))
            .unwrap();
    }
    Ok(tip)
}

#[test]
fn clone_and_fetch_through_our_server_converge() {
    let _one = ONE_AT_A_TIME.lock().unwrap();
    register();
    let i = ids();
    let a = author(&i.a_dev, "A");
    let b = author(&i.b_dev, "B");
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let b_uri = hex::encode(i.b.account_id());
    let mut ca = Conversation::create(da.path(), &a, Mode::OneToOne, Some(&b_uri), NOW).unwrap();
    ca.commit_message(&a, &Message::text("hello B"), NOW + 1)
        .unwrap();

    // B clones from A (jamid: `git_clone("git://<dev>/<conv>")`), validating everything.
    serve(&ca.path());
    let b_path = db.path().join(ca.id());
    git2::Repository::clone(&format!("git://{}/{}", a.device_id(), ca.id()), &b_path).unwrap();
    let mut cb = Conversation::open(&b_path).unwrap();
    assert_eq!(cb.head().unwrap(), ca.head().unwrap());
    let all = new_commits(cb.repo(), None, cb.head().unwrap()).unwrap();
    validate_commits(cb.repo(), cb.id(), &all).unwrap();

    // B joins and answers; A fetches from B and fast-forwards.
    cb.join(&b, NOW + 2).unwrap();
    cb.commit_message(&b, &Message::text("hello A"), NOW + 3)
        .unwrap();
    let tip = fetch(&ca, &b.device_id(), &cb.path()).unwrap();
    assert_eq!(ca.head().unwrap(), tip);
    assert_eq!(ca.head().unwrap(), cb.head().unwrap());
    // The working tree follows, as jamid's does.
    assert!(ca
        .path()
        .join("members")
        .join(format!("{b_uri}.crt"))
        .exists());

    // A forged commit in B's repository: A refuses it and merges nothing.
    let before = ca.head().unwrap();
    let t = cb.commit_message(&b, &Message::text("x"), NOW + 4).unwrap();
    let (mut sig, signed) = commit_signature(cb.repo(), t).unwrap();
    sig[3] ^= 0x40;
    let forged = write_signed(cb.repo(), &signed, &sig).unwrap();
    cb.repo()
        .reference("refs/heads/main", forged, true, "forge")
        .unwrap();
    let err = fetch(&ca, &b.device_id(), &cb.path()).unwrap_err();
    assert_eq!(err, (forged, Refusal::BadSignature));
    assert_eq!(ca.head().unwrap(), before, "nothing merged");
}

#[test]
fn jamids_repository_clones_through_our_server_object_for_object() {
    let _one = ONE_AT_A_TIME.lock().unwrap();
    register();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/swarm-13.7/A-group");
    let src = git2::Repository::open(&fixture).unwrap();
    let head = src.refname_to_id("refs/heads/main").unwrap();
    serve(&fixture);
    let dir = tempfile::tempdir().unwrap();
    let conv = "b2e8b92f2745cbe584b37e2db6a6dbe15b8260a7";
    let dst = dir.path().join(conv);
    let dev = "ef38c6fc45d97b30832d6aa86e91217d8f0317a7d6a3fef61015284417be3815";
    git2::Repository::clone(&format!("git://{dev}/{conv}"), &dst).unwrap();
    let c = Conversation::open(&dst).unwrap();
    assert_eq!(c.head().unwrap(), head);
    let all = new_commits(c.repo(), None, head).unwrap();
    validate_commits(c.repo(), conv, &all).unwrap();
    // Every object of the source is in the clone, with the same id.
    let odb = src.odb().unwrap();
    let mut n = 0;
    odb.foreach(|oid| {
        assert!(c.repo().odb().unwrap().exists(*oid), "{oid} missing");
        n += 1;
        true
    })
    .unwrap();
    assert!(n >= 30, "{n} objects");
}

/// Our fetch client against our server, bytes moved in memory until the fetch ends.
fn fetch_ours(
    into: &git2::Repository,
    from: &git2::Repository,
    conv: &str,
    haves: Vec<git2::Oid>,
) -> git2::Oid {
    use node::swarm::gitproto::Fetch;
    let mut f = Fetch::new(Some((conv, "serverdevice")), haves);
    let mut s = UploadPack::new();
    for _ in 0..100 {
        let to_server = f.poll_output();
        s.handle(from, &to_server).unwrap();
        let to_client = s.poll_output();
        f.handle(into, &to_client).unwrap();
        if let Some(tip) = f.finished() {
            assert_eq!(s.request().unwrap().conversation, conv);
            return tip;
        }
    }
    panic!("the fetch did not end");
}

#[test]
fn our_client_fetches_from_our_server_and_validates() {
    let i = ids();
    let a = author(&i.a_dev, "A");
    let b = author(&i.b_dev, "B");
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let b_uri = hex::encode(i.b.account_id());
    let mut ca = Conversation::create(da.path(), &a, Mode::OneToOne, Some(&b_uri), NOW).unwrap();
    ca.commit_message(&a, &Message::text("one"), NOW + 1)
        .unwrap();
    // A clone: an empty repository, no haves.
    let b_path = db.path().join(ca.id());
    let rb = git2::Repository::init_opts(
        &b_path,
        git2::RepositoryInitOptions::new().initial_head("main"),
    )
    .unwrap();
    let tip = fetch_ours(&rb, ca.repo(), ca.id(), vec![]);
    assert_eq!(tip, ca.head().unwrap());
    validate_commits(&rb, ca.id(), &new_commits(&rb, None, tip).unwrap()).unwrap();
    rb.reference("refs/heads/main", tip, true, "clone").unwrap();
    rb.checkout_head(Some(git2::build::CheckoutBuilder::new().force()))
        .unwrap();
    let mut cb = Conversation::open(&b_path).unwrap();
    cb.join(&b, NOW + 2).unwrap();
    // A fetches B's join with its head as a have: only the new commit comes.
    let objects_before = count_objects(ca.repo());
    let tip = fetch_ours(ca.repo(), cb.repo(), ca.id(), vec![ca.head().unwrap()]);
    let new = new_commits(ca.repo(), Some(ca.head().unwrap()), tip).unwrap();
    assert_eq!(new.len(), 1);
    validate_commits(ca.repo(), ca.id(), &new).unwrap();
    // The join: a commit, two trees, the member and device certificates (4–5 objects).
    let added = count_objects(ca.repo()) - objects_before;
    assert!(added <= 6, "{added} objects for one commit");
    // Already up to date: nothing is asked.
    let again = fetch_ours(ca.repo(), cb.repo(), ca.id(), vec![tip]);
    assert_eq!(again, tip);
}

fn count_objects(repo: &git2::Repository) -> usize {
    let mut n = 0;
    repo.odb()
        .unwrap()
        .foreach(|_| {
            n += 1;
            true
        })
        .unwrap();
    n
}

/// Our client against git's own server (`git upload-pack`, protocol v0 over pipes),
/// serving jamid's group repository: the baseline any git server agrees on.
#[test]
fn our_client_clones_from_git_upload_pack() {
    use node::swarm::gitproto::Fetch;
    use std::process::{Command, Stdio};
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/swarm-13.7/A-group");
    let mut child = match Command::new("git")
        .arg("upload-pack")
        .arg(&fixture)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("SKIP: no git to serve as the baseline ({e})");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let repo = git2::Repository::init_bare(dir.path()).unwrap();
    let mut f = Fetch::new(None, vec![]);
    let (mut stdin, mut stdout) = (child.stdin.take().unwrap(), child.stdout.take().unwrap());
    let mut buf = vec![0u8; 65536];
    while f.finished().is_none() {
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "git upload-pack closed before the pack ended");
        f.handle(&repo, &buf[..n]).unwrap();
        let out = f.poll_output();
        if !out.is_empty() {
            stdin.write_all(&out).unwrap();
        }
    }
    drop(stdin);
    child.wait().unwrap();
    let tip = f.finished().unwrap();
    let src = git2::Repository::open(&fixture).unwrap();
    assert_eq!(tip, src.refname_to_id("refs/heads/main").unwrap());
    let conv = "b2e8b92f2745cbe584b37e2db6a6dbe15b8260a7";
    validate_commits(&repo, conv, &new_commits(&repo, None, tip).unwrap()).unwrap();
    assert_eq!(count_objects(&repo), count_objects(&src));
}
