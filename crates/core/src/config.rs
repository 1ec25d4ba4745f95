//! Settings of one node's core. The daemon builds this from the config file.

use std::time::Duration;

use failoverd_wire::{BackupType, NodeId};

use crate::filter::ReplicationFilter;

/// How one node negotiates and replicates.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's id (from its key).
    pub node_id: NodeId,
    /// The pair both nodes belong to; a peer announcing another pair is incompatible.
    pub pair_id: u32,
    /// Who decides the role: the election over the failover link, or a takeover mechanism
    /// outside the core (VRRP) through [`crate::Node::set_forwarding`].
    pub role_authority: RoleAuthority,
    /// Election priority when no takeover mechanism is configured: the higher is active.
    pub priority: u8,
    /// Symmetric (active/standby) or asymmetric (both forward).
    pub backup_type: BackupType,
    /// Take the active role back from a healthy peer of lower priority (once ready).
    pub preempt: bool,
    /// Interval between hellos.
    pub hello_interval: Duration,
    /// The peer is dead after this long without a hello.
    pub dead_interval: Duration,
    /// Hold-down after start and after leaving Synchronization.
    pub silence_timer: Duration,
    /// How long a delete from the peer waits before it is applied; dropped if this node takes
    /// over meanwhile without the peer handing over on purpose (and so are deletes arriving
    /// within one hold after such a takeover, unless the peer still says it is active then: a
    /// split brain), so a failing peer's last burst of deletes (a flush as its interfaces go
    /// down) does not wipe the sessions the survivor is about to carry. Longer than the role authority takes to move the role after a failure (the
    /// daemon uses twice its detection time: the dead interval, or VRRP's longest
    /// `Master_Down_Interval`); zero applies deletes at once. A dropped delete leaves a stale
    /// copy that the table's own ageing removes.
    pub remove_hold: Duration,
    /// The configured peer (from its pinned key), if known before it is heard: entries a
    /// backend finds at start are attributed to it, and a node that becomes active without
    /// having synchronized adopts them.
    pub peer: Option<NodeId>,
    /// A node that has not heard its peer since it started and becomes active alone adopts the
    /// entries attributed to [`peer`](Self::peer) only after this long without the peer: a
    /// restarted standby whose failover link is still coming up must not claim the active
    /// peer's sessions (its bulk sync and sweep would then leave stale entries behind).
    pub adopt_alone_after: Duration,
    /// Resend unacknowledged batches after this long without progress.
    pub retransmit_timeout: Duration,
    /// The link delivers in order and loses nothing while it is up (TLS over TCP): after no
    /// progress, only probe for a lost acknowledgement instead of resending what is still on
    /// its way (which, under load, would only deepen the queue).
    pub reliable_link: bool,
    /// Largest session-batch frame in bytes.
    pub max_batch_bytes: usize,
    /// Batches sent but not yet applied by the peer, at most.
    pub max_in_flight: usize,
    /// Records per apply action at most: bounds how long one apply holds the backend.
    pub max_apply_slice: usize,
    /// Local changes queued for the peer (coalesced, not yet sent) above which the node stops
    /// asking for more while synchronizing (see [`crate::Node::wants_local_changes`]): past what
    /// the link carries, the backend's own change queue is the buffer.
    pub max_pending_changes: usize,
    /// How often each node sends a digest of its sessions for the peer to compare with its
    /// copies (anti-entropy: drift that no event reported is found and resynchronized); zero
    /// turns it off. Each digest costs a dump of the table on both nodes.
    pub digest_interval: Duration,
    /// Which sessions this node replicates. The backend applies it to local changes; the core
    /// applies it to the peer's ops, refusing (and counting) those outside it.
    pub filter: ReplicationFilter,
    /// Bytes of the peer's received batches held in memory (parsed, waiting for a gap to fill
    /// or for the backend), at most. An honest peer keeps at most `max_in_flight` batches of
    /// `max_batch_bytes` unapplied, so this must be at least that much (both nodes run the
    /// same limits); past it a batch ahead of a gap is dropped (the peer resends it), and one
    /// in order resets the link (the peer ignored its window).
    pub max_peer_buffer: usize,
    /// Sessions remembered as changed or deleted while the peer is away, at most (about 60
    /// bytes each): when the two meet again, these changes win over the peer's older state of
    /// the same sessions (a split brain's deletes are not undone by the other node's copies).
    /// Past the bound the oldest are forgotten, and counted.
    pub apart_log_limit: usize,
    /// Settings that should be equal on both nodes (the kernel's conntrack table size and
    /// tracking options), sent to the peer when synchronization begins; each difference is
    /// reported as [`crate::Event::SettingDiffers`].
    pub settings: Vec<(String, u64)>,
    /// Entries kept in the event history.
    pub history_len: usize,
    /// Seed of the node's random number generator (epochs).
    pub seed: u64,
}

/// Who decides which node is active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RoleAuthority {
    /// The core elects over the failover link: priority, preemption once ready, switchover.
    #[default]
    Election,
    /// Whoever forwards is active: a takeover mechanism (VRRP) reports it with
    /// [`crate::Node::set_forwarding`], and gates its own preemption on
    /// [`crate::Node::is_ready`].
    External,
}

/// The defaults of the settings an operator can set in the configuration file. They are written
/// only here: the file's key table (`failoverd-control`) reads them, so the daemon without a key
/// set, the simulation and the tests all run the same values.
pub mod defaults {
    use std::time::Duration;

    use failoverd_wire::BackupType;

    /// `pair.id`.
    pub const PAIR_ID: u32 = 1;
    /// `node.priority`.
    pub const PRIORITY: u8 = 100;
    /// `node.preempt`.
    pub const PREEMPT: bool = true;
    /// `pair.backup`.
    pub const BACKUP_TYPE: BackupType = BackupType::SYMMETRIC;
    /// `timers.hello_interval_ms`: sub-second detection (3 missed hellos) with room for a
    /// loaded 2-core machine.
    pub const HELLO_INTERVAL: Duration = Duration::from_millis(50);
    /// `timers.dead_interval_ms`.
    pub const DEAD_INTERVAL: Duration = Duration::from_millis(150);
    /// `timers.silence_ms`.
    pub const SILENCE_TIMER: Duration = Duration::from_secs(1);
    /// `sessions.digest_interval_ms`.
    pub const DIGEST_INTERVAL: Duration = Duration::from_secs(60);
    /// `sessions.peer_buffer_mib`, in bytes.
    pub const MAX_PEER_BUFFER: usize = 32 << 20;
    /// `sessions.conntrack.event_buffer_bytes`.
    pub const EVENT_BUFFER_BYTES: usize = 64 << 20;
    /// `sessions.conntrack.peer_entry_timeout_secs`.
    pub const PEER_ENTRY_TIMEOUT_SECS: u32 = 3600;
    /// `sessions.conntrack.owner_mark`: bits 30 ("this node's") and 31 ("the peer's"), the top
    /// of the mark, far from the small values rulesets usually give.
    pub const OWNER_MARK: u32 = 0xc000_0000;
}

/// The shortest hello interval: below 10 ms the hellos cost more than the detection they buy.
pub const MIN_HELLO_INTERVAL: Duration = Duration::from_millis(10);

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            node_id: NodeId(0),
            pair_id: defaults::PAIR_ID,
            role_authority: RoleAuthority::Election,
            priority: defaults::PRIORITY,
            backup_type: defaults::BACKUP_TYPE,
            preempt: defaults::PREEMPT,
            hello_interval: defaults::HELLO_INTERVAL,
            dead_interval: defaults::DEAD_INTERVAL,
            silence_timer: defaults::SILENCE_TIMER,
            remove_hold: Duration::from_millis(300),
            peer: None,
            adopt_alone_after: Duration::from_secs(10),
            retransmit_timeout: Duration::from_millis(200),
            reliable_link: false,
            max_batch_bytes: 64 * 1024,
            max_in_flight: 128,
            max_apply_slice: 4096,
            max_pending_changes: 8 * 1024,
            digest_interval: defaults::DIGEST_INTERVAL,
            filter: ReplicationFilter::default(),
            max_peer_buffer: defaults::MAX_PEER_BUFFER,
            apart_log_limit: 256 * 1024,
            settings: Vec::new(),
            history_len: 256,
            seed: 0,
        }
    }
}

/// A setting that cannot work, with what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeConfigError {
    /// Hellos faster than the scheduler can honour.
    #[error("hello interval {0:?} is below the 10 ms minimum")]
    HelloTooShort(Duration),
    /// A dead interval that a single late hello would trip.
    #[error("dead interval {dead:?} must be at least twice the hello interval {hello:?}")]
    DeadTooShort {
        /// Configured dead interval.
        dead: Duration,
        /// Configured hello interval.
        hello: Duration,
    },
    /// A batch that cannot hold one record.
    #[error("max batch size {0} bytes cannot hold a session record")]
    BatchTooSmall(usize),
    /// More settings than one frame carries.
    #[error("{0} settings to compare; at most {max}", max = failoverd_wire::MAX_SETTINGS)]
    TooManySettings(usize),
    /// A peer buffer smaller than an honest peer's window.
    #[error("peer buffer of {buffer} bytes is below the in-flight window of {window} bytes")]
    PeerBufferTooSmall {
        /// Configured bound.
        buffer: usize,
        /// `max_in_flight` batches of `max_batch_bytes`.
        window: usize,
    },
    /// Nothing could ever be sent or applied.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
}

impl NodeConfig {
    /// Checks that the settings can work together.
    pub fn validate(&self) -> Result<(), NodeConfigError> {
        if self.hello_interval < MIN_HELLO_INTERVAL {
            return Err(NodeConfigError::HelloTooShort(self.hello_interval));
        }
        if self.dead_interval < 2 * self.hello_interval {
            return Err(NodeConfigError::DeadTooShort {
                dead: self.dead_interval,
                hello: self.hello_interval,
            });
        }
        let smallest = failoverd_wire::HEADER_LEN
            + failoverd_wire::BATCH_HEADER_LEN
            + 8
            + failoverd_wire::RECORD_LEN;
        if self.max_batch_bytes < smallest || self.max_batch_bytes > failoverd_wire::MAX_FRAME_LEN {
            return Err(NodeConfigError::BatchTooSmall(self.max_batch_bytes));
        }
        if self.max_in_flight == 0 {
            return Err(NodeConfigError::Zero("max in-flight batches"));
        }
        let window = self.max_in_flight.saturating_mul(self.max_batch_bytes);
        if self.max_peer_buffer < window {
            return Err(NodeConfigError::PeerBufferTooSmall {
                buffer: self.max_peer_buffer,
                window,
            });
        }
        if self.max_apply_slice == 0 {
            return Err(NodeConfigError::Zero("max apply slice"));
        }
        if self.settings.len() > failoverd_wire::MAX_SETTINGS {
            return Err(NodeConfigError::TooManySettings(self.settings.len()));
        }
        if self.max_pending_changes == 0 {
            return Err(NodeConfigError::Zero("max pending changes"));
        }
        Ok(())
    }
}
