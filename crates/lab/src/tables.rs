//! Kernel conntrack tables as failoverd's own backend reads them, and the one "tables equal"
//! check: [`differences`], on the field list the conformance suite and the simulation compare
//! (`failoverd_backends::session::conformance::ComparedFields`).

use std::collections::BTreeMap;

use failoverd_backends::session::conformance::{ComparedFields, table_differences};
use failoverd_backends::{ConntrackBackend, ConntrackConfig, OwnerMark, SessionBackend};
use failoverd_wire::{NodeId, SessionKey, SessionOp, SessionRecord, proto_name};

use crate::conntrack::{Flow, Tuple, owner_mark};
use crate::{Firewall, Lab, netns};

/// The two stamps of [`owner_mark`] as a kernel mark carries them: (this node's, the peer's);
/// the lower bit says "this node's".
pub fn owner_stamps() -> (u32, u32) {
    let mask = owner_mark().mask();
    let local = mask & mask.wrapping_neg();
    (local, mask & !local)
}

/// The sessions of namespace `ns`'s kernel table (what a daemon would replicate: loopback and
/// multicast left out), read by failoverd's conntrack backend, without the owner stamp in the
/// mark: the owner is each node's bookkeeping, not a compared field.
pub fn read(ns: &str) -> Vec<SessionRecord> {
    let records = netns::run_in(ns, || {
        // Stamps off: a backend with stamps writes its own into the unstamped entries it dumps,
        // and would take the peer's copies for its own.
        let config = ConntrackConfig {
            owner_mark: OwnerMark::OFF,
            event_buffer_bytes: 1 << 20,
            ..ConntrackConfig::default()
        };
        let mut backend = ConntrackBackend::open(config, NodeId(0), None)?;
        backend.dump()
    })
    .unwrap_or_else(|e| panic!("{ns}: dump the conntrack table: {e}"));
    let stamp = owner_mark().mask();
    records
        .into_iter()
        .map(|mut record| {
            record.mark &= !stamp;
            record
        })
        .collect()
}

/// Writes `records` into `fw`'s kernel through failoverd's conntrack backend as node `local`,
/// with the daemons' owner mark: records of `local` are stamped as its own, the others as the
/// peer's copies.
pub fn write(lab: &Lab, fw: Firewall, local: NodeId, records: &[SessionRecord]) {
    let ops: Vec<SessionOp> = records.iter().cloned().map(SessionOp::Upsert).collect();
    let report = lab.run_in(fw, || {
        let config = ConntrackConfig {
            owner_mark: owner_mark(),
            ..ConntrackConfig::default()
        };
        let mut backend = ConntrackBackend::open(config, local, None).expect("open the backend");
        backend.apply(&ops)
    });
    assert!(
        report.failed.is_empty() && report.applied == ops.len(),
        "{fw:?}: {report:?}"
    );
}

/// The flow of a session, as the text listings name it (the zone aside); `None` for protocols
/// they do not name.
pub fn flow(key: &SessionKey) -> Option<Flow> {
    let proto = match proto_name(key.l4proto) {
        "other" => return None,
        name => name,
    };
    let orig = key.orig;
    Some(Flow {
        proto,
        orig: Tuple {
            src: orig.src,
            dst: orig.dst,
            sport: orig.src_port,
            dport: orig.dst_port,
        },
    })
}

/// The sessions of `records` whose flow `keep` accepts.
pub fn select(records: Vec<SessionRecord>, keep: impl Fn(&Flow) -> bool) -> Vec<SessionRecord> {
    records
        .into_iter()
        .filter(|r| flow(&r.key).is_some_and(|f| keep(&f)))
        .collect()
}

/// How table `b` differs from `a` on the compared fields ([`table_differences`]): for each kind
/// (only in A, only in B, different) its count and at most `limit` of its sessions with their
/// compared fields. Empty when the tables are equal.
pub fn differences(a: &[SessionRecord], b: &[SessionRecord], limit: usize) -> Vec<String> {
    let found = table_differences(a, b);
    let index = |records: &[SessionRecord]| -> BTreeMap<SessionKey, ComparedFields> {
        records
            .iter()
            .map(|r| (r.key, ComparedFields::of(r)))
            .collect()
    };
    let (in_a, in_b) = (index(a), index(b));
    let mut out = Vec::new();
    for (kind, keys) in [
        ("only in A", &found.only_in_a),
        ("only in B", &found.only_in_b),
        ("different", &found.different),
    ] {
        if keys.is_empty() {
            continue;
        }
        out.push(format!("{} {kind}", keys.len()));
        for key in keys.iter().take(limit) {
            out.push(format!("{kind}: {key}"));
            for (table, fields) in [("A", in_a.get(key)), ("B", in_b.get(key))] {
                if let Some(fields) = fields {
                    out.push(format!("  {table}: {fields:?}"));
                }
            }
        }
    }
    out
}
