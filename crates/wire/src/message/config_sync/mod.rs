//! Configuration sync: what each node holds of the configured units (nftables tables, files),
//! the transfers that make the standby's units the source's, and their outcome; and the
//! elements of dynamic sets, runtime state sent apart from the units (see [`SetElements`]).
//!
//! A unit's content is opaque here: the canonical form its backend reads back (`nft -s list
//! table` text, a files unit's archive). Content travels in chunks, so a unit may be far larger
//! than a frame.
//!
//! The layout is in the crate documentation (`cfgsync` and the lines below it). A body starts
//! with its sub-kind; every list entry starts with its length, so a later minor may append
//! fields to an entry as to the end of a body, and a reader of this version skips them. A
//! sub-kind this version does not know makes [`Message::parse`](crate::Message::parse) return
//! [`Message::Unknown`](crate::Message::Unknown) (the receiver counts and skips it, as an
//! unknown message kind); a unit kind, unit state or other code it does not know is malformed:
//! a later minor that adds one sends it only to a peer whose
//! [common version](crate::ProtocolVersion::common) has it.

use super::{HEADER_LEN, MAX_FRAME_LEN};
use crate::WireError;

mod decode;
mod elements;
mod encode;
mod field;
#[cfg(test)]
mod tests;
mod view;

pub use elements::{ElementEntry, MAX_ELEMENT_TEXT, MAX_ELEMENTS, SetElements};
use view::check_name;
pub use view::{ConfigSyncView, config_text};

/// The most units one message names (also the most backends an offer names).
pub const MAX_CONFIG_UNITS: usize = 64;
/// The longest unit name, in bytes.
pub const MAX_UNIT_NAME: usize = 255;
/// The longest text field (a version, a reason), in bytes.
pub const MAX_CONFIG_TEXT: usize = 1024;
/// The most content bytes one chunk carries.
pub const MAX_CHUNK_LEN: usize = 256 * 1024;
/// The largest unit content a transfer may declare: bounds what a peer makes us buffer.
pub const MAX_UNIT_LEN: u32 = 64 << 20;

// The largest chunk, with its headers, is one frame.
const _: () = assert!(HEADER_LEN + field::chunk::DATA.start + MAX_CHUNK_LEN <= MAX_FRAME_LEN);
// So is the largest elements message: the set's name, both list counts, and every entry an
// add with its three texts at their limit (a remove is shorter).
const _: () = assert!(
    HEADER_LEN
        + field::elements::TAIL.start
        + field::text::BYTES.start
        + MAX_UNIT_NAME
        + 2 * field::COUNT.end
        + MAX_ELEMENTS
            * (field::element::KEY.start + 3 * (field::text::BYTES.start + MAX_ELEMENT_TEXT))
        <= MAX_FRAME_LEN
);

/// What kind of unit, which says which backend reads and applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UnitKind {
    /// One nftables table (name: `family name`, e.g. `inet filter`).
    Nftables,
    /// One file or directory (name: its absolute path).
    Files,
}

impl UnitKind {
    fn code(self) -> u8 {
        match self {
            Self::Nftables => 1,
            Self::Files => 2,
        }
    }

    fn from_code(code: u8) -> Result<Self, WireError> {
        match code {
            1 => Ok(Self::Nftables),
            2 => Ok(Self::Files),
            _ => Err(WireError::Malformed("config-sync unit kind")),
        }
    }
}

/// One configured unit: its kind and name, the same on both nodes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnitId {
    /// Which backend.
    pub kind: UnitKind,
    /// 1..=[`MAX_UNIT_NAME`] bytes of UTF-8, no control characters.
    pub name: String,
}

impl UnitId {
    /// A unit id whose name can travel: 1..=[`MAX_UNIT_NAME`] bytes, no control characters
    /// (what the configuration checks, so that every unit it names can be sent).
    pub fn new(kind: UnitKind, name: &str) -> Result<Self, WireError> {
        check_name(name)?;
        Ok(Self {
            kind,
            name: name.to_owned(),
        })
    }
}

/// SHA-256 of a unit's canonical content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnitHash(pub [u8; 32]);

/// What a node holds of a unit, as its own read-back says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnitState {
    /// The unit does not exist (no such table, no such file).
    Absent,
    /// The unit exists with this canonical content.
    Present(UnitHash),
    /// It could not be read (the reason is the reader's, in its status).
    Unreadable,
}

impl UnitState {
    /// The state's code and the hash field (zero unless present).
    fn code(self) -> (u8, [u8; 32]) {
        match self {
            Self::Absent => (1, [0; 32]),
            Self::Present(hash) => (2, hash.0),
            Self::Unreadable => (3, [0; 32]),
        }
    }

    fn from_code(code: u8, hash: [u8; 32]) -> Result<Self, WireError> {
        match code {
            1 => Ok(Self::Absent),
            2 => Ok(Self::Present(UnitHash(hash))),
            3 => Ok(Self::Unreadable),
            _ => Err(WireError::Malformed("config-sync unit state")),
        }
    }
}

/// The versions that decide whether two nodes' canonical forms are comparable at all.
///
/// The texts travel as [`config_text`] makes them: compare a peer's with that form of one's
/// own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigVersions {
    /// failoverd's own version (e.g. `0.1.0`).
    pub failoverd: String,
    /// The config-sync schema (what a unit's content means), raised when it changes.
    pub schema: u16,
    /// Per backend, the version of what it reads with (e.g. `nftables v1.0.9`): the canonical
    /// text differs between versions. At most [`MAX_CONFIG_UNITS`].
    pub backends: Vec<(UnitKind, String)>,
}

/// The sender's side of config sync, sent when synchronization begins, after each change the
/// sender noticed, and periodically (the drift comparison).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigOffer {
    /// What the sender's canonical forms depend on.
    pub versions: ConfigVersions,
    /// The sender claims to be the configuration source.
    pub source: bool,
    /// The sender's mode is `auto` (else `manual`).
    pub auto: bool,
    /// Counts the sender's read-backs that found a change; a later offer has a higher one.
    pub revision: u64,
    /// Every unit the sender's config names, with what the sender holds.
    pub units: Vec<(UnitId, UnitState)>,
}

/// Why a transfer is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferPurpose {
    /// Every unit: the standby's units become exactly the source's.
    FullSync,
    /// Only the units that changed on the source.
    Incremental,
    /// The sender's read-back, asked for by [`ConfigSyncMessage::ReadbackRequest`] (for
    /// `config diff`): nothing is applied.
    Readback,
}

impl TransferPurpose {
    fn code(self) -> u8 {
        match self {
            Self::FullSync => 1,
            Self::Incremental => 2,
            Self::Readback => 3,
        }
    }

    fn from_code(code: u8) -> Result<Self, WireError> {
        match code {
            1 => Ok(Self::FullSync),
            2 => Ok(Self::Incremental),
            3 => Ok(Self::Readback),
            _ => Err(WireError::Malformed("config-sync transfer purpose")),
        }
    }
}

/// One unit of a transfer: what the sender holds, and the length of its content (0 unless
/// present), which follows in chunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferUnit {
    /// The unit.
    pub id: UnitId,
    /// What the sender holds; the chunks must hash to it.
    pub state: UnitState,
    /// Content bytes to come, at most [`MAX_UNIT_LEN`].
    pub len: u32,
}

/// A transfer begins; its units' content follows in [`Chunk`]s, unit by unit, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferHeader {
    /// Unique per sender and run.
    pub transfer: u64,
    /// Why.
    pub purpose: TransferPurpose,
    /// For a readback, the request it answers (else 0).
    pub request: u64,
    /// The units, at most [`MAX_CONFIG_UNITS`].
    pub units: Vec<TransferUnit>,
}

/// Part of a unit's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The transfer it belongs to.
    pub transfer: u64,
    /// Index of the unit in the transfer's header.
    pub unit: u16,
    /// Where `data` starts in the unit's content.
    pub offset: u32,
    /// At most [`MAX_CHUNK_LEN`] bytes.
    pub data: Vec<u8>,
}

impl Chunk {
    /// The chunk, borrowing its data.
    pub fn as_chunk_ref(&self) -> ChunkRef<'_> {
        ChunkRef {
            transfer: self.transfer,
            unit: self.unit,
            offset: self.offset,
            data: &self.data,
        }
    }
}

/// A [`Chunk`] whose data is borrowed: from a received frame
/// ([`ConfigSyncView::chunk`]), so the receiver copies it once, into the unit it assembles;
/// or from the sender's unit content, which [`ChunkRef::emit`] sends without a copy of its
/// own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRef<'a> {
    /// The transfer it belongs to.
    pub transfer: u64,
    /// Index of the unit in the transfer's header, below [`MAX_CONFIG_UNITS`].
    pub unit: u16,
    /// Where `data` starts in the unit's content; `offset + data.len()` is at most
    /// [`MAX_UNIT_LEN`].
    pub offset: u32,
    /// At most [`MAX_CHUNK_LEN`] bytes.
    pub data: &'a [u8],
}

impl ChunkRef<'_> {
    /// The owned chunk (a copy of the data).
    pub fn to_chunk(self) -> Chunk {
        Chunk {
            transfer: self.transfer,
            unit: self.unit,
            offset: self.offset,
            data: self.data.to_vec(),
        }
    }
}

/// How a sync ended on the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncOutcome {
    /// Every unit applied, as one transaction per backend.
    Applied,
    /// A unit failed to apply: nothing changed.
    Failed,
    /// Applied, then undone: the peer's hellos stopped arriving (the new rules cut the link).
    RolledBack,
    /// Not attempted (a version mismatch, a unit this node does not name, not in sync).
    Refused,
}

impl SyncOutcome {
    fn code(self) -> u8 {
        match self {
            Self::Applied => 1,
            Self::Failed => 2,
            Self::RolledBack => 3,
            Self::Refused => 4,
        }
    }

    fn from_code(code: u8) -> Result<Self, WireError> {
        match code {
            1 => Ok(Self::Applied),
            2 => Ok(Self::Failed),
            3 => Ok(Self::RolledBack),
            4 => Ok(Self::Refused),
            _ => Err(WireError::Malformed("config-sync outcome")),
        }
    }
}

/// The outcome of a sync transfer on the receiver, with its read-back afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResult {
    /// The transfer it answers.
    pub transfer: u64,
    /// How it ended.
    pub outcome: SyncOutcome,
    /// The unit that failed (index in the transfer's header, below [`MAX_CONFIG_UNITS`]), if
    /// one did.
    pub failed_unit: Option<u16>,
    /// The kernel's or the OS's message, at most [`MAX_CONFIG_TEXT`] bytes; empty when applied.
    /// It travels as [`config_text`] makes it (a multi-line message on one line).
    pub reason: String,
    /// What the receiver's own read-back holds now, for every unit it names.
    pub readback: Vec<(UnitId, UnitState)>,
}

/// A config-sync message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSyncMessage {
    /// See [`ConfigOffer`].
    Offer(ConfigOffer),
    /// See [`TransferHeader`].
    Transfer(TransferHeader),
    /// See [`Chunk`].
    Chunk(Chunk),
    /// See [`SyncResult`].
    Result(SyncResult),
    /// Asks for the peer's read-back of `units` (for `config diff`); answered by a transfer
    /// with [`TransferPurpose::Readback`].
    ReadbackRequest {
        /// Echoed in the answer.
        request: u64,
        /// At most [`MAX_CONFIG_UNITS`].
        units: Vec<UnitId>,
    },
    /// See [`SetElements`] (since 1.4, sub-kind 6).
    Elements(SetElements),
}

/// The sub-kind of a config-sync message: which variant of [`ConfigSyncMessage`] it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSyncKind {
    /// [`ConfigSyncMessage::Offer`].
    Offer,
    /// [`ConfigSyncMessage::Transfer`].
    Transfer,
    /// [`ConfigSyncMessage::Chunk`].
    Chunk,
    /// [`ConfigSyncMessage::Result`].
    Result,
    /// [`ConfigSyncMessage::ReadbackRequest`].
    ReadbackRequest,
    /// [`ConfigSyncMessage::Elements`].
    Elements,
}

impl ConfigSyncKind {
    fn code(self) -> u8 {
        match self {
            Self::Offer => 1,
            Self::Transfer => 2,
            Self::Chunk => 3,
            Self::Result => 4,
            Self::ReadbackRequest => 5,
            Self::Elements => 6,
        }
    }

    fn from_code(code: u8) -> Result<Self, WireError> {
        match code {
            1 => Ok(Self::Offer),
            2 => Ok(Self::Transfer),
            3 => Ok(Self::Chunk),
            4 => Ok(Self::Result),
            5 => Ok(Self::ReadbackRequest),
            6 => Ok(Self::Elements),
            _ => Err(UNKNOWN_KIND),
        }
    }
}

/// A config-sync body of a sub-kind this version does not know:
/// [`Message::parse`](crate::Message::parse) reads it as an unknown message.
pub(crate) const UNKNOWN_KIND: WireError = WireError::Malformed("config-sync kind");

impl ConfigSyncMessage {
    /// Parses the body of a config-sync frame. Every limit above is checked; a violation is a
    /// [`WireError`], as is a sub-kind this version does not know
    /// (`WireError::Malformed("config-sync kind")`).
    pub fn parse(body: &[u8]) -> Result<Self, WireError> {
        decode::body(body).map(decode::Decoded::into_message)
    }

    /// Which variant this is.
    pub fn kind(&self) -> ConfigSyncKind {
        match self {
            Self::Offer(_) => ConfigSyncKind::Offer,
            Self::Transfer(_) => ConfigSyncKind::Transfer,
            Self::Chunk(_) => ConfigSyncKind::Chunk,
            Self::Result(_) => ConfigSyncKind::Result,
            Self::ReadbackRequest { .. } => ConfigSyncKind::ReadbackRequest,
            Self::Elements(_) => ConfigSyncKind::Elements,
        }
    }
}
