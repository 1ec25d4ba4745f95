//! `sessions`: the session list and its filter.

use std::fmt;
use std::net::IpAddr;

use failoverd_wire::{NodeId, SessionRecord, Tuple, proto_name};
use serde::{Deserialize, Serialize};

/// The answer to `sessions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionList {
    /// Sessions in the table.
    pub total: usize,
    /// Sessions that match the filter (may exceed `sessions.len()` when limited).
    pub matched: usize,
    /// The matching sessions, at most the request's limit.
    pub sessions: Vec<SessionView>,
}

impl SessionList {
    /// Filters `records` and keeps at most `limit` (all when `None`) of the matches; `local` is
    /// this node, which tells local from peer-owned sessions.
    pub fn select<'a>(
        records: impl IntoIterator<Item = &'a SessionRecord>,
        filter: &SessionFilter,
        limit: Option<usize>,
        local: NodeId,
    ) -> SessionList {
        let limit = limit.unwrap_or(usize::MAX);
        let mut list = SessionList {
            total: 0,
            matched: 0,
            sessions: Vec::new(),
        };
        for record in records {
            list.total += 1;
            if filter.matches(record, local) {
                list.matched += 1;
                if list.sessions.len() < limit {
                    list.sessions.push(SessionView::from_record(record, local));
                }
            }
        }
        list
    }

    /// The list [`select`](Self::select) makes with no limit, as the JSON of a `SessionList`
    /// written piece by piece (the sessions first, then `total` and `matched`): each piece of
    /// [`SESSIONS_PER_PIECE`] sessions goes to `emit` as soon as it is made, so a large table
    /// is never held whole as JSON. Stops when `emit` returns false (the reader is gone).
    pub fn write_json<'a>(
        records: impl IntoIterator<Item = &'a SessionRecord>,
        filter: &SessionFilter,
        local: NodeId,
        mut emit: impl FnMut(Vec<u8>) -> bool,
    ) {
        let (mut total, mut matched) = (0usize, 0usize);
        let mut piece = b"{\"sessions\":[".to_vec();
        for record in records {
            total += 1;
            if !filter.matches(record, local) {
                continue;
            }
            if matched > 0 {
                piece.push(b',');
            }
            matched += 1;
            // Invariant: a view is strings and numbers, which always serialize.
            serde_json::to_writer(&mut piece, &SessionView::from_record(record, local))
                .expect("a session view serializes");
            if matched.is_multiple_of(SESSIONS_PER_PIECE) && !emit(std::mem::take(&mut piece)) {
                return;
            }
        }
        piece.extend_from_slice(format!("],\"total\":{total},\"matched\":{matched}}}").as_bytes());
        emit(piece);
    }
}

/// Sessions per piece of [`SessionList::write_json`].
pub const SESSIONS_PER_PIECE: usize = 1024;

/// One session as the control protocol shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionView {
    /// The protocol.
    pub proto: Proto,
    /// Address family.
    pub family: Family,
    /// The original direction.
    pub orig: TupleView,
    /// The reply direction; differs from the inverted original under NAT.
    pub reply: TupleView,
    /// The owner's node id, 8 hex digits.
    #[serde(with = "super::node_id_hex")]
    pub owner: NodeId,
    /// Owned by this node.
    pub local: bool,
    /// Conntrack zone.
    pub zone: u16,
    /// Connection mark.
    pub mark: u32,
    /// `IPS_*` status bits.
    pub status: u32,
    /// Remaining lifetime, seconds.
    pub timeout: u32,
    /// TCP tracking state (e.g. "ESTABLISHED"); TCP only.
    pub tcp_state: Option<String>,
    /// Conntrack helper (e.g. "ftp"), when one is attached.
    pub helper: Option<String>,
    /// Connection labels, 32 hex digits, when any bit is set.
    pub labels: Option<String>,
}

/// TCP's IP protocol number: only TCP sessions have a tracking state.
const IPPROTO_TCP: u8 = 6;

impl SessionView {
    /// The view of `record`; `local` is this node.
    pub fn from_record(record: &SessionRecord, local: NodeId) -> SessionView {
        let labels = (record.labels != [0; 16])
            .then(|| record.labels.iter().map(|b| format!("{b:02x}")).collect());
        SessionView {
            proto: Proto(record.key.l4proto),
            family: Family::of(record.key.orig.src),
            orig: TupleView::from(&record.key.orig),
            reply: TupleView::from(&record.reply),
            owner: record.owner,
            local: record.owner == local,
            zone: record.key.zone,
            mark: record.mark,
            status: record.status,
            timeout: record.timeout_secs,
            tcp_state: (record.key.l4proto == IPPROTO_TCP)
                .then(|| record.tcp.state.name().to_string()),
            helper: Some(record.helper.as_str())
                .filter(|name| !name.is_empty())
                .map(str::to_string),
            labels,
        }
    }
}

/// An IP protocol: in JSON its name ("tcp", "udp", "icmp", "icmpv6", "sctp"), or its number
/// for others ("47").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Proto(pub u8);

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match proto_name(self.0) {
            "other" => write!(f, "{}", self.0),
            name => f.write_str(name),
        }
    }
}

impl From<Proto> for String {
    fn from(proto: Proto) -> String {
        proto.to_string()
    }
}

impl TryFrom<String> for Proto {
    type Error = String;

    /// A name [`Display`](fmt::Display) gives, or a number.
    fn try_from(text: String) -> Result<Proto, String> {
        if let Ok(number) = text.parse() {
            return Ok(Proto(number));
        }
        (0..=u8::MAX)
            .find(|&n| proto_name(n) == text && text != "other")
            .map(Proto)
            .ok_or_else(|| format!("unknown protocol {text:?}"))
    }
}

/// One direction of a session. For ICMP, `sport` is the echo id and `dport` is
/// `type << 8 | code`, as conntrack reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TupleView {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
}

impl From<&Tuple> for TupleView {
    fn from(tuple: &Tuple) -> Self {
        TupleView {
            src: tuple.src,
            dst: tuple.dst,
            sport: tuple.src_port,
            dport: tuple.dst_port,
        }
    }
}

names! {
    /// An address family.
    #[derive(Default)]
    pub enum Family {
        /// IPv4.
        #[default]
        Ipv4 = "ipv4",
        /// IPv6.
        Ipv6 = "ipv6",
    }
}

impl Family {
    /// The family of an address.
    pub fn of(addr: IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::Ipv4,
            IpAddr::V6(_) => Family::Ipv6,
        }
    }
}

names! {
    /// Whose sessions to list.
    pub enum OwnerFilter {
        /// Owned by this node.
        Local = "local",
        /// Owned by another node (backed up here).
        Peer = "peer",
    }
}

/// Which sessions `sessions` lists: every given criterion must match; absent ones match all.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionFilter {
    /// Protocol name ("tcp", case-insensitive) or number ("6").
    pub proto: Option<String>,
    /// Matches any of the four addresses (both directions, so NAT addresses match too).
    pub addr: Option<IpAddr>,
    /// Matches any of the four ports.
    pub port: Option<u16>,
    /// Local or peer-owned sessions.
    pub owner: Option<OwnerFilter>,
    /// Address family.
    pub family: Option<Family>,
}

impl SessionFilter {
    /// Whether `record` matches; `local` is this node.
    pub fn matches(&self, record: &SessionRecord, local: NodeId) -> bool {
        let tuples = [&record.key.orig, &record.reply];
        let proto = self.proto.as_deref().is_none_or(|proto| {
            let number = record.key.l4proto;
            proto.eq_ignore_ascii_case(proto_name(number)) || proto.parse() == Ok(number)
        });
        let addr = self
            .addr
            .is_none_or(|addr| tuples.iter().any(|t| t.src == addr || t.dst == addr));
        let port = self.port.is_none_or(|port| {
            tuples
                .iter()
                .any(|t| t.src_port == port || t.dst_port == port)
        });
        let owner = self.owner.is_none_or(|owner| match owner {
            OwnerFilter::Local => record.owner == local,
            OwnerFilter::Peer => record.owner != local,
        });
        let family = self
            .family
            .is_none_or(|family| Family::of(record.key.orig.src) == family);
        proto && addr && port && owner && family
    }
}

/// The answer to `sessions-generate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generated {
    /// Sessions created.
    pub created: u32,
    /// Sessions not created because the table is full.
    pub table_full: u32,
}

#[cfg(test)]
mod tests {
    use failoverd_wire::{HelperName, TcpInfo, TcpState};
    use serde_json::json;

    use super::*;

    /// The streamed list is the same JSON value as the one `select` makes, in pieces.
    #[test]
    fn a_streamed_list_is_the_selected_list() {
        let local = NodeId(1);
        let records: Vec<_> = (0..2500u32)
            .map(|i| {
                let mut record = tcp();
                record.key.orig.src_port = i as u16;
                record.owner = NodeId(1 + i % 2);
                record
            })
            .collect();
        let filter = SessionFilter {
            owner: Some(OwnerFilter::Local),
            ..SessionFilter::default()
        };
        let mut pieces = Vec::new();
        SessionList::write_json(&records, &filter, local, |piece| {
            pieces.push(piece);
            true
        });
        assert_eq!(
            pieces.len(),
            2,
            "1,250 matches: one full piece and the rest"
        );
        let streamed: SessionList = serde_json::from_slice(&pieces.concat()).unwrap();
        assert_eq!(
            streamed,
            SessionList::select(&records, &filter, None, local)
        );
        assert_eq!((streamed.total, streamed.matched), (2500, 1250));
    }

    const LOCAL: NodeId = NodeId(0x1000_abcd);
    const PEER: NodeId = NodeId(0x2000_abcd);

    fn record(
        proto: u8,
        orig: (&str, u16, &str, u16),
        reply_src: &str,
        owner: NodeId,
    ) -> SessionRecord {
        let (src, sport, dst, dport) = orig;
        SessionRecord {
            key: failoverd_wire::SessionKey {
                zone: 0,
                l4proto: proto,
                orig: Tuple {
                    src: src.parse().unwrap(),
                    dst: dst.parse().unwrap(),
                    src_port: sport,
                    dst_port: dport,
                },
            },
            reply: Tuple {
                src: dst.parse().unwrap(),
                dst: reply_src.parse().unwrap(),
                src_port: dport,
                dst_port: 61000,
            },
            owner,
            mark: 0,
            status: 0x18e,
            timeout_secs: 120,
            tcp: TcpInfo {
                state: TcpState::ESTABLISHED,
                ..TcpInfo::default()
            },
            seq_adj: Default::default(),
            labels: [0; 16],
            helper: HelperName::NONE,
        }
    }

    fn tcp() -> SessionRecord {
        record(
            6,
            ("10.0.0.1", 40000, "192.0.2.80", 80),
            "198.51.100.1",
            LOCAL,
        )
    }

    fn udp6() -> SessionRecord {
        record(
            17,
            ("2001:db8::1", 5353, "2001:db8::2", 53),
            "2001:db8::1",
            PEER,
        )
    }

    #[test]
    fn session_views() {
        let mut ftp = tcp();
        ftp.labels[15] = 1;
        ftp.helper = HelperName::new("ftp").unwrap();
        ftp.key.zone = 2;
        let view = SessionView::from_record(&ftp, LOCAL);
        assert_eq!(
            serde_json::to_value(&view).unwrap(),
            json!({
                "proto": "tcp", "family": "ipv4",
                "orig": {"src": "10.0.0.1", "dst": "192.0.2.80", "sport": 40000, "dport": 80},
                "reply": {"src": "192.0.2.80", "dst": "198.51.100.1", "sport": 80, "dport": 61000},
                "owner": "1000abcd", "local": true, "zone": 2, "mark": 0, "status": 0x18e,
                "timeout": 120, "tcp_state": "ESTABLISHED", "helper": "ftp",
                "labels": "00000000000000000000000000000001",
            })
        );
        let view = SessionView::from_record(&udp6(), LOCAL);
        assert_eq!(view.family, Family::Ipv6);
        assert!(!view.local);
        assert_eq!(view.owner.to_string(), "2000abcd");
        assert_eq!(
            (view.tcp_state, view.helper, view.labels),
            (None, None, None)
        );
        let gre = record(47, ("10.0.0.1", 0, "10.0.0.2", 0), "10.0.0.1", LOCAL);
        assert_eq!(
            SessionView::from_record(&gre, LOCAL).proto.to_string(),
            "47"
        );
    }

    #[test]
    fn filters() {
        let (tcp, udp6) = (tcp(), udp6());
        let matching = |filter: SessionFilter| {
            [&tcp, &udp6]
                .into_iter()
                .filter(|r| filter.matches(r, LOCAL))
                .map(|r| proto_name(r.key.l4proto))
                .collect::<Vec<_>>()
        };
        let filter = |f: fn(&mut SessionFilter)| {
            let mut filter = SessionFilter::default();
            f(&mut filter);
            matching(filter)
        };
        assert_eq!(filter(|_| {}), ["tcp", "udp"]);
        assert_eq!(filter(|f| f.proto = Some("TCP".into())), ["tcp"]);
        assert_eq!(filter(|f| f.proto = Some("17".into())), ["udp"]);
        assert_eq!(filter(|f| f.proto = Some("icmp".into())), [] as [&str; 0]);
        // The NAT address appears only in the reply tuple.
        assert_eq!(
            filter(|f| f.addr = Some("198.51.100.1".parse().unwrap())),
            ["tcp"]
        );
        assert_eq!(
            filter(|f| f.addr = Some("2001:db8::2".parse().unwrap())),
            ["udp"]
        );
        assert_eq!(filter(|f| f.port = Some(61000)), ["tcp", "udp"]);
        assert_eq!(filter(|f| f.port = Some(53)), ["udp"]);
        assert_eq!(filter(|f| f.owner = Some(OwnerFilter::Local)), ["tcp"]);
        assert_eq!(filter(|f| f.owner = Some(OwnerFilter::Peer)), ["udp"]);
        assert_eq!(filter(|f| f.family = Some(Family::Ipv6)), ["udp"]);
        assert_eq!(
            filter(|f| {
                f.proto = Some("tcp".into());
                f.owner = Some(OwnerFilter::Peer);
            }),
            [] as [&str; 0]
        );
    }

    #[test]
    fn select_counts_and_limits() {
        let records = [tcp(), udp6(), tcp()];
        let all = SessionList::select(&records, &SessionFilter::default(), Some(2), LOCAL);
        assert_eq!((all.total, all.matched, all.sessions.len()), (3, 3, 2));
        let filter = SessionFilter {
            owner: Some(OwnerFilter::Peer),
            ..SessionFilter::default()
        };
        let peer = SessionList::select(&records, &filter, None, LOCAL);
        assert_eq!((peer.total, peer.matched, peer.sessions.len()), (3, 1, 1));
    }
}
