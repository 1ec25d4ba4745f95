//! Kernel conntrack tables as the `conntrack` tool lists them (`conntrack -L -o extended,id`),
//! parsed for the tests' checks of single flows (is it there, its state, NAT, owner stamp).
//! Two tables are compared with [`crate::tables::differences`], on failoverd's own reading.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use failoverd_backends::OwnerMark;

/// One direction of a connection. For ICMP/ICMPv6, as failoverd's `SessionView` shows it:
/// `sport` is the echo id, `dport` is `type << 8 | code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tuple {
    /// Where this direction's packets come from.
    pub src: IpAddr,
    /// Where this direction's packets go.
    pub dst: IpAddr,
    /// Source port; the echo id for ICMP.
    pub sport: u16,
    /// Destination port; `type << 8 | code` for ICMP.
    pub dport: u16,
}

impl Tuple {
    /// The tuple from `src` to `dst`, ports included.
    pub fn new(src: SocketAddr, dst: SocketAddr) -> Tuple {
        Tuple {
            src: src.ip(),
            dst: dst.ip(),
            sport: src.port(),
            dport: dst.port(),
        }
    }
}

impl fmt::Display for Tuple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} -> {}",
            SocketAddr::new(self.src, self.sport),
            SocketAddr::new(self.dst, self.dport)
        )
    }
}

/// What identifies a flow in a table: protocol name and original tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Flow {
    /// The protocol as the tool names it: `tcp`, `udp`, `icmp`, `icmpv6` or `sctp`.
    pub proto: &'static str,
    /// The tuple of the direction that opened the connection.
    pub orig: Tuple,
}

impl Flow {
    /// The TCP connection opened from `src` to `dst`.
    pub fn tcp(src: SocketAddr, dst: SocketAddr) -> Flow {
        Flow {
            proto: "tcp",
            orig: Tuple::new(src, dst),
        }
    }

    /// The UDP flow opened from `src` to `dst`.
    pub fn udp(src: SocketAddr, dst: SocketAddr) -> Flow {
        Flow {
            proto: "udp",
            orig: Tuple::new(src, dst),
        }
    }
}

impl fmt::Display for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.proto, self.orig)
    }
}

/// One conntrack entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `ipv4` or `ipv6`.
    pub family: String,
    /// `tcp`, `udp`, `icmp`, `icmpv6`, ...
    pub proto: String,
    /// Seconds left.
    pub timeout: u64,
    /// The TCP state (`ESTABLISHED`, ...), TCP only.
    pub tcp_state: Option<String>,
    /// The original tuple: the direction that opened the connection.
    pub orig: Tuple,
    /// The reply tuple: with NAT, its destination is the translated source.
    pub reply: Tuple,
    /// The mark without the owner stamp.
    pub mark: u32,
    /// The owner stamp: the bits of the daemons' owner mark ([`owner_mark`]) in the
    /// kernel's mark.
    pub owner_stamp: u32,
    /// The conntrack zone; 0 when the tool lists none.
    pub zone: u16,
    /// `ASSURED`, `UNREPLIED`, ... (the tool's bracketed flags).
    pub flags: Vec<String>,
    /// The conntrack id (`-o id`), if listed.
    pub id: Option<u32>,
    /// Source NAT is set up (the kernel's `IPS_SRC_NAT_DONE`), from a second listing with
    /// `--src-nat`: a reply tuple that merely differs from the inverted original does not make
    /// the kernel translate, and the text output does not show the status bit.
    pub snat: bool,
}

impl Entry {
    /// Its flow; `None` for a protocol [`Flow`] does not name.
    pub fn flow(&self) -> Option<Flow> {
        let proto = match self.proto.as_str() {
            "tcp" => "tcp",
            "udp" => "udp",
            "icmp" => "icmp",
            "icmpv6" => "icmpv6",
            "sctp" => "sctp",
            _ => return None,
        };
        Some(Flow {
            proto,
            orig: self.orig,
        })
    }

    /// Whether the tool listed `flag` (e.g. `ASSURED`) for it.
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
}

/// Parses the tool's extended output (`conntrack -L -o extended[,id]`): one entry per line,
/// e.g. `ipv4 2 tcp 6 431999 ESTABLISHED src=10.0.1.10 dst=10.0.2.100 sport=40000 dport=5000
/// src=10.0.2.100 dst=10.0.2.1 sport=5000 dport=40000 [ASSURED] mark=42 use=1 id=123`.
pub fn parse(text: &str) -> Result<Vec<Entry>, String> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| parse_line(line).map_err(|e| format!("{e}: {line}")))
        .collect()
}

fn parse_line(line: &str) -> Result<Entry, String> {
    let mut words = line.split_whitespace();
    let mut next = |what: &str| words.next().ok_or_else(|| format!("no {what}"));
    let family = next("family")?.to_string();
    let _l3 = next("l3 number")?;
    let proto = next("protocol")?.to_string();
    let _l4 = next("l4 number")?;
    let timeout = next("timeout")?
        .parse()
        .map_err(|e| format!("timeout: {e}"))?;
    let mut tcp_state = None;
    let mut tuples: Vec<BTreeMap<&str, &str>> = Vec::new();
    let (mut mark, mut zone, mut id) = (0, 0, None);
    let mut flags = Vec::new();
    for word in words {
        if let Some(flag) = word.strip_prefix('[').and_then(|w| w.strip_suffix(']')) {
            flags.push(flag.to_string());
            continue;
        }
        let Some((key, value)) = word.split_once('=') else {
            if tuples.is_empty() && tcp_state.is_none() {
                tcp_state = Some(word.to_string());
                continue;
            }
            return Err(format!("unexpected word {word:?}"));
        };
        let number = || value.parse::<u64>().map_err(|e| format!("{key}: {e}"));
        match key {
            "src" if tuples.len() < 2 => tuples.push(BTreeMap::from([(key, value)])),
            "dst" | "sport" | "dport" | "type" | "code" | "id"
                if tuples.last().is_some_and(|t| {
                    // `id` is the ICMP echo id inside an ICMP tuple, else the entry's id.
                    !t.contains_key(key) && (key != "id" || t.contains_key("type"))
                }) =>
            {
                tuples.last_mut().expect("a tuple").insert(key, value);
            }
            "mark" => mark = number()? as u32,
            "zone" => zone = number()? as u16,
            "id" => id = Some(number()? as u32),
            _ => {} // use, labels, secctx, helper, timestamps, ...
        }
    }
    if tuples.len() != 2 {
        return Err(format!("{} tuples", tuples.len()));
    }
    let owner_mark = owner_mark().mask();
    let orig = tuple(&tuples[0])?;
    let reply = tuple(&tuples[1])?;
    Ok(Entry {
        family,
        proto,
        timeout,
        tcp_state,
        orig,
        reply,
        mark: mark & !owner_mark,
        owner_stamp: mark & owner_mark,
        zone,
        flags,
        id,
        snat: false,
    })
}

fn tuple(fields: &BTreeMap<&str, &str>) -> Result<Tuple, String> {
    let addr = |key: &str| -> Result<IpAddr, String> {
        fields
            .get(key)
            .ok_or_else(|| format!("no {key}"))?
            .parse()
            .map_err(|e| format!("{key}: {e}"))
    };
    let number = |key: &str| -> Result<u16, String> {
        fields
            .get(key)
            .map_or(Ok(0), |v| v.parse().map_err(|e| format!("{key}: {e}")))
    };
    let (sport, dport) = if fields.contains_key("type") {
        (number("id")?, number("type")? << 8 | number("code")?)
    } else {
        (number("sport")?, number("dport")?)
    };
    Ok(Tuple {
        src: addr("src")?,
        dst: addr("dst")?,
        sport,
        dport,
    })
}

/// The entries of `entries` whose flow `keep` accepts, by flow.
pub fn by_flow(entries: &[Entry], keep: impl Fn(&Flow) -> bool) -> BTreeMap<Flow, Entry> {
    entries
        .iter()
        .filter_map(|e| e.flow().filter(|f| keep(f)).map(|f| (f, e.clone())))
        .collect()
}

/// The mark bits the daemons stamp owners in: `sessions.conntrack.owner_mark`, which the tests
/// leave at its default.
pub fn owner_mark() -> OwnerMark {
    let mask = failoverd_control::config::ConntrackSection::default().owner_mark;
    OwnerMark::new(mask).expect("the default owner mark is valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_tools_lines() {
        let text = "\
ipv4     2 tcp      6 431999 ESTABLISHED src=10.0.1.10 dst=10.0.2.100 sport=40000 dport=5000 src=10.0.2.100 dst=10.0.2.1 sport=5000 dport=40000 [ASSURED] mark=42 use=1 id=3735928559
ipv4     2 udp      17 29 src=10.0.1.10 dst=10.0.2.100 sport=20000 dport=6001 [UNREPLIED] src=10.0.2.100 dst=10.0.2.1 sport=6001 dport=20000 mark=42 zone=3 use=1
ipv6     10 icmpv6   58 29 src=fd00:1::10 dst=fd00:2::100 type=128 code=0 id=27274 src=fd00:2::100 dst=fd00:2::1 type=129 code=0 id=27274 mark=42 use=1
";
        let entries = parse(text).unwrap();
        assert_eq!(entries.len(), 3);
        let tcp = &entries[0];
        assert_eq!(tcp.tcp_state.as_deref(), Some("ESTABLISHED"));
        assert_eq!(tcp.reply.dst, "10.0.2.1".parse::<IpAddr>().unwrap());
        assert_eq!((tcp.mark, tcp.id), (42, Some(3735928559)));
        assert!(tcp.has_flag("ASSURED"));
        let udp = &entries[1];
        assert_eq!(
            (udp.zone, udp.orig.sport, udp.reply.dport),
            (3, 20000, 20000)
        );
        assert!(udp.has_flag("UNREPLIED") && udp.tcp_state.is_none());
        let icmp = &entries[2];
        assert_eq!((icmp.orig.sport, icmp.orig.dport), (27274, 128 << 8));
        assert_eq!(
            (icmp.reply.sport, icmp.reply.dport, icmp.id),
            (27274, 129 << 8, None)
        );
    }
}
