//! Raw VRRP sockets: IP protocol 112 on one interface, for IPv4 or IPv6 (RFC 5798 section 5.1).

// System calls that libc, socket2 and nix do not wrap safely; each block says why it is sound.
#![allow(unsafe_code)]

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, SockaddrIn, SockaddrStorage, recvmsg, sendmsg,
    setsockopt, sockopt,
};
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// IP protocol number of VRRP (RFC 5798 section 5.1.1.4).
const IPPROTO_VRRP: i32 = 112;
/// Where IPv4 advertisements go (RFC 5798 section 5.1.1.2).
const GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// Where IPv6 advertisements go (RFC 5798 section 5.1.2.2).
const GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// TTL and hop limit of every advertisement sent: receivers drop any other value, which proves
/// the sender is on the link (RFC 5798 sections 5.1.1.3, 5.1.2.3).
const TTL: u32 = 255;
/// The longest IPv4 header (IHL 15).
const MAX_IPV4_HEADER: usize = 60;
/// The largest datagram read: the longest IPv4 header and the largest advertisement (8 bytes
/// and 255 IPv6 addresses). A larger one is no advertisement.
const MAX_DATAGRAM: usize = MAX_IPV4_HEADER + 8 + 255 * 16;

/// A raw VRRP socket bound to one interface and one source address, registered with the tokio
/// reactor. It sends advertisements (the kernel builds the IP header) and receives those of the
/// other routers on the link.
pub struct VrrpSocket {
    socket: AsyncFd<Socket>,
    source: IpAddr,
    ifindex: u32,
}

/// An advertisement as received, with what the IP header said about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The sender's address (IPv6: its link-local address).
    pub src: IpAddr,
    /// The destination: the VRRP group, or this node's address for unicast adverts.
    pub dst: IpAddr,
    /// TTL or hop limit as received; RFC 5798 requires 255.
    pub ttl: u8,
    /// The VRRP message, without the IP header.
    pub payload: Vec<u8>,
}

impl VrrpSocket {
    /// Opens a socket on `interface` (index `ifindex`) sending from `source` and, when
    /// `multicast`, joined to the VRRP group of `source`'s family on that interface. Must be
    /// called within a tokio runtime.
    ///
    /// An IPv4 socket is bound to `source` only for unicast: the kernel delivers to a bound raw
    /// IPv4 socket only datagrams addressed to the bound address, which would hide the group's.
    /// Its sends carry the source in `IP_PKTINFO` instead. An IPv6 socket is never bound: the
    /// source is link-local (RFC 5798 5.1.2.1) while unicast peers may address this node's
    /// global address, which a socket bound to the link-local one would never see. Its sends
    /// carry the source in `IPV6_PKTINFO`; the destination of what arrives comes the same way and
    /// the core checks it.
    pub fn open(
        interface: &str,
        ifindex: u32,
        source: IpAddr,
        multicast: bool,
    ) -> io::Result<Self> {
        let domain = match source {
            IpAddr::V4(_) => Domain::IPV4,
            IpAddr::V6(_) => Domain::IPV6,
        };
        let socket = Socket::new(domain, Type::RAW, Some(Protocol::from(IPPROTO_VRRP)))
            .map_err(context("open a raw VRRP socket"))?;
        socket.set_nonblocking(true)?;
        socket
            .bind_device(Some(interface.as_bytes()))
            .map_err(context(format_args!("bind to interface {interface}")))?;
        match source {
            IpAddr::V4(source) => {
                socket.set_ttl_v4(TTL)?;
                socket.set_multicast_ttl_v4(TTL)?;
                socket.set_multicast_loop_v4(false)?;
                // Only the groups this socket joined, not every group joined on the host.
                socket.set_multicast_all_v4(false)?;
                if multicast {
                    socket
                        .join_multicast_v4_n(&GROUP_V4, &InterfaceIndexOrAddress::Index(ifindex))
                        .map_err(context(format_args!("join {GROUP_V4} on {interface}")))?;
                } else {
                    socket
                        .bind(&SocketAddrV4::new(source, 0).into())
                        .map_err(context(format_args!("bind to {source} on {interface}")))?;
                }
            }
            IpAddr::V6(source) => {
                socket.set_unicast_hops_v6(TTL)?;
                socket.set_multicast_hops_v6(TTL)?;
                socket.set_multicast_loop_v6(false)?;
                socket.set_multicast_all_v6(false)?;
                // The IPv6 header is not delivered: hop limit and destination come as control
                // messages.
                socket.set_recv_hoplimit_v6(true)?;
                setsockopt(&socket, sockopt::Ipv6RecvPacketInfo, &true)?;
                // Unbound, so prove here that the source is the interface's: every send from it
                // would fail later.
                std::net::UdpSocket::bind(SocketAddrV6::new(source, 0, 0, ifindex))
                    .map_err(context(format_args!("use {source} on {interface}")))?;
                if multicast {
                    socket
                        .join_multicast_v6(&GROUP_V6, ifindex)
                        .map_err(context(format_args!("join {GROUP_V6} on {interface}")))?;
                }
            }
        }
        // SAFETY: the `AsyncFd` owns the socket: its descriptor stays open and the same until
        // the `AsyncFd` is dropped.
        let socket = unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }?;
        Ok(Self {
            socket,
            source,
            ifindex,
        })
    }

    /// Waits for the next datagram. A datagram that cannot be an advertisement (too short for
    /// its IPv4 header, or larger than any advertisement) is an error of kind `InvalidData`:
    /// the caller counts it and reads on.
    pub async fn recv(&self) -> io::Result<Received> {
        self.socket
            .async_io(Interest::READABLE, |socket| self.recv_now(socket))
            .await
    }

    /// Sends `payload`, a whole VRRP message whose checksum already covers the pseudo-header
    /// of `source` and `dst`, to `dst` (the group or a unicast peer). Never blocks (the socket
    /// is non-blocking): a full send buffer is an error of kind `WouldBlock`, and the next
    /// advertisement follows soon anyway.
    pub fn send(&self, dst: IpAddr, payload: &[u8]) -> io::Result<()> {
        let fd = self.socket.get_ref().as_raw_fd();
        let iov = [IoSlice::new(payload)];
        let sent = match (self.source, dst) {
            (IpAddr::V4(source), IpAddr::V4(dst)) => {
                // The source goes with each send: a multicast socket is not bound to it.
                let info = libc::in_pktinfo {
                    ipi_ifindex: self.ifindex as libc::c_int,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from(source).to_be(),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                let to = SockaddrIn::from(SocketAddrV4::new(dst, 0));
                sendmsg(
                    fd,
                    &iov,
                    &[ControlMessage::Ipv4PacketInfo(&info)],
                    MsgFlags::empty(),
                    Some(&to),
                )
            }
            (IpAddr::V6(source), IpAddr::V6(dst)) => {
                // The link-local source even towards a global peer, whose route would pick a
                // global one.
                let info = libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: source.octets(),
                    },
                    ipi6_ifindex: self.ifindex,
                };
                // The scope matters for ff02::12 and link-local peers; others ignore it.
                let to = SockaddrStorage::from(SocketAddrV6::new(dst, 0, 0, self.ifindex));
                sendmsg(
                    fd,
                    &iov,
                    &[ControlMessage::Ipv6PacketInfo(&info)],
                    MsgFlags::empty(),
                    Some(&to),
                )
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("cannot send to {dst} from {}", self.source),
                ));
            }
        }
        .map_err(io::Error::from)
        .map_err(context(format_args!("send to {dst}")))?;
        if sent != payload.len() {
            return Err(io::Error::other(format!(
                "short send to {dst}: {sent} of {} bytes",
                payload.len()
            )));
        }
        Ok(())
    }

    fn recv_now(&self, socket: &Socket) -> io::Result<Received> {
        let mut buf = [0; MAX_DATAGRAM];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut control = nix::cmsg_space!(libc::in6_pktinfo, libc::c_int);
        let msg = recvmsg::<SockaddrStorage>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut control),
            MsgFlags::empty(),
        )?;
        if msg.flags.contains(MsgFlags::MSG_TRUNC) {
            return Err(invalid(format!(
                "datagram larger than {MAX_DATAGRAM} bytes"
            )));
        }
        let len = msg.bytes;
        if self.source.is_ipv4() {
            return strip_ipv4(&buf[..len]);
        }
        let src = msg
            .address
            .as_ref()
            .and_then(|address| address.as_sockaddr_in6())
            .map(|address| IpAddr::V6(address.ip()))
            .ok_or_else(|| invalid("IPv6 datagram without a source address".into()))?;
        let (mut ttl, mut dst) = (None, None);
        for message in msg.cmsgs()? {
            match message {
                ControlMessageOwned::Ipv6HopLimit(limit) => ttl = u8::try_from(limit).ok(),
                ControlMessageOwned::Ipv6PacketInfo(info) => {
                    dst = Some(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)));
                }
                _ => {}
            }
        }
        let (Some(ttl), Some(dst)) = (ttl, dst) else {
            return Err(invalid(
                "IPv6 datagram without hop limit or packet info".into(),
            ));
        };
        Ok(Received {
            src,
            dst,
            ttl,
            payload: buf[..len].to_vec(),
        })
    }
}

/// Splits what a raw IPv4 socket delivers (the IP header, then the VRRP message) and reads the
/// header fields RFC 5798 checks.
fn strip_ipv4(datagram: &[u8]) -> io::Result<Received> {
    let header_len = datagram.first().map_or(0, |&b| usize::from(b & 0x0f) * 4);
    if header_len < 20 || datagram.len() < header_len {
        return Err(invalid(format!(
            "IPv4 datagram of {} bytes with a header of {header_len}",
            datagram.len()
        )));
    }
    let address = |at: usize| {
        IpAddr::V4(Ipv4Addr::new(
            datagram[at],
            datagram[at + 1],
            datagram[at + 2],
            datagram[at + 3],
        ))
    };
    Ok(Received {
        src: address(12),
        dst: address(16),
        ttl: datagram[8],
        payload: datagram[header_len..].to_vec(),
    })
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// Prefixes an error with what was being done, keeping its kind.
fn context(what: impl std::fmt::Display) -> impl FnOnce(io::Error) -> io::Error {
    move |error| io::Error::new(error.kind(), format!("{what}: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(ihl: u8, ttl: u8) -> Vec<u8> {
        let mut header = vec![0x40 | ihl, 0, 0, 0, 0, 0, 0, 0, ttl, 112, 0, 0];
        header.extend_from_slice(&[10, 0, 1, 2, 224, 0, 0, 18]);
        header.resize(usize::from(ihl) * 4, 0x01);
        header
    }

    #[test]
    fn strips_the_header_it_declares() {
        for ihl in [5, 6, 15] {
            let mut datagram = header(ihl, 255);
            datagram.extend_from_slice(&[0x31, 51, 200, 1]);
            let received = strip_ipv4(&datagram).unwrap();
            assert_eq!(received.src, IpAddr::from([10, 0, 1, 2]));
            assert_eq!(received.dst, IpAddr::from([224, 0, 0, 18]));
            assert_eq!(received.ttl, 255);
            assert_eq!(received.payload, [0x31, 51, 200, 1], "IHL {ihl}");
        }
    }

    #[test]
    fn short_datagrams_are_invalid_data() {
        let full = header(6, 255);
        let cases: [&[u8]; 4] = [&[], &full[..19], &full[..23], &header(4, 255)];
        for datagram in cases {
            let error = strip_ipv4(datagram).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{datagram:?}");
        }
    }
}
