//! The session batch: sections of session records, and the writer that builds one.

use super::{HEADER_LEN, MessageKind, emit_frame};
use crate::session::{KEY_LEN, NodeId, RECORD_LEN, SessionKey, SessionOp, SessionRecord};
use crate::{WireError, read_u16, read_u32, read_u64};
use field::{remove, section};

/// Length of the session-batch header that follows the frame header.
pub const BATCH_HEADER_LEN: usize = field::SECTIONS.start;
const SECTION_HEADER_LEN: usize = section::RECORDS.start;
/// Length of a remove record.
const REMOVE_LEN: usize = remove::OWNER.end;

/// Byte offsets of the batch body (see the layout in the crate documentation), each given once
/// here. Reserved bytes (zero) fill the gaps.
mod field {
    use crate::{Field, Rest};

    pub(crate) const EPOCH: Field = 0..4;
    pub(crate) const FLAGS: usize = 4;
    pub(crate) const SEQ: Field = 8..16;
    pub(crate) const SECTION_COUNT: Field = 16..18;
    pub(crate) const SECTIONS: Rest = 20..;

    /// One section, within [`SECTIONS`]: its header, then `count` records of `record_len`
    /// bytes each.
    pub(crate) mod section {
        use crate::{Field, Rest};

        pub(crate) const KIND: usize = 0;
        pub(crate) const RECORD_LEN: Field = 2..4;
        pub(crate) const COUNT: Field = 4..8;
        pub(crate) const RECORDS: Rest = 8..;
    }

    /// A remove record: the key, then the owner whose copy the delete speaks for.
    pub(crate) mod remove {
        use crate::Field;
        use crate::session::KEY_LEN;

        pub(crate) const KEY: Field = 0..KEY_LEN;
        pub(crate) const OWNER: Field = KEY_LEN..KEY_LEN + 4;
    }
}

/// Flag bits of a session batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BatchFlags(pub u8);

impl BatchFlags {
    /// First batch of a bulk sync: the receiver starts a new epoch.
    pub const BULK_BEGIN: u8 = 0x01;
    /// Last batch of a bulk sync: the receiver sweeps what the bulk did not mention.
    pub const BULK_END: u8 = 0x02;
    /// With `BULK_BEGIN` (since 1.2): the bulk continues one a link loss interrupted and
    /// leaves out what the receiver acknowledged of it (sessions changed since are included);
    /// its sweep keeps what the interrupted bulk mentioned. A receiver that no longer holds
    /// that asks for a full resync.
    pub const RESUMED: u8 = 0x04;

    /// True if `bit` is set.
    pub fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }
}

/// Kind of a batch section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SectionKind {
    /// Create or replace sessions ([`SessionRecord`]s).
    Upsert,
    /// Delete the sender's sessions ([`SessionKey`] and owner).
    Remove,
    /// Delete sessions whoever owns them ([`SessionKey`]s).
    RemoveAny,
    /// A kind this version does not know: skipped, and counted by the receiver.
    Unknown(u8),
}

impl SectionKind {
    fn code(self) -> u8 {
        match self {
            Self::Upsert => 1,
            Self::Remove => 2,
            Self::RemoveAny => 3,
            Self::Unknown(code) => code,
        }
    }

    fn from_code(code: u8) -> Self {
        match code {
            1 => Self::Upsert,
            2 => Self::Remove,
            3 => Self::RemoveAny,
            other => Self::Unknown(other),
        }
    }

    fn min_record_len(self) -> usize {
        match self {
            Self::Upsert => RECORD_LEN,
            Self::Remove => REMOVE_LEN,
            Self::RemoveAny => KEY_LEN,
            Self::Unknown(_) => 0,
        }
    }
}

/// A checked view of a session batch body: header and section layout are verified once, so
/// iterating sections cannot go out of bounds.
#[derive(Debug, Clone, Copy)]
pub struct BatchView<'a> {
    body: &'a [u8],
}

impl<'a> BatchView<'a> {
    /// Checks the batch header and that the sections exactly fill the body.
    pub fn new_checked(body: &'a [u8]) -> Result<Self, WireError> {
        if body.len() < BATCH_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let mut rest = &body[field::SECTIONS];
        for _ in 0..read_u16(body, field::SECTION_COUNT) {
            if rest.len() < SECTION_HEADER_LEN {
                return Err(WireError::Truncated);
            }
            let kind = SectionKind::from_code(rest[section::KIND]);
            let record_len = usize::from(read_u16(rest, section::RECORD_LEN));
            let count = read_u32(rest, section::COUNT) as usize;
            if record_len < kind.min_record_len() || (record_len == 0 && count != 0) {
                return Err(WireError::Malformed("section record length"));
            }
            let len = record_len.checked_mul(count).ok_or(WireError::Truncated)?;
            rest = rest[section::RECORDS]
                .get(len..)
                .ok_or(WireError::Truncated)?;
        }
        if !rest.is_empty() {
            return Err(WireError::Malformed("trailing bytes after sections"));
        }
        Ok(Self { body })
    }

    /// Sender's epoch.
    pub fn epoch(&self) -> u32 {
        read_u32(self.body, field::EPOCH)
    }

    /// Batch flags.
    pub fn flags(&self) -> BatchFlags {
        BatchFlags(self.body[field::FLAGS])
    }

    /// Sequence number within the epoch (the first batch of an epoch is 1).
    pub fn seq(&self) -> u64 {
        read_u64(self.body, field::SEQ)
    }

    /// Bytes of the body: what the peer made this node receive.
    pub fn body_len(&self) -> usize {
        self.body.len()
    }

    /// The sections, in order.
    pub fn sections(&self) -> impl Iterator<Item = Section<'a>> + 'a {
        let mut rest = &self.body[field::SECTIONS];
        (0..read_u16(self.body, field::SECTION_COUNT)).map(move |_| {
            let kind = SectionKind::from_code(rest[section::KIND]);
            let record_len = usize::from(read_u16(rest, section::RECORD_LEN));
            let count = read_u32(rest, section::COUNT) as usize;
            let (records, next) = rest[section::RECORDS].split_at(record_len * count);
            rest = next;
            Section {
                kind,
                record_len,
                count,
                records,
            }
        })
    }
}

/// One section of a batch: `count` records of `record_len` bytes each.
#[derive(Debug, Clone, Copy)]
pub struct Section<'a> {
    /// What the records are.
    pub kind: SectionKind,
    /// Bytes per record (may exceed what this version reads).
    pub record_len: usize,
    /// Number of records.
    pub count: usize,
    records: &'a [u8],
}

impl<'a> Section<'a> {
    /// The raw records, each `record_len` bytes.
    pub fn raw_records(self) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.records.chunks_exact(self.record_len.max(1))
    }

    /// The ops of the section, decoded; empty for a kind this version does not know.
    pub fn ops(self) -> impl Iterator<Item = Result<SessionOp, WireError>> + 'a {
        let kind = self.kind;
        self.raw_records()
            .filter(move |_| !matches!(kind, SectionKind::Unknown(_)))
            .map(move |raw| match kind {
                SectionKind::Upsert => SessionRecord::parse(raw).map(SessionOp::Upsert),
                SectionKind::Remove => {
                    let (key, _) = SessionKey::parse(&raw[remove::KEY])?;
                    Ok(SessionOp::Remove {
                        key,
                        owner: NodeId(read_u32(raw, remove::OWNER)),
                    })
                }
                SectionKind::RemoveAny | SectionKind::Unknown(_) => {
                    SessionKey::parse(raw).map(|(key, _)| SessionOp::RemoveAny { key })
                }
            })
    }
}

/// Builds one session-batch frame: one section per kind of op.
#[derive(Debug)]
pub struct BatchWriter {
    sections: [SectionBuf; 3],
}

#[derive(Debug)]
struct SectionBuf {
    kind: SectionKind,
    record_len: usize,
    count: u32,
    bytes: Vec<u8>,
}

impl SectionBuf {
    fn new(kind: SectionKind, record_len: usize) -> Self {
        Self {
            kind,
            record_len,
            count: 0,
            bytes: Vec::new(),
        }
    }

    /// Room for one more record, zeroed.
    fn next_record(&mut self) -> &mut [u8] {
        let at = self.bytes.len();
        self.bytes.resize(at + self.record_len, 0);
        self.count += 1;
        &mut self.bytes[at..]
    }
}

impl Default for BatchWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchWriter {
    /// An empty batch.
    pub fn new() -> Self {
        Self {
            sections: [
                SectionBuf::new(SectionKind::Upsert, RECORD_LEN),
                SectionBuf::new(SectionKind::Remove, REMOVE_LEN),
                SectionBuf::new(SectionKind::RemoveAny, KEY_LEN),
            ],
        }
    }

    /// Number of records added.
    pub fn len(&self) -> usize {
        self.sections.iter().map(|s| s.count as usize).sum()
    }

    /// True if no record was added.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Length of the frame [`BatchWriter::finish`] would produce, at most.
    pub fn frame_len(&self) -> usize {
        HEADER_LEN
            + BATCH_HEADER_LEN
            + self
                .sections
                .iter()
                .map(|s| SECTION_HEADER_LEN + s.bytes.len())
                .sum::<usize>()
    }

    /// Adds one op.
    pub fn push(&mut self, op: &SessionOp) {
        match op {
            SessionOp::Upsert(record) => self.push_upsert(record),
            SessionOp::Remove { key, owner } => {
                let record = self.sections[1].next_record();
                key.emit(&mut record[remove::KEY]);
                record[remove::OWNER].copy_from_slice(&owner.0.to_be_bytes());
            }
            SessionOp::RemoveAny { key } => key.emit(self.sections[2].next_record()),
        }
    }

    /// Adds an upsert of `record` (what [`push`](Self::push) does with
    /// `SessionOp::Upsert`, without owning the record).
    pub fn push_upsert(&mut self, record: &SessionRecord) {
        record.emit(self.sections[0].next_record());
    }

    /// Appends the whole frame to `buf` and empties the writer for reuse.
    pub fn finish(&mut self, epoch: u32, seq: u64, flags: BatchFlags, buf: &mut Vec<u8>) {
        let present = || self.sections.iter().filter(|s| s.count > 0);
        let body_len = BATCH_HEADER_LEN
            + present()
                .map(|s| SECTION_HEADER_LEN + s.bytes.len())
                .sum::<usize>();
        let body = emit_frame(buf, MessageKind::SessionBatch, body_len);
        body[field::EPOCH].copy_from_slice(&epoch.to_be_bytes());
        body[field::FLAGS] = flags.0;
        body[field::SEQ].copy_from_slice(&seq.to_be_bytes());
        body[field::SECTION_COUNT].copy_from_slice(&(present().count() as u16).to_be_bytes());
        let mut rest = &mut body[field::SECTIONS];
        for buffered in present() {
            let (raw, next) = rest.split_at_mut(SECTION_HEADER_LEN + buffered.bytes.len());
            raw[section::KIND] = buffered.kind.code();
            raw[section::RECORD_LEN].copy_from_slice(&(buffered.record_len as u16).to_be_bytes());
            raw[section::COUNT].copy_from_slice(&buffered.count.to_be_bytes());
            raw[section::RECORDS].copy_from_slice(&buffered.bytes);
            rest = next;
        }
        for section in &mut self.sections {
            section.bytes.clear();
            section.count = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;
    use crate::session::tests::arb_record;
    use proptest::prelude::*;

    #[test]
    fn unknown_kinds_and_sections_survive_parsing() {
        let frame = [b'F', b'O', 1, 99, 0, 0, 0, 8];
        assert!(matches!(Message::parse(&frame), Ok(Message::Unknown(99))));

        let mut buf = Vec::new();
        let body = emit_frame(
            &mut buf,
            MessageKind::SessionBatch,
            BATCH_HEADER_LEN + SECTION_HEADER_LEN + 6,
        );
        let (header, sections) = body.split_at_mut(BATCH_HEADER_LEN);
        header.copy_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0]);
        sections.copy_from_slice(&[42, 0, 0, 3, 0, 0, 0, 2, 1, 2, 3, 4, 5, 6]);
        let Message::SessionBatch(batch) = Message::parse(&buf).unwrap() else {
            panic!()
        };
        let sections: Vec<_> = batch.sections().collect();
        assert_eq!(sections.len(), 1);
        assert_eq!(sections[0].kind, SectionKind::Unknown(42));
        assert_eq!(sections[0].raw_records().count(), 2);
    }

    #[test]
    fn section_shorter_than_its_records_is_rejected() {
        let mut writer = BatchWriter::new();
        let key = SessionKey {
            zone: 0,
            l4proto: 17,
            orig: crate::Tuple {
                src: "10.0.0.1".parse().unwrap(),
                dst: "10.0.0.2".parse().unwrap(),
                src_port: 1,
                dst_port: 2,
            },
        };
        writer.push(&SessionOp::Remove {
            key,
            owner: NodeId(3),
        });
        let mut buf = Vec::new();
        writer.finish(1, 1, BatchFlags::default(), &mut buf);
        // Claim a 4-byte record length for a remove section.
        buf[HEADER_LEN + BATCH_HEADER_LEN + 2..HEADER_LEN + BATCH_HEADER_LEN + 4]
            .copy_from_slice(&4u16.to_be_bytes());
        assert!(Message::parse(&buf).is_err());
    }

    proptest! {
        #[test]
        fn batch_round_trips(
            records in proptest::collection::vec((arb_record(), 0..3u8), 0..40),
            epoch: u32, seq: u64, flags: u8,
        ) {
            let ops: Vec<_> = records.into_iter().map(|(record, kind)| match kind {
                0 => SessionOp::Upsert(record),
                1 => SessionOp::Remove { key: record.key, owner: record.owner },
                _ => SessionOp::RemoveAny { key: record.key },
            }).collect();
            let mut writer = BatchWriter::new();
            for op in &ops { writer.push(op); }
            let expected_len = writer.frame_len();
            let mut buf = Vec::new();
            writer.finish(epoch, seq, BatchFlags(flags), &mut buf);
            prop_assert!(buf.len() <= expected_len);
            let Message::SessionBatch(batch) = Message::parse(&buf).unwrap() else { panic!("not a batch") };
            prop_assert_eq!(batch.epoch(), epoch);
            prop_assert_eq!(batch.seq(), seq);
            prop_assert_eq!(batch.flags(), BatchFlags(flags));
            let got: Vec<_> = batch.sections().flat_map(|s| s.ops()).map(Result::unwrap).collect();
            // Sections group ops by kind; within a kind the order is kept.
            let rank = |op: &SessionOp| match op {
                SessionOp::Upsert(_) => 0,
                SessionOp::Remove { .. } => 1,
                SessionOp::RemoveAny { .. } => 2,
            };
            let mut want = ops.clone();
            want.sort_by_key(rank);
            prop_assert_eq!(got, want);
        }

        /// Valid frames with mutated bytes: exercises deeper paths than random bytes reach.
        #[test]
        fn mutated_frames_never_panic(record in arb_record(), flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
            let mut writer = BatchWriter::new();
            writer.push(&SessionOp::RemoveAny { key: record.key });
            writer.push(&SessionOp::Remove { key: record.key, owner: record.owner });
            writer.push(&SessionOp::Upsert(record));
            let mut buf = Vec::new();
            writer.finish(1, 1, BatchFlags::default(), &mut buf);
            for (index, value) in flips {
                let at = index.index(buf.len());
                buf[at] = value;
            }
            if let Ok(Message::SessionBatch(batch)) = Message::parse(&buf) {
                for section in batch.sections() {
                    let _ = section.ops().count();
                }
            }
        }
    }
}
