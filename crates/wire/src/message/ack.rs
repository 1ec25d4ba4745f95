//! The cumulative acknowledgement of session batches.

use super::{MessageKind, emit_frame};
use crate::{WireError, read_u32, read_u64};

const ACK_LEN: usize = field::APPLIED.end;

/// Byte offsets of the ack body: `epoch u32 | 4 zero | received u64 | applied u64`, each given
/// once here.
mod field {
    use crate::Field;

    pub(crate) const EPOCH: Field = 0..4;
    pub(crate) const RECEIVED: Field = 8..16;
    pub(crate) const APPLIED: Field = 16..24;
}

/// Cumulative acknowledgement of one epoch's session batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// The epoch acknowledged.
    pub epoch: u32,
    /// Highest batch sequence number received in order (drives retransmission).
    pub received: u64,
    /// Highest batch sequence number applied to the table (drives "replicated").
    pub applied: u64,
}

impl Ack {
    /// Parses the body of an ack frame.
    pub fn parse(body: &[u8]) -> Result<Self, WireError> {
        if body.len() < ACK_LEN {
            return Err(WireError::Truncated);
        }
        let ack = Self {
            epoch: read_u32(body, field::EPOCH),
            received: read_u64(body, field::RECEIVED),
            applied: read_u64(body, field::APPLIED),
        };
        if ack.applied > ack.received {
            return Err(WireError::Malformed("ack applies more than it received"));
        }
        Ok(ack)
    }

    /// Appends the whole frame to `buf`.
    pub fn emit(&self, buf: &mut Vec<u8>) {
        let body = emit_frame(buf, MessageKind::Ack, ACK_LEN);
        body[field::EPOCH].copy_from_slice(&self.epoch.to_be_bytes());
        body[field::RECEIVED].copy_from_slice(&self.received.to_be_bytes());
        body[field::APPLIED].copy_from_slice(&self.applied.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;
    use crate::message::tests::appended;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn ack_round_trips(ack in any::<(u32, u64, u64)>()) {
            let ack = Ack { epoch: ack.0, received: ack.1.max(ack.2), applied: ack.1.min(ack.2) };
            let mut buf = vec![];
            ack.emit(&mut buf);
            prop_assert!(matches!(Message::parse(&buf), Ok(Message::Ack(p)) if p == ack));
        }

        /// A newer minor appends fields: whatever follows the fields this version knows is
        /// ignored.
        #[test]
        fn appended_fields_are_ignored(extra in proptest::collection::vec(any::<u8>(), 0..64), ack in any::<(u32, u64)>()) {
            let sent = Ack { epoch: ack.0, received: ack.1, applied: ack.1 };
            let mut buf = Vec::new();
            sent.emit(&mut buf);
            let longer = appended(buf, &extra);
            prop_assert!(matches!(Message::parse(&longer), Ok(Message::Ack(p)) if p == sent));
        }
    }
}
