//! ctnetlink sockets: `netlink-sys` sockets plus the few calls it does not wrap (`recvmmsg`,
//! `SO_RCVBUFFORCE`, `poll`, `eventfd`).

// System calls that libc, socket2 and nix do not wrap safely; each block says why it is sound.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};

use crate::socket_filter::{self, Width};

/// `NFNLGRP_CONNTRACK_NEW`, `_UPDATE`, `_DESTROY`.
pub(super) const CONNTRACK_GROUPS: [u32; 3] = [1, 2, 3];

/// A bound `NETLINK_NETFILTER` socket.
pub(super) struct NlSocket {
    socket: Socket,
    port_id: u32,
}

impl NlSocket {
    /// A socket bound to a port id the kernel picks, with acknowledgements capped to the header
    /// of the request they answer (the request's payload is not echoed back).
    pub(super) fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_NETFILTER)?;
        let addr: SocketAddr = socket.bind_auto()?;
        socket.set_cap_ack(true)?;
        Ok(Self {
            socket,
            port_id: addr.port_number(),
        })
    }

    /// The port id: ctnetlink stamps the events a request causes with it.
    pub(super) fn port_id(&self) -> u32 {
        self.port_id
    }

    pub(super) fn fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    /// Sets the receive buffer to `bytes`: `SO_RCVBUFFORCE` (root may exceed `rmem_max`), else
    /// `SO_RCVBUF`, which the kernel caps at `net.core.rmem_max`.
    pub(super) fn set_receive_buffer(&self, bytes: usize) -> io::Result<()> {
        let bytes = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        setsockopt(self.fd(), libc::SO_RCVBUFFORCE, bytes)
            .or_else(|_| setsockopt(self.fd(), libc::SO_RCVBUF, bytes))
    }

    /// Makes the kernel drop, before they are queued, the messages stamped with `port` (a
    /// classic BPF socket filter on `nlmsg_pid`): the events of the backend's own writes, which
    /// would otherwise cost the reader a wake-up, a copy and a parse each (about 5 us), as many
    /// as the entries a bulk sync writes.
    pub(super) fn drop_port(&self, port: u32) -> io::Result<()> {
        /// Offset of `nlmsg_pid` in `struct nlmsghdr`.
        const NLMSG_PID: u32 = 12;
        socket_filter::attach_field_match(self.fd(), Width::Word, NLMSG_PID, port, false)
    }

    pub(super) fn subscribe(&self, groups: &[u32]) -> io::Result<()> {
        groups
            .iter()
            .try_for_each(|&group| self.socket.add_membership(group))
    }

    /// Sends one datagram (any number of requests) to the kernel.
    pub(super) fn send(&self, bytes: &[u8]) -> io::Result<()> {
        let sent = self.socket.send(bytes, 0)?;
        if sent != bytes.len() {
            return Err(io::Error::other("short netlink send"));
        }
        Ok(())
    }
}

fn setsockopt(fd: RawFd, option: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: `value` outlives the call and its size is passed along.
    let res = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if res < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Datagrams received `SLOTS` at a time with one `recvmmsg`: a netlink socket hands out one
/// event or acknowledgement per datagram, so one system call per datagram would cost more than
/// the parsing.
pub(super) struct Datagrams {
    buf: Vec<u8>,
    lens: [usize; SLOTS],
    slot_len: usize,
}

const SLOTS: usize = 64;

impl Datagrams {
    /// Room for `SLOTS` datagrams of up to `slot_len` bytes.
    pub(super) fn new(slot_len: usize) -> Self {
        Self {
            buf: vec![0; SLOTS * slot_len],
            lens: [0; SLOTS],
            slot_len,
        }
    }

    /// Receives up to `SLOTS` datagrams and returns how many. `flags` are `recvmmsg`'s
    /// (`MSG_DONTWAIT`, `MSG_WAITFORONE`). A datagram larger than a slot is an error.
    pub(super) fn recv(&mut self, fd: RawFd, flags: libc::c_int) -> io::Result<usize> {
        // SAFETY: all-zero is a valid `iovec` (null base, zero length).
        let mut iov: [libc::iovec; SLOTS] = unsafe { std::mem::zeroed() };
        // SAFETY: all-zero is a valid `mmsghdr` (null pointers, zero lengths and flags).
        let mut headers: [libc::mmsghdr; SLOTS] = unsafe { std::mem::zeroed() };
        for (i, (iov, header)) in iov.iter_mut().zip(headers.iter_mut()).enumerate() {
            iov.iov_base = self.buf[i * self.slot_len..].as_mut_ptr().cast();
            iov.iov_len = self.slot_len;
            header.msg_hdr.msg_iov = iov;
            header.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every header points at a distinct `slot_len` slice of `buf`, which outlives
        // the call; the kernel writes at most `iov_len` bytes into each.
        let received = unsafe {
            libc::recvmmsg(
                fd,
                headers.as_mut_ptr(),
                SLOTS as libc::c_uint,
                flags,
                std::ptr::null_mut(),
            )
        };
        if received < 0 {
            return Err(io::Error::last_os_error());
        }
        let received = received as usize;
        for (len, header) in self.lens.iter_mut().zip(&headers[..received]) {
            if header.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "netlink datagram larger than the receive slot",
                ));
            }
            *len = header.msg_len as usize;
        }
        Ok(received)
    }

    /// The `i`-th datagram of the last `recv`.
    pub(super) fn get(&self, i: usize) -> &[u8] {
        let start = i * self.slot_len;
        &self.buf[start..start + self.lens[i]]
    }
}

/// Receives one datagram (a dump part) into `buf`, which must be large enough: the kernel sizes
/// dump parts to the reader's buffer, up to 32 KiB.
pub(super) fn recv_into(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is valid for `buf.len()` bytes and outlives the call.
        let res = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if res >= 0 {
            return Ok(res as usize);
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// An eventfd that wakes the event reader when the backend is dropped.
pub(super) fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain system call; the returned descriptor is owned by the `OwnedFd`.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub(super) fn signal(fd: &OwnedFd) {
    let one = 1_u64.to_ne_bytes();
    // SAFETY: writes 8 bytes from a live buffer; an eventfd write only fails on overflow, which
    // leaves it readable anyway.
    unsafe { libc::write(fd.as_raw_fd(), one.as_ptr().cast(), one.len()) };
}

/// Which of `fds` are readable, waiting until one is.
pub(super) fn wait_readable<const N: usize>(fds: [RawFd; N]) -> io::Result<[bool; N]> {
    let mut polls = fds.map(|fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    });
    loop {
        // SAFETY: `polls` is a live array of `N` entries.
        let res = unsafe { libc::poll(polls.as_mut_ptr(), N as libc::nfds_t, -1) };
        if res >= 0 {
            return Ok(polls.map(|p| p.revents != 0));
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}
