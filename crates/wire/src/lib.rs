//! Messages of the failoverd failover link.
//!
//! Every frame starts with an 8-byte header (magic `"FO"`, version, kind, total length). Frames
//! are read through checked views ([`Frame::new_checked`], [`BatchView::new_checked`]): once a view
//! exists no accessor can panic. Owned representations ([`Hello`], [`Ack`], [`Goodbye`],
//! [`SessionRecord`], [`ConfigSyncMessage`]) parse from views and emit into buffers. A
//! malformed, truncated or oversized frame is a [`WireError`], never a panic.
//!
//! ```text
//! frame   = magic "FO" | version u8 | kind u8 | length u32 (whole frame) | body
//! hello   = pair u32 | node u32 | priority u8 | backup u8 | state u8 | role u8 | flags u8 | 3 zero
//!           | epoch u32 | hello_ms u32 | dead_ms u32 | tx_stamp u64 | echo_stamp u64
//!           | resync_epoch u32 | protocol_minor u16 | 2 zero          (the last two since 1.1)
//!           | applied_epoch u32 | 4 zero | applied_seq u64          (since 1.3; seq 0: none)
//! ack     = epoch u32 | 4 zero | received u64 | applied u64
//! goodbye = reason u8 | 3 zero
//! report  = count u16 | 2 zero | count * (vrid u8 | family u8 | flags u8 | 0)   (since 1.3)
//! batch   = epoch u32 | flags u8 | 3 zero | seq u64 | sections u16 | 2 zero | section*
//! section = kind u8 | 0 | record_len u16 | count u32 | count * record
//! record  = upsert: session record (156) | remove: session key (40) | owner u32
//! cfgsync = kind u8 | 3 zero | offer | transfer | chunk | result | request | elements
//!           (frame kind 8, since 1.4)
//!   offer    (kind 1) = revision u64 | flags u8 (1 source, 2 auto) | 0 | schema u16
//!                       | failoverd text | list of backend | list of unit
//!   transfer (kind 2) = transfer u64 | request u64 | purpose u8 | 0 | list of tunit
//!   chunk    (kind 3) = transfer u64 | unit u16 | 2 zero | offset u32 | len u32 | len bytes
//!   result   (kind 4) = transfer u64 | outcome u8 | flags u8 (1: failed_unit set)
//!                       | failed_unit u16 | reason text | list of unit
//!   request  (kind 5) = request u64 | list of id
//!   elements (kind 6) = set name text | list of element | list of key
//!                       (adds and removes of a dynamic set; <= 1024 entries in all)
//! text    = len u16 | UTF-8, no control characters   (names 1..=255 bytes, texts <= 1024)
//! list    = count u16 (<= 64; an elements message's two: <= 1024 together) | count * entry,
//!           each: len u16 (of the rest of the entry) | rest
//! backend = len u16 | unit_kind u8 | 0 | version text
//! unit    = len u16 | unit_kind u8 | state u8 | hash [32] (zero unless present) | name text
//! tunit   = len u16 | unit_kind u8 | state u8 | content_len u32 | hash [32] | name text
//! id      = len u16 | unit_kind u8 | 0 | name text
//! element = len u16 | flags u8 (1 timeout, 2 expires) | 0 | timeout_ms u64 | expires_ms u64
//!           | key text | value text | comment text   (value, comment: empty when none)
//! key     = len u16 | key text                      (element texts: key 1..=255 bytes,
//!                                                    value and comment <= 255)
//! ```
//! All integers are big-endian. Config-sync codes: unit_kind 1 nftables, 2 files; state 1
//! absent, 2 present, 3 unreadable; purpose 1 full sync, 2 incremental, 3 readback; outcome 1
//! applied, 2 failed, 3 rolled back, 4 refused. A transfer unit declares at most 64 MiB of
//! content, and content only when present; a chunk carries at most 256 KiB, of a unit below 64,
//! ending within 64 MiB.
//!
//! Compatibility (see [`ProtocolVersion`]): the header's version is the protocol major, which
//! must match. Within a major a reader accepts every minor: it ignores bytes after the fields it
//! knows at the end of a message body and of a record (a section's `record_len` may exceed this
//! version's) or list entry (its `len` may), and skips and counts sections and message kinds it
//! does not know (a config-sync sub-kind it does not know reads as an unknown message). Codes
//! inside a config-sync message (unit kinds, states) must be known: a newer minor sends a new
//! one only to a peer whose common version has it. Frames of every released version are kept
//! in `tests/golden/` and decoded by `tests/golden.rs`.
#![forbid(unsafe_code)]

use std::ops::{Range, RangeFrom};

pub mod announce;
mod channel;
mod fingerprint;
pub mod heartbeat;
mod message;
mod session;
pub mod vrrp;

pub use channel::Channel;
pub use fingerprint::{Fingerprint, FingerprintParseError, Pins, PinsError};
pub use message::{
    Ack, BATCH_HEADER_LEN, BackupType, BatchFlags, BatchView, BatchWriter, DIGEST_BUCKETS,
    DigestView, Frame, Goodbye, GoodbyeReason, HEADER_LEN, Hello, HelloFlags, MAX_FRAME_LEN,
    MAX_SETTINGS, MAX_VRRP_INSTANCES, Message, MessageKind, ProtocolVersion, Role, Section,
    SectionKind, SettingsIter, SettingsView, StreamPosition, SyncState, VERSION,
    VrrpInstanceReport, VrrpReport, VrrpReportView, digest, frame_len,
};
pub use message::{
    Chunk, ChunkRef, ConfigOffer, ConfigSyncKind, ConfigSyncMessage, ConfigSyncView,
    ConfigVersions, ElementEntry, MAX_CHUNK_LEN, MAX_CONFIG_TEXT, MAX_CONFIG_UNITS,
    MAX_ELEMENT_TEXT, MAX_ELEMENTS, MAX_UNIT_LEN, MAX_UNIT_NAME, SetElements, SyncOutcome,
    SyncResult, TransferHeader, TransferPurpose, TransferUnit, UnitHash, UnitId, UnitKind,
    UnitState, config_text,
};
pub use session::{
    HELPER_NAME_LEN, HelperName, KEY_LEN, NodeId, RECORD_LEN, SeqAdj, SessionKey, SessionOp,
    SessionRecord, TcpInfo, TcpState, Tuple, proto_name,
};

/// Why bytes could not be read as a message. Every variant is the sender's fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Fewer bytes than the structure needs.
    #[error("truncated message")]
    Truncated,
    /// The frame does not start with the failoverd magic.
    #[error("bad magic: not a failoverd frame")]
    BadMagic,
    /// The frame's length field exceeds [`MAX_FRAME_LEN`].
    #[error("frame of {0} bytes exceeds the {MAX_FRAME_LEN}-byte limit")]
    Oversized(u32),
    /// The length field disagrees with the bytes given.
    #[error("length field {declared} but {actual} bytes present")]
    LengthMismatch {
        /// What the length field says.
        declared: u32,
        /// What was handed in.
        actual: usize,
    },
    /// A protocol version this build does not speak.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u8),
    /// A field holds a value that is not allowed.
    #[error("malformed {0}")]
    Malformed(&'static str),
}

/// A field's bytes within its structure. Each format lists its fields once, in a `mod field`
/// beside its layout (as smoltcp does), and its parse, emit and views all index with them.
pub(crate) type Field = Range<usize>;
/// The bytes from an offset to the end of a structure: its variable-length tail.
pub(crate) type Rest = RangeFrom<usize>;

pub(crate) fn read_u16(buf: &[u8], field: Field) -> u16 {
    u16::from_be_bytes(field_bytes(buf, field))
}

pub(crate) fn read_u32(buf: &[u8], field: Field) -> u32 {
    u32::from_be_bytes(field_bytes(buf, field))
}

pub(crate) fn read_u64(buf: &[u8], field: Field) -> u64 {
    u64::from_be_bytes(field_bytes(buf, field))
}

/// Appends `len` zero bytes to `buf` and returns them, for an emit to fill field by field
/// (reserved bytes stay zero).
pub(crate) fn append_zeroed(buf: &mut Vec<u8>, len: usize) -> &mut [u8] {
    let start = buf.len();
    buf.resize(start + len, 0);
    &mut buf[start..]
}

/// The bytes of `field`. Callers check `buf`'s length first; a field that is not `N` bytes long
/// is a bug in a `mod field`, which every round-trip test would hit.
fn field_bytes<const N: usize>(buf: &[u8], field: Field) -> [u8; N] {
    let mut bytes = [0; N];
    bytes.copy_from_slice(&buf[field]);
    bytes
}
