//! The VRRP report: what the sender's VRRP instances hear (since 1.3).

use super::{MessageKind, emit_frame};
use crate::{WireError, read_u16};
use field::entry;

/// What one VRRP instance of the sender hears, by its virtual router (VRID and family: the
/// two nodes' configurations name the same routers, in any order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VrrpInstanceReport {
    /// The virtual router id.
    pub vrid: u8,
    /// IPv6 (else IPv4).
    pub ipv6: bool,
    /// The instance is backup and has heard no master for the configured number of
    /// master-down intervals (while the group follows a master on another network).
    pub silent: bool,
    /// The instance's interface received packets lately: the network behind it is alive.
    pub hears: bool,
}

/// What the sender's VRRP instances hear, sent when it changes: the failover link decides
/// which node acts when one network loses its adverts (docs/TAKEOVER.md).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VrrpReport {
    /// One per instance, at most [`MAX_VRRP_INSTANCES`].
    pub instances: Vec<VrrpInstanceReport>,
}

/// The most instances one report carries (one per VRID and family).
pub const MAX_VRRP_INSTANCES: usize = 512;

const VRRP_REPORT_ENTRY_LEN: usize = entry::RESERVED + 1;
const REPORT_SILENT: u8 = 0x01;
const REPORT_HEARS: u8 = 0x02;

/// Byte offsets of the report body (see [`VrrpReportView`]), each given once here.
mod field {
    use crate::{Field, Rest};

    pub(crate) const COUNT: Field = 0..2;
    pub(crate) const ENTRIES: Rest = 4..;

    /// One entry, within [`ENTRIES`].
    pub(crate) mod entry {
        pub(crate) const VRID: usize = 0;
        pub(crate) const FAMILY: usize = 1;
        pub(crate) const FLAGS: usize = 2;
        pub(crate) const RESERVED: usize = 3;
    }
}

/// A checked view of a [`VrrpReport`] body.
///
/// Body: `count: u16`, 2 reserved, then `count` times `vrid: u8`, `family: u8` (4 or 6),
/// `flags: u8` (0x01 silent, 0x02 hears; other bits reserved), 1 reserved. Bytes after the
/// entries (a later minor's) are ignored.
#[derive(Debug, Clone, Copy)]
pub struct VrrpReportView<'a> {
    entries: &'a [u8],
}

impl<'a> VrrpReportView<'a> {
    /// Checks the count, that the entries are all there and their families.
    pub fn new_checked(body: &'a [u8]) -> Result<Self, WireError> {
        if body.len() < field::ENTRIES.start {
            return Err(WireError::Truncated);
        }
        let count = usize::from(read_u16(body, field::COUNT));
        if count > MAX_VRRP_INSTANCES {
            return Err(WireError::Malformed("too many VRRP instances"));
        }
        let entries = body[field::ENTRIES]
            .get(..count * VRRP_REPORT_ENTRY_LEN)
            .ok_or(WireError::Truncated)?;
        if entries
            .chunks_exact(VRRP_REPORT_ENTRY_LEN)
            .any(|e| e[entry::FAMILY] != 4 && e[entry::FAMILY] != 6)
        {
            return Err(WireError::Malformed("VRRP report family"));
        }
        Ok(Self { entries })
    }

    /// The owned report.
    pub fn report(&self) -> VrrpReport {
        VrrpReport {
            instances: self
                .entries
                .chunks_exact(VRRP_REPORT_ENTRY_LEN)
                .map(|e| VrrpInstanceReport {
                    vrid: e[entry::VRID],
                    ipv6: e[entry::FAMILY] == 6,
                    silent: e[entry::FLAGS] & REPORT_SILENT != 0,
                    hears: e[entry::FLAGS] & REPORT_HEARS != 0,
                })
                .collect(),
        }
    }
}

impl VrrpReport {
    /// Appends the whole frame to `buf`. Panics with more than [`MAX_VRRP_INSTANCES`] (the
    /// configuration allows fewer).
    pub fn emit(&self, buf: &mut Vec<u8>) {
        assert!(
            self.instances.len() <= MAX_VRRP_INSTANCES,
            "too many VRRP instances"
        );
        let body = emit_frame(
            buf,
            MessageKind::VrrpReport,
            field::ENTRIES.start + self.instances.len() * VRRP_REPORT_ENTRY_LEN,
        );
        body[field::COUNT].copy_from_slice(&(self.instances.len() as u16).to_be_bytes());
        let entries = body[field::ENTRIES].chunks_exact_mut(VRRP_REPORT_ENTRY_LEN);
        for (i, e) in self.instances.iter().zip(entries) {
            let silent = if i.silent { REPORT_SILENT } else { 0 };
            let hears = if i.hears { REPORT_HEARS } else { 0 };
            e[entry::VRID] = i.vrid;
            e[entry::FAMILY] = if i.ipv6 { 6 } else { 4 };
            e[entry::FLAGS] = silent | hears;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{HEADER_LEN, Message, VERSION};
    use proptest::prelude::*;

    #[test]
    fn vrrp_report_golden_bytes_and_refusals() {
        let report = VrrpReport {
            instances: vec![
                VrrpInstanceReport {
                    vrid: 51,
                    ipv6: false,
                    silent: true,
                    hears: true,
                },
                VrrpInstanceReport {
                    vrid: 7,
                    ipv6: true,
                    silent: false,
                    hears: false,
                },
            ],
        };
        let mut buf = Vec::new();
        report.emit(&mut buf);
        assert_eq!(
            buf,
            [
                b'F', b'O', VERSION, 7, 0, 0, 0, 20, 0, 2, 0, 0, 51, 4, 3, 0, 7, 6, 0, 0
            ]
        );
        let body = &buf[HEADER_LEN..];
        // A later minor may append: ignored.
        let mut longer = body.to_vec();
        longer.extend_from_slice(&[9; 8]);
        assert_eq!(
            VrrpReportView::new_checked(&longer).unwrap().report(),
            report
        );
        assert!(matches!(
            VrrpReportView::new_checked(&body[..body.len() - 1]),
            Err(WireError::Truncated)
        ));
        let mut family = body.to_vec();
        family[5] = 5;
        assert!(VrrpReportView::new_checked(&family).is_err());
    }

    proptest! {
        #[test]
        fn vrrp_report_round_trips(entries in proptest::collection::vec(any::<(u8, bool, bool, bool)>(), 0..40)) {
            let report = VrrpReport {
                instances: entries
                    .into_iter()
                    .map(|(vrid, ipv6, silent, hears)| VrrpInstanceReport { vrid, ipv6, silent, hears })
                    .collect(),
            };
            let mut buf = Vec::new();
            report.emit(&mut buf);
            let Message::VrrpReport(view) = Message::parse(&buf).unwrap() else {
                panic!("not a report")
            };
            prop_assert_eq!(view.report(), report);
        }
    }
}
