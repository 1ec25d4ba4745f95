//! The invariants the harness checks while a pair runs and once it has settled (listed in the
//! crate's documentation), and how a breach is recorded.

use super::*;

impl Pair {
    pub(super) fn observe(&mut self, i: usize, event: &Event) {
        let now = self.now;
        match event {
            Event::StateChanged { from, to, reason } => {
                let allowed = matches!(
                    (from, to, reason),
                    (SyncState::Silence, SyncState::Silence, Reason::Started)
                        | (
                            SyncState::Silence,
                            SyncState::Independence,
                            Reason::SilenceExpired
                        )
                        | (
                            SyncState::Independence,
                            SyncState::Synchronization,
                            Reason::NegotiationSucceeded(_)
                        )
                        | (SyncState::Synchronization, SyncState::Silence, _)
                );
                if !allowed {
                    self.violate(format!(
                        "node {i}: transition {from} -> {to} ({reason}) is not in the diagram"
                    ));
                }
                self.nodes[i].sync_since = (*to == SyncState::Synchronization).then_some(now);
                if *from == SyncState::Synchronization {
                    self.unseen_made_apart(i);
                }
            }
            Event::BulkSent { .. } => self.nodes[i].merged_at = Some(now),
            Event::RoleChanged {
                to: Role::Standby, ..
            } => self.nodes[i].standby_since = now,
            Event::RoleChanged {
                to: Role::Active,
                reason,
                ..
            } => {
                // With VRRP and adverts flowing for a while, a live peer is not missed: the
                // group took over by preemption (gated on readiness) or a handover.
                let vrrp_handover = matches!(reason, Reason::Takeover(_))
                    && self.lan.advert_interval.is_some()
                    && !self.lan.partitioned
                    && now - self.lan.healed_at > self.lan.master_down();
                let handover = vrrp_handover
                    || matches!(
                        reason,
                        Reason::Elected(_) | Reason::Preempted | Reason::PeerYielded
                    );
                if handover {
                    self.check_takeover_ready(i);
                }
                // Preempting a live master (the election's preemption, or a VRRP group whose
                // peer was master before and still is) is gated on readiness: a peer that
                // stepped down or left hands over whatever our state, and two groups that time
                // out at once preempt nobody. "At once" spans the link's one-way delay: the
                // peer check ignores the peer's adverts until its hello saying it is master
                // (sent when it becomes master) arrives.
                let hello_on_its_way = self.link.faults.delay + self.link.faults.jitter;
                let peer = &self.nodes[1 - i];
                let preempted = match reason {
                    Reason::Preempted => true,
                    Reason::Takeover(_) => {
                        vrrp_handover
                            && peer.alive
                            && !peer.leaving
                            && peer
                                .vrrp
                                .as_ref()
                                .is_some_and(|g| g.state() == GroupState::Master)
                            && peer
                                .active_since()
                                .is_some_and(|since| since + hello_on_its_way < now)
                    }
                    _ => false,
                };
                if preempted && !self.nodes[i].core.is_ready() {
                    self.violate(format!(
                        "node {i} preempted live node {} before it was ready ({reason})",
                        1 - i
                    ));
                }
            }
            _ => {}
        }
    }

    /// A node that takes the active role from a live peer (not one that is leaving) must hold
    /// every session of the peer except those with a change still on its way.
    fn check_takeover_ready(&mut self, i: usize) {
        let j = 1 - i;
        let peer = &self.nodes[j];
        if !peer.alive || peer.leaving {
            return;
        }
        let holder = &self.nodes[i];
        // A change on its way either way explains a difference: ours (we ended the session and
        // the delete is in flight, or held by the peer) or the peer's.
        let missing: Vec<_> = peer
            .table
            .iter()
            .filter(|r| r.owner == peer.id() && holder.table.get(&r.key).is_none())
            .filter(|r| {
                !peer.core.has_unacked_change(&r.key)
                    && !holder.core.has_unacked_change(&r.key)
                    && !peer.core.has_pending_remove(&r.key)
            })
            .map(|r| r.key)
            .collect();
        if let Some(example) = missing.first() {
            self.violate(format!(
                "node {i} took over from live node {j} without {} of its sessions (e.g. {example})",
                missing.len()
            ));
        }
    }

    /// Every session the active node counts as replicated is on the standby, as it is on the
    /// active. Checked while the standby has been standby throughout the active's current
    /// synchronization and no split brain happened since (after one, the nodes' copies are
    /// reconciled by the next bulk syncs).
    pub fn check_replicated_present(&mut self, when: &str) {
        for x in 0..2 {
            let y = 1 - x;
            let (a, b) = (&self.nodes[x], &self.nodes[y]);
            if !a.alive
                || !b.alive
                || a.core.role() != Role::Active
                || b.core.role() != Role::Standby
            {
                continue;
            }
            let Some(since) = a.sync_since else { continue };
            if b.standby_since > since || self.split_brain_at.is_some_and(|t| t >= since) {
                continue;
            }
            let mut missing = 0;
            let mut example = None;
            for record in a
                .table
                .iter()
                .filter(|r| r.owner == a.id() && a.core.is_replicated(&r.key))
            {
                if !b
                    .table
                    .get(&record.key)
                    .is_some_and(|copy| same_copy(copy, record))
                {
                    missing += 1;
                    example.get_or_insert(record.key);
                }
            }
            if missing > 0 {
                let example = example.map(|k| k.to_string()).unwrap_or_default();
                self.violate(format!(
                    "{when}: {missing} sessions node {x} counts as replicated are missing or different on node {y} (e.g. {example})"
                ));
            }
        }
    }

    pub(super) fn check_both_active(&mut self) {
        let both = self
            .nodes
            .iter()
            .all(|n| n.alive && n.core.role() == Role::Active);
        if both {
            self.split_brain_at = Some(self.now);
        }
        // What the role authority hears the peer by: the failover link (and the heartbeat path,
        // if any) for the election, the LAN for VRRP (which keeps one master with the failover
        // link cut).
        let (authority_up, bound) = if self.lan.advert_interval.is_some() {
            (!self.lan.partitioned, self.lan.master_down())
        } else {
            let link_up = !self.link.partitioned
                && self.link.faults.loss == 0.0
                && self.nodes.iter().all(|n| n.connected);
            let heartbeat_up = self.heartbeat.enabled && !self.heartbeat.partitioned;
            let dead = self.nodes[0]
                .config
                .dead_interval
                .max(self.nodes[1].config.dead_interval);
            (link_up || heartbeat_up, dead)
        };
        if !(both && authority_up) {
            self.both_active_since = None;
            return;
        }
        let since = *self.both_active_since.get_or_insert(self.now);
        if self.now - since > bound {
            self.violate(format!(
                "both nodes active for {:?} with the role authority's path up",
                self.now - since
            ));
            self.both_active_since = Some(self.now);
        }
    }

    /// Once the link is healed and the pair has settled: both synchronized and ready, one
    /// active, nothing left to send, and each node's sessions mirrored exactly on the other
    /// (nothing stale, nothing missing), split brain or not.
    ///
    /// After a split brain the merge rule is checked too (docs/ARCHITECTURE.md, "Split
    /// brain"): a session one node's traffic deleted while both were active, or while it was
    /// apart, stays deleted, unless the other node's traffic changed it meanwhile (then either
    /// may win); see [`Pair::strict_merge_rule`].
    pub fn check_settled(&mut self) {
        let states: Vec<_> = self
            .nodes
            .iter()
            .map(|n| (n.alive, n.core.state(), n.core.role(), n.core.is_ready()))
            .collect();
        if states
            .iter()
            .any(|s| !s.0 || s.1 != SyncState::Synchronization || !s.3)
        {
            self.violate(format!(
                "not settled: (alive, state, role, ready) = {states:?}"
            ));
            return;
        }
        let active: Vec<_> = (0..2).filter(|&i| states[i].2 == Role::Active).collect();
        if active.len() != 1 {
            self.violate(format!("{} active nodes after settling", active.len()));
            return;
        }
        for x in 0..2 {
            if !self.nodes[x].core.is_replication_idle() {
                self.violate(format!(
                    "node {x} still has changes to replicate after settling"
                ));
            }
        }
        for x in 0..2 {
            let y = 1 - x;
            let (owner, holder) = (&self.nodes[x], &self.nodes[y]);
            let missing = owner
                .owned()
                .into_iter()
                .filter(|r| {
                    !holder
                        .table
                        .get(&r.key)
                        .is_some_and(|copy| same_copy(copy, r))
                })
                .count();
            let stale = holder
                .table
                .iter()
                // A copy labelled with the other node's id while the other node labels its own
                // copy ours is a crossed label: both hold the session, and the active node's
                // delete removes every copy whatever its label. Stale is a copy of nothing
                // that no delete on its way (held by the holder, see `remove_hold`) removes.
                .filter(|r| r.owner == owner.id() && owner.table.get(&r.key).is_none())
                .filter(|r| !holder.core.has_pending_remove(&r.key))
                .count();
            let undeleted: Vec<_> = owner
                .split_changes
                .iter()
                .filter(|(key, (change, _))| {
                    *change == SplitChange::Deleted
                        && !holder.split_changes.contains_key(key)
                        && !self.contested.contains(key)
                        && self.nodes.iter().any(|n| n.table.get(key).is_some())
                })
                .map(|(key, _)| *key)
                .collect();
            if missing > 0 || stale > 0 {
                self.violate(format!(
                    "node {y}'s copy of node {x}'s sessions differs: {missing} missing or different, {stale} stale"
                ));
            }
            if let Some(example) = undeleted.iter().min() {
                let what = format!(
                    "{} sessions node {x} deleted during a split brain came back (e.g. {example})",
                    undeleted.len()
                );
                if self.strict_merge_rule {
                    self.violate(what);
                } else {
                    self.merge_rule_breaches.push(what);
                }
            }
        }
    }

    pub(super) fn violate(&mut self, what: String) {
        self.violations
            .push(format!("t={:.3}s {what}", self.now.as_nanos() as f64 / 1e9));
    }
}
