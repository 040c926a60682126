//! Jami's peer certificate rules (PROTOCOLS §6.4, §4.1, §4.5) as rustls verifiers for
//! both directions.
//!
//! jamid 20230206 (`peer_connection.cpp` `init_crt`/`verifyCertificate`) runs GnuTLS
//! verification without trust anchors and rejects only on a signature failure, then
//! requires the presented chain to be byte-identical to the chain it holds for that
//! device (announced on the DHT, looked up by short id). Validity dates are not checked
//! (GnuTLS' EXPIRED / NOT_ACTIVATED flags are ignored), so neither do we. On top of that
//! this node refuses, each with its own reason: a self-signed device, a device of another
//! account, and a device revoked by its account's CRL.

use std::sync::{Arc, Mutex};

use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;
use rsa::RsaPublicKey;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error, OtherError,
    PeerIncompatible, SignatureScheme,
};
use sha2::{Sha256, Sha384, Sha512};

use crate::crypto::hex;
use crate::identity::account::{verify_device_chain, AccountError, DeviceInfo};
use crate::identity::cert::{CertError, Certificate};
use crate::identity::chain::verify_chain;
use crate::identity::crl::RevocationList;

/// Most certificates a peer may present. Jami chains have three (device → account →
/// CA); anything much longer is not a Jami chain and only costs signature checks.
pub const MAX_PEER_CHAIN: usize = 8;

/// Why a peer's certificate chain or handshake signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("peer certificate is not a valid X.509 certificate: {0}")]
    Malformed(String),
    #[error("peer presented {0} certificates (at most {MAX_PEER_CHAIN})")]
    ChainTooLong(usize),
    #[error("peer device certificate is self-signed or comes without its account")]
    SelfSigned,
    #[error("peer chain does not verify: {0}")]
    BadSignature(String),
    #[error("peer device belongs to account {got}, expected {expected}")]
    WrongAccount { expected: String, got: String },
    #[error("peer device {0} is revoked by its account's CRL")]
    Revoked(String),
    #[error("peer chain differs from the certificate announced for device {0}")]
    UnexpectedCertificate(String),
    #[error("peer handshake signature does not verify ({0:?})")]
    BadHandshakeSignature(SignatureScheme),
}

/// The kind of a [`Refusal`], for counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RefusalKind {
    Malformed,
    ChainTooLong,
    SelfSigned,
    BadSignature,
    WrongAccount,
    Revoked,
    UnexpectedCertificate,
    BadHandshakeSignature,
}

impl Refusal {
    pub fn kind(&self) -> RefusalKind {
        match self {
            Self::Malformed(_) => RefusalKind::Malformed,
            Self::ChainTooLong(_) => RefusalKind::ChainTooLong,
            Self::SelfSigned => RefusalKind::SelfSigned,
            Self::BadSignature(_) => RefusalKind::BadSignature,
            Self::WrongAccount { .. } => RefusalKind::WrongAccount,
            Self::Revoked(_) => RefusalKind::Revoked,
            Self::UnexpectedCertificate(_) => RefusalKind::UnexpectedCertificate,
            Self::BadHandshakeSignature(_) => RefusalKind::BadHandshakeSignature,
        }
    }

    /// The refusal carried inside a rustls error, if that error is one of ours.
    pub fn from_rustls(err: &Error) -> Option<&Refusal> {
        match err {
            Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) => {
                inner.downcast_ref::<Refusal>()
            }
            _ => None,
        }
    }

    fn into_rustls(self) -> Error {
        Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(self))))
    }
}

/// What decides whether a presented chain is the peer we expect. [`ExpectedPeer`] is
/// Jami's rule; the trait lets tests put a permissive check in its place to show the
/// forgery tests catch it.
pub trait PeerCheck: std::fmt::Debug + Send + Sync {
    /// `chain` = leaf first, as presented in the TLS Certificate message.
    fn check(&self, chain: &[CertificateDer<'_>]) -> Result<DeviceInfo, Refusal>;
}

/// The device we expect on the other end: the chain we hold for it (DHT announcement /
/// certificate store, looked up by its short id) and its account's pinned CRLs.
#[derive(Debug, Clone)]
pub struct ExpectedPeer {
    chain: Vec<Certificate>,
    info: DeviceInfo,
    crls: Vec<RevocationList>,
}

impl ExpectedPeer {
    /// `chain` must itself be a valid device chain (device → account → CA).
    pub fn new(chain: Vec<Certificate>, crls: Vec<RevocationList>) -> Result<Self, AccountError> {
        let info = verify_device_chain(&chain)?;
        Ok(Self { chain, info, crls })
    }

    /// The expected device's ids.
    pub fn info(&self) -> DeviceInfo {
        self.info
    }
}

impl PeerCheck for ExpectedPeer {
    fn check(&self, presented: &[CertificateDer<'_>]) -> Result<DeviceInfo, Refusal> {
        if presented.len() > MAX_PEER_CHAIN {
            return Err(Refusal::ChainTooLong(presented.len()));
        }
        let chain = presented
            .iter()
            .map(|der| Certificate::from_der(der))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Refusal::Malformed(e.to_string()))?;
        let (device, account) = match chain.as_slice() {
            [device, account, ..] if !device.is_self_issued() => (device, account),
            _ => return Err(Refusal::SelfSigned),
        };
        verify_chain(&chain).map_err(|e| Refusal::BadSignature(e.to_string()))?;
        if account.short_id() != self.info.account_id {
            return Err(Refusal::WrongAccount {
                expected: hex(&self.info.account_id),
                got: hex(&account.short_id()),
            });
        }
        // Only CRLs the account really signed count (a CRL is pinned from the DHT).
        let revoked = self
            .crls
            .iter()
            .any(|crl| crl.verify_signed_by(account).is_ok() && crl.is_revoked(device));
        if revoked {
            return Err(Refusal::Revoked(hex(&device.short_id())));
        }
        let identical = chain.len() == self.chain.len()
            && chain.iter().zip(&self.chain).all(|(a, b)| a.der() == b.der());
        if !identical {
            return Err(Refusal::UnexpectedCertificate(hex(&self.info.device_short_id)));
        }
        Ok(self.info)
    }
}

/// Handshake signature schemes we accept and advertise: RSA-PSS for TLS 1.3
/// CertificateVerify, PKCS#1 listed for the certificates' own signatures (GnuTLS signs
/// Jami certificates sha384WithRSAEncryption). SHA-384 first, as GnuTLS' SECURE192.
const VERIFY_SCHEMES: [SignatureScheme; 6] = [
    SignatureScheme::RSA_PSS_SHA384,
    SignatureScheme::RSA_PSS_SHA512,
    SignatureScheme::RSA_PSS_SHA256,
    SignatureScheme::RSA_PKCS1_SHA384,
    SignatureScheme::RSA_PKCS1_SHA512,
    SignatureScheme::RSA_PKCS1_SHA256,
];

/// Checks a TLS 1.3 CertificateVerify signature with the leaf's RSA key (RFC 8446
/// §4.4.3: RSA signatures there are PSS only).
fn verify_tls13(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, Error> {
    let bad = || Refusal::BadHandshakeSignature(dss.scheme).into_rustls();
    let cert = Certificate::from_der(cert)
        .map_err(|e: CertError| Refusal::Malformed(e.to_string()).into_rustls())?;
    let key = RsaPublicKey::from_public_key_der(cert.spki_der()).map_err(|_| bad())?;
    let sig = rsa::pss::Signature::try_from(dss.signature()).map_err(|_| bad())?;
    let ok = match dss.scheme {
        SignatureScheme::RSA_PSS_SHA512 => {
            rsa::pss::VerifyingKey::<Sha512>::new(key).verify(message, &sig)
        }
        SignatureScheme::RSA_PSS_SHA384 => {
            rsa::pss::VerifyingKey::<Sha384>::new(key).verify(message, &sig)
        }
        SignatureScheme::RSA_PSS_SHA256 => {
            rsa::pss::VerifyingKey::<Sha256>::new(key).verify(message, &sig)
        }
        _ => return Err(PeerIncompatible::NoSignatureSchemesInCommon.into()),
    };
    ok.map(|()| HandshakeSignatureValid::assertion())
        .map_err(|_| bad())
}

/// The rustls face of a [`PeerCheck`], used as the client's server-certificate verifier
/// and the server's (mandatory) client-certificate verifier.
#[derive(Debug)]
pub(crate) struct JamiVerifier {
    check: Arc<dyn PeerCheck>,
    /// What the check said about the accepted peer (one handshake per session).
    accepted: Mutex<Option<DeviceInfo>>,
}

impl JamiVerifier {
    pub(crate) fn new(check: Arc<dyn PeerCheck>) -> Self {
        Self {
            check,
            accepted: Mutex::new(None),
        }
    }

    /// The peer the check accepted, once it has.
    pub(crate) fn accepted(&self) -> Option<DeviceInfo> {
        *self.accepted.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn chain(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Result<(), Error> {
        let mut chain = Vec::with_capacity(1 + intermediates.len());
        chain.push(end_entity.clone());
        chain.extend(intermediates.iter().cloned());
        let info = self.check.check(&chain).map_err(Refusal::into_rustls)?;
        *self.accepted.lock().unwrap_or_else(|e| e.into_inner()) = Some(info);
        Ok(())
    }
}

impl ServerCertVerifier for JamiVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        self.chain(end_entity, intermediates)
            .map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        Err(Error::General("TLS 1.2 is not offered".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        VERIFY_SCHEMES.to_vec()
    }
}

impl ClientCertVerifier for JamiVerifier {
    fn client_auth_mandatory(&self) -> bool {
        // GNUTLS_CERT_REQUIRE.
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // jamid has no trust anchors, so its CertificateRequest names no authorities.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        self.chain(end_entity, intermediates)
            .map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        Err(Error::General("TLS 1.2 is not offered".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        VERIFY_SCHEMES.to_vec()
    }
}
