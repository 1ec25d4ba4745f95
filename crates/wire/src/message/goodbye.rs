//! The goodbye: the sender leaves on purpose.

use super::{MessageKind, emit_header};
use crate::WireError;

const GOODBYE_LEN: usize = 4;

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
        let reason = match body[0] {
            0 => GoodbyeReason::Shutdown,
            other => GoodbyeReason::Unknown(other),
        };
        Ok(Self { reason })
    }

    /// Appends the whole frame to `buf`.
    pub fn emit(&self, buf: &mut Vec<u8>) {
        emit_header(buf, MessageKind::Goodbye, GOODBYE_LEN);
        let code = match self.reason {
            GoodbyeReason::Shutdown => 0,
            GoodbyeReason::Unknown(code) => code,
        };
        buf.extend_from_slice(&[code, 0, 0, 0]);
    }
}
