//! The failover link of failoverd: an authenticated, encrypted connection between exactly two
//! nodes, with a latency-critical **control** channel (hellos, acks, goodbye) that never waits
//! behind the bulk **data** channel (session batches).
//!
//! - [`Identity`]: a node's key pair and self-signed certificate, stored as one PEM file;
//!   [`Fingerprint`] pins a peer (`sha256:<hex>` of its SubjectPublicKeyInfo).
//! - [`spawn`]: runs the link in tokio tasks (the control connection on a thread of its own)
//!   and returns a [`LinkSender`] and a [`LinkEvents`].
//!
//! Transport (chosen by measurement, see `docs/TRANSPORT.md`): mutual TLS 1.3 (rustls, ring),
//! each side accepting exactly the pinned keys ([`Pins`]: one, or two while the peer's key is
//! rotated), over **two TCP connections**, one per channel, so a heartbeat never queues behind
//! bulk data in a TCP send buffer. The node whose key sorts first dials; the other accepts (and
//! probes, slowly, while no link is up). Only the peer's address may connect. Both connections form one link: if either drops, both
//! are closed and the link reports [`LinkEvent::Down`] once.
//!
//! Not provided: more than two nodes, TLS 1.2, certificate chains or expiry (keys are pinned, as
//! with SSH host keys), and liveness detection (the core detects a dead peer by missed hellos and
//! calls [`LinkSender::close`]).

pub mod heartbeat;
mod identity;
mod link;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;

pub use heartbeat::{
    HeartbeatConfig, HeartbeatEvents, HeartbeatSender, HeartbeatStats, spawn_heartbeat,
};
pub use identity::{Fingerprint, FingerprintParseError, Identity, Pins, PinsError, fingerprint_of};
pub use link::{
    CONTROL_QUEUE_FRAMES, Channel, ChannelStats, ControlTap, DATA_QUEUE_FRAMES,
    DEFAULT_RECONNECT_MAX, DEFAULT_RECONNECT_MIN, HANDSHAKE_TIMEOUT, LinkConfig, LinkEvent,
    LinkEvents, LinkSender, LinkStats, TapEvent, spawn,
};

/// Gives the calling thread real-time priority `priority` (SCHED_FIFO, 1..=99), so that it
/// runs as soon as it is ready however busy the normal threads keep the cores. Needs
/// CAP_SYS_NICE; the error says why it was refused.
#[allow(unsafe_code)] // sched_setscheduler: libc has no safe wrapper.
pub fn set_realtime_priority(priority: u8) -> std::io::Result<()> {
    let param = libc::sched_param {
        sched_priority: libc::c_int::from(priority),
    };
    // SAFETY: a plain system call on the calling thread (pid 0) with a valid parameter.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Errors of the link crate, grouped by who has to act.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    // --- The operator's files and configuration. ---
    /// The identity file does not exist.
    #[error("identity file {}: not found (create one with `failoverctl keygen`)", .path.display())]
    IdentityMissing {
        /// The file.
        path: PathBuf,
    },
    /// The identity file exists but cannot be read.
    #[error("identity file {}: cannot be read: {source}", .path.display())]
    IdentityUnreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The identity file holds a private key that group or others may read.
    #[error(
        "identity file {}: mode {mode:04o} lets other users read the private key; run `chmod 600 {}`",
        .path.display(),
        .path.display()
    )]
    IdentityPermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The identity file is not a usable key and certificate.
    #[error("identity file {}: {reason}", .path.display())]
    IdentityInvalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The link configuration cannot work.
    #[error("invalid failover link configuration: {0}")]
    Config(String),
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Building a TLS configuration failed (an unusable key).
    #[error("TLS setup failed: {0}")]
    Tls(#[from] rustls::Error),

    // --- The caller's use of the API. ---
    /// [`spawn`] was called outside a tokio runtime.
    #[error("the failover link must be started inside a tokio runtime")]
    NoRuntime,
    /// The frame handed to [`LinkSender::send`] is not one well-formed wire frame.
    #[error("refusing to send a malformed frame: {0}")]
    InvalidFrame(failoverd_wire::WireError),

    // --- The link's state: retry later. ---
    /// No peer is connected.
    #[error("the failover link is not connected")]
    NotConnected,
    /// The channel's outbound queue is full (backpressure: retry, or use
    /// [`LinkSender::send_async`]).
    #[error("the failover link's {0} queue is full")]
    Full(Channel),
}
