//! The system calls the files backend needs and std does not wrap: `openat2` (resolution that
//! refuses symlinks and stays beneath a directory), `mkdirat` and `renameat2` (the atomic
//! exchange of a directory).

// Each block says why it is sound.
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`: `path` (relative to `dir`) cannot
/// leave `dir` and no component of it, the last included, may be a symlink. The kernel checks
/// both while it resolves, so no rename racing the call can defeat them.
pub(super) fn open_beneath(
    dir: BorrowedFd<'_>,
    path: &CStr,
    flags: libc::c_int,
    mode: libc::mode_t,
) -> io::Result<OwnedFd> {
    let mut how: libc::open_how = open_how_zeroed();
    how.flags = u64::try_from(flags | libc::O_CLOEXEC | libc::O_NOFOLLOW).unwrap_or_default();
    // The kernel refuses a mode without O_CREAT or O_TMPFILE.
    if flags & libc::O_CREAT != 0 {
        how.mode = u64::from(mode);
    }
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS;
    // SAFETY: `path` is NUL-terminated and `how` a fully initialized `open_how` whose size is
    // passed with it; the returned descriptor is new and owned by nobody else.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            path.as_ptr(),
            &raw const how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = libc::c_int::try_from(fd).map_err(|_| io::Error::other("openat2: bad descriptor"))?;
    // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn open_how_zeroed() -> libc::open_how {
    // SAFETY: `open_how` is plain integers; all zeroes is a valid value (no flags).
    unsafe { std::mem::zeroed() }
}

/// `mkdirat`: a directory `name` (one component) in `dir`, with `mode` (before the umask).
pub(super) fn mkdir_in(dir: BorrowedFd<'_>, name: &CStr, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated; `dir` is an open descriptor.
    if unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// How [`rename_in`] renames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rename {
    /// `RENAME_NOREPLACE`: fails if the new name exists.
    NoReplace,
    /// `RENAME_EXCHANGE`: both names exist and swap atomically.
    Exchange,
}

/// `renameat2` of `from` to `to`, both names in directory `dir`.
pub(super) fn rename_in(
    dir: BorrowedFd<'_>,
    from: &CStr,
    to: &CStr,
    how: Rename,
) -> io::Result<()> {
    let flags = match how {
        Rename::NoReplace => libc::RENAME_NOREPLACE,
        Rename::Exchange => libc::RENAME_EXCHANGE,
    };
    let fd = dir.as_raw_fd();
    // SAFETY: both names are NUL-terminated; `dir` is an open descriptor.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            fd,
            from.as_ptr(),
            fd,
            to.as_ptr(),
            flags,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `SIGKILL` to every process of process group `group`.
pub(super) fn kill_group(group: u32) -> io::Result<()> {
    let group =
        libc::pid_t::try_from(group).map_err(|_| io::Error::other("not a process group"))?;
    // SAFETY: plain system call; a negative pid names a process group.
    if unsafe { libc::kill(-group, libc::SIGKILL) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `syncfs`: writes out everything of the filesystem holding `fd` and waits for it.
pub(super) fn sync_filesystem(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: plain system call on an open descriptor.
    if unsafe { libc::syncfs(fd.as_raw_fd()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
