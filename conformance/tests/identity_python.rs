//! Certificates and chains (`node::identity`) cross-checked with the real
//! python3-opendht 2.4.12 and the GnuTLS it runs on.
//!
//! opendht exposes `Certificate(bytes)`, `getId/getName/issuer`, `Certificate.generate`
//! (which refuses a non-CA issuer: OpenDHT's own `isCA()`), `Identity(key, cert)` and
//! `TrustList.add/verify` (GnuTLS chain verification). UID, long id, CA status, serial,
//! key usage and validity are read with the same GnuTLS calls OpenDHT makes, through
//! ctypes on a certificate imported from the same bytes.

use std::sync::OnceLock;

use conformance::{PythonOpenDht, ScriptOutput, TempDir};
use node::crypto::{self, HashAlg, PrivateKey};
use node::identity::{
    self, CertSigner, Certificate, KeyAlgorithm, NodeIdentity, SignatureAlgorithm,
};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// Certificates must be valid on the machine's clock for GnuTLS to verify them.
fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(1_790_000_000)
        - 60
}

/// GnuTLS introspection of a PEM chain file, reported as `<prefix>_<field>=hex` lines
/// for each certificate `i` of the chain.
const GNUTLS_INFO: &str = r#"
class _Crt:
    def __init__(self, der):
        self.h = ctypes.c_void_p()
        if _gt.gnutls_x509_crt_init(ctypes.byref(self.h)) != 0:
            raise RuntimeError("crt_init")
        d, self._keep = _datum(der)
        f = _gt.gnutls_x509_crt_import
        f.argtypes = [ctypes.c_void_p, ctypes.POINTER(_Datum), ctypes.c_int]
        if f(self.h, ctypes.byref(d), 0) != 0:  # GNUTLS_X509_FMT_DER
            raise RuntimeError("crt_import")

    def _buf(self, fn, *args):
        buf = ctypes.create_string_buffer(1024)
        size = ctypes.c_size_t(1024)
        rc = fn(self.h, *args, buf, ctypes.byref(size))
        return buf.raw[: size.value] if rc == 0 else b""

    def dn(self, oid, issuer=False):
        f = _gt.gnutls_x509_crt_get_issuer_dn_by_oid if issuer else _gt.gnutls_x509_crt_get_dn_by_oid
        f.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint, ctypes.c_uint, ctypes.c_char_p, ctypes.POINTER(ctypes.c_size_t)]
        return self._buf(f, oid, 0, 0)

    def key_id(self, flags):
        f = _gt.gnutls_x509_crt_get_key_id
        f.argtypes = [ctypes.c_void_p, ctypes.c_uint, ctypes.c_char_p, ctypes.POINTER(ctypes.c_size_t)]
        return self._buf(f, flags)

    def serial(self):
        f = _gt.gnutls_x509_crt_get_serial
        f.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_size_t)]
        return self._buf(f)

    def ca_status(self):
        crit = ctypes.c_uint()
        f = _gt.gnutls_x509_crt_get_ca_status
        f.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint)]
        return f(self.h, ctypes.byref(crit)) > 0

    def key_usage(self):
        usage = ctypes.c_uint()
        crit = ctypes.c_uint()
        f = _gt.gnutls_x509_crt_get_key_usage
        f.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint), ctypes.POINTER(ctypes.c_uint)]
        return usage.value if f(self.h, ctypes.byref(usage), ctypes.byref(crit)) >= 0 else -1

    def time(self, which):
        f = getattr(_gt, "gnutls_x509_crt_get_" + which + "_time")
        f.argtypes = [ctypes.c_void_p]
        f.restype = ctypes.c_long
        return f(self.h)

    def version(self):
        f = _gt.gnutls_x509_crt_get_version
        f.argtypes = [ctypes.c_void_p]
        return f(self.h)

    def sig_name(self):
        f = _gt.gnutls_x509_crt_get_signature_algorithm
        f.argtypes = [ctypes.c_void_p]
        n = _gt.gnutls_sign_get_name
        n.argtypes = [ctypes.c_int]
        n.restype = ctypes.c_char_p
        return n(f(self.h)) or b"?"

import base64, re
def pem_ders(data):
    return [base64.b64decode(b"".join(m.split())) for m in re.findall(
        rb"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", data, re.S)]

def report(prefix, data):
    for i, der in enumerate(pem_ders(data)):
        c = _Crt(der)
        p = f"{prefix}{i}_"
        out(p + "cn", c.dn(b"2.5.4.3"))
        out(p + "uid", c.dn(b"0.9.2342.19200300.100.1.1"))
        out(p + "issuer_cn", c.dn(b"2.5.4.3", True))
        out(p + "issuer_uid", c.dn(b"0.9.2342.19200300.100.1.1", True))
        out(p + "short", c.key_id(0))
        out(p + "long", c.key_id(1))
        out(p + "serial", c.serial())
        out(p + "ca", b"1" if c.ca_status() else b"0")
        out(p + "usage", str(c.key_usage()))
        out(p + "nb", str(c.time("activation")))
        out(p + "na", str(c.time("expiration")))
        out(p + "version", str(c.version()))
        out(p + "sig", c.sig_name())
"#;

fn python() -> Option<PythonOpenDht> {
    conformance::python_opendht_or_skip()
}

fn run(py: &PythonOpenDht, script: &str, dir: &TempDir) -> ScriptOutput {
    py.run_ok(&format!("{GNUTLS_INFO}\n{script}"), &[dir.arg()])
}

/// Our CA (2048-bit) → leaf (2048-bit), plus the keys, shared by the tests.
struct Ours {
    ca_key: PrivateKey,
    leaf_key: PrivateKey,
    ca: Certificate,
    leaf: Certificate,
}

fn ours() -> &'static Ours {
    static OURS: OnceLock<Ours> = OnceLock::new();
    OURS.get_or_init(|| {
        let mut rng = ChaCha20Rng::seed_from_u64(0x1d);
        let ca_key = PrivateKey::generate(2048, &mut rng).expect("keygen");
        let leaf_key = PrivateKey::generate(2048, &mut rng).expect("keygen");
        let ca =
            Certificate::generate(&ca_key, "jamisim CA", None, true, now(), &mut rng).expect("ca");
        let leaf = Certificate::generate(
            &leaf_key,
            "jamisim leaf",
            Some((CertSigner::Rsa(&ca_key), &ca)),
            false,
            now(),
            &mut rng,
        )
        .expect("leaf");
        Ours {
            ca_key,
            leaf_key,
            ca,
            leaf,
        }
    })
}

/// Checks GnuTLS's view (`<prefix><i>_*` fields) against our parse of the same chain.
fn assert_same_view(out: &ScriptOutput, prefix: &str, chain: &[Certificate]) {
    for (i, c) in chain.iter().enumerate() {
        let f = |name: &str| out.require_text(&format!("{prefix}{i}_{name}"));
        let raw = |name: &str| out.require(&format!("{prefix}{i}_{name}"));
        assert_eq!(Some(f("cn").as_str()), c.name(), "{prefix}{i} CN");
        assert_eq!(Some(f("uid").as_str()), c.uid(), "{prefix}{i} UID");
        assert_eq!(
            Some(f("issuer_cn").as_str()),
            c.issuer_name(),
            "{prefix}{i} issuer CN"
        );
        assert_eq!(
            Some(f("issuer_uid").as_str()),
            c.issuer_uid(),
            "{prefix}{i} issuer UID"
        );
        assert_eq!(raw("short"), c.short_id(), "{prefix}{i} short id");
        assert_eq!(raw("long"), c.long_id(), "{prefix}{i} long id");
        assert_eq!(raw("serial"), c.serial(), "{prefix}{i} serial");
        assert_eq!(f("ca") == "1", c.is_ca(), "{prefix}{i} CA status");
        assert_eq!(
            f("nb").parse::<u64>().ok(),
            Some(c.not_before()),
            "{prefix}{i} activation"
        );
        assert_eq!(
            f("na").parse::<u64>().ok(),
            Some(c.not_after()),
            "{prefix}{i} expiration"
        );
        assert_eq!(f("version"), "3", "{prefix}{i} X.509 v3");
        let expected_sig = match c.signature_algorithm() {
            SignatureAlgorithm::Rsa(HashAlg::Sha256) => "RSA-SHA256",
            SignatureAlgorithm::Rsa(HashAlg::Sha384) => "RSA-SHA384",
            SignatureAlgorithm::Rsa(HashAlg::Sha512) => "RSA-SHA512",
            SignatureAlgorithm::Ecdsa(HashAlg::Sha256) => "ECDSA-SHA256",
            SignatureAlgorithm::Ecdsa(HashAlg::Sha384) => "ECDSA-SHA384",
            SignatureAlgorithm::Ecdsa(HashAlg::Sha512) => "ECDSA-SHA512",
            SignatureAlgorithm::Other(o) => panic!("unexpected algorithm {o}"),
        };
        assert_eq!(f("sig"), expected_sig, "{prefix}{i} signature algorithm");
    }
}

/// python3-opendht loads our chain: same ids, names, issuer link; OpenDHT's `isCA()`
/// accepts our CA and refuses our leaf as issuer; GnuTLS's TrustList verifies the leaf
/// against our CA only.
#[test]
fn opendht_reads_and_verifies_our_certificates() {
    let Some(py) = python() else { return };
    let o = ours();
    let dir = TempDir::new("idpy").expect("tempdir");
    let chain = [o.leaf.clone(), o.ca.clone()];
    dir.write("chain.pem", identity::encode_pem_chain(&chain).as_bytes())
        .expect("write");
    dir.write("ca.pem", o.ca.to_pem().as_bytes())
        .expect("write");
    // The type-8 value data as put on the DHT (msgpack bin around the PEM chain).
    dir.write("value.bin", &identity::chain::to_value_data(&chain))
        .expect("write");
    for (name, key) in [("ca.key", &o.ca_key), ("leaf.key", &o.leaf_key)] {
        dir.write(name, key.to_pkcs8_pem().expect("pem").as_bytes())
            .expect("write");
    }
    let out = run(
        &py,
        r#"
chain = dht.Certificate(arg_file("chain.pem"))
out("leaf_id", str(chain.getId()))
out("leaf_name", chain.getName())
out("issuer_id", str(chain.issuer.getId()))
out("issuer_name", chain.issuer.getName())
out("grandparent_id", str(chain.issuer.issuer.getId()))
out("repacked", bytes(chain))
value = dht.Certificate(arg_file("value.bin"))
out("value_id", str(value.getId()))
report("ours", arg_file("chain.pem"))

ca = dht.Certificate(arg_file("ca.pem"))
probe = dht.PrivateKey.generateEC()
issued = dht.Certificate.generate(probe, "probe", dht.Identity(import_key_pem(arg_file("ca.key")), ca), False)
out("issued_by_ca", str(issued.issuer.getId()))
out("issued_pem", bytes(issued))
try:
    dht.Certificate.generate(probe, "probe", dht.Identity(import_key_pem(arg_file("leaf.key")), dht.Certificate(pem_ders(arg_file("chain.pem"))[0])), False)
    out("leaf_can_issue", b"1")
except RuntimeError as e:
    out("leaf_can_issue", b"0")
    out("leaf_refusal", str(e))

trusted = dht.TrustList()
trusted.add(ca)
out("trust_ours", b"1" if trusted.verify(chain) else b"0")
stranger = dht.Identity.generate("stranger CA", dht.Identity(), 1024)
other = dht.TrustList()
other.add(stranger.certificate)
out("trust_other", b"1" if other.verify(chain) else b"0")
"#,
        &dir,
    );
    let hex = |b: &[u8]| crypto::hex(b);
    assert_eq!(out.require_text("leaf_id"), hex(&o.leaf.short_id()));
    assert_eq!(out.require_text("leaf_name"), "jamisim leaf");
    assert_eq!(out.require_text("issuer_id"), hex(&o.ca.short_id()));
    assert_eq!(out.require_text("issuer_name"), "jamisim CA");
    assert_eq!(
        out.require_text("grandparent_id"),
        "0".repeat(40),
        "two-certificate chain"
    );
    assert_eq!(out.require_text("value_id"), hex(&o.leaf.short_id()));
    // OpenDHT re-exports exactly our PEM text.
    assert_eq!(
        out.require_text("repacked"),
        identity::encode_pem_chain(&chain)
    );
    assert_same_view(&out, "ours", &chain);
    assert_eq!(
        out.require_text("ours0_usage"),
        "144",
        "digitalSignature|dataEncipherment"
    );
    assert_eq!(out.require_text("ours1_usage"), "6", "keyCertSign|cRLSign");

    assert_eq!(out.require_text("issued_by_ca"), hex(&o.ca.short_id()));
    assert_eq!(out.require_text("leaf_can_issue"), "0");
    assert!(out.require_text("leaf_refusal").contains("must be CA"));
    // The certificate OpenDHT issued with our CA key verifies with our code.
    let issued = identity::decode_chain(&out.require("issued_pem")).expect("issued chain");
    assert_eq!(issued.len(), 2);
    assert_eq!(issued[1], o.ca);
    identity::verify_chain(&issued).expect("OpenDHT-issued cert under our CA");
    assert_eq!(out.require_text("trust_ours"), "1", "TrustList with our CA");
    assert_eq!(
        out.require_text("trust_other"),
        "0",
        "TrustList with another CA"
    );
}

/// Certificates generated by python3-opendht: plain RSA CA → leaf (2048 and the Jami
/// size 4096, which GnuTLS signs with SHA-384), and the `dhtnode -i` shape (EC P-384
/// CA → RSA leaf). We derive the same ids/names/flags and verify the chains; a forged
/// link is refused.
#[test]
fn we_read_and_verify_opendht_certificates() {
    let Some(py) = python() else { return };
    let dir = TempDir::new("idpy").expect("tempdir");
    let out = run(
        &py,
        r#"
ca = dht.Identity.generate("py CA", dht.Identity(), 2048)
leaf = dht.Identity.generate("py leaf", ca, 4096)
out("rsa_chain", bytes(leaf.certificate))
out("rsa_leaf_id", str(leaf.certificate.getId()))
report("rsa", bytes(leaf.certificate))

ec = dht.PrivateKey.generateEC()
ec_ca = dht.Identity(ec, dht.Certificate.generate(ec, "DHT Node CA", dht.Identity(), True))
node = dht.Identity.generate("DHT Node", ec_ca, 2048)
out("ec_chain", bytes(node.certificate))
report("ec", bytes(node.certificate))

other = dht.Identity.generate("py CA", dht.Identity(), 1024)
out("other_ca", bytes(other.certificate))
"#,
        &dir,
    );
    let rsa = identity::decode_chain(&out.require("rsa_chain")).expect("rsa chain");
    assert_eq!(rsa.len(), 2);
    assert_same_view(&out, "rsa", &rsa);
    assert_eq!(
        crypto::hex(&rsa[0].short_id()),
        out.require_text("rsa_leaf_id")
    );
    assert_eq!(rsa[0].key_algorithm(), KeyAlgorithm::Rsa { bits: 4096 });
    assert_eq!(
        rsa[0].signature_algorithm(),
        SignatureAlgorithm::Rsa(HashAlg::Sha384),
        "subject key size picks the hash"
    );
    assert_eq!(rsa[0].uid(), Some(crypto::hex(&rsa[0].short_id()).as_str()));
    assert_eq!(rsa[0].subject_key_id(), Some(rsa[0].short_id().to_vec()));
    assert_eq!(
        rsa[0].not_after() - rsa[0].not_before(),
        identity::VALIDITY_SECS
    );
    identity::verify_chain(&rsa).expect("python RSA chain");

    let ec = identity::decode_chain(&out.require("ec_chain")).expect("ec chain");
    assert_same_view(&out, "ec", &ec);
    assert_eq!(ec[1].key_algorithm(), KeyAlgorithm::EcP384);
    assert!(ec[1].public_key().is_none() && ec[0].public_key().is_some());
    identity::verify_chain(&ec).expect("python EC-CA chain");

    // Same CN, different key: the leaf does not verify under it.
    let other = Certificate::from_pem_or_der(&out.require("other_ca")).expect("other ca");
    assert!(rsa[0].verify_issued_by(&other).is_err());
    assert_eq!(
        rsa[0].verify_signature_by(&other),
        Err(identity::CertError::BadSignature)
    );
}

/// Our `dhtnode -i`-shaped identity (EC P-384 CA → RSA leaf, ECDSA signature) is
/// accepted by OpenDHT: ids match and GnuTLS verifies it against our EC CA.
#[test]
fn opendht_verifies_our_dhtnode_style_identity() {
    let Some(py) = python() else { return };
    let mut rng = ChaCha20Rng::seed_from_u64(0x1e);
    let id = NodeIdentity::generate(2048, now(), &mut rng).expect("identity");
    let dir = TempDir::new("idpy").expect("tempdir");
    dir.write("chain.pem", id.chain_pem().as_bytes())
        .expect("write");
    dir.write("ca.pem", id.chain()[1].to_pem().as_bytes())
        .expect("write");
    let out = run(
        &py,
        r#"
chain = dht.Certificate(arg_file("chain.pem"))
out("id", str(chain.getId()))
out("ca_id", str(chain.issuer.getId()))
t = dht.TrustList()
t.add(dht.Certificate(arg_file("ca.pem")))
out("trusted", b"1" if t.verify(chain) else b"0")
report("node", arg_file("chain.pem"))
"#,
        &dir,
    );
    assert_eq!(out.require_text("id"), crypto::hex(&id.short_id()));
    assert_eq!(
        out.require_text("ca_id"),
        crypto::hex(&id.chain()[1].short_id())
    );
    assert_eq!(out.require_text("trusted"), "1");
    assert_same_view(&out, "node", id.chain());
}

/// CRLs both ways through GnuTLS with the calls OpenDHT makes: our CRL passes
/// `gnutls_x509_crl_verify` (`isSignedBy`) and `gnutls_x509_crt_check_revocation`
/// (`isRevoked`); a CRL GnuTLS signs the way `RevocationList::sign` does (v2, SHA-512,
/// CRL number) verifies with our code and revokes the same certificate.
#[test]
fn crls_interoperate_with_gnutls() {
    let Some(py) = python() else { return };
    let o = ours();
    let mut rng = ChaCha20Rng::seed_from_u64(0x1f);
    let signer = CertSigner::Rsa(&o.ca_key);
    let crl = identity::RevocationList::sign(signer, &o.ca, &[], None, now(), &mut rng)
        .and_then(|c| c.revoke(&o.leaf, signer, &o.ca, now(), &mut rng))
        .expect("crl");
    let dir = TempDir::new("idpy").expect("tempdir");
    dir.write("ca.pem", o.ca.to_pem().as_bytes())
        .expect("write");
    dir.write("leaf.pem", o.leaf.to_pem().as_bytes())
        .expect("write");
    dir.write("crl.der", crl.der()).expect("write");
    dir.write("ca.key", o.ca_key.to_pkcs8_pem().expect("pem").as_bytes())
        .expect("write");
    let out = run(
        &py,
        r#"
ca = _Crt(pem_ders(arg_file("ca.pem"))[0])
leaf = _Crt(pem_ders(arg_file("leaf.pem"))[0])

def crl_import(der):
    h = ctypes.c_void_p()
    _gt.gnutls_x509_crl_init(ctypes.byref(h))
    d, keep = _datum(der)
    f = _gt.gnutls_x509_crl_import
    f.argtypes = [ctypes.c_void_p, ctypes.POINTER(_Datum), ctypes.c_int]
    if f(h, ctypes.byref(d), 0) != 0:
        raise RuntimeError("crl_import")
    return h, keep

ours, _k = crl_import(arg_file("crl.der"))
status = ctypes.c_uint(99)
v = _gt.gnutls_x509_crl_verify
v.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p), ctypes.c_uint, ctypes.c_uint, ctypes.POINTER(ctypes.c_uint)]
rc = v(ours, ctypes.byref(ca.h), 1, 0, ctypes.byref(status))
out("our_crl_verify", f"{rc}/{status.value}")
chk = _gt.gnutls_x509_crt_check_revocation
chk.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p), ctypes.c_uint]
crl_arr = (ctypes.c_void_p * 1)(ours)
out("leaf_revoked", str(chk(leaf.h, crl_arr, 1)))
out("ca_revoked", str(chk(ca.h, crl_arr, 1)))

# A CRL made by GnuTLS exactly as OpenDHT's RevocationList::sign does.
import time
now = int(time.time()) - 60
x509key = import_key_pem(arg_file("ca.key"))
xk = ctypes.c_void_p.from_address(_obj(x509key) + 8).value
g = ctypes.c_void_p()
_gt.gnutls_x509_crl_init(ctypes.byref(g))
_gt.gnutls_x509_crl_set_version.argtypes = [ctypes.c_void_p, ctypes.c_uint]
_gt.gnutls_x509_crl_set_crt.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_long]
_gt.gnutls_x509_crl_set_this_update.argtypes = [ctypes.c_void_p, ctypes.c_long]
_gt.gnutls_x509_crl_set_next_update.argtypes = [ctypes.c_void_p, ctypes.c_long]
_gt.gnutls_x509_crl_set_number.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
_gt.gnutls_x509_crl_sign2.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_uint]
_gt.gnutls_x509_crl_export2.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(_Datum)]
num = (ctypes.c_ubyte * 8)(0xf1, 2, 3, 4, 5, 6, 7, 8)
assert _gt.gnutls_x509_crl_set_version(g, 2) == 0
assert _gt.gnutls_x509_crl_set_crt(g, leaf.h, now) == 0
assert _gt.gnutls_x509_crl_set_this_update(g, now) == 0
assert _gt.gnutls_x509_crl_set_next_update(g, ca.time("expiration")) == 0
assert _gt.gnutls_x509_crl_set_number(g, num, 8) == 0
assert _gt.gnutls_x509_crl_sign2(g, ca.h, xk, _DIG_SHA512, 0) == 0
d = _Datum()
assert _gt.gnutls_x509_crl_export2(g, 0, ctypes.byref(d)) == 0
out("gnutls_crl", ctypes.string_at(d.data, d.size))
out("gnutls_now", str(now))
"#,
        &dir,
    );
    assert_eq!(
        out.require_text("our_crl_verify"),
        "0/0",
        "rc/verify status"
    );
    assert_eq!(out.require_text("leaf_revoked"), "1");
    assert_eq!(out.require_text("ca_revoked"), "0");

    let theirs = identity::RevocationList::from_der(&out.require("gnutls_crl")).expect("parse");
    theirs
        .verify_signed_by(&o.ca)
        .expect("GnuTLS CRL signed by our CA");
    assert!(theirs.is_revoked(&o.leaf) && !theirs.is_revoked(&o.ca));
    assert_eq!(theirs.number(), Some(vec![0xf1, 2, 3, 4, 5, 6, 7, 8]));
    let at: u64 = out.require_text("gnutls_now").parse().expect("time");
    assert_eq!(theirs.this_update(), at);
    assert_eq!(theirs.next_update(), Some(o.ca.not_after()));
    // Same layout as ours: re-signing their list with our code changes only the
    // number (+1), the times we pass, and the signature.
    let resigned = theirs
        .revoke(&o.ca, signer, &o.ca, at, &mut rng)
        .expect("revoke");
    assert_eq!(resigned.number(), Some(vec![0xf1, 2, 3, 4, 5, 6, 7, 9]));
    assert_eq!(resigned.revoked().len(), 2);
}
