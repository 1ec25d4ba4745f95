//! The config-sync invariants (listed in the crate's documentation): checked on every action,
//! message and event of a node's machine, and once the pair has settled.

use failoverd_core::config_sync::{ConfigAction, ConfigSyncEvent, Part, StatusReason, SyncStatus};
use failoverd_wire::{ConfigSyncMessage, SyncOutcome, TransferPurpose};

use super::Pair;
use super::config::fingerprint;

impl Pair {
    /// An apply happens only on the replica (or restores, right after one, what it replaced
    /// when the link is lost), only of units its own configuration names, and only of content
    /// the source's machine was given by its own kernel.
    pub(super) fn check_config_action(&mut self, i: usize, action: &ConfigAction) {
        let ConfigAction::Apply { units, .. } = action else {
            return;
        };
        let now = self.now;
        let part = self.config_part(i);
        let (Some(node), Some(peer)) = (&self.config[i], &self.config[1 - i]) else {
            return;
        };
        let mut found = Vec::new();
        if let Some((unit, _)) = units.iter().find(|(u, _)| !node.named().contains(u)) {
            found.push(format!(
                "node {i} applies unit {} its configuration does not name",
                unit.name
            ));
        }
        if part == Some(Part::Replica) {
            if let Some((unit, _)) = units.iter().find(|(u, content)| {
                !peer
                    .handed
                    .contains(&(u.clone(), content.as_deref().map(fingerprint)))
            }) {
                found.push(format!(
                    "node {i} applies content of {} that node {} never read",
                    unit.name,
                    1 - i
                ));
            }
        } else {
            let restores = node
                .restorable
                .as_ref()
                .is_some_and(|(until, previous)| now < *until && previous == units);
            if !restores {
                found.push(format!(
                    "node {i} applies {} units while it is not the replica (part {part:?})",
                    units.len()
                ));
            }
        }
        for what in found {
            self.violate(what);
        }
    }

    /// Only the source sends sync transfers, and none while in conflict; a node claims the
    /// source in its offers only while it is active in Synchronization (so a conflict, both
    /// claiming it, arises only when both were).
    pub(super) fn check_config_message(
        &mut self,
        i: usize,
        message: &ConfigSyncMessage,
        status: SyncStatus,
    ) {
        let part = self.config_part(i);
        match message {
            ConfigSyncMessage::Transfer(header) if header.purpose != TransferPurpose::Readback => {
                if part != Some(Part::Source) {
                    self.violate(format!(
                        "node {i} sent a sync transfer while not the source (part {part:?})"
                    ));
                }
                if status == SyncStatus::Conflict {
                    self.violate(format!("node {i} sent a sync transfer in conflict"));
                }
            }
            ConfigSyncMessage::Offer(offer) if offer.source != (part == Some(Part::Source)) => {
                self.violate(format!(
                    "node {i} offers with source = {} while its part is {part:?}",
                    offer.source
                ));
            }
            _ => {}
        }
    }

    /// Conflict only on a node that is the source (its peer's claim was checked when sent).
    pub(super) fn check_config_event(&mut self, i: usize, event: &ConfigSyncEvent) {
        if let ConfigSyncEvent::StatusChanged {
            to: SyncStatus::Conflict,
            ..
        } = event
            && self.config_part(i) != Some(Part::Source)
        {
            let part = self.config_part(i);
            self.violate(format!("node {i} in conflict while its part is {part:?}"));
        }
    }

    /// After settling (see [`Pair::check_settled`]): every unit both nodes name holds the
    /// source's content on both, unless the last sync of it failed, was refused or was rolled
    /// back, and the source's status says so; with every unit equal, the status says in sync.
    pub fn check_config_settled(&mut self) {
        let (Some(a), Some(b)) = (&self.config[0], &self.config[1]) else {
            return;
        };
        let Some(s) = (0..2).find(|&i| self.config_part(i) == Some(Part::Source)) else {
            self.violate("config sync settled with no source".into());
            return;
        };
        let (source, replica) = if s == 0 { (a, b) } else { (b, a) };
        let (status, reason) = source.machine.status();
        let views = source.machine.units();
        let mut found = Vec::new();
        let mut differ = 0;
        for view in views.iter().filter(|v| replica.named().contains(&v.id)) {
            let theirs = replica.kernel.units.get(&view.id);
            if source.kernel.units.get(&view.id) == theirs {
                continue;
            }
            differ += 1;
            let failed = view
                .last_result
                .as_ref()
                .is_some_and(|r| r.outcome != SyncOutcome::Applied);
            let says = matches!(
                reason,
                StatusReason::Failed { .. } | StatusReason::RolledBack { .. }
            );
            if !(failed && says) {
                found.push(format!(
                    "unit {} differs between the nodes after settling; the source's last result {:?}, its status {status} ({reason})",
                    view.id.name,
                    view.last_result.as_ref().map(|r| (r.outcome, &r.message))
                ));
            }
        }
        if differ == 0 && *reason != StatusReason::InSync {
            found.push(format!(
                "every unit is equal after settling but the source's status is {status} ({reason})"
            ));
        }
        for what in found {
            self.violate(what);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use failoverd_core::NodeConfig;
    use failoverd_core::config_sync::{ActionId, ConfigSyncConfig, Mode};
    use failoverd_wire::{ConfigVersions, NodeId, UnitId, UnitKind};

    use super::*;
    use crate::{Kernel, LinkFaults};

    /// A synchronized pair with config sync, A (node 0) the source holding `ours` in its
    /// one unit, B the replica.
    fn settled(ours: &[u8]) -> (Pair, UnitId) {
        let id = UnitId {
            kind: UnitKind::Nftables,
            name: "inet filter".into(),
        };
        let configs = [(1, 200), (2, 100)].map(|(n, priority)| NodeConfig {
            node_id: NodeId(n),
            priority,
            seed: n.into(),
            ..NodeConfig::default()
        });
        let mut pair = Pair::new(configs, LinkFaults::clean(Duration::from_micros(100)), 1);
        let config = ConfigSyncConfig {
            mode: Mode::Auto,
            units: vec![id.clone()],
            versions: ConfigVersions {
                failoverd: "0.1.0".into(),
                schema: 1,
                backends: Vec::new(),
            },
            compare_interval: Duration::from_millis(300),
            repair_after: 2,
            max_unit_bytes: 1 << 20,
            confirm_window: Duration::from_millis(300),
            retry_after: Duration::from_millis(500),
            coalesce: Duration::from_millis(20),
            seed: 1,
        };
        let kernels = [Some(ours), None].map(|content| Kernel {
            units: content
                .map(|c| (id.clone(), c.to_vec()))
                .into_iter()
                .collect(),
            ..Kernel::default()
        });
        pair.enable_config_sync([config.clone(), config], kernels);
        pair.run_for(Duration::from_secs(2));
        assert_eq!(pair.config_part(1), Some(Part::Replica));
        assert!(pair.violations.is_empty(), "{:#?}", pair.violations);
        (pair, id)
    }

    #[test]
    fn an_apply_of_content_the_source_never_read_is_a_violation() {
        let (mut pair, id) = settled(b"table inet filter {}\n");
        let apply = |content: &[u8]| ConfigAction::Apply {
            id: ActionId(7),
            units: vec![(id.clone(), Some(content.to_vec()))],
        };
        // The control: what the source read.
        pair.check_config_action(1, &apply(b"table inet filter {}\n"));
        assert!(pair.violations.is_empty(), "{:#?}", pair.violations);
        pair.check_config_action(1, &apply(b"table inet filter { chain x {} }\n"));
        assert!(
            pair.violations[0].contains("never read"),
            "{:#?}",
            pair.violations
        );
        // And nothing applies on the source.
        pair.check_config_action(0, &apply(b"table inet filter {}\n"));
        assert!(
            pair.violations[1].contains("not the replica"),
            "{:#?}",
            pair.violations
        );
    }
}
