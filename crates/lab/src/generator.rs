//! The fault lab's traffic and its oracle: long-lived TCP streams through the virtual gateway
//! and SNAT (echoed messages every few ms, [`Probe`]), and a steady stream of new short flows
//! from the client to the server, alternately UDP (one request, one answer) and TCP (connect,
//! one echoed message, close). The generator logs each flow's start, answer or failure; the
//! fault tests judge by this log and the streams' echoes, not by failoverd's acknowledgements.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::conntrack::Flow;
use crate::lab::{CLIENT4, Lab, Ns, SERVER4};
use crate::netns;
use crate::traffic::{Probe, TcpEchoServer, UdpServer};

const TCP_PORT: u16 = 5000;
const UDP_PORT: u16 = 5001;
/// How long a new flow waits for its answer.
const ANSWER_WITHIN: Duration = Duration::from_millis(500);

/// One short flow, as the generator saw it.
#[derive(Debug, Clone)]
pub struct FlowRecord {
    /// `None` when no connection was made (no local address to name it by).
    pub flow: Option<Flow>,
    /// When the generator began it, before making its socket.
    pub started: Instant,
    /// When the server's answer came back: from then on the forwarding firewall's kernel holds
    /// the session.
    pub answered: Option<Instant>,
    /// Why no right answer came back in time (connect, send, no or a wrong answer); `None`
    /// when `answered` is set.
    pub failure: Option<String>,
}

/// The streams and the flow thread; everything stops when dropped.
pub struct Generator {
    /// The long-lived TCP streams, each already echoing when [`Generator::start`] returned.
    pub streams: Vec<Probe>,
    flows: Arc<Mutex<Vec<FlowRecord>>>,
    /// Asked to make no new flow ([`Generator::pause`]).
    paused: Arc<AtomicBool>,
    /// The flow thread has seen `paused` and has no flow under way.
    idle: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    _tcp_server: TcpEchoServer,
    _udp_server: UdpServer,
}

impl Generator {
    /// Starts the servers, `streams` TCP streams (a message every `stream_interval`, each
    /// established before this returns) and the flow thread (a new flow every `flow_interval`).
    pub fn start(
        lab: &Lab,
        streams: usize,
        stream_interval: Duration,
        flow_interval: Duration,
    ) -> Generator {
        let tcp = SocketAddr::new(SERVER4.into(), TCP_PORT);
        let udp = SocketAddr::new(SERVER4.into(), UDP_PORT);
        let tcp_server = TcpEchoServer::start(lab, tcp);
        let udp_server = UdpServer::start(lab, &[udp], &[udp]);
        let streams: Vec<Probe> = (0..streams)
            .map(|i| {
                let probe = Probe::tcp(lab, tcp, stream_interval);
                probe
                    .wait_echo_from(10, Duration::from_secs(5))
                    .unwrap_or_else(|why| panic!("stream {i}: {why}"));
                probe
            })
            .collect();
        let flows = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let paused = Arc::new(AtomicBool::new(false));
        let idle = Arc::new(AtomicBool::new(false));
        let (log, halt) = (flows.clone(), stop.clone());
        let (pausing, resting) = (paused.clone(), idle.clone());
        let thread = netns::spawn_in(&lab.ns(Ns::Client), "flow generator", move || {
            let mut n = 0u64;
            while !halt.load(Ordering::Relaxed) {
                let pause = pausing.load(Ordering::Relaxed);
                resting.store(pause, Ordering::Relaxed);
                if pause {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                let started = Instant::now();
                let (flow, outcome) = if n.is_multiple_of(2) {
                    udp_flow(udp, n)
                } else {
                    tcp_flow(tcp, n)
                };
                n += 1;
                let (answered, failure) = match outcome {
                    Ok(at) => (Some(at), None),
                    Err(why) => (None, Some(why)),
                };
                log.lock().unwrap().push(FlowRecord {
                    flow,
                    started,
                    answered,
                    failure,
                });
                std::thread::sleep(flow_interval.saturating_sub(started.elapsed()));
            }
        });
        Generator {
            streams,
            flows,
            paused,
            idle,
            stop,
            thread: Some(thread),
            _tcp_server: tcp_server,
            _udp_server: udp_server,
        }
    }

    /// Stops making new flows; returns once the flow under way (if any) has ended.
    pub fn pause(&self) {
        self.paused.store(true, Ordering::Relaxed);
        let started = Instant::now();
        while !self.idle.load(Ordering::Relaxed) {
            assert!(
                started.elapsed() < 4 * ANSWER_WITHIN,
                "the flow generator does not pause"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Makes new flows again after [`Generator::pause`].
    pub fn resume(&self) {
        self.paused.store(false, Ordering::Relaxed);
    }

    /// The log of short flows so far.
    pub fn flows(&self) -> Vec<FlowRecord> {
        self.flows.lock().unwrap().clone()
    }
}

impl Drop for Generator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One UDP request from a new socket (a new flow), and its answer.
fn udp_flow(to: SocketAddr, n: u64) -> (Option<Flow>, Result<Instant, String>) {
    let socket = match UdpSocket::bind(SocketAddr::new(CLIENT4.into(), 0)) {
        Ok(socket) => socket,
        Err(e) => return (None, Err(format!("bind: {e}"))),
    };
    let flow = socket.local_addr().ok().map(|local| Flow::udp(local, to));
    let answer = (|| {
        socket.connect(to).map_err(|e| format!("connect: {e}"))?;
        socket
            .set_read_timeout(Some(ANSWER_WITHIN))
            .map_err(|e| e.to_string())?;
        socket
            .send(&n.to_be_bytes())
            .map_err(|e| format!("send: {e}"))?;
        let mut buf = [0u8; 16];
        match socket.recv(&mut buf) {
            Ok(8) if buf[..8] == n.to_be_bytes() => Ok(Instant::now()),
            Ok(len) => Err(format!("a wrong answer of {len} bytes")),
            Err(e) => Err(format!("no answer: {e}")),
        }
    })();
    (flow, answer)
}

/// One TCP connection: connect, one echoed message, close.
fn tcp_flow(to: SocketAddr, n: u64) -> (Option<Flow>, Result<Instant, String>) {
    let mut stream = match TcpStream::connect_timeout(&to, ANSWER_WITHIN) {
        Ok(stream) => stream,
        Err(e) => return (None, Err(format!("connect: {e}"))),
    };
    let flow = stream.local_addr().ok().map(|local| Flow::tcp(local, to));
    let answer = (|| {
        stream
            .set_read_timeout(Some(ANSWER_WITHIN))
            .map_err(|e| e.to_string())?;
        stream
            .write_all(&n.to_be_bytes())
            .map_err(|e| format!("write: {e}"))?;
        let mut buf = [0u8; 8];
        stream
            .read_exact(&mut buf)
            .map_err(|e| format!("no echo: {e}"))?;
        if buf == n.to_be_bytes() {
            Ok(Instant::now())
        } else {
            Err("a wrong echo".to_string())
        }
    })();
    (flow, answer)
}
