//! The Kademlia routing table, shaped as OpenDHT 2.4 keeps it: an ordered list of
//! buckets covering the id space, each `[first, next.first)`, holding at most 8 nodes.
//! A full bucket that contains our own id splits; otherwise a newcomer waits as the
//! bucket's cached candidate while a dubious node is pinged. (OpenDHT also refuses to
//! split while the bucket holds a dubious node; we split regardless, because nodes
//! learnt from replies start dubious and a table that cannot split near its own id
//! cannot find its neighbours.) Time is an input.

use rand::RngExt;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// Bucket capacity (`TARGET_NODES`).
pub const BUCKET_SIZE: usize = 8;
/// A node is good if it replied within this long…
pub const NODE_GOOD_TIME: Duration = Duration::from_secs(120 * 60);
/// …and was heard from within this long.
pub const NODE_EXPIRE_TIME: Duration = Duration::from_secs(10 * 60);
/// Failed requests after which a node counts as expired.
pub const MAX_RESPONSE_FAILURES: u32 = 3;

/// 160-bit ids as raw bytes; the table needs only ordering and XOR.
pub type Id = [u8; 20];

/// Milliseconds of the caller's clock (the table never reads a clock itself).
pub type Millis = u64;

fn ms(d: Duration) -> Millis {
    d.as_millis() as Millis
}

/// Compare the XOR distances of `a` and `b` to `target`.
pub fn xor_cmp(a: &Id, b: &Id, target: &Id) -> std::cmp::Ordering {
    for i in 0..20 {
        let (x, y) = (a[i] ^ target[i], b[i] ^ target[i]);
        if x != y {
            return x.cmp(&y);
        }
    }
    std::cmp::Ordering::Equal
}

/// Index of the lowest set bit counting from the most significant (0..160), or None
/// for the zero id (OpenDHT's `lowbit`).
fn lowbit(id: &Id) -> Option<usize> {
    (0..160).rev().find(|&b| id[b / 8] & (0x80 >> (b % 8)) != 0)
}

fn set_bit(id: &mut Id, bit: usize) {
    id[bit / 8] |= 0x80 >> (bit % 8);
}

/// What the table knows about one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeEntry {
    pub id: Id,
    pub addr: SocketAddr,
    pub last_heard: Millis,
    pub last_reply: Option<Millis>,
    pub failures: u32,
}

impl NodeEntry {
    pub fn is_expired(&self) -> bool {
        self.failures >= MAX_RESPONSE_FAILURES
    }
    /// Replied recently, heard from recently, not failing.
    pub fn is_good(&self, now: Millis) -> bool {
        !self.is_expired()
            && self
                .last_reply
                .map(|r| now.saturating_sub(r) <= ms(NODE_GOOD_TIME))
                .unwrap_or(false)
            && now.saturating_sub(self.last_heard) <= ms(NODE_EXPIRE_TIME)
    }
}

#[derive(Clone, Debug)]
struct Bucket {
    first: Id,
    nodes: Vec<NodeEntry>,
    cached: Option<NodeEntry>,
    last_changed: Millis,
}

/// What the caller should do after an insertion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Insert {
    /// New node added.
    Added,
    /// Known node updated.
    Updated,
    /// Bucket full: the newcomer is cached; ping this dubious node to see if it lives.
    PingDubious(SocketAddr),
    /// Bucket full of good nodes: the newcomer is only cached.
    Cached,
    /// Our own id, or otherwise not insertable.
    Ignored,
}

/// One address family's routing table.
#[derive(Clone, Debug)]
pub struct RoutingTable {
    own: Id,
    buckets: Vec<Bucket>,
    /// Last time a node new to us fell in the bucket holding our own id (OpenDHT's
    /// `grow_time`): while it is recent, the neighbourhood is still being learnt.
    grow_time: Millis,
    /// How many nodes of the buckets use each address: "one address, one node" is
    /// checked for every node named in every answer, and a walk over the whole table
    /// each time was the table's largest cost at 1,000 nodes.
    addrs: BTreeMap<SocketAddr, u32>,
}

impl RoutingTable {
    pub fn new(own: Id) -> Self {
        RoutingTable {
            own,
            buckets: vec![Bucket {
                first: [0; 20],
                nodes: Vec::new(),
                cached: None,
                last_changed: 0,
            }],
            grow_time: 0,
            addrs: BTreeMap::new(),
        }
    }

    fn addr_in(&mut self, a: SocketAddr) {
        *self.addrs.entry(a).or_default() += 1;
    }

    fn addr_out(&mut self, a: SocketAddr) {
        if let Some(c) = self.addrs.get_mut(&a) {
            *c -= 1;
            if *c == 0 {
                self.addrs.remove(&a);
            }
        }
    }

    /// When a newcomer last landed in our own bucket.
    pub fn grow_time(&self) -> Millis {
        self.grow_time
    }

    pub fn own_id(&self) -> &Id {
        &self.own
    }

    fn bucket_index(&self, id: &Id) -> usize {
        // Buckets are sorted by `first`; the last one whose first <= id.
        self.buckets
            .partition_point(|b| b.first <= *id)
            .saturating_sub(1)
    }

    fn next_first(&self, i: usize) -> Option<Id> {
        self.buckets.get(i + 1).map(|b| b.first)
    }

    /// The id splitting bucket `i` in two (OpenDHT's `middle`).
    fn middle(&self, i: usize) -> Option<Id> {
        let b1 = lowbit(&self.buckets[i].first);
        let b2 = self.next_first(i).and_then(|n| lowbit(&n));
        let bit = match (b1, b2) {
            (None, None) => 0,
            (a, b) => a.max(b).map(|x| x + 1).unwrap_or(0),
        };
        if bit >= 160 {
            return None;
        }
        let mut id = self.buckets[i].first;
        set_bit(&mut id, bit);
        Some(id)
    }

    fn contains_own(&self, i: usize) -> bool {
        self.buckets[i].first <= self.own
            && self.next_first(i).map(|n| self.own < n).unwrap_or(true)
    }

    fn split(&mut self, i: usize) -> bool {
        let Some(mid) = self.middle(i) else {
            return false;
        };
        let old = &mut self.buckets[i];
        let (low, high): (Vec<NodeEntry>, Vec<NodeEntry>) =
            old.nodes.drain(..).partition(|n| n.id < mid);
        old.nodes = low;
        let cached = old.cached.take();
        let last_changed = old.last_changed;
        self.buckets.insert(
            i + 1,
            Bucket {
                first: mid,
                nodes: high,
                cached: None,
                last_changed,
            },
        );
        if let Some(c) = cached {
            let j = self.bucket_index(&c.id);
            if self.buckets[j].nodes.len() < BUCKET_SIZE {
                self.addr_in(c.addr);
                self.buckets[j].nodes.push(c);
            }
        }
        true
    }

    /// Record that we heard from `id` at `addr`; `replied` when it answered a request.
    pub fn heard(&mut self, id: Id, addr: SocketAddr, now: Millis, replied: bool) -> Insert {
        if id == self.own {
            return Insert::Ignored;
        }
        loop {
            let i = self.bucket_index(&id);
            let b = &mut self.buckets[i];
            if let Some(n) = b.nodes.iter_mut().find(|n| n.id == id) {
                let old = std::mem::replace(&mut n.addr, addr);
                n.last_heard = now;
                if replied {
                    n.last_reply = Some(now);
                    n.failures = 0;
                    b.last_changed = now;
                }
                if old != addr {
                    self.addr_out(old);
                    self.addr_in(addr);
                }
                return Insert::Updated;
            }
            // One address, one node: a host claiming fresh ids from the same address
            // (a flood, or a Sybil attempt) cannot fill the table.
            if self.addrs.contains_key(&addr) {
                return Insert::Ignored;
            }
            if self.contains_own(i) {
                self.grow_time = now;
            }
            let b = &mut self.buckets[i];
            let entry = NodeEntry {
                id,
                addr,
                last_heard: now,
                last_reply: replied.then_some(now),
                failures: 0,
            };
            // A bucket counts as fresh only when one of its nodes replies (OpenDHT's
            // `Bucket::time`): a node merely named by others proves nothing.
            if b.nodes.len() < BUCKET_SIZE {
                b.nodes.push(entry);
                if replied {
                    b.last_changed = now;
                }
                self.addr_in(addr);
                return Insert::Added;
            }
            if let Some(pos) = b.nodes.iter().position(|n| n.is_expired()) {
                let gone = std::mem::replace(&mut b.nodes[pos], entry).addr;
                if replied {
                    b.last_changed = now;
                }
                self.addr_out(gone);
                self.addr_in(addr);
                return Insert::Added;
            }
            let dubious = b.nodes.iter().find(|n| !n.is_good(now)).map(|n| n.addr);
            // The bucket holding our own id always splits (Kademlia): a node must know
            // its neighbourhood well, or puts and gets for nearby keys diverge.
            if self.contains_own(i) && self.split(i) {
                continue; // retry in the smaller bucket
            }
            let b = &mut self.buckets[i];
            b.cached = Some(entry);
            return match dubious {
                Some(a) => Insert::PingDubious(a),
                None => Insert::Cached,
            };
        }
    }

    /// A request to `id` went unanswered.
    pub fn failed(&mut self, id: &Id) {
        let i = self.bucket_index(id);
        let b = &mut self.buckets[i];
        if let Some(pos) = b.nodes.iter().position(|n| &n.id == id) {
            b.nodes[pos].failures += 1;
            if b.nodes[pos].is_expired() {
                if let Some(c) = b.cached.take() {
                    let (gone, new) = (b.nodes[pos].addr, c.addr);
                    b.nodes[pos] = c;
                    self.addr_out(gone);
                    self.addr_in(new);
                }
            }
        }
    }

    /// What a node answers to `find` and `get` (OpenDHT's `findClosestNodes`): good nodes
    /// only, taken bucket by bucket outward from the target's bucket until `count` are
    /// gathered, sorted by distance and cut. Not always the globally closest good nodes:
    /// answers must match the official node for the same table, so this is its rule.
    pub fn find_closest(&self, target: &Id, now: Millis, count: usize) -> Vec<NodeEntry> {
        // `walk_closest`'s walk, filtering as it goes (no per-bucket lists: this answers
        // every find and get).
        let start = self.bucket_index(target);
        let mut out: Vec<&NodeEntry> = Vec::with_capacity(count + BUCKET_SIZE * 2);
        let (mut next, mut prev) = (Some(start), start.checked_sub(1));
        while out.len() < count && (next.is_some() || prev.is_some()) {
            if let Some(i) = next {
                out.extend(self.buckets[i].nodes.iter().filter(|n| n.is_good(now)));
                next = (i + 1 < self.buckets.len()).then_some(i + 1);
            }
            if let Some(i) = prev {
                out.extend(self.buckets[i].nodes.iter().filter(|n| n.is_good(now)));
                prev = i.checked_sub(1);
            }
        }
        out.sort_by(|a, b| xor_cmp(&a.id, &b.id, target));
        out.truncate(count);
        out.into_iter().cloned().collect()
    }

    /// Buckets as (first id, nodes), in id order (for dumps and comparisons).
    pub fn buckets(&self) -> impl Iterator<Item = (&Id, &[NodeEntry])> {
        self.buckets.iter().map(|b| (&b.first, b.nodes.as_slice()))
    }

    /// Up to `count` non-expired nodes closest to `target`, closest first (where our own
    /// searches start).
    pub fn closest(&self, target: &Id, count: usize) -> Vec<NodeEntry> {
        let mut all: Vec<&NodeEntry> = self
            .buckets
            .iter()
            .flat_map(|b| b.nodes.iter())
            .filter(|n| !n.is_expired())
            .collect();
        all.sort_by(|a, b| xor_cmp(&a.id, &b.id, target));
        all.into_iter().take(count).cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.buckets.iter().map(|b| b.nodes.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    /// Indices of the buckets no node of which replied for `stale`, or empty ones
    /// (OpenDHT's `bucketMaintenance` refreshes those).
    pub fn stale_buckets(&self, now: Millis, stale: Duration) -> Vec<usize> {
        (0..self.buckets.len())
            .filter(|&i| {
                self.buckets[i].nodes.is_empty()
                    || now.saturating_sub(self.buckets[i].last_changed) > ms(stale)
            })
            .collect()
    }

    /// The bucket holding `id`.
    pub fn bucket_of(&self, id: &Id) -> usize {
        self.bucket_index(id)
    }

    /// Nodes in bucket `i`.
    pub fn bucket_nodes(&self, i: usize) -> &[NodeEntry] {
        self.buckets
            .get(i)
            .map(|b| b.nodes.as_slice())
            .unwrap_or(&[])
    }

    /// A random id inside bucket `i`'s range (OpenDHT's `randomId`): the bits the
    /// bucket fixes are kept, the rest drawn from `rng`.
    pub fn random_id(&self, i: usize, rng: &mut impl rand::Rng) -> Id {
        let first = self.buckets[i].first;
        let b1 = lowbit(&first);
        let b2 = self.next_first(i).and_then(|n| lowbit(&n));
        let bit = match (b1, b2) {
            (None, None) => 0,
            (a, b) => a.max(b).map(|x| x + 1).unwrap_or(0),
        };
        if bit >= 160 {
            return first;
        }
        let mut id = first;
        let byte = bit / 8;
        let keep = (0xff00u16 >> (bit % 8)) as u8;
        id[byte] = (first[byte] & keep) | (rng.random::<u8>() >> (bit % 8));
        for x in id.iter_mut().skip(byte + 1) {
            *x = rng.random();
        }
        id
    }

    /// A random node of bucket `i`, not-expired ones first (OpenDHT's `randomNode`).
    pub fn random_node(&self, i: usize, rng: &mut impl rand::Rng) -> Option<&NodeEntry> {
        let nodes = &self.buckets.get(i)?.nodes;
        let live = nodes.iter().filter(|n| !n.is_expired()).count();
        let pool: Vec<&NodeEntry> = if live > 0 {
            nodes.iter().filter(|n| !n.is_expired()).collect()
        } else {
            nodes.iter().collect()
        };
        if pool.is_empty() {
            return None;
        }
        Some(pool[rng.random_range(0..pool.len())])
    }

    /// Every node, for diagnostics ("node info").
    pub fn nodes(&self) -> impl Iterator<Item = &NodeEntry> {
        self.buckets.iter().flat_map(|b| b.nodes.iter())
    }
}

/// The bucket walk of OpenDHT's `findClosestNodes` over buckets already filtered to good
/// nodes: from bucket `start`, alternately the next and the previous bucket, until
/// `count` nodes are gathered; then the `count` closest of those, closest first.
pub fn walk_closest<'a, T: Copy + 'a>(
    buckets: &[Vec<T>],
    start: usize,
    target: &Id,
    count: usize,
    id_of: impl Fn(T) -> &'a Id,
) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    let (mut next, mut prev) = (Some(start), start.checked_sub(1));
    while out.len() < count && (next.is_some() || prev.is_some()) {
        if let Some(i) = next {
            out.extend(buckets[i].iter().copied());
            next = (i + 1 < buckets.len()).then_some(i + 1);
        }
        if let Some(i) = prev {
            out.extend(buckets[i].iter().copied());
            prev = i.checked_sub(1);
        }
    }
    out.sort_by(|a, b| xor_cmp(id_of(*a), id_of(*b), target));
    out.truncate(count);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(first: u8, last: u8) -> Id {
        let mut i = [0u8; 20];
        i[0] = first;
        i[19] = last;
        i
    }

    fn addr(n: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 10000 + n))
    }

    #[test]
    fn bucket_with_own_id_splits_and_far_buckets_cache() {
        let mut t = RoutingTable::new(id(0x00, 1));
        // 8 nodes in the far half (first bit set) fill the single bucket…
        for n in 0..8u8 {
            assert_eq!(
                t.heard(id(0x80 | n, 0), addr(n as u16), 0, true),
                Insert::Added
            );
        }
        // …a node near us forces a split, since the bucket holds our id.
        assert_eq!(t.heard(id(0x01, 0), addr(100), 0, true), Insert::Added);
        assert!(t.bucket_count() >= 2);
        // Another far node finds its bucket full of good nodes without our id: cached.
        assert_eq!(t.heard(id(0x90, 0), addr(101), 0, true), Insert::Cached);
        assert_eq!(t.len(), 9);
    }

    #[test]
    fn dubious_nodes_are_pinged_and_failed_nodes_replaced() {
        let mut t = RoutingTable::new(id(0x00, 1));
        for n in 0..8u8 {
            t.heard(id(0x80 | n, 0), addr(n as u16), 0, n != 3);
        }
        // Node 3 never replied: dubious.
        assert_eq!(
            t.heard(id(0x90, 0), addr(101), 1, true),
            Insert::PingDubious(addr(3))
        );
        for _ in 0..MAX_RESPONSE_FAILURES {
            t.failed(&id(0x83, 0));
        }
        assert!(
            t.nodes().any(|n| n.id == id(0x90, 0)),
            "the cached newcomer took the failed node's place"
        );
        assert!(!t.nodes().any(|n| n.id == id(0x83, 0)));
    }

    #[test]
    fn closest_sorts_by_xor_distance() {
        let mut t = RoutingTable::new(id(0x00, 0));
        for n in 1..=20u8 {
            t.heard(id(n, n), addr(n as u16), 0, true);
        }
        let target = id(5, 5);
        let c = t.closest(&target, 3);
        assert_eq!(c[0].id, id(5, 5));
        let d: Vec<u8> = c.iter().map(|e| e.id[0] ^ 5).collect();
        assert!(d.windows(2).all(|w| w[0] <= w[1]), "{d:?}");
    }

    #[test]
    fn own_id_is_never_inserted() {
        let own = id(7, 7);
        let mut t = RoutingTable::new(own);
        assert_eq!(t.heard(own, addr(1), 0, true), Insert::Ignored);
        assert!(t.is_empty());
    }

    proptest::proptest! {
        /// Whatever arrives, buckets stay ordered, hold at most 8 nodes each, every
        /// node sits in the bucket covering its id, and `closest` sorts by distance.
        #[test]
        fn invariants_hold(own in proptest::array::uniform20(0u8..), ids in proptest::collection::vec(proptest::array::uniform20(0u8..), 0..300), target in proptest::array::uniform20(0u8..)) {
            let mut t = RoutingTable::new(own);
            for (k, i) in ids.iter().enumerate() {
                // Some nodes come back from another address, some fail.
                t.heard(*i, addr((k % 250) as u16), k as u64, k % 3 != 0);
                if k % 5 == 0 {
                    for _ in 0..MAX_RESPONSE_FAILURES {
                        t.failed(&ids[k / 2]);
                    }
                }
            }
            // The address index counts exactly the nodes in the buckets.
            let mut counted: BTreeMap<SocketAddr, u32> = BTreeMap::new();
            for n in t.nodes() {
                *counted.entry(n.addr).or_default() += 1;
            }
            proptest::prop_assert_eq!(&counted, &t.addrs);
            for w in t.buckets.windows(2) {
                proptest::prop_assert!(w[0].first < w[1].first);
            }
            for (k, b) in t.buckets.iter().enumerate() {
                proptest::prop_assert!(b.nodes.len() <= BUCKET_SIZE);
                for n in &b.nodes {
                    proptest::prop_assert_eq!(t.bucket_index(&n.id), k);
                    proptest::prop_assert!(n.id != own);
                }
            }
            // A random id of each bucket falls in that bucket (upkeep's targets).
            let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(own[0] as u64);
            for b in 0..t.bucket_count() {
                let r = t.random_id(b, &mut rng);
                proptest::prop_assert_eq!(t.bucket_of(&r), b);
                if let Some(n) = t.random_node(b, &mut rng) {
                    proptest::prop_assert_eq!(t.bucket_of(&n.id), b);
                }
            }
            let c = t.closest(&target, 14);
            for w in c.windows(2) {
                proptest::prop_assert!(xor_cmp(&w[0].id, &w[1].id, &target) != std::cmp::Ordering::Greater);
            }
        }
    }
}

#[cfg(test)]
mod neighbourhood {
    use super::*;

    #[test]
    fn a_table_keeps_its_own_neighbourhood() {
        let id = |i: u32| -> Id {
            let mut b = [0u8; 20];
            let h = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes();
            b[..8].copy_from_slice(&h);
            b[8..12].copy_from_slice(&i.to_be_bytes());
            b
        };
        let own = id(1_000_000);
        let mut t = RoutingTable::new(own);
        let others: Vec<Id> = (0..500).map(id).collect();
        for (k, o) in others.iter().enumerate() {
            t.heard(*o, SocketAddr::from(([10, 0, 0, 1], k as u16)), 0, false);
        }
        let mut by = others.clone();
        by.sort_by(|a, b| xor_cmp(a, b, &own));
        let known: Vec<Id> = t.nodes().map(|n| n.id).collect();
        let missing: Vec<usize> = (0..8).filter(|&k| !known.contains(&by[k])).collect();
        assert!(
            missing.is_empty(),
            "closest missing at ranks {missing:?}; table {} nodes in {} buckets",
            t.len(),
            t.bucket_count()
        );
    }
}
