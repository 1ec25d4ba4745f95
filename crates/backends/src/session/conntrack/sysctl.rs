//! The conntrack sysctls under `/proc/sys/net/netfilter`, as seen from the calling thread's network
//! namespace.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

const DIR: &str = "/proc/sys/net/netfilter";

/// The sysctls that matter for a pair, in the order `kernel_settings` reports them.
pub(super) const SETTINGS: [&str; 8] = [
    "nf_conntrack_max",
    "nf_conntrack_tcp_loose",
    "nf_conntrack_tcp_be_liberal",
    "nf_conntrack_events",
    "nf_conntrack_helper",
    "nf_conntrack_udp_timeout",
    "nf_conntrack_udp_timeout_stream",
    "nf_conntrack_tcp_timeout_established",
];

/// The value of `net.netfilter.<name>`; `None` if it is missing or not a number.
pub(super) fn read(name: &str) -> Option<u64> {
    std::fs::read_to_string(format!("{DIR}/{name}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Turns event delivery on when `nf_conntrack_events` is 0 (no events at all), and returns the
/// change made. 2 ("only while someone listens") is left alone: the backend listens.
pub(super) fn enable_events() -> io::Result<Option<(u64, u64)>> {
    const NAME: &str = "nf_conntrack_events";
    match read(NAME) {
        Some(0) => {
            std::fs::write(format!("{DIR}/{NAME}"), "1\n")?;
            Ok(Some((0, 1)))
        }
        _ => Ok(None),
    }
}

/// `nf_conntrack_count`, opened once: the file is bound to the namespace it was opened in.
pub(super) struct EntryCount(File);

impl EntryCount {
    pub(super) fn open() -> io::Result<Self> {
        File::open(format!("{DIR}/nf_conntrack_count")).map(Self)
    }

    pub(super) fn read(&self) -> io::Result<usize> {
        let mut buf = [0; 32];
        let len = self.0.read_at(&mut buf, 0)?;
        std::str::from_utf8(&buf[..len])
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "nf_conntrack_count"))
    }
}
