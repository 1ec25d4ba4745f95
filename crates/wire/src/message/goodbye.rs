//! The goodbye: the sender leaves on purpose.

use super::{MessageKind, emit_frame};
use crate::WireError;

const GOODBYE_LEN: usize = field::RESERVED.end;

/// Byte offsets of the goodbye body: `reason u8 | 3 zero`, each given once here.
mod field {
    use crate::Field;

    pub(crate) const REASON: usize = 0;
    pub(crate) const RESERVED: Field = 1..4;
}

/// Why a node says goodbye.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoodbyeReason {
    /// The daemon is shutting down: take over now.
    Shutdown,
    /// A reason this version does not know; treated like shutdown.
    Unknown(u8),
}

/// The sender is leaving on purpose, so the peer can take over without waiting a dead interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Goodbye {
    /// Why.
    pub reason: GoodbyeReason,
}

impl Goodbye {
    /// Parses the body of a goodbye frame.
    pub fn parse(body: &[u8]) -> Result<Self, WireError> {
        if body.len() < GOODBYE_LEN {
            return Err(WireError::Truncated);
        }
        let reason = match body[field::REASON] {
            0 => GoodbyeReason::Shutdown,
            other => GoodbyeReason::Unknown(other),
        };
        Ok(Self { reason })
    }

    /// Appends the whole frame to `buf`.
    pub fn emit(&self, buf: &mut Vec<u8>) {
        let code = match self.reason {
            GoodbyeReason::Shutdown => 0,
            GoodbyeReason::Unknown(code) => code,
        };
        emit_frame(buf, MessageKind::Goodbye, GOODBYE_LEN)[field::REASON] = code;
    }
}
