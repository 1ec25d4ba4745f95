//! Sockets in a network namespace, made in-process: a thread enters the namespace, creates the
//! socket and ends. A socket belongs to the namespace it was created in for its whole life, so
//! any thread can use it afterwards.

use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Runs `f` on a new thread whose network namespace is `ns` (a name made by `ip netns add`,
/// i.e. a file under `/run/netns`), and returns what `f` returns. Only that thread changes
/// namespace, and it ends with `f`; a panic in `f` is propagated.
pub fn run_in<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name(format!("netns {ns}"))
            .spawn_scoped(scope, || {
                enter(ns);
                f()
            })
            .expect("spawn a thread");
        match thread.join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Moves the calling thread into the network namespace `ns`.
fn enter(ns: &str) {
    let path = format!("/run/netns/{ns}");
    let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    // SAFETY: `file` is an open descriptor of a network namespace for the whole call; setns
    // with CLONE_NEWNET changes only the calling thread's network namespace (allowed in a
    // multi-threaded process), which is the thread `run_in` made for this purpose.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(
        rc,
        0,
        "setns({path}, CLONE_NEWNET): {}",
        io::Error::last_os_error()
    );
}

/// A TCP listener on `addr` in namespace `ns`.
pub fn tcp_listen(ns: &str, addr: SocketAddr) -> TcpListener {
    run_in(ns, || TcpListener::bind(addr)).unwrap_or_else(|e| panic!("{ns}: listen {addr}: {e}"))
}

/// A TCP connection to `to` from namespace `ns`.
pub fn tcp_connect(ns: &str, to: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    run_in(ns, || TcpStream::connect_timeout(&to, timeout))
}

/// A UDP socket bound to `addr` in namespace `ns`.
pub fn udp_bind(ns: &str, addr: SocketAddr) -> UdpSocket {
    run_in(ns, || UdpSocket::bind(addr)).unwrap_or_else(|e| panic!("{ns}: bind {addr}: {e}"))
}

/// Runs `f` on a new thread named `name` whose network namespace is `ns`, for as long as `f`
/// runs (a traffic generator that makes its sockets as it goes).
pub fn spawn_in(
    ns: &str,
    name: &str,
    f: impl FnOnce() + Send + 'static,
) -> std::thread::JoinHandle<()> {
    let ns = ns.to_string();
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            enter(&ns);
            f()
        })
        .expect("spawn a thread")
}
