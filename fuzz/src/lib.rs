//! Shared pieces of the fuzz targets: the real OpenDHT captures, the fixed RSA key of the
//! crypto targets, the framing of the engine target's input, and the seed corpora.

pub mod engine_input;
pub mod seeds;

use node::connect::tls::{ExpectedPeer, Role, TlsSession};
use node::crypto::PrivateKey;
use node::identity::account::{AccountIdentity, DeviceIdentity};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::path::PathBuf;
use std::sync::OnceLock;

/// The folder of real OpenDHT 2.4.12 datagrams (one hex datagram per line); see its README.
pub fn captures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../node/tests/data/opendht-2.4.12")
}

/// Every captured datagram, file by file in name order.
pub fn captured_datagrams() -> Vec<Vec<u8>> {
    let dir = captures_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "hex"))
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap_or_else(|e| panic!("{}: {e}", f.display()))
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| hex::decode(l.trim()).expect("capture lines are hex"))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A deterministic RNG for the round trips that encrypt.
pub fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// One RSA key per process for the decryption target and its seeds. 512 bits keeps an
/// execution near a millisecond; the code paths are those of Jami's 4096-bit keys.
pub fn fixed_key() -> &'static PrivateKey {
    static KEY: OnceLock<PrivateKey> = OnceLock::new();
    KEY.get_or_init(|| PrivateKey::generate(512, &mut rng(0x5eed)).expect("RSA keygen"))
}

/// The AES key of the `crypto_decrypt` AES mode for selector `sel`: 16, 24 or 32 bytes,
/// or (one selector in four) a length AES-GCM does not have.
pub fn aes_key(sel: u8) -> Vec<u8> {
    let len = match sel % 4 {
        0 => 16,
        1 => 24,
        2 => 32,
        _ => usize::from(sel) % 40,
    };
    (0..len).map(|i| (i as u8).wrapping_mul(31) ^ sel).collect()
}

/// Two devices of two accounts (1024-bit keys: a handshake costs a few RSA operations)
/// for the `tls_session` target: the first is ours, the second the expected peer.
pub fn tls_devices() -> &'static (DeviceIdentity, DeviceIdentity) {
    static DEVICES: OnceLock<(DeviceIdentity, DeviceIdentity)> = OnceLock::new();
    DEVICES.get_or_init(|| {
        let mut r = rng(0x715);
        let now = TLS_NOW_MS / 1000;
        let a = AccountIdentity::generate(1024, now, &mut r).expect("account a");
        let b = AccountIdentity::generate(1024, now, &mut r).expect("account b");
        (
            a.new_device(1024, now, &mut r).expect("device a"),
            b.new_device(1024, now, &mut r).expect("device b"),
        )
    })
}

/// The `now` of the `tls_session` target (Unix ms).
pub const TLS_NOW_MS: u64 = 1_790_000_000_000;

/// A session of `tls_devices().0` (TLS client when `client`) expecting device 1; the
/// other end's session is the same with the devices swapped.
pub fn tls_session(client: bool, mirrored: bool) -> TlsSession {
    let (a, b) = tls_devices();
    let (me, peer) = if mirrored { (b, a) } else { (a, b) };
    let role = if client { Role::Client } else { Role::Server };
    let expected = ExpectedPeer::new(peer.chain().to_vec(), vec![]).expect("valid chain");
    TlsSession::new(TLS_NOW_MS, role, me, expected, rng(0x7150)).expect("session")
}
