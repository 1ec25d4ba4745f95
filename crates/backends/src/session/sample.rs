//! Synthetic sessions: the conformance suite's records, the simulation's traffic, the demo's
//! generator and `failoverctl sessions generate` all use these.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use failoverd_wire::{NodeId, SessionKey, SessionRecord, TcpInfo, TcpState, Tuple};

/// The `i`-th synthetic session, owned by `owner`: IPv4 for even `i`, IPv6 for odd, cycling through
/// TCP, UDP and ICMP every two records; source NAT (the reply tuple's destination is a NAT
/// address), mark `i`, zone 0.
///
/// Keys and reply tuples are distinct for distinct `i` below 2^22. Status carries
/// `IPS_ASSURED`, so a full kernel table refuses new entries instead of early-dropping these.
/// Labels, helper and sequence adjustment are left empty: a kernel refuses labels without a
/// ruleset that uses them, and a helper that is not loaded.
pub fn sample_record(i: u32, owner: NodeId) -> SessionRecord {
    const IPS_SEEN_REPLY: u32 = 1 << 1;
    const IPS_ASSURED: u32 = 1 << 2;
    const IPS_CONFIRMED: u32 = 1 << 3;
    const IPS_SRC_NAT: u32 = 1 << 4;
    const IPS_SRC_NAT_DONE: u32 = 1 << 7;
    const IPS_DST_NAT_DONE: u32 = 1 << 8;
    // IP_CT_TCP_FLAG_WINDOW_SCALE | IP_CT_TCP_FLAG_SACK_PERM | IP_CT_TCP_FLAG_BE_LIBERAL.
    const TCP_FLAGS: u8 = 0x01 | 0x02 | 0x08;

    let ipv6 = i % 2 == 1;
    // Client and NAT addresses carry `i`: private (10/8), shared (100.64/10) and documentation
    // prefixes, never a routable address.
    let (client, server, nat) = if ipv6 {
        (
            IpAddr::V6(Ipv6Addr::new(
                0x2001,
                0xdb8,
                1,
                0,
                0,
                0,
                (i >> 16) as u16,
                i as u16,
            )),
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 1)),
            IpAddr::V6(Ipv6Addr::new(
                0x2001,
                0xdb8,
                3,
                0,
                0,
                0,
                (i >> 16) as u16,
                i as u16,
            )),
        )
    } else {
        (
            IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (i & 0x00ff_ffff))),
            IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)),
            IpAddr::V4(Ipv4Addr::from(0x6440_0000 | (i & 0x003f_ffff))),
        )
    };
    let nat_port = 20_000 + (i % 1000) as u16;
    let (l4proto, orig_ports, reply_ports, tcp, timeout_secs) = match (i / 2) % 3 {
        0 => (
            6,
            (40_000, 443),
            (443, nat_port),
            TcpInfo {
                state: TcpState::ESTABLISHED,
                wscale_orig: 7,
                wscale_reply: 7,
                flags_orig: TCP_FLAGS,
                flags_reply: TCP_FLAGS,
            },
            3600,
        ),
        1 => (17, (40_000, 53), (53, nat_port), TcpInfo::default(), 120),
        _ => {
            // ICMP echo: ports hold the id and `type << 8 | code`; the reply tuple carries the
            // echo reply type.
            let (proto, request, reply) = if ipv6 { (58, 128, 129) } else { (1, 8, 0) };
            (
                proto,
                (7, request << 8),
                (nat_port, reply << 8),
                TcpInfo::default(),
                30,
            )
        }
    };
    SessionRecord {
        key: SessionKey {
            zone: 0,
            l4proto,
            orig: Tuple {
                src: client,
                dst: server,
                src_port: orig_ports.0,
                dst_port: orig_ports.1,
            },
        },
        reply: Tuple {
            src: server,
            dst: nat,
            src_port: reply_ports.0,
            dst_port: reply_ports.1,
        },
        owner,
        mark: i,
        status: IPS_SEEN_REPLY
            | IPS_ASSURED
            | IPS_CONFIRMED
            | IPS_SRC_NAT
            | IPS_SRC_NAT_DONE
            | IPS_DST_NAT_DONE,
        timeout_secs,
        tcp,
        seq_adj: Default::default(),
        labels: [0; 16],
        helper: Default::default(),
    }
}
