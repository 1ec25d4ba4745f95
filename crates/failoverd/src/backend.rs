//! The session table's own thread. It owns the backend, so a long dump or apply never holds up
//! the driver's timers (hellos keep their schedule during a million-session bulk sync).

use std::collections::VecDeque;
use std::thread;

use failoverd_backends::{MemoryBackend, SessionBackend, perform, sample_record};
use failoverd_control::protocol::{Generated, SessionFilter, SessionList};
use failoverd_core::{Action, ActionResult, Token};
use failoverd_wire::{SessionOp, SessionRecord};
use tokio::sync::{mpsc, oneshot};

/// Changes handed to the driver per message: bounds one message, not the rate.
const CHANGE_CHUNK: usize = 4096;

/// Work for the backend thread.
#[derive(Debug)]
pub enum Command {
    /// A backend action of the core; the result comes back as [`Event::Done`].
    Perform(Action),
    /// Create `count` synthetic local sessions (memory backend: trying it out, tests).
    Generate {
        count: u32,
        reply: oneshot::Sender<Generated>,
    },
    /// Demo traffic: sessions created, updated and ended by local activity; `done` answers
    /// once they happened, so the generator never queues more than the table can take.
    Traffic {
        creates: u32,
        updates: u32,
        deletes: u32,
        done: oneshot::Sender<()>,
    },
    /// Sessions matching a filter.
    List {
        filter: SessionFilter,
        limit: Option<usize>,
        reply: oneshot::Sender<SessionList>,
    },
    /// Entries by owner.
    Counts { reply: oneshot::Sender<Counts> },
    /// Every entry, delivered as [`Event::Snapshot`] after the changes that precede it.
    Snapshot,
}

/// What the backend thread reports, in order.
#[derive(Debug)]
pub enum Event {
    /// The result of a [`Command::Perform`].
    Done(Token, ActionResult),
    /// Local changes, in the order they happened.
    Changes(Vec<SessionOp>),
    /// Local change events were lost: resynchronize.
    ChangesLost,
    /// The answer to [`Command::Snapshot`].
    Snapshot(Vec<SessionRecord>),
}

/// Entries of the table by owner.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    /// All entries.
    pub total: u64,
    /// Entries this node owns.
    pub owned: u64,
}

/// Sends work to the backend thread. The thread ends when every handle is dropped.
#[derive(Debug, Clone)]
pub struct BackendHandle {
    commands: mpsc::UnboundedSender<Command>,
}

impl BackendHandle {
    /// Queues `command`; false if the backend thread is gone.
    pub fn send(&self, command: Command) -> bool {
        self.commands.send(command).is_ok()
    }
}

/// Starts the backend thread. Its events arrive on the returned receiver; when the driver is
/// slow to take them, the thread waits and the backend's own change queue absorbs the rest
/// (and overruns, reported as [`Event::ChangesLost`], rather than growing without bound).
pub fn spawn(
    name: &str,
    backend: MemoryBackend,
) -> std::io::Result<(BackendHandle, mpsc::Receiver<Event>)> {
    let (commands, command_rx) = mpsc::unbounded_channel();
    let (events, event_rx) = mpsc::channel(64);
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    thread::Builder::new()
        .name(format!("{name}-sessions"))
        .spawn(move || {
            let traffic = Traffic::new(backend.local_node());
            runtime.block_on(
                Worker {
                    backend,
                    events,
                    traffic,
                }
                .run(command_rx),
            );
        })?;
    Ok((BackendHandle { commands }, event_rx))
}

struct Worker {
    backend: MemoryBackend,
    events: mpsc::Sender<Event>,
    traffic: Traffic,
}

impl Worker {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        loop {
            tokio::select! {
                biased;
                command = commands.recv() => match command {
                    Some(command) => {
                        if self.handle(command).await.is_err() {
                            return;
                        }
                    }
                    None => return,
                },
                () = self.backend.changed() => {
                    if self.drain_changes().await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Err when the driver is gone.
    async fn handle(&mut self, command: Command) -> Result<(), Closed> {
        match command {
            Command::Perform(action) => {
                // Changes that happened before this action reach the core before its result.
                self.drain_changes().await?;
                if let Some((token, result)) = perform(&mut self.backend, action) {
                    self.send(Event::Done(token, result)).await?;
                }
            }
            Command::Generate { count, reply } => {
                let mut generated = Generated {
                    created: 0,
                    table_full: 0,
                };
                for _ in 0..count {
                    match self.traffic.create(&mut self.backend) {
                        true => generated.created += 1,
                        false => generated.table_full += 1,
                    }
                }
                let _ = reply.send(generated);
            }
            Command::Traffic {
                creates,
                updates,
                deletes,
                done,
            } => {
                for _ in 0..creates {
                    self.traffic.create(&mut self.backend);
                }
                for _ in 0..updates {
                    self.traffic.update(&mut self.backend);
                }
                for _ in 0..deletes {
                    self.traffic.delete(&mut self.backend);
                }
                let _ = done.send(());
            }
            Command::List {
                filter,
                limit,
                reply,
            } => {
                let local = self.backend.local_node();
                let _ = reply.send(SessionList::select(
                    self.backend.iter(),
                    &filter,
                    limit,
                    local,
                ));
            }
            Command::Counts { reply } => {
                let local = self.backend.local_node();
                let owned = self.backend.iter().filter(|r| r.owner == local).count() as u64;
                let _ = reply.send(Counts {
                    total: self.backend.len() as u64,
                    owned,
                });
            }
            Command::Snapshot => {
                self.drain_changes().await?;
                let records = self.backend.iter().cloned().collect();
                self.send(Event::Snapshot(records)).await?;
            }
        }
        self.drain_changes().await
    }

    async fn drain_changes(&mut self) -> Result<(), Closed> {
        loop {
            let mut changes = Vec::new();
            match self.backend.poll_changes(&mut changes, CHANGE_CHUNK) {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    self.send(Event::Changes(changes)).await?;
                    if n < CHANGE_CHUNK {
                        return Ok(());
                    }
                }
                Err(_) => self.send(Event::ChangesLost).await?,
            }
        }
    }

    async fn send(&self, event: Event) -> Result<(), Closed> {
        self.events.send(event).await.map_err(|_| Closed)
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
