//! A host on a lab network that forges VRRP advertisements: a raw IP socket (protocol 112)
//! made in its namespace, sending from a thread of the test until stopped.

// System calls that libc, socket2 and nix do not wrap safely; each block says why it is sound.
#![allow(unsafe_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use failoverd_wire::vrrp::{Advert, MULTICAST_V4, PROTOCOL, TTL};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::lab::{Lab, Ns};

/// Sends `advert` from `src` to the VRRP multicast group every `every` until dropped.
pub struct Forger {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
}

impl Forger {
    /// Starts sending in namespace `ns`, whose address on the network is `src`.
    pub fn start(lab: &Lab, ns: Ns, src: Ipv4Addr, advert: &Advert, every: Duration) -> Forger {
        let socket = lab.run_in(ns, || {
            let socket = Socket::new(
                Domain::IPV4,
                Type::RAW,
                Some(Protocol::from(i32::from(PROTOCOL))),
            )
            .expect("a raw VRRP socket");
            socket.set_multicast_ttl_v4(u32::from(TTL)).unwrap();
            socket.set_multicast_if_v4(&src).unwrap();
            socket.set_multicast_loop_v4(false).unwrap();
            socket
        });
        let dst = IpAddr::V4(MULTICAST_V4);
        let mut payload = Vec::new();
        advert.emit(IpAddr::V4(src), dst, &mut payload);
        let to = SockAddr::from(SocketAddr::new(dst, 0));
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut sent = 0;
            let mut next = Instant::now();
            while !stopping.load(Ordering::Relaxed) {
                if socket.send_to(&payload, &to).is_ok() {
                    sent += 1;
                }
                next += every;
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            sent
        });
        Forger {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops; returns how many adverts went out.
    pub fn stop(mut self) -> u64 {
        self.halt()
    }

    fn halt(&mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .map_or(0, |t| t.join().expect("the forger thread"))
    }
}

impl Drop for Forger {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Counts gratuitous ARPs for `address` (sender and target address both `address`) seen on
/// namespace `ns`'s interfaces, from a thread, until stopped.
pub struct GarpCounter {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<Instant>>>,
}

/// `ETH_P_ARP`.
const ETH_P_ARP: u16 = 0x0806;

impl GarpCounter {
    /// Starts counting: the packet socket is made inside `ns` and sees all its interfaces.
    pub fn start(lab: &Lab, ns: Ns, address: Ipv4Addr) -> GarpCounter {
        let socket = lab.run_in(ns, || {
            let protocol = i32::from(ETH_P_ARP.to_be());
            let socket = Socket::new(Domain::PACKET, Type::RAW, Some(Protocol::from(protocol)))
                .expect("a packet socket");
            socket
                .set_read_timeout(Some(Duration::from_millis(20)))
                .unwrap();
            socket
        });
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1600];
            while !stopping.load(Ordering::Relaxed) {
                let Ok(len) = socket.recv(&mut buf) else {
                    continue;
                };
                // SAFETY: recv initialized the first `len` bytes.
                let frame: Vec<u8> = buf[..len]
                    .iter()
                    .map(|b| unsafe { b.assume_init() })
                    .collect();
                // Ethernet header (14), then ARP: sender IP at 14, target IP at 24.
                if frame.len() >= 42
                    && frame[28..32] == address.octets()
                    && frame[38..42] == address.octets()
                {
                    seen.push(Instant::now());
                }
            }
            seen
        });
        GarpCounter {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops; returns when each one was seen.
    pub fn stop(mut self) -> Vec<Instant> {
        self.halt()
    }

    fn halt(&mut self) -> Vec<Instant> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .map_or_else(Vec::new, |t| t.join().expect("the counter thread"))
    }
}

impl Drop for GarpCounter {
    fn drop(&mut self) {
        self.halt();
    }
}
