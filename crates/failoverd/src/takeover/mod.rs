//! Takeover: what moves the traffic when the role changes (docs/TAKEOVER.md).

pub mod command;
pub mod frr;
pub mod hooks;
