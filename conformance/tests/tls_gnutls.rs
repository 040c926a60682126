//! Our TLS session (node::connect::tls) against GnuTLS, the library jamid uses, with
//! jamid's priority string (PROTOCOLS §6.4) and client certificates, over loopback TCP,
//! in both roles: `gnutls-serv` (TLS server = the requester in Jami) with our client,
//! and `gnutls-cli` (TLS client = the request receiver) with our server. Each side
//! presents a Jami device chain (device → account → CA) made by node::identity.
//! GnuTLS checks nothing about trust (like jamid, which ignores all but signature
//! failures); our side runs Jami's full peer check on GnuTLS' chain.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use conformance::TempDir;
use node::connect::tls::{ExpectedPeer, Role, TlsEvent, TlsSession};
use node::identity::account::{AccountIdentity, DeviceIdentity};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rustls::{CipherSuite, NamedGroup};

/// jamid 20230206's first-handshake priority string (tls_session.cpp, reliable transport).
const JAMI_PRIORITY: &str = "SECURE192:-KX-ALL:+ANON-ECDH:+ANON-DH:+SECURE192:-RSA:\
-GROUP-FFDHE4096:-GROUP-FFDHE6144:-GROUP-FFDHE8192:+GROUP-X25519:%SERVER_PRECEDENCE:\
%SAFE_RENEGOTIATION";

/// 2048-bit keys: GnuTLS signs and accepts them under SECURE192, and they generate fast.
const BITS: usize = 2048;

fn gnutls_or_skip() -> bool {
    let found = ["gnutls-cli", "gnutls-serv"].iter().all(|p| {
        Command::new(p)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if !found {
        conformance::skip_or_fail("SKIP: gnutls-cli/gnutls-serv not installed (apt-get install gnutls-bin)");
    }
    found
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Our device and GnuTLS' device, of two accounts.
fn devices() -> &'static (DeviceIdentity, DeviceIdentity) {
    static D: OnceLock<(DeviceIdentity, DeviceIdentity)> = OnceLock::new();
    D.get_or_init(|| {
        let mut rng = ChaCha20Rng::seed_from_u64(0x6e75);
        let now = now_ms() / 1000 - 3600;
        let ours = AccountIdentity::generate(BITS, now, &mut rng).expect("our account");
        let theirs = AccountIdentity::generate(BITS, now, &mut rng).expect("their account");
        (
            ours.new_device(BITS, now, &mut rng).expect("our device"),
            theirs.new_device(BITS, now, &mut rng).expect("their device"),
        )
    })
}

/// GnuTLS' key and chain files.
fn gnutls_files(dir: &TempDir) -> (String, String) {
    let (_, theirs) = devices();
    let key = dir.path().join("device.key");
    let crt = dir.path().join("device.crt");
    std::fs::write(&key, theirs.key().to_pkcs8_pem().expect("pem")).expect("key file");
    std::fs::write(&crt, theirs.chain_pem()).expect("chain file");
    (
        key.to_string_lossy().into_owned(),
        crt.to_string_lossy().into_owned(),
    )
}

fn our_session(role: Role) -> TlsSession {
    let (ours, theirs) = devices();
    let expected = ExpectedPeer::new(theirs.chain().to_vec(), vec![]).expect("their chain");
    TlsSession::new(now_ms(), role, ours, expected, ChaCha20Rng::seed_from_u64(1)).expect("session")
}

/// Drives `session` over `stream` until `done` says so (or 30 s pass); returns every
/// event seen.
fn drive(
    session: &mut TlsSession,
    stream: &mut TcpStream,
    mut on_event: impl FnMut(&mut TlsSession, &TlsEvent) -> bool,
) -> Vec<TlsEvent> {
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    let start = Instant::now();
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        while let Some(out) = session.poll_stream_write() {
            stream.write_all(&out).expect("write to GnuTLS");
        }
        while let Some(e) = session.poll_event() {
            let stop = on_event(session, &e);
            let fatal = matches!(e, TlsEvent::Failed(_) | TlsEvent::Closed);
            seen.push(e);
            if stop || fatal {
                while let Some(out) = session.poll_stream_write() {
                    let _ = stream.write_all(&out);
                }
                return seen;
            }
        }
        assert!(start.elapsed() < Duration::from_secs(30), "stuck: {seen:?}");
        match stream.read(&mut buf) {
            Ok(0) => return seen,
            Ok(n) => session.handle_stream_bytes(now_ms(), &buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                session.handle_timeout(now_ms())
            }
            Err(e) => panic!("read: {e}"),
        }
    }
}

struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// `gnutls-serv --echo` requiring our client certificate; our session is the TLS client.
fn against_gnutls_serv(priority: &str, want: (CipherSuite, NamedGroup)) {
    let dir = TempDir::new("tls-gnutls").expect("temp dir");
    let (key, crt) = gnutls_files(&dir);
    let port = free_port();
    let log = std::fs::File::create(dir.path().join("serv.log")).expect("log");
    let _serv = Reaped(
        Command::new("gnutls-serv")
            .args(["--port", &port.to_string(), "--priority", priority])
            .args(["--x509certfile", &crt, "--x509keyfile", &key])
            .args(["--require-client-cert", "--echo"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("gnutls-serv"),
    );
    let start = Instant::now();
    let mut stream = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(_) if start.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) => panic!("gnutls-serv never listened: {e}"),
        }
    };
    let mut session = our_session(Role::Client);
    let mut echoed = Vec::new();
    let events = drive(&mut session, &mut stream, |s, e| match e {
        TlsEvent::HandshakeComplete { .. } => {
            s.send(now_ms(), b"hello from jamisim\n").expect("send");
            false
        }
        TlsEvent::Data(d) => {
            echoed.extend(d);
            echoed.ends_with(b"\n")
        }
        _ => false,
    });
    let serv_log = std::fs::read_to_string(dir.path().join("serv.log")).unwrap_or_default();
    let (_, theirs) = devices();
    assert!(
        matches!(events.first(), Some(TlsEvent::HandshakeComplete { peer }) if peer.device_short_id == theirs.short_id()),
        "{events:?}\n{serv_log}"
    );
    assert_eq!(echoed, b"hello from jamisim\n");
    assert_eq!(session.negotiated(), Some(want));
    // gnutls-serv got our full chain (device → account → CA) as its client certificate.
    assert!(serv_log.contains("Got a certificate list of 3 certificates"), "{serv_log}");
}

/// `gnutls-cli` with its client certificate connects to our session, the TLS server.
fn against_gnutls_cli(priority: &str, want: (CipherSuite, NamedGroup), want_desc: &str) {
    let dir = TempDir::new("tls-gnutls").expect("temp dir");
    let (key, crt) = gnutls_files(&dir);
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = listener.local_addr().expect("addr").port();
    let mut cli = Reaped(
        Command::new("gnutls-cli")
            .args(["127.0.0.1", "--port", &port.to_string(), "--priority", priority])
            .args(["--x509certfile", &crt, "--x509keyfile", &key, "--insecure"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("gnutls-cli"),
    );
    let (mut stream, _) = listener.accept().expect("gnutls-cli connects");
    let mut stdin = cli.0.stdin.take().expect("stdin");
    let mut session = our_session(Role::Server);
    let mut got = Vec::new();
    let events = drive(&mut session, &mut stream, |s, e| match e {
        TlsEvent::HandshakeComplete { .. } => {
            stdin.write_all(b"ping from gnutls\n").expect("stdin");
            false
        }
        TlsEvent::Data(d) => {
            got.extend(d);
            if got.ends_with(b"\n") {
                s.send(now_ms(), b"pong from jamisim\n").expect("send");
                s.close(now_ms());
                true
            }
            else { false }
        }
        _ => false,
    });
    drop(stdin);
    let mut out = String::new();
    let mut err = String::new();
    let _ = cli.0.stdout.take().expect("stdout").read_to_string(&mut out);
    let _ = cli.0.stderr.take().expect("stderr").read_to_string(&mut err);
    let (_, theirs) = devices();
    assert!(
        matches!(events.first(), Some(TlsEvent::HandshakeComplete { peer }) if peer.device_short_id == theirs.short_id()),
        "{events:?}\n{out}\n{err}"
    );
    assert_eq!(got, b"ping from gnutls\n");
    assert!(out.contains("pong from jamisim"), "{out}\n{err}");
    assert!(out.contains(want_desc) || err.contains(want_desc), "{out}\n{err}");
    assert!(out.contains("Got a certificate list of 3 certificates"), "{out}");
    assert_eq!(session.negotiated(), Some(want));
}

#[test]
fn our_client_with_jamid_priority_against_gnutls_serv() {
    if !gnutls_or_skip() {
        return;
    }
    against_gnutls_serv(
        JAMI_PRIORITY,
        (CipherSuite::TLS13_AES_256_GCM_SHA384, NamedGroup::secp384r1),
    );
}

#[test]
fn our_server_with_jamid_priority_against_gnutls_cli() {
    if !gnutls_or_skip() {
        return;
    }
    against_gnutls_cli(
        JAMI_PRIORITY,
        (CipherSuite::TLS13_AES_256_GCM_SHA384, NamedGroup::secp384r1),
        "(TLS1.3-X.509)-(ECDHE-SECP384R1)-(RSA-PSS-RSAE-SHA384)-(AES-256-GCM)",
    );
}

/// The other group and cipher we offer: a GnuTLS peer limited to X25519 and
/// ChaCha20-Poly1305 (our client first sends a P-384 share, so this also goes through a
/// HelloRetryRequest).
#[test]
fn x25519_and_chacha20_against_gnutls_both_roles() {
    if !gnutls_or_skip() {
        return;
    }
    let priority = format!("{JAMI_PRIORITY}:-GROUP-ALL:+GROUP-X25519:-CIPHER-ALL:+CHACHA20-POLY1305");
    let want = (CipherSuite::TLS13_CHACHA20_POLY1305_SHA256, NamedGroup::X25519);
    against_gnutls_serv(&priority, want);
    against_gnutls_cli(&priority, want, "(ECDHE-X25519)");
}
