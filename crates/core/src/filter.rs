//! Which sessions this node replicates, in both directions: its own changes are sent only if
//! they match, and the peer's ops are applied only if they match (an authenticated peer with
//! a stolen key must not write pinholes outside what this node replicates).

use std::net::{IpAddr, Ipv4Addr};

use failoverd_wire::SessionKey;
pub use ipnet::IpNet;

/// Which sessions are replicated. The default replicates every session except loopback,
/// multicast and broadcast ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicationFilter {
    /// Conntrack zones; empty for all.
    pub zones: Vec<u16>,
    /// IP protocol numbers; empty for all.
    pub protocols: Vec<u8>,
    /// When not empty, the original source or destination must be inside one of these.
    pub include: Vec<IpNet>,
    /// A session whose original source or destination is inside one of these is not
    /// replicated. Loopback (127.0.0.0/8, ::1/128) and multicast or broadcast destinations
    /// are always excluded.
    pub exclude: Vec<IpNet>,
}

impl ReplicationFilter {
    /// Whether the session with this key is replicated.
    pub fn matches(&self, key: &SessionKey) -> bool {
        let (src, dst) = (key.orig.src, key.orig.dst);
        let inside = |nets: &[IpNet]| nets.iter().any(|n| n.contains(&src) || n.contains(&dst));
        !src.is_loopback()
            && !dst.is_loopback()
            // Multicast and broadcast (VRRP adverts, routing protocols) are the node's own
            // chatter, never a session the peer could carry.
            && !dst.is_multicast()
            && dst != IpAddr::V4(Ipv4Addr::BROADCAST)
            && (self.zones.is_empty() || self.zones.contains(&key.zone))
            && (self.protocols.is_empty() || self.protocols.contains(&key.l4proto))
            && !inside(&self.exclude)
            && (self.include.is_empty() || inside(&self.include))
    }
}
