//! Negotiation: the peer's hellos, compatibility and timers, and the one `set_state` of the
//! seed's states (Silence, Independence, Synchronization).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use failoverd_wire::{Hello, HelloFlags, NodeId, ProtocolVersion, Role, SettingsView, SyncState};

use super::session::{State, SyncSession};
use super::{Node, PeerView};
use crate::event::{Event, HelloTimers, Incompatibility, Reason, TimerMismatch};
use crate::time::Instant;
use crate::timer::Timer;

/// A duration as hellos carry it: whole milliseconds, saturated.
pub(super) fn wire_millis(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}

/// The peer's timers from its hello.
pub(super) fn peer_timers(hello: &Hello) -> HelloTimers {
    HelloTimers {
        hello: Duration::from_millis(hello.hello_interval_ms.into()),
        dead: Duration::from_millis(hello.dead_interval_ms.into()),
    }
}

impl Node {
    /// The one place the failover state changes: re-arms the state's timer, starts or stops
    /// the sync streams, and reports exactly one event per real transition.
    pub(super) fn set_state(&mut self, now: Instant, next: State, reason: Reason) {
        let from = self.state.name();
        let to = next.name();
        if self.state.synchronizing() {
            // The session goes with the state; the next synchronization resends everything
            // both ways anyway.
            self.outbound.stop(now);
            self.inbound.suspend(&mut self.stats);
            self.timers.stop(Timer::RemoveHold);
            self.timers.stop(Timer::Digest);
            self.timers.stop(Timer::PeerDigest);
            self.timers.stop(Timer::Retransmit);
            self.timers.stop(Timer::ResyncBackoff);
        }
        match &next {
            State::Silence { .. } => self
                .timers
                .set(Timer::Silence, now + self.config.silence_timer),
            State::Independence => self.timers.stop(Timer::Silence),
            State::Synchronization(session) => {
                let peer = &session.peer;
                let peer_took_over = self
                    .peer
                    .as_ref()
                    .is_none_or(|p| p.hello.role == Role::Active);
                // Not `peer_heard`: a peer heard and lost again before this first
                // synchronization (a link flap at start) leaves the entries just as they were.
                if std::mem::take(&mut self.unsynchronized_since_start)
                    && self.symmetric()
                    && !peer_took_over
                {
                    // Restarted, and the peer did not take over (it is standby): the entries
                    // found at start, attributed to it, are the sessions this node carried as
                    // the active one. Claimed back before our bulk sync, or each node's sweep
                    // removes the other's copies (the peer's bulk sync does not hold them: to
                    // the peer they are ours).
                    self.adopt = Some((*peer, self.config.node_id));
                }
                self.last_peer = Some(*peer);
                self.peer_heard = true;
                self.timers.stop(Timer::AdoptAlone);
                self.timers.stop(Timer::PeerDigest);
                if !self.config.digest_interval.is_zero() {
                    self.timers
                        .set(Timer::Digest, now + self.config.digest_interval);
                }
                if !self.config.settings.is_empty() {
                    let mut frame = Vec::new();
                    SettingsView::emit(
                        self.config.settings.iter().map(|(n, v)| (n.as_str(), *v)),
                        &mut frame,
                    );
                    self.control.push_back(frame);
                }
                let epoch = self.take_epoch();
                let may_resume = self
                    .common_protocol()
                    .is_some_and(|version| version >= ProtocolVersion::RESUMED_BULK);
                let peer_applied = self.peer.as_ref().and_then(|peer| peer.hello.applied);
                self.outbound
                    .start(epoch, may_resume, peer_applied, &mut self.stats);
                self.inbound.reset(*peer, &mut self.stats);
                self.apply_failed = false;
            }
        }
        self.state = next;
        self.hello_due = true;
        self.heartbeat_due = true;
        self.emit(now, Event::StateChanged { from, to, reason });
        self.drive_backend();
    }

    pub(super) fn handle_hello(&mut self, now: Instant, authenticated: NodeId, hello: Hello) {
        self.stats.hellos_received += 1;
        if let Some(liveness) = &mut self.liveness {
            liveness.handle_hello(now, &hello);
        }
        self.compare_timers(now, &hello);
        let compatible = self.check(authenticated, &hello);
        self.loss_reason = None;
        self.peer = Some(PeerView {
            node: authenticated,
            hello,
            heard_at: now,
            compatible: compatible.clone(),
        });
        self.send_vrrp_report();
        match compatible {
            Err(why) => self.incompatible(now, why),
            Ok(()) => {
                self.reported_incompatibility = None;
                if self.state.synchronizing() && hello.state == SyncState::Silence {
                    self.set_state(
                        now,
                        State::Silence { startup: false },
                        Reason::PeerLeftSynchronization(hello.state),
                    );
                }
                self.try_negotiate(now);
                if let Some(session) = self.state.session_mut()
                    && session
                        .resync_requested
                        .is_some_and(|asked| asked != hello.epoch)
                {
                    // The peer's stream restarted: what we asked for is on its way.
                    session.resync_requested = None;
                    self.hello_due = true;
                }
                if hello.flags.has(HelloFlags::RESYNC) {
                    self.answer_resync(hello.resync_epoch);
                }
                if self.applied_for_active_peer
                    && hello.role == Role::Standby
                    && self.role == Role::Active
                    && self.state.synchronizing()
                {
                    // Both were active (a split brain, or VRRP masters on both sides of a cut
                    // LAN), we applied the peer's changes as its own, and it gave way: what it
                    // owned, we carry now, and our whole table is sent again (it may have
                    // applied an older bulk of ours over a change of its own that we hold), so
                    // its table becomes ours.
                    self.applied_for_active_peer = false;
                    self.adopt = Some((authenticated, self.config.node_id));
                    self.restart_outbound();
                }
            }
        }
    }

    pub(super) fn check(
        &self,
        authenticated: NodeId,
        hello: &Hello,
    ) -> Result<(), Incompatibility> {
        let claimed = NodeId(hello.node_id);
        if authenticated == self.config.node_id {
            return Err(Incompatibility::SameNodeId);
        }
        if claimed != authenticated {
            return Err(Incompatibility::NodeId {
                authenticated,
                claimed,
            });
        }
        if hello.pair_id != self.config.pair_id {
            return Err(Incompatibility::PairId {
                ours: self.config.pair_id,
                theirs: hello.pair_id,
            });
        }
        if hello.backup_type != self.config.backup_type {
            return Err(Incompatibility::BackupType {
                ours: self.config.backup_type,
                theirs: hello.backup_type,
            });
        }
        Ok(())
    }

    /// Different timers only warn, once per distinct value of the peer's: refusing
    /// Synchronization would not stop a dead timer from expiring (it runs in every state), it
    /// would only stop replication.
    pub(super) fn compare_timers(&mut self, now: Instant, hello: &Hello) {
        let mismatch = TimerMismatch::between(self.local_timers(), peer_timers(hello));
        if let Some(new) = mismatch
            && mismatch != self.reported_timer_mismatch
        {
            self.emit(now, Event::TimersDiffer(new));
        }
        self.reported_timer_mismatch = mismatch;
    }

    /// Our timers as our hellos carry them (whole milliseconds).
    pub(super) fn local_timers(&self) -> HelloTimers {
        HelloTimers {
            hello: Duration::from_millis(wire_millis(self.config.hello_interval).into()),
            dead: Duration::from_millis(wire_millis(self.config.dead_interval).into()),
        }
    }

    pub(super) fn incompatible(&mut self, now: Instant, why: Incompatibility) {
        if self.state.synchronizing() {
            self.set_state(
                now,
                State::Silence { startup: false },
                Reason::Incompatible(why.clone()),
            );
        }
        if self.reported_incompatibility.as_ref() != Some(&why) {
            self.reported_incompatibility = Some(why.clone());
            self.emit(now, Event::NegotiationFailed(why));
        }
    }

    pub(super) fn try_negotiate(&mut self, now: Instant) {
        if !matches!(self.state, State::Independence) {
            return;
        }
        let Some(peer) = &self.peer else { return };
        if peer.compatible.is_ok() && peer.hello.state != SyncState::Silence {
            let node = peer.node;
            self.set_state(
                now,
                State::Synchronization(SyncSession::new(node, now)),
                Reason::NegotiationSucceeded(node),
            );
        }
    }

    pub(super) fn peer_lost(&mut self, now: Instant, reason: Reason) {
        self.peer_vrrp_report = None;
        if let Some((_, sent)) = &mut self.vrrp_report {
            *sent = false;
        }
        if let Some(peer) = self.peer.take() {
            self.last_peer = Some(peer.node);
            self.peer_heard = true;
        }
        if self.state.synchronizing() {
            self.set_state(now, State::Silence { startup: false }, reason.clone());
        }
        self.loss_reason = Some(reason);
    }

    /// The peer asks for a new bulk sync of ours (it lost events). Only the epoch it names is
    /// replaced: repeated, late or reordered requests for an epoch already replaced do nothing.
    pub(super) fn answer_resync(&mut self, epoch: u32) {
        if epoch == self.outbound.epoch() && self.state.synchronizing() {
            self.restart_outbound();
        }
    }

    pub(super) fn compare_settings(&mut self, now: Instant, settings: SettingsView<'_>) {
        let peer: BTreeMap<&str, u64> = settings.entries().collect();
        let local: BTreeMap<&str, u64> = self
            .config
            .settings
            .iter()
            .map(|(n, v)| (n.as_str(), *v))
            .collect();
        let mut differ = Vec::new();
        for name in local.keys().chain(peer.keys()).collect::<BTreeSet<_>>() {
            let (local, peer) = (local.get(name).copied(), peer.get(name).copied());
            if local != peer {
                differ.push(Event::SettingDiffers {
                    name: name.to_string(),
                    local,
                    peer,
                });
            }
        }
        for event in differ {
            self.emit(now, event);
        }
    }
}
