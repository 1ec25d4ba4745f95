//! The control connection of one link, served by a thread of its own rather than by tokio
//! tasks: the hellos that travel on it must not wait for a runtime whose threads are busy (a
//! long driver turn, TLS work on the data connection) or off the CPU on a loaded machine. On a
//! two-core machine under a full test suite, the control writer task was measured 28 ms late
//! and the link's `Up` reached the hello thread 58 ms late, through the driver: with a 30 ms
//! dead interval, both made a live peer look dead (issue 10, finding 1).
//!
//! The thread owns the TCP socket (taken out of tokio) and the rustls connection, waits in
//! `poll(2)` for the socket and for a wake-up (a frame queued, or the link stopping), writes
//! what is queued, reads and checks frames, hands each to the [`ControlTap`] and then to the
//! daemon's event queue. It runs at the real-time priority the link was configured with.

// System calls that libc, socket2 and nix do not wrap safely; each block says why it is sound.
#![allow(unsafe_code)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering as Atomic};

use failoverd_wire::{HEADER_LEN, frame_len};
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::TlsStream;
use tracing::{trace, warn};

use super::{Ctx, Ordered, READ_BUFFER, Stream, TapEvent, WRITE_BATCH};
use crate::Channel;

/// Wakes the control thread out of `poll(2)`: an eventfd; and asks it to confirm a drain.
pub(super) struct Wake {
    fd: OwnedFd,
    /// A drain was asked for and not yet confirmed.
    drain: AtomicBool,
}

impl Wake {
    pub(super) fn new() -> io::Result<Self> {
        // SAFETY: plain system call; the descriptor returned is owned by nothing else.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created, is valid, and nothing else owns or closes it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self {
            fd,
            drain: AtomicBool::new(false),
        })
    }

    /// Asks the thread to read what the socket holds and to tell the tap
    /// [`TapEvent::Drained`] once it found it empty.
    pub(super) fn drain(&self) {
        self.drain.store(true, Atomic::Release);
        self.wake();
    }

    pub(super) fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64 to our eventfd. It can only fail when the
        // counter is saturated, and then the thread is woken anyway.
        unsafe { libc::write(self.fd.as_raw_fd(), (&raw const one).cast(), 8) };
    }

    fn clear(&self) {
        let mut count: u64 = 0;
        // SAFETY: reads 8 bytes into a valid u64; nonblocking, so at worst EAGAIN.
        unsafe { libc::read(self.fd.as_raw_fd(), (&raw mut count).cast(), 8) };
    }
}

/// A running control thread.
pub(super) struct ControlThread {
    stop: Arc<AtomicBool>,
    wake: Arc<Wake>,
    /// Why the connection ended, sent when the thread ends.
    pub(super) done: oneshot::Receiver<String>,
    /// `done` resolved already.
    pub(super) finished: bool,
}

impl ControlThread {
    /// Serves `stream` on a new thread until it fails, the queue closes or [`stop`] is called.
    pub(super) fn start(
        ctx: Arc<Ctx>,
        stream: Stream,
        queue: mpsc::Receiver<Vec<u8>>,
        wake: Arc<Wake>,
        remote: SocketAddr,
    ) -> io::Result<Self> {
        let (socket, tls) = into_parts(stream)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (done_tx, done) = oneshot::channel();
        let connection = Connection {
            ctx,
            socket,
            tls,
            queue,
            wake: wake.clone(),
            stop: stop.clone(),
            remote,
        };
        std::thread::Builder::new()
            .name("link-control".to_string())
            .spawn(move || {
                let _ = done_tx.send(connection.run());
            })?;
        Ok(Self {
            stop,
            wake,
            done,
            finished: false,
        })
    }

    /// Stops the thread and waits until it has delivered its last frame.
    pub(super) async fn stop(mut self) {
        self.stop.store(true, Atomic::Release);
        self.wake.wake();
        if !self.finished {
            let _ = (&mut self.done).await;
        }
    }
}

/// The socket leaves tokio's reactor (the thread polls it itself); rustls keeps whatever it
/// already read.
fn into_parts(stream: Stream) -> io::Result<(TcpStream, rustls::Connection)> {
    let (socket, tls) = match stream {
        TlsStream::Client(stream) => {
            let (socket, tls) = stream.into_inner();
            (socket, rustls::Connection::from(tls))
        }
        TlsStream::Server(stream) => {
            let (socket, tls) = stream.into_inner();
            (socket, rustls::Connection::from(tls))
        }
    };
    Ok((socket.into_std()?, tls))
}

struct Connection {
    ctx: Arc<Ctx>,
    socket: TcpStream,
    tls: rustls::Connection,
    queue: mpsc::Receiver<Vec<u8>>,
    wake: Arc<Wake>,
    stop: Arc<AtomicBool>,
    remote: SocketAddr,
}

impl Connection {
    fn run(mut self) -> String {
        if let Some(priority) = self.ctx.control_priority
            && let Err(err) = crate::set_realtime_priority(priority)
            && let Some(suppressed) = self
                .ctx
                .allow_log(super::LogKey::Local("control priority"), "control priority")
        {
            warn!(
                suppressed,
                "failover link: the control connection runs at normal priority: real-time \
                 priority refused ({err}; it needs CAP_SYS_NICE)"
            );
        }
        self.tap(TapEvent::Up);
        let reason = self.serve();
        self.tap(TapEvent::Down);
        reason
    }

    fn tap(&self, event: TapEvent<'_>) {
        if let Some(tap) = &self.ctx.tap {
            (tap.0)(event);
        }
    }

    /// Writes and reads until the connection ends; returns why.
    fn serve(&mut self) -> String {
        let counters = &self.ctx.shared.counters;
        let index = Channel::Control.index();
        // Plaintext read and not yet cut into frames.
        let mut inbox: Vec<u8> = Vec::with_capacity(READ_BUFFER);
        let mut buffer = vec![0; READ_BUFFER];
        // A frame waiting for room in the daemon's event queue; nothing more is read meanwhile,
        // so TCP pushes back on the peer.
        let mut undelivered: Option<Ordered> = None;
        loop {
            if self.stop.load(Atomic::Acquire) {
                return "stopped".to_string();
            }
            if let Some(event) = undelivered.take() {
                match self.ctx.events.try_send(event) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(event)) => undelivered = Some(event),
                    Err(mpsc::error::TrySendError::Closed(_)) => return "link stopped".into(),
                }
            }
            while undelivered.is_none() {
                let frame = match next_frame(&mut inbox) {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(err) => {
                        counters.malformed.fetch_add(1, Atomic::Relaxed);
                        let reason = format!("malformed frame on the control connection: {err}");
                        warn!(remote = %self.remote, "failover link: {reason}; closing the link");
                        return reason;
                    }
                };
                counters.frames_in[index].fetch_add(1, Atomic::Relaxed);
                counters.bytes_in[index].fetch_add(frame.len() as u64, Atomic::Relaxed);
                self.tap(TapEvent::Frame(&frame));
                match self.ctx.events.try_send(Ordered::Frame(frame)) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(event)) => undelivered = Some(event),
                    Err(mpsc::error::TrySendError::Closed(_)) => return "link stopped".into(),
                }
            }
            // Queued frames go into TLS only once what TLS holds is on the socket: the socket's
            // buffer bounds what waits here.
            if !self.tls.wants_write() {
                let (mut frames, mut bytes) = (0, 0);
                while bytes < WRITE_BATCH {
                    match self.queue.try_recv() {
                        Ok(frame) => {
                            if let Err(err) = self.tls.writer().write_all(&frame) {
                                return format!("control connection failed: {err}");
                            }
                            frames += 1;
                            bytes += frame.len();
                        }
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => {
                            return "link closed".to_string();
                        }
                    }
                }
                if frames > 0 {
                    trace!(frames, bytes, "control frames queued into TLS");
                }
                counters.frames_out[index].fetch_add(frames, Atomic::Relaxed);
                counters.bytes_out[index].fetch_add(bytes as u64, Atomic::Relaxed);
            }
            while self.tls.wants_write() {
                match self.tls.write_tls(&mut self.socket) {
                    Ok(_) => {}
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                        trace!("control socket full");
                        break;
                    }
                    Err(err) => return format!("control connection failed: {err}"),
                }
            }
            let mut read = false;
            // Whole frames were all taken out above: the inbox holds at most one partial frame.
            if undelivered.is_none() {
                // Taken before the read: a read that finds the socket empty after the request
                // means every frame that was there has been handed to the tap.
                let drain = self.wake.drain.swap(false, Atomic::AcqRel);
                let result = self.tls.read_tls(&mut self.socket);
                if drain {
                    if matches!(&result, Err(err) if err.kind() == io::ErrorKind::WouldBlock) {
                        self.tap(TapEvent::Drained);
                    } else {
                        // Not empty yet (or ending): confirmed by a later pass.
                        self.wake.drain.store(true, Atomic::Release);
                    }
                }
                match result {
                    Ok(0) => return "peer closed the control connection".to_string(),
                    Ok(_) => {
                        read = true;
                        if let Err(err) = self.tls.process_new_packets() {
                            // Tell the peer why (an alert) before closing; best effort.
                            let _ = self.tls.write_tls(&mut self.socket);
                            return format!("control connection failed: {err}");
                        }
                        loop {
                            match self.tls.reader().read(&mut buffer) {
                                Ok(0) => return "peer closed the control connection".to_string(),
                                Ok(n) => inbox.extend_from_slice(&buffer[..n]),
                                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                                Err(err) => return format!("control connection failed: {err}"),
                            }
                        }
                    }
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                    Err(err) => return format!("control connection failed: {err}"),
                }
            }
            if read {
                // More may be ready: poll only when nothing is.
                continue;
            }
            self.wait(undelivered.is_some());
        }
    }

    /// Sleeps until the socket is readable (unless a frame waits for the daemon) or writable
    /// (if TLS has bytes for it), or a wake-up; a frame waiting for the daemon is retried
    /// every millisecond.
    fn wait(&self, waiting_for_daemon: bool) {
        let mut socket_events = 0;
        if !waiting_for_daemon {
            socket_events |= libc::POLLIN;
        }
        if self.tls.wants_write() {
            socket_events |= libc::POLLOUT;
        }
        let mut fds = [
            libc::pollfd {
                fd: self.socket.as_raw_fd(),
                events: socket_events,
                revents: 0,
            },
            libc::pollfd {
                fd: self.wake.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let timeout = if waiting_for_daemon { 1 } else { -1 };
        // SAFETY: two valid pollfd entries. EINTR or an error just runs the loop again,
        // which finds the error on the socket itself.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if fds[1].revents != 0 {
            self.wake.clear();
        }
    }
}

/// The first whole frame of `inbox`, taken out of it.
fn next_frame(inbox: &mut Vec<u8>) -> Result<Option<Vec<u8>>, failoverd_wire::WireError> {
    if inbox.len() < HEADER_LEN {
        return Ok(None);
    }
    let len = frame_len(&inbox[..HEADER_LEN])?;
    if inbox.len() < len {
        return Ok(None);
    }
    let rest = inbox.split_off(len);
    Ok(Some(std::mem::replace(inbox, rest)))
}
