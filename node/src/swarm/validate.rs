//! Validation of fetched commits: every rule of jamid 20230206's `validCommits`
//! (PROTOCOLS §7.4), read from each commit's own tree rather than from a working tree,
//! plus what jamid lacks: the `signature` header must verify with the author device's
//! key (later Jami versions check it), the device certificate must be issued by the
//! account certificate and named by its long id, and binary files are not invisible
//! (jamid parses diff stats, where a binary file prints no `|` and escapes every check).
//!
//! One refused commit refuses the fetch: the caller merges nothing.

use super::message::{self, MemberAction, Message, Mode};
use super::repo::{admin_path, commit_signature, device_path, invited_path, member_path};
use crate::crypto::PublicKey;
use crate::identity::{decode_chain, Certificate};
use git2::{Commit, Oid, Repository, Tree};
use std::collections::BTreeSet;
use std::path::Path;

/// Why a commit was refused (one variant per rule; counted by the caller).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, thiserror::Error)]
pub enum Refusal {
    #[error("git error: {0}")]
    Git(String),
    #[error("the author device's certificate is not in the tree")]
    NoDeviceCertificate,
    #[error("bad certificate {0}: {1}")]
    BadCertificate(String, String),
    #[error("the author's account has no admins/ or members/ certificate")]
    NotAMember,
    #[error("a certificate expired before the commit")]
    Expired,
    #[error("no signature header")]
    Unsigned,
    #[error("the signature does not verify with the author device's key")]
    BadSignature,
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("invalid or missing mode")]
    InvalidMode,
    #[error("file {0} may not change in this commit")]
    UnwantedFile(String),
    #[error("initial commit without admin or device certificate")]
    IncompleteInitial,
    #[error("wrong number of changed files")]
    FileCount,
    #[error("{0}")]
    Rule(&'static str),
}

fn git(e: git2::Error) -> Refusal {
    Refusal::Git(e.message().to_string())
}

/// The commits of `tip` not reachable from `base` (all of them without one), oldest
/// first: what a fetch asks us to accept.
pub fn new_commits(repo: &Repository, base: Option<Oid>, tip: Oid) -> Result<Vec<Oid>, Refusal> {
    let mut walk = repo.revwalk().map_err(git)?;
    walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::REVERSE)
        .map_err(git)?;
    walk.push(tip).map_err(git)?;
    if let Some(b) = base {
        walk.hide(b).map_err(git)?;
    }
    walk.collect::<Result<Vec<_>, _>>().map_err(git)
}

/// Check `commits` (oldest first) of conversation `conv_id`; the first refusal stops.
pub fn validate_commits(
    repo: &Repository,
    conv_id: &str,
    commits: &[Oid],
) -> Result<(), (Oid, Refusal)> {
    let v = Validator { repo, conv_id };
    for &oid in commits {
        v.commit(oid).map_err(|r| (oid, r))?;
    }
    Ok(())
}

struct Validator<'a> {
    repo: &'a Repository,
    conv_id: &'a str,
}

/// The author: device long id (the commit e-mail) and the account it belongs to.
struct Who {
    dev: String,
    uri: String,
}

impl Validator<'_> {
    fn commit(&self, oid: Oid) -> Result<(), Refusal> {
        let c = self.repo.find_commit(oid).map_err(git)?;
        let dev = c.author().email().unwrap_or_default().to_string();
        let tree = c.tree().map_err(git)?;
        let uri = self.device_account(&tree, &dev)?;
        let who = Who { dev, uri };
        self.signature(&c, &tree, &who)?;
        match c.parent_count() {
            0 => self.initial(&c, &tree, &who)?,
            1 => {
                let parent = c.parent(0).map_err(git)?.tree().map_err(git)?;
                let msg = Message::parse(c.message_raw().unwrap_or_default());
                let kind = msg.as_ref().map(Message::kind).unwrap_or_default();
                let mut user_tree = tree.clone();
                match kind.as_str() {
                    message::VOTE => self.vote(&tree, &parent, &who)?,
                    message::MEMBER => {
                        let msg = msg.map_err(|e| Refusal::Malformed(e.to_string()))?;
                        let uri = msg.get("uri").unwrap_or_default();
                        let action = msg.get("action").unwrap_or_default();
                        match MemberAction::parse(&action) {
                            Some(MemberAction::Add) => self.add(&tree, &parent, &who, &uri)?,
                            Some(MemberAction::Join) => self.join(&tree, &parent, &who, &uri)?,
                            Some(MemberAction::Remove) => {
                                self.remove(&tree, &parent, &who, &uri)?;
                                user_tree = parent.clone();
                            }
                            Some(a @ (MemberAction::Ban | MemberAction::Unban)) => {
                                self.resolution(&tree, &parent, &who, &uri, a)?
                            }
                            None => {
                                return Err(Refusal::Malformed(format!("member action {action:?}")))
                            }
                        }
                    }
                    message::PROFILE => self.profile(&tree, &parent, &who)?,
                    message::EDIT => {
                        let msg = msg.map_err(|e| Refusal::Malformed(e.to_string()))?;
                        self.edit(&c, &msg, &who)?;
                        self.user_diff(&tree, &parent, &who)?;
                    }
                    _ => self.user_diff(&tree, &parent, &who)?,
                }
                self.user_at(&c, &user_tree, &who)?;
            }
            _ => self.user_at(&c, &tree, &who)?,
        }
        Ok(())
    }

    /// `uriFromDevice`: the issuer UID of `devices/<dev>.crt`.
    fn device_account(&self, tree: &Tree, dev: &str) -> Result<String, Refusal> {
        let cert = self
            .cert(tree, &device_path(dev))?
            .ok_or(Refusal::NoDeviceCertificate)?;
        let uid = cert.issuer_uid().unwrap_or_default().to_string();
        if uid.is_empty() {
            return Err(Refusal::BadCertificate(
                device_path(dev),
                "no issuer UID".into(),
            ));
        }
        if hex::encode(cert.long_id()) != dev {
            return Err(Refusal::BadCertificate(
                device_path(dev),
                "not the author device's key".into(),
            ));
        }
        Ok(uid)
    }

    /// The first certificate of the PEM file at `path`, if the file is there.
    fn cert(&self, tree: &Tree, path: &str) -> Result<Option<Certificate>, Refusal> {
        let Some(bytes) = self.blob(tree, path)? else {
            return Ok(None);
        };
        let chain = decode_chain(&bytes)
            .map_err(|e| Refusal::BadCertificate(path.into(), e.to_string()))?;
        chain
            .into_iter()
            .next()
            .map(Some)
            .ok_or_else(|| Refusal::BadCertificate(path.into(), "empty".into()))
    }

    fn blob(&self, tree: &Tree, path: &str) -> Result<Option<Vec<u8>>, Refusal> {
        let Ok(entry) = tree.get_path(Path::new(path)) else {
            return Ok(None);
        };
        let obj = entry.to_object(self.repo).map_err(git)?;
        Ok(obj.as_blob().map(|b| b.content().to_vec()))
    }

    fn has(&self, tree: &Tree, path: &str) -> bool {
        tree.get_path(Path::new(path)).is_ok()
    }

    /// Paths added, modified or deleted from `old` (none: the empty tree) to `new`.
    fn changed(&self, new: &Tree, old: Option<&Tree>) -> Result<Vec<String>, Refusal> {
        let diff = self
            .repo
            .diff_tree_to_tree(old, Some(new), None)
            .map_err(git)?;
        let mut out = BTreeSet::new();
        for d in diff.deltas() {
            for f in [d.old_file(), d.new_file()] {
                if let Some(p) = f.path() {
                    out.insert(p.to_string_lossy().into_owned());
                }
            }
        }
        Ok(out.into_iter().collect())
    }

    /// The `signature` header verifies with the author device's key (not checked by
    /// jamid 20230206; required since jami-daemon 8d3cdfaab55e).
    fn signature(&self, c: &Commit, tree: &Tree, who: &Who) -> Result<(), Refusal> {
        let (sig, signed) = commit_signature(self.repo, c.id()).ok_or(Refusal::Unsigned)?;
        let cert = self
            .cert(tree, &device_path(&who.dev))?
            .ok_or(Refusal::NoDeviceCertificate)?;
        let key = PublicKey::from_spki_der(cert.spki_der())
            .map_err(|e| Refusal::BadCertificate(device_path(&who.dev), e.to_string()))?;
        if !key.verify(&signed, &sig) {
            return Err(Refusal::BadSignature);
        }
        Ok(())
    }

    /// jamid's `verifyCertificate` for a new file, made strict: an account certificate
    /// must be `uri`'s, a device certificate issued (and signed) by `uri`'s account.
    fn verify_cert(&self, tree: &Tree, path: &str, uri: &str) -> Result<(), Refusal> {
        let bad = |why: &str| Refusal::BadCertificate(path.into(), why.into());
        let cert = self.cert(tree, path)?.ok_or_else(|| bad("missing"))?;
        if path.starts_with("devices/") {
            if cert.issuer_uid() != Some(uri) {
                return Err(bad("issued by another account"));
            }
            let account = self
                .cert(tree, &admin_path(uri))?
                .or(self.cert(tree, &member_path(uri))?)
                .ok_or(Refusal::NotAMember)?;
            cert.verify_issued_by(&account)
                .map_err(|e| bad(&e.to_string()))?;
        } else if hex::encode(cert.short_id()) != uri {
            return Err(bad("not this account's certificate"));
        }
        Ok(())
    }

    fn initial(&self, c: &Commit, tree: &Tree, who: &Who) -> Result<(), Refusal> {
        if c.id().to_string() != self.conv_id {
            return Err(Refusal::Rule("a second root commit"));
        }
        let msg = Message::parse(c.message_raw().unwrap_or_default())
            .map_err(|e| Refusal::Malformed(e.to_string()))?;
        let mode = match msg.fields.get("mode") {
            Some(message::Field::Int(n)) => Mode::from_int(*n),
            _ => None,
        }
        .ok_or(Refusal::InvalidMode)?;
        let invited = (mode == Mode::OneToOne)
            .then(|| msg.get("invited"))
            .flatten()
            .unwrap_or_default();
        let (mut admin, mut device) = (false, false);
        for f in self.changed(tree, None)? {
            if f == admin_path(&who.uri) {
                admin = true;
                self.verify_cert(tree, &f, &who.uri)?;
            } else if f == device_path(&who.dev) {
                device = true;
                self.verify_cert(tree, &f, &who.uri)?;
            } else if f != format!("CRLs/{}", who.uri) && f != invited_path(&invited) {
                return Err(Refusal::UnwantedFile(f));
            }
        }
        if admin && device {
            Ok(())
        } else {
            Err(Refusal::IncompleteInitial)
        }
    }

    fn vote(&self, tree: &Tree, parent: &Tree, who: &Who) -> Result<(), Refusal> {
        let files = self.changed(tree, Some(parent))?;
        if files.is_empty() {
            return Ok(());
        }
        if files.len() > 2 {
            return Err(Refusal::FileCount);
        }
        let mut vote = None;
        for f in files {
            if f == device_path(&who.dev) {
                if self.has(parent, &f) {
                    return Err(Refusal::Rule("a vote modifies a device file"));
                }
            } else if f.starts_with("votes/") {
                vote = Some(f);
            } else {
                return Err(Refusal::UnwantedFile(f));
            }
        }
        let vote = vote.ok_or(Refusal::Rule("no vote in a vote commit"))?;
        if !self.has(parent, &admin_path(&who.uri)) {
            return Err(Refusal::Rule("a vote by a non-admin"));
        }
        let parts: Vec<&str> = vote.split('/').collect();
        let [_, kind, role, voted, voter] = parts[..] else {
            return Err(Refusal::UnwantedFile(vote));
        };
        if !["members", "devices", "admins", "invited"].contains(&role) {
            return Err(Refusal::UnwantedFile(vote));
        }
        if voter != who.uri {
            return Err(Refusal::Rule("a vote in another admin's name"));
        }
        if kind != "ban" && kind != "unban" {
            return Err(Refusal::Rule("unknown vote"));
        }
        if self.has(parent, &vote) || self.blob(tree, &vote)?.is_none_or(|b| !b.is_empty()) {
            return Err(Refusal::Rule("a vote file must be new and empty"));
        }
        if role == "devices" {
            if voted == who.dev || !self.has(parent, &device_path(voted)) {
                return Err(Refusal::Rule("a vote on no device or on one's own"));
            }
        } else {
            if voted == who.uri {
                return Err(Refusal::Rule("a vote on oneself"));
            }
            let exists = [member_path(voted), admin_path(voted), invited_path(voted)]
                .iter()
                .any(|p| self.has(parent, p));
            if kind == "ban" && !exists {
                return Err(Refusal::Rule("a ban vote on a non-member"));
            }
        }
        Ok(())
    }

    /// The members a one-to-one conversation started with: its creator and `invited`.
    fn initial_members(&self) -> Result<Vec<String>, Refusal> {
        let oid = Oid::from_str(self.conv_id).map_err(git)?;
        let c = self.repo.find_commit(oid).map_err(git)?;
        let tree = c.tree().map_err(git)?;
        let mut out = vec![self.device_account(&tree, c.author().email().unwrap_or_default())?];
        if let Ok(m) = Message::parse(c.message_raw().unwrap_or_default()) {
            if let Some(i) = m.get("invited").filter(|i| !i.is_empty() && *i != out[0]) {
                out.push(i);
            }
        }
        Ok(out)
    }

    fn mode(&self) -> Result<Mode, Refusal> {
        let oid = Oid::from_str(self.conv_id).map_err(git)?;
        let c = self.repo.find_commit(oid).map_err(git)?;
        let m = Message::parse(c.message_raw().unwrap_or_default())
            .map_err(|_| Refusal::InvalidMode)?;
        match m.fields.get("mode") {
            Some(message::Field::Int(n)) => Mode::from_int(*n).ok_or(Refusal::InvalidMode),
            _ => Err(Refusal::InvalidMode),
        }
    }

    fn add(&self, tree: &Tree, parent: &Tree, who: &Who, uri: &str) -> Result<(), Refusal> {
        if self.mode()? == Mode::OneToOne && !self.initial_members()?.iter().any(|m| m == uri) {
            return Err(Refusal::Rule("an add to a one-to-one conversation"));
        }
        let files = self.changed(tree, Some(parent))?;
        if files.is_empty() || files.len() > 3 {
            return Err(Refusal::FileCount);
        }
        if who.uri == uri {
            return Err(Refusal::Rule("a member adds itself"));
        }
        let mut invited = false;
        for f in files {
            if f == invited_path(uri) {
                invited = true;
            } else if f != device_path(&who.dev) && f != format!("CRLs/{}", who.uri) {
                return Err(Refusal::UnwantedFile(f));
            }
        }
        if !invited
            || self
                .blob(tree, &invited_path(uri))?
                .is_none_or(|b| !b.is_empty())
        {
            return Err(Refusal::Rule("an add without its empty invitation file"));
        }
        if self.has(parent, &format!("banned/members/{uri}.crt")) {
            return Err(Refusal::Rule("an add of a banned member"));
        }
        Ok(())
    }

    fn join(&self, tree: &Tree, parent: &Tree, who: &Who, uri: &str) -> Result<(), Refusal> {
        for f in self.changed(tree, Some(parent))? {
            if f != invited_path(uri) && f != member_path(uri) && f != device_path(&who.dev) {
                return Err(Refusal::UnwantedFile(f));
            }
        }
        if self.has(tree, &invited_path(uri)) || !self.has(parent, &invited_path(uri)) {
            return Err(Refusal::Rule("a join without its invitation removed"));
        }
        if !self.has(tree, &member_path(uri)) || self.has(parent, &member_path(uri)) {
            return Err(Refusal::Rule("a join without a new member certificate"));
        }
        if !self.has(tree, &device_path(&who.dev)) {
            return Err(Refusal::NoDeviceCertificate);
        }
        Ok(())
    }

    /// Which account a device file in `tree` belongs to (its issuer UID).
    fn device_owner(&self, tree: &Tree, dev: &str) -> Option<String> {
        self.cert(tree, &device_path(dev))
            .ok()
            .flatten()
            .and_then(|c| c.issuer_uid().map(str::to_string))
    }

    /// A member leaving (jamid writes no other `remove`). jamid does not check who
    /// removes; we take a removal only from the member itself or an admin.
    fn remove(&self, tree: &Tree, parent: &Tree, who: &Who, uri: &str) -> Result<(), Refusal> {
        if who.uri != uri && !self.has(parent, &admin_path(&who.uri)) {
            return Err(Refusal::Rule("a removal of another member by a non-admin"));
        }
        for f in self.changed(tree, Some(parent))? {
            if passing(uri, who).contains(&f) {
                continue;
            }
            match device_of(&f) {
                Some(d)
                    if self.has(parent, &f)
                        && (d == uri || self.device_owner(parent, d).as_deref() == Some(uri)) => {}
                Some(_) => return Err(Refusal::Rule("a removal of another member's device")),
                None => return Err(Refusal::UnwantedFile(f)),
            }
        }
        Ok(())
    }

    fn resolution(
        &self,
        tree: &Tree,
        parent: &Tree,
        who: &Who,
        uri: &str,
        action: MemberAction,
    ) -> Result<(), Refusal> {
        let kind = if action == MemberAction::Ban {
            "ban"
        } else {
            "unban"
        };
        let mut voters = BTreeSet::new();
        let mut banned = 0;
        for f in self.changed(tree, Some(parent))? {
            if passing(uri, who).contains(&f) {
                continue;
            }
            let parts: Vec<&str> = f.split('/').collect();
            match parts[..] {
                ["votes", k, _, voted, voter] if k == kind => {
                    if voted != uri || !self.has(parent, &f) {
                        return Err(Refusal::Rule("a resolution with a stray vote"));
                    }
                    voters.insert(voter.to_string());
                }
                ["devices", _] => {
                    let d = device_of(&f).unwrap_or_default();
                    let was = self.has(parent, &f);
                    let owner = self.device_owner(if was { parent } else { tree }, d);
                    if was != (action == MemberAction::Ban)
                        || (d != uri && owner.as_deref() != Some(uri))
                    {
                        return Err(Refusal::Rule("a resolution moves another member's device"));
                    }
                }
                ["banned", "members" | "devices" | "admins", name]
                    if name.strip_suffix(".crt") == Some(uri) =>
                {
                    banned += 1
                }
                ["banned", "invited", name] if name == uri => banned += 1,
                _ => return Err(Refusal::UnwantedFile(f)),
            }
        }
        if !self.has(parent, &admin_path(&who.uri)) {
            return Err(Refusal::Rule("a resolution by a non-admin"));
        }
        let admins: Vec<String> = self.dir_names(parent, "admins")?;
        let votes = admins
            .iter()
            .filter(|a| voters.contains(a.trim_end_matches(".crt")))
            .count();
        if admins.is_empty() || votes * 2 < admins.len() {
            return Err(Refusal::Rule("an incomplete vote"));
        }
        if banned == 0 {
            return Err(Refusal::Rule("a resolution that bans nothing"));
        }
        Ok(())
    }

    fn dir_names(&self, tree: &Tree, dir: &str) -> Result<Vec<String>, Refusal> {
        let Ok(entry) = tree.get_path(Path::new(dir)) else {
            return Ok(Vec::new());
        };
        let obj = entry.to_object(self.repo).map_err(git)?;
        Ok(obj
            .as_tree()
            .map(|t| {
                t.iter()
                    .filter_map(|e| e.name().ok().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }

    fn profile(&self, tree: &Tree, parent: &Tree, who: &Who) -> Result<(), Refusal> {
        if !self.has(parent, &admin_path(&who.uri)) {
            return Err(Refusal::Rule("a profile update by a non-admin"));
        }
        for f in self.changed(tree, Some(parent))? {
            if f != super::repo::PROFILE_PATH {
                return Err(Refusal::UnwantedFile(f));
            }
        }
        Ok(())
    }

    fn edit(&self, c: &Commit, msg: &Message, who: &Who) -> Result<(), Refusal> {
        let edited = msg
            .get("edit")
            .ok_or(Refusal::Malformed("edit without \"edit\"".into()))?;
        let oid = Oid::from_str(&edited).map_err(|_| Refusal::Rule("an edit of no commit"))?;
        let e = self
            .repo
            .find_commit(oid)
            .map_err(|_| Refusal::Rule("an edit of no commit"))?;
        if !self.repo.graph_descendant_of(c.id(), oid).unwrap_or(false) {
            return Err(Refusal::Rule("an edit of a commit not in its history"));
        }
        let etree = e.tree().map_err(git)?;
        let author = self.device_account(&etree, e.author().email().unwrap_or_default())?;
        if author != who.uri {
            return Err(Refusal::Rule("an edit of another member's message"));
        }
        let kind = Message::parse(e.message_raw().unwrap_or_default())
            .map(|m| m.kind())
            .unwrap_or_default();
        if kind != message::TEXT {
            return Err(Refusal::Rule("an edit of a commit that is not text"));
        }
        Ok(())
    }

    /// Any other commit: only the author's own certificates may change.
    fn user_diff(&self, tree: &Tree, parent: &Tree, who: &Who) -> Result<(), Refusal> {
        if !self.has(tree, &device_path(&who.dev)) {
            return Err(Refusal::NoDeviceCertificate);
        }
        for f in self.changed(tree, Some(parent))? {
            if f == admin_path(&who.uri) || f == member_path(&who.uri) {
                if !self.has(parent, &f) {
                    return Err(Refusal::UnwantedFile(f));
                }
                self.verify_cert(tree, &f, &who.uri)?;
            } else if f == device_path(&who.dev) {
                self.verify_cert(tree, &f, &who.uri)?;
            } else {
                return Err(Refusal::UnwantedFile(f));
            }
        }
        Ok(())
    }

    /// `isValidUserAtCommit`: the author device's account is an admin or member in
    /// `tree`, issued the device, and neither certificate expired before the commit.
    fn user_at(&self, c: &Commit, tree: &Tree, who: &Who) -> Result<(), Refusal> {
        let device = self
            .cert(tree, &device_path(&who.dev))?
            .ok_or(Refusal::NoDeviceCertificate)?;
        let account = self
            .cert(tree, &member_path(&who.uri))?
            .or(self.cert(tree, &admin_path(&who.uri))?)
            .ok_or(Refusal::NotAMember)?;
        let t = u64::try_from(c.committer().when().seconds()).unwrap_or(0);
        if t > device.not_after() || t > account.not_after() {
            return Err(Refusal::Expired);
        }
        if hex::encode(account.short_id()) != who.uri {
            return Err(Refusal::BadCertificate(
                admin_path(&who.uri),
                "not this account's certificate".into(),
            ));
        }
        device
            .verify_issued_by(&account)
            .map_err(|e| Refusal::BadCertificate(device_path(&who.dev), e.to_string()))
    }
}

/// Files a removal or a ban of `uri` may change without further check (jamid's list):
/// the member's own certificate, CRL and invitation, and the author's device file.
fn passing(uri: &str, who: &Who) -> [String; 5] {
    [
        admin_path(uri),
        member_path(uri),
        format!("CRLs/{uri}"),
        invited_path(uri),
        device_path(&who.dev),
    ]
}

/// `devices/<id>.crt` → `<id>`.
fn device_of(path: &str) -> Option<&str> {
    path.strip_prefix("devices/")?.strip_suffix(".crt")
}
