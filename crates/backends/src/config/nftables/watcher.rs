//! Change notices: the kernel's nftables generation events (`NFT_MSG_NEWGEN` on
//! `NFNLGRP_NFTABLES`), one per committed transaction, naming the process that committed it.
//!
//! Numbers are the kernel's, from `include/uapi/linux/netfilter/nf_tables.h` and
//! `nfnetlink.h`.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use netlink_packet_core::{NetlinkBuffer, NlasIterator};
use netlink_sys::{Socket, protocols::NETLINK_NETFILTER};

use crate::socket_filter::{self, Width};

/// `NFNLGRP_NFTABLES`.
const GROUP_NFTABLES: u32 = 7;
/// `NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWGEN`.
const MSG_NEWGEN: u16 = (10 << 8) | 15;
/// `enum nft_gen_attributes`.
mod gen_attr {
    pub(super) const ID: u16 = 1;
    pub(super) const PROC_PID: u16 = 2;
    pub(super) const PROC_NAME: u16 = 3;
}
/// Byte offsets in a message.
mod field {
    /// `nlmsg_type` in `struct nlmsghdr`.
    pub(super) const NLMSG_TYPE: u32 = 4;
    /// Length of `struct nlmsghdr`.
    pub(super) const NLMSG_HEADER: usize = 16;
    /// Length of `struct nfgenmsg`, which the attributes follow.
    pub(super) const NFGENMSG: usize = 4;
}

/// A generation event is under 100 bytes; a datagram holds one.
const DATAGRAM: usize = 8192;

/// One committed nftables transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    /// The ruleset's generation id after the commit.
    pub id: u32,
    /// The process that committed it (`nft`'s PID for a run of nft), if the kernel said.
    pub pid: Option<u32>,
    /// That process's name (`comm`), if the kernel said.
    pub process: Option<String>,
}

/// What the watcher saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NftablesChange {
    /// A transaction was committed.
    Generation(Generation),
    /// A change of unknown origin: notices were lost (the socket's receive buffer overran,
    /// `ENOBUFS`) or a generation event did not parse. The ruleset may have changed, by anyone.
    Unknown,
}

/// What a watcher counted, one counter per outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NftablesWatcherStats {
    /// Generation events reported.
    pub generations: u64,
    /// Receive-buffer overruns (`ENOBUFS`), each reported as [`NftablesChange::Unknown`].
    pub overruns: u64,
    /// Generation events that did not parse, each reported as [`NftablesChange::Unknown`].
    pub malformed: u64,
    /// Other messages, dropped (the socket filter keeps them out, so normally 0).
    pub other_messages: u64,
}

/// A netlink socket that hears of every nftables commit in its network namespace (the one the
/// opening thread was in), non-blocking: poll its fd (e.g. a tokio `AsyncFd`) for readability,
/// then drain [`next_change`](Self::next_change) until `None`.
///
/// A socket filter lets only generation events in: the per-object events of a large
/// transaction (one per rule, set element, ...) would fill the receive buffer for nothing.
pub struct NftablesWatcher {
    socket: Socket,
    buf: Vec<u8>,
    pending: VecDeque<NftablesChange>,
    stats: NftablesWatcherStats,
}

impl NftablesWatcher {
    /// Opens the socket in the calling thread's network namespace and subscribes it.
    pub fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_NETFILTER)?;
        socket.bind_auto()?;
        // Only generation events: the kernel sends each in a datagram of its own, and a
        // 10,000-rule commit is then one message, not an overrun.
        socket_filter::attach_field_match(
            socket.as_raw_fd(),
            Width::Half,
            field::NLMSG_TYPE,
            u32::from(MSG_NEWGEN),
            true,
        )?;
        socket.add_membership(GROUP_NFTABLES)?;
        socket.set_non_blocking(true)?;
        Ok(Self {
            socket,
            buf: vec![0; DATAGRAM],
            pending: VecDeque::new(),
            stats: NftablesWatcherStats::default(),
        })
    }

    /// Sets the receive buffer (`SO_RCVBUF`, which the kernel doubles and caps at
    /// `net.core.rmem_max`): how many notices may wait before an overrun.
    pub fn set_receive_buffer(&self, bytes: usize) -> io::Result<()> {
        self.socket
            .set_rx_buf_sz(libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX))
    }

    /// The next change, or `None` when none is waiting (the socket would block).
    pub fn next_change(&mut self) -> io::Result<Option<NftablesChange>> {
        loop {
            if let Some(change) = self.pending.pop_front() {
                return Ok(Some(change));
            }
            let mut slice = &mut self.buf[..];
            match self.socket.recv(&mut slice, 0) {
                Ok(len) => {
                    let len = len.min(DATAGRAM);
                    for message in parse_datagram(&self.buf[..len]) {
                        let change = match message {
                            Message::Generation(generation) => {
                                self.stats.generations += 1;
                                NftablesChange::Generation(generation)
                            }
                            Message::Malformed => {
                                self.stats.malformed += 1;
                                NftablesChange::Unknown
                            }
                            Message::Other => {
                                self.stats.other_messages += 1;
                                continue;
                            }
                        };
                        self.pending.push_back(change);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    self.stats.overruns += 1;
                    return Ok(Some(NftablesChange::Unknown));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// What it counted so far.
    pub fn stats(&self) -> NftablesWatcherStats {
        self.stats
    }
}

impl AsRawFd for NftablesWatcher {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

impl AsFd for NftablesWatcher {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

/// One message of a datagram.
#[derive(Debug, PartialEq, Eq)]
enum Message {
    Generation(Generation),
    /// A generation event, or a datagram's rest, that does not parse.
    Malformed,
    /// Any other message.
    Other,
}

/// The messages of a datagram.
fn parse_datagram(datagram: &[u8]) -> Vec<Message> {
    let mut out = Vec::new();
    let mut rest = datagram;
    while !rest.is_empty() {
        let Ok(buffer) = NetlinkBuffer::new_checked(rest) else {
            out.push(Message::Malformed);
            break;
        };
        let len = buffer.length() as usize;
        out.push(if buffer.message_type() != MSG_NEWGEN {
            Message::Other
        } else {
            parse_generation(&rest[field::NLMSG_HEADER..len])
                .map_or(Message::Malformed, Message::Generation)
        });
        rest = rest.get(len.next_multiple_of(4)..).unwrap_or(&[]);
    }
    out
}

/// A `NFT_MSG_NEWGEN` payload (after the netlink header); `None` without a generation id.
fn parse_generation(payload: &[u8]) -> Option<Generation> {
    let mut id = None;
    let mut pid = None;
    let mut process = None;
    for attr in NlasIterator::new(payload.get(field::NFGENMSG..)?) {
        let attr = attr.ok()?;
        let value = attr.value();
        match attr.kind() {
            gen_attr::ID => id = Some(u32::from_be_bytes(value.try_into().ok()?)),
            gen_attr::PROC_PID => pid = Some(u32::from_be_bytes(value.try_into().ok()?)),
            gen_attr::PROC_NAME => {
                let name = value.split(|&b| b == 0).next().unwrap_or_default();
                process = Some(String::from_utf8_lossy(name).into_owned());
            }
            _ => {}
        }
    }
    Some(Generation {
        id: id?,
        pid,
        process,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A generation event as the kernel sends it (generation 13 by PID 12254, `nft`), followed
    /// by a `NFT_MSG_NEWTABLE` message.
    fn datagram() -> Vec<u8> {
        let mut gen_msg = Vec::new();
        let attrs: [(u16, Vec<u8>); 3] = [
            (1, 13u32.to_be_bytes().to_vec()),
            (2, 12254u32.to_be_bytes().to_vec()),
            (3, b"nft\0".to_vec()),
        ];
        gen_msg.extend_from_slice(&[0, 0, 0, 0]); // length, set below
        gen_msg.extend_from_slice(&MSG_NEWGEN.to_ne_bytes());
        gen_msg.extend_from_slice(&[0; 10]); // flags, sequence, port
        gen_msg.extend_from_slice(&[0, 0, 0, 0]); // nfgenmsg
        for (kind, value) in attrs {
            gen_msg.extend_from_slice(&(4 + value.len() as u16).to_ne_bytes());
            gen_msg.extend_from_slice(&kind.to_ne_bytes());
            gen_msg.extend_from_slice(&value);
            gen_msg.resize(gen_msg.len().next_multiple_of(4), 0);
        }
        let len = gen_msg.len() as u32;
        gen_msg[..4].copy_from_slice(&len.to_ne_bytes());
        let mut table = vec![20, 0, 0, 0];
        table.extend_from_slice(&(10u16 << 8).to_ne_bytes());
        table.extend_from_slice(&[0; 14]);
        gen_msg.extend_from_slice(&table);
        gen_msg
    }

    #[test]
    fn a_generation_event_parses() {
        assert_eq!(
            parse_datagram(&datagram()),
            [
                Message::Generation(Generation {
                    id: 13,
                    pid: Some(12254),
                    process: Some("nft".into()),
                }),
                Message::Other,
            ]
        );
    }

    #[test]
    fn truncated_events_do_not_parse() {
        let bytes = datagram();
        // Cut inside the generation id's value: the netlink length no longer fits.
        assert_eq!(parse_datagram(&bytes[..22]), [Message::Malformed]);
        // No generation id: not a generation.
        assert_eq!(parse_generation(&[0, 0, 0, 0]), None);
        assert_eq!(parse_generation(&[0, 0]), None);
    }
}
