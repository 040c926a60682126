//! Linking a device with a PIN over the DHT (PROTOCOLS §4.4, jamid 13.7
//! `ArchiveAccountManager::computeKeys`): the exporting device puts the archive,
//! encrypted with a key stretched from the archive password and salted with the PIN
//! and a 20-minute time seed, at SHA-1(key); the importer derives the same key for
//! the current and the previous seed.
//!
//! Pure functions: the DHT put/get is the caller's.

use rand::{CryptoRng, RngExt};
use sha1::{Digest, Sha1};

use super::archive::{self, AccountArchive, ArchiveError};
use crate::crypto::{self, CryptoError, InfoHash};

/// `EXPORT_KEY_RENEWAL_TIME`: the time seed changes every 20 minutes.
pub const PIN_PERIOD_SECS: u64 = 20 * 60;
/// PIN alphabet (shown lowercase to users, upper-cased before use).
pub const PIN_ALPHABET: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
/// PIN length.
pub const PIN_LEN: usize = 8;

/// A fresh PIN, upper case.
pub fn generate_pin<R: CryptoRng + ?Sized>(rng: &mut R) -> String {
    (0..PIN_LEN)
        .map(|_| PIN_ALPHABET[rng.random_range(0..PIN_ALPHABET.len())] as char)
        .collect()
}

/// Time seed for `now` (unix seconds); importers also try `seed - 1`.
pub fn time_seed(now: u64) -> u64 {
    now / PIN_PERIOD_SECS
}

/// The archive key and its DHT location for `password`, `pin` and a time `seed`:
/// key = stretchKey(password, PIN ‖ lowercase hex(seed)), location = SHA-1(key).
pub fn pin_key(password: &str, pin: &str, seed: u64) -> Result<([u8; 32], InfoHash), CryptoError> {
    let salt = format!("{}{seed:x}", pin.to_ascii_uppercase());
    let key = crypto::stretch_key(password.as_bytes(), salt.as_bytes())?;
    Ok((key, Sha1::digest(key).into()))
}

/// The value `data` the exporter puts: `aesEncrypt(zlib(JSON), key)` = IV ‖ ct ‖ tag.
pub fn export_archive<R: CryptoRng + ?Sized>(
    archive: &AccountArchive,
    key: &[u8; 32],
    rng: &mut R,
) -> Result<Vec<u8>, ArchiveError> {
    let json = archive.to_json()?;
    Ok(crypto::aes_encrypt(
        &archive::zlib(json.as_bytes())?,
        key,
        rng,
    )?)
}

/// Reads what [`export_archive`] wrote; a wrong key is [`ArchiveError::Decrypt`].
pub fn import_archive(data: &[u8], key: &[u8; 32]) -> Result<AccountArchive, ArchiveError> {
    let plain = crypto::aes_decrypt(data, key).map_err(|_| ArchiveError::Decrypt)?;
    AccountArchive::from_json(&archive::decompress(&plain)?)
}

#[cfg(test)]
mod unit {
    use super::*;
    use crate::identity::account::AccountIdentity;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    /// TEST-VECTORS C3 (derived with argon2-cffi).
    #[test]
    fn pin_key_matches_vector_c3() {
        let (key, loc) = pin_key("", "abcd1234", 0x1a2b3c).expect("key");
        assert_eq!(
            crypto::hex(&key),
            "7845b47ec903ea487e43387fdb4ed002ef04bc2fc45443f5f29e6f87ae16f6e9"
        );
        assert_eq!(
            crypto::hex(&loc),
            "225e1407e20e6bd0c08047d92f17bd5720b450b7"
        );
    }

    #[test]
    fn pins_use_the_alphabet_and_seeds_roll_every_20_minutes() {
        let mut rng = ChaCha20Rng::seed_from_u64(60);
        let pin = generate_pin(&mut rng);
        assert_eq!(pin.len(), PIN_LEN);
        assert!(pin.bytes().all(|b| PIN_ALPHABET.contains(&b)));
        assert_ne!(pin, generate_pin(&mut rng));
        assert_eq!(time_seed(1199), 0);
        assert_eq!(time_seed(1200), 1);
    }

    #[test]
    fn exported_archive_imports_with_the_same_key_only() {
        let mut rng = ChaCha20Rng::seed_from_u64(61);
        let account = AccountIdentity::generate(1024, 1_790_000_000, &mut rng).expect("account");
        let archive = AccountArchive::new(&account, vec![7; 32]);
        let key = [9u8; 32];
        let data = export_archive(&archive, &key, &mut rng).expect("export");
        let back = import_archive(&data, &key).expect("import");
        assert_eq!(back.to_json().ok(), archive.to_json().ok());
        assert_eq!(
            import_archive(&data, &[8u8; 32]).err(),
            Some(ArchiveError::Decrypt)
        );
        assert_eq!(
            import_archive(&data[..20], &key).err(),
            Some(ArchiveError::Decrypt)
        );
    }
}
