//! Configuration sync: what each node holds of the configured units (nftables tables, files),
//! the transfers that make the standby's units the source's, and their outcome.
//!
//! A unit's content is opaque here: the canonical form its backend reads back (`nft -s list
//! table` text, a files unit's archive). Content travels in chunks, so a unit may be far larger
//! than a frame.

use crate::WireError;

/// The most units one message names.
pub const MAX_CONFIG_UNITS: usize = 64;
/// The longest unit name, in bytes.
pub const MAX_UNIT_NAME: usize = 255;
/// The longest text field (a version, a reason), in bytes.
pub const MAX_CONFIG_TEXT: usize = 1024;
/// The most content bytes one chunk carries.
pub const MAX_CHUNK_LEN: usize = 256 * 1024;
/// The largest unit content a transfer may declare: bounds what a peer makes us buffer.
pub const MAX_UNIT_LEN: u32 = 64 << 20;

/// What kind of unit, which says which backend reads and applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UnitKind {
    /// One nftables table (name: `family name`, e.g. `inet filter`).
    Nftables,
    /// One file or directory (name: its absolute path).
    Files,
}

/// One configured unit: its kind and name, the same on both nodes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnitId {
    /// Which backend.
    pub kind: UnitKind,
    /// 1..=[`MAX_UNIT_NAME`] bytes of UTF-8, no control characters.
    pub name: String,
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

/// The versions that decide whether two nodes' canonical forms are comparable at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigVersions {
    /// failoverd's own version (e.g. `0.1.0`).
    pub failoverd: String,
    /// The config-sync schema (what a unit's content means), raised when it changes.
    pub schema: u16,
    /// Per backend, the version of what it reads with (e.g. `nftables v1.0.9`): the canonical
    /// text differs between versions.
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

/// The outcome of a sync transfer on the receiver, with its read-back afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResult {
    /// The transfer it answers.
    pub transfer: u64,
    /// How it ended.
    pub outcome: SyncOutcome,
    /// The unit that failed (index in the transfer's header), if one did.
    pub failed_unit: Option<u16>,
    /// The kernel's or the OS's message, at most [`MAX_CONFIG_TEXT`] bytes; empty when applied.
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
}

impl ConfigSyncMessage {
    /// Parses the body of a config-sync frame. Every limit above is checked; a violation is a
    /// [`WireError`].
    pub fn parse(body: &[u8]) -> Result<Self, WireError> {
        let _ = body;
        todo!("issue 13: the config-sync codec")
    }

    /// Appends the whole frame to `buf`.
    pub fn emit(&self, buf: &mut Vec<u8>) {
        let _ = buf;
        todo!("issue 13: the config-sync codec")
    }
}
