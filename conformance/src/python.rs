//! Driving the official python3-opendht 2.4.12 bindings (Debian package) from tests.
//!
//! Debian's modules are only importable by `/usr/bin/python3`; the `python3` on
//! PATH may be a pyenv build that cannot see them, so the path is fixed.
//! Scripts are fed on stdin (`python3 - args…`) and report results as
//! `name=hex` lines on stdout; bulk inputs go through files in a [`TempDir`].

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The only interpreter that sees Debian's `opendht` module.
pub const SYSTEM_PYTHON: &str = "/usr/bin/python3";
/// Version of python3-opendht the conformance suite targets.
pub const EXPECTED_VERSION: &str = "2.4.12";
/// Generous default: RSA-4096 generation in GnuTLS can take a few seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Python helpers prepended by [`PythonOpenDht::run_with_prelude`].
///
/// The bindings cannot import or export keys, sign or verify. To cross-check
/// those anyway, the prelude reaches the GnuTLS handles inside an opendht
/// `PrivateKey` (`{gnutls_privkey_t key; gnutls_x509_privkey_t x509_key; …}`
/// behind the Cython object's `shared_ptr`) and calls the same GnuTLS functions
/// OpenDHT 2.4.12 uses. The layout assumption is checked (`__basicsize__`) and
/// every import is validated by comparing opendht's own `getId()`.
pub const PRELUDE: &str = r#"
import ctypes, sys, os, resource
import opendht as dht

# An uncaught C++ exception aborts the interpreter; leave no core file behind.
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

_gt = ctypes.CDLL("libgnutls.so.30")

class _Datum(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("size", ctypes.c_uint)]

_PEM = 1             # GNUTLS_X509_FMT_PEM
_PKCS_PLAIN = 1      # GNUTLS_PKCS_PLAIN
_PKCS_PBES2_AES_256 = 1 << 7  # GNUTLS_PKCS_PBES2_AES_256
_DIG_SHA512 = 8      # GNUTLS_DIG_SHA512
_SIGN_RSA_SHA512 = 8 # GNUTLS_SIGN_RSA_SHA512

def out(name, data):
    if isinstance(data, str):
        data = data.encode()
    print(f"{name}={data.hex()}", flush=True)

def arg_file(name):
    with open(os.path.join(sys.argv[1], name), "rb") as f:
        return f.read()

def _datum(data):
    buf = ctypes.create_string_buffer(data, len(data))
    return _Datum(ctypes.cast(buf, ctypes.c_void_p), len(data)), buf

def _obj(k):
    if dht.PrivateKey.__basicsize__ != 32:
        raise RuntimeError("unexpected opendht.PrivateKey layout")
    obj = ctypes.c_void_p.from_address(id(k) + 16).value
    if not obj:
        raise RuntimeError("null PrivateKey")
    return obj

def export_key_pem(k, password=None):
    """PrivateKey::serialize(password): plain PKCS#8, or PBES2 AES-256 with a password."""
    x509 = ctypes.c_void_p.from_address(_obj(k) + 8).value
    d = _Datum()
    f = _gt.gnutls_x509_privkey_export2_pkcs8
    f.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint, ctypes.POINTER(_Datum)]
    pw = password.encode() if password else None
    flags = _PKCS_PBES2_AES_256 if password else _PKCS_PLAIN
    if f(x509, _PEM, pw, flags, ctypes.byref(d)) != 0:
        raise RuntimeError("gnutls export failed")
    return ctypes.string_at(d.data, d.size)

def import_key_pem(pem, password=None):
    x = ctypes.c_void_p()
    p = ctypes.c_void_p()
    if _gt.gnutls_x509_privkey_init(ctypes.byref(x)) != 0:
        raise RuntimeError("x509_privkey_init")
    d, _keep = _datum(pem)
    f = _gt.gnutls_x509_privkey_import2
    f.argtypes = [ctypes.c_void_p, ctypes.POINTER(_Datum), ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if f(x, ctypes.byref(d), _PEM, password.encode() if password else None, 0) != 0:
        raise RuntimeError("gnutls import failed")
    if _gt.gnutls_privkey_init(ctypes.byref(p)) != 0:
        raise RuntimeError("privkey_init")
    g = _gt.gnutls_privkey_import_x509
    g.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint]
    if g(p, x, 0) != 0:
        raise RuntimeError("privkey_import_x509")
    k = dht.PrivateKey.generateEC()  # fresh object: public-key cache still empty
    obj = _obj(k)
    ctypes.c_void_p.from_address(obj).value = p.value
    ctypes.c_void_p.from_address(obj + 8).value = x.value
    return k

def gnutls_sign_sha512(k, data):
    p = ctypes.c_void_p.from_address(_obj(k)).value
    d, _keep = _datum(data)
    sig = _Datum()
    f = _gt.gnutls_privkey_sign_data
    f.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(_Datum), ctypes.POINTER(_Datum)]
    if f(p, _DIG_SHA512, 0, ctypes.byref(d), ctypes.byref(sig)) != 0:
        raise RuntimeError("sign failed")
    return ctypes.string_at(sig.data, sig.size)

def gnutls_key_id(k, flags):
    """gnutls_pubkey_get_key_id, as PublicKey::getId (flags 0) / getLongId (1 = USE_SHA256)."""
    p = ctypes.c_void_p.from_address(_obj(k)).value
    pub = ctypes.c_void_p()
    if _gt.gnutls_pubkey_init(ctypes.byref(pub)) != 0:
        raise RuntimeError("pubkey_init")
    g = _gt.gnutls_pubkey_import_privkey
    g.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
    if g(pub, p, 0, 0) != 0:
        raise RuntimeError("pubkey_import_privkey")
    buf = ctypes.create_string_buffer(64)
    size = ctypes.c_size_t(64)
    f = _gt.gnutls_pubkey_get_key_id
    f.argtypes = [ctypes.c_void_p, ctypes.c_uint, ctypes.c_char_p, ctypes.POINTER(ctypes.c_size_t)]
    rc = f(pub, flags, buf, ctypes.byref(size))
    _gt.gnutls_pubkey_deinit(pub)
    if rc != 0:
        raise RuntimeError("get_key_id")
    return buf.raw[: size.value]

def gnutls_verify_sha512(k, data, signature):
    p = ctypes.c_void_p.from_address(_obj(k)).value
    pub = ctypes.c_void_p()
    if _gt.gnutls_pubkey_init(ctypes.byref(pub)) != 0:
        raise RuntimeError("pubkey_init")
    g = _gt.gnutls_pubkey_import_privkey
    g.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
    if g(pub, p, 0, 0) != 0:
        raise RuntimeError("pubkey_import_privkey")
    d, _k1 = _datum(data)
    s, _k2 = _datum(signature)
    f = _gt.gnutls_pubkey_verify_data2
    f.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(_Datum), ctypes.POINTER(_Datum)]
    rc = f(pub, _SIGN_RSA_SHA512, 0, ctypes.byref(d), ctypes.byref(s))
    _gt.gnutls_pubkey_deinit(pub)
    return rc >= 0
"#;

/// Why a script run produced no usable result.
#[derive(Debug, thiserror::Error)]
pub enum PythonError {
    #[error("cannot start {SYSTEM_PYTHON}: {0}")]
    Spawn(std::io::Error),
    #[error("I/O with the python process failed: {0}")]
    Io(std::io::Error),
    #[error("python script timed out after {after:?} (killed)\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}")]
    Timeout {
        after: Duration,
        stdout: String,
        stderr: String,
    },
    #[error("python script failed ({status})\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}")]
    Failed {
        status: ExitStatus,
        stdout: String,
        stderr: String,
    },
}

/// What a successful script printed.
#[derive(Debug, Clone)]
pub struct ScriptOutput {
    pub stdout: String,
    pub stderr: String,
}

impl ScriptOutput {
    /// The hex-decoded value of the last `name=hex` line, if any.
    pub fn field(&self, name: &str) -> Option<Vec<u8>> {
        let prefix = format!("{name}=");
        self.stdout
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(decode_hex)
    }

    /// Like [`field`](Self::field) but panics with the script's output when missing.
    pub fn require(&self, name: &str) -> Vec<u8> {
        self.field(name).unwrap_or_else(|| {
            panic!(
                "python script did not report `{name}`\n--- stdout ---\n{}\n--- stderr ---\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// A field interpreted as UTF-8 text (e.g. a PEM or a printed id).
    pub fn require_text(&self, name: &str) -> String {
        String::from_utf8_lossy(&self.require(name)).into_owned()
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect()
}

/// A working `/usr/bin/python3` that can `import opendht`.
#[derive(Debug, Clone)]
pub struct PythonOpenDht {
    python: PathBuf,
    version: String,
}

impl PythonOpenDht {
    /// Finds the official bindings; `None` when the interpreter or module is absent.
    pub fn find() -> Option<Self> {
        Self::find_at(Path::new(SYSTEM_PYTHON))
    }

    /// [`find`](Self::find) with another interpreter path (for tests of the skip rule).
    pub fn find_at(python: &Path) -> Option<Self> {
        let python = python.to_path_buf();
        if !python.exists() {
            return None;
        }
        let probe = Self {
            python,
            version: String::new(),
        };
        let script = "import opendht, importlib.metadata as m\n\
                      try:\n    print(m.version('opendht'))\n\
                      except Exception:\n    print('unknown')\n";
        let out = probe
            .run_script(script, &[], Duration::from_secs(30))
            .ok()?;
        Some(Self {
            version: out.stdout.trim().to_string(),
            ..probe
        })
    }

    /// Version reported by the installed package metadata.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Runs `script` (fed on stdin) with `args`, killing it after `timeout`.
    /// A non-zero exit is an error carrying both output streams.
    pub fn run_script(
        &self,
        script: &str,
        args: &[&str],
        timeout: Duration,
    ) -> Result<ScriptOutput, PythonError> {
        let mut child = Command::new(&self.python)
            .arg("-")
            .args(args)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(PythonError::Spawn)?;
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());
        if let Some(mut stdin) = child.stdin.take() {
            // A script that dies early closes the pipe; its exit status tells why.
            let _ = stdin.write_all(script.as_bytes());
        }
        let status = wait_with_deadline(&mut child, timeout).map_err(PythonError::Io)?;
        let stdout = join(stdout);
        let stderr = join(stderr);
        match status {
            None => Err(PythonError::Timeout {
                after: timeout,
                stdout,
                stderr,
            }),
            Some(status) if status.success() => Ok(ScriptOutput { stdout, stderr }),
            Some(status) => Err(PythonError::Failed {
                status,
                stdout,
                stderr,
            }),
        }
    }

    /// [`run_script`](Self::run_script) with [`PRELUDE`] prepended.
    pub fn run_with_prelude(
        &self,
        script: &str,
        args: &[&str],
        timeout: Duration,
    ) -> Result<ScriptOutput, PythonError> {
        self.run_script(&format!("{PRELUDE}\n{script}"), args, timeout)
    }

    /// Like [`run_with_prelude`](Self::run_with_prelude) but panics with a clear message.
    pub fn run_ok(&self, script: &str, args: &[&str]) -> ScriptOutput {
        self.run_with_prelude(script, args, DEFAULT_TIMEOUT)
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> Option<JoinHandle<String>> {
    pipe.map(|mut p| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = p.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    })
}

fn join(handle: Option<JoinHandle<String>>) -> String {
    handle.and_then(|h| h.join().ok()).unwrap_or_default()
}

/// Waits for `child` until `timeout`; on expiry kills it (we started it) and returns `None`.
fn wait_with_deadline(child: &mut Child, timeout: Duration) -> std::io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A private temporary directory, removed on drop (std only).
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates a fresh directory under the system temp dir.
    pub fn new(tag: &str) -> std::io::Result<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("jamisim-{tag}-{}-{nanos}-{n}", std::process::id()));
        std::fs::create_dir(&path)?;
        Ok(Self { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory as a script argument.
    pub fn arg(&self) -> &str {
        self.path.to_str().unwrap_or(".")
    }

    /// Writes `name` inside the directory.
    pub fn write(&self, name: &str, data: &[u8]) -> std::io::Result<()> {
        std::fs::write(self.path.join(name), data)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn fields_parse_last_hex_line() {
        let out = ScriptOutput {
            stdout: "noise\na=00ff\nb=zz\na=0102\n".into(),
            stderr: String::new(),
        };
        assert_eq!(out.field("a"), Some(vec![1, 2]));
        assert_eq!(out.field("b"), None);
        assert_eq!(out.field("c"), None);
    }

    #[test]
    fn missing_interpreter_is_not_found() {
        assert!(PythonOpenDht::find_at(Path::new("/nonexistent/python3")).is_none());
    }

    #[test]
    fn temp_dir_is_removed() {
        let p = {
            let d = TempDir::new("unit").expect("tempdir");
            d.write("x", b"1").expect("write");
            d.path().to_path_buf()
        };
        assert!(!p.exists());
    }
}
