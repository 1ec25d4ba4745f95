//! The session table's own thread. It owns the backend, so a long dump or apply never holds up
//! the driver's timers (hellos keep their schedule during a million-session bulk sync).
//!
//! Local changes flow to the driver under credit: the thread sends a chunk of changes only with
//! a permit the driver granted, and the driver grants permits back only while the core wants
//! more ([`failoverd_core::Node::wants_local_changes`]). Past what the failover link carries,
//! changes wait in the backend's own queue (a netlink socket's buffer, for the kernel), not in
//! channels or the core; the thread never waits for the driver, so it answers commands (status
//! counts, listings, applies) at once whatever the load.

// System calls that libc, socket2 and nix do not wrap safely; each block says why it is sound.
#![allow(unsafe_code)]

use std::collections::VecDeque;
use std::sync::Arc;
use std::thread;

use failoverd_backends::{MemoryBackend, SessionBackend, perform, sample_record};
use failoverd_control::protocol::{BackendKind, Generated, SessionFilter, SessionList};
use failoverd_core::{Action, ActionResult, Token};
use failoverd_wire::{SessionOp, SessionRecord};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::{Instant, sleep_until};
use tracing::{info, warn};

use crate::table::{Counts, Table};

/// Changes handed to the driver per message: bounds one message, not the rate.
const CHANGE_CHUNK: usize = 4096;

/// Chunks of changes that may be on their way to the driver or in its hands at once (the
/// permits of the credit).
pub const CHANGE_CREDIT: usize = 4;

/// Demo traffic is acknowledged only once the backend's change queue is below this: the demo's
/// generator runs at the rate the node takes its changes, as traffic shaped by the firewall's
/// capacity would, instead of overrunning the queue.
const TRAFFIC_BACKLOG: usize = CHANGE_CREDIT * CHANGE_CHUNK;

/// Work for the session-table thread.
#[derive(Debug)]
pub enum TableCommand {
    /// A backend action of the core; the result comes back as [`TableEvent::Done`].
    Perform(Action),
    /// Create `count` synthetic local sessions (memory backend: trying it out, tests).
    Generate {
        /// How many sessions to try to create; those a full table refuses are counted apart.
        count: u32,
        /// How many were created and how many the full table refused; an error naming the
        /// backend when it is not the memory table.
        reply: oneshot::Sender<Result<Generated, String>>,
    },
    /// Demo traffic: sessions created, updated and ended by local activity; `done` answers
    /// once they happened and the node has taken most of the changes they made, so the generator
    /// never queues more than the node can take.
    Traffic {
        /// Sessions to start (fewer if the table fills up).
        creates: u32,
        /// Updates to live sessions, spread over the table (none while no session lives).
        updates: u32,
        /// Sessions to end, the oldest first.
        deletes: u32,
        /// Answered once the node took most of the changes; dropped when the table is not the
        /// memory table.
        done: oneshot::Sender<()>,
    },
    /// Sessions matching a filter.
    List {
        /// Which sessions to list.
        filter: SessionFilter,
        /// At most this many of them; `None` for all.
        limit: Option<usize>,
        /// The matching sessions, or the backend's error as text.
        reply: oneshot::Sender<Result<SessionList, String>>,
    },
    /// Every entry, for a client to list (see [`TableCommand::List`] for a bounded list).
    Records {
        /// Every entry of the table, or the backend's error as text.
        reply: oneshot::Sender<Result<Vec<SessionRecord>, String>>,
    },
    /// Entries by owner, and the table's counters.
    Counts {
        /// The counts, or the backend's error as text.
        reply: oneshot::Sender<Result<Counts, String>>,
    },
    /// Every entry, delivered as [`TableEvent::Snapshot`] after the changes that precede it.
    Snapshot,
    /// The node's role changed: active or not (see [`Table::set_active`]).
    SetActive(bool),
}

/// What the session-table thread reports, in order.
#[derive(Debug)]
pub enum TableEvent {
    /// The result of a [`TableCommand::Perform`].
    Done(Token, ActionResult),
    /// Local changes, in the order they happened. `credited`: sent with a permit of the credit,
    /// to be granted back ([`TableHandle::grant`]) once the core wants more.
    Changes {
        /// The changes.
        ops: Vec<SessionOp>,
        /// Whether it used a permit.
        credited: bool,
    },
    /// Local change events were lost: resynchronize. Uses a permit when `credited`.
    ChangesLost {
        /// Whether it used a permit.
        credited: bool,
    },
    /// The answer to [`TableCommand::Snapshot`].
    Snapshot(Vec<SessionRecord>),
}

/// Sends work to the session-table thread. The thread ends when every handle is dropped.
#[derive(Debug, Clone)]
pub struct TableHandle {
    commands: mpsc::UnboundedSender<TableCommand>,
    credit: Arc<Semaphore>,
    kind: BackendKind,
}

impl TableHandle {
    /// Which table it runs (`sessions.backend`).
    pub fn kind(&self) -> BackendKind {
        self.kind
    }

    /// Queues `command`; false if the session-table thread is gone.
    pub fn send(&self, command: TableCommand) -> bool {
        self.commands.send(command).is_ok()
    }

    /// Gives back `permits` of the change credit: the thread may send that many more chunks.
    pub fn grant(&self, permits: usize) {
        self.credit.add_permits(permits);
    }
}

/// Starts the session-table thread with [`CHANGE_CREDIT`] permits. Its events arrive on the returned
/// receiver; the credit bounds the changes among them, and when the driver holds the credit back
/// the backend's own change queue absorbs the rest (and overruns, reported as
/// [`TableEvent::ChangesLost`], rather than growing without bound).
pub fn spawn<T: Table>(
    name: &str,
    backend: T,
) -> std::io::Result<(TableHandle, mpsc::UnboundedReceiver<TableEvent>)> {
    let (commands, command_rx) = mpsc::unbounded_channel();
    let (events, event_rx) = mpsc::unbounded_channel();
    let credit = Arc::new(Semaphore::new(CHANGE_CREDIT));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let thread_credit = Arc::clone(&credit);
    let kind = backend.kind();
    thread::Builder::new()
        .name(format!("{name}-sessions"))
        .spawn(move || {
            yield_to_timers();
            let traffic = Traffic::new(backend.local_node());
            runtime.block_on(
                Worker {
                    backend,
                    events,
                    traffic,
                    traffic_waiting: Vec::new(),
                }
                .run(command_rx, thread_credit),
            );
        })?;
    Ok((
        TableHandle {
            commands,
            credit,
            kind,
        },
        event_rx,
    ))
}

struct Worker<T> {
    backend: T,
    events: mpsc::UnboundedSender<TableEvent>,
    traffic: Traffic,
    /// Demo traffic applied, acknowledged once the change queue is short enough.
    traffic_waiting: Vec<oneshot::Sender<()>>,
}

impl<T: Table> Worker<T> {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<TableCommand>,
        credit: Arc<Semaphore>,
    ) {
        let upkeep_every = self.backend.upkeep_interval();
        let mut next_upkeep = upkeep_every.map(|every| Instant::now() + every);
        loop {
            // Commands first: a status request never waits behind a stream of changes.
            let changes = {
                let changed = self.backend.changed();
                let credit = Arc::clone(&credit);
                async move {
                    changed.await;
                    // The semaphore is never closed.
                    if let Ok(permit) = credit.acquire_owned().await {
                        permit.forget();
                    }
                }
            };
            let upkeep = async move {
                match next_upkeep {
                    Some(at) => sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let sent = tokio::select! {
                biased;
                command = commands.recv() => match command {
                    Some(command) => self.handle(command),
                    None => return,
                },
                () = upkeep => {
                    self.upkeep();
                    next_upkeep = upkeep_every.map(|every| Instant::now() + every);
                    Ok(())
                }
                () = changes => {
                    let sent = self.send_chunk(true);
                    if let Ok(false) = sent {
                        // Nothing was pending after all: the permit goes back.
                        credit.add_permits(1);
                    }
                    sent.map(drop)
                }
            };
            if sent.is_err() {
                return;
            }
            self.release_traffic();
        }
    }

    /// Err when the driver is gone.
    fn handle(&mut self, command: TableCommand) -> Result<(), Closed> {
        match command {
            TableCommand::Perform(action) => {
                // A dump (or digest) must not overtake the changes before it: they are older
                // than it, and an overrun among them is covered by it.
                if matches!(action, Action::Dump { .. } | Action::Digest { .. }) {
                    self.drain_changes()?;
                }
                if let Some((token, result)) = perform(&mut self.backend, action) {
                    self.send(TableEvent::Done(token, result))?;
                }
            }
            TableCommand::Generate { count, reply } => {
                let result = self.synthetic().map(|(table, traffic)| {
                    let mut generated = Generated {
                        created: 0,
                        table_full: 0,
                    };
                    for _ in 0..count {
                        match traffic.create(table) {
                            true => generated.created += 1,
                            false => generated.table_full += 1,
                        }
                    }
                    generated
                });
                let _ = reply.send(result);
            }
            TableCommand::Traffic {
                creates,
                updates,
                deletes,
                done,
            } => {
                // Only the demo sends traffic, and it runs the memory table.
                if let Ok((table, traffic)) = self.synthetic() {
                    for _ in 0..creates {
                        traffic.create(table);
                    }
                    for _ in 0..updates {
                        traffic.update(table);
                    }
                    for _ in 0..deletes {
                        traffic.delete(table);
                    }
                    self.traffic_waiting.push(done);
                }
            }
            TableCommand::List {
                filter,
                limit,
                reply,
            } => {
                let _ = reply.send(
                    self.backend
                        .list(&filter, limit)
                        .map_err(|err| err.to_string()),
                );
            }
            TableCommand::Records { reply } => {
                let _ = reply.send(self.backend.dump().map_err(|err| err.to_string()));
            }
            TableCommand::Counts { reply } => {
                let _ = reply.send(self.backend.counts().map_err(|err| err.to_string()));
            }
            TableCommand::Snapshot => {
                // The snapshot is compared with what the core knows: every change first.
                self.drain_changes()?;
                let records = match self.backend.dump() {
                    Ok(records) => records,
                    Err(err) => {
                        warn!(error = %err, "snapshot of the session table failed");
                        Vec::new()
                    }
                };
                self.send(TableEvent::Snapshot(records))?;
            }
            TableCommand::SetActive(active) => {
                if let Err(err) = self.backend.set_active(active) {
                    warn!(error = %err, active, "recording the role in the session table failed");
                }
            }
        }
        Ok(())
    }

    /// Sends every pending change, outside the credit (before a dump or a snapshot, rare).
    fn drain_changes(&mut self) -> Result<(), Closed> {
        while self.send_chunk(false)? {}
        Ok(())
    }

    /// Sends one chunk of pending changes, or the overrun; Ok(false) if nothing was pending.
    fn send_chunk(&mut self, credited: bool) -> Result<bool, Closed> {
        let mut ops = Vec::new();
        match self.backend.poll_changes(&mut ops, CHANGE_CHUNK) {
            Ok(0) => Ok(false),
            Ok(_) => self
                .send(TableEvent::Changes { ops, credited })
                .map(|()| true),
            Err(_) => self
                .send(TableEvent::ChangesLost { credited })
                .map(|()| true),
        }
    }

    /// The memory table and its traffic generator; an error naming the backend otherwise.
    fn synthetic(&mut self) -> Result<(&mut MemoryBackend, &mut Traffic), String> {
        let kind = self.backend.kind();
        match self.backend.synthetic() {
            Some(table) => Ok((table, &mut self.traffic)),
            None => Err(format!(
                "synthetic sessions need the memory backend; the {kind} table's sessions come from traffic"
            )),
        }
    }

    /// Acknowledges demo traffic once the node has taken most of its changes.
    fn release_traffic(&mut self) {
        let backlog = self
            .backend
            .synthetic()
            .map_or(0, |table| table.pending_changes());
        if backlog <= TRAFFIC_BACKLOG {
            for done in self.traffic_waiting.drain(..) {
                let _ = done.send(());
            }
        }
    }

    fn upkeep(&mut self) {
        match self.backend.upkeep() {
            Ok(0) => {}
            Ok(refreshed) => info!(refreshed, "re-armed the timeouts of the peer's sessions"),
            Err(err) => warn!(error = %err, "session table upkeep failed"),
        }
    }

    fn send(&self, event: TableEvent) -> Result<(), Closed> {
        self.events.send(event).map_err(|_| Closed)
    }
}

/// Lowers this thread's scheduling priority (nice 10). Bulk work (a million-entry apply or dump
/// in the kernel) would otherwise take as much CPU as the driver and link threads, and on a
/// loaded 2-core machine hellos then went out late enough for the peer to declare this node
/// dead (measured: timers up to 0.6 s late during a 1M-entry bulk sync, which restarted it
/// several times). At nice 5 a full benchmark run still saw 2-4 false "peer dead" there; at
/// nice 10 none. The cost: replication slows behind busy processes of normal priority
/// (`docs/BENCHMARKS.md`). Best effort: without the permission the thread keeps its priority.
fn yield_to_timers() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on the calling thread.
    unsafe {
        let thread = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, thread as libc::id_t, 10);
    }
}

/// The driver dropped its receiver: the node is stopping.
struct Closed;

/// Synthetic local activity: sessions start, change state and end, oldest first.
struct Traffic {
    next: u32,
    live: VecDeque<u32>,
    updates: u64,
}

impl Traffic {
    /// Each node draws its synthetic sessions from its own range of [`sample_record`] ids (64
    /// ranges of 65,536), so the two nodes of a pair do not invent the same connection.
    fn new(local: failoverd_wire::NodeId) -> Self {
        Self {
            next: (local.0 % 64) << 16,
            live: VecDeque::new(),
            updates: 0,
        }
    }

    /// False if the table is full.
    fn create(&mut self, backend: &mut MemoryBackend) -> bool {
        self.next = self.next.wrapping_add(1);
        let id = self.next;
        let created = backend
            .create_local(sample_record(id, backend.local_node()))
            .is_ok();
        if created {
            self.live.push_back(id);
        }
        created
    }

    fn update(&mut self, backend: &mut MemoryBackend) {
        if self.live.is_empty() {
            return;
        }
        // A multiplicative stride spreads updates over the table without a random source.
        self.updates += 1;
        let index = (self.updates.wrapping_mul(0x9e37_79b9) % self.live.len() as u64) as usize;
        let key = sample_record(self.live[index], backend.local_node()).key;
        if let Some(mut record) = backend.get(&key).cloned() {
            record.timeout_secs = record.timeout_secs.wrapping_add(1);
            let _ = backend.update_local(record);
        }
    }

    fn delete(&mut self, backend: &mut MemoryBackend) {
        if let Some(id) = self.live.pop_front() {
            let key = sample_record(id, backend.local_node()).key;
            let _ = backend.delete_local(&key);
        }
    }
}
