//! The failover link's two paths: what the core tells the link, and the link keeps apart.

use std::fmt;

/// Which path of the failover link a frame takes. Control frames (hellos, acks, goodbye) must
/// never wait behind data frames (session batches), so each path is a connection of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// Hellos, acks, goodbye: small and latency-critical.
    Control,
    /// Session batches and other bulk transfers.
    Data,
}

impl Channel {
    /// Both paths, control first.
    pub const ALL: [Channel; 2] = [Channel::Control, Channel::Data];

    /// The path's position in [`Channel::ALL`] (an index into per-path arrays).
    pub fn index(self) -> usize {
        match self {
            Channel::Control => 0,
            Channel::Data => 1,
        }
    }

    /// The other path.
    pub fn other(self) -> Channel {
        match self {
            Channel::Control => Channel::Data,
            Channel::Data => Channel::Control,
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Channel::Control => "control",
            Channel::Data => "data",
        })
    }
}
