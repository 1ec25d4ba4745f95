//! Roles: who forwards. The election over the link or the heartbeat path, the commands that
//! move the role (switchover, the takeover mechanism's verdict, shutdown) and what a role change
//! does to the sessions' ownership.

use failoverd_wire::{BackupType, Goodbye, GoodbyeReason, HelloFlags, Role};

use super::session::State;
use super::types::CommandError;
use super::{Node, PeerView};
use crate::config::RoleAuthority;
use crate::event::{Election, Event, Reason, TakeoverReason};
use crate::time::Instant;
use crate::timer::Timer;
use crate::vrrp::GroupReason;

impl Node {
    /// Hands the active role to the peer (which must be ready). The peer becomes active once
    /// this node has stepped down; this node then stays standby while the peer is healthy.
    pub fn switchover(&mut self, now: Instant) -> Result<(), CommandError> {
        if self.role != Role::Active {
            return Err(CommandError::NotActive);
        }
        let peer = self.peer.as_ref().ok_or(CommandError::NoPeer)?;
        if !self.peer_holds_ours(peer) {
            return Err(CommandError::PeerNotReady);
        }
        self.yielding = true;
        // The peer learns at once that the role comes on purpose (under VRRP it takes over
        // as soon as this node's adverts give way).
        self.hello_due = true;
        self.heartbeat_due = true;
        self.update_role(now);
        Ok(())
    }

    /// What the takeover mechanism decided (only with [`RoleAuthority::External`]): this node
    /// forwards (active) or not (standby), and why.
    pub fn set_forwarding(&mut self, now: Instant, forwarding: bool, why: TakeoverReason) {
        let role = if forwarding {
            Role::Active
        } else {
            Role::Standby
        };
        if self.config.role_authority == RoleAuthority::External && role != self.role {
            self.set_role(now, role, Reason::Takeover(why));
        }
    }

    /// Leaves the pair on purpose: tells the peer (so it takes over at once) and steps down.
    pub fn shutdown(&mut self, now: Instant) {
        self.leaving = true;
        if self.link.is_some() {
            let mut frame = Vec::new();
            Goodbye {
                reason: GoodbyeReason::Shutdown,
            }
            .emit(&mut frame);
            self.control.push_back(frame);
        }
        if self.role == Role::Active {
            self.set_role(now, Role::Standby, Reason::ShuttingDown);
        }
    }

    /// Standby because the heartbeat path hears the peer while the failover link does not:
    /// the peer is active (or preferred), so this node does not take over (election mode).
    pub fn held_by_heartbeat(&self) -> bool {
        self.config.role_authority == RoleAuthority::Election
            && self.role == Role::Standby
            && self.peer.is_none()
            && self.heartbeat.is_some()
    }

    /// Applies the role rules; see `docs/ARCHITECTURE.md` ("Roles").
    pub(super) fn update_role(&mut self, now: Instant) {
        if let Some((role, reason)) = self.decide_role() {
            self.set_role(now, role, reason);
        }
    }

    pub(super) fn decide_role(&self) -> Option<(Role, Reason)> {
        if self.leaving || self.config.role_authority == RoleAuthority::External {
            return None;
        }
        let Some(peer) = &self.peer else {
            if let Some(heard) = &self.heartbeat {
                return self.decide_over_heartbeat(heard);
            }
            if self.role == Role::Active || matches!(self.state, State::Silence { startup: true }) {
                return None;
            }
            return Some((
                Role::Active,
                self.loss_reason.clone().unwrap_or(Reason::NoPeer),
            ));
        };
        let flags = peer.hello.flags;
        let peer_ready = self.peer_holds_ours(peer);
        let peer_yielding = flags.has(HelloFlags::YIELDING);
        let outranked = peer.hello.priority > self.config.priority;
        match (self.role, peer.hello.role) {
            (Role::Active, Role::Active) => {
                let (preferred, how) = self.election(peer);
                (!preferred).then_some((Role::Standby, Reason::Conflict(how)))
            }
            (Role::Active, Role::Standby) => {
                if self.yielding && peer_ready {
                    Some((Role::Standby, Reason::Switchover))
                } else if outranked
                    && peer_ready
                    && !peer_yielding
                    && flags.has(HelloFlags::PREEMPT)
                {
                    Some((Role::Standby, Reason::PreemptedByPeer))
                } else {
                    None
                }
            }
            // The active node hands over first (arm above); the standby takes over only once
            // both are standby, so the two are never active together.
            (Role::Standby, Role::Active) => None,
            (Role::Standby, Role::Standby) => {
                let (preferred, how) = self.election(peer);
                preferred.then_some((
                    Role::Active,
                    if peer_yielding {
                        Reason::PeerYielded
                    } else {
                        Reason::Elected(how)
                    },
                ))
            }
        }
    }

    /// The failover link is down but the heartbeat path hears the peer: the link's election
    /// between two live nodes, without preemption or switchover (they need the peer's sessions,
    /// which only the link carries). So a cut link alone leaves exactly one node active.
    pub(super) fn decide_over_heartbeat(&self, heard: &PeerView) -> Option<(Role, Reason)> {
        let (preferred, how) = self.election(heard);
        match (self.role, heard.hello.role) {
            (Role::Active, Role::Active) => {
                (!preferred).then_some((Role::Standby, Reason::ConflictOnHeartbeat(how)))
            }
            // One active already: it stays so.
            (Role::Active, Role::Standby) | (Role::Standby, Role::Active) => None,
            (Role::Standby, Role::Standby) => {
                let startup = matches!(self.state, State::Silence { startup: true });
                (preferred && !startup).then_some((Role::Active, Reason::ElectedOnHeartbeat(how)))
            }
        }
    }

    /// Whether this node is preferred over the peer as the active one, and by which rule.
    pub(super) fn election(&self, peer: &PeerView) -> (bool, Election) {
        let peer_yielding = peer.hello.flags.has(HelloFlags::YIELDING);
        if self.yielding != peer_yielding {
            return (!self.yielding, Election::PeerYielding);
        }
        let (ours, theirs) = (self.config.priority, peer.hello.priority);
        if ours != theirs {
            return (ours > theirs, Election::Priority { ours, theirs });
        }
        (self.config.node_id < peer.node, Election::LowerNodeId)
    }

    pub(super) fn set_role(&mut self, now: Instant, role: Role, reason: Reason) {
        let from = self.role;
        self.role = role;
        self.outranked = role == Role::Standby
            && matches!(
                reason,
                Reason::Takeover(TakeoverReason::Vrrp {
                    why: GroupReason::Outranked { .. },
                    ..
                })
            );
        self.inbound.set_active(role == Role::Active);
        if from != role {
            // What this node owns changes with its role: a bulk sync of ours that a link loss
            // interrupted no longer describes it. (The peer's interrupted bulk still does: it
            // resumes only if the peer's role did not change.)
            self.outbound.forget_resume();
        }
        self.hello_due = true;
        self.heartbeat_due = true;
        if role == Role::Active {
            self.yielding = false;
            if let Some(peer) = &self.peer {
                if self.peer_handed_over(peer) {
                    // Its deletes were real, and this node now decides what ends.
                    self.inbound.release_all_held();
                } else {
                    // A live peer lost the role by failing (a VRRP fault: its links went
                    // down): its last deletes may be the kernel flushing the sessions this
                    // node now carries.
                    self.inbound.discard_held(now);
                }
                if self.symmetric() && peer.hello.role == Role::Active && self.state.synchronizing()
                {
                    // The peer forwards too (VRRP masters on both sides of a cut LAN): our
                    // copies of its sessions may hold some it ended while the link was down,
                    // which its bulk sync sweeps. They are adopted once it gives way, as the
                    // changes of an active peer are (simulation seed 304).
                    self.applied_for_active_peer = true;
                } else if self.symmetric() {
                    // The active node owns what it forwards: its own expiry and deletes decide
                    // now, and the peer's copies are resent as ours (so they age as a
                    // standby's copies do, and a later failback finds them).
                    self.adopt = Some((peer.node, self.config.node_id));
                    if self.state.synchronizing() {
                        self.restart_outbound();
                    }
                }
            } else {
                // The peer died: its last deletes may be a flush of the sessions this node
                // now carries.
                self.inbound.discard_held(now);
            }
            // Released deletes are queued; what is left is the window of suspect deletes.
            self.arm_remove_hold();
            self.drive_backend();
            if self.peer.is_none()
                && let Some(peer) = self.last_peer
            {
                if self.peer_heard {
                    self.adopt = Some((peer, self.config.node_id));
                    self.drive_backend();
                } else {
                    self.timers
                        .set(Timer::AdoptAlone, now + self.config.adopt_alone_after);
                }
            }
        } else if from == Role::Active
            && self.symmetric()
            && let Some(peer) = self.peer.as_ref().map(|p| p.node).or(self.last_peer)
        {
            // The peer takes over and owns what it forwards: our copies are its sessions now,
            // so the sweep after its next bulk sync removes those it ended. Left ours, a copy
            // whose delete is lost with a stream restart (a resync, a link flap) would stay
            // here forever. Also when the link is down (VRRP moved the role back over the
            // LAN): a standby owning the peer's sessions would send them as its own.
            self.adopt = Some((self.config.node_id, peer));
            self.drive_backend();
        }
        self.emit(
            now,
            Event::RoleChanged {
                from,
                to: role,
                reason,
            },
        );
    }

    /// The peer's VRRP group as its hellos (over the link, or the heartbeat path) describe it,
    /// for the VRRP peer check: under VRRP the peer's role is its group's mastership.
    pub fn vrrp_peer(&self) -> crate::vrrp::PeerView {
        use crate::vrrp::PeerView;
        let Some(hello) = self
            .peer
            .as_ref()
            .or(self.heartbeat.as_ref())
            .map(|peer| &peer.hello)
        else {
            return PeerView::Unheard;
        };
        let flags = hello.flags;
        match hello.role {
            Role::Active => PeerView::Master,
            Role::Standby
                if flags.has(HelloFlags::READY)
                    && flags.has(HelloFlags::PREEMPT)
                    && !flags.has(HelloFlags::YIELDING)
                    && hello.priority > self.config.priority =>
            {
                PeerView::Preempting
            }
            Role::Standby => PeerView::NotMaster,
        }
    }

    /// Whether the live peer gave up the active role on purpose, so its last deletes ended
    /// real sessions. Elected roles move between live peers only so (switchover, preemption,
    /// shutdown); under a takeover mechanism the peer says so in its hellos (switchover,
    /// maintenance, shutdown), and otherwise it lost the role by failing.
    pub(super) fn peer_handed_over(&self, peer: &PeerView) -> bool {
        self.config.role_authority == RoleAuthority::Election
            || peer.hello.flags.has(HelloFlags::YIELDING)
    }

    /// The live peer says it is active.
    pub(super) fn peer_active(&self) -> bool {
        self.peer
            .as_ref()
            .is_some_and(|peer| peer.hello.role == Role::Active)
    }

    /// Whether the peer forwarded until another node outranked it, or still forwards: either
    /// way the sessions it ended were real traffic, not a failing node's flush.
    pub(super) fn peer_forwarded_healthy(&self) -> bool {
        self.peer_active()
            || self
                .peer
                .as_ref()
                .is_some_and(|peer| peer.hello.flags.has(HelloFlags::OUTRANKED))
    }

    /// Active/standby: one node forwards at a time, and owns every session.
    pub(super) fn symmetric(&self) -> bool {
        self.config.backup_type == BackupType::SYMMETRIC
    }
}
