//! Session records: the owned types every layer shares, and their fixed-size wire encoding.
//!
//! A record carries what a takeover needs (see `docs/ARCHITECTURE.md`): both tuples so NAT
//! survives, TCP state and window-scaling data, status bits, timeout, mark, zone, labels, helper
//! and NAT sequence adjustment. Records are fixed-size on the wire so a batch section can carry a
//! `record_len`: a newer peer may append fields and an older one skips them.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::{WireError, read_u16, read_u32};

/// Identifies one node of a pair; derived from its public key, so it is stable across restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct NodeId(pub u32);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

/// One direction of a connection. For ICMP, `src_port` holds the echo id and `dst_port` holds
/// `type << 8 | code`, as ctnetlink reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tuple {
    /// Source address. All four addresses of a record share one family.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port (or ICMP id).
    pub src_port: u16,
    /// Destination port (or ICMP type and code).
    pub dst_port: u16,
}

impl fmt::Display for Tuple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.src, self.dst) {
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                write!(f, "[{s}]:{} -> [{d}]:{}", self.src_port, self.dst_port)
            }
            (s, d) => write!(f, "{s}:{} -> {d}:{}", self.src_port, self.dst_port),
        }
    }
}

/// What identifies a session in a table: the original-direction tuple, protocol and zone
/// (the identity the kernel's conntrack table uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionKey {
    /// Conntrack zone.
    pub zone: u16,
    /// IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, ...).
    pub l4proto: u8,
    /// The original-direction tuple.
    pub orig: Tuple,
}

impl SessionKey {
    /// True for IPv6 sessions.
    pub fn is_ipv6(&self) -> bool {
        self.orig.src.is_ipv6()
    }
}

impl fmt::Display for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", proto_name(self.l4proto), self.orig)?;
        if self.zone != 0 {
            write!(f, " zone {}", self.zone)?;
        }
        Ok(())
    }
}

/// The short name of an IP protocol number, for display and CLI filters.
pub fn proto_name(l4proto: u8) -> &'static str {
    match l4proto {
        1 => "icmp",
        6 => "tcp",
        17 => "udp",
        58 => "icmpv6",
        132 => "sctp",
        _ => "other",
    }
}

/// TCP connection-tracking state, numbered as the kernel's `enum tcp_conntrack`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpState(pub u8);

impl TcpState {
    /// No TCP state (non-TCP sessions).
    pub const NONE: Self = Self(0);
    /// SYN seen.
    pub const SYN_SENT: Self = Self(1);
    /// SYN/ACK seen.
    pub const SYN_RECV: Self = Self(2);
    /// Three-way handshake complete.
    pub const ESTABLISHED: Self = Self(3);
    /// FIN seen.
    pub const FIN_WAIT: Self = Self(4);
    /// FIN seen in the reply direction.
    pub const CLOSE_WAIT: Self = Self(5);
    /// Waiting for the last ACK.
    pub const LAST_ACK: Self = Self(6);
    /// Both FINs seen.
    pub const TIME_WAIT: Self = Self(7);
    /// RST seen.
    pub const CLOSE: Self = Self(8);

    /// The kernel's name of the state.
    pub fn name(self) -> &'static str {
        const NAMES: [&str; 10] = [
            "NONE",
            "SYN_SENT",
            "SYN_RECV",
            "ESTABLISHED",
            "FIN_WAIT",
            "CLOSE_WAIT",
            "LAST_ACK",
            "TIME_WAIT",
            "CLOSE",
            "SYN_SENT2",
        ];
        NAMES.get(usize::from(self.0)).copied().unwrap_or("UNKNOWN")
    }
}

/// TCP protocol info as ctnetlink carries it (`CTA_PROTOINFO_TCP_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpInfo {
    /// Tracking state.
    pub state: TcpState,
    /// Window scale of the original direction.
    pub wscale_orig: u8,
    /// Window scale of the reply direction.
    pub wscale_reply: u8,
    /// `IP_CT_TCP_FLAG_*` bits of the original direction (0x08 is "be liberal").
    pub flags_orig: u8,
    /// `IP_CT_TCP_FLAG_*` bits of the reply direction.
    pub flags_reply: u8,
}

/// NAT sequence adjustment of one direction (`CTA_SEQADJ_*`), needed by ALGs that rewrite payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SeqAdj {
    /// Sequence number at which the correction starts.
    pub correction_pos: u32,
    /// Offset before `correction_pos`.
    pub offset_before: i32,
    /// Offset after `correction_pos`.
    pub offset_after: i32,
}

/// A conntrack helper name (`CTA_HELP_NAME`): at most 15 printable ASCII bytes, empty for none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct HelperName([u8; HELPER_NAME_LEN]);

/// The kernel's `NF_CT_HELPER_NAME_LEN`, including the terminating NUL.
pub const HELPER_NAME_LEN: usize = 16;

impl HelperName {
    /// No helper.
    pub const NONE: Self = Self([0; HELPER_NAME_LEN]);

    /// A helper name; `None` if it is longer than 15 bytes or not printable ASCII.
    pub fn new(name: &str) -> Option<Self> {
        let bytes = name.as_bytes();
        if bytes.len() >= HELPER_NAME_LEN || !bytes.iter().all(|b| b.is_ascii_graphic()) {
            return None;
        }
        let mut out = [0; HELPER_NAME_LEN];
        out[..bytes.len()].copy_from_slice(bytes);
        Some(Self(out))
    }

    /// The name; empty when there is no helper.
    pub fn as_str(&self) -> &str {
        let len = self
            .0
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(HELPER_NAME_LEN);
        // Invariant: constructed only from ASCII by `new` or checked by `parse`.
        std::str::from_utf8(&self.0[..len]).unwrap_or("")
    }

    fn parse(raw: &[u8]) -> Result<Self, WireError> {
        let mut out = [0; HELPER_NAME_LEN];
        out.copy_from_slice(raw);
        let len = out
            .iter()
            .position(|&b| b == 0)
            .ok_or(WireError::Malformed("helper name"))?;
        let (name, pad) = out.split_at(len);
        if !name.iter().all(|b| b.is_ascii_graphic()) || pad.iter().any(|&b| b != 0) {
            return Err(WireError::Malformed("helper name"));
        }
        Ok(Self(out))
    }
}

/// One replicated connection-tracking entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionRecord {
    /// Identity: zone, protocol, original tuple.
    pub key: SessionKey,
    /// Reply-direction tuple; differs from the inverted original tuple under NAT.
    pub reply: Tuple,
    /// The node whose table created (or last adopted) the entry.
    pub owner: NodeId,
    /// Connection mark.
    pub mark: u32,
    /// `IPS_*` status bits.
    pub status: u32,
    /// Remaining lifetime in seconds.
    pub timeout_secs: u32,
    /// TCP tracking data; all zero for other protocols.
    pub tcp: TcpInfo,
    /// NAT sequence adjustment, original then reply direction.
    pub seq_adj: [SeqAdj; 2],
    /// Connection labels (128 bits).
    pub labels: [u8; 16],
    /// Conntrack helper attached to the entry.
    pub helper: HelperName,
}

/// A change to a session table: what the core asks a backend to apply, and what a backend
/// reports of its own table's changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionOp {
    /// Create the entry, or replace it if the key exists.
    Upsert(SessionRecord),
    /// Delete the entry with this key if `owner` owns it. A backend reports its local deletes
    /// this way, with the owner the entry had; from the peer it speaks only for the peer's own
    /// entries, so an entry that expired on the standby never deletes the owner's live session.
    Remove {
        /// The entry to delete.
        key: SessionKey,
        /// Its owner.
        owner: NodeId,
    },
    /// Delete the entry with this key whoever owns it: the session ended in the traffic of the
    /// active node, so every copy goes.
    RemoveAny {
        /// The entry to delete.
        key: SessionKey,
    },
}

impl SessionOp {
    /// The key the op is about.
    pub fn key(&self) -> &SessionKey {
        match self {
            Self::Upsert(record) => &record.key,
            Self::Remove { key, .. } | Self::RemoveAny { key } => key,
        }
    }
}

/// Encoded length of a [`SessionRecord`] in this version.
pub const RECORD_LEN: usize = field::record::HELPER.end;
/// Encoded length of a [`SessionKey`] in this version.
pub const KEY_LEN: usize = field::key::ORIG.end;

/// Byte offsets of the encodings, each given once here.
mod field {
    /// One direction (36 bytes): addresses of 16 bytes each (an IPv4 address in the first 4,
    /// the rest zero), then the ports.
    pub(crate) mod tuple {
        use crate::Field;

        pub(crate) const SRC: Field = 0..16;
        pub(crate) const DST: Field = 16..32;
        pub(crate) const SRC_PORT: Field = 32..34;
        pub(crate) const DST_PORT: Field = 34..36;
    }

    /// Key layout: family u8, l4proto u8, zone u16, original tuple (36).
    pub(crate) mod key {
        use crate::Field;

        pub(crate) const FAMILY: usize = 0;
        pub(crate) const L4PROTO: usize = 1;
        pub(crate) const ZONE: Field = 2..4;
        pub(crate) const ORIG: Field = 4..40;
    }

    /// Record layout after the key (40 bytes): reply tuple (36), owner, mark, status, timeout
    /// (u32 each), TCP state, wscale orig/reply, flags orig/reply, 3 reserved, 2 x seq-adj (12
    /// each), labels (16), helper (16).
    pub(crate) mod record {
        use crate::Field;

        pub(crate) const KEY: Field = 0..super::key::ORIG.end;
        pub(crate) const REPLY: Field = 40..76;
        pub(crate) const OWNER: Field = 76..80;
        pub(crate) const MARK: Field = 80..84;
        pub(crate) const STATUS: Field = 84..88;
        pub(crate) const TIMEOUT: Field = 88..92;
        pub(crate) const TCP_STATE: usize = 92;
        pub(crate) const WSCALE_ORIG: usize = 93;
        pub(crate) const WSCALE_REPLY: usize = 94;
        pub(crate) const FLAGS_ORIG: usize = 95;
        pub(crate) const FLAGS_REPLY: usize = 96;
        pub(crate) const RESERVED: Field = 97..100;
        /// Original, then reply direction.
        pub(crate) const SEQ_ADJ: [Field; 2] = [100..112, 112..124];
        pub(crate) const LABELS: Field = 124..140;
        pub(crate) const HELPER: Field = 140..156;
    }

    /// One direction's sequence adjustment, within a [`record::SEQ_ADJ`] field.
    pub(crate) mod seq_adj {
        use crate::Field;

        pub(crate) const CORRECTION_POS: Field = 0..4;
        pub(crate) const OFFSET_BEFORE: Field = 4..8;
        pub(crate) const OFFSET_AFTER: Field = 8..12;
    }
}

const FAMILY_V4: u8 = 4;
const FAMILY_V6: u8 = 6;

fn emit_addr(buf: &mut [u8], addr: IpAddr) {
    match addr {
        IpAddr::V4(a) => {
            buf[..4].copy_from_slice(&a.octets());
            buf[4..16].fill(0);
        }
        IpAddr::V6(a) => buf[..16].copy_from_slice(&a.octets()),
    }
}

fn parse_addr(buf: &[u8], family: u8) -> Result<IpAddr, WireError> {
    if family == FAMILY_V4 {
        if buf[4..16].iter().any(|&b| b != 0) {
            return Err(WireError::Malformed("IPv4 address padding"));
        }
        Ok(IpAddr::V4(Ipv4Addr::new(buf[0], buf[1], buf[2], buf[3])))
    } else {
        let mut octets = [0; 16];
        octets.copy_from_slice(&buf[..16]);
        Ok(IpAddr::V6(Ipv6Addr::from(octets)))
    }
}

impl Tuple {
    fn emit(&self, buf: &mut [u8]) {
        use field::tuple::*;
        emit_addr(&mut buf[SRC], self.src);
        emit_addr(&mut buf[DST], self.dst);
        buf[SRC_PORT].copy_from_slice(&self.src_port.to_be_bytes());
        buf[DST_PORT].copy_from_slice(&self.dst_port.to_be_bytes());
    }

    fn parse(buf: &[u8], family: u8) -> Result<Self, WireError> {
        use field::tuple::*;
        Ok(Self {
            src: parse_addr(&buf[SRC], family)?,
            dst: parse_addr(&buf[DST], family)?,
            src_port: read_u16(buf, SRC_PORT),
            dst_port: read_u16(buf, DST_PORT),
        })
    }
}

impl SeqAdj {
    fn emit(&self, buf: &mut [u8]) {
        use field::seq_adj::*;
        buf[CORRECTION_POS].copy_from_slice(&self.correction_pos.to_be_bytes());
        buf[OFFSET_BEFORE].copy_from_slice(&self.offset_before.to_be_bytes());
        buf[OFFSET_AFTER].copy_from_slice(&self.offset_after.to_be_bytes());
    }

    fn parse(buf: &[u8]) -> Self {
        use field::seq_adj::*;
        Self {
            correction_pos: read_u32(buf, CORRECTION_POS),
            offset_before: read_u32(buf, OFFSET_BEFORE) as i32,
            offset_after: read_u32(buf, OFFSET_AFTER) as i32,
        }
    }
}

fn family_of(key: &SessionKey) -> u8 {
    if key.is_ipv6() { FAMILY_V6 } else { FAMILY_V4 }
}

fn parse_family(byte: u8) -> Result<u8, WireError> {
    match byte {
        FAMILY_V4 | FAMILY_V6 => Ok(byte),
        _ => Err(WireError::Malformed("address family")),
    }
}

impl SessionKey {
    /// Writes the key into the first [`KEY_LEN`] bytes of `buf`.
    ///
    /// Panics if `buf` is shorter than [`KEY_LEN`] (a caller bug, never peer input).
    pub fn emit(&self, buf: &mut [u8]) {
        use field::key::*;
        buf[FAMILY] = family_of(self);
        buf[L4PROTO] = self.l4proto;
        buf[ZONE].copy_from_slice(&self.zone.to_be_bytes());
        self.orig.emit(&mut buf[ORIG]);
    }

    /// Parses a key from the first [`KEY_LEN`] bytes of `buf`.
    pub fn parse(buf: &[u8]) -> Result<(Self, u8), WireError> {
        use field::key::*;
        if buf.len() < KEY_LEN {
            return Err(WireError::Truncated);
        }
        let family = parse_family(buf[FAMILY])?;
        let key = Self {
            l4proto: buf[L4PROTO],
            zone: read_u16(buf, ZONE),
            orig: Tuple::parse(&buf[ORIG], family)?,
        };
        Ok((key, family))
    }
}

impl SessionRecord {
    /// Writes the record into the first [`RECORD_LEN`] bytes of `buf`.
    ///
    /// Panics if `buf` is shorter than [`RECORD_LEN`] (a caller bug, never peer input).
    pub fn emit(&self, buf: &mut [u8]) {
        use field::record::*;
        let buf = &mut buf[..RECORD_LEN];
        self.key.emit(&mut buf[KEY]);
        self.reply.emit(&mut buf[REPLY]);
        buf[OWNER].copy_from_slice(&self.owner.0.to_be_bytes());
        buf[MARK].copy_from_slice(&self.mark.to_be_bytes());
        buf[STATUS].copy_from_slice(&self.status.to_be_bytes());
        buf[TIMEOUT].copy_from_slice(&self.timeout_secs.to_be_bytes());
        buf[TCP_STATE] = self.tcp.state.0;
        buf[WSCALE_ORIG] = self.tcp.wscale_orig;
        buf[WSCALE_REPLY] = self.tcp.wscale_reply;
        buf[FLAGS_ORIG] = self.tcp.flags_orig;
        buf[FLAGS_REPLY] = self.tcp.flags_reply;
        buf[RESERVED].fill(0);
        for (adj, at) in self.seq_adj.iter().zip(SEQ_ADJ) {
            adj.emit(&mut buf[at]);
        }
        buf[LABELS].copy_from_slice(&self.labels);
        buf[HELPER].copy_from_slice(&self.helper.0);
    }

    /// A 64-bit hash of what must be equal in both nodes' copies of the session for a takeover
    /// to forward it, for digest comparison (anti-entropy): key, reply tuple (the NAT), owner,
    /// mark and TCP state. Not the fields a table changes on its own or may not hold (a kernel
    /// counts timeouts down, sets status bits, marks the peer's TCP entries "be liberal", and
    /// keeps labels, helpers and sequence adjustment only where its ruleset and modules allow):
    /// a difference there would look like drift forever. FNV-1a, so both nodes (and versions)
    /// compute the same value.
    pub fn digest_hash(&self) -> u64 {
        use field::record::*;
        let mut buf = [0; RECORD_LEN];
        self.emit(&mut buf);
        // Key, reply tuple, owner and mark are the record's first bytes.
        buf[..MARK.end]
            .iter()
            .chain([&buf[TCP_STATE]])
            .fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
                (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
            })
    }

    /// Parses a record from the first [`RECORD_LEN`] bytes of `buf`; later bytes (fields of a
    /// newer version) are ignored.
    pub fn parse(buf: &[u8]) -> Result<Self, WireError> {
        use field::record::*;
        if buf.len() < RECORD_LEN {
            return Err(WireError::Truncated);
        }
        let (key, family) = SessionKey::parse(&buf[KEY])?;
        if buf[RESERVED].iter().any(|&b| b != 0) {
            return Err(WireError::Malformed("reserved record bytes"));
        }
        let mut labels = [0; 16];
        labels.copy_from_slice(&buf[LABELS]);
        Ok(Self {
            key,
            reply: Tuple::parse(&buf[REPLY], family)?,
            owner: NodeId(read_u32(buf, OWNER)),
            mark: read_u32(buf, MARK),
            status: read_u32(buf, STATUS),
            timeout_secs: read_u32(buf, TIMEOUT),
            tcp: TcpInfo {
                state: TcpState(buf[TCP_STATE]),
                wscale_orig: buf[WSCALE_ORIG],
                wscale_reply: buf[WSCALE_REPLY],
                flags_orig: buf[FLAGS_ORIG],
                flags_reply: buf[FLAGS_REPLY],
            },
            seq_adj: SEQ_ADJ.map(|at| SeqAdj::parse(&buf[at])),
            labels,
            helper: HelperName::parse(&buf[HELPER])?,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub fn arb_record() -> impl Strategy<Value = SessionRecord> {
        let v4 = (
            any::<[u8; 4]>(),
            any::<[u8; 4]>(),
            any::<[u8; 4]>(),
            any::<[u8; 4]>(),
        )
            .prop_map(|(a, b, c, d)| [a, b, c, d].map(IpAddr::from));
        let v6 = (
            any::<[u8; 16]>(),
            any::<[u8; 16]>(),
            any::<[u8; 16]>(),
            any::<[u8; 16]>(),
        )
            .prop_map(|(a, b, c, d)| [a, b, c, d].map(IpAddr::from));
        let addrs = prop_oneof![v4, v6];
        let helper = prop_oneof![
            Just(String::new()),
            Just("ftp".to_string()),
            "[a-z0-9-]{1,15}"
        ]
        .prop_map(|s| HelperName::new(&s).unwrap());
        (
            addrs,
            any::<[u16; 4]>(),
            (
                any::<u16>(),
                any::<u8>(),
                any::<u32>(),
                any::<u32>(),
                any::<u32>(),
                any::<u32>(),
            ),
            any::<[u8; 5]>(),
            any::<[(u32, i32, i32); 2]>(),
            any::<[u8; 16]>(),
            helper,
        )
            .prop_map(
                |(
                    a,
                    ports,
                    (zone, l4proto, owner, mark, status, timeout),
                    tcp,
                    adj,
                    labels,
                    helper,
                )| {
                    SessionRecord {
                        key: SessionKey {
                            zone,
                            l4proto,
                            orig: Tuple {
                                src: a[0],
                                dst: a[1],
                                src_port: ports[0],
                                dst_port: ports[1],
                            },
                        },
                        reply: Tuple {
                            src: a[2],
                            dst: a[3],
                            src_port: ports[2],
                            dst_port: ports[3],
                        },
                        owner: NodeId(owner),
                        mark,
                        status,
                        timeout_secs: timeout,
                        tcp: TcpInfo {
                            state: TcpState(tcp[0]),
                            wscale_orig: tcp[1],
                            wscale_reply: tcp[2],
                            flags_orig: tcp[3],
                            flags_reply: tcp[4],
                        },
                        seq_adj: adj.map(|(correction_pos, offset_before, offset_after)| SeqAdj {
                            correction_pos,
                            offset_before,
                            offset_after,
                        }),
                        labels,
                        helper,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn record_round_trips(record in arb_record()) {
            // Pre-fill with 0xa5 so a field the encoder forgets to write shows up.
            let mut buf = [0xa5; RECORD_LEN];
            record.emit(&mut buf);
            prop_assert_eq!(SessionRecord::parse(&buf).unwrap(), record.clone());
            let mut again = [0; RECORD_LEN];
            record.emit(&mut again);
            prop_assert_eq!(buf, again);
        }

        #[test]
        fn record_parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = SessionRecord::parse(&bytes);
        }
    }

    #[test]
    fn helper_names_are_checked() {
        assert_eq!(HelperName::new("ftp").unwrap().as_str(), "ftp");
        assert!(HelperName::new("a-name-that-is-too-long").is_none());
        assert!(HelperName::new("sp ace").is_none());
        assert_eq!(HelperName::NONE.as_str(), "");
    }

    #[test]
    fn ipv4_padding_is_rejected() {
        let record = SessionRecord {
            key: SessionKey {
                zone: 0,
                l4proto: 6,
                orig: Tuple {
                    src: "10.0.0.1".parse().unwrap(),
                    dst: "192.0.2.1".parse().unwrap(),
                    src_port: 40000,
                    dst_port: 80,
                },
            },
            reply: Tuple {
                src: "192.0.2.1".parse().unwrap(),
                dst: "198.51.100.1".parse().unwrap(),
                src_port: 80,
                dst_port: 40000,
            },
            owner: NodeId(1),
            mark: 0,
            status: 0,
            timeout_secs: 120,
            tcp: TcpInfo::default(),
            seq_adj: Default::default(),
            labels: [0; 16],
            helper: HelperName::NONE,
        };
        let mut buf = [0; RECORD_LEN];
        record.emit(&mut buf);
        buf[10] = 1;
        assert_eq!(
            SessionRecord::parse(&buf),
            Err(WireError::Malformed("IPv4 address padding"))
        );
    }
}
