//! Thin I/O for takeover (docs/TAKEOVER.md): what the VRRP task needs from the kernel, with no
//! decisions of its own.
//!
//! - [`VrrpSocket`]: raw IP protocol 112 sockets, one per instance, with the TTL, hop limit and
//!   addresses RFC 5798 checks;
//! - [`Netlink`]: rtnetlink requests (links, addresses, routes, macvlans) and
//!   [`watch_links`], link-state events;
//! - [`Announcer`]: gratuitous ARPs and unsolicited neighbour advertisements for a new master's
//!   virtual addresses.

mod announce;
mod netlink;
mod vrrp_socket;

pub use announce::Announcer;
pub use netlink::{LinkChange, LinkInfo, Netlink, watch_links};
pub use vrrp_socket::{Received, VrrpSocket};
