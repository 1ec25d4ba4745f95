//! What a new VRRP master sends so that neighbours move a virtual address to its MAC at once
//! instead of when their cache entries expire (RFC 5798 section 6.4.2): a gratuitous ARP for an
//! IPv4 address and an unsolicited neighbour advertisement for an IPv6 one.
//!
//! ```text
//! gratuitous ARP (Ethernet frame, 42 bytes; RFC 826, RFC 5227 section 3)
//!   dst ff:ff:ff:ff:ff:ff | src mac | ethertype 0x0806
//!   | htype 1 | ptype 0x0800 | hlen 6 | plen 4 | op 1 (request)
//!   | sender mac | sender ip = addr | target mac 0 | target ip = addr
//! unsolicited neighbour advertisement (ICMPv6 body, 32 bytes; RFC 4861 sections 4.4, 7.2.6)
//!   type 136 | code 0 | checksum u16 | R S O flags u8 | 3 zero | target address (16)
//!   | option: type 2 (target link-layer address) | length 1 (x 8 bytes) | mac
//! ```
//! Both are parsed strictly: a frame or body that is not exactly such an announcement is a
//! [`WireError`], never a panic.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::{WireError, append_zeroed, read_u16};

const BROADCAST: [u8; 6] = [0xff; 6];
/// Ethertype of ARP (IEEE 802 numbers).
const ETHERTYPE_ARP: u16 = 0x0806;
/// ARP hardware type Ethernet (RFC 826).
const HTYPE_ETHERNET: u16 = 1;
/// ARP protocol type IPv4: the IPv4 ethertype.
const PTYPE_IPV4: u16 = 0x0800;
/// ARP opcode request: RFC 5227 section 3 recommends requests over replies for announcements.
const OP_REQUEST: u16 = 1;

/// ICMPv6 type of a neighbour advertisement (RFC 4861 section 4.4).
const ICMPV6_NEIGHBOR_ADVERT: u8 = 136;
/// The router flag (R) of a neighbour advertisement.
const FLAG_ROUTER: u8 = 0x80;
/// The solicited flag (S): never set in an unsolicited advertisement.
const FLAG_SOLICITED: u8 = 0x40;
/// The override flag (O): makes receivers replace the link-layer address they cached.
const FLAG_OVERRIDE: u8 = 0x20;
/// Neighbour discovery option "target link-layer address" (RFC 4861 section 4.6.1).
const OPTION_TARGET_LL: u8 = 2;
/// The fixed part of a neighbour advertisement: type to target address.
const NA_FIXED_LEN: usize = field::advert::OPTIONS.start;

/// Byte offsets of the two formats (see the layouts above), each given once here.
mod field {
    /// The gratuitous ARP frame: Ethernet header, then the ARP packet.
    pub(crate) mod arp {
        use crate::Field;

        pub(crate) const ETH_DST: Field = 0..6;
        pub(crate) const ETH_SRC: Field = 6..12;
        pub(crate) const ETHERTYPE: Field = 12..14;
        pub(crate) const HTYPE: Field = 14..16;
        pub(crate) const PTYPE: Field = 16..18;
        pub(crate) const HLEN: usize = 18;
        pub(crate) const PLEN: usize = 19;
        pub(crate) const OPER: Field = 20..22;
        pub(crate) const SENDER_MAC: Field = 22..28;
        pub(crate) const SENDER_IP: Field = 28..32;
        pub(crate) const TARGET_MAC: Field = 32..38;
        pub(crate) const TARGET_IP: Field = 38..42;
    }

    /// The neighbour advertisement's ICMPv6 body; 3 reserved bytes follow the flags.
    pub(crate) mod advert {
        use crate::{Field, Rest};

        pub(crate) const TYPE: usize = 0;
        pub(crate) const CODE: usize = 1;
        pub(crate) const CHECKSUM: Field = 2..4;
        pub(crate) const FLAGS: usize = 4;
        pub(crate) const TARGET: Field = 8..24;
        pub(crate) const OPTIONS: Rest = 24..;
    }

    /// A neighbour discovery option.
    pub(crate) mod option {
        use crate::Field;

        pub(crate) const TYPE: usize = 0;
        /// In units of 8 bytes, type and length included.
        pub(crate) const LENGTH: usize = 1;
        /// The value of a link-layer address option, which fills its 8 bytes.
        pub(crate) const LINK_LAYER_ADDRESS: Field = 2..8;
    }
}

/// A gratuitous ARP request announcing that `addr` is at `mac`, as a whole Ethernet frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GratuitousArp {
    /// The announcing interface's MAC: the frame's source and the ARP sender hardware address.
    pub mac: [u8; 6],
    /// The virtual address: both the ARP sender and target protocol address.
    pub addr: Ipv4Addr,
}

impl GratuitousArp {
    /// Bytes of the frame (Ethernet header and ARP packet, without padding or FCS).
    pub const LEN: usize = field::arp::TARGET_IP.end;

    /// Parses an Ethernet frame. Bytes past [`Self::LEN`] (the padding to the Ethernet minimum)
    /// are ignored.
    pub fn parse(frame: &[u8]) -> Result<Self, WireError> {
        use field::arp::*;
        if frame.len() < Self::LEN {
            return Err(WireError::Truncated);
        }
        if frame[ETH_DST] != BROADCAST {
            return Err(WireError::Malformed("gratuitous ARP not broadcast"));
        }
        if read_u16(frame, ETHERTYPE) != ETHERTYPE_ARP {
            return Err(WireError::Malformed("ethertype is not ARP"));
        }
        if read_u16(frame, HTYPE) != HTYPE_ETHERNET
            || read_u16(frame, PTYPE) != PTYPE_IPV4
            || frame[HLEN] != 6
            || frame[PLEN] != 4
        {
            return Err(WireError::Malformed("ARP is not Ethernet/IPv4"));
        }
        if read_u16(frame, OPER) != OP_REQUEST {
            return Err(WireError::Malformed("ARP opcode is not request"));
        }
        let mut mac = [0; 6];
        mac.copy_from_slice(&frame[ETH_SRC]);
        if frame[SENDER_MAC] != mac {
            return Err(WireError::Malformed(
                "ARP sender MAC differs from source MAC",
            ));
        }
        if frame[TARGET_MAC] != [0; 6] {
            return Err(WireError::Malformed("ARP target MAC not zero"));
        }
        let sender = &frame[SENDER_IP];
        if frame[TARGET_IP] != *sender {
            return Err(WireError::Malformed("ARP sender and target address differ"));
        }
        let addr = Ipv4Addr::new(sender[0], sender[1], sender[2], sender[3]);
        Ok(Self { mac, addr })
    }

    /// Appends the frame ([`Self::LEN`] bytes) to `buf`. The kernel pads it on the wire.
    pub fn emit(&self, buf: &mut Vec<u8>) {
        use field::arp::*;
        let frame = append_zeroed(buf, Self::LEN);
        frame[ETH_DST].copy_from_slice(&BROADCAST);
        frame[ETH_SRC].copy_from_slice(&self.mac);
        frame[ETHERTYPE].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
        frame[HTYPE].copy_from_slice(&HTYPE_ETHERNET.to_be_bytes());
        frame[PTYPE].copy_from_slice(&PTYPE_IPV4.to_be_bytes());
        frame[HLEN] = 6;
        frame[PLEN] = 4;
        frame[OPER].copy_from_slice(&OP_REQUEST.to_be_bytes());
        frame[SENDER_MAC].copy_from_slice(&self.mac);
        frame[SENDER_IP].copy_from_slice(&self.addr.octets());
        frame[TARGET_MAC].fill(0);
        frame[TARGET_IP].copy_from_slice(&self.addr.octets());
    }
}

/// An unsolicited neighbour advertisement with the override flag: `target` is at `mac`, replace
/// what you cached. The ICMPv6 body only; the sender's IPv6 header goes to `ff02::1` with hop
/// limit 255.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighbourAdvert {
    /// The virtual address.
    pub target: Ipv6Addr,
    /// The link-layer address announced for it (the target link-layer address option).
    pub mac: [u8; 6],
    /// The router flag: set when the virtual address is a router's (a default gateway), so hosts
    /// keep it in their default router list (RFC 4861 section 7.2.5).
    pub router: bool,
}

impl NeighbourAdvert {
    /// Bytes of the body: the fixed part and one target link-layer address option.
    pub const LEN: usize = NA_FIXED_LEN + field::option::LINK_LAYER_ADDRESS.end;

    /// Parses an ICMPv6 body. The checksum is not checked (the receiving kernel has done so);
    /// options other than the target link-layer address are skipped, as RFC 4861 section 4.6
    /// requires of unknown ones.
    pub fn parse(body: &[u8]) -> Result<Self, WireError> {
        use field::{advert, option};
        if body.len() < NA_FIXED_LEN {
            return Err(WireError::Truncated);
        }
        if body[advert::TYPE] != ICMPV6_NEIGHBOR_ADVERT || body[advert::CODE] != 0 {
            return Err(WireError::Malformed("not a neighbour advertisement"));
        }
        let flags = body[advert::FLAGS];
        if flags & FLAG_SOLICITED != 0 {
            return Err(WireError::Malformed("neighbour advertisement is solicited"));
        }
        if flags & FLAG_OVERRIDE == 0 {
            return Err(WireError::Malformed(
                "neighbour advertisement without override",
            ));
        }
        let mut target = [0; 16];
        target.copy_from_slice(&body[advert::TARGET]);
        let target = Ipv6Addr::from(target);
        if target.is_multicast() {
            return Err(WireError::Malformed(
                "neighbour advertisement for multicast",
            ));
        }
        let mut options = &body[advert::OPTIONS];
        let mut mac = None;
        while !options.is_empty() {
            if options.len() <= option::LENGTH {
                return Err(WireError::Truncated);
            }
            let len = usize::from(options[option::LENGTH]) * 8;
            if len == 0 {
                return Err(WireError::Malformed(
                    "neighbour discovery option of length 0",
                ));
            }
            let Some(raw) = options.get(..len) else {
                return Err(WireError::Truncated);
            };
            if raw[option::TYPE] == OPTION_TARGET_LL && len == option::LINK_LAYER_ADDRESS.end {
                let mut value = [0; 6];
                value.copy_from_slice(&raw[option::LINK_LAYER_ADDRESS]);
                mac = Some(value);
            }
            options = &options[len..];
        }
        let Some(mac) = mac else {
            return Err(WireError::Malformed(
                "neighbour advertisement without target link-layer address",
            ));
        };
        Ok(Self {
            target,
            mac,
            router: flags & FLAG_ROUTER != 0,
        })
    }

    /// Appends the body ([`Self::LEN`] bytes) to `buf`, with a zero checksum: a Linux raw
    /// ICMPv6 socket computes it over the pseudo-header when sending.
    pub fn emit(&self, buf: &mut Vec<u8>) {
        use field::{advert, option};
        let body = append_zeroed(buf, Self::LEN);
        body[advert::TYPE] = ICMPV6_NEIGHBOR_ADVERT;
        body[advert::CODE] = 0;
        body[advert::CHECKSUM].fill(0);
        body[advert::FLAGS] = FLAG_OVERRIDE | if self.router { FLAG_ROUTER } else { 0 };
        body[advert::TARGET].copy_from_slice(&self.target.octets());
        let target_ll = &mut body[advert::OPTIONS];
        target_ll[option::TYPE] = OPTION_TARGET_LL;
        target_ll[option::LENGTH] = 1;
        target_ll[option::LINK_LAYER_ADDRESS].copy_from_slice(&self.mac);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAC: [u8; 6] = [0x00, 0x00, 0x5e, 0x00, 0x01, 0x33];

    fn arp() -> GratuitousArp {
        GratuitousArp {
            mac: MAC,
            addr: Ipv4Addr::new(10, 0, 1, 1),
        }
    }

    fn advert() -> NeighbourAdvert {
        NeighbourAdvert {
            target: "2001:db8::1".parse().unwrap(),
            mac: MAC,
            router: true,
        }
    }

    #[test]
    fn arp_golden_bytes() {
        let mut buf = Vec::new();
        arp().emit(&mut buf);
        let expected: &[u8] = &[
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x5e, 0x00, 0x01, 0x33, 0x08,
            0x06, // Ethernet
            0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01, // Ethernet/IPv4, request
            0x00, 0x00, 0x5e, 0x00, 0x01, 0x33, 10, 0, 1, 1, // sender
            0, 0, 0, 0, 0, 0, 10, 0, 1, 1, // target
        ];
        assert_eq!(buf, expected);
        assert_eq!(buf.len(), GratuitousArp::LEN);
    }

    #[test]
    fn advert_golden_bytes() {
        let mut buf = Vec::new();
        advert().emit(&mut buf);
        let expected: &[u8] = &[
            136, 0, 0, 0, 0xa0, 0, 0, 0, // type, code, checksum, R|O
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, // target
            2, 1, 0x00, 0x00, 0x5e, 0x00, 0x01, 0x33, // target link-layer address
        ];
        assert_eq!(buf, expected);
        assert_eq!(buf.len(), NeighbourAdvert::LEN);
        let host = NeighbourAdvert {
            router: false,
            ..advert()
        };
        buf.clear();
        host.emit(&mut buf);
        assert_eq!(buf[4], 0x20, "override only");
    }

    /// `emit` appends: what the buffer held stays, and the new bytes parse on their own.
    #[test]
    fn emit_appends() {
        let mut buf = vec![0xa5; 3];
        arp().emit(&mut buf);
        assert!(buf[..3].iter().all(|&b| b == 0xa5));
        assert_eq!(GratuitousArp::parse(&buf[3..]), Ok(arp()));
        let mut buf = vec![0xa5; 3];
        advert().emit(&mut buf);
        assert_eq!(NeighbourAdvert::parse(&buf[3..]), Ok(advert()));
    }

    #[test]
    fn arp_padding_is_ignored() {
        let mut buf = Vec::new();
        arp().emit(&mut buf);
        buf.resize(60, 0);
        assert_eq!(GratuitousArp::parse(&buf), Ok(arp()));
    }

    #[test]
    fn arp_rejects_what_is_not_a_gratuitous_request() {
        let mut good = Vec::new();
        arp().emit(&mut good);
        assert_eq!(GratuitousArp::parse(&good[..41]), Err(WireError::Truncated));
        let cases: &[(usize, u8)] = &[
            (0, 0x00),  // unicast destination
            (13, 0x00), // ethertype IPv4
            (15, 6),    // hardware type
            (18, 8),    // hardware address length
            (21, 2),    // reply
            (27, 0x34), // sender MAC differs from source
            (37, 1),    // target MAC not zero
            (41, 2),    // target address differs from sender
        ];
        for &(at, value) in cases {
            let mut bad = good.clone();
            bad[at] = value;
            assert!(
                matches!(GratuitousArp::parse(&bad), Err(WireError::Malformed(_))),
                "byte {at} = {value} accepted"
            );
        }
    }

    #[test]
    fn advert_skips_other_options_and_rejects_bad_ones() {
        let mut buf = Vec::new();
        advert().emit(&mut buf);
        // A nonce option (type 14, 8 bytes) before the link-layer address.
        let mut with_nonce = buf[..NA_FIXED_LEN].to_vec();
        with_nonce.extend_from_slice(&[14, 1, 1, 2, 3, 4, 5, 6]);
        with_nonce.extend_from_slice(&buf[NA_FIXED_LEN..]);
        assert_eq!(NeighbourAdvert::parse(&with_nonce), Ok(advert()));

        assert_eq!(
            NeighbourAdvert::parse(&buf[..NA_FIXED_LEN - 1]),
            Err(WireError::Truncated)
        );
        assert_eq!(
            NeighbourAdvert::parse(&buf[..NA_FIXED_LEN + 1]),
            Err(WireError::Truncated)
        );
        assert!(matches!(
            NeighbourAdvert::parse(&buf[..NA_FIXED_LEN]),
            Err(WireError::Malformed(_))
        ));
        let cases: &[(usize, u8)] = &[
            (0, 135),  // neighbour solicitation
            (1, 1),    // code
            (4, 0xe0), // solicited
            (4, 0x80), // no override
            (8, 0xff), // multicast target
            (25, 0),   // option length 0
            (25, 2),   // option longer than the body
        ];
        for &(at, value) in cases {
            let mut bad = buf.clone();
            bad[at] = value;
            assert!(
                NeighbourAdvert::parse(&bad).is_err(),
                "byte {at} = {value} accepted"
            );
        }
    }

    fn arb_mac() -> impl Strategy<Value = [u8; 6]> {
        any::<[u8; 6]>()
    }

    proptest! {
        #[test]
        fn arp_round_trips(mac in arb_mac(), addr: u32) {
            let arp = GratuitousArp { mac, addr: Ipv4Addr::from(addr) };
            let mut buf = Vec::new();
            arp.emit(&mut buf);
            prop_assert_eq!(GratuitousArp::parse(&buf), Ok(arp));
        }

        #[test]
        fn advert_round_trips(mac in arb_mac(), target: u128, router: bool) {
            // Multicast targets are rejected by design.
            let target = Ipv6Addr::from(target & !(0xff << 120));
            let advert = NeighbourAdvert { target, mac, router };
            let mut buf = Vec::new();
            advert.emit(&mut buf);
            prop_assert_eq!(NeighbourAdvert::parse(&buf), Ok(advert));
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = GratuitousArp::parse(&bytes);
            let _ = NeighbourAdvert::parse(&bytes);
        }

        /// Valid announcements with mutated bytes reach deeper than random bytes do.
        #[test]
        fn mutated_never_panic(flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6), cut in 0..48usize) {
            let mut arp_bytes = Vec::new();
            arp().emit(&mut arp_bytes);
            let mut na_bytes = Vec::new();
            advert().emit(&mut na_bytes);
            na_bytes.extend_from_slice(&[14, 1, 0, 0, 0, 0, 0, 0]);
            for bytes in [&mut arp_bytes, &mut na_bytes] {
                for (at, value) in &flips {
                    let i = at.index(bytes.len());
                    bytes[i] = *value;
                }
                bytes.truncate(cut);
                let _ = GratuitousArp::parse(bytes);
                let _ = NeighbourAdvert::parse(bytes);
            }
        }
    }
}
