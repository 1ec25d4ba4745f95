//! The session-sync engine, one half per direction.

pub(crate) mod inbound;
pub(crate) mod outbound;
