//! What a node stores for others: values per key with expiration by value type, the
//! edit rule for signed values, quotas with eviction, and the listeners to notify.
//! Protocol-agnostic: values arrive already parsed into [`Stored`]; the engine packs
//! and unpacks them. Time is an input (milliseconds of the caller's clock).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Largest value accepted (`MAX_VALUE_SIZE`).
pub const MAX_VALUE_SIZE: usize = 64 * 1024;
/// Values per key (`MAX_VALUES`).
pub const MAX_VALUES_PER_KEY: usize = 65_536;
/// Default total storage (`MAX_STORE_SIZE`).
pub const MAX_STORE_BYTES: usize = 64 * 1024 * 1024;
/// A listener lives this long after its last `listen`.
pub const LISTENER_TIME: Duration = Duration::from_secs(10 * 60);

/// Storage duration of OpenDHT's default value types (§1.12); unknown types use 10 min.
pub fn expiration(type_id: u16) -> Duration {
    let min = |m: u64| Duration::from_secs(60 * m);
    match type_id {
        1 | 3 => min(5),
        2 => min(15),
        4 | 8 | 9 => min(7 * 24 * 60),
        5 => min(1),
        _ => min(10),
    }
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// A value as storage sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub id: u64,
    pub type_id: u16,
    /// Signed values: owner key (DER SPKI) and sequence number.
    pub owner: Option<Vec<u8>>,
    pub seq: u16,
    /// The packed value as it travels (what gets sent back to getters).
    pub packed: Vec<u8>,
}

/// A stored value with its bookkeeping.
#[derive(Clone, Debug)]
pub struct Entry {
    pub value: Stored,
    pub created: u64,
    pub expires: u64,
    pub source: IpAddr,
}

/// What happened to a put.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    New,
    /// Same id, newer content (a signed edit).
    Edited,
    /// Same id and content: only the expiration moved.
    Refreshed,
    Rejected(&'static str),
}

/// A remote node listening on a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    pub node: SocketAddr,
    pub sid: u32,
    pub expires: u64,
}

/// Values and listeners of every key, ordered for deterministic iteration.
#[derive(Default, Debug)]
pub struct Storage {
    keys: BTreeMap<[u8; 20], BTreeMap<u64, Entry>>,
    listeners: BTreeMap<[u8; 20], Vec<Listener>>,
    bytes: usize,
    pub max_bytes: usize,
    /// Puts rejected, by reason (for reports and flood scenarios).
    pub rejected: BTreeMap<&'static str, u64>,
}

impl Storage {
    pub fn new() -> Self {
        Storage {
            max_bytes: MAX_STORE_BYTES,
            ..Default::default()
        }
    }

    pub fn total_bytes(&self) -> usize {
        self.bytes
    }

    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Store `v` at `key`. `created` is the sender's creation time (capped at now).
    /// The caller has already checked a signed value's signature (it knows the crypto);
    /// storage applies the edit rule: same owner and a strictly higher sequence number.
    pub fn put(
        &mut self,
        key: [u8; 20],
        v: Stored,
        created: u64,
        now: u64,
        source: IpAddr,
    ) -> PutOutcome {
        let out = self.put_inner(key, v, created, now, source);
        if let PutOutcome::Rejected(why) = out {
            *self.rejected.entry(why).or_default() += 1;
        }
        out
    }

    fn put_inner(
        &mut self,
        key: [u8; 20],
        v: Stored,
        created: u64,
        now: u64,
        source: IpAddr,
    ) -> PutOutcome {
        if v.id == 0 {
            return PutOutcome::Rejected("invalid value id");
        }
        if v.packed.len() > MAX_VALUE_SIZE {
            return PutOutcome::Rejected("value too large");
        }
        let created = created.min(now);
        let expires = created + ms(expiration(v.type_id));
        if expires <= now {
            return PutOutcome::Rejected("already expired");
        }
        let size = v.packed.len();
        let values = self.keys.entry(key).or_default();
        if let Some(old) = values.get_mut(&v.id) {
            if old.value == v {
                old.expires = old.expires.max(expires);
                return PutOutcome::Refreshed;
            }
            // Edits: only signed values, same owner, strictly newer sequence number.
            match (&old.value.owner, &v.owner) {
                (Some(a), Some(b)) if a == b && v.seq > old.value.seq => {}
                (Some(a), Some(b)) if a == b => {
                    return PutOutcome::Rejected("stale sequence number")
                }
                _ => return PutOutcome::Rejected("edit by another owner"),
            }
            let old_size = old.value.packed.len();
            *old = Entry {
                value: v,
                created,
                expires,
                source,
            };
            self.bytes = self.bytes + size - old_size;
            return PutOutcome::Edited;
        }
        if values.len() >= MAX_VALUES_PER_KEY {
            return PutOutcome::Rejected("too many values at this key");
        }
        values.insert(
            v.id,
            Entry {
                value: v,
                created,
                expires,
                source,
            },
        );
        self.bytes += size;
        while self.bytes > self.max_bytes {
            if !self.evict_one() {
                break;
            }
        }
        PutOutcome::New
    }

    /// Evict the oldest value of the source using the most storage.
    fn evict_one(&mut self) -> bool {
        let mut per_source: BTreeMap<IpAddr, usize> = BTreeMap::new();
        for e in self.keys.values().flat_map(|m| m.values()) {
            *per_source.entry(e.source).or_default() += e.value.packed.len();
        }
        let Some((&src, _)) = per_source.iter().max_by_key(|(_, &b)| b) else {
            return false;
        };
        let victim = self
            .keys
            .iter()
            .flat_map(|(k, m)| m.values().map(move |e| (*k, e)))
            .filter(|(_, e)| e.source == src)
            .min_by_key(|(_, e)| (e.created, e.value.id))
            .map(|(k, e)| (k, e.value.id));
        let Some((k, id)) = victim else { return false };
        self.remove(&k, id);
        *self.rejected.entry("evicted (quota)").or_default() += 1;
        true
    }

    fn remove(&mut self, key: &[u8; 20], id: u64) -> Option<Entry> {
        let m = self.keys.get_mut(key)?;
        let e = m.remove(&id)?;
        self.bytes -= e.value.packed.len();
        if m.is_empty() {
            self.keys.remove(key);
        }
        Some(e)
    }

    /// Values at `key`, oldest id first.
    pub fn get(&self, key: &[u8; 20]) -> Vec<&Entry> {
        self.keys
            .get(key)
            .map(|m| m.values().collect())
            .unwrap_or_default()
    }

    pub fn value(&self, key: &[u8; 20], id: u64) -> Option<&Entry> {
        self.keys.get(key)?.get(&id)
    }

    /// Push a value's expiration forward (a `refresh` request). False if unknown.
    pub fn refresh(&mut self, key: &[u8; 20], id: u64, now: u64) -> bool {
        match self.keys.get_mut(key).and_then(|m| m.get_mut(&id)) {
            Some(e) => {
                e.expires = now + ms(expiration(e.value.type_id));
                true
            }
            None => false,
        }
    }

    /// Drop expired values and listeners; returns the expired value ids per key (to
    /// tell listeners with `exp`).
    pub fn expire(&mut self, now: u64) -> Vec<([u8; 20], Vec<u64>)> {
        let mut gone = Vec::new();
        let keys: Vec<[u8; 20]> = self.keys.keys().copied().collect();
        for k in keys {
            let ids: Vec<u64> = self.keys[&k]
                .values()
                .filter(|e| e.expires <= now)
                .map(|e| e.value.id)
                .collect();
            for id in &ids {
                self.remove(&k, *id);
            }
            if !ids.is_empty() {
                gone.push((k, ids));
            }
        }
        for ls in self.listeners.values_mut() {
            ls.retain(|l| l.expires > now);
        }
        self.listeners.retain(|_, ls| !ls.is_empty());
        gone
    }

    /// Add or refresh a listener (same node and sid refreshes).
    pub fn listen(&mut self, key: [u8; 20], node: SocketAddr, sid: u32, now: u64) {
        let ls = self.listeners.entry(key).or_default();
        let expires = now + ms(LISTENER_TIME);
        match ls.iter_mut().find(|l| l.node == node && l.sid == sid) {
            Some(l) => l.expires = expires,
            None => ls.push(Listener { node, sid, expires }),
        }
    }

    pub fn listeners(&self, key: &[u8; 20]) -> &[Listener] {
        self.listeners.get(key).map(Vec::as_slice).unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn val(id: u64, seq: u16, owner: Option<u8>, body: &[u8]) -> Stored {
        Stored {
            id,
            type_id: 0,
            owner: owner.map(|o| vec![o]),
            seq,
            packed: body.to_vec(),
        }
    }
    const K: [u8; 20] = [7; 20];
    fn ip() -> IpAddr {
        "127.0.0.1".parse().unwrap()
    }

    #[test]
    fn signed_edits_need_the_same_owner_and_a_higher_seq() {
        let mut s = Storage::new();
        assert_eq!(
            s.put(K, val(1, 1, Some(9), b"a"), 0, 0, ip()),
            PutOutcome::New
        );
        assert_eq!(
            s.put(K, val(1, 1, Some(9), b"a"), 0, 10, ip()),
            PutOutcome::Refreshed
        );
        assert_eq!(
            s.put(K, val(1, 2, Some(9), b"b"), 0, 10, ip()),
            PutOutcome::Edited
        );
        assert_eq!(
            s.put(K, val(1, 2, Some(9), b"c"), 0, 10, ip()),
            PutOutcome::Rejected("stale sequence number")
        );
        assert_eq!(
            s.put(K, val(1, 5, Some(8), b"d"), 0, 10, ip()),
            PutOutcome::Rejected("edit by another owner")
        );
        assert_eq!(
            s.put(K, val(1, 5, None, b"e"), 0, 10, ip()),
            PutOutcome::Rejected("edit by another owner")
        );
        assert_eq!(s.get(&K)[0].value.packed, b"b");
        assert_eq!(s.rejected.values().sum::<u64>(), 3);
    }

    #[test]
    fn values_expire_by_type_and_listeners_after_ten_minutes() {
        let mut s = Storage::new();
        s.put(
            K,
            Stored {
                type_id: 5,
                ..val(1, 0, None, b"ice")
            },
            0,
            0,
            ip(),
        );
        s.put(K, val(2, 0, None, b"user"), 0, 0, ip());
        s.listen(K, "127.0.0.1:1".parse().unwrap(), 3, 0);
        assert_eq!(s.expire(59_000), vec![]);
        assert_eq!(s.expire(60_000), vec![(K, vec![1])]);
        assert_eq!(s.listeners(&K).len(), 1);
        assert_eq!(s.expire(600_000), vec![(K, vec![2])]);
        assert!(s.listeners(&K).is_empty());
        assert_eq!(s.total_bytes(), 0);
    }

    #[test]
    fn quota_evicts_the_oldest_value_of_the_heaviest_source() {
        let mut s = Storage::new();
        s.max_bytes = 10;
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        s.put(K, val(1, 0, None, b"aaaa"), 0, 0, a);
        s.put(K, val(2, 0, None, b"bb"), 1, 1, b);
        s.put(K, val(3, 0, None, b"aaaa"), 2, 2, a);
        assert_eq!(s.total_bytes(), 10);
        s.put(K, val(4, 0, None, b"aa"), 3, 3, a);
        assert!(
            s.value(&K, 1).is_none(),
            "the flooding source's oldest value went first"
        );
        assert!(s.value(&K, 2).is_some(), "the other source kept its value");
        assert!(s.total_bytes() <= 10);
    }

    #[test]
    fn oversized_and_invalid_values_are_rejected() {
        let mut s = Storage::new();
        assert_eq!(
            s.put(K, val(0, 0, None, b"x"), 0, 0, ip()),
            PutOutcome::Rejected("invalid value id")
        );
        let big = vec![0u8; MAX_VALUE_SIZE + 1];
        assert_eq!(
            s.put(K, val(1, 0, None, &big), 0, 0, ip()),
            PutOutcome::Rejected("value too large")
        );
    }
}
