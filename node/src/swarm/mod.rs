//! Swarm conversations (PROTOCOLS §7): one git repository per conversation, written
//! byte for byte as jamid 20230206 writes it ([`repo`], [`message`]) and every fetched
//! commit checked by jamid's rules plus the commit signature later Jami versions check
//! ([`validate`]), commits shown as jamid shows them ([`history`]), and the upload-pack
//! server and fetch client of `git://` channels ([`gitproto`]).
//!
//! What jamid 20230206 does, rule by rule with its source lines, is in
//! `JAMID-20230206.md` beside this file (read from the sources; where a repository jamid
//! wrote disagrees, the repository wins: `tests/fixtures/swarm-13.7/README.md`).

pub mod gitproto;
pub mod history;
pub mod message;
pub mod repo;
pub mod validate;

/// What can go wrong with a conversation repository.
#[derive(Debug, thiserror::Error)]
pub enum SwarmError {
    #[error("git: {0}")]
    Git(#[from] git2::Error),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("the repository has no initial commit on main")]
    NoInitialCommit,
    #[error("refused: {0}")]
    Refused(String),
}
