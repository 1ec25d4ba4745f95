//! Pinned mutual TLS 1.3: both sides present a self-signed certificate, and each accepts exactly
//! the keys its configuration pins (one, or two while the peer's key is rotated).
//!
//! The verifiers replace the web PKI (chains, names, dates) by one constant-time comparison of
//! the SubjectPublicKeyInfo hash; the handshake signatures are still checked with the ring
//! provider's algorithms, which proves the peer holds the private key. Resumption is off so every
//! connection runs the full check.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, OtherError,
    ServerConfig, SignatureScheme,
};

use crate::{Fingerprint, Identity, LinkError, Pins};

/// The peer presented a key other than the pinned ones.
///
/// Carried inside the rustls error so the link can name the keys and the peer's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinMismatch {
    /// What the peer presented.
    pub presented: Fingerprint,
    /// What our configuration pins.
    pub expected: Pins,
}

impl fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "presented key {} but {} is pinned",
            self.presented, self.expected
        )
    }
}

impl std::error::Error for PinMismatch {}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The TLS 1.3 client configuration of a node that dials a peer with one of the keys `pins`.
///
/// Public for tools and benchmarks (e.g. to put the same pinning on another transport); the link
/// itself is [`crate::spawn`].
pub fn client_config(
    identity: &Identity,
    pins: impl Into<Pins>,
) -> Result<ClientConfig, LinkError> {
    let provider = provider();
    let verifier = Arc::new(PinnedVerifier::new(pins.into(), &provider));
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(vec![identity.cert().clone()], identity.key())?;
    config.resumption = rustls::client::Resumption::disabled();
    Ok(config)
}

/// The TLS 1.3 server configuration of a node that accepts only the keys `pins`.
///
/// Public for tools and benchmarks, like [`client_config`].
pub fn server_config(
    identity: &Identity,
    pins: impl Into<Pins>,
) -> Result<ServerConfig, LinkError> {
    let provider = provider();
    let verifier = Arc::new(PinnedVerifier::new(pins.into(), &provider));
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![identity.cert().clone()], identity.key())?;
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}

/// Accepts exactly the pinned SubjectPublicKeyInfos; serves as both server and client verifier.
#[derive(Debug)]
struct PinnedVerifier {
    pins: Pins,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedVerifier {
    fn new(pins: Pins, provider: &CryptoProvider) -> Self {
        PinnedVerifier {
            pins,
            algorithms: provider.signature_verification_algorithms,
        }
    }

    fn check(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let presented = crate::identity::fingerprint_of(end_entity)?;
        if self.pins.accepts(&presented) {
            Ok(())
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(PinMismatch {
                    presented,
                    expected: self.pins,
                })),
            )))
        }
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Unreachable: the configurations enable TLS 1.3 only.
        Err(rustls::Error::General("TLS 1.2 is disabled".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

impl ClientCertVerifier for PinnedVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ServerCertVerifier::verify_tls12_signature(self, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The fingerprint of the key the peer of an established connection presented (one of the
/// pins: the verifier checked it).
pub(crate) fn peer_key(connection: &rustls::CommonState) -> Option<Fingerprint> {
    let cert = connection.peer_certificates()?.first()?;
    crate::identity::fingerprint_of(cert).ok()
}

/// Finds a [`PinMismatch`] inside an I/O error from a TLS handshake.
pub(crate) fn pin_mismatch(err: &std::io::Error) -> Option<PinMismatch> {
    let tls = err.get_ref()?.downcast_ref::<rustls::Error>()?;
    match tls {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) => {
            inner.downcast_ref::<PinMismatch>().copied()
        }
        _ => None,
    }
}

/// Whether the peer aborted the handshake because it does not accept our key.
pub(crate) fn peer_refused_our_key(err: &std::io::Error) -> bool {
    matches!(
        err.get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>()),
        Some(rustls::Error::AlertReceived(
            rustls::AlertDescription::BadCertificate
                | rustls::AlertDescription::UnknownCA
                | rustls::AlertDescription::CertificateUnknown
                | rustls::AlertDescription::AccessDenied
        ))
    )
}
