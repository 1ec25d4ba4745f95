//! The hello path: the core's [`Liveness`] (hello schedule, dead timer) on a thread of its own,
//! at real-time priority when the daemon may ask for it, fed the peer's hellos straight from the
//! link's control reader ([`ControlTap`]). No bulk work runs there: a driver turn busy with a
//! large result delays neither our hellos nor the verdict on the peer's (issue 10: with hello
//! 10 ms / dead 30 ms, hellos processed between bulk work made a 500,000-flow burst livelock).
//! The driver still reads every hello for what it says and decides what a silent peer means.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use failoverd_core::{Instant, Liveness};
use failoverd_link::{Channel, ControlTap, LinkSender};
use failoverd_wire::{Goodbye, GoodbyeReason, Message};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::driver::Clock;

/// A driver turn longer than this is a stuck driver, not a busy one: the hellos stop, so the
/// peer takes over. Far above any bounded turn (milliseconds), below what an operator would
/// call a hang.
pub const STALL_LIMIT: Duration = Duration::from_secs(2);

/// Real-time priority of the hello thread (SCHED_FIFO, 1..=99): above every normal thread, low
/// among real-time ones (it sleeps between hellos and wants no more than that).
const HELLO_PRIORITY: libc::c_int = 10;

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
    clock: Clock,
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Default)]
struct State {
    /// The node's, once the driver installed it; until then hellos read by the tap are the
    /// driver's alone (the link is not up before the driver runs).
    liveness: Option<Liveness>,
    link: Option<LinkSender>,
    dead: Option<mpsc::UnboundedSender<PeerDead>>,
    /// Link-ups seen, to tell stale verdicts.
    links: u64,
    stop: bool,
}

impl HelloPath {
    /// Starts the hello thread of node `name` on `clock`, the driver's (one time base for
    /// both); it idles until [`install`](Self::install).
    pub fn spawn(name: &str, clock: Clock) -> std::io::Result<Self> {
        let path = Self {
            shared: Arc::new(Shared {
                clock,
                state: Mutex::new(State::default()),
                wake: Condvar::new(),
            }),
        };
        let shared = Arc::clone(&path.shared);
        let node = name.to_string();
        thread::Builder::new()
            .name(format!("{name}-hellos"))
            .spawn(move || {
                raise_priority(&node);
                shared.run();
            })?;
        Ok(path)
    }

    /// The clock hellos are stamped with.
    pub fn clock(&self) -> Clock {
        self.shared.clock
    }

    /// The link's control tap: hellos and goodbyes reach the liveness as they are read.
    pub fn tap(&self) -> ControlTap {
        let shared = Arc::clone(&self.shared);
        ControlTap::new(move |frame| match Message::parse(frame) {
            Ok(Message::Hello(hello)) => {
                let now = shared.clock.now();
                if let Some(liveness) = &mut shared.lock().liveness {
                    liveness.handle_hello(now, &hello);
                }
            }
            Ok(Message::Goodbye(Goodbye {
                reason: GoodbyeReason::Shutdown | GoodbyeReason::Unknown(_),
            })) => {
                if let Some(liveness) = &mut shared.lock().liveness {
                    liveness.handle_goodbye();
                }
            }
            _ => {}
        })
    }

    /// Runs the node's `liveness` from now on, sending hellos on `link` and verdicts to
    /// `dead`.
    pub fn install(
        &self,
        liveness: Liveness,
        link: LinkSender,
        dead: mpsc::UnboundedSender<PeerDead>,
    ) {
        {
            let mut state = self.shared.lock();
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

    /// The link is up (`true`) or down: hellos start or stop, and verdicts about the previous
    /// link become stale.
    pub fn link_changed(&self, now: Instant, up: bool) {
        {
            let mut state = self.shared.lock();
            if up {
                state.links += 1;
            }
            if let Some(liveness) = &mut state.liveness {
                match up {
                    true => liveness.handle_link_up(now),
                    false => liveness.handle_link_down(),
                }
            }
        }
        self.shared.wake.notify_one();
    }

    /// Whether `verdict` is about the current link.
    pub fn is_current(&self, verdict: &PeerDead) -> bool {
        self.shared.lock().links == verdict.link
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
                while let Some(frame) = liveness.poll_transmit(now) {
                    // Dropped when the link is down or its control queue is full: hellos
                    // repeat.
                    if let Err(err) = link.send(Channel::Control, frame) {
                        debug!("hello not sent: {err}");
                    }
                }
                if let Some(silent) = liveness.poll_dead() {
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

/// SCHED_FIFO for the calling thread: hellos keep their schedule however busy the normal
/// threads (bulk applies, TLS, the kernel's event delivery) keep the cores. Needs
/// CAP_SYS_NICE (root has it); without it the thread keeps its priority, and says so.
fn raise_priority(node: &str) {
    let param = libc::sched_param {
        sched_priority: HELLO_PRIORITY,
    };
    // SAFETY: a plain system call on the calling thread (pid 0) with a valid parameter.
    let result = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    if result != 0 {
        let err = std::io::Error::last_os_error();
        warn!(
            %node,
            "hellos run at normal priority: real-time priority refused ({err}; it needs \
             CAP_SYS_NICE); on a loaded machine they may be late"
        );
    }
}
