//! The node's inputs: the link, the peer's frames, the heartbeat path and the timers.

use std::time::Duration;

use failoverd_wire::{Goodbye, GoodbyeReason, Message, NodeId, Role, VrrpReport, WireError};

use super::session::State;
use super::types::Action;
use super::{MAX_BACKOFF, Node, PeerView};
use crate::event::{Event, Incompatibility, Reason};
use crate::sync::inbound::Receipt;
use crate::time::Instant;
use crate::timer::Timer;

impl Node {
    /// The transport authenticated `peer` and is up.
    pub fn handle_link_up(&mut self, now: Instant, peer: NodeId) {
        self.link = Some(peer);
        self.hello_due = true;
        if let Some(liveness) = &mut self.liveness {
            liveness.handle_link_up(now);
        }
    }

    /// The transport closed.
    pub fn handle_link_down(&mut self, now: Instant, reason: &str) {
        self.link = None;
        self.control.clear();
        if let Some(liveness) = &mut self.liveness {
            liveness.handle_link_down();
        }
        self.peer_lost(now, Reason::LinkClosed(reason.to_owned()));
        self.update_role(now);
    }

    /// A frame from the authenticated peer.
    pub fn handle_frame(&mut self, now: Instant, bytes: &[u8]) {
        let Some(authenticated) = self.link else {
            self.stats.frames_without_link += 1;
            return;
        };
        match Message::parse(bytes) {
            Err(WireError::UnsupportedVersion(version)) => {
                self.incompatible(now, Incompatibility::Version(version));
            }
            Err(_) => self.stats.malformed_frames += 1,
            Ok(Message::Hello(hello)) => self.handle_hello(now, authenticated, hello),
            Ok(Message::Goodbye(Goodbye {
                reason: GoodbyeReason::Shutdown | GoodbyeReason::Unknown(_),
            })) => {
                if let Some(liveness) = &mut self.liveness {
                    liveness.handle_goodbye();
                }
                // A peer that leaves hands over on purpose: the deletes we hold from it ended
                // real sessions, and the stream's end must not drop them (dropped, a copy we
                // adopt at the takeover would outlive the session: simulation seed 921).
                let held = self.inbound.take_held();
                self.peer_lost(now, Reason::PeerLeft);
                self.inbound.apply_after_reset(held);
                self.drive_backend();
            }
            Ok(Message::SessionBatch(batch)) => {
                if !self.state.synchronizing() {
                    self.stats.stale_epoch_batches += 1;
                    return;
                }
                let may_resume = !self.outbound.has_apart_changes();
                let outbound = &self.outbound;
                match self.inbound.handle_batch(
                    now,
                    batch,
                    may_resume,
                    &|key| outbound.deleted_apart(key),
                    &mut self.stats,
                ) {
                    Err(_) => self.stats.malformed_frames += 1,
                    Ok(Receipt::Overflow) => {
                        // The peer ignored its window. Everything applied stays; the next
                        // synchronization's bulk sync and sweep bring the rest.
                        self.stats.peer_buffer_resets += 1;
                        self.peer_lost(
                            now,
                            Reason::LinkClosed("the peer sent past its window".to_owned()),
                        );
                        self.actions.push_back(Action::ResetLink);
                        self.update_role(now);
                        return;
                    }
                    Ok(_) => {}
                }
                if let Some(epoch) = self.inbound.take_resume_refused() {
                    // The peer resumes a bulk we no longer hold part of: ask for it whole.
                    if let Some(session) = self.state.session_mut() {
                        session.resync_requested = Some(epoch);
                    }
                    self.hello_due = true;
                }
                self.arm_remove_hold();
                self.drive_backend();
            }
            Ok(Message::Ack(ack)) => {
                if !self.state.synchronizing() {
                    return;
                }
                let outcome = self.outbound.handle_ack(ack, now, &mut self.stats);
                if outcome.progress {
                    self.arm_retransmit(now, true);
                }
                if let Some((epoch, records)) = outcome.bulk_applied {
                    self.stats.bulk_syncs_sent += 1;
                    self.emit(now, Event::BulkSent { epoch, records });
                }
            }
            Ok(Message::Settings(settings)) => self.compare_settings(now, settings),
            Ok(Message::Digest(digest)) => {
                // Compared only against a complete copy of the peer's sessions, and only by a
                // standby: an active node holds the standby's changes as its own.
                let copy_held = !(self.role == Role::Active && self.symmetric());
                if copy_held
                    && self.inbound.complete()
                    && let State::Synchronization(session) = &mut self.state
                {
                    if self.config.digest_interval.is_zero() {
                        self.stats.digests_dropped += 1;
                    } else {
                        let digest = Box::new(digest.buckets());
                        if session.peer_digest_waiting.replace(digest).is_some() {
                            self.stats.digests_dropped += 1;
                        }
                        self.promote_peer_digest(now);
                    }
                }
            }
            Ok(Message::VrrpReport(report)) => self.peer_vrrp_report = Some(report.report()),
            // Config sync is the `config_sync` machine's, beside the node: the daemon hands
            // those frames to it, so one that reaches the node is skipped like an unknown kind.
            Ok(Message::ConfigSync(_) | Message::Unknown(_)) => self.stats.unknown_messages += 1,
        }
        self.update_role(now);
    }

    /// A hello from the heartbeat path, authenticated as `peer` and found fresh by the transport
    /// (a second path beside the failover link, e.g. over a traffic network). It does not
    /// negotiate or synchronize; it only tells, in election mode, that the peer is alive and in
    /// which role while the failover link is down, so a cut link alone does not make both nodes
    /// active (see `docs/ARCHITECTURE.md`, "The heartbeat path").
    pub fn handle_heartbeat(&mut self, now: Instant, peer: NodeId, bytes: &[u8]) {
        let hello = match Message::parse(bytes) {
            Ok(Message::Hello(hello)) if self.check(peer, &hello).is_ok() => hello,
            _ => {
                self.stats.heartbeats_refused += 1;
                return;
            }
        };
        self.stats.heartbeats_received += 1;
        if self.heartbeat.is_none() {
            self.emit(now, Event::HeartbeatPath { up: true });
        }
        self.heartbeat = Some(PeerView {
            node: peer,
            hello,
            heard_at: now,
            compatible: Ok(()),
        });
        self.timers
            .set(Timer::HeartbeatDead, now + self.config.dead_interval);
        self.update_role(now);
    }

    /// Runs every timer that expired at `now`, each once; spurious calls do nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(liveness) = &mut self.liveness {
            liveness.handle_timeout(now);
            if let Some(silent) = liveness.poll_dead() {
                self.peer_dead(now, silent);
            }
        }
        for timer in self.timers.expired(now) {
            match timer {
                Timer::Heartbeat => {
                    self.heartbeat_due = true;
                    self.timers
                        .set(Timer::Heartbeat, now + self.config.hello_interval);
                }
                Timer::Silence => {
                    self.set_state(now, State::Independence, Reason::SilenceExpired);
                    self.try_negotiate(now);
                }
                Timer::Retransmit => {
                    if self.outbound.awaiting_ack()
                        && let State::Synchronization(session) = &mut self.state
                    {
                        let reliable = self.config.reliable_link;
                        session
                            .resend
                            .extend(self.outbound.frames_to_resend(reliable));
                        self.stats.retransmits += 1;
                        // Back off while nothing moves: a peer busy applying a bulk sync
                        // is not helped by more copies.
                        session.retransmit_backoff =
                            (session.retransmit_backoff * 2).min(MAX_BACKOFF);
                        let wait = self.config.retransmit_timeout * session.retransmit_backoff;
                        self.timers.set(Timer::Retransmit, now + wait);
                    }
                }
                Timer::DumpRetry => {
                    if let Some(session) = self.state.session_mut() {
                        session.dump_blocked = false;
                    }
                    self.drive_backend();
                }
                Timer::ApplyRetry => {
                    self.inbound.retry_refused();
                    self.drive_backend();
                }
                Timer::Digest => {
                    if let Some(session) = self.state.session_mut() {
                        session.digest_due = true;
                        self.drive_backend();
                    }
                    self.timers
                        .set(Timer::Digest, now + self.config.digest_interval);
                }
                Timer::PeerDigest => self.promote_peer_digest(now),
                Timer::ResyncBackoff => {
                    if self.state.synchronizing() {
                        self.resync_after_overrun(now);
                    }
                }
                Timer::AdoptAlone => {
                    if self.role == Role::Active && self.peer.is_none() {
                        self.adopt = self.last_peer.map(|peer| (peer, self.config.node_id));
                        self.drive_backend();
                    }
                }
                Timer::HeartbeatDead => {
                    if let Some(heard) = self.heartbeat.take() {
                        self.emit(now, Event::HeartbeatPath { up: false });
                        if self.peer.is_none() {
                            // Silent on both paths: the peer is dead.
                            self.loss_reason = Some(Reason::PeerDead(now - heard.heard_at));
                        }
                    }
                }
                Timer::RemoveHold => {
                    self.inbound.release_held(now);
                    let peer_forwarded = self.peer_forwarded_healthy();
                    self.inbound
                        .settle_suspects(now, peer_forwarded, &mut self.stats);
                    self.arm_remove_hold();
                    self.drive_backend();
                }
            }
        }
        self.update_role(now);
    }

    /// The detached liveness ([`detach_liveness`](Self::detach_liveness)) heard no hello for
    /// `silent`: the peer is dead.
    pub fn handle_peer_dead(&mut self, now: Instant, silent: Duration) {
        self.peer_dead(now, silent);
        self.update_role(now);
    }

    pub(super) fn peer_dead(&mut self, now: Instant, silent: Duration) {
        self.peer_lost(now, Reason::PeerDead(silent));
        self.actions.push_back(Action::ResetLink);
    }

    /// What this node's VRRP instances hear, for the peer: sent over the failover link when it
    /// changes and to each new peer (from 1.3 on).
    pub fn set_vrrp_report(&mut self, report: VrrpReport) {
        if self.vrrp_report.as_ref().is_some_and(|(r, _)| *r == report) {
            return;
        }
        self.vrrp_report = Some((report, false));
        self.send_vrrp_report();
    }
}
