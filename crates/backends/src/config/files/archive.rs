//! The canonical form of a files unit: a small deterministic archive, version 1.
//!
//! The standby parses what its peer sent, so [`ArchiveView::new_checked`] checks everything
//! once (lengths, kinds, modes, confinement of every path, order) and the view's accessors
//! cannot fail afterwards. [`Archive`] is the owned form the reader builds and emits.
//!
//! # Layout (integers big-endian)
//!
//! ```text
//! header   magic "FOFA" (4) | version = 1 (u16) | reserved = 0 (u16) | entry count (u32)
//! entry    kind (u8: 1 file, 2 directory) | reserved = 0 (u8) | path length (u16)
//!          | mode (u32, permission bits incl. setuid/setgid/sticky: at most 0o7777)
//!          | uid (u32) | gid (u32) | content length (u32, 0 for a directory)
//!          | path bytes | content bytes
//! ```
//!
//! The first entry is the unit itself, with an empty path: a file unit is that one entry, a
//! directory unit that entry followed by everything beneath it. Every other path is relative
//! to the unit: non-empty components separated by single `/`, none `.` or `..`, no NUL, no
//! leading or trailing `/`. Entries are strictly increasing by path compared component by
//! component (bytes, with `/` below every other byte), which puts a directory before its
//! contents. Whether an entry's parent is a directory of the archive is left to the OS at
//! staging (it refuses to create `a/b` under a file `a`), not checked here.
//!
//! Not carried: symlinks, device files, fifos and sockets (the reader refuses them), hard links
//! (each name is a file of its own), times, extended attributes and ACLs.

use std::cmp::Ordering;
use std::fmt;
use std::ops::Range;

/// The format's version, in [`FORMAT_VERSION_TEXT`] and in every archive's header.
pub const FORMAT_VERSION: u16 = 1;
/// What [`FilesBackend`](super::FilesBackend) reports as its version.
pub const FORMAT_VERSION_TEXT: &str = "files v1";
/// The highest mode an entry may carry: permission bits plus setuid, setgid and sticky.
pub const MAX_MODE: u32 = 0o7777;

const MAGIC: &[u8; 4] = b"FOFA";
/// The header's length.
pub(super) const HEADER_LEN: usize = field::HEADER_LEN;
/// The length of an entry's fixed part (before its path and content).
pub(super) const ENTRY_LEN: usize = field::ENTRY_LEN;

/// Byte offsets of the header, then of an entry's fixed part.
mod field {
    pub(super) type Field = std::ops::Range<usize>;

    pub(super) const MAGIC: Field = 0..4;
    pub(super) const VERSION: Field = 4..6;
    pub(super) const RESERVED: Field = 6..8;
    pub(super) const COUNT: Field = 8..12;
    pub(super) const HEADER_LEN: usize = COUNT.end;

    pub(super) const KIND: usize = 0;
    pub(super) const ENTRY_RESERVED: usize = 1;
    pub(super) const PATH_LEN: Field = 2..4;
    pub(super) const MODE: Field = 4..8;
    pub(super) const UID: Field = 8..12;
    pub(super) const GID: Field = 12..16;
    pub(super) const CONTENT_LEN: Field = 16..20;
    pub(super) const ENTRY_LEN: usize = CONTENT_LEN.end;
}

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A regular file, with its content.
    File,
    /// A directory (no content).
    Directory,
}

impl EntryKind {
    fn code(self) -> u8 {
        match self {
            EntryKind::File => 1,
            EntryKind::Directory => 2,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(EntryKind::File),
            2 => Some(EntryKind::Directory),
            _ => None,
        }
    }
}

/// Why bytes are not a valid archive. Every variant is the sender's fault; `entry` counts from
/// 0 (the unit itself).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveError {
    /// The bytes end inside the header or an entry.
    #[error("truncated at byte {at}")]
    Truncated {
        /// Where the missing bytes start.
        at: usize,
    },
    /// Not an archive of this format.
    #[error("not a files archive (bad magic)")]
    Magic,
    /// An archive of another version of the format.
    #[error("archive version {0}, this node reads version {FORMAT_VERSION}")]
    Version(u16),
    /// A reserved field is not zero.
    #[error("a reserved field is not zero (entry {entry:?}; none: the header)")]
    Reserved {
        /// The entry (`None`: the header).
        entry: Option<u32>,
    },
    /// No entry: even an empty directory has its root entry.
    #[error("no entries")]
    Empty,
    /// More entries announced than the bytes can hold.
    #[error("{count} entries announced in {len} bytes")]
    Count {
        /// The announced count.
        count: u32,
        /// The archive's length.
        len: usize,
    },
    /// An unknown entry kind.
    #[error("entry {path}: unknown kind {kind}")]
    Kind {
        /// The entry's path (lossy UTF-8).
        path: String,
        /// The code.
        kind: u8,
    },
    /// A mode with bits beyond [`MAX_MODE`].
    #[error("entry {path}: mode {mode:#o} is more than permission bits")]
    Mode {
        /// The entry's path.
        path: String,
        /// The mode.
        mode: u32,
    },
    /// A directory with content.
    #[error("entry {path}: a directory with content")]
    DirectoryContent {
        /// The entry's path.
        path: String,
    },
    /// The first entry has a path, or a later one has none.
    #[error("entry {entry}: only the first entry, the unit itself, has an empty path")]
    Root {
        /// The entry.
        entry: u32,
    },
    /// A file unit with entries beneath it.
    #[error("a file unit with {count} entries")]
    FileWithEntries {
        /// The announced count.
        count: u32,
    },
    /// A path that is not relative and normalized: it could escape the unit.
    #[error("entry {path}: {why}")]
    Path {
        /// The entry's path.
        path: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// An entry not after the previous one: out of order or a duplicate.
    #[error("entry {path}: not after {previous} (out of order or a duplicate)")]
    Order {
        /// The entry's path.
        path: String,
        /// The previous entry's path.
        previous: String,
    },
    /// Bytes after the last entry.
    #[error("{0} bytes after the last entry")]
    Trailing(usize),
}

/// One entry of an [`ArchiveView`], borrowing its path and content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryView<'a> {
    /// File or directory.
    pub kind: EntryKind,
    /// Permission bits, at most [`MAX_MODE`].
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Relative to the unit; empty for the unit itself.
    pub path: &'a [u8],
    /// A file's bytes; empty for a directory.
    pub content: &'a [u8],
}

impl EntryView<'_> {
    /// The owned copy.
    pub fn to_owned_entry(&self) -> Entry {
        Entry {
            kind: self.kind,
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
            path: self.path.to_vec(),
            content: self.content.to_vec(),
        }
    }
}

/// A checked archive: every accessor works without further checks.
#[derive(Debug, Clone, Copy)]
pub struct ArchiveView<'a> {
    bytes: &'a [u8],
    count: u32,
}

impl<'a> ArchiveView<'a> {
    /// Checks `bytes` whole (see the module documentation for the rules).
    pub fn new_checked(bytes: &'a [u8]) -> Result<Self, ArchiveError> {
        let header = bytes
            .get(..field::HEADER_LEN)
            .ok_or(ArchiveError::Truncated { at: bytes.len() })?;
        if &header[field::MAGIC] != MAGIC {
            return Err(ArchiveError::Magic);
        }
        let version = be16(header, field::VERSION);
        if version != FORMAT_VERSION {
            return Err(ArchiveError::Version(version));
        }
        if be16(header, field::RESERVED) != 0 {
            return Err(ArchiveError::Reserved { entry: None });
        }
        let count = be32(header, field::COUNT);
        if count == 0 {
            return Err(ArchiveError::Empty);
        }
        // Bounds the loop by the input, whatever the count says.
        if (bytes.len() - field::HEADER_LEN) / field::ENTRY_LEN < count as usize {
            return Err(ArchiveError::Count {
                count,
                len: bytes.len(),
            });
        }
        let mut at = field::HEADER_LEN;
        let mut previous: Option<&[u8]> = None;
        for index in 0..count {
            let (entry, next) = decode(bytes, at, index)?;
            check(index, &entry, previous)?;
            if index == 0 && entry.kind == EntryKind::File && count > 1 {
                return Err(ArchiveError::FileWithEntries { count });
            }
            previous = Some(entry.path);
            at = next;
        }
        if at != bytes.len() {
            return Err(ArchiveError::Trailing(bytes.len() - at));
        }
        Ok(Self { bytes, count })
    }

    /// How many entries, the unit's own included.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Never: a checked archive holds at least the unit's own entry.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The unit's own entry: a file, or the directory the rest lies in.
    pub fn root(&self) -> EntryView<'a> {
        // A checked archive has a first entry; the fallback is never taken.
        self.entries().next().unwrap_or(EntryView {
            kind: EntryKind::Directory,
            mode: 0,
            uid: 0,
            gid: 0,
            path: &[],
            content: &[],
        })
    }

    /// Every entry in order, the unit's own first.
    pub fn entries(&self) -> impl Iterator<Item = EntryView<'a>> + use<'a> {
        let bytes = self.bytes;
        let mut at = field::HEADER_LEN;
        (0..self.count).map_while(move |index| {
            let (entry, next) = decode(bytes, at, index).ok()?;
            at = next;
            Some(entry)
        })
    }

    /// The archive as text, for `failoverctl config diff` (a unified diff of two renders):
    /// one line per entry (kind, path, `.` for the unit itself, mode, owner and group, and a
    /// file's size), then a text file's lines each after `  | `, or any other file's bytes in
    /// hex, 32 a line, after `  x `. A file is text when it is UTF-8 without NUL; a last line
    /// without a newline is marked. Names that are not UTF-8 are shown lossily.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for entry in self.entries() {
            let path = if entry.path.is_empty() {
                ".".into()
            } else {
                lossy(entry.path)
            };
            out.push_str(&format!(
                "{} {path} {:04o} {}:{}",
                entry.kind, entry.mode, entry.uid, entry.gid
            ));
            if entry.kind == EntryKind::Directory {
                out.push('\n');
                continue;
            }
            out.push_str(&format!(" {} bytes\n", entry.content.len()));
            match std::str::from_utf8(entry.content) {
                Ok(text) if !text.contains('\0') => {
                    for line in text.split_inclusive('\n') {
                        out.push_str("  | ");
                        out.push_str(line);
                        if !line.ends_with('\n') {
                            out.push_str("\n  (no newline at the end)\n");
                        }
                    }
                }
                _ => {
                    for chunk in entry.content.chunks(32) {
                        out.push_str("  x ");
                        for byte in chunk {
                            out.push_str(&format!("{byte:02x}"));
                        }
                        out.push('\n');
                    }
                }
            }
        }
        out
    }

    /// The owned copy.
    pub fn to_owned_archive(&self) -> Archive {
        Archive {
            entries: self.entries().map(|e| e.to_owned_entry()).collect(),
        }
    }
}

/// An owned entry (see [`EntryView`] for the fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// File or directory.
    pub kind: EntryKind,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Relative to the unit; empty for the unit itself.
    pub path: Vec<u8>,
    /// A file's bytes; empty for a directory.
    pub content: Vec<u8>,
}

/// An owned archive: what the reader builds. [`Archive::emit`] writes the entries as they
/// are; only [`ArchiveView::new_checked`] says whether they make a valid archive.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Archive {
    /// The unit's own entry first, then the rest by path (see [`path_order`]).
    pub entries: Vec<Entry>,
}

impl Archive {
    /// The emitted length in bytes.
    pub fn buffer_len(&self) -> usize {
        field::HEADER_LEN
            + self
                .entries
                .iter()
                .map(|e| field::ENTRY_LEN + e.path.len() + e.content.len())
                .sum::<usize>()
    }

    /// The archive's bytes. Lengths beyond the fields' range are saturated (the result then
    /// fails the check): the reader bounds unit sizes long before.
    pub fn emit(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.buffer_len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes());
        out.extend_from_slice(&saturate32(self.entries.len()).to_be_bytes());
        for entry in &self.entries {
            out.push(entry.kind.code());
            out.push(0);
            let path_len = u16::try_from(entry.path.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&path_len.to_be_bytes());
            out.extend_from_slice(&entry.mode.to_be_bytes());
            out.extend_from_slice(&entry.uid.to_be_bytes());
            out.extend_from_slice(&entry.gid.to_be_bytes());
            out.extend_from_slice(&saturate32(entry.content.len()).to_be_bytes());
            out.extend_from_slice(&entry.path);
            out.extend_from_slice(&entry.content);
        }
        out
    }
}

/// The archive's order of paths: component by component, so a directory comes right before
/// its contents (`a`, `a/b`, `a.txt`). Paths hold no NUL, so `/` as 0 keeps the order.
pub fn path_order(a: &[u8], b: &[u8]) -> Ordering {
    let key = |c: &u8| if *c == b'/' { 0 } else { *c };
    a.iter().map(key).cmp(b.iter().map(key))
}

/// Why `path` (not the root's) could escape or is not normalized, if it could.
fn path_problem(path: &[u8]) -> Option<&'static str> {
    if path.contains(&0) {
        return Some("a path with a NUL byte");
    }
    if path.first() == Some(&b'/') {
        return Some("an absolute path");
    }
    for component in path.split(|c| *c == b'/') {
        match component {
            b"" => return Some("an empty path component (`//` or a trailing `/`)"),
            b"." => return Some("a `.` path component"),
            b".." => return Some("a `..` path component"),
            _ => {}
        }
    }
    None
}

/// The entry at `at` and where the next starts, with its lengths checked (the rest is
/// [`check`]'s).
fn decode(bytes: &[u8], at: usize, index: u32) -> Result<(EntryView<'_>, usize), ArchiveError> {
    let fixed = bytes
        .get(at..at + field::ENTRY_LEN)
        .ok_or(ArchiveError::Truncated { at: bytes.len() })?;
    let path_len = usize::from(be16(fixed, field::PATH_LEN));
    let content_len = be32(fixed, field::CONTENT_LEN) as usize;
    let path_at = at + field::ENTRY_LEN;
    let content_at = path_at + path_len;
    let truncated = ArchiveError::Truncated { at: bytes.len() };
    let path = bytes.get(path_at..content_at).ok_or(truncated.clone())?;
    let end = content_at
        .checked_add(content_len)
        .ok_or(truncated.clone())?;
    let content = bytes.get(content_at..end).ok_or(truncated)?;
    let kind = EntryKind::from_code(fixed[field::KIND]).ok_or_else(|| ArchiveError::Kind {
        path: lossy(path),
        kind: fixed[field::KIND],
    })?;
    let entry = EntryView {
        kind,
        mode: be32(fixed, field::MODE),
        uid: be32(fixed, field::UID),
        gid: be32(fixed, field::GID),
        path,
        content,
    };
    if fixed[field::ENTRY_RESERVED] != 0 {
        return Err(ArchiveError::Reserved { entry: Some(index) });
    }
    Ok((entry, end))
}

/// The rules on one decoded entry, `index` in the archive, after `previous`'s path.
fn check(index: u32, entry: &EntryView<'_>, previous: Option<&[u8]>) -> Result<(), ArchiveError> {
    if entry.mode > MAX_MODE {
        return Err(ArchiveError::Mode {
            path: lossy(entry.path),
            mode: entry.mode,
        });
    }
    if entry.kind == EntryKind::Directory && !entry.content.is_empty() {
        return Err(ArchiveError::DirectoryContent {
            path: lossy(entry.path),
        });
    }
    if (index == 0) != entry.path.is_empty() {
        return Err(ArchiveError::Root { entry: index });
    }
    if index == 0 {
        return Ok(());
    }
    if let Some(why) = path_problem(entry.path) {
        return Err(ArchiveError::Path {
            path: lossy(entry.path),
            why,
        });
    }
    if let Some(previous) = previous.filter(|p| !p.is_empty())
        && path_order(previous, entry.path) != Ordering::Less
    {
        return Err(ArchiveError::Order {
            path: lossy(entry.path),
            previous: lossy(previous),
        });
    }
    Ok(())
}

fn be16(bytes: &[u8], field: Range<usize>) -> u16 {
    let mut out = [0; 2];
    out.copy_from_slice(&bytes[field]);
    u16::from_be_bytes(out)
}

fn be32(bytes: &[u8], field: Range<usize>) -> u32 {
    let mut out = [0; 4];
    out.copy_from_slice(&bytes[field]);
    u32::from_be_bytes(out)
}

fn saturate32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A path for a message.
pub(super) fn lossy(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

impl fmt::Display for EntryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EntryKind::File => "file",
            EntryKind::Directory => "directory",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(kind: EntryKind, path: &str, content: &[u8]) -> Entry {
        Entry {
            kind,
            mode: 0o644,
            uid: 1,
            gid: 2,
            path: path.as_bytes().to_vec(),
            content: content.to_vec(),
        }
    }

    fn tree(paths: &[(&str, EntryKind)]) -> Archive {
        let mut entries = vec![entry(EntryKind::Directory, "", b"")];
        entries.extend(paths.iter().map(|(p, k)| {
            let content: &[u8] = if *k == EntryKind::File { b"x" } else { b"" };
            entry(*k, p, content)
        }));
        Archive { entries }
    }

    #[test]
    fn golden_bytes_of_a_file_unit() {
        let archive = Archive {
            entries: vec![Entry {
                kind: EntryKind::File,
                mode: 0o640,
                uid: 0x0102,
                gid: 7,
                path: Vec::new(),
                content: b"hi".to_vec(),
            }],
        };
        let bytes = archive.emit();
        assert_eq!(
            bytes,
            [
                b'F', b'O', b'F', b'A', 0, 1, 0, 0, 0, 0, 0, 1, // header
                1, 0, 0, 0, 0, 0, 0x01, 0xa0, 0, 0, 1, 2, 0, 0, 0, 7, 0, 0, 0, 2, // entry
                b'h', b'i',
            ]
        );
        assert_eq!(bytes.len(), archive.buffer_len());
        let view = ArchiveView::new_checked(&bytes).unwrap();
        assert_eq!(view.to_owned_archive(), archive);
    }

    #[test]
    fn render_shows_every_field_and_byte() {
        let mut archive = tree(&[
            ("a.conf", EntryKind::File),
            ("bin", EntryKind::File),
            ("sub", EntryKind::Directory),
        ]);
        archive.entries[1].content = b"x = 1\ny = 2".to_vec();
        archive.entries[2].content = vec![0, 1, 0xfe];
        archive.entries[3].mode = 0o2750;
        let bytes = archive.emit();
        let rendered = ArchiveView::new_checked(&bytes).unwrap().render();
        assert_eq!(
            rendered,
            "directory . 0644 1:2\n\
             file a.conf 0644 1:2 11 bytes\n  | x = 1\n  | y = 2\n  (no newline at the end)\n\
             file bin 0644 1:2 3 bytes\n  x 0001fe\n\
             directory sub 2750 1:2\n"
        );
        // Control: one byte of a binary file, or an owner, changes the render.
        archive.entries[2].content[1] = 2;
        let changed = archive.emit();
        assert_ne!(
            ArchiveView::new_checked(&changed).unwrap().render(),
            rendered
        );
        archive.entries[2].content[1] = 1;
        archive.entries[2].gid = 3;
        let changed = archive.emit();
        assert_ne!(
            ArchiveView::new_checked(&changed).unwrap().render(),
            rendered
        );
    }

    #[test]
    fn order_is_by_component() {
        let ordered = tree(&[
            ("a", EntryKind::Directory),
            ("a/b", EntryKind::File),
            ("a.txt", EntryKind::File),
            ("ab", EntryKind::File),
        ]);
        assert!(ArchiveView::new_checked(&ordered.emit()).is_ok());
        // Control: plain byte order puts `a.txt` before `a/b`, which the archive refuses.
        let bytewise = tree(&[
            ("a", EntryKind::Directory),
            ("a.txt", EntryKind::File),
            ("a/b", EntryKind::File),
        ]);
        assert!(matches!(
            ArchiveView::new_checked(&bytewise.emit()),
            Err(ArchiveError::Order { path, .. }) if path == "a/b"
        ));
        let duplicate = tree(&[("a", EntryKind::File), ("a", EntryKind::File)]);
        assert!(matches!(
            ArchiveView::new_checked(&duplicate.emit()),
            Err(ArchiveError::Order { .. })
        ));
    }

    #[test]
    fn escaping_paths_are_refused_naming_the_entry() {
        for (path, why) in [
            ("..", "`..`"),
            ("a/../../etc", "`..`"),
            ("/etc/passwd", "absolute"),
            ("a//b", "empty"),
            ("a/", "empty"),
            ("./a", "`.`"),
            ("a\0b", "NUL"),
        ] {
            let archive = tree(&[(path, EntryKind::File)]);
            match ArchiveView::new_checked(&archive.emit()) {
                Err(ArchiveError::Path {
                    path: named,
                    why: said,
                }) => {
                    assert_eq!(named, lossy(path.as_bytes()));
                    assert!(said.contains(why), "{path}: {said}");
                }
                other => panic!("{path:?}: {other:?}"),
            }
        }
        // Control: names that only look alike are fine.
        let fine = tree(&[("..a", EntryKind::File), ("a..", EntryKind::File)]);
        assert!(ArchiveView::new_checked(&fine.emit()).is_ok());
    }

    #[test]
    fn structural_errors() {
        let file = Archive {
            entries: vec![entry(EntryKind::File, "", b"x")],
        };
        let good = file.emit();
        assert!(ArchiveView::new_checked(&good).is_ok());
        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(
            ArchiveView::new_checked(&bad).unwrap_err(),
            ArchiveError::Magic
        );
        let mut bad = good.clone();
        bad[5] = 2;
        assert_eq!(
            ArchiveView::new_checked(&bad).unwrap_err(),
            ArchiveError::Version(2)
        );
        let mut bad = good.clone();
        bad.push(0);
        assert_eq!(
            ArchiveView::new_checked(&bad).unwrap_err(),
            ArchiveError::Trailing(1)
        );
        let mut bad = good.clone();
        bad.pop();
        assert!(matches!(
            ArchiveView::new_checked(&bad),
            Err(ArchiveError::Truncated { .. })
        ));
        let mut bad = good.clone();
        bad[11] = 0xff;
        assert!(matches!(
            ArchiveView::new_checked(&bad),
            Err(ArchiveError::Count { .. })
        ));
        let mut with_child = file.clone();
        with_child.entries.push(entry(EntryKind::File, "a", b""));
        assert!(matches!(
            ArchiveView::new_checked(&with_child.emit()),
            Err(ArchiveError::FileWithEntries { count: 2 })
        ));
        let mut mode = file.clone();
        mode.entries[0].mode = 0o10000;
        assert!(matches!(
            ArchiveView::new_checked(&mode.emit()),
            Err(ArchiveError::Mode { .. })
        ));
        let mut dir = tree(&[]);
        dir.entries[0].content = b"x".to_vec();
        assert!(matches!(
            ArchiveView::new_checked(&dir.emit()),
            Err(ArchiveError::DirectoryContent { .. })
        ));
        let mut rooted = tree(&[]);
        rooted.entries[0].path = b"a".to_vec();
        assert_eq!(
            ArchiveView::new_checked(&rooted.emit()).unwrap_err(),
            ArchiveError::Root { entry: 0 }
        );
        let second_root = tree(&[("", EntryKind::File)]);
        assert_eq!(
            ArchiveView::new_checked(&second_root.emit()).unwrap_err(),
            ArchiveError::Root { entry: 1 }
        );
        let empty = Archive::default();
        assert_eq!(
            ArchiveView::new_checked(&empty.emit()).unwrap_err(),
            ArchiveError::Empty
        );
    }

    /// Valid archives: a root (a file, or a directory with sorted, unique, normalized paths).
    fn archives() -> impl Strategy<Value = Archive> {
        let component = "[a-z.]{1,3}".prop_filter("not . or ..", |c| c != "." && c != "..");
        let path = prop::collection::vec(component, 1..4).prop_map(|c| c.join("/"));
        let child = (
            path,
            any::<bool>(),
            0..=MAX_MODE,
            any::<u32>(),
            prop::collection::vec(any::<u8>(), 0..8),
        );
        let children = prop::collection::vec(child, 0..8);
        (
            any::<bool>(),
            0..=MAX_MODE,
            prop::collection::vec(any::<u8>(), 0..8),
            children,
        )
            .prop_map(|(file_root, mode, content, children)| {
                if file_root {
                    return Archive {
                        entries: vec![Entry {
                            kind: EntryKind::File,
                            mode,
                            uid: 0,
                            gid: 0,
                            path: vec![],
                            content,
                        }],
                    };
                }
                let mut rest: Vec<Entry> = children
                    .into_iter()
                    .map(|(path, is_file, mode, uid, content)| Entry {
                        kind: if is_file {
                            EntryKind::File
                        } else {
                            EntryKind::Directory
                        },
                        mode,
                        uid,
                        gid: uid / 2,
                        path: path.into_bytes(),
                        content: if is_file { content } else { Vec::new() },
                    })
                    .collect();
                rest.sort_by(|a, b| path_order(&a.path, &b.path));
                rest.dedup_by(|a, b| a.path == b.path);
                let mut entries = vec![Entry {
                    kind: EntryKind::Directory,
                    mode,
                    uid: 0,
                    gid: 0,
                    path: vec![],
                    content: vec![],
                }];
                entries.extend(rest);
                Archive { entries }
            })
    }

    proptest! {
        #[test]
        fn round_trip(archive in archives()) {
            let bytes = archive.emit();
            prop_assert_eq!(bytes.len(), archive.buffer_len());
            let view = ArchiveView::new_checked(&bytes).expect("a valid archive");
            prop_assert_eq!(view.len(), archive.entries.len());
            prop_assert_eq!(view.to_owned_archive().emit(), bytes.clone());
            prop_assert_eq!(view.to_owned_archive(), archive);
        }

        #[test]
        fn parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = ArchiveView::new_checked(&bytes).map(|v| v.entries().count());
        }

        #[test]
        fn corrupted_archives_never_panic_and_what_passes_reads_whole(
            archive in archives(),
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        ) {
            let mut bytes = archive.emit();
            for (at, value) in flips {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
            if let Ok(view) = ArchiveView::new_checked(&bytes) {
                prop_assert_eq!(view.entries().count(), view.len());
                prop_assert_eq!(view.to_owned_archive().emit(), bytes);
            }
        }
    }
}
