//! The owner stamp: two conntrack-mark bits that record, in each kernel entry, whose session it
//! is, so that a restarted daemon knows its own entries from the copies it holds for the peer
//! (`docs/CONNTRACK.md`, "Ownership").
//!
//! The stamp is relative to the kernel that holds the entry: the lower bit says "this node's",
//! the higher "the peer's", and an entry with neither was made while no failoverd ran (or its
//! stamp was overwritten by a ruleset that sets the whole mark).

use std::fmt;

/// Whose entry an entry's mark says it is, from the point of view of the kernel holding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stamp {
    /// The local node's.
    Local,
    /// The peer's: a copy written for it.
    Peer,
    /// No stamp.
    None,
}

/// The two mark bits of the owner stamp, or none (ownership then lives only in the daemon, and a
/// restarted daemon takes every entry for the peer's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnerMark {
    local: u32,
    peer: u32,
}

/// A mask that is not two bits (nor 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnerMarkError(pub u32);

impl fmt::Display for OwnerMarkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "owner mark {:#010x} has {} bits set; it needs exactly 2 (or 0 to turn stamps off)",
            self.0,
            self.0.count_ones()
        )
    }
}

impl std::error::Error for OwnerMarkError {}

impl OwnerMark {
    /// No stamps.
    pub const OFF: Self = Self { local: 0, peer: 0 };

    /// The default, bits 30 ("this node's") and 31 ("the peer's"): the top of the mark, far
    /// from the small values rulesets usually give.
    pub const DEFAULT: Self = Self {
        local: 1 << 30,
        peer: 1 << 31,
    };

    /// From a mask of exactly two bits (the lower says "this node's"), or 0 for [`OFF`](Self::OFF).
    pub fn new(mask: u32) -> Result<Self, OwnerMarkError> {
        match mask.count_ones() {
            0 => Ok(Self::OFF),
            2 => {
                let local = mask & mask.wrapping_neg();
                Ok(Self {
                    local,
                    peer: mask & !local,
                })
            }
            _ => Err(OwnerMarkError(mask)),
        }
    }

    /// Both bits.
    pub fn mask(self) -> u32 {
        self.local | self.peer
    }

    /// The bits that say `stamp`.
    pub fn bits(self, stamp: Stamp) -> u32 {
        match stamp {
            Stamp::Local => self.local,
            Stamp::Peer => self.peer,
            Stamp::None => 0,
        }
    }

    /// What a kernel mark says. Both bits set (a ruleset's doing) is no stamp.
    pub fn stamp(self, mark: u32) -> Stamp {
        match (mark & self.local != 0, mark & self.peer != 0) {
            (true, false) => Stamp::Local,
            (false, true) => Stamp::Peer,
            _ => Stamp::None,
        }
    }
}

impl Default for OwnerMark {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_bits_make_a_stamp_the_lower_saying_local() {
        let mark = OwnerMark::new(0x0000_0300).unwrap();
        assert_eq!(mark.bits(Stamp::Local), 0x100);
        assert_eq!(mark.bits(Stamp::Peer), 0x200);
        assert_eq!(mark.stamp(0x2a | 0x100), Stamp::Local);
        assert_eq!(mark.stamp(0x2a | 0x200), Stamp::Peer);
        assert_eq!(mark.stamp(0x2a), Stamp::None);
        assert_eq!(mark.stamp(0x32a), Stamp::None);
        assert_eq!(OwnerMark::new(0xc000_0000), Ok(OwnerMark::DEFAULT));
    }

    #[test]
    fn zero_turns_stamps_off_and_other_counts_are_refused() {
        let off = OwnerMark::new(0).unwrap();
        assert_eq!(off.mask(), 0);
        assert_eq!(off.stamp(u32::MAX), Stamp::None);
        assert_eq!(OwnerMark::new(0x4), Err(OwnerMarkError(0x4)));
        assert_eq!(OwnerMark::new(0x7), Err(OwnerMarkError(0x7)));
    }
}
