//! Announcing a new master's virtual addresses, so that neighbours send to it at once rather
//! than when their ARP or neighbour cache entries expire (RFC 5798 sections 6.4.1, 6.4.2).

// System calls that libc, socket2 and nix do not wrap safely; each block says why it is sound.
#![allow(unsafe_code)]

use std::io::{self, IoSlice};
use std::net::{IpAddr, Ipv6Addr, SocketAddrV6};
use std::os::fd::AsRawFd;

use failoverd_wire::announce::{GratuitousArp, NeighbourAdvert};
use nix::sys::socket::{ControlMessage, MsgFlags, SockaddrStorage, sendmsg};
use socket2::{Domain, Protocol, Socket, Type};

/// Where unsolicited neighbour advertisements go: all nodes (RFC 4861 section 7.2.6).
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// Hop limit of neighbour discovery messages: receivers drop any other (RFC 4861 section 7.1.2).
const ND_HOP_LIMIT: u32 = 255;
/// `ICMPV6_FILTER` of `linux/icmpv6.h` (glibc's `ICMP6_FILTER`), at level `IPPROTO_ICMPV6`;
/// the libc crate does not define it.
const ICMP6_FILTER: libc::c_int = 1;

/// Sends gratuitous ARPs and unsolicited neighbour advertisements on any interface. Its
/// sockets only send: the packet socket has protocol 0 and the ICMPv6 socket filters out every
/// type, so no received traffic is queued to them.
pub struct Announcer {
    /// `AF_PACKET`, `SOCK_RAW`: whole Ethernet frames.
    packet: Socket,
    /// Raw ICMPv6: the kernel builds the IPv6 header and computes the checksum.
    icmpv6: Socket,
}

impl Announcer {
    /// Opens the two sockets (needs `CAP_NET_RAW`).
    pub fn new() -> io::Result<Self> {
        let packet = Socket::new(Domain::PACKET, Type::RAW, None)?;
        let icmpv6 = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?;
        icmpv6.set_multicast_hops_v6(ND_HOP_LIMIT)?;
        icmpv6.set_multicast_loop_v6(false)?;
        block_all_icmpv6(&icmpv6)?;
        Ok(Self { packet, icmpv6 })
    }

    /// Announces once that `addr` is at `mac` on interface `ifindex`: a gratuitous ARP request
    /// for IPv4; for IPv6, an unsolicited neighbour advertisement with the override flag and,
    /// when `router`, the router flag, sent from `addr` itself (which must already be on the
    /// interface and not tentative). Never blocks: a full queue is an error of kind
    /// `WouldBlock`.
    pub fn announce(
        &self,
        ifindex: u32,
        mac: [u8; 6],
        addr: IpAddr,
        router: bool,
    ) -> io::Result<()> {
        match addr {
            IpAddr::V4(addr) => self.send_arp(ifindex, GratuitousArp { mac, addr }),
            IpAddr::V6(target) => self.send_advert(
                ifindex,
                NeighbourAdvert {
                    target,
                    mac,
                    router,
                },
            ),
        }
        .map_err(|error| {
            io::Error::new(
                error.kind(),
                format!("announce {addr} on interface {ifindex}: {error}"),
            )
        })
    }

    fn send_arp(&self, ifindex: u32, arp: GratuitousArp) -> io::Result<()> {
        let mut frame = Vec::with_capacity(GratuitousArp::LEN);
        arp.emit(&mut frame);
        let mut broadcast = [0; 8];
        broadcast[..6].copy_from_slice(&[0xff; 6]);
        // The frame carries its own Ethernet header; the address names the interface.
        let to = libc::sockaddr_ll {
            sll_family: libc::AF_PACKET as libc::c_ushort,
            sll_protocol: (libc::ETH_P_ARP as u16).to_be(),
            sll_ifindex: ifindex as libc::c_int,
            sll_hatype: 0,
            sll_pkttype: 0,
            sll_halen: 6,
            sll_addr: broadcast,
        };
        // SAFETY: `frame` and `to` are live for the call and their sizes are passed along.
        let sent = unsafe {
            libc::sendto(
                self.packet.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                libc::MSG_DONTWAIT,
                (&to as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        check_length(sent as usize, frame.len())
    }

    fn send_advert(&self, ifindex: u32, advert: NeighbourAdvert) -> io::Result<()> {
        let mut body = Vec::with_capacity(NeighbourAdvert::LEN);
        advert.emit(&mut body);
        // Out of `ifindex`, from the target address.
        let info = libc::in6_pktinfo {
            ipi6_addr: libc::in6_addr {
                s6_addr: advert.target.octets(),
            },
            ipi6_ifindex: ifindex,
        };
        let to = SockaddrStorage::from(SocketAddrV6::new(ALL_NODES, 0, 0, ifindex));
        let sent = sendmsg(
            self.icmpv6.as_raw_fd(),
            &[IoSlice::new(&body)],
            &[ControlMessage::Ipv6PacketInfo(&info)],
            MsgFlags::MSG_DONTWAIT,
            Some(&to),
        )?;
        check_length(sent, body.len())
    }
}

fn check_length(sent: usize, len: usize) -> io::Result<()> {
    if sent != len {
        return Err(io::Error::other(format!(
            "short send: {sent} of {len} bytes"
        )));
    }
    Ok(())
}

/// Sets an ICMPv6 type filter that blocks every type: the socket only sends, and a raw ICMPv6
/// socket would otherwise queue a copy of all ICMPv6 traffic (neighbour discovery, MLD) that
/// nobody reads.
fn block_all_icmpv6(socket: &Socket) -> io::Result<()> {
    // `struct icmp6_filter`: one bit per type, set = blocked.
    let filter = [u32::MAX; 8];
    // SAFETY: `filter` outlives the call and its size is passed along.
    let res = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_ICMPV6,
            ICMP6_FILTER,
            filter.as_ptr().cast(),
            std::mem::size_of_val(&filter) as libc::socklen_t,
        )
    };
    if res < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
