//! Reading a unit from the filesystem into its [`Archive`].
//!
//! The unit's own path is the administrator's (its directories are followed); everything
//! beneath it is opened relative to the unit's descriptor with `openat2`, which refuses every
//! symlink and any escape while it resolves. A directory is listed through its descriptor
//! (`/proc/self/fd`), so a directory renamed or replaced meanwhile is never listed in its place.
//! An entry is first opened `O_PATH` (which opens nothing: a fifo does not block, a device is
//! not touched) and classified; a file is then opened for reading and must be the same inode.

use std::ffi::{CString, OsStr};
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use failoverd_wire::MAX_UNIT_LEN;

use super::archive::{
    Archive, ENTRY_LEN, Entry, EntryKind, HEADER_LEN, MAX_MODE, lossy, path_order,
};
use super::sys::open_beneath;

/// Why a unit could not be read, naming the entry.
#[derive(Debug)]
pub(super) enum ReadError {
    /// The OS refused (`what` names the entry and the operation).
    Io {
        /// What was being done, to which entry.
        what: String,
        /// The OS's error.
        error: io::Error,
    },
    /// Something a unit never carries, or a unit too big.
    Refused(String),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Io { what, error } => write!(f, "{what}: {error}"),
            ReadError::Refused(why) => f.write_str(why),
        }
    }
}

/// The archive of the unit at `path`, `None` if it does not exist.
pub(super) fn read_unit(path: &Path) -> Result<Option<Archive>, ReadError> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(ReadError::Refused(format!(
            "{}: not a unit path",
            path.display()
        )));
    };
    let parent = match File::open(parent) {
        Ok(parent) => OwnedFd::from(parent),
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io_error(parent, "opening", error)),
    };
    let mut reader = Reader {
        unit: path,
        entries: Vec::new(),
        size: HEADER_LEN,
    };
    if !reader.entry(parent.as_fd(), name.as_bytes(), Vec::new())? {
        return Ok(None);
    }
    let mut entries = reader.entries;
    entries.sort_by(|a, b| path_order(&a.path, &b.path));
    Ok(Some(Archive { entries }))
}

struct Reader<'a> {
    unit: &'a Path,
    entries: Vec<Entry>,
    /// The archive's length so far.
    size: usize,
}

impl Reader<'_> {
    /// Reads the entry `name` in directory `dir` (the unit itself when `rel` is empty, else
    /// the entry at `rel` under it), and everything beneath it. False: the unit is absent.
    fn entry(&mut self, dir: BorrowedFd<'_>, name: &[u8], rel: Vec<u8>) -> Result<bool, ReadError> {
        if rel.len() > usize::from(u16::MAX) {
            let start = &rel[..64];
            return Err(self.refused(start, "a path longer than an archive holds (65535 bytes)"));
        }
        let c_name =
            CString::new(name).map_err(|_| self.refused(&rel, "a name with a NUL byte"))?;
        let probe = match open_beneath(dir, &c_name, libc::O_PATH, 0) {
            Ok(fd) => fd,
            Err(error) if error.kind() == io::ErrorKind::NotFound && rel.is_empty() => {
                return Ok(false);
            }
            Err(error) if error.raw_os_error() == Some(libc::ELOOP) => {
                return Err(
                    self.refused(&rel, "a symlink, which files units never follow nor carry")
                );
            }
            Err(error) => return Err(self.io(&rel, "opening", error)),
        };
        let meta = File::from(probe)
            .metadata()
            .map_err(|e| self.io(&rel, "inspecting", e))?;
        let file_type = meta.file_type();
        let kind = if file_type.is_file() {
            EntryKind::File
        } else if file_type.is_dir() {
            EntryKind::Directory
        } else {
            let what = if file_type.is_symlink() {
                "a symlink, which files units never follow nor carry"
            } else if file_type.is_block_device() || file_type.is_char_device() {
                "a device file, which files units never carry"
            } else if file_type.is_fifo() {
                "a fifo, which files units never carry"
            } else if file_type.is_socket() {
                "a socket, which files units never carry"
            } else {
                "of an unknown file type"
            };
            return Err(self.refused(&rel, what));
        };
        let flags = match kind {
            EntryKind::File => libc::O_RDONLY | libc::O_NONBLOCK,
            EntryKind::Directory => libc::O_RDONLY | libc::O_DIRECTORY,
        };
        let opened =
            open_beneath(dir, &c_name, flags, 0).map_err(|e| self.io(&rel, "opening", e))?;
        let mut file = File::from(opened);
        let now = file
            .metadata()
            .map_err(|e| self.io(&rel, "inspecting", e))?;
        if (now.dev(), now.ino()) != (meta.dev(), meta.ino()) {
            return Err(self.refused(&rel, "replaced while being read"));
        }
        let mut content = Vec::new();
        if kind == EntryKind::File {
            // One byte more than fits tells a unit too big without reading all of it.
            let room = u64::from(MAX_UNIT_LEN).saturating_sub(self.size as u64) + 1;
            (&mut file)
                .take(room)
                .read_to_end(&mut content)
                .map_err(|e| self.io(&rel, "reading", e))?;
        }
        self.grow(&rel, ENTRY_LEN + rel.len() + content.len())?;
        self.push(kind, &now, &rel, content);
        if kind == EntryKind::Directory {
            self.children(file.as_fd(), &rel)?;
        }
        Ok(true)
    }

    /// Every entry of the directory open as `dir` (at `rel`).
    fn children(&mut self, dir: BorrowedFd<'_>, rel: &[u8]) -> Result<(), ReadError> {
        let listing = format!("/proc/self/fd/{}", dir.as_raw_fd());
        let names = std::fs::read_dir(&listing).map_err(|e| self.io(rel, "listing", e))?;
        for name in names {
            let name = name.map_err(|e| self.io(rel, "listing", e))?.file_name();
            let child = child_path(rel, &name);
            self.entry(dir, name.as_bytes(), child)?;
        }
        Ok(())
    }

    fn push(&mut self, kind: EntryKind, meta: &Metadata, rel: &[u8], content: Vec<u8>) {
        self.entries.push(Entry {
            kind,
            mode: meta.mode() & MAX_MODE,
            uid: meta.uid(),
            gid: meta.gid(),
            path: rel.to_vec(),
            content,
        });
    }

    /// Counts `bytes` more in the archive, refusing a unit that outgrows what a transfer holds.
    fn grow(&mut self, rel: &[u8], bytes: usize) -> Result<(), ReadError> {
        let total = self.size.saturating_add(bytes);
        if total > MAX_UNIT_LEN as usize {
            return Err(self.refused(
                rel,
                &format!("the unit outgrows the {MAX_UNIT_LEN} bytes a unit may hold"),
            ));
        }
        self.size = total;
        Ok(())
    }

    /// The entry's name in messages: the unit's path joined with `rel`.
    fn name(&self, rel: &[u8]) -> String {
        if rel.is_empty() {
            self.unit.display().to_string()
        } else {
            format!("{}/{}", self.unit.display(), lossy(rel))
        }
    }

    fn refused(&self, rel: &[u8], why: &str) -> ReadError {
        ReadError::Refused(format!("{}: {why}", self.name(rel)))
    }

    fn io(&self, rel: &[u8], what: &str, error: io::Error) -> ReadError {
        ReadError::Io {
            what: format!("{what} {}", self.name(rel)),
            error,
        }
    }
}

fn child_path(rel: &[u8], name: &OsStr) -> Vec<u8> {
    let mut child = rel.to_vec();
    if !child.is_empty() {
        child.push(b'/');
    }
    child.extend_from_slice(name.as_bytes());
    child
}

fn io_error(path: &Path, what: &str, error: io::Error) -> ReadError {
    ReadError::Io {
        what: format!("{what} {}", path.display()),
        error,
    }
}
