//! Classic BPF socket filters on netlink sockets: the kernel drops what a reader does not want
//! before it is queued (a wake-up, a copy and a parse saved per message).

// setsockopt with a program, which netlink-sys does not wrap.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::RawFd;

/// How wide the tested field is.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Width {
    /// 16 bits (e.g. `nlmsg_type`).
    Half,
    /// 32 bits (e.g. `nlmsg_pid`).
    Word,
}

/// Attaches to `fd` a filter that reads the field of `width` at `offset` of each datagram (its
/// first netlink header) and keeps the datagram if the field equals `value` (host byte order)
/// when `keep_equal`, or if it differs otherwise.
pub(crate) fn attach_field_match(
    fd: RawFd,
    width: Width,
    offset: u32,
    value: u32,
    keep_equal: bool,
) -> io::Result<()> {
    const JUMP_IF_EQUAL: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const RETURN: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    // A load reads network byte order; netlink headers are in host order.
    let (load, value) = match width {
        Width::Half => (
            libc::BPF_LD | libc::BPF_H | libc::BPF_ABS,
            u32::from(u16::from_be_bytes((value as u16).to_ne_bytes())),
        ),
        Width::Word => (
            libc::BPF_LD | libc::BPF_W | libc::BPF_ABS,
            u32::from_be_bytes(value.to_ne_bytes()),
        ),
    };
    let (on_equal, otherwise) = if keep_equal {
        (u32::MAX, 0)
    } else {
        (0, u32::MAX)
    };
    let instruction = |code: u16, jf: u8, k: u32| libc::sock_filter { code, jt: 0, jf, k };
    let mut program = [
        instruction(load as u16, 0, offset),
        instruction(JUMP_IF_EQUAL, 1, value),
        instruction(RETURN, 0, on_equal),
        instruction(RETURN, 0, otherwise),
    ];
    let filter = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: `filter` and the program it points to outlive the call (the kernel copies
    // them), and the size of `filter` is passed along.
    let res = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&filter as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if res < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
