//! When addresses appear and disappear in a namespace: an rtnetlink socket subscribed to the
//! address groups (what `ip monitor address` listens to), read by a thread that timestamps every
//! `RTM_NEWADDR`/`RTM_DELADDR` on this process's monotonic clock. Started before a takeover, it
//! tells when the new master added the virtual addresses.

// System calls that libc, socket2 and nix do not wrap safely; each block says why it is sound.
#![allow(unsafe_code)]

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::lab::{Lab, Ns};

/// The watcher thread never runs longer than this, whatever happens to its owner.
const MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);

const RTMGRP_IPV4_IFADDR: u32 = 0x10;
const RTMGRP_IPV6_IFADDR: u32 = 0x100;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const NLMSG_HDRLEN: usize = 16;
const IFADDRMSG_LEN: usize = 8;

/// One address change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddrEvent {
    /// When this process read it.
    pub at: Instant,
    /// Added (`RTM_NEWADDR`) or removed (`RTM_DELADDR`).
    pub added: bool,
    /// The interface's own address (`IFA_LOCAL`, else `IFA_ADDRESS`).
    pub addr: IpAddr,
    /// Its prefix length, in bits.
    pub prefix_len: u8,
    /// The index of the interface it is on, in the watched namespace.
    pub ifindex: u32,
}

/// Address changes in one namespace, recorded until dropped.
pub struct AddrWatch {
    events: Arc<Mutex<Vec<AddrEvent>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    failure: Arc<Mutex<Option<String>>>,
}

impl AddrWatch {
    /// Starts watching `ns`'s addresses (the socket is made inside the namespace).
    pub fn start(lab: &Lab, ns: impl Into<Ns>) -> AddrWatch {
        let ns = ns.into();
        let fd = lab
            .run_in(ns, open_socket)
            .unwrap_or_else(|e| panic!("{}: rtnetlink address socket: {e}", lab.ns(ns)));
        let events = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let failure = Arc::new(Mutex::new(None));
        let (rec, halt, failed) = (events.clone(), stop.clone(), failure.clone());
        let thread = std::thread::Builder::new()
            .name(format!("addrwatch {}", lab.ns(ns)))
            .spawn(move || {
                if let Err(e) = read_loop(&fd, &rec, &halt) {
                    *failed.lock().unwrap() = Some(e.to_string());
                }
            })
            .expect("spawn a thread");
        AddrWatch {
            events,
            stop,
            thread: Some(thread),
            failure,
        }
    }

    /// Every change seen so far, in order.
    pub fn events(&self) -> Vec<AddrEvent> {
        self.events.lock().unwrap().clone()
    }

    /// Why the watcher stopped early (a socket error), if it did.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().unwrap().clone()
    }

    /// When `addr` was first added at or after `since`.
    pub fn first_added(&self, addr: IpAddr, since: Instant) -> Option<Instant> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .find(|e| e.added && e.addr == addr && e.at >= since)
            .map(|e| e.at)
    }

    /// When the last of `addrs` was added (each one's first addition at or after `since`);
    /// `None` while one of them has not been.
    pub fn all_added(&self, addrs: &[IpAddr], since: Instant) -> Option<Instant> {
        addrs
            .iter()
            .map(|&a| self.first_added(a, since))
            .try_fold(since, |latest, at| Some(latest.max(at?)))
    }

    /// Waits, at most `within`, until every address of `addrs` has been added at or after
    /// `since`; returns when the last one was.
    pub fn wait_all_added(
        &self,
        addrs: &[IpAddr],
        since: Instant,
        within: Duration,
    ) -> Result<Instant, String> {
        let started = Instant::now();
        loop {
            if let Some(at) = self.all_added(addrs, since) {
                return Ok(at);
            }
            if let Some(failure) = self.failure() {
                return Err(format!("the address watcher failed: {failure}"));
            }
            if started.elapsed() >= within {
                let missing: Vec<String> = addrs
                    .iter()
                    .filter(|&&a| self.first_added(a, since).is_none())
                    .map(IpAddr::to_string)
                    .collect();
                return Err(format!(
                    "{} not added within {within:?}",
                    missing.join(", ")
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for AddrWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn open_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the descriptor is owned at once.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: sockaddr_nl is plain data; zeroed is a valid value.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr.nl_groups = RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR;
    // SAFETY: bind with a valid sockaddr_nl and its size.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // A read timeout, so that the thread sees its stop flag.
    let timeout = libc::timeval {
        tv_sec: 0,
        tv_usec: 50_000,
    };
    // SAFETY: setsockopt with a valid timeval and its size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

fn read_loop(fd: &OwnedFd, events: &Mutex<Vec<AddrEvent>>, stop: &AtomicBool) -> io::Result<()> {
    let started = Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::Relaxed) && started.elapsed() < MAX_LIFETIME {
        // SAFETY: recv into a buffer we own, of its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        let at = Instant::now();
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock
                | io::ErrorKind::TimedOut
                | io::ErrorKind::Interrupted => {
                    continue;
                }
                _ => return Err(e),
            }
        }
        let parsed = parse(&buf[..n as usize], at);
        events.lock().unwrap().extend(parsed);
    }
    Ok(())
}

/// The address messages of one netlink datagram.
fn parse(mut data: &[u8], at: Instant) -> Vec<AddrEvent> {
    let mut found = Vec::new();
    while data.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes(data[0..4].try_into().unwrap()) as usize;
        let kind = u16::from_ne_bytes(data[4..6].try_into().unwrap());
        if len < NLMSG_HDRLEN || len > data.len() {
            break;
        }
        let body = &data[NLMSG_HDRLEN..len];
        if (kind == RTM_NEWADDR || kind == RTM_DELADDR)
            && body.len() >= IFADDRMSG_LEN
            && let Some(event) = parse_addr(body, kind == RTM_NEWADDR, at)
        {
            found.push(event);
        }
        let aligned = (len + 3) & !3;
        data = &data[aligned.min(data.len())..];
    }
    found
}

fn parse_addr(body: &[u8], added: bool, at: Instant) -> Option<AddrEvent> {
    let family = body[0];
    let prefix_len = body[1];
    let ifindex = u32::from_ne_bytes(body[4..8].try_into().unwrap());
    let mut attrs = &body[IFADDRMSG_LEN..];
    let (mut address, mut local) = (None, None);
    while attrs.len() >= 4 {
        let len = u16::from_ne_bytes(attrs[0..2].try_into().unwrap()) as usize;
        let kind = u16::from_ne_bytes(attrs[2..4].try_into().unwrap());
        if len < 4 || len > attrs.len() {
            break;
        }
        let value = &attrs[4..len];
        let ip = match (i32::from(family), value.len()) {
            (libc::AF_INET, 4) => Some(IpAddr::V4(Ipv4Addr::from(
                <[u8; 4]>::try_from(value).unwrap(),
            ))),
            (libc::AF_INET6, 16) => Some(IpAddr::V6(Ipv6Addr::from(
                <[u8; 16]>::try_from(value).unwrap(),
            ))),
            _ => None,
        };
        match kind {
            IFA_ADDRESS => address = ip,
            IFA_LOCAL => local = ip,
            _ => {}
        }
        let aligned = (len + 3) & !3;
        attrs = &attrs[aligned.min(attrs.len())..];
    }
    // IPv4: IFA_LOCAL is the interface's own address (IFA_ADDRESS the peer's on
    // point-to-point links); IPv6 has only IFA_ADDRESS.
    let addr = local.or(address)?;
    Some(AddrEvent {
        at,
        added,
        addr,
        prefix_len,
        ifindex,
    })
}
