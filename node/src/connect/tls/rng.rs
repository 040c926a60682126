//! The session's seeded randomness, lent to rustls for the duration of one call.
//!
//! rustls takes its randomness and key exchanges as `&'static` objects of the
//! `CryptoProvider` (`secure_random`, `kx_groups`), so they cannot own a per-session RNG.
//! Instead the session moves its seeded ChaCha into a thread-local slot around every
//! rustls call ([`lend`]); the provider's objects draw from that slot. rustls calls them
//! synchronously inside those calls, so the draws happen in a fixed order and the same
//! seed gives the same bytes. Outside a [`lend`] the slot is empty and drawing fails
//! (the handshake errors out) instead of falling back to the OS RNG.

use std::cell::RefCell;

use rand::Rng;
use rand_chacha::ChaCha20Rng;
use rustls::crypto::{GetRandomFailed, SecureRandom};

thread_local! {
    static LENT: RefCell<Option<ChaCha20Rng>> = const { RefCell::new(None) };
}

/// Runs `f` with `rng` lent to the provider; the RNG (advanced by what rustls drew) is
/// put back into `*rng` afterwards, even if `f` panics.
pub(crate) fn lend<T>(rng: &mut ChaCha20Rng, f: impl FnOnce() -> T) -> T {
    struct Return<'a>(&'a mut ChaCha20Rng, Option<ChaCha20Rng>);
    impl Drop for Return<'_> {
        fn drop(&mut self) {
            let taken = LENT.with(|slot| slot.borrow_mut().take());
            // The outer (previous) occupant goes back; ours returns to its owner.
            LENT.with(|slot| *slot.borrow_mut() = self.1.take());
            if let Some(r) = taken {
                *self.0 = r;
            }
        }
    }
    let previous = LENT.with(|slot| slot.borrow_mut().replace(rng.clone()));
    let _guard = Return(rng, previous);
    f()
}

/// Fills `buf` from the lent RNG; fails when no RNG is lent.
pub(crate) fn fill(buf: &mut [u8]) -> Result<(), GetRandomFailed> {
    LENT.with(|slot| match slot.borrow_mut().as_mut() {
        Some(rng) => {
            rng.fill_bytes(buf);
            Ok(())
        }
        None => Err(GetRandomFailed),
    })
}

/// Runs `f` on the lent RNG (RSA-PSS salts, P-384 scalars); `None` when none is lent.
pub(crate) fn with_lent<T>(f: impl FnOnce(&mut ChaCha20Rng) -> T) -> Option<T> {
    LENT.with(|slot| slot.borrow_mut().as_mut().map(f))
}

/// The provider's `secure_random`: the lent seeded ChaCha (client/server randoms).
#[derive(Debug)]
pub(crate) struct LentRandom;

impl SecureRandom for LentRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<(), GetRandomFailed> {
        fill(buf)
    }
}

#[cfg(test)]
mod unit {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn lent_rng_advances_its_owner_and_is_gone_afterwards() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let mut reference = ChaCha20Rng::seed_from_u64(7);
        let mut a = [0u8; 16];
        lend(&mut rng, || fill(&mut a)).expect("lent");
        let mut expect = [0u8; 16];
        reference.fill_bytes(&mut expect);
        assert_eq!(a, expect);
        // The owner continues where rustls stopped, not from the start.
        let (mut next, mut expect_next) = ([0u8; 8], [0u8; 8]);
        rng.fill_bytes(&mut next);
        reference.fill_bytes(&mut expect_next);
        assert_eq!(next, expect_next);
        assert!(fill(&mut a).is_err(), "nothing lent any more");
    }
}
