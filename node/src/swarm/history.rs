//! A conversation's commits as the maps jamid gives its clients (`messageReceived`,
//! `conversationLoaded`; 20230206 `convCommitToMap`): `id`, `parents` (comma-joined),
//! `author` (the account of the author device), `type` (`merge` for merge commits),
//! `timestamp` (committer time, seconds), every other JSON field as a string, and for
//! a file its `fileId`. Commits jamid would drop (no author, no type) give `None`.

use super::message::{self, Message};
use super::repo::device_path;
use crate::identity::decode_chain;
use git2::{Oid, Repository};
use std::collections::BTreeMap;
use std::path::Path;

/// The map jamid shows for commit `oid` (without `linearizedParent`, which depends on
/// the walk that listed it).
pub fn commit_map(repo: &Repository, oid: Oid) -> Option<BTreeMap<String, String>> {
    let c = repo.find_commit(oid).ok()?;
    let dev = c.author().email().ok()?.to_string();
    let tree = c.tree().ok()?;
    let blob = tree
        .get_path(Path::new(&device_path(&dev)))
        .ok()?
        .to_object(repo)
        .ok()?;
    let cert = decode_chain(blob.as_blob()?.content())
        .ok()?
        .into_iter()
        .next()?;
    let author = cert.issuer_uid().filter(|u| !u.is_empty())?.to_string();
    let mut map = BTreeMap::new();
    let kind = if c.parent_count() > 1 {
        "merge".to_string()
    } else {
        let m = Message::parse(c.message_raw().ok()?).ok()?;
        let kind = m.kind();
        if kind.is_empty() {
            return None;
        }
        for (k, v) in &m.fields {
            map.insert(k.clone(), v.as_string());
        }
        if kind == message::DATA_TRANSFER {
            let tid = map.get("tid").cloned().unwrap_or_default();
            let name = map.get("displayName").cloned().unwrap_or_default();
            let mut file_id = format!("{oid}_{tid}");
            if let Some(ext) = extension(&name) {
                file_id = format!("{file_id}.{ext}");
            }
            map.insert("fileId".into(), file_id);
        }
        kind
    };
    let parents: Vec<String> = c.parent_ids().map(|p| p.to_string()).collect();
    map.insert("id".into(), oid.to_string());
    map.insert("parents".into(), parents.join(","));
    map.insert("author".into(), author);
    map.insert("type".into(), kind);
    map.insert(
        "timestamp".into(),
        c.committer().when().seconds().to_string(),
    );
    Some(map)
}

/// jamid's `getFileExtension`: after the last `.`, none if empty or 8 characters or more.
fn extension(name: &str) -> Option<&str> {
    let (_, ext) = name.rsplit_once('.')?;
    (!ext.is_empty() && ext.chars().count() < 8).then_some(ext)
}
