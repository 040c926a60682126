//! TLS channel throughput after the handshake, beside a bare rustls stream measured in the
//! same run:
//!
//! - `tls-throughput/ours`: node::connect::tls sessions (seeded provider, Jami verifier,
//!   RSA-PSS device keys, AES-256-GCM) back to back in memory, 1 MiB client → server per
//!   iteration in 16 KiB writes, every byte checked on arrival.
//! - `tls-throughput/baseline-rustls`: two plain rustls connections (ring's default
//!   provider restricted to the same suite, no certificate checks) moving the same bytes
//!   the same way.
//!
//! The difference is the cost of our sans-IO wrapper (RNG lending, event queue, copies).

use std::io::{Read, Write};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use node::connect::tls::{ExpectedPeer, Role, TlsEvent, TlsSession};
use node::identity::account::{AccountIdentity, DeviceIdentity};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{ClientConnection, DigitallySignedStruct, ServerConnection, SignatureScheme};

const NOW: u64 = 1_790_000_000_000;
const PAYLOAD: usize = 1 << 20;
const WRITE: usize = 16 * 1024;

fn devices() -> (DeviceIdentity, DeviceIdentity) {
    let mut rng = ChaCha20Rng::seed_from_u64(0xbe7c);
    let a = AccountIdentity::generate(2048, NOW / 1000, &mut rng).expect("a");
    let b = AccountIdentity::generate(2048, NOW / 1000, &mut rng).expect("b");
    (
        a.new_device(2048, NOW / 1000, &mut rng).expect("device a"),
        b.new_device(2048, NOW / 1000, &mut rng).expect("device b"),
    )
}

fn payload() -> Vec<u8> {
    (0..PAYLOAD).map(|i| (i * 13 % 251) as u8).collect()
}

/// Moves stream bytes both ways until quiet, collecting the server's plaintext.
fn pump_ours(c: &mut TlsSession, s: &mut TlsSession, got: &mut Vec<u8>) {
    loop {
        let mut moved = false;
        while let Some(b) = c.poll_stream_write() {
            s.handle_stream_bytes(NOW, &b);
            moved = true;
        }
        while let Some(b) = s.poll_stream_write() {
            c.handle_stream_bytes(NOW, &b);
            moved = true;
        }
        while let Some(e) = s.poll_event() {
            if let TlsEvent::Data(d) = e {
                got.extend(d);
            }
        }
        while c.poll_event().is_some() {}
        if !moved {
            return;
        }
    }
}

fn ours(a: &DeviceIdentity, b: &DeviceIdentity) -> (TlsSession, TlsSession) {
    let expect = |d: &DeviceIdentity| ExpectedPeer::new(d.chain().to_vec(), vec![]).expect("chain");
    let rng = ChaCha20Rng::seed_from_u64;
    let mut c = TlsSession::new(NOW, Role::Client, b, expect(a), rng(1)).expect("client");
    let mut s = TlsSession::new(NOW, Role::Server, a, expect(b), rng(2)).expect("server");
    pump_ours(&mut c, &mut s, &mut Vec::new());
    assert!(c.is_established() && s.is_established());
    (c, s)
}

fn send_ours(c: &mut TlsSession, s: &mut TlsSession, data: &[u8]) {
    let mut got = Vec::with_capacity(data.len());
    for chunk in data.chunks(WRITE) {
        let mut off = 0;
        while off < chunk.len() {
            off += c.send(NOW, &chunk[off..]).expect("send");
            pump_ours(c, s, &mut got);
        }
    }
    pump_ours(c, s, &mut got);
    assert!(got == data);
}

#[derive(Debug)]
struct NoChecks;

impl ServerCertVerifier for NoChecks {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![
            SignatureScheme::RSA_PSS_SHA384,
            SignatureScheme::RSA_PSS_SHA256,
        ]
    }
}

#[allow(deprecated)] // ring's default provider lacks post-quantum groups; irrelevant here
fn bare(a: &DeviceIdentity) -> (ClientConnection, ServerConnection) {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites = vec![rustls::crypto::ring::cipher_suite::TLS13_AES_256_GCM_SHA384];
    let provider = Arc::new(provider);
    let chain: Vec<CertificateDer<'static>> = a
        .chain()
        .iter()
        .map(|c| CertificateDer::from(c.der().to_vec()))
        .collect();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        a.key().to_pkcs8_der().expect("pkcs8"),
    ));
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server cert");
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoChecks))
        .with_no_client_auth();
    let mut c = ClientConnection::new(
        Arc::new(client),
        ServerName::try_from("jami").expect("name"),
    )
    .expect("client");
    let mut s = ServerConnection::new(Arc::new(server)).expect("server");
    pump_bare(&mut c, &mut s, &mut Vec::new());
    assert!(!c.is_handshaking() && !s.is_handshaking());
    (c, s)
}

fn pump_bare(c: &mut ClientConnection, s: &mut ServerConnection, got: &mut Vec<u8>) {
    let mut buf = Vec::new();
    loop {
        let mut moved = false;
        while c.wants_write() {
            buf.clear();
            c.write_tls(&mut buf).expect("write");
            let mut rd = &buf[..];
            while !rd.is_empty() {
                s.read_tls(&mut rd).expect("read");
                s.process_new_packets().expect("server");
                let _ = s.reader().read_to_end(got);
            }
            moved = true;
        }
        while s.wants_write() {
            buf.clear();
            s.write_tls(&mut buf).expect("write");
            let mut rd = &buf[..];
            while !rd.is_empty() {
                c.read_tls(&mut rd).expect("read");
                c.process_new_packets().expect("client");
            }
            moved = true;
        }
        if !moved {
            return;
        }
    }
}

fn send_bare(c: &mut ClientConnection, s: &mut ServerConnection, data: &[u8]) {
    let mut got = Vec::with_capacity(data.len());
    for chunk in data.chunks(WRITE) {
        let mut off = 0;
        while off < chunk.len() {
            off += c.writer().write(&chunk[off..]).expect("send");
            pump_bare(c, s, &mut got);
        }
    }
    pump_bare(c, s, &mut got);
    assert!(got == data);
}

fn throughput(cr: &mut Criterion) {
    let (a, b) = devices();
    let data = payload();
    let mut group = cr.benchmark_group("tls-throughput");
    group.throughput(Throughput::Bytes(PAYLOAD as u64));
    group.sample_size(20);
    let (mut c, mut s) = ours(&a, &b);
    group.bench_function("ours", |bench| {
        bench.iter(|| send_ours(&mut c, &mut s, &data))
    });
    let (mut c, mut s) = bare(&a);
    group.bench_function("baseline-rustls", |bench| {
        bench.iter(|| send_bare(&mut c, &mut s, &data))
    });
    group.finish();
}

criterion_group!(benches, throughput);
criterion_main!(benches);
