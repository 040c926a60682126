//! The name server's append-log store: racing registrations of one name (or one
//! address) resolve to exactly one winner, records survive reopening, and a torn
//! last line from a crash is ignored.

use node::crypto::{self, PrivateKey};
use node::nameserver::domain::registration_body;
use node::nameserver::{FileStore, Insert, Name, NsError, Registry};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::io::Write;
use std::sync::{Arc, Barrier, OnceLock};

const RACERS: usize = 16;

fn keys() -> &'static Vec<PrivateKey> {
    static KEYS: OnceLock<Vec<PrivateKey>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        (0..RACERS)
            .map(|_| PrivateKey::generate(1024, &mut rng).unwrap())
            .collect()
    })
}

fn body(k: &PrivateKey, n: &str) -> String {
    registration_body(k, &Name::parse(n).unwrap(), "").unwrap()
}

/// Runs `RACERS` threads that each register `(key i, name_of(i))` at the same moment.
fn race(
    reg: &Arc<Registry<FileStore>>,
    name_of: fn(usize) -> String,
    key_of: fn(usize) -> usize,
) -> Vec<Result<Insert, NsError>> {
    let bodies: Vec<(String, String)> = (0..RACERS)
        .map(|i| (name_of(i), body(&keys()[key_of(i)], &name_of(i))))
        .collect();
    let start = Arc::new(Barrier::new(RACERS));
    let handles: Vec<_> = bodies
        .into_iter()
        .map(|(n, b)| {
            let (reg, start) = (reg.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                reg.register(&n, b.as_bytes())
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn racing_registrations_of_one_name_have_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("names.jsonl");
    for round in 0..5 {
        let reg = Arc::new(Registry::new(FileStore::open(&path).unwrap()));
        let name_of: fn(usize) -> String = match round {
            0 => |_| "contested0".into(),
            1 => |_| "contested1".into(),
            2 => |_| "contested2".into(),
            3 => |_| "contested3".into(),
            _ => |_| "contested4".into(),
        };
        // Each round, every key is new to that name; earlier winners hold other names,
        // so some racers fail with AddressTaken instead of NameTaken.
        let results = race(&reg, name_of, |i| i);
        let winners: Vec<usize> = (0..RACERS)
            .filter(|&i| results[i] == Ok(Insert::Inserted))
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        for r in &results {
            assert!(
                matches!(
                    r,
                    Ok(Insert::Inserted) | Err(NsError::NameTaken) | Err(NsError::AddressTaken)
                ),
                "{r:?}"
            );
        }
        let stored = reg.lookup_name(&name_of(0)).unwrap();
        assert_eq!(
            stored.addr,
            crypto::hex(&keys()[winners[0]].public_key().short_id())
        );
        // The winner is what a fresh open of the file sees.
        drop(reg);
        let again = Registry::new(FileStore::open(&path).unwrap());
        assert_eq!(again.lookup_name(&name_of(0)).unwrap(), stored);
        assert_eq!(again.store().len(), round + 1);
    }
}

#[test]
fn racing_names_for_one_address_have_one_winner() {
    let reg = Arc::new(Registry::new(FileStore::in_memory()));
    let results = race(&reg, |i| format!("name{i}"), |_| 0);
    let winners = results
        .iter()
        .filter(|r| **r == Ok(Insert::Inserted))
        .count();
    assert_eq!(winners, 1, "{results:?}");
    assert_eq!(
        results
            .iter()
            .filter(|r| **r == Err(NsError::AddressTaken))
            .count(),
        RACERS - 1
    );
    assert_eq!(reg.store().len(), 1);
}

#[test]
fn records_survive_reopen_and_a_torn_tail_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("names.jsonl");
    let (k0, k1, k2) = (&keys()[0], &keys()[1], &keys()[2]);
    {
        let reg = Registry::new(FileStore::open(&path).unwrap());
        assert_eq!(
            reg.register("alice", body(k0, "alice").as_bytes()),
            Ok(Insert::Inserted)
        );
    }
    // A crash in the middle of writing the next record.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(b"{\"name\":\"bob\",\"addr\":\"00")
        .unwrap();
    {
        let reg = Registry::new(FileStore::open(&path).unwrap());
        assert_eq!(reg.store().len(), 1);
        assert_eq!(reg.lookup_name("bob"), Err(NsError::NameNotFound));
        assert_eq!(
            reg.register("bob", body(k1, "bob").as_bytes()),
            Ok(Insert::Inserted)
        );
    }
    let reg = Registry::new(FileStore::open(&path).unwrap());
    assert_eq!(reg.store().len(), 2);
    assert_eq!(
        reg.lookup_addr(&crypto::hex(&k0.public_key().short_id()))
            .unwrap()
            .name,
        "alice"
    );
    assert_eq!(
        reg.lookup_name("bob").unwrap().addr,
        crypto::hex(&k1.public_key().short_id())
    );
    assert_eq!(
        reg.register("alice", body(k2, "alice").as_bytes()),
        Err(NsError::NameTaken)
    );
}
