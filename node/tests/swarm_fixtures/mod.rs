//! What the swarm tests share (each test file uses part of it): seeded identities
//! (1024-bit keys, for speed) and the commit time they use.
#![allow(dead_code)]

use node::identity::{AccountIdentity, DeviceIdentity};
use node::swarm::repo::Author;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::sync::OnceLock;

pub const NOW: i64 = 1_796_700_000;

/// Accounts A, B and C (C is never a member), one device each.
pub struct Ids {
    pub a: AccountIdentity,
    pub a_dev: DeviceIdentity,
    pub b: AccountIdentity,
    pub b_dev: DeviceIdentity,
    pub c_dev: DeviceIdentity,
}

pub fn ids() -> &'static Ids {
    static I: OnceLock<Ids> = OnceLock::new();
    I.get_or_init(|| {
        let mut rng = ChaCha20Rng::seed_from_u64(90);
        let now = NOW as u64 - 1000;
        let a = AccountIdentity::generate(1024, now, &mut rng).unwrap();
        let a_dev = a.new_device(1024, now, &mut rng).unwrap();
        let b = AccountIdentity::generate(1024, now, &mut rng).unwrap();
        let b_dev = b.new_device(1024, now, &mut rng).unwrap();
        let c = AccountIdentity::generate(1024, now, &mut rng).unwrap();
        let c_dev = c.new_device(1024, now, &mut rng).unwrap();
        Ids {
            a,
            a_dev,
            b,
            b_dev,
            c_dev,
        }
    })
}

/// `device` committing under `display_name`.
pub fn author<'a>(device: &'a DeviceIdentity, display_name: &'a str) -> Author<'a> {
    Author {
        device,
        display_name,
    }
}
