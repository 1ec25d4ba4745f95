//! Why backend work failed, as data: the node's results ([`crate::ActionResult`]) and its
//! events ([`crate::Event::ApplyFailed`]) carry these, and the node tells one failure from
//! another by them.

/// Why a whole backend action failed (a dump, a sweep, an adoption or a digest): the backend's
/// own error, kept as data so the core can tell one failure from another. Displays as the
/// backend's error does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    /// Change events were lost; the table must be read again from a dump.
    #[error("{} session change events lost: resynchronise from a dump", lost_count(*.lost))]
    Overrun {
        /// How many events were lost, when the backend can tell: a netlink socket reports
        /// ENOBUFS without a count.
        lost: Option<u64>,
    },
    /// The backend could not reach its table (for a kernel backend: a netlink socket error, or
    /// missing CAP_NET_ADMIN).
    #[error("session table I/O failed: {detail}")]
    Io {
        /// The I/O error's kind.
        kind: std::io::ErrorKind,
        /// The I/O error as it displays.
        detail: String,
    },
}

fn lost_count(lost: Option<u64>) -> String {
    lost.map_or_else(
        || "an unknown number of".to_string(),
        |lost| lost.to_string(),
    )
}

/// Why a backend refused one op of an [`Action::Apply`](crate::Action::Apply); the rest of the batch is applied
/// regardless.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The table is at its size limit (`nf_conntrack_max` for the kernel), so a new entry was
    /// refused. Replacing an existing entry never fails this way.
    #[error("session table full: new entry refused")]
    TableFull,
    /// The table refused the entry for another reason, given by the backend (for a kernel
    /// backend, the errno and the attribute it concerns).
    #[error("session entry refused: {0}")]
    Refused(String),
}
