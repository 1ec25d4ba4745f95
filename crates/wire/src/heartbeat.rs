//! The heartbeat datagram: a node's hello, sent over a second path (a traffic network) beside
//! the failover link, signed with the node's pinned key and bound to a fresh challenge of the
//! receiver, so that a cut failover link alone does not look like a dead peer.
//!
//! ```text
//! heartbeat = magic "FH" | version u8 | 0 | length u16 (whole datagram)
//!             | hello_len u16 | key_len u16 | sig_len u16 | 4 zero
//!             | salt u64 | stamp u64              (the sender's challenge)
//!             | echo_salt u64 | echo_stamp u64    (the receiver's latest challenge; 0 if none)
//!             | hello (a whole hello frame) | key (the sender's SubjectPublicKeyInfo, DER)
//!             | signature (over [`SIGNATURE_CONTEXT`] and every byte before it)
//! ```
//!
//! This module only frames the datagram; signing, the pin and the freshness check are the
//! transport's (`failoverd_link::heartbeat`).

use crate::message::{Frame, MessageKind};
use crate::{WireError, append_zeroed, read_u16, read_u64};

/// The datagram format's version; a receiver drops other versions.
pub const HEARTBEAT_VERSION: u8 = 1;
/// Length of the fixed part, before the hello.
pub const HEARTBEAT_FIXED_LEN: usize = field::HELLO.start;
/// Largest key or signature accepted: bounds what a forged datagram makes us read.
pub const HEARTBEAT_MAX_FIELD: usize = 512;
/// Prefix of the signed bytes: a heartbeat signature can never pass for a signature of
/// another protocol made with the same key (TLS 1.3 signs its own context string).
pub const SIGNATURE_CONTEXT: &[u8] = b"failoverd heartbeat v1\0";
const MAGIC: [u8; 2] = *b"FH";

/// Byte offsets of the datagram (see the layout above), each given once here.
mod field {
    use crate::{Field, Rest};

    pub(crate) const MAGIC: Field = 0..2;
    pub(crate) const VERSION: usize = 2;
    pub(crate) const LENGTH: Field = 4..6;
    pub(crate) const HELLO_LEN: Field = 6..8;
    pub(crate) const KEY_LEN: Field = 8..10;
    pub(crate) const SIG_LEN: Field = 10..12;
    pub(crate) const SALT: Field = 16..24;
    pub(crate) const STAMP: Field = 24..32;
    pub(crate) const ECHO_SALT: Field = 32..40;
    pub(crate) const ECHO_STAMP: Field = 40..48;
    /// The hello, the key and the signature, in that order.
    pub(crate) const HELLO: Rest = 48..;
}

/// A challenge: the sender's per-start random salt and its clock (microseconds). The receiver
/// echoes the latest one it verified; a heartbeat counts only if it echoes one of ours that is
/// recent, which a replayed or held-back datagram cannot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Challenge {
    /// Random per start of the sender, never 0.
    pub salt: u64,
    /// The sender's clock when it sent it, microseconds.
    pub stamp: u64,
}

/// A checked view of one heartbeat datagram: once built, no accessor can panic.
#[derive(Debug, Clone, Copy)]
pub struct HeartbeatView<'a> {
    bytes: &'a [u8],
    hello_len: usize,
    key_len: usize,
    sig_len: usize,
}

impl<'a> HeartbeatView<'a> {
    /// Checks magic, version, lengths, and that the hello is a hello frame.
    pub fn new_checked(bytes: &'a [u8]) -> Result<Self, WireError> {
        if bytes.len() < HEARTBEAT_FIXED_LEN {
            return Err(WireError::Truncated);
        }
        if bytes[field::MAGIC] != MAGIC {
            return Err(WireError::BadMagic);
        }
        if bytes[field::VERSION] != HEARTBEAT_VERSION {
            return Err(WireError::UnsupportedVersion(bytes[field::VERSION]));
        }
        let declared = usize::from(read_u16(bytes, field::LENGTH));
        if declared != bytes.len() {
            return Err(WireError::LengthMismatch {
                declared: declared as u32,
                actual: bytes.len(),
            });
        }
        let hello_len = usize::from(read_u16(bytes, field::HELLO_LEN));
        let key_len = usize::from(read_u16(bytes, field::KEY_LEN));
        let sig_len = usize::from(read_u16(bytes, field::SIG_LEN));
        if key_len == 0 || key_len > HEARTBEAT_MAX_FIELD {
            return Err(WireError::Malformed("heartbeat key length"));
        }
        if sig_len == 0 || sig_len > HEARTBEAT_MAX_FIELD {
            return Err(WireError::Malformed("heartbeat signature length"));
        }
        if HEARTBEAT_FIXED_LEN + hello_len + key_len + sig_len != declared {
            return Err(WireError::Malformed("heartbeat field lengths"));
        }
        let view = Self {
            bytes,
            hello_len,
            key_len,
            sig_len,
        };
        let hello = Frame::new_checked(view.hello())?;
        if hello.kind() != MessageKind::Hello {
            return Err(WireError::Malformed("heartbeat without a hello"));
        }
        Ok(view)
    }

    /// The sender's challenge, for the receiver to echo.
    pub fn challenge(&self) -> Challenge {
        Challenge {
            salt: read_u64(self.bytes, field::SALT),
            stamp: read_u64(self.bytes, field::STAMP),
        }
    }

    /// The receiver's challenge as the sender echoes it; `None` if it has none yet.
    pub fn echo(&self) -> Option<Challenge> {
        let salt = read_u64(self.bytes, field::ECHO_SALT);
        (salt != 0).then(|| Challenge {
            salt,
            stamp: read_u64(self.bytes, field::ECHO_STAMP),
        })
    }

    /// The sender's hello: one whole frame, of the failover link's format.
    pub fn hello(&self) -> &'a [u8] {
        &self.bytes[HEARTBEAT_FIXED_LEN..HEARTBEAT_FIXED_LEN + self.hello_len]
    }

    /// The sender's public key (SubjectPublicKeyInfo, DER): what its pin is the hash of.
    pub fn key(&self) -> &'a [u8] {
        let start = HEARTBEAT_FIXED_LEN + self.hello_len;
        &self.bytes[start..start + self.key_len]
    }

    /// The signature.
    pub fn signature(&self) -> &'a [u8] {
        &self.bytes[self.bytes.len() - self.sig_len..]
    }

    /// What the signature covers, after [`SIGNATURE_CONTEXT`]: every byte before it.
    pub fn signed(&self) -> &'a [u8] {
        &self.bytes[..self.bytes.len() - self.sig_len]
    }
}

/// A heartbeat to send.
#[derive(Debug, Clone, Copy)]
pub struct Heartbeat<'a> {
    /// Our challenge.
    pub challenge: Challenge,
    /// The receiver's latest challenge we verified, if any.
    pub echo: Option<Challenge>,
    /// Our hello frame.
    pub hello: &'a [u8],
    /// Our public key (SubjectPublicKeyInfo, DER).
    pub key: &'a [u8],
}

impl Heartbeat<'_> {
    /// The whole datagram: the fields, then `sign`'s signature over [`SIGNATURE_CONTEXT`] and
    /// them, which must be `sig_len` bytes long.
    ///
    /// Panics if the hello, key or signature do not fit (a caller bug: hellos are 60 bytes and
    /// keys and signatures of the supported algorithms are well under the limit).
    pub fn emit(&self, sig_len: usize, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> Vec<u8> {
        let len = HEARTBEAT_FIXED_LEN + self.hello.len() + self.key.len() + sig_len;
        assert!(
            len <= usize::from(u16::MAX)
                && self.key.len() <= HEARTBEAT_MAX_FIELD
                && sig_len <= HEARTBEAT_MAX_FIELD,
            "heartbeat fields too long"
        );
        let mut buf = Vec::with_capacity(len);
        let fixed = append_zeroed(&mut buf, HEARTBEAT_FIXED_LEN);
        fixed[field::MAGIC].copy_from_slice(&MAGIC);
        fixed[field::VERSION] = HEARTBEAT_VERSION;
        for (at, value) in [
            (field::LENGTH, len),
            (field::HELLO_LEN, self.hello.len()),
            (field::KEY_LEN, self.key.len()),
            (field::SIG_LEN, sig_len),
        ] {
            fixed[at].copy_from_slice(&(value as u16).to_be_bytes());
        }
        let echo = self.echo.unwrap_or_default();
        for (at, word) in [
            (field::SALT, self.challenge.salt),
            (field::STAMP, self.challenge.stamp),
            (field::ECHO_SALT, echo.salt),
            (field::ECHO_STAMP, echo.stamp),
        ] {
            fixed[at].copy_from_slice(&word.to_be_bytes());
        }
        buf.extend_from_slice(self.hello);
        buf.extend_from_slice(self.key);
        let mut signed = Vec::with_capacity(SIGNATURE_CONTEXT.len() + buf.len());
        signed.extend_from_slice(SIGNATURE_CONTEXT);
        signed.extend_from_slice(&buf);
        let signature = sign(&signed);
        assert_eq!(
            signature.len(),
            sig_len,
            "signature of an unexpected length"
        );
        buf.extend_from_slice(&signature);
        buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BackupType, Hello, HelloFlags, Role, SyncState};

    fn hello() -> Vec<u8> {
        let mut frame = Vec::new();
        Hello {
            pair_id: 1,
            node_id: 7,
            priority: 100,
            backup_type: BackupType::SYMMETRIC,
            state: SyncState::Independence,
            role: Role::Active,
            flags: HelloFlags(0),
            epoch: 3,
            hello_interval_ms: 50,
            dead_interval_ms: 150,
            tx_stamp: 1,
            echo_stamp: 0,
            resync_epoch: 0,
            protocol_minor: 1,
            applied: None,
        }
        .emit(&mut frame);
        frame
    }

    fn datagram(echo: Option<Challenge>) -> Vec<u8> {
        let hello = hello();
        Heartbeat {
            challenge: Challenge {
                salt: 0x0102_0304_0506_0708,
                stamp: 0x1112_1314_1516_1718,
            },
            echo,
            hello: &hello,
            key: &[0xa5; 44],
        }
        .emit(4, |signed| {
            assert!(signed.starts_with(SIGNATURE_CONTEXT));
            vec![0xee; 4]
        })
    }

    #[test]
    fn round_trip_and_golden_fixed_part() {
        let echo = Some(Challenge { salt: 9, stamp: 10 });
        let bytes = datagram(echo);
        assert_eq!(
            &bytes[..16],
            &[b'F', b'H', 1, 0, 0, 172, 0, 76, 0, 44, 0, 4, 0, 0, 0, 0]
        );
        let view = HeartbeatView::new_checked(&bytes[..]).expect("valid");
        assert_eq!(view.challenge().salt, 0x0102_0304_0506_0708);
        assert_eq!(view.challenge().stamp, 0x1112_1314_1516_1718);
        assert_eq!(view.echo(), echo);
        assert_eq!(view.hello(), &hello()[..]);
        assert_eq!(view.key(), &[0xa5; 44]);
        assert_eq!(view.signature(), &[0xee; 4]);
        assert_eq!(view.signed(), &bytes[..bytes.len() - 4]);
        assert_eq!(
            HeartbeatView::new_checked(&datagram(None)[..])
                .unwrap()
                .echo(),
            None
        );
    }

    #[test]
    fn malformed_datagrams_are_errors_not_panics() {
        let good = datagram(None);
        for cut in 0..good.len() {
            assert!(
                HeartbeatView::new_checked(&good[..cut]).is_err(),
                "cut {cut}"
            );
        }
        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(
            HeartbeatView::new_checked(&bad[..]).err(),
            Some(WireError::BadMagic)
        );
        let mut bad = good.clone();
        bad[2] = 2;
        assert_eq!(
            HeartbeatView::new_checked(&bad[..]).err(),
            Some(WireError::UnsupportedVersion(2))
        );
        let mut bad = good.clone();
        bad[9] += 1; // key one longer: the lengths no longer add up
        assert!(HeartbeatView::new_checked(&bad[..]).is_err());
        let mut bad = good;
        bad[HEARTBEAT_FIXED_LEN + 3] = 2; // the hello frame says it is a goodbye
        assert_eq!(
            HeartbeatView::new_checked(&bad[..]).err(),
            Some(WireError::Malformed("heartbeat without a hello"))
        );
    }
}
