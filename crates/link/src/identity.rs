//! Node identity: a key pair, its self-signed certificate and the fingerprint that pins it.
//!
//! The certificate only carries the public key; nothing in it but the key is checked. A peer is
//! trusted because the SHA-256 of its SubjectPublicKeyInfo equals the fingerprint in our
//! configuration, as with SSH host keys. Validity dates and names are ignored on purpose: a pinned
//! key does not expire, and replacing it means changing the pin on the peer.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer};
use rustls::server::ParsedCertificate;
use subtle::ConstantTimeEq;

use crate::LinkError;

/// The prefix of a fingerprint's text form.
const FINGERPRINT_PREFIX: &str = "sha256:";

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
        let fingerprint = Fingerprint::of_certificate(&cert)
            .expect("rcgen produces a certificate that webpki can parse");
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
        let fingerprint = Fingerprint::of_certificate(&cert)
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

/// SHA-256 of a certificate's SubjectPublicKeyInfo: what a peer is pinned by.
///
/// Text form `sha256:` followed by 64 lowercase hex digits. Ordered bytewise, which is the
/// order of the text form: the node with the smaller fingerprint dials.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// Wraps a raw SHA-256 digest.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Fingerprint(bytes)
    }

    /// The raw digest.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The node id used on the wire ([`failoverd_wire::NodeId`]): the first four bytes,
    /// big-endian.
    pub fn node_id(&self) -> u32 {
        u32::from_be_bytes([self.0[0], self.0[1], self.0[2], self.0[3]])
    }

    /// Fingerprint of the public key in a DER certificate.
    pub fn of_certificate(cert: &CertificateDer<'_>) -> Result<Self, rustls::Error> {
        let parsed = ParsedCertificate::try_from(cert)?;
        Ok(Self::of_spki(parsed.subject_public_key_info().as_ref()))
    }

    fn of_spki(spki_der: &[u8]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, spki_der);
        let mut bytes = [0; 32];
        bytes.copy_from_slice(digest.as_ref());
        Fingerprint(bytes)
    }

    /// Compares in constant time, so a probing peer learns nothing from timing.
    pub fn ct_eq(&self, other: &Fingerprint) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(FINGERPRINT_PREFIX)?;
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Fingerprint {
    type Err = FingerprintParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let hex = text
            .strip_prefix(FINGERPRINT_PREFIX)
            .ok_or(FingerprintParseError::MissingPrefix)?;
        if hex.len() != 64 {
            return Err(FingerprintParseError::Length(hex.chars().count()));
        }
        let mut bytes = [0; 32];
        for (at, c) in hex.char_indices() {
            let nibble = match c {
                '0'..='9' => c as u8 - b'0',
                'a'..='f' => c as u8 - b'a' + 10,
                _ => {
                    return Err(FingerprintParseError::NotHex {
                        position: FINGERPRINT_PREFIX.len() + at,
                        found: c,
                    });
                }
            };
            bytes[at / 2] |= nibble << if at % 2 == 0 { 4 } else { 0 };
        }
        Ok(Fingerprint(bytes))
    }
}

/// Why a text is not a fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FingerprintParseError {
    /// The text does not start with `sha256:`.
    #[error("a fingerprint starts with \"sha256:\" (e.g. the line `failoverctl keygen` prints)")]
    MissingPrefix,
    /// Not 64 digits after the prefix.
    #[error("expected 64 hex digits after \"sha256:\", found {0} characters")]
    Length(usize),
    /// A character that is not a lowercase hex digit.
    #[error("character {found:?} at position {position} is not a lowercase hex digit")]
    NotHex {
        /// Byte offset in the whole text.
        position: usize,
        /// The offending character.
        found: char,
    },
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
    fn fingerprint_parse_errors_are_precise() {
        let zeros = "0".repeat(64);
        assert_eq!(
            zeros.parse::<Fingerprint>(),
            Err(FingerprintParseError::MissingPrefix)
        );
        assert_eq!(
            "sha256:abc".parse::<Fingerprint>(),
            Err(FingerprintParseError::Length(3))
        );
        let upper = format!("sha256:{}A", "0".repeat(63));
        assert_eq!(
            upper.parse::<Fingerprint>(),
            Err(FingerprintParseError::NotHex {
                position: 70,
                found: 'A'
            })
        );
        let ok = format!("sha256:01{}", "0".repeat(62));
        let fp: Fingerprint = ok.parse().expect("valid");
        assert_eq!(fp.as_bytes()[0], 1);
        assert_eq!(fp.node_id(), 0x0100_0000);
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
