//! Both ends of swarm sync over `git://` channels, sans-IO. The server (PROTOCOLS §7.5; jamid 20230206
//! `gitserver.cpp`): pkt-lines, the request line `git-upload-pack /<conv>\0host=<dev>\0`,
//! the ref advertisement with jamid's capabilities, want/have/done answered without
//! multi-ack (`ACK <common> continue` + `NAK` on a flush, `ACK <common>` or `NAK` on
//! `done`) and the pack on side band 1 in chunks of at most 65 515 bytes. jamid's client
//! is libgit2's smart protocol over the channel; ours is [`Fetch`], sans-IO like the
//! server, so the simulator can run it.
//!
//! Bytes in, bytes out: the caller moves them over the `git://` channel.

use git2::{Oid, Repository};

/// Capabilities jamid's server advertises (no multi-ack, no thin packs, no ofs-delta).
pub const CAPABILITIES: &str = "side-band side-band-64k shallow no-progress include-tag";
/// Largest pack data per side-band packet (65 520 bytes with header and band byte).
pub const MAX_SIDEBAND_DATA: usize = 65_515;
/// Largest pkt-line the server accepts from a client (git's own limit).
pub const MAX_PKT_LEN: usize = 65_520;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GitProtoError {
    #[error("bad pkt-line length {0:?}")]
    BadLength(String),
    #[error("unexpected packet {0:?}")]
    Unexpected(String),
    #[error("nothing wanted")]
    NoWant,
    #[error("git: {0}")]
    Git(String),
}

fn git(e: git2::Error) -> GitProtoError {
    GitProtoError::Git(e.message().to_string())
}

/// One pkt-line: a flush (`0000`) or data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pkt {
    Flush,
    Data(Vec<u8>),
}

/// `data` as one pkt-line.
pub fn pkt(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:04x}", data.len() + 4).into_bytes();
    out.extend_from_slice(data);
    out
}

pub const FLUSH: &[u8] = b"0000";

/// Splits a byte stream into pkt-lines (packets may arrive in any pieces; jamid's
/// server does not reassemble them, ours does). The buffer never holds more than one
/// packet's worth of bytes.
#[derive(Default)]
pub struct PktReader {
    buf: Vec<u8>,
}

impl PktReader {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    pub fn next_pkt(&mut self) -> Result<Option<Pkt>, GitProtoError> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let head = &self.buf[..4];
        let len = std::str::from_utf8(head)
            .ok()
            .and_then(|h| usize::from_str_radix(h, 16).ok())
            .ok_or_else(|| GitProtoError::BadLength(String::from_utf8_lossy(head).into()))?;
        if len == 0 {
            self.buf.drain(..4);
            return Ok(Some(Pkt::Flush));
        }
        if !(4..=MAX_PKT_LEN).contains(&len) {
            return Err(GitProtoError::BadLength(len.to_string()));
        }
        if self.buf.len() < len {
            return Ok(None);
        }
        let data = self.buf[4..len].to_vec();
        self.buf.drain(..len);
        Ok(Some(Pkt::Data(data)))
    }
}

/// What the client asked for in its request line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The conversation id (the path without its `/`).
    pub conversation: String,
    /// `host=`: the serving device's id as the client named it.
    pub host: String,
}

/// One upload-pack session over a `git://` channel.
#[derive(Default)]
pub struct UploadPack {
    reader: PktReader,
    out: Vec<u8>,
    request: Option<Request>,
    want: Option<Oid>,
    haves: Vec<Oid>,
    common: Option<Oid>,
    /// The commit whose history was sent (the fetch is served).
    served: Option<Oid>,
}

impl UploadPack {
    pub fn new() -> Self {
        Self::default()
    }

    /// The request line, once received.
    pub fn request(&self) -> Option<&Request> {
        self.request.as_ref()
    }

    /// The commit the client fetched, once its pack is sent.
    pub fn served(&self) -> Option<Oid> {
        self.served
    }

    /// Bytes to send to the client.
    pub fn poll_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Feed bytes from the client; `repo` is the conversation the request names.
    pub fn handle(&mut self, repo: &Repository, bytes: &[u8]) -> Result<(), GitProtoError> {
        self.reader.push(bytes);
        while let Some(p) = self.reader.next_pkt()? {
            match p {
                Pkt::Flush => self.on_flush(),
                Pkt::Data(d) => self.on_data(repo, &d)?,
            }
        }
        Ok(())
    }

    fn on_data(&mut self, repo: &Repository, d: &[u8]) -> Result<(), GitProtoError> {
        let text = String::from_utf8_lossy(d);
        if let Some(rest) = text.strip_prefix("git-upload-pack ") {
            let mut parts = rest.split('\0');
            let path = parts.next().unwrap_or_default();
            let host = parts
                .find_map(|p| p.strip_prefix("host="))
                .unwrap_or_default();
            self.request = Some(Request {
                conversation: path.trim_start_matches('/').to_string(),
                host: host.to_string(),
            });
            return self.advertise(repo);
        }
        let line = text.trim_end_matches('\n');
        if let Some(rest) = line.strip_prefix("want ") {
            let oid = rest.get(..40).and_then(|h| Oid::from_str(h).ok());
            self.want = Some(oid.ok_or_else(|| GitProtoError::Unexpected(line.into()))?);
        } else if let Some(rest) = line.strip_prefix("have ") {
            if let Some(oid) = rest.get(..40).and_then(|h| Oid::from_str(h).ok()) {
                // Only a commit we have is common (jamid takes the first have blindly).
                if self.common.is_none() && repo.find_commit(oid).is_ok() {
                    self.common = Some(oid);
                }
                self.haves.push(oid);
            }
        } else if line == "done" {
            match self.common {
                Some(c) => self.out.extend(pkt(format!("ACK {c}\n").as_bytes())),
                None => self.out.extend(pkt(b"NAK\n")),
            }
            self.send_pack(repo)?;
        } else {
            return Err(GitProtoError::Unexpected(line.into()));
        }
        Ok(())
    }

    fn on_flush(&mut self) {
        if self.haves.is_empty() {
            return;
        }
        if let Some(c) = self.common {
            self.out
                .extend(pkt(format!("ACK {c} continue\n").as_bytes()));
        }
        self.out.extend(pkt(b"NAK\n"));
    }

    /// `<HEAD> HEAD\0<caps>\n`, then every reference, then a flush.
    fn advertise(&mut self, repo: &Repository) -> Result<(), GitProtoError> {
        let head = repo.refname_to_id("refs/heads/main").map_err(git)?;
        self.out
            .extend(pkt(format!("{head} HEAD\0{CAPABILITIES}\n").as_bytes()));
        let mut refs: Vec<(String, Oid)> = Vec::new();
        for r in repo.references().map_err(git)? {
            let r = r.map_err(git)?;
            if let (Ok(name), Some(target)) = (r.name(), r.target()) {
                refs.push((name.to_string(), target));
            }
        }
        refs.sort();
        for (name, oid) in refs {
            self.out.extend(pkt(format!("{oid} {name}\n").as_bytes()));
        }
        self.out.extend_from_slice(FLUSH);
        Ok(())
    }

    /// The commits from the want back to what the client has, and their trees.
    fn send_pack(&mut self, repo: &Repository) -> Result<(), GitProtoError> {
        let want = self.want.ok_or(GitProtoError::NoWant)?;
        let mut walk = repo.revwalk().map_err(git)?;
        walk.push(want).map_err(git)?;
        for h in &self.haves {
            if repo.find_commit(*h).is_ok() {
                walk.hide(*h).map_err(git)?;
            }
        }
        let mut pb = repo.packbuilder().map_err(git)?;
        pb.insert_walk(&mut walk).map_err(git)?;
        let mut buf = git2::Buf::new();
        pb.write_buf(&mut buf).map_err(git)?;
        for chunk in buf.chunks(MAX_SIDEBAND_DATA) {
            let mut data = Vec::with_capacity(chunk.len() + 1);
            data.push(1);
            data.extend_from_slice(chunk);
            self.out.extend(pkt(&data));
        }
        self.out.extend_from_slice(FLUSH);
        self.served = Some(want);
        self.want = None;
        self.haves.clear();
        self.common = None;
        Ok(())
    }
}

/// The request line jamid's client (its libgit2 transport) sends first.
pub fn request_line(conversation: &str, host_device: &str) -> Vec<u8> {
    pkt(format!("git-upload-pack /{conversation}\0host={host_device}\0").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn pkt_lines_frame_and_refuse_bad_lengths() {
        assert_eq!(pkt(b"done\n"), b"0009done\n");
        // jamid's first line for a 40-hex conversation and a 64-hex device: `0084…`.
        let line = request_line(&"c".repeat(40), &"d".repeat(64));
        assert_eq!(&line[..20], b"0084git-upload-pack ");
        assert_eq!(line.len(), 0x84);
        let mut r = PktReader::default();
        r.push(b"0009do");
        assert_eq!(r.next_pkt(), Ok(None));
        r.push(b"ne\n0000");
        assert_eq!(r.next_pkt(), Ok(Some(Pkt::Data(b"done\n".to_vec()))));
        assert_eq!(r.next_pkt(), Ok(Some(Pkt::Flush)));
        for bad in [&b"zzzz"[..], b"0003", b"fff5"] {
            let mut r = PktReader::default();
            r.push(bad);
            assert!(
                matches!(r.next_pkt(), Err(GitProtoError::BadLength(_))),
                "{bad:?}"
            );
        }
    }

    fn small_repo() -> (tempfile::TempDir, Repository) {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_opts(
            dir.path(),
            git2::RepositoryInitOptions::new().initial_head("main"),
        )
        .unwrap();
        let sig = git2::Signature::new("a", "b", &git2::Time::new(1, 0)).unwrap();
        let tree = repo.treebuilder(None).unwrap().write().unwrap();
        let tree = repo.find_tree(tree).unwrap();
        repo.commit(Some("refs/heads/main"), &sig, &sig, "m", &tree, &[])
            .unwrap();
        drop(tree);
        (dir, repo)
    }

    proptest! {
        /// Any bytes from a peer, in any pieces: an error or an answer, never a panic,
        /// and never more than one packet left buffered.
        #[test]
        fn upload_pack_survives_any_client(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..8),
            prefix in any::<bool>(),
        ) {
            let (_d, repo) = small_repo();
            let mut up = UploadPack::new();
            if prefix {
                up.handle(&repo, &request_line("c", "d")).unwrap();
                prop_assert!(up.poll_output().ends_with(FLUSH));
            }
            for c in chunks {
                if up.handle(&repo, &c).is_err() {
                    break;
                }
                prop_assert!(up.reader.buf.len() < MAX_PKT_LEN);
                let _ = up.poll_output();
            }
        }

        /// Any bytes from a server: an error or progress, never a panic, and a pack
        /// never past the limit.
        #[test]
        fn fetch_survives_any_server(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8),
            advert in any::<bool>(),
        ) {
            let (_d, repo) = small_repo();
            let mut f = Fetch::new(Some(("c", "d")), vec![]).with_limit(512);
            if advert {
                let tip = "1".repeat(40);
                let mut a = pkt(format!("{tip} HEAD\0{CAPABILITIES}\n").as_bytes());
                a.extend(pkt(format!("{tip} refs/heads/main\n").as_bytes()));
                a.extend_from_slice(FLUSH);
                f.handle(&repo, &a).unwrap();
                prop_assert!(String::from_utf8_lossy(&f.poll_output()).contains("want 1111"));
            }
            for c in chunks {
                if f.handle(&repo, &c).is_err() {
                    break;
                }
                prop_assert!(f.pack.len() <= 512);
                prop_assert!(f.reader.buf.len() < MAX_PKT_LEN);
            }
        }
    }
}

/// What a fetch asks for: the capabilities of libgit2's first want against jamid's
/// server (the trailing space is libgit2's).
pub const WANT_CAPABILITIES: &str = "side-band-64k include-tag ";
/// jamid aborts a fetch past 256 MiB (`MAX_FETCH_SIZE`); so do we, for clones too.
pub const MAX_FETCH_BYTES: usize = 256 * 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FetchState {
    Refs,
    Acks,
    Pack,
    Done,
}

/// The client side of a fetch or clone over a `git://` channel, sans-IO: the request
/// line (unless the server speaks first, as `git upload-pack` does), the advertisement,
/// one want (the server's `main`), our haves and `done`, then the side-band pack,
/// written into the repository's object database at the end.
pub struct Fetch {
    reader: PktReader,
    out: Vec<u8>,
    state: FetchState,
    haves: Vec<Oid>,
    tip: Option<Oid>,
    pack: Vec<u8>,
    max_bytes: usize,
}

impl Fetch {
    /// A fetch that first sends jamid's request line for `conversation` on
    /// `host_device` (`None`: the server advertises unprompted). `haves` are commits we
    /// have (our `main` first), at most 256 as libgit2 sends.
    pub fn new(request: Option<(&str, &str)>, mut haves: Vec<Oid>) -> Fetch {
        haves.truncate(256);
        Fetch {
            reader: PktReader::default(),
            out: request.map(|(c, h)| request_line(c, h)).unwrap_or_default(),
            state: FetchState::Refs,
            haves,
            tip: None,
            pack: Vec::new(),
            max_bytes: MAX_FETCH_BYTES,
        }
    }

    pub fn with_limit(mut self, max_bytes: usize) -> Fetch {
        self.max_bytes = max_bytes;
        self
    }

    pub fn poll_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// The server's `main` once the fetch is done (its objects are then in `repo`).
    pub fn finished(&self) -> Option<Oid> {
        (self.state == FetchState::Done)
            .then_some(self.tip)
            .flatten()
    }

    /// Feed bytes from the server.
    pub fn handle(&mut self, repo: &Repository, bytes: &[u8]) -> Result<(), GitProtoError> {
        self.reader.push(bytes);
        while self.state != FetchState::Done {
            let Some(p) = self.reader.next_pkt()? else {
                break;
            };
            match (self.state, p) {
                (FetchState::Refs, Pkt::Data(d)) => self.on_ref(&d)?,
                (FetchState::Refs, Pkt::Flush) => self.ask(repo)?,
                (FetchState::Acks, Pkt::Data(d)) if d.starts_with(b"ACK ") || d == b"NAK\n" => {}
                (FetchState::Acks | FetchState::Pack, Pkt::Data(d)) => {
                    self.state = FetchState::Pack;
                    self.on_band(&d)?;
                }
                (FetchState::Pack, Pkt::Flush) => self.store(repo)?,
                (_, p) => return Err(GitProtoError::Unexpected(format!("{p:?}"))),
            }
        }
        Ok(())
    }

    fn on_ref(&mut self, d: &[u8]) -> Result<(), GitProtoError> {
        let line = String::from_utf8_lossy(d);
        let line = line.split('\0').next().unwrap_or_default().trim_end();
        let (oid, name) = line
            .split_once(' ')
            .ok_or_else(|| GitProtoError::Unexpected(line.into()))?;
        if name == "refs/heads/main" {
            self.tip = Some(Oid::from_str(oid).map_err(git)?);
        }
        Ok(())
    }

    /// After the advertisement: nothing to ask when we have the tip, else want, haves
    /// and done in one write (libgit2's way under 20 haves; jamid answers after `done`).
    fn ask(&mut self, repo: &Repository) -> Result<(), GitProtoError> {
        let tip = self.tip.ok_or(GitProtoError::NoWant)?;
        if repo.find_commit(tip).is_ok() {
            self.out.extend_from_slice(FLUSH);
            self.state = FetchState::Done;
            return Ok(());
        }
        self.out
            .extend(pkt(format!("want {tip} {WANT_CAPABILITIES}\n").as_bytes()));
        self.out.extend_from_slice(FLUSH);
        for h in &self.haves {
            self.out.extend(pkt(format!("have {h}\n").as_bytes()));
        }
        self.out.extend(pkt(b"done\n"));
        self.state = FetchState::Acks;
        Ok(())
    }

    fn on_band(&mut self, d: &[u8]) -> Result<(), GitProtoError> {
        match d.split_first() {
            Some((1, data)) => {
                if self.pack.len() + data.len() > self.max_bytes {
                    return Err(GitProtoError::Unexpected("the pack is too big".into()));
                }
                self.pack.extend_from_slice(data);
            }
            Some((2, _)) => {}
            Some((3, msg)) => {
                return Err(GitProtoError::Unexpected(
                    String::from_utf8_lossy(msg).into(),
                ))
            }
            _ => return Err(GitProtoError::Unexpected("bad side band".into())),
        }
        Ok(())
    }

    /// The pack into the object database (libgit2 indexes and checks it).
    fn store(&mut self, repo: &Repository) -> Result<(), GitProtoError> {
        let odb = repo.odb().map_err(git)?;
        let mut w = odb.packwriter().map_err(git)?;
        std::io::Write::write_all(&mut w, &self.pack)
            .map_err(|e| GitProtoError::Git(e.to_string()))?;
        w.commit().map_err(git)?;
        self.pack = Vec::new();
        self.state = FetchState::Done;
        Ok(())
    }
}
