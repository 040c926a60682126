//! Two ends of a TLS session back to back in memory, ours and bare rustls, for the
//! throughput benches (`tls`, `connect`): the same device keys, the same suite
//! (TLS 1.3, AES-256-GCM), 16 KiB writes, every byte checked on arrival.

use std::io::{Read, Write};
use std::sync::Arc;

use node::connect::tls::{ExpectedPeer, Role, TlsEvent, TlsSession};
use node::identity::account::{AccountIdentity, DeviceIdentity};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{ClientConnection, DigitallySignedStruct, ServerConnection, SignatureScheme};

/// The sessions' clock (they never read one).
pub const NOW: u64 = 1_790_000_000_000;
/// Bytes moved per iteration.
pub const PAYLOAD: usize = 1 << 20;
/// Bytes per application write.
pub const WRITE: usize = 16 * 1024;

/// Two devices of two accounts (RSA-2048, seeded).
pub fn devices() -> (DeviceIdentity, DeviceIdentity) {
    let mut rng = ChaCha20Rng::seed_from_u64(0xbe7c);
    let a = AccountIdentity::generate(2048, NOW / 1000, &mut rng).expect("a");
    let b = AccountIdentity::generate(2048, NOW / 1000, &mut rng).expect("b");
    (
        a.new_device(2048, NOW / 1000, &mut rng).expect("device a"),
        b.new_device(2048, NOW / 1000, &mut rng).expect("device b"),
    )
}

/// [`PAYLOAD`] bytes of a pattern that a shifted or dropped byte breaks.
pub fn payload() -> Vec<u8> {
    (0..PAYLOAD).map(|i| (i * 13 % 251) as u8).collect()
}

/// Our client and server, handshake done (Jami verifier both ways).
pub struct OursPair {
    pub client: TlsSession,
    pub server: TlsSession,
}

impl OursPair {
    /// `a` serves, `b` is the client.
    pub fn new(a: &DeviceIdentity, b: &DeviceIdentity) -> OursPair {
        let expect =
            |d: &DeviceIdentity| ExpectedPeer::new(d.chain().to_vec(), vec![]).expect("chain");
        let rng = ChaCha20Rng::seed_from_u64;
        let client = TlsSession::new(NOW, Role::Client, b, expect(a), rng(1)).expect("client");
        let server = TlsSession::new(NOW, Role::Server, a, expect(b), rng(2)).expect("server");
        let mut p = OursPair { client, server };
        p.pump(&mut |_| {}, &mut |_| {});
        assert!(p.client.is_established() && p.server.is_established());
        p
    }

    /// Moves TLS bytes both ways until quiet, handing each side's plaintext to its sink.
    pub fn pump(&mut self, to_client: &mut dyn FnMut(Vec<u8>), to_server: &mut dyn FnMut(Vec<u8>)) {
        let (c, s) = (&mut self.client, &mut self.server);
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
                    to_server(d);
                    moved = true;
                }
            }
            while let Some(e) = c.poll_event() {
                if let TlsEvent::Data(d) = e {
                    to_client(d);
                    moved = true;
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// `data` client → server in [`WRITE`] chunks; panics unless it arrives intact.
    pub fn send(&mut self, data: &[u8]) {
        let mut got = Vec::with_capacity(data.len());
        for chunk in data.chunks(WRITE) {
            let mut off = 0;
            while off < chunk.len() {
                off += self.client.send(NOW, &chunk[off..]).expect("send");
                self.pump(&mut |_| {}, &mut |d| got.extend(d));
            }
        }
        self.pump(&mut |_| {}, &mut |d| got.extend(d));
        assert!(got == data, "ours: the bytes arrived changed");
    }
}

/// Two plain rustls connections: ring's provider restricted to the same suite, no
/// certificate checks (the baseline of the TLS wrapper's cost).
pub struct BarePair {
    pub client: ClientConnection,
    pub server: ServerConnection,
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

impl BarePair {
    /// `a`'s chain and key serve.
    #[allow(deprecated)] // ring's default provider lacks post-quantum groups; irrelevant here
    pub fn new(a: &DeviceIdentity) -> BarePair {
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
        let client = ClientConnection::new(
            Arc::new(client),
            ServerName::try_from("jami").expect("name"),
        )
        .expect("client");
        let server = ServerConnection::new(Arc::new(server)).expect("server");
        let mut p = BarePair { client, server };
        p.pump(&mut Vec::new());
        assert!(!p.client.is_handshaking() && !p.server.is_handshaking());
        p
    }

    fn pump(&mut self, got: &mut Vec<u8>) {
        let (c, s) = (&mut self.client, &mut self.server);
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

    /// `data` client → server in [`WRITE`] chunks; panics unless it arrives intact.
    pub fn send(&mut self, data: &[u8]) {
        let mut got = Vec::with_capacity(data.len());
        for chunk in data.chunks(WRITE) {
            let mut off = 0;
            while off < chunk.len() {
                off += self.client.writer().write(&chunk[off..]).expect("send");
                self.pump(&mut got);
            }
        }
        self.pump(&mut got);
        assert!(got == data, "bare rustls: the bytes arrived changed");
    }
}
