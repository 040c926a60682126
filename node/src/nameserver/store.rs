//! The name server's embedded store: an append-only file of JSON lines, one
//! [`Record`] per line, `fsync`ed before a registration is acknowledged, with the
//! indexes held in memory. Registrations are never edited or deleted, so an append
//! log is the whole database; a torn last line (crash mid-write) is ignored on open.
//! One mutex makes check-and-insert atomic, so exactly one of racing registrations
//! of a name wins.

use super::domain::{Addr, Insert, Name, NsError, Record, Store};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::sync::Mutex;

#[derive(Default)]
struct Inner {
    by_name: BTreeMap<String, Record>,
    /// addr hex → name.
    by_addr: BTreeMap<String, String>,
    log: Option<File>,
}

/// Append-log store (or purely in memory, for tests and simulations).
pub struct FileStore {
    inner: Mutex<Inner>,
}

fn io_err(e: std::io::Error) -> NsError {
    NsError::Storage(e.to_string())
}

impl FileStore {
    /// A store that keeps nothing across restarts.
    pub fn in_memory() -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Opens (creating if needed) the log at `path` and replays it.
    pub fn open(path: &Path) -> Result<Self, NsError> {
        let mut inner = Inner::default();
        if path.exists() {
            let reader = BufReader::new(File::open(path).map_err(io_err)?);
            for line in reader.split(b'\n') {
                let line = line.map_err(io_err)?;
                // Only a torn final line can fail to parse; skip it.
                if let Ok(rec) = serde_json::from_slice::<Record>(&line) {
                    inner.index(rec);
                }
            }
        }
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io_err)?;
        // Terminate a torn line so the next record starts on its own line.
        if log.metadata().map_err(io_err)?.len() > 0 && !ends_with_newline(path)? {
            log.write_all(b"\n").map_err(io_err)?;
        }
        inner.log = Some(log);
        Ok(Self {
            inner: Mutex::new(inner),
        })
    }

    /// Number of registered names.
    pub fn len(&self) -> usize {
        self.lock().by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated (the
        // log write comes first and the maps change last), so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn ends_with_newline(path: &Path) -> Result<bool, NsError> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = File::open(path).map_err(io_err)?;
    f.seek(SeekFrom::End(-1)).map_err(io_err)?;
    let mut b = [0u8; 1];
    f.read_exact(&mut b).map_err(io_err)?;
    Ok(b[0] == b'\n')
}

impl Inner {
    fn index(&mut self, rec: Record) {
        self.by_addr.insert(rec.addr.clone(), rec.name.clone());
        self.by_name.insert(rec.name.clone(), rec);
    }
}

impl Store for FileStore {
    fn by_name(&self, name: &Name) -> Result<Option<Record>, NsError> {
        Ok(self.lock().by_name.get(name.as_str()).cloned())
    }

    fn by_addr(&self, addr: &Addr) -> Result<Option<Record>, NsError> {
        let inner = self.lock();
        Ok(inner
            .by_addr
            .get(&addr.hex())
            .and_then(|n| inner.by_name.get(n))
            .cloned())
    }

    fn insert_if_free(&self, rec: &Record) -> Result<Insert, NsError> {
        let mut inner = self.lock();
        if let Some(old) = inner.by_name.get(&rec.name) {
            return if old.addr == rec.addr {
                Ok(Insert::AlreadyOwned)
            } else {
                Err(NsError::NameTaken)
            };
        }
        if inner.by_addr.contains_key(&rec.addr) {
            return Err(NsError::AddressTaken);
        }
        if let Some(log) = inner.log.as_mut() {
            let mut line = serde_json::to_vec(rec).map_err(|e| NsError::Storage(e.to_string()))?;
            line.push(b'\n');
            log.write_all(&line).map_err(io_err)?;
            log.sync_data().map_err(io_err)?;
        }
        inner.index(rec.clone());
        Ok(Insert::Inserted)
    }
}
