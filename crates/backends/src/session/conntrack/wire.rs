//! ctnetlink messages: the requests the backend sends and the entries it reads back.
//!
//! Framing (netlink header, `nfgenmsg`, attribute headers) goes through `netlink-packet-core` and
//! `netlink-packet-netfilter`; the conntrack attributes themselves are written and read here as
//! raw nested attributes. The crates' typed conntrack model allocates a `Vec` per nested attribute
//! and lacks zone, NAT, labels, helper and sequence adjustment, so it is used for neither.
//!
//! Attribute numbers are the kernel's, from `include/uapi/linux/netfilter/nfnetlink_conntrack.h`;
//! status bits from `include/uapi/linux/netfilter/nf_conntrack_common.h`.
//!
//! Why one file of about 1,100 lines: every ctnetlink attribute the backend writes is read
//! back here too, beside it, and its last 150 lines test the pairs.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use failoverd_wire::{
    HelperName, NodeId, SeqAdj, SessionKey, SessionRecord, TcpInfo, TcpState, Tuple,
};
use netlink_packet_core::{
    Emitable, NLA_F_NESTED, NLA_HEADER_SIZE, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkBuffer,
    NetlinkHeader, NlaBuffer, NlasIterator,
};
use netlink_packet_netfilter::{NetfilterHeader, NetfilterProtoFamily};

use super::owner::{OwnerMark, Stamp};

/// `NFNL_SUBSYS_CTNETLINK`: the high byte of every conntrack message type.
const SUBSYS_CTNETLINK: u16 = 1;
/// `IPCTNL_MSG_CT_NEW`: create or update; also what dumps, lookups and NEW/UPDATE events carry.
pub(super) const MSG_NEW: u16 = SUBSYS_CTNETLINK << 8;
/// `IPCTNL_MSG_CT_GET`.
pub(super) const MSG_GET: u16 = (SUBSYS_CTNETLINK << 8) | 1;
/// `IPCTNL_MSG_CT_DELETE`; also what DESTROY events carry.
pub(super) const MSG_DELETE: u16 = (SUBSYS_CTNETLINK << 8) | 2;

/// `NLMSG_ERROR`, `NLMSG_DONE` (netlink(7)).
pub(super) const NLMSG_ERROR: u16 = 2;
pub(super) const NLMSG_DONE: u16 = 3;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_EXCL: u16 = 0x200;
const NETLINK_HEADER_LEN: usize = 16;
const NFGENMSG_LEN: usize = 4;

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// `enum ctattr_type`.
mod cta {
    pub(super) const TUPLE_ORIG: u16 = 1;
    pub(super) const TUPLE_REPLY: u16 = 2;
    pub(super) const STATUS: u16 = 3;
    pub(super) const PROTOINFO: u16 = 4;
    pub(super) const HELP: u16 = 5;
    pub(super) const NAT_SRC: u16 = 6;
    pub(super) const TIMEOUT: u16 = 7;
    pub(super) const MARK: u16 = 8;
    pub(super) const NAT_DST: u16 = 13;
    pub(super) const SEQ_ADJ_ORIG: u16 = 15;
    pub(super) const SEQ_ADJ_REPLY: u16 = 16;
    pub(super) const ZONE: u16 = 18;
    pub(super) const MARK_MASK: u16 = 21;
    pub(super) const LABELS: u16 = 22;
    pub(super) const LABELS_MASK: u16 = 23;
}

/// `enum ctattr_tuple`, `ctattr_ip`, `ctattr_l4proto`.
mod tuple {
    pub(super) const IP: u16 = 1;
    pub(super) const PROTO: u16 = 2;
    pub(super) const ZONE: u16 = 3;
    pub(super) const IP_V4_SRC: u16 = 1;
    pub(super) const IP_V4_DST: u16 = 2;
    pub(super) const IP_V6_SRC: u16 = 3;
    pub(super) const IP_V6_DST: u16 = 4;
    pub(super) const PROTO_NUM: u16 = 1;
    pub(super) const PROTO_SRC_PORT: u16 = 2;
    pub(super) const PROTO_DST_PORT: u16 = 3;
    pub(super) const PROTO_ICMP_ID: u16 = 4;
    pub(super) const PROTO_ICMP_TYPE: u16 = 5;
    pub(super) const PROTO_ICMP_CODE: u16 = 6;
    pub(super) const PROTO_ICMPV6_ID: u16 = 7;
    pub(super) const PROTO_ICMPV6_TYPE: u16 = 8;
    pub(super) const PROTO_ICMPV6_CODE: u16 = 9;
}

/// `ctattr_protoinfo`, `ctattr_protoinfo_tcp`, `ctattr_help`, `ctattr_seqadj`, `ctattr_nat`,
/// `ctattr_protonat`.
mod nested {
    pub(super) const PROTOINFO_TCP: u16 = 1;
    pub(super) const TCP_STATE: u16 = 1;
    pub(super) const TCP_WSCALE_ORIGINAL: u16 = 2;
    pub(super) const TCP_WSCALE_REPLY: u16 = 3;
    pub(super) const TCP_FLAGS_ORIGINAL: u16 = 4;
    pub(super) const TCP_FLAGS_REPLY: u16 = 5;
    pub(super) const HELP_NAME: u16 = 1;
    pub(super) const SEQADJ_CORRECTION_POS: u16 = 1;
    pub(super) const SEQADJ_OFFSET_BEFORE: u16 = 2;
    pub(super) const SEQADJ_OFFSET_AFTER: u16 = 3;
    pub(super) const NAT_V4_MINIP: u16 = 1;
    pub(super) const NAT_V4_MAXIP: u16 = 2;
    pub(super) const NAT_PROTO: u16 = 3;
    pub(super) const NAT_V6_MINIP: u16 = 4;
    pub(super) const NAT_V6_MAXIP: u16 = 5;
    pub(super) const PROTONAT_PORT_MIN: u16 = 1;
    pub(super) const PROTONAT_PORT_MAX: u16 = 2;
}

/// `IPS_*` status bits.
pub(super) mod status {
    pub(crate) const EXPECTED: u32 = 1 << 0;
    pub(crate) const SEEN_REPLY: u32 = 1 << 1;
    pub(crate) const ASSURED: u32 = 1 << 2;
    /// What the kernel lets an update set but never clear (EBUSY).
    pub(crate) const SET_ONLY: u32 = SEEN_REPLY | ASSURED;
    pub(crate) const CONFIRMED: u32 = 1 << 3;
    pub(crate) const SRC_NAT: u32 = 1 << 4;
    pub(crate) const DST_NAT: u32 = 1 << 5;
    pub(crate) const SEQ_ADJUST: u32 = 1 << 6;
    pub(crate) const SRC_NAT_DONE: u32 = 1 << 7;
    pub(crate) const DST_NAT_DONE: u32 = 1 << 8;
    pub(crate) const DYING: u32 = 1 << 9;
    pub(crate) const TEMPLATE: u32 = 1 << 11;
    pub(crate) const UNTRACKED: u32 = 1 << 12;
    pub(crate) const OFFLOAD: u32 = 1 << 14;
    pub(crate) const HW_OFFLOAD: u32 = 1 << 15;
    pub(crate) const NAT_ANY: u32 = SRC_NAT | DST_NAT | SRC_NAT_DONE | DST_NAT_DONE;
}

/// Status bits never sent. The kernel refuses (EBUSY) a status whose EXPECTED or DYING bit differs
/// from the entry's (neither is set on a live entry it accepts), and ignores
/// `IPS_UNCHANGEABLE_MASK`: NAT bits (derived from the NAT attributes), SEQ_ADJUST (derived from
/// the sequence adjustment), TEMPLATE, UNTRACKED and the offload bits (the flowtable's).
/// CONFIRMED is always sent: the kernel sets it on every entry it inserts and refuses (EBUSY) a
/// status without it.
const STATUS_NOT_SENT: u32 = status::EXPECTED
    | status::DYING
    | status::NAT_ANY
    | status::SEQ_ADJUST
    | status::TEMPLATE
    | status::UNTRACKED
    | status::OFFLOAD
    | status::HW_OFFLOAD;

/// `IP_CT_TCP_FLAG_BE_LIBERAL`: window tracking accepts any in-window-ish segment, so packets of a
/// connection picked up mid-stream are not marked invalid.
pub(super) const TCP_FLAG_BE_LIBERAL: u8 = 0x08;

const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_ICMPV6: u8 = 58;

/// Protocols whose tuples carry ports (`CTA_PROTO_SRC_PORT`/`DST_PORT`): TCP, UDP, DCCP, GRE (its
/// keys), SCTP, UDP-Lite. Other protocols but ICMP have address-only tuples.
fn has_ports(l4proto: u8) -> bool {
    matches!(l4proto, 6 | 17 | 33 | 47 | 132 | 136)
}

fn is_icmp(l4proto: u8) -> bool {
    matches!(l4proto, IPPROTO_ICMP | IPPROTO_ICMPV6)
}

/// A malformed message from the kernel: a bug or a kernel this code does not know, never a panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ParseError(pub &'static str);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed ctnetlink message: {}", self.0)
    }
}

impl std::error::Error for ParseError {}

impl From<ParseError> for std::io::Error {
    fn from(error: ParseError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidData, error)
    }
}

// ---------------------------------------------------------------------------------------------
// Writing

/// Requests, appended one after the other into one buffer that a single `send` carries.
#[derive(Default)]
pub(super) struct Writer {
    buf: Vec<u8>,
}

/// How a record is written: the timeout and extra TCP flags the backend chose for it.
pub(super) struct Write<'a> {
    pub record: &'a SessionRecord,
    pub timeout_secs: u32,
    /// The record's mark with the owner stamp in it.
    pub mark: u32,
    /// OR-ed into both directions' TCP flags.
    pub tcp_flags: u8,
    /// OR-ed into the record's status: the bits the kernel only lets be set (SEEN_REPLY,
    /// ASSURED), for an update the entry refused because it has one the record lacks.
    pub status_kept: u32,
}

impl Writer {
    pub(super) fn clear(&mut self) {
        self.buf.clear();
    }

    pub(super) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(super) fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// A create (`NLM_F_CREATE | NLM_F_EXCL`: an existing entry is EEXIST, never changed) of the
    /// whole record but its labels, which the kernel drops silently on create when they are not
    /// enabled: they follow in [`labels`](Self::labels), whose error is reported.
    pub(super) fn create(&mut self, seq: u32, write: &Write<'_>) {
        let record = write.record;
        let key = &record.key;
        let start = self.begin(MSG_NEW, NLM_F_CREATE | NLM_F_EXCL, seq, family(key));
        self.tuple(cta::TUPLE_ORIG, &key.orig, key.l4proto);
        let nat = Nat::of(record);
        if nat.is_some() {
            // As conntrackd does: the kernel derives the NAT reply tuple, and the NAT status bits
            // and bindings that make it translate packets, from the inverted original tuple and
            // the NAT ranges. A NATed reply tuple given as is would be stored without them.
            self.tuple(cta::TUPLE_REPLY, &inverted(record), key.l4proto);
        } else {
            self.tuple(cta::TUPLE_REPLY, &record.reply, key.l4proto);
        }
        self.zone(key.zone);
        if let Some(nat) = nat {
            if let Some(range) = nat.dst {
                self.nat_range(cta::NAT_DST, range);
            }
            if let Some(range) = nat.src {
                self.nat_range(cta::NAT_SRC, range);
            }
        }
        self.fields(write);
        self.end(start);
    }

    /// An update of an existing entry to the record: everything but the tuples and NAT, which
    /// the kernel cannot change on an existing entry (it refuses NAT attributes with EOPNOTSUPP).
    pub(super) fn update(&mut self, seq: u32, write: &Write<'_>) {
        let key = &write.record.key;
        let start = self.begin(MSG_NEW, 0, seq, family(key));
        self.key(key);
        self.fields(write);
        self.labels_attrs(&write.record.labels);
        self.end(start);
    }

    /// Sets the labels of an existing entry (refused with ENOSPC where labels are not enabled).
    pub(super) fn labels(&mut self, seq: u32, key: &SessionKey, labels: &[u8; 16]) {
        let start = self.begin(MSG_NEW, 0, seq, family(key));
        self.key(key);
        self.labels_attrs(labels);
        self.end(start);
    }

    /// Re-arms the timeout of an existing entry.
    pub(super) fn timeout(&mut self, seq: u32, key: &SessionKey, timeout_secs: u32) {
        let start = self.begin(MSG_NEW, 0, seq, family(key));
        self.key(key);
        self.be32(cta::TIMEOUT, timeout_secs);
        self.end(start);
    }

    /// Sets the owner stamp of an existing entry (only the bits of `mask`, so the rest of the
    /// mark stays as the ruleset set it), and its timeout when given.
    pub(super) fn stamp(
        &mut self,
        seq: u32,
        key: &SessionKey,
        (bits, mask): (u32, u32),
        timeout_secs: Option<u32>,
    ) {
        let start = self.begin(MSG_NEW, 0, seq, family(key));
        self.key(key);
        self.be32(cta::MARK, bits);
        self.be32(cta::MARK_MASK, mask);
        if let Some(timeout_secs) = timeout_secs {
            self.be32(cta::TIMEOUT, timeout_secs);
        }
        self.end(start);
    }

    pub(super) fn delete(&mut self, seq: u32, key: &SessionKey) {
        let start = self.begin(MSG_DELETE, 0, seq, family(key));
        self.key(key);
        self.end(start);
    }

    /// Asks for one entry: the reply is the entry, or ENOENT.
    pub(super) fn get(&mut self, seq: u32, key: &SessionKey) {
        let start = self.begin(MSG_GET, 0, seq, family(key));
        self.key(key);
        self.end(start);
    }

    /// Asks for every entry of both families.
    pub(super) fn dump(&mut self, seq: u32) {
        let start = self.begin_with_flags(MSG_GET, NLM_F_REQUEST | NLM_F_DUMP, seq, 0);
        self.end(start);
    }

    /// Status, timeout, mark, TCP protocol info, helper, sequence adjustment: what both a create
    /// and an update carry.
    fn fields(&mut self, write: &Write<'_>) {
        let record = write.record;
        self.be32(
            cta::STATUS,
            (record.status | write.status_kept | status::CONFIRMED) & !STATUS_NOT_SENT,
        );
        self.be32(cta::TIMEOUT, write.timeout_secs);
        self.be32(cta::MARK, write.mark);
        if record.key.l4proto == IPPROTO_TCP {
            self.tcp(&record.tcp, write.tcp_flags);
        }
        let helper = record.helper.as_str();
        if !helper.is_empty() {
            let help = self.begin_nested(cta::HELP);
            self.string(nested::HELP_NAME, helper);
            self.end_nested(help);
        }
        for (adj, kind) in record
            .seq_adj
            .iter()
            .zip([cta::SEQ_ADJ_ORIG, cta::SEQ_ADJ_REPLY])
        {
            if *adj != SeqAdj::default() {
                let at = self.begin_nested(kind);
                self.be32(nested::SEQADJ_CORRECTION_POS, adj.correction_pos);
                self.be32(nested::SEQADJ_OFFSET_BEFORE, adj.offset_before as u32);
                self.be32(nested::SEQADJ_OFFSET_AFTER, adj.offset_after as u32);
                self.end_nested(at);
            }
        }
    }

    fn tcp(&mut self, tcp: &TcpInfo, extra_flags: u8) {
        let info = self.begin_nested(cta::PROTOINFO);
        let inner = self.begin_nested(nested::PROTOINFO_TCP);
        self.u8(nested::TCP_STATE, tcp.state.0);
        self.u8(nested::TCP_WSCALE_ORIGINAL, tcp.wscale_orig);
        self.u8(nested::TCP_WSCALE_REPLY, tcp.wscale_reply);
        // `struct nf_ct_tcp_flags { flags, mask }`: a full mask replaces the kernel's flags.
        self.bytes_attr(
            nested::TCP_FLAGS_ORIGINAL,
            &[tcp.flags_orig | extra_flags, 0xff],
        );
        self.bytes_attr(
            nested::TCP_FLAGS_REPLY,
            &[tcp.flags_reply | extra_flags, 0xff],
        );
        self.end_nested(inner);
        self.end_nested(info);
    }

    /// Labels are sent only when set: the kernel refuses any labels, zero included, where no
    /// ruleset uses `ct label`.
    fn labels_attrs(&mut self, labels: &[u8; 16]) {
        if labels.iter().any(|&b| b != 0) {
            self.bytes_attr(cta::LABELS, labels);
            self.bytes_attr(cta::LABELS_MASK, &[0xff; 16]);
        }
    }

    fn key(&mut self, key: &SessionKey) {
        self.tuple(cta::TUPLE_ORIG, &key.orig, key.l4proto);
        self.zone(key.zone);
    }

    fn zone(&mut self, zone: u16) {
        if zone != 0 {
            self.be16(cta::ZONE, zone);
        }
    }

    fn tuple(&mut self, kind: u16, tuple: &Tuple, l4proto: u8) {
        let outer = self.begin_nested(kind);
        let ip = self.begin_nested(tuple::IP);
        match (tuple.src, tuple.dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                self.bytes_attr(tuple::IP_V4_SRC, &src.octets());
                self.bytes_attr(tuple::IP_V4_DST, &dst.octets());
            }
            (src, dst) => {
                self.bytes_attr(tuple::IP_V6_SRC, &v6_octets(src));
                self.bytes_attr(tuple::IP_V6_DST, &v6_octets(dst));
            }
        }
        self.end_nested(ip);
        let proto = self.begin_nested(tuple::PROTO);
        self.u8(tuple::PROTO_NUM, l4proto);
        if has_ports(l4proto) {
            self.be16(tuple::PROTO_SRC_PORT, tuple.src_port);
            self.be16(tuple::PROTO_DST_PORT, tuple.dst_port);
        } else if is_icmp(l4proto) {
            let (id, kind, code) = if l4proto == IPPROTO_ICMP {
                (
                    tuple::PROTO_ICMP_ID,
                    tuple::PROTO_ICMP_TYPE,
                    tuple::PROTO_ICMP_CODE,
                )
            } else {
                (
                    tuple::PROTO_ICMPV6_ID,
                    tuple::PROTO_ICMPV6_TYPE,
                    tuple::PROTO_ICMPV6_CODE,
                )
            };
            self.be16(id, tuple.src_port);
            self.u8(kind, (tuple.dst_port >> 8) as u8);
            self.u8(code, tuple.dst_port as u8);
        }
        self.end_nested(proto);
        self.end_nested(outer);
    }

    fn nat_range(&mut self, kind: u16, range: NatRange) {
        let outer = self.begin_nested(kind);
        match range.addr {
            IpAddr::V4(addr) => {
                self.bytes_attr(nested::NAT_V4_MINIP, &addr.octets());
                self.bytes_attr(nested::NAT_V4_MAXIP, &addr.octets());
            }
            IpAddr::V6(addr) => {
                self.bytes_attr(nested::NAT_V6_MINIP, &addr.octets());
                self.bytes_attr(nested::NAT_V6_MAXIP, &addr.octets());
            }
        }
        if let Some(port) = range.port {
            let proto = self.begin_nested(nested::NAT_PROTO);
            self.be16(nested::PROTONAT_PORT_MIN, port);
            self.be16(nested::PROTONAT_PORT_MAX, port);
            self.end_nested(proto);
        }
        self.end_nested(outer);
    }

    fn begin(&mut self, message_type: u16, flags: u16, seq: u32, family: u8) -> usize {
        self.begin_with_flags(message_type, NLM_F_REQUEST | NLM_F_ACK | flags, seq, family)
    }

    fn begin_with_flags(&mut self, message_type: u16, flags: u16, seq: u32, family: u8) -> usize {
        let start = self.buf.len();
        self.buf
            .resize(start + NETLINK_HEADER_LEN + NFGENMSG_LEN, 0);
        let mut header = NetlinkHeader::default();
        header.message_type = message_type;
        header.flags = flags;
        header.sequence_number = seq;
        header.emit(&mut self.buf[start..]);
        NetfilterHeader::new(NetfilterProtoFamily::from(family), 0, 0)
            .emit(&mut self.buf[start + NETLINK_HEADER_LEN..]);
        start
    }

    fn end(&mut self, start: usize) {
        let len = self.buf.len() - start;
        NetlinkBuffer::new(&mut self.buf[start..]).set_length(len as u32);
    }

    fn begin_nested(&mut self, kind: u16) -> usize {
        let at = self.buf.len();
        self.buf.resize(at + NLA_HEADER_SIZE, 0);
        NlaBuffer::new(&mut self.buf[at..]).set_kind(kind | NLA_F_NESTED);
        at
    }

    fn end_nested(&mut self, at: usize) {
        let len = self.buf.len() - at;
        NlaBuffer::new(&mut self.buf[at..]).set_length(len as u16);
    }

    fn bytes_attr(&mut self, kind: u16, value: &[u8]) {
        let at = self.buf.len();
        let len = NLA_HEADER_SIZE + value.len();
        self.buf.resize(at + align4(len), 0);
        let mut nla = NlaBuffer::new(&mut self.buf[at..]);
        nla.set_kind(kind);
        nla.set_length(len as u16);
        self.buf[at + NLA_HEADER_SIZE..at + len].copy_from_slice(value);
    }

    fn u8(&mut self, kind: u16, value: u8) {
        self.bytes_attr(kind, &[value]);
    }

    fn be16(&mut self, kind: u16, value: u16) {
        self.bytes_attr(kind, &value.to_be_bytes());
    }

    fn be32(&mut self, kind: u16, value: u32) {
        self.bytes_attr(kind, &value.to_be_bytes());
    }

    fn string(&mut self, kind: u16, value: &str) {
        let mut bytes = [0; 16];
        bytes[..value.len()].copy_from_slice(value.as_bytes());
        // NUL-terminated, as `NLA_NUL_STRING` requires.
        self.bytes_attr(kind, &bytes[..value.len() + 1]);
    }
}

fn align4(len: usize) -> usize {
    (len + 3) & !3
}

fn family(key: &SessionKey) -> u8 {
    if key.is_ipv6() { AF_INET6 } else { AF_INET }
}

fn v6_octets(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V6(addr) => addr.octets(),
        IpAddr::V4(addr) => addr.to_ipv6_mapped().octets(),
    }
}

/// Why a record cannot be written, found before anything is sent.
pub(super) fn check_writable(record: &SessionRecord) -> Result<(), &'static str> {
    let v6 = record.key.is_ipv6();
    let tuples = [record.key.orig, record.reply];
    if tuples
        .iter()
        .any(|t| t.src.is_ipv6() != v6 || t.dst.is_ipv6() != v6)
    {
        return Err("the record mixes IPv4 and IPv6 addresses");
    }
    Ok(())
}

/// One NAT manipulation: the address (and port, or ICMP id) the kernel maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NatRange {
    addr: IpAddr,
    port: Option<u16>,
}

/// The NAT a record's tuples encode: source NAT when replies go to another address (or port)
/// than the original source, destination NAT when they come from another than the original
/// destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Nat {
    src: Option<NatRange>,
    dst: Option<NatRange>,
}

impl Nat {
    /// `None` when the entry has no NAT binding at all. An entry the NAT hooks saw without
    /// translating it (status `*_NAT_DONE` only) gets an identity source range: the kernel then
    /// sets up null bindings in both directions, as its NAT hooks do.
    fn of(record: &SessionRecord) -> Option<Self> {
        let (orig, reply, l4proto) = (&record.key.orig, &record.reply, record.key.l4proto);
        let (src_port, dst_port) = if has_ports(l4proto) {
            (Some(reply.dst_port), Some(reply.src_port))
        } else if is_icmp(l4proto) {
            // The ICMP id is the "port" NAT maps, and both directions carry it as the source.
            (Some(reply.src_port), None)
        } else {
            (None, None)
        };
        let orig_src_port = if has_ports(l4proto) || is_icmp(l4proto) {
            Some(orig.src_port)
        } else {
            None
        };
        let orig_dst_port = has_ports(l4proto).then_some(orig.dst_port);
        let src = (reply.dst != orig.src || src_port != orig_src_port).then_some(NatRange {
            addr: reply.dst,
            port: src_port,
        });
        let dst = (reply.src != orig.dst || dst_port != orig_dst_port).then_some(NatRange {
            addr: reply.src,
            port: dst_port,
        });
        if src.is_none() && dst.is_none() {
            if record.status & status::NAT_ANY == 0 {
                return None;
            }
            let identity = NatRange {
                addr: orig.src,
                port: orig_src_port,
            };
            return Some(Self {
                src: Some(identity),
                dst: None,
            });
        }
        Some(Self { src, dst })
    }
}

/// The reply tuple the entry would have without NAT. For ICMP the reply keeps the id and takes
/// the record's reply type and code (echo reply for an echo request).
fn inverted(record: &SessionRecord) -> Tuple {
    let orig = &record.key.orig;
    if is_icmp(record.key.l4proto) {
        Tuple {
            src: orig.dst,
            dst: orig.src,
            src_port: orig.src_port,
            dst_port: record.reply.dst_port,
        }
    } else {
        Tuple {
            src: orig.dst,
            dst: orig.src,
            src_port: orig.dst_port,
            dst_port: orig.src_port,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reading

/// One netlink message of a datagram.
pub(super) struct Message<'a> {
    pub message_type: u16,
    pub seq: u32,
    /// The port id the message speaks for: ctnetlink stamps an event with the port id of the
    /// socket whose request caused it, 0 for the kernel's own changes.
    pub port_id: u32,
    pub payload: &'a [u8],
}

/// The netlink messages of a datagram.
pub(super) fn messages(datagram: &[u8]) -> impl Iterator<Item = Result<Message<'_>, ParseError>> {
    let mut rest = datagram;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let Ok(buffer) = NetlinkBuffer::new_checked(rest) else {
            rest = &[];
            return Some(Err(ParseError("netlink header")));
        };
        let len = buffer.length() as usize;
        let message = Message {
            message_type: buffer.message_type(),
            seq: buffer.sequence_number(),
            port_id: buffer.port_number(),
            payload: &rest[NETLINK_HEADER_LEN..len],
        };
        rest = rest.get(align4(len)..).unwrap_or(&[]);
        Some(Ok(message))
    })
}

/// The code of an `NLMSG_ERROR` message: 0 for an acknowledgement, else a negative errno.
pub(super) fn error_code(payload: &[u8]) -> Result<i32, ParseError> {
    payload
        .get(..4)
        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or(ParseError("error message"))
}

/// An entry as a dump, a lookup or a NEW/UPDATE event reports it, owned by `owner`.
pub(super) struct Entry {
    pub record: SessionRecord,
    /// Whether the message carried TCP protocol info; an event carries it only when it changed.
    pub has_protoinfo: bool,
    /// Whether it carried sequence adjustment; an event carries it only when it changed.
    pub has_seq_adj: bool,
    /// Whose entry its mark says it is (the stamp bits are not in `record.mark`).
    pub stamp: Stamp,
}

impl Entry {
    /// Whether an event left out state the entry has: TCP info, or the sequence adjustment that
    /// its status says it has. Labels are not detectable this way (see the module docs).
    pub(super) fn is_partial(&self) -> bool {
        (self.record.key.l4proto == IPPROTO_TCP && !self.has_protoinfo)
            || (self.record.status & status::SEQ_ADJUST != 0 && !self.has_seq_adj)
    }
}

/// Parses the payload (after the netlink header) of an entry message, the owner stamp taken out
/// of the mark.
pub(super) fn parse_entry(
    payload: &[u8],
    owner: NodeId,
    owner_mark: OwnerMark,
) -> Result<Entry, ParseError> {
    let attrs = attributes(payload)?;
    let mut orig = None;
    let mut reply = None;
    let mut zone = None;
    let mut record_status = 0;
    let mut timeout_secs = 0;
    let mut mark = 0;
    let mut tcp = TcpInfo::default();
    let mut has_protoinfo = false;
    let mut seq_adj = [SeqAdj::default(); 2];
    let mut has_seq_adj = false;
    let mut labels = [0; 16];
    let mut helper = HelperName::NONE;
    for attr in NlasIterator::new(attrs) {
        let attr = attr.map_err(|_| ParseError("attribute header"))?;
        let value = attr.value();
        match attr.kind() {
            cta::TUPLE_ORIG => orig = Some(parse_tuple(value)?),
            cta::TUPLE_REPLY => reply = Some(parse_tuple(value)?),
            cta::ZONE => zone = Some(be16(value)?),
            cta::STATUS => record_status = be32(value)?,
            cta::TIMEOUT => timeout_secs = be32(value)?,
            cta::MARK => mark = be32(value)?,
            cta::PROTOINFO => has_protoinfo = parse_protoinfo(value, &mut tcp)?,
            cta::SEQ_ADJ_ORIG => {
                seq_adj[0] = parse_seq_adj(value)?;
                has_seq_adj = true;
            }
            cta::SEQ_ADJ_REPLY => {
                seq_adj[1] = parse_seq_adj(value)?;
                has_seq_adj = true;
            }
            cta::LABELS => {
                let len = value.len().min(labels.len());
                labels[..len].copy_from_slice(&value[..len]);
            }
            cta::HELP => helper = parse_helper(value)?,
            _ => {}
        }
    }
    let orig = orig.ok_or(ParseError("no original tuple"))?;
    let reply = reply.ok_or(ParseError("no reply tuple"))?;
    if orig.l4proto != reply.l4proto || orig.tuple.src.is_ipv6() != reply.tuple.src.is_ipv6() {
        return Err(ParseError("tuples of different protocols"));
    }
    let record = SessionRecord {
        key: SessionKey {
            zone: zone.or(orig.zone).unwrap_or(0),
            l4proto: orig.l4proto,
            orig: orig.tuple,
        },
        reply: reply.tuple,
        owner,
        mark: mark & !owner_mark.mask(),
        status: record_status,
        timeout_secs,
        tcp,
        seq_adj,
        labels,
        helper,
    };
    Ok(Entry {
        record,
        has_protoinfo,
        has_seq_adj,
        stamp: owner_mark.stamp(mark),
    })
}

/// Parses only the key of an entry message (all a DESTROY event needs).
pub(super) fn parse_key(payload: &[u8]) -> Result<SessionKey, ParseError> {
    let mut orig = None;
    let mut zone = None;
    for attr in NlasIterator::new(attributes(payload)?) {
        let attr = attr.map_err(|_| ParseError("attribute header"))?;
        match attr.kind() {
            cta::TUPLE_ORIG => orig = Some(parse_tuple(attr.value())?),
            cta::ZONE => zone = Some(be16(attr.value())?),
            _ => {}
        }
    }
    let orig = orig.ok_or(ParseError("no original tuple"))?;
    Ok(SessionKey {
        zone: zone.or(orig.zone).unwrap_or(0),
        l4proto: orig.l4proto,
        orig: orig.tuple,
    })
}

/// The attributes after the `nfgenmsg` header.
fn attributes(payload: &[u8]) -> Result<&[u8], ParseError> {
    NetfilterHeader::parse(payload).map_err(|_| ParseError("nfgenmsg header"))?;
    Ok(&payload[NFGENMSG_LEN..])
}

struct ParsedTuple {
    tuple: Tuple,
    l4proto: u8,
    /// `CTA_TUPLE_ZONE`: a zone that applies to one direction only.
    zone: Option<u16>,
}

fn parse_tuple(value: &[u8]) -> Result<ParsedTuple, ParseError> {
    let mut src = None;
    let mut dst = None;
    let mut l4proto = None;
    let (mut src_port, mut dst_port) = (0, 0);
    let (mut icmp_id, mut icmp_type, mut icmp_code) = (0, 0, 0);
    let mut zone = None;
    for attr in NlasIterator::new(value) {
        let attr = attr.map_err(|_| ParseError("tuple attribute"))?;
        match attr.kind() {
            tuple::IP => {
                for ip in NlasIterator::new(attr.value()) {
                    let ip = ip.map_err(|_| ParseError("address attribute"))?;
                    let v = ip.value();
                    match ip.kind() {
                        tuple::IP_V4_SRC => src = Some(IpAddr::V4(addr4(v)?)),
                        tuple::IP_V4_DST => dst = Some(IpAddr::V4(addr4(v)?)),
                        tuple::IP_V6_SRC => src = Some(IpAddr::V6(addr6(v)?)),
                        tuple::IP_V6_DST => dst = Some(IpAddr::V6(addr6(v)?)),
                        _ => {}
                    }
                }
            }
            tuple::PROTO => {
                for proto in NlasIterator::new(attr.value()) {
                    let proto = proto.map_err(|_| ParseError("protocol attribute"))?;
                    let v = proto.value();
                    match proto.kind() {
                        tuple::PROTO_NUM => l4proto = Some(u8_of(v)?),
                        tuple::PROTO_SRC_PORT => src_port = be16(v)?,
                        tuple::PROTO_DST_PORT => dst_port = be16(v)?,
                        tuple::PROTO_ICMP_ID | tuple::PROTO_ICMPV6_ID => icmp_id = be16(v)?,
                        tuple::PROTO_ICMP_TYPE | tuple::PROTO_ICMPV6_TYPE => icmp_type = u8_of(v)?,
                        tuple::PROTO_ICMP_CODE | tuple::PROTO_ICMPV6_CODE => icmp_code = u8_of(v)?,
                        _ => {}
                    }
                }
            }
            tuple::ZONE => zone = Some(be16(attr.value())?),
            _ => {}
        }
    }
    let (src, dst) = match (src, dst) {
        (Some(src), Some(dst)) if src.is_ipv6() == dst.is_ipv6() => (src, dst),
        _ => return Err(ParseError("tuple addresses")),
    };
    let l4proto = l4proto.ok_or(ParseError("no protocol number"))?;
    if is_icmp(l4proto) {
        src_port = icmp_id;
        dst_port = u16::from(icmp_type) << 8 | u16::from(icmp_code);
    }
    Ok(ParsedTuple {
        tuple: Tuple {
            src,
            dst,
            src_port,
            dst_port,
        },
        l4proto,
        zone,
    })
}

/// Returns whether TCP info was present.
fn parse_protoinfo(value: &[u8], tcp: &mut TcpInfo) -> Result<bool, ParseError> {
    let mut found = false;
    for attr in NlasIterator::new(value) {
        let attr = attr.map_err(|_| ParseError("protoinfo attribute"))?;
        if attr.kind() != nested::PROTOINFO_TCP {
            continue;
        }
        found = true;
        for field in NlasIterator::new(attr.value()) {
            let field = field.map_err(|_| ParseError("TCP protoinfo attribute"))?;
            let v = field.value();
            match field.kind() {
                nested::TCP_STATE => tcp.state = TcpState(u8_of(v)?),
                nested::TCP_WSCALE_ORIGINAL => tcp.wscale_orig = u8_of(v)?,
                nested::TCP_WSCALE_REPLY => tcp.wscale_reply = u8_of(v)?,
                nested::TCP_FLAGS_ORIGINAL => tcp.flags_orig = u8_of(v)?,
                nested::TCP_FLAGS_REPLY => tcp.flags_reply = u8_of(v)?,
                _ => {}
            }
        }
    }
    Ok(found)
}

fn parse_seq_adj(value: &[u8]) -> Result<SeqAdj, ParseError> {
    let mut adj = SeqAdj::default();
    for attr in NlasIterator::new(value) {
        let attr = attr.map_err(|_| ParseError("sequence adjustment attribute"))?;
        let v = attr.value();
        match attr.kind() {
            nested::SEQADJ_CORRECTION_POS => adj.correction_pos = be32(v)?,
            nested::SEQADJ_OFFSET_BEFORE => adj.offset_before = be32(v)? as i32,
            nested::SEQADJ_OFFSET_AFTER => adj.offset_after = be32(v)? as i32,
            _ => {}
        }
    }
    Ok(adj)
}

fn parse_helper(value: &[u8]) -> Result<HelperName, ParseError> {
    for attr in NlasIterator::new(value) {
        let attr = attr.map_err(|_| ParseError("helper attribute"))?;
        if attr.kind() == nested::HELP_NAME {
            let raw = attr.value();
            let name = raw.split(|&b| b == 0).next().unwrap_or(raw);
            let name = std::str::from_utf8(name).map_err(|_| ParseError("helper name"))?;
            return HelperName::new(name).ok_or(ParseError("helper name"));
        }
    }
    Ok(HelperName::NONE)
}

fn u8_of(v: &[u8]) -> Result<u8, ParseError> {
    v.first().copied().ok_or(ParseError("short u8 attribute"))
}

fn be16(v: &[u8]) -> Result<u16, ParseError> {
    v.get(..2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or(ParseError("short u16 attribute"))
}

fn be32(v: &[u8]) -> Result<u32, ParseError> {
    v.get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or(ParseError("short u32 attribute"))
}

fn addr4(v: &[u8]) -> Result<Ipv4Addr, ParseError> {
    let octets: [u8; 4] = v
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or(ParseError("short IPv4 address"))?;
    Ok(Ipv4Addr::from(octets))
}

fn addr6(v: &[u8]) -> Result<Ipv6Addr, ParseError> {
    let octets: [u8; 16] = v
        .get(..16)
        .and_then(|b| b.try_into().ok())
        .ok_or(ParseError("short IPv6 address"))?;
    Ok(Ipv6Addr::from(octets))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::sample_record;
    use proptest::prelude::*;

    /// The payload (after the netlink header) of the first message in `bytes`.
    fn payload(bytes: &[u8]) -> Vec<u8> {
        messages(bytes).next().unwrap().unwrap().payload.to_vec()
    }

    fn labelled(i: u32) -> SessionRecord {
        let mut record = sample_record(i, NodeId(2));
        record.labels = [i as u8 | 1; 16];
        record.helper = HelperName::new("ftp").unwrap();
        record.seq_adj[1] = SeqAdj {
            correction_pos: i,
            offset_before: -3,
            offset_after: 9,
        };
        record.status |= status::SEQ_ADJUST;
        record
    }

    /// An update carries every field but the reply tuple, in the attributes the kernel reports
    /// them in: with the reply tuple added, it parses back to its record, and the owner stamp
    /// written into the mark comes back as the stamp, out of the mark.
    #[test]
    fn an_update_parses_back_to_its_record() {
        let owner_mark = OwnerMark::DEFAULT;
        for i in 0..12 {
            let mut record = labelled(i);
            record.mark &= !owner_mark.mask();
            let stamp = [Stamp::Local, Stamp::Peer, Stamp::None][i as usize % 3];
            let mut writer = Writer::default();
            let write = Write {
                record: &record,
                timeout_secs: record.timeout_secs,
                mark: record.mark | owner_mark.bits(stamp),
                tcp_flags: 0,
                status_kept: 0,
            };
            writer.update(7, &write);
            let mut report = payload(writer.bytes());
            assert_eq!(
                parse_entry(&report, record.owner, owner_mark).err(),
                Some(ParseError("no reply tuple"))
            );
            let mut reply = Writer::default();
            reply.tuple(cta::TUPLE_REPLY, &record.reply, record.key.l4proto);
            report.extend_from_slice(reply.bytes());
            let entry = parse_entry(&report, record.owner, owner_mark).unwrap();
            assert_eq!(entry.stamp, stamp);
            let mut want = record.clone();
            want.status = (record.status | status::CONFIRMED) & !STATUS_NOT_SENT;
            assert_eq!(entry.record, want);
            assert!(entry.has_seq_adj);
            assert_eq!(entry.has_protoinfo, record.key.l4proto == IPPROTO_TCP);
            assert_eq!(parse_key(&report), Ok(record.key));
        }
    }

    #[test]
    fn nat_is_sent_as_ranges_with_the_inverted_tuple() {
        // Sample records are source-NATed: the reply goes to the NAT address and port.
        let record = sample_record(0, NodeId(1));
        let nat = Nat::of(&record).unwrap();
        assert_eq!(
            nat,
            Nat {
                src: Some(NatRange {
                    addr: record.reply.dst,
                    port: Some(record.reply.dst_port)
                }),
                dst: None
            }
        );
        let inverse = inverted(&record);
        assert_eq!(inverse.src, record.key.orig.dst);
        assert_eq!(inverse.dst_port, record.key.orig.src_port);

        // ICMP: the id is what source NAT maps, and it is in both tuples' source.
        let icmp = sample_record(4, NodeId(1));
        assert_eq!(icmp.key.l4proto, IPPROTO_ICMP);
        let nat = Nat::of(&icmp).unwrap();
        assert_eq!(nat.src.unwrap().port, Some(icmp.reply.src_port));
        assert_eq!(inverted(&icmp).dst_port, icmp.reply.dst_port);

        // Without translation and without NAT status, no NAT attributes at all.
        let mut plain = record.clone();
        plain.reply = inverted(&record);
        plain.status &= !status::NAT_ANY;
        assert_eq!(Nat::of(&plain), None);
        // NAT_DONE alone asks for null bindings.
        plain.status |= status::SRC_NAT_DONE;
        assert_eq!(
            Nat::of(&plain).unwrap().src.unwrap().addr,
            plain.key.orig.src
        );

        // Destination NAT: replies come from another address than the original destination.
        let mut dnat = plain.clone();
        dnat.reply.src = "192.0.2.99".parse().unwrap();
        let nat = Nat::of(&dnat).unwrap();
        assert_eq!(nat.src, None);
        assert_eq!(nat.dst.unwrap().addr, dnat.reply.src);
    }

    #[test]
    fn mixed_families_are_refused_before_sending() {
        let mut record = sample_record(0, NodeId(1));
        record.reply.dst = "2001:db8::1".parse().unwrap();
        assert!(check_writable(&record).is_err());
        assert!(check_writable(&sample_record(1, NodeId(1))).is_ok());
    }

    #[test]
    fn acks_and_messages_are_split() {
        let mut writer = Writer::default();
        writer.delete(1, &sample_record(0, NodeId(1)).key);
        writer.get(2, &sample_record(1, NodeId(1)).key);
        let seqs: Vec<_> = messages(writer.bytes()).map(|m| m.unwrap().seq).collect();
        assert_eq!(seqs, [1, 2]);
        assert_eq!(error_code(&(-2_i32).to_ne_bytes()), Ok(-2));
        assert!(error_code(&[0, 1]).is_err());
    }

    proptest! {
        #[test]
        fn parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = parse_entry(&bytes, NodeId(1), OwnerMark::DEFAULT);
            let _ = parse_key(&bytes);
            for message in messages(&bytes) {
                let _ = message;
            }
        }

        #[test]
        fn parsing_truncated_messages_never_panics(i in 0..64_u32, cut in 0..400_usize) {
            let record = labelled(i);
            let mut writer = Writer::default();
            writer.create(1, &Write { record: &record, timeout_secs: 5, mark: record.mark, tcp_flags: 8, status_kept: 0 });
            let payload = payload(writer.bytes());
            let cut = cut.min(payload.len());
            let _ = parse_entry(&payload[..cut], NodeId(1), OwnerMark::DEFAULT);
            let mut corrupt = payload.clone();
            let at = cut.min(corrupt.len() - 1);
            corrupt[at] ^= 0x5a;
            let _ = parse_entry(&corrupt, NodeId(1), OwnerMark::DEFAULT);
            let _ = parse_key(&corrupt);
        }
    }
}
