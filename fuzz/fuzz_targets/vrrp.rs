//! `VrrpPacket::new_checked` on arbitrary bytes (the first byte picks the family), then
//! parse → emit → check: every accepted advert re-emits to a valid one that decodes the same,
//! and to the same bytes but the reserved bits and the checksum.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use failoverd_wire::vrrp::{Advert, MULTICAST_V4, MULTICAST_V6, VrrpPacket};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&family, bytes)) = data.split_first() else {
        return;
    };
    let ipv6 = family & 1 == 1;
    let (src, dst) = if ipv6 {
        (
            IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2)),
            IpAddr::V6(MULTICAST_V6),
        )
    } else {
        (IpAddr::V4(Ipv4Addr::new(10, 0, 1, 2)), IpAddr::V4(MULTICAST_V4))
    };
    let Ok(packet) = VrrpPacket::new_checked(bytes, ipv6) else {
        return;
    };
    let valid = packet.checksum_ok(src, dst);
    let advert = Advert::parse(&packet);
    let mut again = Vec::new();
    advert.emit(src, dst, &mut again);
    let check = VrrpPacket::new_checked(&again, ipv6).expect("re-emitted advert is valid");
    assert!(check.checksum_ok(src, dst));
    assert_eq!(Advert::parse(&check), advert);
    if valid {
        assert_eq!(bytes[0..4], again[0..4]);
        assert_eq!(bytes[4] & 0x0f, again[4]);
        assert_eq!(bytes[5], again[5]);
        assert_eq!(bytes[8..], again[8..]);
    }
});
