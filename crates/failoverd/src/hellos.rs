//! The hello path: the core's [`Liveness`] (hello schedule, dead timer) on a thread of its own,
//! at real-time priority when the daemon may ask for it, told the link's state and fed the
//! peer's hellos straight from the link's control thread ([`ControlTap`]), which runs at the
//! same priority and writes our hellos. No bulk work runs on either, and neither waits for the
//! driver or for tokio: a driver turn busy with a large result, or a runtime whose threads are
//! off the CPU on a loaded machine, delays neither our hellos nor the verdict on the peer's
//! (issue 10: with hello 10 ms / dead 30 ms, hellos processed between bulk work made a
//! 500,000-flow burst livelock). The driver still reads every hello for what it says and
//! decides what a silent peer means.
//!
//! Both threads may still stop together: a whole-machine stall (a long kernel path on a
//! non-preemptible kernel) was measured holding both daemons' hello threads for half a second
//! at once. The liveness counts such a pause of this node and does not count it as the peer's
//! silence; and since the socket is read on the control thread, not here, no verdict is given
//! before that thread has confirmed it handed in every hello its socket held
//! ([`LinkSender::drain`], [`TapEvent::Drained`]).

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use failoverd_core::Liveness;
use failoverd_link::{Channel, ControlTap, LinkSender, TapEvent};
use failoverd_wire::{Goodbye, GoodbyeReason, Message};
use tokio::sync::mpsc;
use tracing::{debug, trace, warn};

use crate::clock::Clock;

/// A driver turn longer than this is a stuck driver, not a busy one: the hellos stop, so the
/// peer takes over. Far above any bounded turn (milliseconds), below what an operator would
/// call a hang.
pub const STALL_LIMIT: Duration = Duration::from_secs(2);

/// Real-time priority of the hello thread and of the link's control thread (SCHED_FIFO,
/// 1..=99): above every normal thread, low among real-time ones (they sleep between hellos and
/// want no more than that).
pub const HELLO_PRIORITY: u8 = 10;

/// The peer fell silent: `silent` since its last hello, on the link that was up as the
/// `link`-th (a verdict about an older link is stale).
#[derive(Debug, Clone, Copy)]
pub struct PeerDead {
    /// Link-ups counted by the hello path when it decided.
    pub link: u64,
    /// How long the peer was silent.
    pub silent: Duration,
}

/// The hello path of one node; clones share it.
#[derive(Clone)]
pub struct HelloPath {
    shared: Arc<Shared>,
}

struct Shared {
    /// The node's name, for the log.
    node: String,
    clock: Clock,
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Default)]
struct State {
    /// The node's, once the driver installed it; until then hellos read by the tap are the
    /// driver's alone, and a link already up is told to the liveness when it is installed.
    liveness: Option<Liveness>,
    link: Option<LinkSender>,
    dead: Option<mpsc::UnboundedSender<PeerDead>>,
    /// Link-ups seen by the tap, to tell which link a verdict is about.
    links: u64,
    /// Whether the link is up: it may come up before the liveness is installed.
    up: bool,
    stop: bool,
}

impl HelloPath {
    /// Starts the hello thread of node `name` on `clock`, the driver's (one time base for
    /// both); it idles until [`install`](Self::install).
    pub fn spawn(name: &str, clock: Clock) -> std::io::Result<Self> {
        let path = Self {
            shared: Arc::new(Shared {
                node: name.to_string(),
                clock,
                state: Mutex::new(State::default()),
                wake: Condvar::new(),
            }),
        };
        let shared = Arc::clone(&path.shared);
        thread::Builder::new()
            .name(format!("{name}-hellos"))
            .spawn(move || {
                if let Err(err) = failoverd_link::set_realtime_priority(HELLO_PRIORITY) {
                    warn!(
                        node = %shared.node,
                        "hellos run at normal priority: real-time priority refused ({err}; it \
                         needs CAP_SYS_NICE); on a loaded machine they may be late"
                    );
                }
                shared.run();
            })?;
        Ok(path)
    }

    /// The clock hellos are stamped with.
    pub fn clock(&self) -> Clock {
        self.shared.clock
    }

    /// The link's control tap: the link's state, hellos and goodbyes reach the liveness as
    /// the control thread sees them.
    pub fn tap(&self) -> ControlTap {
        let path = self.clone();
        ControlTap::new(move |event| path.handle_tap(event))
    }

    /// What [`tap`](Self::tap) does with each event of the control thread.
    pub fn handle_tap(&self, event: TapEvent<'_>) {
        let shared = &self.shared;
        let now = shared.clock.now();
        let mut state = shared.lock();
        match event {
            TapEvent::Up => {
                state.links += 1;
                state.up = true;
                if let Some(liveness) = &mut state.liveness {
                    liveness.handle_link_up(now);
                }
                drop(state);
                shared.wake.notify_one();
            }
            TapEvent::Down => {
                state.up = false;
                if let Some(liveness) = &mut state.liveness {
                    liveness.handle_link_down();
                }
            }
            TapEvent::Frame(frame) => {
                let Some(liveness) = &mut state.liveness else {
                    return;
                };
                match Message::parse(frame) {
                    Ok(Message::Hello(hello)) => {
                        trace!(node = %shared.node, stamp = hello.tx_stamp, "hello heard");
                        liveness.handle_hello(now, &hello);
                    }
                    Ok(Message::Goodbye(Goodbye {
                        reason: GoodbyeReason::Shutdown | GoodbyeReason::Unknown(_),
                    })) => liveness.handle_goodbye(),
                    _ => {}
                }
            }
            TapEvent::Drained => {
                if let Some(liveness) = &mut state.liveness {
                    trace!(node = %shared.node, "socket drained");
                    liveness.handle_drained(now);
                }
                drop(state);
                // A verdict may be waiting for it.
                shared.wake.notify_one();
            }
        }
    }

    /// Runs the node's `liveness` from now on, sending hellos on `link` and verdicts to
    /// `dead`; a verdict waits for the control thread to drain its socket.
    pub fn install(
        &self,
        liveness: Liveness,
        link: LinkSender,
        dead: mpsc::UnboundedSender<PeerDead>,
    ) {
        let mut liveness = liveness.with_drain_confirmation();
        {
            let mut state = self.shared.lock();
            if state.up {
                liveness.handle_link_up(self.shared.clock.now());
            }
            state.liveness = Some(liveness);
            state.link = Some(link);
            state.dead = Some(dead);
        }
        self.shared.wake.notify_one();
    }

    /// Runs `f` on the liveness (if installed); `wake`: the thread acts on the change at once
    /// (an urgent hello, the link's state), else at its next deadline.
    pub fn update<T>(&self, wake: bool, f: impl FnOnce(&mut Liveness) -> T) -> Option<T> {
        let result = self.shared.lock().liveness.as_mut().map(f);
        if wake {
            self.shared.wake.notify_one();
        }
        result
    }

    /// Reads the liveness (if installed).
    pub fn read<T>(&self, f: impl FnOnce(&Liveness) -> T) -> Option<T> {
        self.shared.lock().liveness.as_ref().map(f)
    }

    /// Ends the thread; no hello is sent after this returns.
    pub fn stop(&self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_one();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Plain data behind the lock: a panic elsewhere leaves nothing half-done that matters.
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn run(&self) {
        // Hellos are withheld for a driver stuck in one turn: logged as it starts and ends.
        let mut withholding = false;
        let mut state = self.lock();
        while !state.stop {
            let now = self.clock.now();
            let State {
                liveness,
                link,
                dead,
                links,
                ..
            } = &mut *state;
            let mut wait = Duration::from_secs(1);
            if let (Some(liveness), Some(link), Some(dead)) = (liveness, link, dead) {
                liveness.handle_timeout(now);
                if let Some(late) = liveness.poll_pause() {
                    warn!(
                        node = %self.node,
                        pauses = liveness.own_pauses(),
                        "hello thread paused: it ran {:.1} ms late; the peer's silence \
                         meanwhile does not count",
                        late.as_secs_f64() * 1e3
                    );
                }
                while let Some(frame) = liveness.poll_transmit(now) {
                    trace!(node = %self.node, stamp = now.as_micros(), "hello sent");
                    // Dropped when the link is down or its control queue is full: hellos
                    // repeat.
                    if let Err(err) = link.send(Channel::Control, frame) {
                        debug!("hello not sent: {err}");
                    }
                }
                if liveness.stuck(now) != withholding {
                    withholding = !withholding;
                    if withholding {
                        warn!(
                            node = %self.node,
                            "hellos withheld: the driver has been busy in one turn for over \
                             {STALL_LIMIT:?}; the peer will take over"
                        );
                    } else {
                        warn!(node = %self.node, "hellos resume: the driver's turn ended");
                    }
                }
                if liveness.wants_drain() {
                    // No link, no verdict due: the link's Down clears the wish.
                    let _ = link.drain();
                }
                if let Some(silent) = liveness.poll_dead() {
                    trace!(node = %self.node, ?silent, "peer dead");
                    // The driver is gone when this fails; `stop` follows.
                    let _ = dead.send(PeerDead {
                        link: *links,
                        silent,
                    });
                }
                if let Some(at) = liveness.poll_timeout() {
                    wait = Duration::from_nanos(at.as_nanos().saturating_sub(now.as_nanos()));
                }
            }
            state = self
                .wake
                .wait_timeout(state, wait)
                .unwrap_or_else(|poison| poison.into_inner())
                .0;
        }
    }
}
