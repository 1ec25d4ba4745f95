//! The session digest, for anti-entropy.

use super::{MessageKind, emit_frame};
use crate::{WireError, read_u16, read_u32, read_u64};

/// Buckets of a session digest: sessions are spread over them by the top bits of their
/// [`SessionRecord::digest_hash`](crate::SessionRecord::digest_hash), so a difference points at
/// a few buckets and a bucket that keeps changing (sessions still on their way) is told apart
/// from one that is quietly wrong.
pub const DIGEST_BUCKETS: usize = 256;

const DIGEST_HEADER_LEN: usize = field::BUCKETS.start;
/// The whole body: the header, then every bucket.
const DIGEST_LEN: usize = field::bucket(DIGEST_BUCKETS - 1).end;

/// Byte offsets of the digest body (see [`DigestView`]), each given once here.
mod field {
    use crate::{Field, Rest};

    pub(crate) const ROUND: Field = 0..4;
    pub(crate) const BUCKET_COUNT: Field = 4..6;
    pub(crate) const BUCKETS: Rest = 8..;

    /// Bucket `i`, within [`BUCKETS`].
    pub(crate) const fn bucket(i: usize) -> Field {
        let at = BUCKETS.start + 8 * i;
        at..at + 8
    }
}

/// A digest of the sessions the sender owns: per bucket, the wrapping sum of the sessions'
/// digest hashes. The receiver compares it with the same digest of its copies (anti-entropy).
///
/// Body: `round: u32`, `buckets: u16`, 2 reserved bytes, then `buckets` times `u64`.
#[derive(Debug, Clone, Copy)]
pub struct DigestView<'a> {
    body: &'a [u8],
}

impl<'a> DigestView<'a> {
    /// Checks a digest body: [`DIGEST_BUCKETS`] buckets, nothing missing.
    pub fn new_checked(body: &'a [u8]) -> Result<Self, WireError> {
        if body.len() < DIGEST_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if usize::from(read_u16(body, field::BUCKET_COUNT)) != DIGEST_BUCKETS {
            return Err(WireError::Malformed("digest bucket count"));
        }
        if body.len() < DIGEST_LEN {
            return Err(WireError::Truncated);
        }
        Ok(Self { body })
    }

    /// The sender's digest round, counting up.
    pub fn round(&self) -> u32 {
        read_u32(self.body, field::ROUND)
    }

    /// The buckets.
    pub fn buckets(&self) -> [u64; DIGEST_BUCKETS] {
        let mut buckets = [0; DIGEST_BUCKETS];
        for (i, bucket) in buckets.iter_mut().enumerate() {
            *bucket = read_u64(self.body, field::bucket(i));
        }
        buckets
    }

    /// Appends a digest frame to `buf`.
    pub fn emit(round: u32, buckets: &[u64; DIGEST_BUCKETS], buf: &mut Vec<u8>) {
        let body = emit_frame(buf, MessageKind::Digest, DIGEST_LEN);
        body[field::ROUND].copy_from_slice(&round.to_be_bytes());
        body[field::BUCKET_COUNT].copy_from_slice(&(DIGEST_BUCKETS as u16).to_be_bytes());
        for (i, bucket) in buckets.iter().enumerate() {
            body[field::bucket(i)].copy_from_slice(&bucket.to_be_bytes());
        }
    }
}

/// The digest of `records`: each one's [`digest_hash`](crate::SessionRecord::digest_hash) added
/// into its bucket.
pub fn digest<'r>(
    records: impl IntoIterator<Item = &'r crate::SessionRecord>,
) -> [u64; DIGEST_BUCKETS] {
    let mut buckets = [0u64; DIGEST_BUCKETS];
    for record in records {
        let hash = record.digest_hash();
        let bucket = (hash >> 56) as usize % DIGEST_BUCKETS;
        buckets[bucket] = buckets[bucket].wrapping_add(hash);
    }
    buckets
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{HEADER_LEN, Message};
    use crate::session::tests::arb_record;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn digests_round_trip_and_ignore_what_tables_change_on_their_own(
            records in proptest::collection::vec(arb_record(), 1..40),
            round in any::<u32>(),
        ) {
            let sums = digest(&records);
            let mut buf = Vec::new();
            DigestView::emit(round, &sums, &mut buf);
            let Message::Digest(view) = Message::parse(&buf).unwrap() else {
                panic!("not a digest")
            };
            prop_assert_eq!((view.round(), view.buckets()), (round, sums));
            prop_assert!(DigestView::new_checked(&buf[HEADER_LEN..buf.len() - 1]).is_err());
            let mut aged = records.clone();
            for r in &mut aged {
                r.timeout_secs /= 2;
                r.status |= 1 << 3;
                r.tcp.flags_orig |= 0x08;
            }
            prop_assert_eq!(digest(&aged), sums, "timeouts, status and TCP flags are not compared");
            aged[0].mark = aged[0].mark.wrapping_add(1);
            prop_assert_ne!(digest(&aged), sums, "a different mark is a difference");
        }
    }
}
