//! The hello: negotiation and liveness, and the vocabulary it carries (states, roles,
//! versions).

use std::fmt;

use super::{MessageKind, VERSION, emit_frame};
use crate::{WireError, read_u16, read_u32, read_u64};

/// A hello of protocol 1.0, which ends with `resync_epoch`.
const HELLO_LEN_1_0: usize = field::RESYNC_EPOCH.end;
/// A hello of protocol 1.1 and 1.2: 1.0's, then `protocol_minor` and 2 reserved bytes.
const HELLO_LEN_1_1: usize = field::APPLIED_EPOCH.start;
/// A hello of this version: 1.1's, then [`Hello::applied`] (epoch, 4 reserved bytes, seq).
const HELLO_LEN: usize = field::APPLIED_SEQ.end;

/// Byte offsets of the hello body (see the layout in the crate documentation), each given once
/// here. Reserved bytes (zero) fill the gaps.
mod field {
    use crate::Field;

    pub(crate) const PAIR_ID: Field = 0..4;
    pub(crate) const NODE_ID: Field = 4..8;
    pub(crate) const PRIORITY: usize = 8;
    pub(crate) const BACKUP_TYPE: usize = 9;
    pub(crate) const STATE: usize = 10;
    pub(crate) const ROLE: usize = 11;
    pub(crate) const FLAGS: usize = 12;
    pub(crate) const EPOCH: Field = 16..20;
    pub(crate) const HELLO_INTERVAL: Field = 20..24;
    pub(crate) const DEAD_INTERVAL: Field = 24..28;
    pub(crate) const TX_STAMP: Field = 28..36;
    pub(crate) const ECHO_STAMP: Field = 36..44;
    pub(crate) const RESYNC_EPOCH: Field = 44..48;
    /// Since 1.1.
    pub(crate) const PROTOCOL_MINOR: Field = 48..50;
    /// Since 1.3, both; a sequence number of 0 means none.
    pub(crate) const APPLIED_EPOCH: Field = 52..56;
    pub(crate) const APPLIED_SEQ: Field = 60..68;
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
    /// The sender is standby because its VRRP group heard a master of higher priority, not
    /// because it failed: the sessions it ended while it forwarded ended for real (a split
    /// brain's traffic or the moments before a preemption, not a failing node's flush).
    pub const OUTRANKED: u8 = 0x10;

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
    /// hello; 1.2 adds [`BatchFlags::RESUMED`](crate::BatchFlags::RESUMED); 1.3 adds [`Hello::applied`] and
    /// [`VrrpReport`](crate::VrrpReport); 1.4 adds
    /// [`ConfigSyncMessage`](crate::ConfigSyncMessage).
    pub const CURRENT: Self = Self {
        major: VERSION,
        minor: 4,
    };

    /// The first version with [`ConfigSyncMessage`](crate::ConfigSyncMessage): a node sends
    /// config-sync messages only to a peer whose common version is at least this.
    pub const CONFIG_SYNC: Self = Self {
        major: VERSION,
        minor: 4,
    };

    /// The first version with [`VrrpReport`](crate::VrrpReport).
    pub const VRRP_REPORT: Self = Self {
        major: VERSION,
        minor: 3,
    };

    /// The first version with resumed bulk syncs ([`BatchFlags::RESUMED`](crate::BatchFlags::RESUMED)).
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
    /// The stream's epoch: its sender starts a new one, with a bulk sync, on each entry into
    /// synchronization and each resync.
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
            pair_id: read_u32(body, field::PAIR_ID),
            node_id: read_u32(body, field::NODE_ID),
            priority: body[field::PRIORITY],
            backup_type: BackupType(body[field::BACKUP_TYPE]),
            state: SyncState::from_code(body[field::STATE])?,
            role: Role::from_code(body[field::ROLE])?,
            flags: HelloFlags(body[field::FLAGS]),
            epoch: read_u32(body, field::EPOCH),
            hello_interval_ms: read_u32(body, field::HELLO_INTERVAL),
            dead_interval_ms: read_u32(body, field::DEAD_INTERVAL),
            tx_stamp: read_u64(body, field::TX_STAMP),
            echo_stamp: read_u64(body, field::ECHO_STAMP),
            resync_epoch: read_u32(body, field::RESYNC_EPOCH),
            protocol_minor: if body.len() >= HELLO_LEN_1_1 {
                read_u16(body, field::PROTOCOL_MINOR)
            } else {
                0
            },
            applied: if body.len() >= HELLO_LEN {
                Some(StreamPosition {
                    epoch: read_u32(body, field::APPLIED_EPOCH),
                    seq: read_u64(body, field::APPLIED_SEQ),
                })
                .filter(|position| position.seq > 0)
            } else {
                None
            },
        })
    }

    /// Appends the whole frame to `buf`.
    pub fn emit(&self, buf: &mut Vec<u8>) {
        let body = emit_frame(buf, MessageKind::Hello, HELLO_LEN);
        body[field::PAIR_ID].copy_from_slice(&self.pair_id.to_be_bytes());
        body[field::NODE_ID].copy_from_slice(&self.node_id.to_be_bytes());
        body[field::PRIORITY] = self.priority;
        body[field::BACKUP_TYPE] = self.backup_type.0;
        body[field::STATE] = self.state.code();
        body[field::ROLE] = self.role.code();
        body[field::FLAGS] = self.flags.0;
        body[field::EPOCH].copy_from_slice(&self.epoch.to_be_bytes());
        body[field::HELLO_INTERVAL].copy_from_slice(&self.hello_interval_ms.to_be_bytes());
        body[field::DEAD_INTERVAL].copy_from_slice(&self.dead_interval_ms.to_be_bytes());
        body[field::TX_STAMP].copy_from_slice(&self.tx_stamp.to_be_bytes());
        body[field::ECHO_STAMP].copy_from_slice(&self.echo_stamp.to_be_bytes());
        body[field::RESYNC_EPOCH].copy_from_slice(&self.resync_epoch.to_be_bytes());
        body[field::PROTOCOL_MINOR].copy_from_slice(&self.protocol_minor.to_be_bytes());
        let applied = self.applied.unwrap_or(StreamPosition { epoch: 0, seq: 0 });
        body[field::APPLIED_EPOCH].copy_from_slice(&applied.epoch.to_be_bytes());
        body[field::APPLIED_SEQ].copy_from_slice(&applied.seq.to_be_bytes());
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::message::tests::appended;
    use crate::message::{HEADER_LEN, Message};
    use proptest::prelude::*;

    pub(crate) fn hello() -> Hello {
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

    proptest! {
        #[test]
        fn hello_round_trips(h in any::<(u32, u32, u8, u8, u8, u32, u32, u32, u64, u64)>(), minor: u16, state in 0u8..3, role in 0u8..2, applied in any::<(u32, u64)>()) {
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
        }

        /// A newer minor appends fields: whatever follows the fields this version knows is
        /// ignored, and a 1.0 hello (which ends before the minor) reads as minor 0.
        #[test]
        fn appended_fields_are_ignored(minor: u16, extra in proptest::collection::vec(any::<u8>(), 0..64)) {
            let sent = Hello { protocol_minor: minor, ..hello() };
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
        }
    }
}
