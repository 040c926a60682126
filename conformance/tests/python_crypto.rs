//! Cross-checks of `node::crypto` against the real python3-opendht 2.4.12.
//!
//! What the bindings expose: `Identity.generate(name, ca, bits)`, `PrivateKey.generate/
//! generateEC/getId/getPublicKey/decrypt`, `PublicKey.encrypt/getId`, `Certificate(bytes)/
//! generate/getId/toString`, `DhtRunner.run(id=…)/getNodeId()`. Not exposed: key
//! import/export, `getLongId`, sign/verify, Value packing. Key import/export and
//! sign/verify and the long id are reached through the GnuTLS handles with the same
//! GnuTLS calls OpenDHT makes (see `python::PRELUDE`), each key import validated by
//! opendht's own `getId()`.
//! Nothing here talks to the network (the DhtRunner binds 127.0.0.1 and never bootstraps).

use std::sync::OnceLock;

use node::crypto::{self, PrivateKey, PublicKey};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// Our 2048-bit key, shared (generation is slow).
fn our_key() -> &'static PrivateKey {
    static KEY: OnceLock<PrivateKey> = OnceLock::new();
    KEY.get_or_init(|| PrivateKey::generate(2048, &mut rng(0x0d47)).expect("keygen"))
}

/// Deterministic test plaintexts both sides agree on through files.
fn plaintext(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt))
        .collect()
}

fn hex_id(bytes: &[u8]) -> String {
    crypto::hex(bytes)
}

/// Ids of python-generated RSA (4096, Jami default) and EC identities, and the
/// exported private key, match what opendht reports.
#[test]
fn ids_of_python_generated_identities_match() {
    let Some(py) = conformance::python_opendht_or_skip() else {
        return;
    };
    let out = py.run_ok(
        r#"
ident = dht.Identity.generate("conformance", dht.Identity(), 4096)
out("cert", bytes(ident.certificate))
out("cert_id", str(ident.certificate.getId()))
out("key_id", str(ident.key.getId()))
out("pub_id", str(ident.publickey.getId()))
out("key_pem", export_key_pem(ident.key))
ec = dht.PrivateKey.generateEC()
ec_cert = dht.Certificate.generate(ec, "ec-conformance")
out("ec_cert", bytes(ec_cert))
out("ec_cert_id", str(ec_cert.getId()))
out("ec_key_id", str(ec.getId()))
"#,
        &[],
    );
    let cert = out.require("cert");
    let cert_key = PublicKey::from_certificate(&cert).expect("RSA key from opendht certificate");
    assert_eq!(cert_key.size(), 512, "Identity.generate(bits=4096)");
    let id = hex_id(&cert_key.short_id());
    assert_eq!(
        id,
        out.require_text("cert_id"),
        "short id vs Certificate.getId()"
    );
    assert_eq!(
        id,
        out.require_text("key_id"),
        "short id vs PrivateKey.getId()"
    );
    assert_eq!(
        id,
        out.require_text("pub_id"),
        "short id vs PublicKey.getId()"
    );

    let key = PrivateKey::from_pem_or_der(&out.require("key_pem")).expect("exported PKCS#8 key");
    assert_eq!(key.public_key(), cert_key);
    // Our DER re-encoding of the SPKI is byte-identical to the one in GnuTLS's certificate.
    assert_eq!(
        crypto::certificate_spki_der(&cert).expect("spki"),
        cert_key.spki_der()
    );

    let ec_cert = out.require("ec_cert");
    let ec_spki = crypto::certificate_spki_der(&ec_cert).expect("EC SPKI");
    let ec_id = hex_id(&crypto::short_id(&ec_spki));
    assert_eq!(
        ec_id,
        out.require_text("ec_cert_id"),
        "EC short id vs getId()"
    );
    assert_eq!(ec_id, out.require_text("ec_key_id"));
    assert!(
        PublicKey::from_spki_der(&ec_spki).is_err(),
        "EC keys are not RSA"
    );
}

/// A DhtRunner run with an identity uses node id = SHA-1("node:" + hex(short id)).
#[test]
fn dhtrunner_node_id_matches_our_derivation() {
    let Some(py) = conformance::python_opendht_or_skip() else {
        return;
    };
    let out = py.run_ok(
        r#"
ident = dht.Identity.generate("conformance-node", dht.Identity(), 2048)
r = dht.DhtRunner()
r.run(id=ident, port=0, ipv4="127.0.0.1")
try:
    out("cert", bytes(ident.certificate))
    out("node_id", r.getNodeId())
    out("runner_id", str(r.getId()))
finally:
    # join() right after a bare shutdown() hangs now and then (5/40 runs here);
    # waiting for the shutdown callback first does not.
    import threading
    stopped = threading.Event()
    r.shutdown(stopped.set)
    stopped.wait(10)
    r.join()
"#,
        &[],
    );
    let key = PublicKey::from_certificate(&out.require("cert")).expect("cert key");
    assert_eq!(hex_id(&key.short_id()), out.require_text("runner_id"));
    assert_eq!(hex_id(&key.node_id()), out.require_text("node_id"));
}

/// python-opendht encrypts (PublicKey.encrypt) with its own 4096-bit key, short and
/// long form; we decrypt with the exported key.
#[test]
fn python_encrypts_we_decrypt_python_key() {
    let Some(py) = conformance::python_opendht_or_skip() else {
        return;
    };
    let dir = conformance::TempDir::new("pycrypto").expect("tempdir");
    let short = plaintext(501, 1); // k - 11 for 4096 bits: still one block
    let long = plaintext(5000, 2);
    dir.write("short", &short).expect("write");
    dir.write("long", &long).expect("write");
    let out = py.run_ok(
        r#"
ident = dht.Identity.generate("conformance-enc", dht.Identity(), 4096)
out("key_pem", export_key_pem(ident.key))
out("c_short", ident.publickey.encrypt(arg_file("short")))
out("c_long", ident.publickey.encrypt(arg_file("long")))
"#,
        &[dir.arg()],
    );
    let key = PrivateKey::from_pem_or_der(&out.require("key_pem")).expect("key");
    let c_short = out.require("c_short");
    let c_long = out.require("c_long");
    assert_eq!(c_short.len(), 512, "single RSA block");
    assert_eq!(
        c_long.len(),
        512 + 12 + long.len() + 16,
        "RSA ‖ IV ‖ ct ‖ tag"
    );
    assert_eq!(crypto::decrypt(&key, &c_short).expect("short"), short);
    assert_eq!(crypto::decrypt(&key, &c_long).expect("long"), long);
    // The wrapped AES key is 32 bytes, as PROTOCOLS §2.4 says for RSA ≥ 2048.
    assert_eq!(
        crypto::decrypt(&key, &c_long[..512]).expect("block").len(),
        32
    );
}

/// With OUR key loaded into python-opendht: its getId equals our short id; it
/// encrypts for our key (we decrypt), decrypts what we encrypted (both forms),
/// and signatures verify both ways (RSA PKCS#1 v1.5 SHA-512 via GnuTLS, as OpenDHT).
#[test]
fn our_key_interoperates_with_python_opendht() {
    let Some(py) = conformance::python_opendht_or_skip() else {
        return;
    };
    let key = our_key();
    let pk = key.public_key();
    let mut r = rng(42);
    let short = plaintext(245, 3); // k - 11 for 2048 bits
    let long = plaintext(3000, 4);
    let message = b"signed body bytes".to_vec();
    let dir = conformance::TempDir::new("pycrypto").expect("tempdir");
    dir.write("key.pem", key.to_pkcs8_pem().expect("pem").as_bytes())
        .expect("write");
    dir.write("short", &short).expect("write");
    dir.write("long", &long).expect("write");
    dir.write(
        "c_short",
        &crypto::encrypt_for(&pk, &short, &mut r).expect("enc"),
    )
    .expect("write");
    dir.write(
        "c_long",
        &crypto::encrypt_for(&pk, &long, &mut r).expect("enc"),
    )
    .expect("write");
    dir.write("msg", &message).expect("write");
    dir.write("sig", &crypto::sign(key, &message).expect("sign"))
        .expect("write");
    let out = py.run_ok(
        r#"
k = import_key_pem(arg_file("key.pem"))
out("key_id", str(k.getId()))
out("pub_id", str(k.getPublicKey().getId()))
out("gnutls_id", gnutls_key_id(k, 0))
out("gnutls_long_id", gnutls_key_id(k, 1))
out("d_short", k.decrypt(arg_file("c_short")))
out("d_long", k.decrypt(arg_file("c_long")))
out("c_short", k.getPublicKey().encrypt(arg_file("short")))
out("c_long", k.getPublicKey().encrypt(arg_file("long")))
out("our_sig_ok", b"1" if gnutls_verify_sha512(k, arg_file("msg"), arg_file("sig")) else b"0")
out("bad_sig_ok", b"1" if gnutls_verify_sha512(k, arg_file("msg") + b"x", arg_file("sig")) else b"0")
out("py_sig", gnutls_sign_sha512(k, arg_file("msg")))
"#,
        &[dir.arg()],
    );
    let id = hex_id(&pk.short_id());
    assert_eq!(out.require_text("key_id"), id, "opendht getId of our key");
    assert_eq!(out.require_text("pub_id"), id);
    // getLongId() is not bound; OpenDHT computes it as gnutls_pubkey_get_key_id(USE_SHA256).
    assert_eq!(out.require("gnutls_id"), pk.short_id().to_vec());
    assert_eq!(out.require("gnutls_long_id"), pk.long_id().to_vec());
    assert_eq!(
        out.require("d_short"),
        short,
        "python decrypts our single block"
    );
    assert_eq!(
        out.require("d_long"),
        long,
        "python decrypts our AES-GCM form"
    );
    let c_short = out.require("c_short");
    let c_long = out.require("c_long");
    assert_eq!(c_short.len(), 256);
    assert_eq!(c_long.len(), 256 + 12 + long.len() + 16);
    assert_eq!(crypto::decrypt(key, &c_short).expect("short"), short);
    assert_eq!(crypto::decrypt(key, &c_long).expect("long"), long);
    assert_eq!(
        out.require("our_sig_ok"),
        b"1",
        "GnuTLS verifies our signature"
    );
    assert_eq!(out.require("bad_sig_ok"), b"0");
    let py_sig = out.require("py_sig");
    assert!(crypto::verify(pk.spki_der(), &message, &py_sig));
    // PKCS#1 v1.5 signatures are deterministic: both implementations agree byte for byte.
    assert_eq!(py_sig, crypto::sign(key, &message).expect("sign"));
}

/// The skip rule and the script runner's failure modes.
#[test]
fn script_runner_reports_failures_and_timeouts() {
    let Some(py) = conformance::python_opendht_or_skip() else {
        return;
    };
    let err = py
        .run_script(
            "import sys\nsys.exit(3)\n",
            &[],
            std::time::Duration::from_secs(30),
        )
        .expect_err("non-zero exit");
    assert!(matches!(
        err,
        conformance::python::PythonError::Failed { .. }
    ));
    let err = py
        .run_script(
            "import time\ntime.sleep(30)\n",
            &[],
            std::time::Duration::from_millis(300),
        )
        .expect_err("timeout");
    assert!(matches!(
        err,
        conformance::python::PythonError::Timeout { .. }
    ));
}

/// `bytes(Certificate)` of a CA-signed identity is the PEM chain, leaf first
/// (PROTOCOLS §2.6); we take the leaf's key, also behind a msgpack bin header.
#[test]
fn certificate_chain_is_leaf_first() {
    let Some(py) = conformance::python_opendht_or_skip() else {
        return;
    };
    let out = py.run_ok(
        r#"
ca = dht.Identity.generate("conformance-ca", dht.Identity(), 2048)
dev = dht.Identity.generate("conformance-dev", ca, 2048)
out("chain", bytes(dev.certificate))
out("dev_id", str(dev.certificate.getId()))
out("issuer_id", str(dev.certificate.issuer.getId()))
out("ca_id", str(ca.certificate.getId()))
"#,
        &[],
    );
    let chain = out.require("chain");
    let text = String::from_utf8_lossy(&chain);
    assert_eq!(text.matches("-----BEGIN CERTIFICATE-----").count(), 2);
    let leaf = PublicKey::from_certificate(&chain).expect("leaf key");
    assert_eq!(hex_id(&leaf.short_id()), out.require_text("dev_id"));
    assert_eq!(out.require_text("issuer_id"), out.require_text("ca_id"));
    assert_ne!(out.require_text("dev_id"), out.require_text("ca_id"));
    // Certificate announcements carry the chain as msgpack bin (bin16 header).
    let mut wrapped = vec![0xc5];
    wrapped.extend_from_slice(&u16::try_from(chain.len()).expect("fits").to_be_bytes());
    wrapped.extend_from_slice(&chain);
    assert_eq!(
        PublicKey::from_certificate(&wrapped).expect("wrapped"),
        leaf
    );
}

/// OpenDHT 2.4.12 refuses an AES-GCM part that is only `IV ‖ tag` (empty plaintext),
/// and so do we. Its C++ `DecryptError` is not mapped by the bindings: the process aborts.
#[test]
fn empty_gcm_part_is_refused_like_opendht() {
    let Some(py) = conformance::python_opendht_or_skip() else {
        return;
    };
    let key = our_key();
    let mut r = rng(77);
    let aes_key = [0x42u8; 32];
    let mut cypher = key
        .public_key()
        .encrypt(&aes_key, &mut r)
        .expect("RSA block");
    cypher.extend_from_slice(&crypto::aes_encrypt(b"", &aes_key, &mut r).expect("gcm"));
    assert_eq!(cypher.len(), 256 + 28);
    assert_eq!(
        crypto::decrypt(key, &cypher),
        Err(crypto::CryptoError::AesDecrypt)
    );
    let dir = conformance::TempDir::new("pycrypto").expect("tempdir");
    dir.write("key.pem", key.to_pkcs8_pem().expect("pem").as_bytes())
        .expect("write");
    dir.write("c", &cypher).expect("write");
    let err = py
        .run_with_prelude(
            r#"
k = import_key_pem(arg_file("key.pem"))
out("ready", b"1")
out("plain", k.decrypt(arg_file("c")))
"#,
            &[dir.arg()],
            conformance::python::DEFAULT_TIMEOUT,
        )
        .expect_err("opendht must refuse the cypher");
    match err {
        conformance::python::PythonError::Failed { stdout, stderr, .. } => {
            assert!(stdout.contains("ready=31"), "key import failed: {stderr}");
            assert!(!stdout.contains("plain="), "{stdout}");
            assert!(stderr.contains("DecryptError"), "{stderr}");
        }
        other => panic!("unexpected: {other}"),
    }
}

/// Password-protected key files (PKCS#8 PBES2 AES-256, OpenDHT `serialize(password)`)
/// written by GnuTLS load here, and ours load in GnuTLS/opendht with the same id.
#[test]
fn encrypted_key_files_interoperate() {
    let Some(py) = conformance::python_opendht_or_skip() else {
        return;
    };
    let out = py.run_ok(
        r#"
ident = dht.Identity.generate("conformance-pw", dht.Identity(), 2048)
out("id", str(ident.key.getId()))
out("enc_pem", export_key_pem(ident.key, "jami pw"))
"#,
        &[],
    );
    let enc_pem = out.require("enc_pem");
    assert!(enc_pem.starts_with(b"-----BEGIN ENCRYPTED PRIVATE KEY-----"));
    let key =
        PrivateKey::from_pem_or_der_with_password(&enc_pem, "jami pw").expect("GnuTLS PBES2 key");
    assert_eq!(hex_id(&key.public_key().short_id()), out.require_text("id"));
    assert!(PrivateKey::from_pem_or_der_with_password(&enc_pem, "nope").is_err());

    let ours = key
        .to_pkcs8_encrypted_pem("other pw", &mut rng(5))
        .expect("encrypt");
    let dir = conformance::TempDir::new("pycrypto").expect("tempdir");
    dir.write("ours.pem", ours.as_bytes()).expect("write");
    let back = py.run_ok(
        r#"
k = import_key_pem(arg_file("ours.pem"), "other pw")
out("id", str(k.getId()))
"#,
        &[dir.arg()],
    );
    assert_eq!(back.require_text("id"), out.require_text("id"));
}
