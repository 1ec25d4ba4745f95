//! rtnetlink: the links, addresses, routes and macvlans the VRRP task reads and changes, and
//! link-state events for interface tracking.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{Context, Result, bail};
use futures_util::{StreamExt, TryStreamExt};
use rtnetlink::packet_core::NetlinkPayload;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use rtnetlink::packet_route::link::{
    InfoData, InfoKind, InfoMacVlan, LinkAttribute, LinkFlags, LinkInfo as InfoAttribute,
    LinkMessage, MacVlanMode,
};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteType,
};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::{AddressMessageBuilder, Handle, LinkMacVlan, LinkUnspec, MulticastGroup};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A link as the VRRP task needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkInfo {
    /// The interface index.
    pub index: u32,
    /// The hardware address; zero for a link without an Ethernet address.
    pub mac: [u8; 6],
    /// Whether the link can carry traffic: administratively up (`IFF_UP`) and operationally up
    /// (`IFF_RUNNING`, which the kernel sets only with carrier and not dormant).
    pub up: bool,
    /// The MTU.
    pub mtu: u32,
    /// Packets received since the link was created (0 if the kernel sent no statistics).
    pub rx_packets: u64,
}

/// A link's state as reported by [`watch_links`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkChange {
    /// The interface index.
    pub index: u32,
    /// The interface name (as of the report: a rename shows up as a new name).
    pub name: String,
    /// As [`LinkInfo::up`]; false once the link is deleted.
    pub up: bool,
}

/// An rtnetlink connection, served by a task on the tokio runtime it was made in; dropping it
/// ends the task.
///
/// It has `NETLINK_GET_STRICT_CHK` on, so the kernel filters dumps (addresses of one interface,
/// unicast routes of the main table) instead of sending everything.
pub struct Netlink {
    handle: Handle,
    connection: JoinHandle<()>,
}

impl Drop for Netlink {
    fn drop(&mut self) {
        // The task would outlive the handle: it also waits for unsolicited messages.
        self.connection.abort();
    }
}

impl Netlink {
    /// Opens the connection and spawns its task. Must be called within a tokio runtime.
    pub fn connect() -> io::Result<Self> {
        let (connection, handle, _) = rtnetlink::new_connection_with_strict_check()?;
        Ok(Self {
            handle,
            connection: tokio::spawn(connection),
        })
    }

    /// The link called `name`.
    pub async fn link(&self, name: &str) -> Result<LinkInfo> {
        match self.find_link(name).await? {
            Some(message) => Ok(link_info(&message)),
            None => bail!("interface {name}: no such interface"),
        }
    }

    /// The addresses of interface `index` with their prefix lengths, in the kernel's order
    /// (IPv4 before IPv6; IPv4 primary addresses first, in the order they were added), so that
    /// "the interface's first IPv4 address" and its IPv6 link-local address can be chosen.
    pub async fn addresses(&self, index: u32) -> Result<Vec<(IpAddr, u8)>> {
        let mut request = self.handle.address().get().set_link_index_filter(index);
        request.message_mut().header.index = index;
        let mut answers = request.execute();
        let mut addresses = Vec::new();
        while let Some(message) = answers
            .try_next()
            .await
            .map_err(os_error)
            .with_context(|| format!("list the addresses of interface {index}"))?
        {
            if let Some(address) = local_address(&message) {
                addresses.push((address, message.header.prefix_len));
            }
        }
        Ok(addresses)
    }

    /// Adds `addr/prefix_len` to interface `index`; an address already there is success. An
    /// IPv6 address skips duplicate address detection (`IFA_F_NODAD`): it is usable at once, not
    /// a second later, and VRRP itself guarantees one owner per virtual address.
    pub async fn add_address(&self, index: u32, addr: IpAddr, prefix_len: u8) -> Result<()> {
        let mut request = self.handle.address().add(index, addr, prefix_len);
        if addr.is_ipv6() {
            request
                .message_mut()
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        tolerate(request.execute().await, &[libc::EEXIST])
            .with_context(|| format!("add {addr}/{prefix_len} to interface {index}"))
    }

    /// Removes `addr/prefix_len` from interface `index`; an address (or interface) not there is
    /// success.
    pub async fn remove_address(&self, index: u32, addr: IpAddr, prefix_len: u8) -> Result<()> {
        let message = match addr {
            IpAddr::V4(addr) => AddressMessageBuilder::<Ipv4Addr>::new()
                .index(index)
                .address(addr, prefix_len)
                .build(),
            IpAddr::V6(addr) => AddressMessageBuilder::<Ipv6Addr>::new()
                .index(index)
                .address(addr, prefix_len)
                .build(),
        };
        let result = self.handle.address().del(message).execute().await;
        tolerate(result, &[libc::EADDRNOTAVAIL, libc::ENODEV])
            .with_context(|| format!("remove {addr}/{prefix_len} from interface {index}"))
    }

    /// Creates macvlan `name` over interface `parent` with address `mac`, in private mode (it
    /// takes the frames for `mac` and talks to no other macvlan of the parent, as keepalived's
    /// `use_vmac` does), and sets it up. Returns its index.
    ///
    /// A macvlan `name` that already matches is reused; one with another parent, mode or MAC is
    /// a leftover of an earlier configuration and is replaced. Any other link called `name` is
    /// an error: it is not this daemon's to delete.
    pub async fn create_macvlan(&self, parent: u32, name: &str, mac: [u8; 6]) -> Result<u32> {
        if let Some(existing) = self.find_link(name).await? {
            let index = existing.header.index;
            match macvlan_of(&existing) {
                Some(found) if found == (parent, MacVlanMode::Private, mac) => {
                    let up = LinkUnspec::new_with_index(index).up().build();
                    self.handle
                        .link()
                        .set(up)
                        .execute()
                        .await
                        .map_err(os_error)
                        .with_context(|| format!("set macvlan {name} up"))?;
                    return Ok(index);
                }
                Some(_) => self.delete_link(index).await?,
                None => bail!("interface {name} exists and is not a macvlan"),
            }
        }
        let message = LinkMacVlan::new(name, parent, MacVlanMode::Private)
            .address(mac.to_vec())
            .up()
            .build();
        self.handle
            .link()
            .add(message)
            .execute()
            .await
            .map_err(os_error)
            .with_context(|| format!("create macvlan {name} over interface {parent}"))?;
        Ok(self.link(name).await?.index)
    }

    /// Deletes link `index`; a link not there is success.
    pub async fn delete_link(&self, index: u32) -> Result<()> {
        let result = self.handle.link().del(index).execute().await;
        tolerate(result, &[libc::ENODEV]).with_context(|| format!("delete interface {index}"))
    }

    /// Whether the main table has a unicast route to exactly `destination/prefix_len` (host
    /// bits of `destination` are ignored). Blackhole, unreachable and prohibit routes do not
    /// count: they forward nothing.
    pub async fn route_exists(&self, destination: IpAddr, prefix_len: u8) -> Result<bool> {
        let wanted = network(destination, prefix_len);
        // A dump (no destination): the kernel filters it on table and type.
        let mut request = RouteMessage::default();
        request.header.address_family = match destination {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        };
        request.header.table = RouteHeader::RT_TABLE_MAIN;
        request.header.kind = RouteType::Unicast;
        let mut routes = self.handle.route().get(request).execute();
        while let Some(route) = routes
            .try_next()
            .await
            .map_err(os_error)
            .with_context(|| format!("list the routes to {destination}/{prefix_len}"))?
        {
            if table(&route) == u32::from(RouteHeader::RT_TABLE_MAIN)
                && route.header.kind == RouteType::Unicast
                && route.header.destination_prefix_length == prefix_len
                && route_destination(&route, destination) == wanted
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn find_link(&self, name: &str) -> Result<Option<LinkMessage>> {
        let mut answers = self.handle.link().get().match_name(name).execute();
        match answers.try_next().await {
            Ok(message) => Ok(message),
            Err(error) if errno(&error) == Some(libc::ENODEV) => Ok(None),
            Err(error) => Err(os_error(error)).with_context(|| format!("interface {name}")),
        }
    }
}

/// Subscribes to link events (`RTNLGRP_LINK`) and reports every link's state: all links once
/// at the start, then each change as the kernel announces it (a report may repeat the state
/// before it). If the kernel drops events (the socket's buffer overran), all links are reported
/// again. The channel closes if the subscription fails: the receiver's view of the links can no
/// longer be trusted. Must be called within a tokio runtime; the subscription ends when the
/// receiver is dropped.
///
/// The kernel itself may hold a carrier change back for up to a second (its link watch batches
/// non-urgent events); administrative changes are reported at once.
pub fn watch_links() -> io::Result<mpsc::UnboundedReceiver<LinkChange>> {
    let (connection, handle, mut events) =
        rtnetlink::new_multicast_connection(&[MulticastGroup::Link])?;
    let connection = tokio::spawn(connection);
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        // Subscribed before the dump, so no change falls between the two.
        let mut resync = true;
        'watch: loop {
            if resync {
                resync = false;
                let mut links = handle.link().get().execute();
                while let Some(message) = links.try_next().await.transpose() {
                    let Ok(message) = message else { break 'watch };
                    if tx.send(link_change(&message, false)).is_err() {
                        break 'watch;
                    }
                }
            }
            let event = tokio::select! {
                event = events.next() => event,
                () = tx.closed() => break,
            };
            let Some((event, _)) = event else { break };
            let change = match event.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(message)) => {
                    link_change(&message, false)
                }
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(message)) => {
                    link_change(&message, true)
                }
                NetlinkPayload::Overrun(_) => {
                    resync = true;
                    continue;
                }
                _ => continue,
            };
            if tx.send(change).is_err() {
                break;
            }
        }
        connection.abort();
    });
    Ok(rx)
}

fn link_info(message: &LinkMessage) -> LinkInfo {
    let mut info = LinkInfo {
        index: message.header.index,
        mac: [0; 6],
        up: is_up(message.header.flags),
        mtu: 0,
        rx_packets: 0,
    };
    for attribute in &message.attributes {
        match attribute {
            LinkAttribute::Address(address) => {
                if let Ok(mac) = <[u8; 6]>::try_from(address.as_slice()) {
                    info.mac = mac;
                }
            }
            LinkAttribute::Mtu(mtu) => info.mtu = *mtu,
            LinkAttribute::Stats64(stats) => info.rx_packets = stats.rx_packets,
            _ => {}
        }
    }
    info
}

fn link_change(message: &LinkMessage, deleted: bool) -> LinkChange {
    let name = message
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            LinkAttribute::IfName(name) => Some(name.clone()),
            _ => None,
        });
    LinkChange {
        index: message.header.index,
        name: name.unwrap_or_default(),
        up: !deleted && is_up(message.header.flags),
    }
}

fn is_up(flags: LinkFlags) -> bool {
    flags.contains(LinkFlags::Up | LinkFlags::Running)
}

/// Parent, mode and MAC of a macvlan; `None` for any other kind of link.
fn macvlan_of(message: &LinkMessage) -> Option<(u32, MacVlanMode, [u8; 6])> {
    let mut parent = None;
    let mut mode = None;
    for attribute in &message.attributes {
        match attribute {
            LinkAttribute::Link(index) => parent = Some(*index),
            LinkAttribute::LinkInfo(infos) => {
                if !infos.contains(&InfoAttribute::Kind(InfoKind::MacVlan)) {
                    return None;
                }
                for info in infos {
                    if let InfoAttribute::Data(InfoData::MacVlan(data)) = info {
                        mode = data.iter().find_map(|item| match item {
                            InfoMacVlan::Mode(mode) => Some(*mode),
                            _ => None,
                        });
                    }
                }
            }
            _ => {}
        }
    }
    Some((parent?, mode?, link_info(message).mac))
}

/// The interface's own address of an address message: `IFA_LOCAL`, which differs from
/// `IFA_ADDRESS` (then the peer's) on point-to-point links.
fn local_address(message: &AddressMessage) -> Option<IpAddr> {
    let mut address = None;
    for attribute in &message.attributes {
        match attribute {
            AddressAttribute::Local(local) => return Some(*local),
            AddressAttribute::Address(value) => address = Some(*value),
            _ => {}
        }
    }
    address
}

/// The routing table of a route: `RTA_TABLE` when present (ids above 255), else the header's.
fn table(route: &RouteMessage) -> u32 {
    route
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            RouteAttribute::Table(table) => Some(*table),
            _ => None,
        })
        .unwrap_or(u32::from(route.header.table))
}

/// A route's destination; a default route has none, which reads as the unspecified address of
/// `family`'s family.
fn route_destination(route: &RouteMessage, family: IpAddr) -> IpAddr {
    let destination = route
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            RouteAttribute::Destination(RouteAddress::Inet(address)) => Some(IpAddr::V4(*address)),
            RouteAttribute::Destination(RouteAddress::Inet6(address)) => Some(IpAddr::V6(*address)),
            _ => None,
        });
    destination.unwrap_or(match family {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    })
}

/// `addr` with the bits past `prefix_len` cleared.
fn network(addr: IpAddr, prefix_len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(addr) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(prefix_len.min(32)))
                .unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(addr) & mask))
        }
        IpAddr::V6(addr) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(prefix_len.min(128)))
                .unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(addr) & mask))
        }
    }
}

/// The errno of a netlink error answer.
fn errno(error: &rtnetlink::Error) -> Option<i32> {
    match error {
        rtnetlink::Error::NetlinkError(message) => Some(-message.raw_code()),
        _ => None,
    }
}

/// Success, or an error whose errno is in `harmless` (the change is already in place).
fn tolerate(result: Result<(), rtnetlink::Error>, harmless: &[i32]) -> Result<()> {
    match result {
        Err(error) if !errno(&error).is_some_and(|errno| harmless.contains(&errno)) => {
            Err(os_error(error))
        }
        _ => Ok(()),
    }
}

/// An rtnetlink error, as the system's error where it is an errno ("File exists (os error
/// 17)"), so callers can also downcast it to an `io::Error`.
fn os_error(error: rtnetlink::Error) -> anyhow::Error {
    match error {
        rtnetlink::Error::NetlinkError(message) => message.to_io().into(),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_clears_host_bits() {
        let v4 = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(network(v4("10.1.2.3"), 8), v4("10.0.0.0"));
        assert_eq!(network(v4("10.1.2.3"), 0), v4("0.0.0.0"));
        assert_eq!(network(v4("10.1.2.3"), 32), v4("10.1.2.3"));
        assert_eq!(network(v4("2001:db8::1"), 32), v4("2001:db8::"));
        assert_eq!(network(v4("2001:db8::1"), 0), v4("::"));
        assert_eq!(network(v4("2001:db8::1"), 128), v4("2001:db8::1"));
    }
}
