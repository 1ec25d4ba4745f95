//! Frames and the messages they carry.

use std::fmt;

use crate::session::{KEY_LEN, NodeId, RECORD_LEN, SessionKey, SessionOp, SessionRecord};

/// Length of a remove record: the key, then the owner whose copy the delete speaks for.
pub const REMOVE_LEN: usize = KEY_LEN + 4;
use crate::{WireError, read_u16, read_u32, read_u64};

/// The protocol major version this build speaks, carried in every frame header.
pub const VERSION: u8 = 1;
/// Length of the frame header.
pub const HEADER_LEN: usize = 8;
/// Largest frame accepted: bounds the memory a peer can make us allocate.
pub const MAX_FRAME_LEN: usize = 1 << 20;
const MAGIC: [u8; 2] = *b"FO";

/// A hello of protocol 1.0, which ends with `resync_epoch`.
const HELLO_LEN_1_0: usize = 48;
/// A hello of protocol 1.1 and 1.2: 1.0's, then `protocol_minor` and 2 reserved bytes.
const HELLO_LEN_1_1: usize = 52;
/// A hello of this version: 1.1's, then [`Hello::applied`] (epoch, 4 reserved bytes, seq).
const HELLO_LEN: usize = 68;
const ACK_LEN: usize = 24;
const GOODBYE_LEN: usize = 4;
/// Length of the session-batch header that follows the frame header.
pub const BATCH_HEADER_LEN: usize = 20;
const SECTION_HEADER_LEN: usize = 8;

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
    if header[..2] != MAGIC {
        return Err(WireError::BadMagic);
    }
    let declared = read_u32(header, 4);
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
        self.buffer.as_ref()[2]
    }

    /// Message kind.
    pub fn kind(&self) -> MessageKind {
        MessageKind::from_code(self.buffer.as_ref()[3])
    }

    /// The bytes after the header.
    pub fn body(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

fn emit_header(buf: &mut Vec<u8>, kind: MessageKind, body_len: usize) {
    buf.extend_from_slice(&MAGIC);
    buf.push(VERSION);
    buf.push(kind.code());
    buf.extend_from_slice(&((HEADER_LEN + body_len) as u32).to_be_bytes());
}

/// The three failover states of the seed (H3C SecPath manual, "stateful failover states").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SyncState {
    /// Just started, or just left Synchronization: a hold-down against flapping.
    Silence,
    /// The silence timer expired and no failover link is negotiated: the node works alone.
    Independence,
    /// Negotiation succeeded: service backup runs both ways.
    Synchronization,
}

impl SyncState {
    fn code(self) -> u8 {
        match self {
            Self::Silence => 0,
            Self::Independence => 1,
            Self::Synchronization => 2,
        }
    }

    fn from_code(code: u8) -> Result<Self, WireError> {
        match code {
            0 => Ok(Self::Silence),
            1 => Ok(Self::Independence),
            2 => Ok(Self::Synchronization),
            _ => Err(WireError::Malformed("failover state")),
        }
    }

    /// Lower-case name, as the CLI and JSON show it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Silence => "silence",
            Self::Independence => "independence",
            Self::Synchronization => "synchronization",
        }
    }
}

impl fmt::Display for SyncState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether a node forwards traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Does not forward; holds the peer's sessions ready.
    Standby,
    /// Forwards traffic.
    Active,
}

impl Role {
    fn code(self) -> u8 {
        match self {
            Self::Standby => 0,
            Self::Active => 1,
        }
    }

    fn from_code(code: u8) -> Result<Self, WireError> {
        match code {
            0 => Ok(Self::Standby),
            1 => Ok(Self::Active),
            _ => Err(WireError::Malformed("role")),
        }
    }

    /// Lower-case name, as the CLI and JSON show it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Standby => "standby",
            Self::Active => "active",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Backup type (seed: symmetric or asymmetric path). Kept raw so that a peer with a type this
/// version does not know is reported as incompatible rather than as garbage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BackupType(pub u8);

impl BackupType {
    /// Symmetric path: active/standby, traffic flows through one node at a time.
    pub const SYMMETRIC: Self = Self(0);
    /// Asymmetric path: both forward; a reply may come back through the other node.
    pub const ASYMMETRIC: Self = Self(1);

    /// Name as the config file spells it.
    pub const fn name(self) -> &'static str {
        match self {
            Self::SYMMETRIC => "symmetric",
            Self::ASYMMETRIC => "asymmetric",
            _ => "unknown",
        }
    }
}

/// Flag bits of a [`Hello`]. Unknown bits are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct HelloFlags(pub u8);

impl HelloFlags {
    /// The sender holds a complete copy of our sessions (its bulk sync of ours is done).
    pub const READY: u8 = 0x01;
    /// The sender wants to hand its active role over (switchover or maintenance).
    pub const YIELDING: u8 = 0x02;
    /// The sender takes the active role from a lower-priority peer once it is ready.
    pub const PREEMPT: u8 = 0x04;
    /// The sender lost track of its table (backend events lost) and asks for a new bulk sync of
    /// ours too (the epoch in [`Hello::resync_epoch`]): a delete it missed may concern an entry
    /// we own. Set until a new epoch of ours begins.
    pub const RESYNC: u8 = 0x08;

    /// True if `bit` is set.
    pub fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }
}

/// A protocol version. The major is in every frame header, and a reader refuses a frame of
/// another major ([`WireError::UnsupportedVersion`]): it changes only when a layout cannot be
/// extended. The minor is in the hello, and a reader accepts every minor: a newer one adds
/// only fields at the end of a message or record (which older readers ignore), sections and
/// message kinds (which they skip and count). A node gates what a newer minor adds on the
/// [`common`](Self::common) version of the pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProtocolVersion {
    /// Must match.
    pub major: u8,
    /// Tolerated in either direction.
    pub minor: u16,
}

impl ProtocolVersion {
    /// What this build speaks. 1.0 is the first release; 1.1 adds `protocol_minor` to the
    /// hello; 1.2 adds [`BatchFlags::RESUMED`]; 1.3 adds [`Hello::applied`] and
    /// [`VrrpReport`].
    pub const CURRENT: Self = Self {
        major: VERSION,
        minor: 3,
    };

    /// The first version with [`VrrpReport`].
    pub const VRRP_REPORT: Self = Self {
        major: VERSION,
        minor: 3,
    };

    /// The first version with resumed bulk syncs ([`BatchFlags::RESUMED`]).
    pub const RESUMED_BULK: Self = Self {
        major: VERSION,
        minor: 2,
    };

    /// The version a hello's sender speaks (a parsed frame's major is ours).
    pub fn of_hello(hello: &Hello) -> Self {
        Self {
            major: VERSION,
            minor: hello.protocol_minor,
        }
    }

    /// The version both speak: the lower minor.
    pub fn common(self, other: Self) -> Self {
        Self {
            major: self.major,
            minor: self.minor.min(other.minor),
        }
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Negotiation and liveness message, sent every hello interval on the control path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// Identifies the pair; both nodes must agree.
    pub pair_id: u32,
    /// Sender's node id.
    pub node_id: u32,
    /// Election priority (higher wins).
    pub priority: u8,
    /// Configured backup type; both nodes must agree.
    pub backup_type: BackupType,
    /// Sender's failover state.
    pub state: SyncState,
    /// Sender's role.
    pub role: Role,
    /// Readiness and intent.
    pub flags: HelloFlags,
    /// Epoch of the sender's current outbound session stream.
    pub epoch: u32,
    /// Sender's hello interval in milliseconds.
    pub hello_interval_ms: u32,
    /// Sender's dead interval in milliseconds.
    pub dead_interval_ms: u32,
    /// Sender's clock when sending (microseconds), echoed back for RTT measurement.
    pub tx_stamp: u64,
    /// The last `tx_stamp` the sender received from us plus how long it held it before this
    /// hello (0 if none): the round trip is the receiver's clock minus this.
    pub echo_stamp: u64,
    /// With [`HelloFlags::RESYNC`]: the epoch of the receiver's stream to replace.
    pub resync_epoch: u32,
    /// The sender's protocol minor version (see [`ProtocolVersion`]); 0 from a 1.0 sender,
    /// whose hello ends before it.
    pub protocol_minor: u16,
    /// How far the sender applied the receiver's latest session stream, the current one or the
    /// one a link loss ended; `None` if it applied none (or speaks a minor before 1.3). What
    /// the receiver could not tell from acknowledgements lost with the link.
    pub applied: Option<StreamPosition>,
}

/// A batch of one session stream: its epoch and sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamPosition {
    pub epoch: u32,
    /// Batches are numbered from 1.
    pub seq: u64,
}

impl Hello {
    /// Parses the body of a hello frame: of any minor version, so bytes after the fields this
    /// version knows are ignored.
    pub fn parse(body: &[u8]) -> Result<Self, WireError> {
        if body.len() < HELLO_LEN_1_0 {
            return Err(WireError::Truncated);
        }
        Ok(Self {
            pair_id: read_u32(body, 0),
            node_id: read_u32(body, 4),
            priority: body[8],
            backup_type: BackupType(body[9]),
            state: SyncState::from_code(body[10])?,
            role: Role::from_code(body[11])?,
            flags: HelloFlags(body[12]),
            epoch: read_u32(body, 16),
            hello_interval_ms: read_u32(body, 20),
            dead_interval_ms: read_u32(body, 24),
            tx_stamp: read_u64(body, 28),
            echo_stamp: read_u64(body, 36),
            resync_epoch: read_u32(body, 44),
            protocol_minor: if body.len() >= HELLO_LEN_1_1 {
                read_u16(body, 48)
            } else {
                0
            },
            applied: if body.len() >= HELLO_LEN {
                Some(StreamPosition {
                    epoch: read_u32(body, 52),
                    seq: read_u64(body, 60),
                })
                .filter(|position| position.seq > 0)
            } else {
                None
            },
        })
    }

    /// Appends the whole frame to `buf`.
    pub fn emit(&self, buf: &mut Vec<u8>) {
        emit_header(buf, MessageKind::Hello, HELLO_LEN);
        buf.extend_from_slice(&self.pair_id.to_be_bytes());
        buf.extend_from_slice(&self.node_id.to_be_bytes());
        buf.extend_from_slice(&[
            self.priority,
            self.backup_type.0,
            self.state.code(),
            self.role.code(),
            self.flags.0,
            0,
            0,
            0,
        ]);
        buf.extend_from_slice(&self.epoch.to_be_bytes());
        buf.extend_from_slice(&self.hello_interval_ms.to_be_bytes());
        buf.extend_from_slice(&self.dead_interval_ms.to_be_bytes());
        buf.extend_from_slice(&self.tx_stamp.to_be_bytes());
        buf.extend_from_slice(&self.echo_stamp.to_be_bytes());
        buf.extend_from_slice(&self.resync_epoch.to_be_bytes());
        buf.extend_from_slice(&self.protocol_minor.to_be_bytes());
        buf.extend_from_slice(&[0, 0]);
        let applied = self.applied.unwrap_or(StreamPosition { epoch: 0, seq: 0 });
        buf.extend_from_slice(&applied.epoch.to_be_bytes());
        buf.extend_from_slice(&[0; 4]);
        buf.extend_from_slice(&applied.seq.to_be_bytes());
    }
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
            epoch: read_u32(body, 0),
            received: read_u64(body, 8),
            applied: read_u64(body, 16),
        };
        if ack.applied > ack.received {
            return Err(WireError::Malformed("ack applies more than it received"));
        }
        Ok(ack)
    }

    /// Appends the whole frame to `buf`.
    pub fn emit(&self, buf: &mut Vec<u8>) {
        emit_header(buf, MessageKind::Ack, ACK_LEN);
        buf.extend_from_slice(&self.epoch.to_be_bytes());
        buf.extend_from_slice(&[0; 4]);
        buf.extend_from_slice(&self.received.to_be_bytes());
        buf.extend_from_slice(&self.applied.to_be_bytes());
    }
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

/// What one VRRP instance of the sender hears, by its virtual router (VRID and family: the
/// two nodes' configurations name the same routers, in any order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VrrpInstanceReport {
    /// The virtual router id.
    pub vrid: u8,
    /// IPv6 (else IPv4).
    pub ipv6: bool,
    /// The instance is backup and has heard no master for the configured number of
    /// master-down intervals (while the group follows a master on another network).
    pub silent: bool,
    /// The instance's interface received packets lately: the network behind it is alive.
    pub hears: bool,
}

/// What the sender's VRRP instances hear, sent when it changes: the failover link decides
/// which node acts when one network loses its adverts (docs/TAKEOVER.md).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VrrpReport {
    /// One per instance, at most [`MAX_VRRP_INSTANCES`].
    pub instances: Vec<VrrpInstanceReport>,
}

/// The most instances one report carries (one per VRID and family).
pub const MAX_VRRP_INSTANCES: usize = 512;

const VRRP_REPORT_ENTRY_LEN: usize = 4;
const REPORT_SILENT: u8 = 0x01;
const REPORT_HEARS: u8 = 0x02;

/// A checked view of a [`VrrpReport`] body.
///
/// Body: `count: u16`, 2 reserved, then `count` times `vrid: u8`, `family: u8` (4 or 6),
/// `flags: u8` (0x01 silent, 0x02 hears; other bits reserved), 1 reserved. Bytes after the
/// entries (a later minor's) are ignored.
#[derive(Debug, Clone, Copy)]
pub struct VrrpReportView<'a> {
    entries: &'a [u8],
}

impl<'a> VrrpReportView<'a> {
    /// Checks the count, that the entries are all there and their families.
    pub fn new_checked(body: &'a [u8]) -> Result<Self, WireError> {
        let header = body.get(..4).ok_or(WireError::Truncated)?;
        let count = usize::from(u16::from_be_bytes([header[0], header[1]]));
        if count > MAX_VRRP_INSTANCES {
            return Err(WireError::Malformed("too many VRRP instances"));
        }
        let entries = body
            .get(4..4 + count * VRRP_REPORT_ENTRY_LEN)
            .ok_or(WireError::Truncated)?;
        if entries
            .chunks_exact(VRRP_REPORT_ENTRY_LEN)
            .any(|e| e[1] != 4 && e[1] != 6)
        {
            return Err(WireError::Malformed("VRRP report family"));
        }
        Ok(Self { entries })
    }

    /// The owned report.
    pub fn report(&self) -> VrrpReport {
        VrrpReport {
            instances: self
                .entries
                .chunks_exact(VRRP_REPORT_ENTRY_LEN)
                .map(|e| VrrpInstanceReport {
                    vrid: e[0],
                    ipv6: e[1] == 6,
                    silent: e[2] & REPORT_SILENT != 0,
                    hears: e[2] & REPORT_HEARS != 0,
                })
                .collect(),
        }
    }
}

impl VrrpReport {
    /// Appends the whole frame to `buf`. Panics with more than [`MAX_VRRP_INSTANCES`] (the
    /// configuration allows fewer).
    pub fn emit(&self, buf: &mut Vec<u8>) {
        assert!(
            self.instances.len() <= MAX_VRRP_INSTANCES,
            "too many VRRP instances"
        );
        emit_header(
            buf,
            MessageKind::VrrpReport,
            4 + self.instances.len() * VRRP_REPORT_ENTRY_LEN,
        );
        buf.extend_from_slice(&(self.instances.len() as u16).to_be_bytes());
        buf.extend_from_slice(&[0, 0]);
        for i in &self.instances {
            let silent = if i.silent { REPORT_SILENT } else { 0 };
            let hears = if i.hears { REPORT_HEARS } else { 0 };
            buf.extend_from_slice(&[i.vrid, if i.ipv6 { 6 } else { 4 }, silent | hears, 0]);
        }
    }
}

/// The most settings one frame carries.
pub const MAX_SETTINGS: usize = 64;

/// Settings that should be equal on both nodes (the kernel's conntrack table size, TCP
/// tracking options, helpers), as named numbers: the receiver compares them with its own and
/// warns of differences. Sent once when synchronization begins.
///
/// Body: `count: u16`, then `count` times `name_len: u8`, `name` (printable ASCII),
/// `value: u64`.
#[derive(Debug, Clone, Copy)]
pub struct SettingsView<'a> {
    body: &'a [u8],
}

impl<'a> SettingsView<'a> {
    /// Checks every entry of a settings body.
    pub fn new_checked(body: &'a [u8]) -> Result<Self, WireError> {
        let view = Self { body };
        let count = view.count()?;
        if count > MAX_SETTINGS {
            return Err(WireError::Malformed("too many settings"));
        }
        let mut entries = view.entries();
        for _ in 0..count {
            entries.next_entry()?;
        }
        Ok(view)
    }

    fn count(&self) -> Result<usize, WireError> {
        let raw = self.body.get(..2).ok_or(WireError::Truncated)?;
        Ok(usize::from(u16::from_be_bytes([raw[0], raw[1]])))
    }

    /// The settings, in the sender's order.
    pub fn entries(&self) -> SettingsIter<'a> {
        SettingsIter {
            rest: self.body.get(2..).unwrap_or(&[]),
            left: self.count().unwrap_or(0),
        }
    }

    /// Appends a settings frame to `buf`. Panics if there are more than [`MAX_SETTINGS`] or a
    /// name is longer than 255 bytes or not printable ASCII (the caller's own constants).
    pub fn emit<'n>(entries: impl ExactSizeIterator<Item = (&'n str, u64)>, buf: &mut Vec<u8>) {
        let entries: Vec<_> = entries.collect();
        assert!(entries.len() <= MAX_SETTINGS, "too many settings");
        let len = 2 + entries.iter().map(|(n, _)| 1 + n.len() + 8).sum::<usize>();
        emit_header(buf, MessageKind::Settings, len);
        buf.extend_from_slice(&(entries.len() as u16).to_be_bytes());
        for (name, value) in entries {
            assert!(
                name.len() <= 255 && name.bytes().all(|b| b.is_ascii_graphic()),
                "bad setting name {name:?}"
            );
            buf.push(name.len() as u8);
            buf.extend_from_slice(name.as_bytes());
            buf.extend_from_slice(&value.to_be_bytes());
        }
    }
}

/// Iterator over a checked settings body.
#[derive(Debug, Clone)]
pub struct SettingsIter<'a> {
    rest: &'a [u8],
    left: usize,
}

impl<'a> SettingsIter<'a> {
    fn next_entry(&mut self) -> Result<(&'a str, u64), WireError> {
        let (&len, rest) = self.rest.split_first().ok_or(WireError::Truncated)?;
        let len = usize::from(len);
        let name = rest.get(..len).ok_or(WireError::Truncated)?;
        let value = rest.get(len..len + 8).ok_or(WireError::Truncated)?;
        if !name.iter().all(u8::is_ascii_graphic) {
            return Err(WireError::Malformed("setting name is not printable ASCII"));
        }
        self.rest = &rest[len + 8..];
        self.left -= 1;
        // Invariant: checked as printable ASCII just above.
        let name = std::str::from_utf8(name).map_err(|_| WireError::Malformed("setting name"))?;
        let value = u64::from_be_bytes(value.try_into().map_err(|_| WireError::Truncated)?);
        Ok((name, value))
    }
}

impl<'a> Iterator for SettingsIter<'a> {
    type Item = (&'a str, u64);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        // A view made by `new_checked` parses; an error ends the iteration.
        self.next_entry().ok()
    }
}

/// Buckets of a session digest: sessions are spread over them by the top bits of their
/// [`SessionRecord::digest_hash`](crate::SessionRecord::digest_hash), so a difference points at
/// a few buckets and a bucket that keeps changing (sessions still on their way) is told apart
/// from one that is quietly wrong.
pub const DIGEST_BUCKETS: usize = 256;

const DIGEST_HEADER_LEN: usize = 8;

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
        if usize::from(u16::from_be_bytes([body[4], body[5]])) != DIGEST_BUCKETS {
            return Err(WireError::Malformed("digest bucket count"));
        }
        if body.len() < DIGEST_HEADER_LEN + 8 * DIGEST_BUCKETS {
            return Err(WireError::Truncated);
        }
        Ok(Self { body })
    }

    /// The sender's digest round, counting up.
    pub fn round(&self) -> u32 {
        u32::from_be_bytes([self.body[0], self.body[1], self.body[2], self.body[3]])
    }

    /// The buckets.
    pub fn buckets(&self) -> [u64; DIGEST_BUCKETS] {
        let mut buckets = [0; DIGEST_BUCKETS];
        for (i, bucket) in buckets.iter_mut().enumerate() {
            let at = DIGEST_HEADER_LEN + 8 * i;
            let mut raw = [0; 8];
            raw.copy_from_slice(&self.body[at..at + 8]);
            *bucket = u64::from_be_bytes(raw);
        }
        buckets
    }

    /// Appends a digest frame to `buf`.
    pub fn emit(round: u32, buckets: &[u64; DIGEST_BUCKETS], buf: &mut Vec<u8>) {
        emit_header(
            buf,
            MessageKind::Digest,
            DIGEST_HEADER_LEN + 8 * DIGEST_BUCKETS,
        );
        buf.extend_from_slice(&round.to_be_bytes());
        buf.extend_from_slice(&(DIGEST_BUCKETS as u16).to_be_bytes());
        buf.extend_from_slice(&[0, 0]);
        for bucket in buckets {
            buf.extend_from_slice(&bucket.to_be_bytes());
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
        let mut at = BATCH_HEADER_LEN;
        for _ in 0..read_u16(body, 16) {
            if body.len() < at + SECTION_HEADER_LEN {
                return Err(WireError::Truncated);
            }
            let kind = SectionKind::from_code(body[at]);
            let record_len = usize::from(read_u16(body, at + 2));
            let count = read_u32(body, at + 4) as usize;
            if record_len < kind.min_record_len() || (record_len == 0 && count != 0) {
                return Err(WireError::Malformed("section record length"));
            }
            let len = record_len.checked_mul(count).ok_or(WireError::Truncated)?;
            at += SECTION_HEADER_LEN;
            if body.len() - at < len {
                return Err(WireError::Truncated);
            }
            at += len;
        }
        if at != body.len() {
            return Err(WireError::Malformed("trailing bytes after sections"));
        }
        Ok(Self { body })
    }

    /// Sender's epoch.
    pub fn epoch(&self) -> u32 {
        read_u32(self.body, 0)
    }

    /// Batch flags.
    pub fn flags(&self) -> BatchFlags {
        BatchFlags(self.body[4])
    }

    /// Sequence number within the epoch (the first batch of an epoch is 1).
    pub fn seq(&self) -> u64 {
        read_u64(self.body, 8)
    }

    /// Bytes of the body: what the peer made this node receive.
    pub fn body_len(&self) -> usize {
        self.body.len()
    }

    /// The sections, in order.
    pub fn sections(&self) -> impl Iterator<Item = Section<'a>> + 'a {
        let body = self.body;
        let mut at = BATCH_HEADER_LEN;
        (0..read_u16(body, 16)).map(move |_| {
            let kind = SectionKind::from_code(body[at]);
            let record_len = usize::from(read_u16(body, at + 2));
            let count = read_u32(body, at + 4) as usize;
            at += SECTION_HEADER_LEN;
            let records = &body[at..at + record_len * count];
            at += record_len * count;
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
                    let (key, _) = SessionKey::parse(raw)?;
                    Ok(SessionOp::Remove {
                        key,
                        owner: NodeId(read_u32(raw, KEY_LEN)),
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
                key.emit(record);
                record[KEY_LEN..REMOVE_LEN].copy_from_slice(&owner.0.to_be_bytes());
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
        buf.reserve(HEADER_LEN + body_len);
        emit_header(buf, MessageKind::SessionBatch, body_len);
        buf.extend_from_slice(&epoch.to_be_bytes());
        buf.extend_from_slice(&[flags.0, 0, 0, 0]);
        buf.extend_from_slice(&seq.to_be_bytes());
        buf.extend_from_slice(&(present().count() as u16).to_be_bytes());
        buf.extend_from_slice(&[0, 0]);
        for section in present() {
            buf.extend_from_slice(&[section.kind.code(), 0]);
            buf.extend_from_slice(&(section.record_len as u16).to_be_bytes());
            buf.extend_from_slice(&section.count.to_be_bytes());
            buf.extend_from_slice(&section.bytes);
        }
        for section in &mut self.sections {
            section.bytes.clear();
            section.count = 0;
        }
    }
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
    /// A kind this version does not know; the receiver counts and skips it.
    Unknown(u8),
}

impl<'a> Message<'a> {
    /// Parses one whole frame.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, WireError> {
        let frame = Frame::new_checked(bytes)?;
        if frame.version() != VERSION {
            return Err(WireError::UnsupportedVersion(frame.version()));
        }
        let body = &bytes[HEADER_LEN..];
        Ok(match frame.kind() {
            MessageKind::Hello => Self::Hello(Hello::parse(body)?),
            MessageKind::Goodbye => Self::Goodbye(Goodbye::parse(body)?),
            MessageKind::SessionBatch => Self::SessionBatch(BatchView::new_checked(body)?),
            MessageKind::Ack => Self::Ack(Ack::parse(body)?),
            MessageKind::Settings => Self::Settings(SettingsView::new_checked(body)?),
            MessageKind::Digest => Self::Digest(DigestView::new_checked(body)?),
            MessageKind::VrrpReport => Self::VrrpReport(VrrpReportView::new_checked(body)?),
            MessageKind::Unknown(code) => Self::Unknown(code),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::tests::arb_record;
    use proptest::prelude::*;

    fn hello() -> Hello {
        Hello {
            pair_id: 7,
            node_id: 0x0102_0304,
            priority: 200,
            backup_type: BackupType::SYMMETRIC,
            state: SyncState::Synchronization,
            role: Role::Active,
            flags: HelloFlags(HelloFlags::READY),
            epoch: 3,
            hello_interval_ms: 50,
            dead_interval_ms: 150,
            tx_stamp: 1_000_000,
            echo_stamp: 999_000,
            resync_epoch: 0x0a0b_0c0d,
            protocol_minor: 0x0102,
            applied: Some(StreamPosition {
                epoch: 0x1122_3344,
                seq: 5,
            }),
        }
    }

    #[test]
    fn hello_golden_bytes() {
        let mut buf = Vec::new();
        hello().emit(&mut buf);
        let expected: &[u8] = &[
            b'F', b'O', 1, 1, 0, 0, 0, 76, // header
            0, 0, 0, 7, 1, 2, 3, 4, 200, 0, 2, 1, 1, 0, 0, 0, // pair, node, prio..flags
            0, 0, 0, 3, 0, 0, 0, 50, 0, 0, 0, 150, // epoch, intervals
            0, 0, 0, 0, 0, 0x0f, 0x42, 0x40, 0, 0, 0, 0, 0, 0x0f, 0x3e, 0x58, // stamps
            0x0a, 0x0b, 0x0c, 0x0d, // resync epoch
            0x01, 0x02, 0, 0, // protocol minor, reserved
            0x11, 0x22, 0x33, 0x44, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, // applied
        ];
        assert_eq!(buf, expected);
        match Message::parse(&buf).unwrap() {
            Message::Hello(parsed) => assert_eq!(parsed, hello()),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn wrong_version_magic_and_sizes_are_errors() {
        let mut buf = Vec::new();
        hello().emit(&mut buf);
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

    #[test]
    fn unknown_kinds_and_sections_survive_parsing() {
        let frame = [b'F', b'O', 1, 99, 0, 0, 0, 8];
        assert!(matches!(Message::parse(&frame), Ok(Message::Unknown(99))));

        let mut buf = Vec::new();
        emit_header(
            &mut buf,
            MessageKind::SessionBatch,
            BATCH_HEADER_LEN + SECTION_HEADER_LEN + 6,
        );
        buf.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0]);
        buf.extend_from_slice(&[42, 0, 0, 3, 0, 0, 0, 2, 1, 2, 3, 4, 5, 6]);
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

    #[test]
    fn vrrp_report_golden_bytes_and_refusals() {
        let report = VrrpReport {
            instances: vec![
                VrrpInstanceReport {
                    vrid: 51,
                    ipv6: false,
                    silent: true,
                    hears: true,
                },
                VrrpInstanceReport {
                    vrid: 7,
                    ipv6: true,
                    silent: false,
                    hears: false,
                },
            ],
        };
        let mut buf = Vec::new();
        report.emit(&mut buf);
        assert_eq!(
            buf,
            [
                b'F', b'O', VERSION, 7, 0, 0, 0, 20, 0, 2, 0, 0, 51, 4, 3, 0, 7, 6, 0, 0
            ]
        );
        let body = &buf[HEADER_LEN..];
        // A later minor may append: ignored.
        let mut longer = body.to_vec();
        longer.extend_from_slice(&[9; 8]);
        assert_eq!(
            VrrpReportView::new_checked(&longer).unwrap().report(),
            report
        );
        assert!(matches!(
            VrrpReportView::new_checked(&body[..body.len() - 1]),
            Err(WireError::Truncated)
        ));
        let mut family = body.to_vec();
        family[5] = 5;
        assert!(VrrpReportView::new_checked(&family).is_err());
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

        #[test]
        fn vrrp_report_round_trips(entries in proptest::collection::vec(any::<(u8, bool, bool, bool)>(), 0..40)) {
            let report = VrrpReport {
                instances: entries
                    .into_iter()
                    .map(|(vrid, ipv6, silent, hears)| VrrpInstanceReport { vrid, ipv6, silent, hears })
                    .collect(),
            };
            let mut buf = Vec::new();
            report.emit(&mut buf);
            let Message::VrrpReport(view) = Message::parse(&buf).unwrap() else {
                panic!("not a report")
            };
            prop_assert_eq!(view.report(), report);
        }

        #[test]
        fn hello_and_ack_round_trip(h in any::<(u32, u32, u8, u8, u8, u32, u32, u32, u64, u64)>(), minor: u16, state in 0u8..3, role in 0u8..2, ack in any::<(u32, u64, u64)>(), applied in any::<(u32, u64)>()) {
            let hello = Hello {
                pair_id: h.0, node_id: h.1, priority: h.2, backup_type: BackupType(h.3),
                state: SyncState::from_code(state).unwrap(), role: Role::from_code(role).unwrap(),
                flags: HelloFlags(h.4), epoch: h.5, hello_interval_ms: h.6, dead_interval_ms: h.7,
                tx_stamp: h.8, echo_stamp: h.9, resync_epoch: h.5 ^ 1, protocol_minor: minor,
                applied: Some(StreamPosition { epoch: applied.0, seq: applied.1 }).filter(|p| p.seq > 0),
            };
            let mut buf = vec![];
            hello.emit(&mut buf);
            prop_assert!(matches!(Message::parse(&buf), Ok(Message::Hello(p)) if p == hello));
            let ack = Ack { epoch: ack.0, received: ack.1.max(ack.2), applied: ack.1.min(ack.2) };
            let mut buf = vec![];
            ack.emit(&mut buf);
            prop_assert!(matches!(Message::parse(&buf), Ok(Message::Ack(p)) if p == ack));
        }

        /// A newer minor appends fields: whatever follows the fields this version knows is
        /// ignored, and a 1.0 hello (which ends before the minor) reads as minor 0.
        #[test]
        fn appended_fields_are_ignored(minor: u16, extra in proptest::collection::vec(any::<u8>(), 0..64), ack in any::<(u32, u64)>()) {
            let sent = Hello { protocol_minor: minor, ..hello() };
            let appended = |mut frame: Vec<u8>, extra: &[u8]| {
                frame.extend_from_slice(extra);
                let len = frame.len() as u32;
                frame[4..8].copy_from_slice(&len.to_be_bytes());
                frame
            };
            let mut buf = Vec::new();
            sent.emit(&mut buf);
            let longer = appended(buf.clone(), &extra);
            prop_assert!(matches!(Message::parse(&longer), Ok(Message::Hello(p)) if p == sent));
            let release_1_0 = appended(buf[..HEADER_LEN + HELLO_LEN_1_0].to_vec(), &[]);
            let want = Hello { protocol_minor: 0, applied: None, ..sent };
            prop_assert!(matches!(Message::parse(&release_1_0), Ok(Message::Hello(p)) if p == want));
            let release_1_2 = appended(buf[..HEADER_LEN + HELLO_LEN_1_1].to_vec(), &[]);
            let want = Hello { applied: None, ..sent };
            prop_assert!(matches!(Message::parse(&release_1_2), Ok(Message::Hello(p)) if p == want));
            let sent = Ack { epoch: ack.0, received: ack.1, applied: ack.1 };
            let mut buf = Vec::new();
            sent.emit(&mut buf);
            let longer = appended(buf, &extra);
            prop_assert!(matches!(Message::parse(&longer), Ok(Message::Ack(p)) if p == sent));
        }

        /// The same decoders the fuzz targets drive: arbitrary bytes are an error or a message.
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(Message::SessionBatch(batch)) = Message::parse(&bytes) {
                for section in batch.sections() {
                    let _ = section.ops().count();
                }
            }
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

    #[test]
    fn settings_round_trip_and_bad_bodies_are_errors() {
        let mut buf = Vec::new();
        let sent = [
            ("nf_conntrack_max", 262_144u64),
            ("nf_conntrack_tcp_loose", 0),
        ];
        SettingsView::emit(sent.iter().copied(), &mut buf);
        let Message::Settings(view) = Message::parse(&buf).unwrap() else {
            panic!("not settings")
        };
        assert_eq!(view.entries().collect::<Vec<_>>(), sent);
        let body = &buf[HEADER_LEN..];
        for cut in 0..body.len() {
            assert!(
                SettingsView::new_checked(&body[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut bad = body.to_vec();
        bad[3] = b' ';
        assert!(SettingsView::new_checked(&bad).is_err(), "space in a name");
    }

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

        #[test]
        fn settings_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(view) = SettingsView::new_checked(&body) {
                let _ = view.entries().count();
            }
        }
    }
}
