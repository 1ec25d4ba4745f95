//! Settings: named numbers both nodes compare.

use super::{MessageKind, emit_frame};
use crate::{WireError, read_u16, read_u64};
use field::entry;

/// The most settings one frame carries.
pub const MAX_SETTINGS: usize = 64;

/// Byte offsets of the settings body (see [`SettingsView`]), each given once here.
mod field {
    use crate::{Field, Rest};

    pub(crate) const COUNT: Field = 0..2;
    pub(crate) const ENTRIES: Rest = 2..;

    /// One entry, within [`ENTRIES`]: the name's length decides where the value is.
    pub(crate) mod entry {
        use crate::Field;

        pub(crate) const NAME_LEN: usize = 0;

        pub(crate) const fn name(len: usize) -> Field {
            1..1 + len
        }

        pub(crate) const fn value(name_len: usize) -> Field {
            let at = name(name_len).end;
            at..at + 8
        }
    }
}

/// Settings that should be equal on both nodes (the kernel's conntrack table size, TCP
/// tracking options, helpers), as named numbers: the receiver compares them with its own and
/// warns of differences. Sent once when synchronization begins.
///
/// Body: `count: u16`, then `count` times `name_len: u8`, `name` (printable ASCII),
/// `value: u64`.
#[derive(Debug, Clone, Copy)]
pub struct SettingsView<'a> {
    body: &'a [u8],
}

impl<'a> SettingsView<'a> {
    /// Checks every entry of a settings body.
    pub fn new_checked(body: &'a [u8]) -> Result<Self, WireError> {
        let view = Self { body };
        let count = view.count()?;
        if count > MAX_SETTINGS {
            return Err(WireError::Malformed("too many settings"));
        }
        let mut entries = view.entries();
        for _ in 0..count {
            entries.next_entry()?;
        }
        Ok(view)
    }

    fn count(&self) -> Result<usize, WireError> {
        if self.body.len() < field::COUNT.end {
            return Err(WireError::Truncated);
        }
        Ok(usize::from(read_u16(self.body, field::COUNT)))
    }

    /// The settings, in the sender's order.
    pub fn entries(&self) -> SettingsIter<'a> {
        SettingsIter {
            rest: self.body.get(field::ENTRIES).unwrap_or(&[]),
            left: self.count().unwrap_or(0),
        }
    }

    /// Appends a settings frame to `buf`. Panics if there are more than [`MAX_SETTINGS`] or a
    /// name is longer than 255 bytes or not printable ASCII (the caller's own constants).
    pub fn emit<'n>(entries: impl ExactSizeIterator<Item = (&'n str, u64)>, buf: &mut Vec<u8>) {
        let entries: Vec<_> = entries.collect();
        assert!(entries.len() <= MAX_SETTINGS, "too many settings");
        let len = field::ENTRIES.start
            + entries
                .iter()
                .map(|(name, _)| entry::value(name.len()).end)
                .sum::<usize>();
        let body = emit_frame(buf, MessageKind::Settings, len);
        body[field::COUNT].copy_from_slice(&(entries.len() as u16).to_be_bytes());
        let mut rest = &mut body[field::ENTRIES];
        for (name, value) in entries {
            assert!(
                name.len() <= 255 && name.bytes().all(|b| b.is_ascii_graphic()),
                "bad setting name {name:?}"
            );
            let (raw, tail) = rest.split_at_mut(entry::value(name.len()).end);
            raw[entry::NAME_LEN] = name.len() as u8;
            raw[entry::name(name.len())].copy_from_slice(name.as_bytes());
            raw[entry::value(name.len())].copy_from_slice(&value.to_be_bytes());
            rest = tail;
        }
    }
}

/// Iterator over a checked settings body.
#[derive(Debug, Clone)]
pub struct SettingsIter<'a> {
    rest: &'a [u8],
    left: usize,
}

impl<'a> SettingsIter<'a> {
    fn next_entry(&mut self) -> Result<(&'a str, u64), WireError> {
        let name_len = usize::from(*self.rest.first().ok_or(WireError::Truncated)?);
        let value = entry::value(name_len);
        let raw = self.rest.get(..value.end).ok_or(WireError::Truncated)?;
        let name = &raw[entry::name(name_len)];
        if !name.iter().all(u8::is_ascii_graphic) {
            return Err(WireError::Malformed("setting name is not printable ASCII"));
        }
        self.rest = &self.rest[value.end..];
        self.left -= 1;
        // Invariant: checked as printable ASCII just above.
        let name = std::str::from_utf8(name).map_err(|_| WireError::Malformed("setting name"))?;
        Ok((name, read_u64(raw, value)))
    }
}

impl<'a> Iterator for SettingsIter<'a> {
    type Item = (&'a str, u64);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        // A view made by `new_checked` parses; an error ends the iteration.
        self.next_entry().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{HEADER_LEN, Message};
    use proptest::prelude::*;

    #[test]
    fn settings_round_trip_and_bad_bodies_are_errors() {
        let mut buf = Vec::new();
        let sent = [
            ("nf_conntrack_max", 262_144u64),
            ("nf_conntrack_tcp_loose", 0),
        ];
        SettingsView::emit(sent.iter().copied(), &mut buf);
        let Message::Settings(view) = Message::parse(&buf).unwrap() else {
            panic!("not settings")
        };
        assert_eq!(view.entries().collect::<Vec<_>>(), sent);
        let body = &buf[HEADER_LEN..];
        for cut in 0..body.len() {
            assert!(
                SettingsView::new_checked(&body[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut bad = body.to_vec();
        bad[3] = b' ';
        assert!(SettingsView::new_checked(&bad).is_err(), "space in a name");
    }

    proptest! {
        #[test]
        fn settings_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(view) = SettingsView::new_checked(&body) {
                let _ = view.entries().count();
            }
        }
    }
}
