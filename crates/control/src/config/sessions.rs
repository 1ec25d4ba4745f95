//! `[sessions]` and `[sessions.conntrack]`: which session table is replicated, and how.

use std::time::Duration;

use failoverd_core::defaults;
use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use super::ConfigError;
use super::source::Source;
use super::table::expected;
use super::table::{conntrack, sessions};
use super::values::{int, millis};
use crate::protocol::BackendKind;

/// `[sessions]`: the session-table backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionsSection {
    /// `backend`.
    pub backend: BackendKind,
    /// `digest_interval_ms` (0 turns it off): how often each node sends a
    /// digest of its sessions for the peer to compare with its copies (anti-entropy). Each
    /// costs a dump of the table on both nodes.
    pub digest_interval: Duration,
    /// `peer_buffer_mib`: the peer's received batches held in memory
    /// (ahead of a gap, or waiting for the backend), at most, in bytes. An honest peer keeps
    /// at most 8 MiB unapplied; past the bound a batch ahead of a gap is dropped (the peer
    /// resends it) and one in order resets the link.
    pub peer_buffer: usize,
    /// `[sessions.conntrack]`: settings of the kernel backend (read only with `backend =
    /// "conntrack"`).
    pub conntrack: ConntrackSection,
}

/// `[sessions.conntrack]`: the Linux kernel's connection-tracking table over ctnetlink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConntrackSection {
    /// `event_buffer_bytes`: the receive buffer of the event socket; a burst
    /// larger than it overruns, which costs a resynchronization.
    pub event_buffer_bytes: usize,
    /// `peer_entry_timeout_secs`: the least timeout of the peer's entries in
    /// this node's kernel, re-armed while the peer holds them (they see no packets here).
    pub peer_entry_timeout_secs: u32,
    /// `owner_mark`: the two conntrack-mark bits that record in each
    /// kernel entry whose session it is (the lower: this node's, the higher: the peer's), so a
    /// restarted daemon keeps its own sessions; 0 turns the stamp off.
    pub owner_mark: u32,
    /// `zones` (default all): replicate only entries of these conntrack zones.
    pub zones: Vec<u16>,
    /// `protocols` (default all): replicate only these IP protocols.
    pub protocols: Vec<u8>,
    /// `include` (default everything): replicate only entries whose original source or
    /// destination is inside one of these networks.
    pub include: Vec<IpNet>,
    /// `exclude`: never replicate entries whose original source or destination is inside one
    /// of these networks (loopback and the failover link's own addresses always are).
    pub exclude: Vec<IpNet>,
}

impl Default for ConntrackSection {
    fn default() -> Self {
        Self {
            event_buffer_bytes: defaults::EVENT_BUFFER_BYTES,
            peer_entry_timeout_secs: defaults::PEER_ENTRY_TIMEOUT_SECS,
            owner_mark: defaults::OWNER_MARK,
            zones: Vec::new(),
            protocols: Vec::new(),
            include: Vec::new(),
            exclude: Vec::new(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSessions {
    backend: Option<BackendKind>,
    digest_interval_ms: Option<Spanned<i64>>,
    peer_buffer_mib: Option<Spanned<i64>>,
    conntrack: Option<RawConntrack>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConntrack {
    event_buffer_bytes: Option<Spanned<i64>>,
    peer_entry_timeout_secs: Option<Spanned<i64>>,
    owner_mark: Option<Spanned<i64>>,
    zones: Option<Vec<Spanned<i64>>>,
    protocols: Option<Vec<Spanned<String>>>,
    include: Option<Vec<Spanned<String>>>,
    exclude: Option<Vec<Spanned<String>>>,
}

impl RawSessions {
    pub(super) fn validate(self, source: &Source<'_>) -> Result<SessionsSection, ConfigError> {
        let backend = self
            .backend
            .unwrap_or_else(|| sessions::BACKEND.default_enum());
        // Read whatever the backend, so the example can show every key: a memory backend
        // ignores it.
        let conntrack = match self.conntrack {
            Some(raw) => raw.validate(source)?,
            None => ConntrackSection::default(),
        };
        let digest = int(
            source,
            &sessions::DIGEST_INTERVAL_MS,
            self.digest_interval_ms.as_ref(),
        )?;
        let peer_buffer = int(
            source,
            &sessions::PEER_BUFFER_MIB,
            self.peer_buffer_mib.as_ref(),
        )?;
        Ok(SessionsSection {
            backend,
            digest_interval: millis(digest.value),
            // Invariant: `int` checked the range.
            peer_buffer: (peer_buffer.value as usize) << 20,
            conntrack,
        })
    }
}

impl RawConntrack {
    fn validate(self, source: &Source<'_>) -> Result<ConntrackSection, ConfigError> {
        const TABLE: &str = "sessions.conntrack";
        let buffer = int(
            source,
            &conntrack::EVENT_BUFFER_BYTES,
            self.event_buffer_bytes.as_ref(),
        )?;
        let timeout = int(
            source,
            &conntrack::PEER_ENTRY_TIMEOUT_SECS,
            self.peer_entry_timeout_secs.as_ref(),
        )?;
        let owner_mark = int(source, &conntrack::OWNER_MARK, self.owner_mark.as_ref())?;
        if ![0, 2].contains(&owner_mark.value.count_ones()) {
            return Err(source.bad_value(
                TABLE,
                "owner_mark",
                &owner_mark.span.unwrap_or(0..0),
                format!(
                    "has {} bits set; must be {}",
                    owner_mark.value.count_ones(),
                    expected(TABLE, "owner_mark")
                ),
            ));
        }
        let zones = self
            .zones
            .unwrap_or_default()
            .iter()
            .map(|zone| {
                u16::try_from(*zone.get_ref()).map_err(|_| {
                    source.bad_value(
                        TABLE,
                        "zones",
                        &zone.span(),
                        format!("must be {}", expected(TABLE, "zones")),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        let protocols = self
            .protocols
            .unwrap_or_default()
            .iter()
            .map(|name| {
                protocol_number(name.get_ref()).ok_or_else(|| {
                    source.bad_value(
                        TABLE,
                        "protocols",
                        &name.span(),
                        format!("must be {}", expected(TABLE, "protocols")),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        let networks = |key: &str, raw: Option<Vec<Spanned<String>>>| {
            raw.unwrap_or_default()
                .iter()
                .map(|net| {
                    net.get_ref().parse::<IpNet>().map_err(|_| {
                        source.bad_value(
                            TABLE,
                            key,
                            &net.span(),
                            format!(
                                "not a network (address/prefix length); must be {}",
                                expected(TABLE, key)
                            ),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(ConntrackSection {
            // Invariant: `int` checked the ranges, which fit both types.
            event_buffer_bytes: buffer.value as usize,
            peer_entry_timeout_secs: timeout.value as u32,
            owner_mark: owner_mark.value as u32,
            zones,
            protocols,
            include: networks("include", self.include)?,
            exclude: networks("exclude", self.exclude)?,
        })
    }
}

/// An IP protocol by name or number (`"tcp"`, `"6"`).
fn protocol_number(text: &str) -> Option<u8> {
    let number = match text.to_ascii_lowercase().as_str() {
        "icmp" => 1,
        "tcp" => 6,
        "udp" => 17,
        "dccp" => 33,
        "gre" => 47,
        "icmpv6" | "ipv6-icmp" => 58,
        "sctp" => 132,
        "udplite" => 136,
        other => return other.parse().ok(),
    };
    Some(number)
}
