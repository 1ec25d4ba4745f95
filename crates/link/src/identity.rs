//! Node identity: a key pair, its self-signed certificate and the fingerprint that pins it.
//!
//! The certificate only carries the public key; nothing in it but the key is checked. A peer is
//! trusted because the SHA-256 of its SubjectPublicKeyInfo equals the fingerprint in our
//! configuration, as with SSH host keys. Validity dates and names are ignored on purpose: a pinned
//! key does not expire, and replacing it means changing the pin on the peer.

use std::fmt;
use std::path::Path;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer};
use rustls::server::ParsedCertificate;

use crate::LinkError;
pub use failoverd_wire::{Fingerprint, FingerprintParseError, Pins, PinsError};

/// A node's key pair and self-signed certificate.
///
/// Made by [`Identity::generate`] (what `failoverctl keygen` calls) and stored as one PEM file
/// holding the private key and the certificate ([`Identity::to_pem`], [`Identity::load`]).
pub struct Identity {
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    fingerprint: Fingerprint,
}

impl Identity {
    /// Generates a fresh Ed25519 key pair and a self-signed certificate for it.
    ///
    /// # Panics
    ///
    /// If the operating system's random number generator fails: no key can be made then, and
    /// nothing sensible can continue.
    pub fn generate() -> Identity {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
            .expect("the OS random number generator failed while generating a key");
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "failoverd node");
        let cert = params
            .self_signed(&key)
            .expect("signing a certificate for a freshly generated Ed25519 key cannot fail");
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let cert = cert.der().clone();
        let fingerprint =
            fingerprint_of(&cert).expect("rcgen produces a certificate that webpki can parse");
        Identity {
            cert,
            key,
            fingerprint,
        }
    }

    /// The private key and the certificate, as one PEM text (key first).
    ///
    /// Write it with mode 0600: [`Identity::load`] refuses a file that others can read.
    pub fn to_pem(&self) -> String {
        let (tag, key) = match &self.key {
            PrivateKeyDer::Sec1(key) => ("EC PRIVATE KEY", key.secret_sec1_der()),
            PrivateKeyDer::Pkcs1(key) => ("RSA PRIVATE KEY", key.secret_pkcs1_der()),
            PrivateKeyDer::Pkcs8(key) => ("PRIVATE KEY", key.secret_pkcs8_der()),
            // `PrivateKeyDer` is non-exhaustive; every key we construct is one of the above.
            _ => ("PRIVATE KEY", &[][..]),
        };
        let mut out = pem::encode(&pem::Pem::new(tag, key.to_vec()));
        out.push_str(&pem::encode(&pem::Pem::new(
            "CERTIFICATE",
            self.cert.as_ref().to_vec(),
        )));
        out
    }

    /// Reads an identity written by [`Identity::to_pem`].
    ///
    /// Every error names the file: missing, unreadable, readable by group or others (the key is
    /// a secret: fix with `chmod 600`), not PEM, lacking a key or a certificate, or a key that
    /// does not belong to the certificate.
    pub fn load(path: impl AsRef<Path>) -> Result<Identity, LinkError> {
        let path = path.as_ref();
        let text = read_private_file(path)?;
        Self::from_pem(&text).map_err(|reason| LinkError::IdentityInvalid {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Parses the PEM text of [`Identity::to_pem`]; the error says what is wrong, without a path.
    pub(crate) fn from_pem(text: &str) -> Result<Identity, String> {
        let blocks = pem::parse_many(text).map_err(|err| format!("not a PEM file: {err}"))?;
        let mut key = None;
        let mut cert = None;
        for block in blocks {
            let der = block.contents().to_vec();
            match block.tag() {
                "PRIVATE KEY" => key = Some(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der))),
                "EC PRIVATE KEY" => key = Some(PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(der))),
                "CERTIFICATE" if cert.is_none() => cert = Some(CertificateDer::from(der)),
                _ => {}
            }
        }
        let key =
            key.ok_or("no PRIVATE KEY block (expected the output of `failoverctl keygen`)")?;
        let cert =
            cert.ok_or("no CERTIFICATE block (expected the output of `failoverctl keygen`)")?;
        let fingerprint = fingerprint_of(&cert)
            .map_err(|err| format!("the certificate cannot be parsed: {err}"))?;
        // Loading through the provider proves the key is usable for TLS and matches the
        // certificate, so a broken file fails here rather than at the first handshake.
        let provider = rustls::crypto::ring::default_provider();
        rustls::sign::CertifiedKey::from_der(vec![cert.clone()], key.clone_key(), &provider)
            .map_err(|err| match err {
                rustls::Error::InconsistentKeys(_) => {
                    "the private key does not belong to the certificate".to_string()
                }
                other => format!("unusable private key: {other}"),
            })?;
        Ok(Identity {
            cert,
            key,
            fingerprint,
        })
    }

    /// The fingerprint the peer pins this node by.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    pub(crate) fn cert(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    pub(crate) fn key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            cert: self.cert.clone(),
            key: self.key.clone_key(),
            fingerprint: self.fingerprint,
        }
    }
}

impl fmt::Debug for Identity {
    // Never print the private key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

#[cfg(unix)]
fn read_private_file(path: &Path) -> Result<String, LinkError> {
    use std::os::unix::fs::PermissionsExt;

    let meta = std::fs::metadata(path).map_err(|source| open_error(path, source))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(LinkError::IdentityPermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    std::fs::read_to_string(path).map_err(|source| open_error(path, source))
}

#[cfg(not(unix))]
fn read_private_file(path: &Path) -> Result<String, LinkError> {
    std::fs::read_to_string(path).map_err(|source| open_error(path, source))
}

fn open_error(path: &Path, source: std::io::Error) -> LinkError {
    if source.kind() == std::io::ErrorKind::NotFound {
        LinkError::IdentityMissing {
            path: path.to_path_buf(),
        }
    } else {
        LinkError::IdentityUnreadable {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The fingerprint of the public key in a DER certificate: what a peer is pinned by.
pub fn fingerprint_of(cert: &CertificateDer<'_>) -> Result<Fingerprint, rustls::Error> {
    let parsed = ParsedCertificate::try_from(cert)?;
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        parsed.subject_public_key_info().as_ref(),
    );
    let mut bytes = [0; 32];
    bytes.copy_from_slice(digest.as_ref());
    Ok(Fingerprint::from_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_text_round_trip() {
        let id = Identity::generate();
        let text = id.fingerprint().to_string();
        assert_eq!(text.len(), 7 + 64);
        assert_eq!(text.parse::<Fingerprint>(), Ok(id.fingerprint()));
    }

    #[test]
    fn pem_round_trip_keeps_the_fingerprint() {
        let id = Identity::generate();
        let again = Identity::from_pem(&id.to_pem()).expect("own PEM parses");
        assert_eq!(again.fingerprint(), id.fingerprint());
        assert!(again.fingerprint().ct_eq(&id.fingerprint()));
        assert!(
            !again
                .fingerprint()
                .ct_eq(&Identity::generate().fingerprint())
        );
    }

    #[test]
    fn load_reports_file_problems() {
        use std::os::unix::fs::PermissionsExt;

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.pem");
        let missing = Identity::load(&path).expect_err("missing file");
        assert!(matches!(missing, LinkError::IdentityMissing { .. }));
        assert!(missing.to_string().contains("node.pem"));

        let id = Identity::generate();
        std::fs::write(&path, id.to_pem()).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let open = Identity::load(&path).expect_err("world-readable key");
        assert!(open.to_string().contains("chmod 600"), "{open}");

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let loaded = Identity::load(&path).expect("loads");
        assert_eq!(loaded.fingerprint(), id.fingerprint());

        std::fs::write(&path, "hello").expect("write");
        let garbage = Identity::load(&path).expect_err("not PEM");
        assert!(garbage.to_string().contains("node.pem"), "{garbage}");

        // A key from one identity with the certificate of another.
        let other = Identity::generate();
        let key_pem = id.to_pem();
        let other_pem = other.to_pem();
        let mixed = format!(
            "{}{}",
            &key_pem[..key_pem.find("-----BEGIN CERTIFICATE").expect("cert")],
            &other_pem[other_pem.find("-----BEGIN CERTIFICATE").expect("cert")..]
        );
        std::fs::write(&path, mixed).expect("write");
        let err = Identity::load(&path).expect_err("mismatched key");
        assert!(err.to_string().contains("does not belong"), "{err}");
    }
}
