//! The "tables equal" check of the end-to-end tests, on two real kernel tables (the lab's
//! firewalls, no daemon): it must see every field of the shared list
//! (`failoverd_backends::session::conformance::ComparedFields`), here a connection label and a
//! status bit set on one node only, and nothing else: equal sessions compare equal although each
//! kernel stamps a different owner into the mark.
//!
//! Needs root and the programs of the tool table (`crates/lab/tools.txt`); without them each test
//! prints "skipped: ..." and passes, except under `CI=true`, where it fails.

use failoverd_lab as support;

use std::collections::BTreeSet;

use failoverd_backends::sample_record;
use failoverd_backends::session::conformance::{TableDifferences, table_differences};
use failoverd_wire::{NodeId, SessionRecord};
use support::{Firewall, Lab, require_root_and_tools, tables};

const NODE_A: NodeId = NodeId(1);
const NODE_B: NodeId = NodeId(2);
const IPS_ASSURED: u32 = 1 << 2;

/// Where B's copies of `records` differ from A's.
fn differences(lab: &Lab, records: &[SessionRecord]) -> TableDifferences {
    let wanted: BTreeSet<_> = records.iter().map(|r| r.key).collect();
    let [a, b] = [Firewall::A, Firewall::B].map(|fw| {
        let table: Vec<SessionRecord> = lab
            .sessions(fw)
            .into_iter()
            .filter(|r| wanted.contains(&r.key))
            .collect();
        assert_eq!(table.len(), records.len(), "{fw:?} holds every session");
        table
    });
    table_differences(&a, &b)
}

#[test]
fn a_label_or_status_bit_on_one_node_only_is_a_difference() {
    if !require_root_and_tools() {
        return;
    }
    let lab = Lab::up();
    // TCP, UDP and ICMP, IPv4 and IPv6, with NAT and marks: A's own, and B's copies of them.
    let records: Vec<SessionRecord> = (0..6).map(|i| sample_record(i, NODE_A)).collect();
    tables::write(&lab, Firewall::A, NODE_A, &records);
    tables::write(&lab, Firewall::B, NODE_B, &records);
    // The kernels do differ, in the owner stamp: A's entries say "this node's", B's "the peer's".
    let (local, peer) = tables::owner_stamps();
    for (fw, stamp) in [(Firewall::A, local), (Firewall::B, peer)] {
        let stamps: BTreeSet<u32> = lab
            .conntrack(fw)
            .iter()
            .filter(|e| records.iter().any(|r| e.flow() == tables::flow(&r.key)))
            .map(|e| e.owner_stamp)
            .collect();
        assert_eq!(stamps, BTreeSet::from([stamp]), "{fw:?}'s owner stamps");
    }
    let equal = differences(&lab, &records);
    assert!(equal.is_empty(), "equal tables differ: {equal:?}");

    // A label on A's entry only (the lab's ruleset lets the kernel hold labels)...
    let mut labelled = records[0].clone();
    labelled.labels[0] = 0x01;
    tables::write(&lab, Firewall::A, NODE_A, std::slice::from_ref(&labelled));
    // ... and a session B holds without ASSURED (the kernel never clears it: a new one).
    let assured = sample_record(6, NODE_A);
    let mut unassured = assured.clone();
    unassured.status &= !IPS_ASSURED;
    tables::write(&lab, Firewall::A, NODE_A, std::slice::from_ref(&assured));
    tables::write(&lab, Firewall::B, NODE_B, &[unassured]);

    let found = differences(&lab, &[records, vec![assured.clone()]].concat());
    assert_eq!(
        found,
        TableDifferences {
            only_in_a: vec![],
            only_in_b: vec![],
            different: vec![labelled.key, assured.key],
        },
        "both differences seen"
    );
}
