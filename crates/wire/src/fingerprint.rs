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

/// The keys a node accepts from its peer: one, or two while the peer's key is being rotated
/// (pin the new key next to the old one, restart the peer with its new key, drop the old pin).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pins {
    first: Fingerprint,
    second: Option<Fingerprint>,
}

impl Pins {
    /// At most this many keys are pinned at once: the current one and its replacement.
    pub const MAX: usize = 2;

    /// Exactly one key.
    pub const fn one(key: Fingerprint) -> Self {
        Pins {
            first: key,
            second: None,
        }
    }

    /// One or two distinct keys, in the order given (the first is the peer's current key:
    /// entries found before the peer is heard are attributed to it).
    pub fn new(keys: &[Fingerprint]) -> Result<Self, PinsError> {
        match *keys {
            [key] => Ok(Pins::one(key)),
            [first, second] if first == second => Err(PinsError::Duplicate(first)),
            [first, second] => Ok(Pins {
                first,
                second: Some(second),
            }),
            _ => Err(PinsError::Count(keys.len())),
        }
    }

    /// The first key given: the peer's current one.
    pub const fn first(&self) -> Fingerprint {
        self.first
    }

    /// The pinned keys, first first.
    pub fn iter(&self) -> impl Iterator<Item = Fingerprint> + '_ {
        std::iter::once(self.first).chain(self.second)
    }

    /// Whether `key` is pinned; compares with every pin in constant time.
    pub fn accepts(&self, key: &Fingerprint) -> bool {
        // `|`, not `||`: no early exit, so timing does not tell which pin matched.
        key.ct_eq(&self.first) | self.second.is_some_and(|second| key.ct_eq(&second))
    }
}

impl From<Fingerprint> for Pins {
    fn from(key: Fingerprint) -> Self {
        Pins::one(key)
    }
}

impl fmt::Display for Pins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.second {
            None => write!(f, "{}", self.first),
            Some(second) => write!(f, "{} or {second}", self.first),
        }
    }
}

impl fmt::Debug for Pins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a list of keys cannot be pinned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinsError {
    /// None, or more than [`Pins::MAX`].
    #[error("pin one key, or two while rotating the peer's key; found {0}")]
    Count(usize),
    /// The same key twice.
    #[error("{0} is pinned twice")]
    Duplicate(Fingerprint),
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
    fn pins_hold_one_or_two_distinct_keys() {
        let [a, b, c] = [1u8, 2, 3].map(|n| Fingerprint::from_bytes([n; 32]));
        let one = Pins::new(&[a]).unwrap();
        assert!(one.accepts(&a) && !one.accepts(&b));
        assert_eq!(one.to_string(), a.to_string());
        let two = Pins::new(&[b, a]).unwrap();
        assert!(two.accepts(&a) && two.accepts(&b) && !two.accepts(&c));
        assert_eq!(two.first(), b);
        assert_eq!(two.iter().collect::<Vec<_>>(), [b, a]);
        assert_eq!(two.to_string(), format!("{b} or {a}"));
        assert_eq!(Pins::new(&[]), Err(PinsError::Count(0)));
        assert_eq!(Pins::new(&[a, b, c]), Err(PinsError::Count(3)));
        assert_eq!(Pins::new(&[a, a]), Err(PinsError::Duplicate(a)));
    }

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
