//! One conversation's git repository, written as jamid 20230206 writes it (PROTOCOLS
//! §7.1–7.3): branch `main` with a working tree, `admins/`, `members/`, `devices/`,
//! `invited/` files, each commit signed by the device key in a `signature` header, and
//! the conversation id = the initial commit's id.
//!
//! Time comes in as an argument (seconds, the commit time), never from the clock.

use super::message::{merge_message, MemberAction, Message, Mode};
use super::SwarmError;
use crate::identity::{Certificate, DeviceIdentity};
use base64::Engine;
use git2::{Oid, Repository};
use std::path::{Path, PathBuf};

/// Who commits: a device (its key signs) of an account, and the account's display name.
pub struct Author<'a> {
    pub device: &'a DeviceIdentity,
    pub display_name: &'a str,
}

impl Author<'_> {
    /// The account URI (40 hex).
    pub fn uri(&self) -> String {
        hex::encode(self.device.account_id())
    }

    /// The device long id (64 hex): the commit e-mail and `devices/<id>.crt`.
    pub fn device_id(&self) -> String {
        hex::encode(self.device.device_id())
    }

    /// jamid's `signature()`: the display name without `<` and `>`, or the device id
    /// when that leaves nothing git accepts (libgit2 trims bytes ≤ 0x20 and `.,:;<>"\'`).
    fn git_signature(&self, time: i64) -> Result<git2::Signature<'static>, SwarmError> {
        let name: String = self
            .display_name
            .chars()
            .filter(|c| *c != '<' && *c != '>')
            .collect();
        let crud = |c: char| c <= ' ' || ".,:;<>\"\\'".contains(c);
        let name = if name.trim_matches(crud).is_empty() {
            self.device_id()
        } else {
            name
        };
        Ok(git2::Signature::new(
            &name,
            &self.device_id(),
            &git2::Time::new(time, 0),
        )?)
    }

    /// `devices/<device id>.crt`: the device certificate alone.
    fn device_file(&self) -> (String, Vec<u8>) {
        (
            device_path(&self.device_id()),
            self.device.certificate().to_pem().into_bytes(),
        )
    }

    /// The account certificate followed by its issuers (what `admins/` and `members/`
    /// hold: jamid's `issuer->toString(true)`).
    fn account_chain_pem(&self) -> Vec<u8> {
        self.device.chain()[1..]
            .iter()
            .map(Certificate::to_pem)
            .collect::<String>()
            .into_bytes()
    }
}

pub fn device_path(device_id: &str) -> String {
    format!("devices/{device_id}.crt")
}
pub fn admin_path(uri: &str) -> String {
    format!("admins/{uri}.crt")
}
pub fn member_path(uri: &str) -> String {
    format!("members/{uri}.crt")
}
pub fn invited_path(uri: &str) -> String {
    format!("invited/{uri}")
}
pub const PROFILE_PATH: &str = "profile.vcf";

/// What a pull did to `main`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pull {
    UpToDate,
    FastForward,
    Merged(Oid),
}

/// A change to the tree a commit makes.
pub enum Change {
    Put(String, Vec<u8>),
    Delete(String),
}

/// One conversation repository on disk.
pub struct Conversation {
    repo: Repository,
    id: String,
}

impl Conversation {
    /// Create the conversation in `conversations/` (jamid's account `conversations`
    /// directory): the initial commit, then the repository is named by its id.
    pub fn create(
        conversations: &Path,
        me: &Author,
        mode: Mode,
        invited: Option<&str>,
        time: i64,
    ) -> Result<Conversation, SwarmError> {
        let tmp = conversations.join(format!(".creating-{}", me.device_id()));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)?;
        }
        let repo = Repository::init_opts(
            &tmp,
            git2::RepositoryInitOptions::new()
                .initial_head("main")
                .mkpath(true),
        )?;
        let mut changes = vec![
            Change::Put(admin_path(&me.uri()), me.account_chain_pem()),
            {
                let (p, b) = me.device_file();
                Change::Put(p, b)
            },
        ];
        let invited = invited.filter(|_| mode == Mode::OneToOne);
        if let Some(uri) = invited {
            changes.push(Change::Put(invited_path(uri), Vec::new()));
        }
        let msg = Message::initial(mode, invited).to_json();
        let conv = Conversation {
            repo,
            id: String::new(),
        };
        let oid = conv.commit_raw(me, &msg, &changes, &[], time)?;
        drop(conv);
        let path = conversations.join(oid.to_string());
        std::fs::rename(&tmp, &path)?;
        Conversation::open(&path)
    }

    /// Open a conversation repository (ours, or one jamid wrote).
    pub fn open(path: &Path) -> Result<Conversation, SwarmError> {
        let repo = Repository::open(path)?;
        let mut walk = repo.revwalk()?;
        walk.push_ref("refs/heads/main")?;
        let mut root = None;
        for oid in walk {
            let oid = oid?;
            if repo.find_commit(oid)?.parent_count() == 0 {
                root = Some(oid);
            }
        }
        let id = root.ok_or(SwarmError::NoInitialCommit)?.to_string();
        Ok(Conversation { repo, id })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn repo(&self) -> &Repository {
        &self.repo
    }

    pub fn path(&self) -> PathBuf {
        self.repo
            .workdir()
            .unwrap_or(self.repo.path())
            .to_path_buf()
    }

    pub fn head(&self) -> Result<Oid, SwarmError> {
        Ok(self.repo.refname_to_id("refs/heads/main")?)
    }

    /// A message commit (text, reply, edit, vote, call history…): as jamid's
    /// `commitMessage`, it adds our device certificate when the tree lacks it.
    pub fn commit_message(
        &mut self,
        me: &Author,
        msg: &Message,
        time: i64,
    ) -> Result<Oid, SwarmError> {
        self.commit_with(me, msg, Vec::new(), time)
    }

    /// [`Conversation::commit_message`] with more changes (our device file added too).
    pub fn commit_with(
        &mut self,
        me: &Author,
        msg: &Message,
        mut changes: Vec<Change>,
        time: i64,
    ) -> Result<Oid, SwarmError> {
        let head = self.head()?;
        let (dev_path, dev) = me.device_file();
        if !self.has_file(head, &dev_path)? {
            changes.push(Change::Put(dev_path, dev));
        }
        self.commit_raw(me, &msg.to_json(), &changes, &[head], time)
    }

    /// Invite `uri` (an admin's `add`: `invited/<uri>`; no device file, as jamid).
    pub fn add_member(&mut self, me: &Author, uri: &str, time: i64) -> Result<Oid, SwarmError> {
        let head = self.head()?;
        if self.has_file(head, &invited_path(uri))? {
            return Err(SwarmError::Refused(format!("{uri} is already invited")));
        }
        let msg = Message::member(MemberAction::Add, uri).to_json();
        let changes = [Change::Put(invited_path(uri), Vec::new())];
        self.commit_raw(me, &msg, &changes, &[head], time)
    }

    /// Join after an invitation: `invited/<me>` becomes `members/<me>.crt`.
    pub fn join(&mut self, me: &Author, time: i64) -> Result<Oid, SwarmError> {
        let uri = me.uri();
        let changes = vec![
            Change::Delete(invited_path(&uri)),
            Change::Put(member_path(&uri), me.account_chain_pem()),
        ];
        self.commit_with(
            me,
            &Message::member(MemberAction::Join, &uri),
            changes,
            time,
        )
    }

    /// Write `profile.vcf` (an `update-profile` commit; no device file, as jamid).
    pub fn update_profile(
        &mut self,
        me: &Author,
        vcard: &[u8],
        time: i64,
    ) -> Result<Oid, SwarmError> {
        let head = self.head()?;
        let msg = Message::update_profile().to_json();
        let changes = [Change::Put(PROFILE_PATH.into(), vcard.to_vec())];
        self.commit_raw(me, &msg, &changes, &[head], time)
    }

    /// Take a fetched `tip` whose new commits validated: fast-forward when `main` is
    /// behind it, else a merge commit (jamid's `merge`).
    pub fn pull(&mut self, me: &Author, tip: Oid, time: i64) -> Result<Pull, SwarmError> {
        let head = self.head()?;
        if head == tip || self.repo.graph_descendant_of(head, tip)? {
            return Ok(Pull::UpToDate);
        }
        if self.repo.graph_descendant_of(tip, head)? {
            self.repo
                .reference("refs/heads/main", tip, true, "fast-forward")?;
            self.repo
                .checkout_head(Some(git2::build::CheckoutBuilder::new().force()))?;
            return Ok(Pull::FastForward);
        }
        Ok(Pull::Merged(self.merge_commit(me, tip, time)?))
    }

    /// A merge of `other` into `main` (jamid's `createMergeCommit`: parents HEAD then
    /// `other`, message `Merge commit '<other>'`, signed). The one conflict allowed is on
    /// `profile.vcf`, changed on both sides: the side whose commit id is greater (as hex
    /// text) wins. Any other conflict refuses the merge.
    pub fn merge_commit(&mut self, me: &Author, other: Oid, time: i64) -> Result<Oid, SwarmError> {
        let head = self.head()?;
        let ours = self.repo.find_commit(head)?;
        let theirs = self.repo.find_commit(other)?;
        let mut index = self.repo.merge_commits(&ours, &theirs, None)?;
        if index.has_conflicts() {
            let mut chosen = Vec::new();
            for c in index.conflicts()? {
                let c = c?;
                let path = [&c.ancestor, &c.our, &c.their]
                    .iter()
                    .find_map(|e| {
                        e.as_ref()
                            .map(|e| String::from_utf8_lossy(&e.path).into_owned())
                    })
                    .unwrap_or_default();
                let refused = || SwarmError::Refused(format!("merge conflict on {path}"));
                let (Some(anc), Some(our), Some(their)) = (c.ancestor, c.our, c.their) else {
                    return Err(refused());
                };
                if anc.path != PROFILE_PATH.as_bytes() {
                    return Err(refused());
                }
                chosen.push(if other.to_string() > head.to_string() {
                    their
                } else {
                    our
                });
            }
            for mut e in chosen {
                index.conflict_remove(Path::new(PROFILE_PATH))?;
                e.flags &= !0x3000; // stage 0
                index.add(&e)?;
            }
        }
        let tree = index.write_tree_to(&self.repo)?;
        drop((ours, theirs));
        self.finish_commit(
            me,
            &merge_message(&other.to_string()),
            tree,
            &[head, other],
            time,
        )
    }

    pub fn has_file(&self, commit: Oid, path: &str) -> Result<bool, SwarmError> {
        let tree = self.repo.find_commit(commit)?.tree()?;
        Ok(tree.get_path(Path::new(path)).is_ok())
    }

    /// Commit `changes` on top of `parents[0]`'s tree (none: an empty tree).
    fn commit_raw(
        &self,
        me: &Author,
        message: &str,
        changes: &[Change],
        parents: &[Oid],
        time: i64,
    ) -> Result<Oid, SwarmError> {
        let mut index = git2::Index::new()?;
        if let Some(p) = parents.first() {
            index.read_tree(&self.repo.find_commit(*p)?.tree()?)?;
        }
        for c in changes {
            match c {
                Change::Put(path, bytes) => {
                    let id = self.repo.blob(bytes)?;
                    index.add(&entry(path, id, bytes.len()))?
                }
                Change::Delete(path) => index.remove_path(Path::new(path))?,
            }
        }
        let tree = index.write_tree_to(&self.repo)?;
        self.finish_commit(me, message, tree, parents, time)
    }

    /// Sign the commit buffer with the device key, store it with the `signature` header,
    /// move `main` and the working tree to it.
    fn finish_commit(
        &self,
        me: &Author,
        message: &str,
        tree: Oid,
        parents: &[Oid],
        time: i64,
    ) -> Result<Oid, SwarmError> {
        let sig = me.git_signature(time)?;
        let tree = self.repo.find_tree(tree)?;
        let parents: Vec<git2::Commit> = parents
            .iter()
            .map(|p| self.repo.find_commit(*p))
            .collect::<Result<_, _>>()?;
        let refs: Vec<&git2::Commit> = parents.iter().collect();
        let buf = self
            .repo
            .commit_create_buffer(&sig, &sig, message, &tree, &refs)?;
        let signature = me
            .device
            .key()
            .sign(&buf)
            .map_err(|e| SwarmError::Refused(format!("signing: {e}")))?;
        let oid = write_signed(&self.repo, &buf, &signature)?;
        self.repo
            .reference("refs/heads/main", oid, true, "commit")?;
        self.repo.set_head("refs/heads/main")?;
        self.repo
            .checkout_head(Some(git2::build::CheckoutBuilder::new().force()))?;
        Ok(oid)
    }
}

/// An index entry for the regular file `path` holding blob `id` of `size` bytes.
fn entry(path: &str, id: Oid, size: usize) -> git2::IndexEntry {
    git2::IndexEntry {
        ctime: git2::IndexTime::new(0, 0),
        mtime: git2::IndexTime::new(0, 0),
        dev: 0,
        ino: 0,
        mode: 0o100644,
        uid: 0,
        gid: 0,
        file_size: u32::try_from(size).unwrap_or(u32::MAX),
        id,
        flags: path.len().min(0xfff) as u16,
        flags_extended: 0,
        path: path.as_bytes().to_vec(),
    }
}

/// Store the commit `content` (git's commit text, no signature) with `signature` in a
/// `signature` header, as jamid's `git_commit_create_with_signature` call does.
pub fn write_signed(
    repo: &Repository,
    content: &[u8],
    signature: &[u8],
) -> Result<Oid, SwarmError> {
    let text =
        std::str::from_utf8(content).map_err(|_| SwarmError::Refused("commit not UTF-8".into()))?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(signature);
    Ok(repo.commit_signed(text, &b64, Some("signature"))?)
}

/// The `signature` header of a commit, decoded, and the bytes it signs.
pub fn commit_signature(repo: &Repository, oid: Oid) -> Option<(Vec<u8>, Vec<u8>)> {
    let (sig, signed) = repo.extract_signature(&oid, Some("signature")).ok()?;
    let sig = base64::engine::general_purpose::STANDARD
        .decode(sig.as_ref())
        .ok()?;
    Some((sig, signed.to_vec()))
}
