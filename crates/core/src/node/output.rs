//! The node's outputs, polled after every input: backend actions, frames, heartbeats, events,
//! the next timeout; and what our hellos say.

use failoverd_wire::{Channel, Hello, HelloFlags, ProtocolVersion, SyncState};

use super::Node;
use super::negotiation::wire_millis;
use super::session::State;
use super::types::Action;
use crate::event::Event;
use crate::liveness::Liveness;
use crate::time::Instant;
use crate::timer::Timer;

/// A frame to send to the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The path to send it on.
    pub channel: Channel,
    /// One whole frame.
    pub payload: Vec<u8>,
}

impl Node {
    /// The next backend action or link command.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next frame to send. Control frames come first; session batches only while the
    /// window allows and `data_ready` says the data path has room (a full bulk queue must not
    /// hold back the hellos behind it).
    pub fn poll_transmit(&mut self, now: Instant, data_ready: bool) -> Option<Transmit> {
        self.link?;
        if let Some(liveness) = &self.liveness
            && (self.hello_due || liveness.hello_due())
        {
            let hello = self.make_hello();
            let urgent = std::mem::take(&mut self.hello_due);
            if let Some(liveness) = &mut self.liveness {
                liveness.set_hello(hello, urgent);
                if let Some(frame) = liveness.poll_transmit(now) {
                    self.control.push_back(frame);
                    self.stats.hellos_sent += 1;
                }
            }
        }
        if let Some(payload) = self.control.pop_front() {
            return Some(Transmit {
                channel: Channel::Control,
                payload,
            });
        }
        let State::Synchronization(session) = &mut self.state else {
            return None;
        };
        if let Some(ack) = self.inbound.take_ack() {
            let mut payload = Vec::new();
            ack.emit(&mut payload);
            return Some(Transmit {
                channel: Channel::Control,
                payload,
            });
        }
        if !data_ready {
            return None;
        }
        if let Some(payload) = session.resend.pop_front() {
            return Some(Transmit {
                channel: Channel::Data,
                payload,
            });
        }
        // Send data only once the peer is in Synchronization too, so it can take it.
        let peer_synchronizing = self
            .peer
            .as_ref()
            .is_some_and(|p| p.hello.state == SyncState::Synchronization);
        if !peer_synchronizing {
            return None;
        }
        let payload = self.outbound.next_batch(
            self.config.max_batch_bytes,
            self.config.max_in_flight,
            &mut self.stats,
        )?;
        self.arm_retransmit(now, false);
        Some(Transmit {
            channel: Channel::Data,
            payload,
        })
    }

    /// With the liveness detached: what our hellos say now, and whether the peer must learn it
    /// at once (hand both to [`Liveness::set_hello`] after every input).
    pub fn poll_hello(&mut self) -> (Hello, bool) {
        (self.make_hello(), std::mem::take(&mut self.hello_due))
    }

    /// Hands the hello schedule and the dead timer to the caller, to run where no bulk work
    /// runs (the daemon: a thread of its own). From then on the caller feeds it the link's
    /// state and the peer's hellos, sends what it polls, passes what
    /// [`poll_hello`](Self::poll_hello) says after every input, and reports its verdict with
    /// [`handle_peer_dead`](Self::handle_peer_dead); the node still reads every hello for what
    /// it says. `None` if already detached.
    pub fn detach_liveness(&mut self) -> Option<Liveness> {
        self.liveness.take()
    }

    /// The hello to send on the heartbeat path, when one is due: every hello interval and at
    /// once on a change of state or role, whether or not the failover link is up. The driver
    /// polls it only if a heartbeat path is configured.
    pub fn poll_heartbeat(&mut self, now: Instant) -> Option<Vec<u8>> {
        if !std::mem::take(&mut self.heartbeat_due) {
            return None;
        }
        let mut hello = self.make_hello();
        // No echo: the heartbeat path measures no round trip (its transport checks freshness).
        hello.tx_stamp = now.as_micros().max(1);
        let mut frame = Vec::new();
        hello.emit(&mut frame);
        Some(frame)
    }

    /// The next event (also kept in [`history`](Self::history)).
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let liveness = self.liveness.as_ref().and_then(Liveness::poll_timeout);
        [self.timers.next_timeout(), liveness]
            .into_iter()
            .flatten()
            .min()
    }

    pub(super) fn emit(&mut self, now: Instant, event: Event) {
        self.history.push(now, event.clone());
        self.events.push_back(event);
    }

    /// What our hellos say; the liveness stamps them when it sends one.
    pub(super) fn make_hello(&self) -> Hello {
        let mut flags = 0;
        if self.is_ready() {
            flags |= HelloFlags::READY;
        }
        if self.yielding || self.leaving {
            flags |= HelloFlags::YIELDING;
        }
        if self.config.preempt {
            flags |= HelloFlags::PREEMPT;
        }
        let resync_requested = self.state.session().and_then(|s| s.resync_requested);
        if resync_requested.is_some() {
            flags |= HelloFlags::RESYNC;
        }
        if self.outranked {
            flags |= HelloFlags::OUTRANKED;
        }
        Hello {
            pair_id: self.config.pair_id,
            node_id: self.config.node_id.0,
            priority: self.config.priority,
            backup_type: self.config.backup_type,
            state: self.state.name(),
            role: self.role,
            flags: HelloFlags(flags),
            epoch: self.outbound.epoch(),
            hello_interval_ms: wire_millis(self.config.hello_interval),
            dead_interval_ms: wire_millis(self.config.dead_interval),
            tx_stamp: 0,
            echo_stamp: 0,
            resync_epoch: resync_requested.unwrap_or(0),
            protocol_minor: ProtocolVersion::CURRENT.minor,
            applied: self.inbound.applied_position(),
        }
    }

    /// Queues our VRRP report if the live peer lacks it and reads it (an older one would count
    /// it as unknown).
    pub(super) fn send_vrrp_report(&mut self) {
        let reads = self
            .common_protocol()
            .is_some_and(|version| version >= ProtocolVersion::VRRP_REPORT);
        if let Some((report, sent)) = &mut self.vrrp_report
            && !*sent
            && reads
            && self.link.is_some()
        {
            let mut frame = Vec::new();
            report.emit(&mut frame);
            self.control.push_back(frame);
            *sent = true;
        }
    }

    pub(super) fn arm_retransmit(&mut self, now: Instant, restart: bool) {
        if restart && let Some(session) = self.state.session_mut() {
            session.retransmit_backoff = 1;
        }
        if !self.outbound.awaiting_ack() {
            self.timers.stop(Timer::Retransmit);
        } else if restart || !self.timers.is_set(Timer::Retransmit) {
            self.timers
                .set(Timer::Retransmit, now + self.config.retransmit_timeout);
        }
    }
}
