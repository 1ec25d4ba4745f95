//! VRRPv3 advertisements (RFC 5798 section 5): a checked view of received bytes and the owned
//! [`Advert`] that is sent.
//!
//! ```text
//! 0      version 3 (4 bits) | type 1 = advertisement (4 bits)
//! 1      virtual router id
//! 2      priority (0: the master is leaving; 255: the address owner)
//! 3      count of addresses
//! 4..6   reserved (4 bits) | max advertisement interval in centiseconds (12 bits)
//! 6..8   checksum over an IPv4 or IPv6 pseudo-header and the message
//! 8..    addresses, 4 or 16 bytes each
//! ```
//!
//! The checksum covers a pseudo-header (RFC 5798 5.2.8), so checking it needs the IP source
//! and destination the packet came with; the IP family of those decides the address size.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::{WireError, append_zeroed, read_u16};

/// IP protocol number of VRRP.
pub const PROTOCOL: u8 = 112;
/// The IPv4 multicast group adverts are sent to.
pub const MULTICAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// The IPv6 multicast group adverts are sent to.
pub const MULTICAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// The TTL / hop limit every advert is sent with and must arrive with (RFC 5798 5.1.1.3).
pub const TTL: u8 = 255;
/// Header bytes before the addresses.
pub const HEADER_LEN: usize = field::ADDRESSES.start;
/// The largest interval the 12-bit field holds, in centiseconds.
pub const MAX_INTERVAL_CS: u16 = 0x0fff;

const VERSION: u8 = 3;
const TYPE_ADVERTISEMENT: u8 = 1;

/// Byte offsets of the message (see the layout above), each given once here.
mod field {
    use crate::{Field, Rest};

    pub(crate) const VERSION_TYPE: usize = 0;
    pub(crate) const VRID: usize = 1;
    pub(crate) const PRIORITY: usize = 2;
    pub(crate) const COUNT: usize = 3;
    pub(crate) const MAX_ADVERT_INTERVAL: Field = 4..6;
    pub(crate) const CHECKSUM: Field = 6..8;
    pub(crate) const ADDRESSES: Rest = 8..;
}

/// A VRRP message whose header and length have been checked against the IP family it came in
/// (`new_checked`); accessors cannot panic.
#[derive(Debug, Clone, Copy)]
pub struct VrrpPacket<'a> {
    buf: &'a [u8],
    ipv6: bool,
}

impl<'a> VrrpPacket<'a> {
    /// Checks version, type and that the length is exactly the header plus `count` addresses
    /// of the family (`ipv6`).
    pub fn new_checked(buf: &'a [u8], ipv6: bool) -> Result<Self, WireError> {
        if buf.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let version_type = buf[field::VERSION_TYPE];
        if version_type >> 4 != VERSION {
            return Err(WireError::UnsupportedVersion(version_type >> 4));
        }
        if version_type & 0x0f != TYPE_ADVERTISEMENT {
            return Err(WireError::Malformed("VRRP type (not an advertisement)"));
        }
        let expected = HEADER_LEN + usize::from(buf[field::COUNT]) * address_len(ipv6);
        if buf.len() < expected {
            return Err(WireError::Truncated);
        }
        if buf.len() != expected {
            return Err(WireError::LengthMismatch {
                declared: expected as u32,
                actual: buf.len(),
            });
        }
        Ok(Self { buf, ipv6 })
    }

    /// The virtual router id.
    pub fn vrid(&self) -> u8 {
        self.buf[field::VRID]
    }

    /// The sender's priority.
    pub fn priority(&self) -> u8 {
        self.buf[field::PRIORITY]
    }

    /// How many addresses follow the header.
    pub fn count(&self) -> u8 {
        self.buf[field::COUNT]
    }

    /// The sender's advertisement interval, in centiseconds.
    pub fn max_advert_interval_cs(&self) -> u16 {
        read_u16(self.buf, field::MAX_ADVERT_INTERVAL) & MAX_INTERVAL_CS
    }

    /// The checksum field.
    pub fn checksum(&self) -> u16 {
        read_u16(self.buf, field::CHECKSUM)
    }

    /// Whether the checksum is right for a packet from `src` to `dst`. False if their family
    /// is not the one the view was checked for.
    pub fn checksum_ok(&self, src: IpAddr, dst: IpAddr) -> bool {
        src.is_ipv6() == self.ipv6
            && dst.is_ipv6() == self.ipv6
            && fold(pseudo_header_sum(src, dst, self.buf.len()) + sum(self.buf)) == 0xffff
    }

    /// The advertised addresses.
    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + 'a {
        let ipv6 = self.ipv6;
        self.buf[field::ADDRESSES]
            .chunks_exact(address_len(ipv6))
            .map(move |bytes| {
                if ipv6 {
                    let octets: [u8; 16] = bytes.try_into().unwrap_or([0; 16]);
                    IpAddr::V6(octets.into())
                } else {
                    let octets: [u8; 4] = bytes.try_into().unwrap_or([0; 4]);
                    IpAddr::V4(octets.into())
                }
            })
    }
}

/// An advertisement, as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    /// The virtual router id.
    pub vrid: u8,
    /// The sender's priority; 0 when it leaves the master role.
    pub priority: u8,
    /// The advertisement interval, in centiseconds (at most [`MAX_INTERVAL_CS`]).
    pub max_advert_interval_cs: u16,
    /// The virtual addresses, all of one family (at most 255).
    pub addresses: Vec<IpAddr>,
}

impl Advert {
    /// The owned form of a checked packet (checksum not included: check it separately).
    pub fn parse(packet: &VrrpPacket<'_>) -> Self {
        Self {
            vrid: packet.vrid(),
            priority: packet.priority(),
            max_advert_interval_cs: packet.max_advert_interval_cs(),
            addresses: packet.addresses().collect(),
        }
    }

    /// Appends the message, with the checksum for a packet from `src` to `dst`, to `out`.
    /// Addresses of the other family than `src` are left out, and at most 255 are sent.
    pub fn emit(&self, src: IpAddr, dst: IpAddr, out: &mut Vec<u8>) {
        let start = out.len();
        let ipv6 = src.is_ipv6();
        let addresses: Vec<_> = self
            .addresses
            .iter()
            .filter(|a| a.is_ipv6() == ipv6)
            .take(255)
            .collect();
        let header = append_zeroed(out, HEADER_LEN);
        header[field::VERSION_TYPE] = VERSION << 4 | TYPE_ADVERTISEMENT;
        header[field::VRID] = self.vrid;
        header[field::PRIORITY] = self.priority;
        header[field::COUNT] = addresses.len() as u8;
        header[field::MAX_ADVERT_INTERVAL]
            .copy_from_slice(&(self.max_advert_interval_cs & MAX_INTERVAL_CS).to_be_bytes());
        for address in addresses {
            match address {
                IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
                IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
            }
        }
        let message = &mut out[start..];
        // The checksum field is still zero, as the computation requires.
        let checksum = !fold(pseudo_header_sum(src, dst, message.len()) + sum(message));
        message[field::CHECKSUM].copy_from_slice(&checksum.to_be_bytes());
    }
}

fn address_len(ipv6: bool) -> usize {
    if ipv6 { 16 } else { 4 }
}

/// The one's-complement sum of the pseudo-header: RFC 791 for IPv4, RFC 8200 8.1 for IPv6.
fn pseudo_header_sum(src: IpAddr, dst: IpAddr, len: usize) -> u64 {
    let mut total = 0;
    for address in [src, dst] {
        total += match address {
            IpAddr::V4(a) => sum(&a.octets()),
            IpAddr::V6(a) => sum(&a.octets()),
        };
    }
    total + u64::from(PROTOCOL) + len as u64
}

/// Big-endian 16-bit words summed without folding (an odd last byte is padded with zero).
fn sum(bytes: &[u8]) -> u64 {
    let mut chunks = bytes.chunks_exact(2);
    let mut total: u64 = chunks
        .by_ref()
        .map(|w| u64::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    if let [last] = chunks.remainder() {
        total += u64::from(*last) << 8;
    }
    total
}

fn fold(mut total: u64) -> u16 {
    while total > 0xffff {
        total = (total & 0xffff) + (total >> 16);
    }
    total as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SRC4: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 1, 2));
    const DST4: IpAddr = IpAddr::V4(MULTICAST_V4);

    fn advert4() -> Advert {
        Advert {
            vrid: 51,
            priority: 200,
            max_advert_interval_cs: 5,
            addresses: vec![IpAddr::V4(Ipv4Addr::new(10, 0, 1, 1))],
        }
    }

    #[test]
    fn emits_the_rfc_layout() {
        let mut out = Vec::new();
        advert4().emit(SRC4, DST4, &mut out);
        assert_eq!(&out[..6], &[0x31, 51, 200, 1, 0, 5]);
        assert_eq!(&out[8..], &[10, 0, 1, 1]);
        let packet = VrrpPacket::new_checked(&out, false).unwrap();
        assert!(packet.checksum_ok(SRC4, DST4));
        assert_eq!(Advert::parse(&packet), advert4());
    }

    /// Checksum computed by hand for this packet: pseudo-header 10.0.1.2 -> 224.0.0.18,
    /// protocol 112, length 12; message 3133 c801 0005 0000 0a00 0101.
    #[test]
    fn checksum_matches_a_hand_computed_value() {
        let mut out = Vec::new();
        advert4().emit(SRC4, DST4, &mut out);
        let words: u64 = [
            0x0a00u64, 0x0102, 0xe000, 0x0012, 112, 12, 0x3133, 0xc801, 0x0005, 0x0a00, 0x0101,
        ]
        .iter()
        .sum();
        assert_eq!(u64::from(read_u16(&out, 6..8)), u64::from(!fold(words)));
    }

    #[test]
    fn checksum_depends_on_the_pseudo_header() {
        let mut out = Vec::new();
        advert4().emit(SRC4, DST4, &mut out);
        let packet = VrrpPacket::new_checked(&out, false).unwrap();
        let other = IpAddr::V4(Ipv4Addr::new(10, 0, 1, 3));
        assert!(!packet.checksum_ok(other, DST4));
        let v6 = IpAddr::V6(MULTICAST_V6);
        assert!(!packet.checksum_ok(v6, v6));
    }

    #[test]
    fn ipv6_round_trip() {
        let src: IpAddr = "fe80::2".parse().unwrap();
        let dst = IpAddr::V6(MULTICAST_V6);
        let advert = Advert {
            vrid: 7,
            priority: 100,
            max_advert_interval_cs: 100,
            addresses: vec!["fe80::1".parse().unwrap(), "fd00:1::1".parse().unwrap()],
        };
        let mut out = Vec::new();
        advert.emit(src, dst, &mut out);
        assert_eq!(out.len(), HEADER_LEN + 32);
        let packet = VrrpPacket::new_checked(&out, true).unwrap();
        assert!(packet.checksum_ok(src, dst));
        assert_eq!(Advert::parse(&packet), advert);
        assert!(VrrpPacket::new_checked(&out, false).is_err());
    }

    #[test]
    fn rejects_bad_headers() {
        let mut out = Vec::new();
        advert4().emit(SRC4, DST4, &mut out);
        let mut v2 = out.clone();
        v2[0] = 0x21;
        assert_eq!(
            VrrpPacket::new_checked(&v2, false).unwrap_err(),
            WireError::UnsupportedVersion(2)
        );
        let mut other_type = out.clone();
        other_type[0] = 0x32;
        assert!(VrrpPacket::new_checked(&other_type, false).is_err());
        assert_eq!(
            VrrpPacket::new_checked(&out[..10], false).unwrap_err(),
            WireError::Truncated
        );
        let mut long = out.clone();
        long.push(0);
        assert!(matches!(
            VrrpPacket::new_checked(&long, false),
            Err(WireError::LengthMismatch { .. })
        ));
    }

    fn any_advert(ipv6: bool) -> impl Strategy<Value = Advert> {
        let address = if ipv6 {
            any::<[u8; 16]>().prop_map(|o| IpAddr::V6(o.into())).boxed()
        } else {
            any::<[u8; 4]>().prop_map(|o| IpAddr::V4(o.into())).boxed()
        };
        (
            any::<u8>(),
            any::<u8>(),
            0..=MAX_INTERVAL_CS,
            proptest::collection::vec(address, 0..20),
        )
            .prop_map(|(vrid, priority, interval, addresses)| Advert {
                vrid,
                priority,
                max_advert_interval_cs: interval,
                addresses,
            })
    }

    proptest! {
        #[test]
        fn ipv4_round_trips_with_a_valid_checksum(advert in any_advert(false), src in any::<[u8; 4]>()) {
            let src = IpAddr::V4(src.into());
            let mut out = Vec::new();
            advert.emit(src, DST4, &mut out);
            let packet = VrrpPacket::new_checked(&out, false).unwrap();
            prop_assert!(packet.checksum_ok(src, DST4));
            prop_assert_eq!(Advert::parse(&packet), advert);
        }

        #[test]
        fn ipv6_round_trips_with_a_valid_checksum(advert in any_advert(true), src in any::<[u8; 16]>()) {
            let (src, dst) = (IpAddr::V6(src.into()), IpAddr::V6(MULTICAST_V6));
            let mut out = Vec::new();
            advert.emit(src, dst, &mut out);
            let packet = VrrpPacket::new_checked(&out, true).unwrap();
            prop_assert!(packet.checksum_ok(src, dst));
            prop_assert_eq!(Advert::parse(&packet), advert);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300), ipv6 in any::<bool>()) {
            if let Ok(packet) = VrrpPacket::new_checked(&bytes, ipv6) {
                let _ = packet.checksum_ok(SRC4, DST4);
                let _ = Advert::parse(&packet);
            }
        }

        #[test]
        fn the_decoder_accepts_exactly_the_rfc_layout(bytes in proptest::collection::vec(any::<u8>(), 0..120), version_ok: bool, ipv6: bool) {
            // Half the inputs get the right version and type, so the length check is reached.
            let mut bytes = bytes;
            if version_ok && !bytes.is_empty() {
                bytes[0] = 0x31;
            }
            let expected = bytes.len() >= HEADER_LEN
                && bytes[0] == 0x31
                && bytes.len() == HEADER_LEN + usize::from(bytes[3]) * address_len(ipv6);
            let packet = VrrpPacket::new_checked(&bytes, ipv6);
            prop_assert_eq!(packet.is_ok(), expected, "{:?}", packet.err());
            if let Ok(packet) = packet {
                prop_assert_eq!(Advert::parse(&packet).addresses.len(), usize::from(bytes[3]));
            }
        }

        #[test]
        fn a_mangled_advert_is_refused_or_decodes_to_what_it_re_emits(
            advert in any_advert(false),
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
            cut in any::<Option<usize>>(),
            fix_checksum: bool,
        ) {
            let mut out = Vec::new();
            advert.emit(SRC4, DST4, &mut out);
            for (at, byte) in edits {
                let at = at % out.len();
                out[at] = byte;
            }
            if let Some(cut) = cut {
                out.truncate(cut % (out.len() + 1));
            }
            if fix_checksum && out.len() >= HEADER_LEN {
                // A forger computes the checksum: only the layout checks stand in its way.
                out[6..8].fill(0);
                let checksum = !fold(pseudo_header_sum(SRC4, DST4, out.len()) + sum(&out));
                out[6..8].copy_from_slice(&checksum.to_be_bytes());
            }
            let Ok(packet) = VrrpPacket::new_checked(&out, false) else {
                return Ok(());
            };
            let decoded = Advert::parse(&packet);
            let mut again = Vec::new();
            decoded.emit(SRC4, DST4, &mut again);
            let check = VrrpPacket::new_checked(&again, false).unwrap();
            prop_assert!(check.checksum_ok(SRC4, DST4));
            prop_assert_eq!(Advert::parse(&check), decoded.clone());
            if packet.checksum_ok(SRC4, DST4) {
                // What was accepted differs from its re-emission in the reserved bits at most
                // (and so in the checksum).
                let mut reserved = out.clone();
                reserved[4] &= 0x0f;
                prop_assert_eq!(&reserved[..6], &again[..6]);
                prop_assert_eq!(&reserved[8..], &again[8..]);
            }
        }

        #[test]
        fn a_flipped_bit_breaks_the_checksum(advert in any_advert(false), bit in 0usize..64) {
            let mut out = Vec::new();
            advert.emit(SRC4, DST4, &mut out);
            let bit = bit % (out.len() * 8);
            out[bit / 8] ^= 1 << (bit % 8);
            if let Ok(packet) = VrrpPacket::new_checked(&out, false) {
                prop_assert!(!packet.checksum_ok(SRC4, DST4));
            }
        }
    }
}
