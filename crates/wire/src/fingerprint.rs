//! Key fingerprints: how a node is pinned by its peer and where its node id comes from. The
//! hashing of a certificate is the link's (`failoverd_link::fingerprint_of`); the type lives here
//! so that the configuration and the CLI can use it without the TLS stack.

use std::fmt;
use std::str::FromStr;

/// The prefix of a fingerprint's text form.
const FINGERPRINT_PREFIX: &str = "sha256:";

/// SHA-256 of a certificate's SubjectPublicKeyInfo: what a peer is pinned by.
///
/// Text form `sha256:` followed by 64 hex digits (printed in lowercase, parsed in either case). Ordered bytewise, which is the
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

    /// The node id used on the wire ([`crate::NodeId`]): the first four bytes,
    /// big-endian.
    pub fn node_id(&self) -> u32 {
        u32::from_be_bytes([self.0[0], self.0[1], self.0[2], self.0[3]])
    }

    /// Compares in constant time, so a probing peer learns nothing from timing.
    pub fn ct_eq(&self, other: &Fingerprint) -> bool {
        subtle::ConstantTimeEq::ct_eq(&self.0[..], &other.0[..]).into()
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
            // Either case: a fingerprint pasted from another tool should work.
            let nibble = c.to_digit(16).ok_or(FingerprintParseError::NotHex {
                position: FINGERPRINT_PREFIX.len() + at,
                found: c,
            })? as u8;
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
    /// A character that is not a hex digit.
    #[error("character {found:?} at position {position} is not a hex digit")]
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
    fn text_round_trips_in_either_case_and_errors_are_precise() {
        let text = format!("sha256:{}", "00112233445566778899aabbccddeeff".repeat(2));
        let key: Fingerprint = text.parse().unwrap();
        assert_eq!(key.as_bytes()[1], 0x11);
        assert_eq!(key.to_string(), text);
        assert_eq!(
            text.to_uppercase().replace("SHA256", "sha256").parse(),
            Ok(key)
        );
        assert_eq!(key.node_id(), 0x0011_2233);
        assert!(key.ct_eq(&key) && !key.ct_eq(&Fingerprint::from_bytes([0; 32])));
        assert_eq!(
            "md5:00".parse::<Fingerprint>(),
            Err(FingerprintParseError::MissingPrefix)
        );
        assert_eq!(
            "sha256:00".parse::<Fingerprint>(),
            Err(FingerprintParseError::Length(2))
        );
        assert_eq!(
            text.replace("ee", "eg").parse::<Fingerprint>(),
            Err(FingerprintParseError::NotHex {
                position: 36,
                found: 'g'
            })
        );
    }
}
