//! Frames and the messages they carry: the frame header here, each kind of message in its own
//! module.

mod ack;
mod batch;
mod config_sync;
mod digest;
mod goodbye;
mod hello;
mod settings;
mod vrrp_report;

pub use ack::Ack;
pub use batch::{BATCH_HEADER_LEN, BatchFlags, BatchView, BatchWriter, Section, SectionKind};
pub use config_sync::{
    Chunk, ChunkRef, ConfigOffer, ConfigSyncKind, ConfigSyncMessage, ConfigSyncView,
    ConfigVersions, ElementEntry, MAX_CHUNK_LEN, MAX_CONFIG_TEXT, MAX_CONFIG_UNITS,
    MAX_ELEMENT_TEXT, MAX_ELEMENTS, MAX_UNIT_LEN, MAX_UNIT_NAME, SetElements, SyncOutcome,
    SyncResult, TransferHeader, TransferPurpose, TransferUnit, UnitHash, UnitId, UnitKind,
    UnitState, config_text,
};
pub use digest::{DIGEST_BUCKETS, DigestView, digest};
pub use goodbye::{Goodbye, GoodbyeReason};
pub use hello::{BackupType, Hello, HelloFlags, ProtocolVersion, Role, StreamPosition, SyncState};
pub use settings::{MAX_SETTINGS, SettingsIter, SettingsView};
pub use vrrp_report::{MAX_VRRP_INSTANCES, VrrpInstanceReport, VrrpReport, VrrpReportView};

use crate::{WireError, append_zeroed, read_u32};

/// The protocol major version this build speaks, carried in every frame header.
pub const VERSION: u8 = 1;
/// Length of the frame header.
pub const HEADER_LEN: usize = field::BODY.start;
/// Largest frame accepted: bounds the memory a peer can make us allocate.
pub const MAX_FRAME_LEN: usize = 1 << 20;
const MAGIC: [u8; 2] = *b"FO";

/// Byte offsets of the frame header (see the layout in the crate documentation), each given
/// once here.
mod field {
    use crate::{Field, Rest};

    pub(crate) const MAGIC: Field = 0..2;
    pub(crate) const VERSION: usize = 2;
    pub(crate) const KIND: usize = 3;
    /// Of the whole frame, header included.
    pub(crate) const LENGTH: Field = 4..8;
    pub(crate) const BODY: Rest = 8..;
}

/// What a frame carries. Unknown kinds survive parsing (see [`Message::Unknown`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// Negotiation and liveness.
    Hello,
    /// The sender is leaving on purpose.
    Goodbye,
    /// Session records.
    SessionBatch,
    /// Cumulative acknowledgement of session batches.
    Ack,
    /// Settings both nodes should share, for comparison.
    Settings,
    /// A digest of the sender's sessions, for anti-entropy.
    Digest,
    /// What the sender's VRRP instances hear (since 1.3).
    VrrpReport,
    /// Configuration sync (since 1.4).
    ConfigSync,
    /// A kind this version does not know.
    Unknown(u8),
}

impl MessageKind {
    fn code(self) -> u8 {
        match self {
            Self::Hello => 1,
            Self::Goodbye => 2,
            Self::SessionBatch => 3,
            Self::Ack => 4,
            Self::Settings => 5,
            Self::Digest => 6,
            Self::VrrpReport => 7,
            Self::ConfigSync => 8,
            Self::Unknown(code) => code,
        }
    }

    fn from_code(code: u8) -> Self {
        match code {
            1 => Self::Hello,
            2 => Self::Goodbye,
            3 => Self::SessionBatch,
            4 => Self::Ack,
            5 => Self::Settings,
            6 => Self::Digest,
            7 => Self::VrrpReport,
            8 => Self::ConfigSync,
            other => Self::Unknown(other),
        }
    }
}

/// Reads the total frame length from the first [`HEADER_LEN`] bytes of a byte stream, so a
/// stream reader knows how much to read (and can refuse before allocating).
pub fn frame_len(header: &[u8]) -> Result<usize, WireError> {
    if header.len() < HEADER_LEN {
        return Err(WireError::Truncated);
    }
    if header[field::MAGIC] != MAGIC {
        return Err(WireError::BadMagic);
    }
    let declared = read_u32(header, field::LENGTH);
    if declared as usize > MAX_FRAME_LEN {
        return Err(WireError::Oversized(declared));
    }
    if (declared as usize) < HEADER_LEN {
        return Err(WireError::Malformed("frame length"));
    }
    Ok(declared as usize)
}

/// A checked view of one whole frame.
#[derive(Debug, Clone, Copy)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Checks magic and length: `buffer` must hold exactly one frame.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let bytes = buffer.as_ref();
        let declared = frame_len(bytes)?;
        if declared != bytes.len() {
            return Err(WireError::LengthMismatch {
                declared: declared as u32,
                actual: bytes.len(),
            });
        }
        Ok(Self { buffer })
    }

    /// Protocol version of the sender.
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION]
    }

    /// Message kind.
    pub fn kind(&self) -> MessageKind {
        MessageKind::from_code(self.buffer.as_ref()[field::KIND])
    }

    /// The bytes after the header.
    pub fn body(&self) -> &[u8] {
        &self.buffer.as_ref()[field::BODY]
    }
}

/// Appends a frame of `kind` with a zeroed body of `body_len` bytes to `buf`, and returns the
/// body for the caller to fill.
fn emit_frame(buf: &mut Vec<u8>, kind: MessageKind, body_len: usize) -> &mut [u8] {
    let frame = append_zeroed(buf, HEADER_LEN + body_len);
    frame[field::MAGIC].copy_from_slice(&MAGIC);
    frame[field::VERSION] = VERSION;
    frame[field::KIND] = kind.code();
    frame[field::LENGTH].copy_from_slice(&((HEADER_LEN + body_len) as u32).to_be_bytes());
    &mut frame[field::BODY]
}

/// A parsed frame. Session batches stay zero-copy views into the frame.
#[derive(Debug, Clone, Copy)]
pub enum Message<'a> {
    /// See [`Hello`].
    Hello(Hello),
    /// See [`Goodbye`].
    Goodbye(Goodbye),
    /// See [`BatchView`].
    SessionBatch(BatchView<'a>),
    /// See [`Ack`].
    Ack(Ack),
    /// See [`SettingsView`].
    Settings(SettingsView<'a>),
    /// See [`DigestView`].
    Digest(DigestView<'a>),
    /// See [`VrrpReportView`].
    VrrpReport(VrrpReportView<'a>),
    /// See [`ConfigSyncView`].
    ConfigSync(ConfigSyncView<'a>),
    /// A kind this version does not know; the receiver counts and skips it. A config-sync
    /// frame of a sub-kind this version does not know reads as one too (its code is
    /// [`MessageKind::ConfigSync`]'s, 8).
    Unknown(u8),
}

impl<'a> Message<'a> {
    /// Parses one whole frame.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, WireError> {
        let frame = Frame::new_checked(bytes)?;
        if frame.version() != VERSION {
            return Err(WireError::UnsupportedVersion(frame.version()));
        }
        let body = &bytes[field::BODY];
        Ok(match frame.kind() {
            MessageKind::Hello => Self::Hello(Hello::parse(body)?),
            MessageKind::Goodbye => Self::Goodbye(Goodbye::parse(body)?),
            MessageKind::SessionBatch => Self::SessionBatch(BatchView::new_checked(body)?),
            MessageKind::Ack => Self::Ack(Ack::parse(body)?),
            MessageKind::Settings => Self::Settings(SettingsView::new_checked(body)?),
            MessageKind::Digest => Self::Digest(DigestView::new_checked(body)?),
            MessageKind::VrrpReport => Self::VrrpReport(VrrpReportView::new_checked(body)?),
            MessageKind::ConfigSync => match ConfigSyncView::new_checked(body) {
                Err(config_sync::UNKNOWN_KIND) => Self::Unknown(MessageKind::ConfigSync.code()),
                view => Self::ConfigSync(view?),
            },
            MessageKind::Unknown(code) => Self::Unknown(code),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `frame` with `extra` appended to its body, as a later minor may send it.
    pub(crate) fn appended(mut frame: Vec<u8>, extra: &[u8]) -> Vec<u8> {
        frame.extend_from_slice(extra);
        let len = frame.len() as u32;
        frame[4..8].copy_from_slice(&len.to_be_bytes());
        frame
    }

    #[test]
    fn wrong_version_magic_and_sizes_are_errors() {
        let mut buf = Vec::new();
        hello::tests::hello().emit(&mut buf);
        let mut v2 = buf.clone();
        v2[2] = 2;
        assert_eq!(
            Message::parse(&v2).unwrap_err(),
            WireError::UnsupportedVersion(2)
        );
        let mut magic = buf.clone();
        magic[0] = b'X';
        assert_eq!(Message::parse(&magic).unwrap_err(), WireError::BadMagic);
        assert!(matches!(
            Message::parse(&buf[..20]),
            Err(WireError::LengthMismatch { .. })
        ));
        let huge = [b'F', b'O', 1, 3, 0x7f, 0, 0, 0];
        assert_eq!(
            frame_len(&huge).unwrap_err(),
            WireError::Oversized(0x7f00_0000)
        );
        assert_eq!(
            frame_len(&[b'F', b'O', 1, 3, 0, 0, 0, 2]).unwrap_err(),
            WireError::Malformed("frame length")
        );
    }

    proptest! {
        /// The same decoders the fuzz targets drive: arbitrary bytes are an error or a message.
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(Message::SessionBatch(batch)) = Message::parse(&bytes) {
                for section in batch.sections() {
                    let _ = section.ops().count();
                }
            }
        }
    }
}
