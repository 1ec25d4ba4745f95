//! The [`SessionBackend`] contract as tests: every backend runs every rule.
//!
//! A backend's tests implement [`Harness`] (how to make local activity, fill the table, lose
//! events) and instantiate one `#[test]` per rule with [`session_backend_conformance!`]:
//!
//! ```ignore
//! failoverd_backends::session_backend_conformance!(MyHarness::new);
//! ```
//!
//! Each rule is also a public function taking the harness constructor, for a backend that needs
//! to run them its own way. Rules start from a fresh, empty table. Outside this crate the module
//! needs the `conformance` feature.
//!
//! [`session_backend_conformance!`]: crate::session_backend_conformance
//!
//! Why one file of about 1,000 lines: it is the contract, one test per rule, read top to
//! bottom by whoever writes a backend.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::pin::pin;
use std::task::{Context, Waker};

use failoverd_wire::{NodeId, SessionKey, SessionOp, SessionRecord, TcpState, Tuple};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use super::{ApplyError, ApplyReport, BackendError, LocalError, SessionBackend, sample_record};

/// `IPS_*` status bits that say something about the session itself, the same on every node
/// that holds it: SEEN_REPLY, ASSURED and the NAT bits (derived by the kernel from the NAT both
/// nodes carry). The rest are the table's own: CONFIRMED, DYING, EXPECTED, TEMPLATE, UNTRACKED,
/// SEQ_ADJUST (derived from the sequence adjustment), FIXED_TIMEOUT, HELPER and the offload bits.
pub const COMPARED_STATUS: u32 = (1 << 1) // SEEN_REPLY
    | (1 << 2) // ASSURED
    | (1 << 4) // SRC_NAT
    | (1 << 5) // DST_NAT
    | (1 << 7) // SRC_NAT_DONE
    | (1 << 8); // DST_NAT_DONE

/// The fields on which two nodes' copies of a session must agree: the one list every "tables
/// equal" check compares (these rules, the simulation's settled pair, the end-to-end tests'
/// kernel tables). Left out is what each table keeps for itself: the timeout (counted down
/// locally), counters, id and use count (not in a record), the owner (each node's bookkeeping,
/// compared separately where it matters) and the status bits outside [`COMPARED_STATUS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ComparedFields {
    /// Zone, protocol and original tuple.
    pub key: SessionKey,
    /// The reply tuple: NAT.
    pub reply: Tuple,
    /// The connection mark.
    pub mark: u32,
    /// The connection labels.
    pub labels: [u8; 16],
    /// The status bits in [`COMPARED_STATUS`].
    pub status: u32,
    /// The TCP tracking state (not the window flags: a kernel adds its own).
    pub tcp_state: TcpState,
}

impl ComparedFields {
    /// The compared fields of `record`.
    pub fn of(record: &SessionRecord) -> Self {
        Self {
            key: record.key,
            reply: record.reply,
            mark: record.mark,
            labels: record.labels,
            status: record.status & COMPARED_STATUS,
            tcp_state: record.tcp.state,
        }
    }
}

/// Where two tables differ on the compared fields: the sessions only `a` holds, those only `b`
/// holds, and those both hold with different fields, by key, sorted. Empty when the tables are
/// equal.
pub fn table_differences<'r>(
    a: impl IntoIterator<Item = &'r SessionRecord>,
    b: impl IntoIterator<Item = &'r SessionRecord>,
) -> TableDifferences {
    let index = |records: &mut dyn Iterator<Item = &'r SessionRecord>| {
        records
            .map(|r| (r.key, ComparedFields::of(r)))
            .collect::<BTreeMap<_, _>>()
    };
    let a = index(&mut a.into_iter());
    let b = index(&mut b.into_iter());
    let mut differences = TableDifferences::default();
    for (key, fields) in &a {
        match b.get(key) {
            None => differences.only_in_a.push(*key),
            Some(other) if other != fields => differences.different.push(*key),
            Some(_) => {}
        }
    }
    differences.only_in_b = b.keys().filter(|k| !a.contains_key(k)).copied().collect();
    differences
}

/// See [`table_differences`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableDifferences {
    /// Sessions only the first table holds.
    pub only_in_a: Vec<SessionKey>,
    /// Sessions only the second table holds.
    pub only_in_b: Vec<SessionKey>,
    /// Sessions both hold, with different compared fields.
    pub different: Vec<SessionKey>,
}

impl TableDifferences {
    /// The tables are equal on the compared fields.
    pub fn is_empty(&self) -> bool {
        self.only_in_a.is_empty() && self.only_in_b.is_empty() && self.different.is_empty()
    }
}

/// What a backend's tests provide so the rules can drive it.
pub trait Harness {
    /// The backend under test.
    type Backend: SessionBackend;

    /// The backend, for the calls the rules make on behalf of the core.
    fn backend(&mut self) -> &mut Self::Backend;

    /// Makes local activity create `record` (the backend then owns it locally, whatever owner the
    /// record carries). A kernel harness creates it from a socket other than the backend's, so
    /// that the kernel reports it as local.
    fn local_create(&mut self, record: SessionRecord) -> Result<(), LocalError>;

    /// Makes local activity update the entry with `record`'s key to `record`.
    fn local_update(&mut self, record: SessionRecord) -> Result<(), LocalError>;

    /// Makes local activity delete the entry with this key.
    fn local_delete(&mut self, key: &SessionKey) -> Result<(), LocalError>;

    /// Makes the table refuse new entries once it holds `entries` more of them. A kernel
    /// harness fills its own namespace up to `entries` below the host's `nf_conntrack_max`
    /// with entries the backend does not replicate (never lowering the host-wide limit), so
    /// `count` includes them and dumps leave them out.
    fn set_capacity(&mut self, entries: usize);

    /// Whether [`set_capacity`](Self::set_capacity) is cheap enough for every random history.
    /// A kernel harness fills a namespace to the host's limit (a second or two) and every later
    /// dump walks the fillers: its random histories run without a limit, and the rules that set
    /// one once cover full tables.
    const CHEAP_CAPACITY: bool = true;

    /// Makes the backend lose change events, so that its next `poll_changes` reports an overrun.
    fn force_overrun(&mut self);

    /// Fills the table by local activity up to the limit it has anyway, without lowering it,
    /// and returns the key of one filler (deleting it makes room for one entry). A kernel
    /// harness fills its own network namespace up to the unchanged, host-wide
    /// `nf_conntrack_max` (the count is per namespace) with entries the backend does not
    /// replicate, so dumps leave them out; the memory harness sets a limit of its own. The
    /// fillers' change events are consumed.
    fn fill_to_limit(&mut self) -> SessionKey;

    /// The `i`-th test record, owned by `owner`; distinct `i` give distinct keys (and distinct
    /// reply tuples, which a kernel also requires). The default is [`sample_record`].
    fn sample_record(&self, i: u32, owner: NodeId) -> SessionRecord {
        sample_record(i, owner)
    }

    /// Maps a record to the form the rules compare. A table that changes some fields on its own
    /// (a kernel counts timeouts down and sets status bits) clears them here; the default keeps
    /// every field.
    fn normalize(&self, record: SessionRecord) -> SessionRecord {
        record
    }

    /// Waits until every change made so far has reached the backend's event stream. The default
    /// returns at once, right for a backend that queues events synchronously; a kernel harness
    /// waits for its events to arrive.
    fn settle(&mut self) {}

    /// Whether `backend().changed()` resolves. The default polls it once with a no-op waker,
    /// right for a backend whose future is ready synchronously; a backend whose future needs a
    /// runtime drives it in one, with a timeout.
    fn changed_is_ready(&mut self) -> bool {
        let changed = pin!(self.backend().changed());
        changed
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_ready()
    }
}

/// Instantiates one `#[test]` per conformance rule, each calling the rule with `$make`, a path
/// or closure that returns a fresh [`Harness`].
#[macro_export]
macro_rules! session_backend_conformance {
    ($make:expr) => {
        $crate::session_backend_conformance!(@rules $make;
            dump_returns_what_was_created,
            apply_creates_and_replaces,
            apply_removes_entries_of_the_named_owner,
            apply_never_removes_another_owners_entry,
            apply_remove_of_a_missing_key_is_not_found,
            apply_is_not_echoed,
            apply_remove_any_deletes_whoever_owns,
            local_changes_are_reported_in_order,
            local_activity_takes_ownership,
            failed_local_commands_change_nothing,
            a_full_table_refuses_only_new_entries,
            a_table_filled_to_its_own_limit_refuses_until_room_is_made,
            an_overrun_is_reported_once_then_events_flow,
            sweep_removes_only_stale_entries_of_the_owner,
            adopt_moves_ownership,
            changed_resolves_when_changes_are_pending,
            a_large_batch_applies_completely,
            random_histories_match_the_model,
        );
    };
    (@rules $make:expr; $($rule:ident),+ $(,)?) => {
        $(
            #[test]
            fn $rule() {
                $crate::session::conformance::$rule($make);
            }
        )+
    };
}

/// The node the rules play the peer of the backend's local node.
fn peer_of(local: NodeId) -> NodeId {
    NodeId(local.0 ^ 0x5a5a_5a5a)
}

fn normalize_op<H: Harness>(h: &H, op: SessionOp) -> SessionOp {
    match op {
        SessionOp::Upsert(record) => SessionOp::Upsert(h.normalize(record)),
        remove => remove,
    }
}

/// Every pending change event, normalized; panics on an error.
fn drain<H: Harness>(h: &mut H) -> Vec<SessionOp> {
    h.settle();
    let mut out = Vec::new();
    loop {
        match h.backend().poll_changes(&mut out, 1024) {
            Ok(0) => break,
            Ok(_) => {}
            Err(error) => panic!("poll_changes failed: {error}"),
        }
    }
    out.into_iter().map(|op| normalize_op(h, op)).collect()
}

/// The table, normalized and sorted by key.
fn dump<H: Harness>(h: &mut H) -> Vec<SessionRecord> {
    let records = h.backend().dump().expect("dump");
    let mut records: Vec<_> = records.into_iter().map(|r| h.normalize(r)).collect();
    records.sort_by_key(|r| r.key);
    records
}

/// `records`, normalized and sorted by key.
fn expect<H: Harness>(
    h: &H,
    records: impl IntoIterator<Item = SessionRecord>,
) -> Vec<SessionRecord> {
    let mut records: Vec<_> = records.into_iter().map(|r| h.normalize(r)).collect();
    records.sort_by_key(|r| r.key);
    records
}

fn count<H: Harness>(h: &mut H) -> usize {
    h.backend().count().expect("count")
}

fn apply<H: Harness>(h: &mut H, ops: &[SessionOp]) -> ApplyReport {
    let report = h.backend().apply(ops);
    h.settle();
    report
}

fn report(applied: usize, not_found: usize, skipped_not_owner: usize) -> ApplyReport {
    ApplyReport {
        applied,
        not_found,
        skipped_not_owner,
        failed: Vec::new(),
    }
}

fn owned_by(mut record: SessionRecord, owner: NodeId) -> SessionRecord {
    record.owner = owner;
    record
}

fn remove(record: &SessionRecord, owner: NodeId) -> SessionOp {
    SessionOp::Remove {
        key: record.key,
        owner,
    }
}

/// `dump` returns every entry, field by field: created locally (owned by the local node, whatever
/// the record said) and applied for the peer, IPv4 and IPv6, TCP, UDP and ICMP.
pub fn dump_returns_what_was_created<H: Harness>(mut make: impl FnMut() -> H) {
    let mut h = make();
    let local = h.backend().local_node();
    let peer = peer_of(local);
    assert_eq!(dump(&mut h), []);
    let mut want = Vec::new();
    for i in 0..6 {
        let record = h.sample_record(i, peer);
        h.local_create(record.clone()).expect("local create");
        want.push(owned_by(record, local));
    }
    let applied: Vec<_> = (6..12).map(|i| h.sample_record(i, peer)).collect();
    let ops: Vec<_> = applied.iter().cloned().map(SessionOp::Upsert).collect();
    assert_eq!(apply(&mut h, &ops), report(6, 0, 0));
    want.extend(applied);
    let want = expect(&h, want);
    assert_eq!(dump(&mut h), want);
    assert_eq!(count(&mut h), 12);
}

/// `Upsert` creates an entry, and replaces every field (owner included) of an existing one
/// without error, also within one batch.
pub fn apply_creates_and_replaces<H: Harness>(mut make: impl FnMut() -> H) {
    let mut h = make();
    let local = h.backend().local_node();
    let peer = peer_of(local);
    let first = h.sample_record(1, peer);
    let mut second = h.sample_record(2, peer);
    assert_eq!(
        apply(
            &mut h,
            &[
                SessionOp::Upsert(first.clone()),
                SessionOp::Upsert(second.clone())
            ]
        ),
        report(2, 0, 0)
    );
    assert_eq!(dump(&mut h), expect(&h, [first.clone(), second.clone()]));

    let mut replaced = h.sample_record(1, local);
    replaced.mark = 0xdead;
    replaced.timeout_secs = 7;
    replaced.tcp.state = TcpState::FIN_WAIT;
    second.mark = 1;
    let mut again = second.clone();
    again.mark = 2;
    let ops = [
        SessionOp::Upsert(replaced.clone()),
        SessionOp::Upsert(second),
        SessionOp::Upsert(again.clone()),
    ];
    assert_eq!(apply(&mut h, &ops), report(3, 0, 0));
    assert_eq!(dump(&mut h), expect(&h, [replaced, again]));
}

/// `Remove` deletes an entry when it names the entry's owner, the peer's or the local node's.
pub fn apply_removes_entries_of_the_named_owner<H: Harness>(mut make: impl FnMut() -> H) {
    let mut h = make();
    let local = h.backend().local_node();
    let peer = peer_of(local);
    let theirs = h.sample_record(0, peer);
    let ours = h.sample_record(1, local);
    let kept = h.sample_record(2, peer);
    let ops: Vec<_> = [&theirs, &ours, &kept]
        .map(|r| SessionOp::Upsert(r.clone()))
        .into();
    apply(&mut h, &ops);
    let ops = [remove(&theirs, peer), remove(&ours, local)];
    assert_eq!(apply(&mut h, &ops), report(2, 0, 0));
    assert_eq!(dump(&mut h), expect(&h, [kept]));
}

/// A `Remove` naming another owner than the entry's leaves the entry (`skipped_not_owner`): a
/// node never deletes an entry another node owns.
pub fn apply_never_removes_another_owners_entry<H: Harness>(mut make: impl FnMut() -> H) {
    let mut h = make();
    let local = h.backend().local_node();
    let peer = peer_of(local);
    let ours = h.sample_record(0, local);
    h.local_create(ours.clone()).expect("local create");
    let theirs = h.sample_record(1, peer);
    apply(&mut h, &[SessionOp::Upsert(theirs.clone())]);
    let ops = [remove(&ours, peer), remove(&theirs, local)];
    assert_eq!(apply(&mut h, &ops), report(0, 0, 2));
    assert_eq!(dump(&mut h), expect(&h, [ours, theirs]));
}

/// `RemoveAny` deletes the entry whoever owns it (a session that ended on the active peer); a
/// missing key is `not_found`.
pub fn apply_remove_any_deletes_whoever_owns<H: Harness>(mut make: impl FnMut() -> H) {
    let mut h = make();
    let local = h.backend().local_node();
    let peer = peer_of(local);
    let ours = h.sample_record(0, local);
    h.local_create(ours.clone()).expect("local create");
    drain(&mut h);
    let theirs = h.sample_record(1, peer);
    apply(&mut h, &[SessionOp::Upsert(theirs.clone())]);
    let missing = h.sample_record(2, peer);
    let ops = [ours.key, theirs.key, missing.key].map(|key| SessionOp::RemoveAny { key });
    assert_eq!(apply(&mut h, &ops), report(2, 1, 0));
    assert_eq!(count(&mut h), 0);
    assert_eq!(drain(&mut h), [], "not echoed");
}

/// A `Remove` of a key that is not in the table counts as `not_found`, not as a failure, and
/// the rest of the batch is applied.
pub fn apply_remove_of_a_missing_key_is_not_found<H: Harness>(mut make: impl FnMut() -> H) {
    let mut h = make();
    let peer = peer_of(h.backend().local_node());
    let missing = h.sample_record(0, peer);
    let present = h.sample_record(1, peer);
    let ops = [
        remove(&missing, peer),
        SessionOp::Upsert(present.clone()),
        remove(&missing, peer),
    ];
    assert_eq!(apply(&mut h, &ops), report(1, 2, 0));
    assert_eq!(dump(&mut h), expect(&h, [present]));
}

/// Nothing `apply` does is reported by `poll_changes` (no echo), and neither are sweeps and
/// adoptions.
pub fn apply_is_not_echoed<H: Harness>(mut make: impl FnMut() -> H) {
    let mut h = make();
    let local = h.backend().local_node();
    let peer = peer_of(local);
    let records: Vec<_> = (0..6).map(|i| h.sample_record(i, peer)).collect();
    let mut ops: Vec<_> = records.iter().cloned().map(SessionOp::Upsert).collect();
    let mut updated = records[0].clone();
    updated.mark = 77;
    ops.push(SessionOp::Upsert(updated));
    ops.push(remove(&records[1], peer));
    apply(&mut h, &ops);
    h.backend().adopt(peer, local).expect("adopt");
    h.backend()
        .sweep(local, &HashSet::from([records[2].key]))
        .expect("sweep");
    assert_eq!(drain(&mut h), []);
    assert_eq!(count(&mut h), 1);
}

/// Local creates, updates and deletes are reported in the order they happened, creates and
/// updates as `Upsert` of the whole record owned by the local node, deletes as
/// `Remove { key, owner }` with the entry's owner; `max` bounds each poll and `Ok(0)` means nothing is pending.
pub fn local_changes_are_reported_in_order<H: Harness>(mut make: impl FnMut() -> H) {
    let mut h = make();
    let local = h.backend().local_node();
    let a = h.sample_record(0, local);
    let b = h.sample_record(1, local);
    let c = h.sample_record(2, local);
    let mut a2 = a.clone();
    a2.mark = 99;
    a2.tcp.state = TcpState::TIME_WAIT;
    h.local_create(a.clone()).expect("create a");
    h.local_create(b.clone()).expect("create b");
    h.local_update(a2.clone()).expect("update a");
    h.local_delete(&b.key).expect("delete b");
    h.local_create(c.clone()).expect("create c");
    h.settle();

    let mut out = Vec::new();
    assert_eq!(h.backend().poll_changes(&mut out, 0).expect("poll"), 0);
    assert_eq!(h.backend().poll_changes(&mut out, 2).expect("poll"), 2);
    assert_eq!(out.len(), 2);
    let mut got: Vec<_> = out.into_iter().map(|op| normalize_op(&h, op)).collect();
    got.extend(drain(&mut h));
    let want = [
        SessionOp::Upsert(a),
        SessionOp::Upsert(b.clone()),
        SessionOp::Upsert(a2.clone()),
        remove(&b, local),
        SessionOp::Upsert(c.clone()),
    ]
    .map(|op| normalize_op(&h, op));
    assert_eq!(got, want);
    assert_eq!(
        h.backend().poll_changes(&mut Vec::new(), 10).expect("poll"),
        0
    );
    assert_eq!(dump(&mut h), expect(&h, [a2, c]));
}

/// Local activity on an entry the peer owns makes it locally owned (ownership follows traffic):
/// an update stores and reports it with the local owner; a delete is reported with the owner the
/// entry had, so the core can tell an expiring copy from a session that ended.
pub fn local_activity_takes_ownership<H: Harness>(mut make: impl FnMut() -> H) {
    let mut h = make();
    let local = h.backend().local_node();
    let peer = peer_of(local);
    let updated = h.sample_record(0, peer);
    let deleted = h.sample_record(1, peer);
    let ops = [
        SessionOp::Upsert(updated.clone()),
        SessionOp::Upsert(deleted.clone()),
    ];
    apply(&mut h, &ops);
    let mut touched = updated.clone();
    touched.tcp.state = TcpState::CLOSE_WAIT;
    h.local_update(touched.clone()).expect("local update");
    h.local_delete(&deleted.key).expect("local delete");
    let touched = owned_by(touched, local);
    let want =
        [SessionOp::Upsert(touched.clone()), remove(&deleted, peer)].map(|op| normalize_op(&h, op));
    assert_eq!(drain(&mut h), want);
    assert_eq!(dump(&mut h), expect(&h, [touched.clone()]));
    // The entry is ours now: the peer's remove no longer deletes it.
    assert_eq!(apply(&mut h, &[remove(&touched, peer)]), report(0, 0, 1));
}

/// A local create of an existing key, and a local update or delete of a missing one, fail and
/// change nothing, and report nothing.
pub fn failed_local_commands_change_nothing<H: Harness>(mut make: impl FnMut() -> H) {
    let mut h = make();
    let local = h.backend().local_node();
    let present = h.sample_record(0, local);
    let missing = h.sample_record(1, local);
    h.local_create(present.clone()).expect("local create");
    drain(&mut h);
    let mut clash = present.clone();
    clash.mark = 5;
    assert_eq!(h.local_create(clash), Err(LocalError::Exists));
    assert_eq!(h.local_update(missing.clone()), Err(LocalError::NotFound));
    assert_eq!(h.local_delete(&missing.key), Err(LocalError::NotFound));
    assert_eq!(drain(&mut h), []);
    assert_eq!(dump(&mut h), expect(&h, [present]));
}

/// A full table refuses new entries, from `apply` (reported as `TableFull` with the op's index,
/// the rest of the batch still applied) and from local activity, but still replaces and deletes
/// existing ones; the table then holds exactly its capacity.
pub fn a_full_table_refuses_only_new_entries<H: Harness>(mut make: impl FnMut() -> H) {
    const CAPACITY: usize = 3;
    let mut h = make();
    let local = h.backend().local_node();
    let peer = peer_of(local);
    h.set_capacity(CAPACITY);
    let r: Vec<_> = (0..6).map(|i| h.sample_record(i, peer)).collect();
    let mut replaced = r[0].clone();
    replaced.mark = 1234;
    let ops = [
        SessionOp::Upsert(r[0].clone()),
        SessionOp::Upsert(r[1].clone()),
        SessionOp::Upsert(r[2].clone()),
        SessionOp::Upsert(r[3].clone()),
        SessionOp::Upsert(replaced.clone()),
        remove(&r[1], peer),
        SessionOp::Upsert(r[4].clone()),
        SessionOp::Upsert(r[5].clone()),
    ];
    let got = apply(&mut h, &ops);
    assert_eq!(
        got,
        ApplyReport {
            applied: 6,
            not_found: 0,
            skipped_not_owner: 0,
            failed: vec![(3, ApplyError::TableFull), (7, ApplyError::TableFull)],
        }
    );
    let local_new = h.sample_record(6, local);
    assert_eq!(h.local_create(local_new), Err(LocalError::TableFull));
    assert_eq!(drain(&mut h), []);
    assert_eq!(
        dump(&mut h),
        expect(&h, [replaced, r[2].clone(), r[4].clone()])
    );
}

/// A table filled up to the limit it has anyway (for a kernel, the unchanged `nf_conntrack_max`)
/// refuses a new entry from `apply` with `TableFull`, by index, and applies the rest of the
/// batch; the same op applies once local activity made room. The core retries refused ops on
/// that promise.
pub fn a_table_filled_to_its_own_limit_refuses_until_room_is_made<H: Harness>(
    mut make: impl FnMut() -> H,
) {
    let mut h = make();
    let peer = peer_of(h.backend().local_node());
    let existing = h.sample_record(0, peer);
    assert_eq!(
        apply(&mut h, &[SessionOp::Upsert(existing.clone())]),
        report(1, 0, 0)
    );
    let filler = h.fill_to_limit();
    let mut replaced = existing.clone();
    replaced.mark = 77;
    let new = h.sample_record(1, peer);
    let ops = [
        SessionOp::Upsert(new.clone()),
        SessionOp::Upsert(replaced.clone()),
    ];
    assert_eq!(
        apply(&mut h, &ops),
        ApplyReport {
            applied: 1,
            not_found: 0,
            skipped_not_owner: 0,
            failed: vec![(0, ApplyError::TableFull)],
        },
        "a full table refuses the new entry and still replaces the existing one"
    );
    let peers = |h: &mut H| -> Vec<_> { dump(h).into_iter().filter(|r| r.owner == peer).collect() };
    assert_eq!(peers(&mut h), expect(&h, [replaced.clone()]));
    h.local_delete(&filler).expect("delete a filler");
    assert_eq!(apply(&mut h, &ops), report(2, 0, 0), "room was made");
    assert_eq!(peers(&mut h), expect(&h, [new, replaced]));
}

/// A forced overrun surfaces as `Err(Overrun)` once, before any further event; then events flow
/// again, and a dump shows every entry, including those whose events were lost.
pub fn an_overrun_is_reported_once_then_events_flow<H: Harness>(mut make: impl FnMut() -> H) {
    let mut h = make();
    let local = h.backend().local_node();
    let created: Vec<_> = (0..4).map(|i| h.sample_record(i, local)).collect();
    for record in &created[..3] {
        h.local_create(record.clone()).expect("local create");
    }
    h.force_overrun();
    h.settle();
    let mut out = Vec::new();
    match h.backend().poll_changes(&mut out, 1024) {
        Err(BackendError::Overrun { .. }) => {}
        other => panic!("expected an overrun, got {other:?} with {out:?}"),
    }
    assert_eq!(out, []);
    // Once (`drain` panics on an error), and the events still queued at the overrun are not
    // delivered after it: the dump covers them, and they would roll the peer back.
    let stale = drain(&mut h);
    for record in &created[..3] {
        let op = normalize_op(&h, SessionOp::Upsert(record.clone()));
        assert!(!stale.contains(&op), "{op:?} delivered after the overrun");
    }
    h.local_create(created[3].clone()).expect("local create");
    let after = drain(&mut h);
    let want = normalize_op(&h, SessionOp::Upsert(created[3].clone()));
    assert!(after.contains(&want), "{after:?} lacks {want:?}");
    let table = dump(&mut h);
    for record in expect(&h, created) {
        assert!(table.contains(&record), "dump lacks {record:?}");
    }
    assert_eq!(table.len(), count(&mut h));
}

/// `sweep(owner, keep)` deletes the entries of `owner` whose key is not in `keep`, and nothing
/// else, and says how many it deleted.
pub fn sweep_removes_only_stale_entries_of_the_owner<H: Harness>(mut make: impl FnMut() -> H) {
    let mut h = make();
    let local = h.backend().local_node();
    let peer = peer_of(local);
    let ours: Vec<_> = (0..2).map(|i| h.sample_record(i, local)).collect();
    for record in &ours {
        h.local_create(record.clone()).expect("local create");
    }
    let theirs: Vec<_> = (2..6).map(|i| h.sample_record(i, peer)).collect();
    let ops: Vec<_> = theirs.iter().cloned().map(SessionOp::Upsert).collect();
    apply(&mut h, &ops);
    // `keep` also names one of our keys: that protects nothing of ours, ours are not swept.
    let keep = HashSet::from([theirs[0].key, theirs[3].key, ours[0].key]);
    assert_eq!(h.backend().sweep(peer, &keep).expect("sweep"), 2);
    let want = expect(
        &h,
        [
            ours[0].clone(),
            ours[1].clone(),
            theirs[0].clone(),
            theirs[3].clone(),
        ],
    );
    assert_eq!(dump(&mut h), want);
    assert_eq!(h.backend().sweep(peer, &keep).expect("sweep"), 0);
}

/// `adopt(from, to)` makes `to` the owner of every entry of `from`, and says how many; a later
/// `Remove` naming the old owner no longer deletes them, one naming the new owner does.
pub fn adopt_moves_ownership<H: Harness>(mut make: impl FnMut() -> H) {
    let mut h = make();
    let local = h.backend().local_node();
    let peer = peer_of(local);
    let ours = h.sample_record(0, local);
    h.local_create(ours.clone()).expect("local create");
    let theirs: Vec<_> = (1..4).map(|i| h.sample_record(i, peer)).collect();
    let ops: Vec<_> = theirs.iter().cloned().map(SessionOp::Upsert).collect();
    apply(&mut h, &ops);
    assert_eq!(h.backend().adopt(peer, local).expect("adopt"), 3);
    let adopted: Vec<_> = theirs.iter().cloned().map(|r| owned_by(r, local)).collect();
    let mut want = adopted.clone();
    want.push(ours);
    assert_eq!(dump(&mut h), expect(&h, want));
    let flush: Vec<_> = theirs.iter().map(|r| remove(r, peer)).collect();
    assert_eq!(apply(&mut h, &flush), report(0, 0, 3));
    assert_eq!(
        apply(&mut h, &[remove(&adopted[0], local)]),
        report(1, 0, 0)
    );
    assert_eq!(h.backend().adopt(peer, local).expect("adopt"), 0);
    assert_eq!(count(&mut h), 3);
}

/// `changed()` resolves while local changes are pending.
pub fn changed_resolves_when_changes_are_pending<H: Harness>(mut make: impl FnMut() -> H) {
    let mut h = make();
    let local = h.backend().local_node();
    let record = h.sample_record(0, local);
    h.local_create(record).expect("local create");
    h.settle();
    assert!(h.changed_is_ready());
    // Still ready after a partial poll: the rest is pending.
    let second = h.sample_record(1, local);
    h.local_create(second).expect("local create");
    h.settle();
    h.backend().poll_changes(&mut Vec::new(), 1).expect("poll");
    assert!(h.changed_is_ready());
}

/// A batch of 100 000 upserts applies completely, and so does a batch of as many removes.
pub fn a_large_batch_applies_completely<H: Harness>(mut make: impl FnMut() -> H) {
    const N: u32 = 100_000;
    let mut h = make();
    let peer = peer_of(h.backend().local_node());
    let records: Vec<_> = (0..N).map(|i| h.sample_record(i, peer)).collect();
    let ops: Vec<_> = records.iter().cloned().map(SessionOp::Upsert).collect();
    assert_eq!(apply(&mut h, &ops), report(N as usize, 0, 0));
    assert_eq!(count(&mut h), N as usize);
    assert_eq!(dump(&mut h), expect(&h, records.iter().cloned()));
    let ops: Vec<_> = records.iter().map(|r| remove(r, peer)).collect();
    assert_eq!(apply(&mut h, &ops), report(N as usize, 0, 0));
    assert_eq!(count(&mut h), 0);
    assert_eq!(drain(&mut h), []);
}

/// One step of a random history.
#[derive(Debug, Clone)]
enum Step {
    Create { key: u32, version: u32 },
    Update { key: u32, version: u32 },
    Delete { key: u32 },
    Apply(Vec<PeerOp>),
    Poll { max: usize },
}

/// An op of the peer's. Its upserts carry the peer as owner, as a peer's own changes do.
#[derive(Debug, Clone)]
enum PeerOp {
    Upsert { key: u32, version: u32 },
    Remove { key: u32, by_peer: bool },
}

/// Keys of a random history: few, so that ops collide.
const MODEL_KEYS: u32 = 6;

fn step_strategy() -> impl Strategy<Value = Step> {
    let key = || 0..MODEL_KEYS;
    let version = || 0..4_u32;
    let peer_op = prop_oneof![
        (key(), version()).prop_map(|(key, version)| PeerOp::Upsert { key, version }),
        (key(), any::<bool>()).prop_map(|(key, by_peer)| PeerOp::Remove { key, by_peer }),
    ];
    prop_oneof![
        3 => (key(), version()).prop_map(|(key, version)| Step::Create { key, version }),
        3 => (key(), version()).prop_map(|(key, version)| Step::Update { key, version }),
        2 => key().prop_map(|key| Step::Delete { key }),
        3 => proptest::collection::vec(peer_op, 1..5).prop_map(Step::Apply),
        1 => (0..4_usize).prop_map(|max| Step::Poll { max }),
    ]
}

/// The contract, written as simply as possible.
struct Model {
    local: NodeId,
    capacity: Option<usize>,
    table: BTreeMap<SessionKey, SessionRecord>,
}

impl Model {
    fn full(&self) -> bool {
        self.capacity.is_some_and(|c| self.table.len() >= c)
    }

    fn create(&mut self, mut record: SessionRecord) -> Result<SessionOp, LocalError> {
        record.owner = self.local;
        if self.table.contains_key(&record.key) {
            return Err(LocalError::Exists);
        }
        if self.full() {
            return Err(LocalError::TableFull);
        }
        self.table.insert(record.key, record.clone());
        Ok(SessionOp::Upsert(record))
    }

    fn update(&mut self, mut record: SessionRecord) -> Result<SessionOp, LocalError> {
        record.owner = self.local;
        let entry = self
            .table
            .get_mut(&record.key)
            .ok_or(LocalError::NotFound)?;
        *entry = record.clone();
        Ok(SessionOp::Upsert(record))
    }

    fn delete(&mut self, key: &SessionKey) -> Result<SessionOp, LocalError> {
        let entry = self.table.remove(key).ok_or(LocalError::NotFound)?;
        Ok(SessionOp::Remove {
            key: *key,
            owner: entry.owner,
        })
    }

    /// Applies `ops` with the trait's rules; also the receiving end of a change stream.
    fn apply(&mut self, ops: &[SessionOp]) -> ApplyReport {
        let mut report = ApplyReport::default();
        for (index, op) in ops.iter().enumerate() {
            match op {
                SessionOp::Upsert(record) => {
                    if !self.table.contains_key(&record.key) && self.full() {
                        report.failed.push((index, ApplyError::TableFull));
                    } else {
                        self.table.insert(record.key, record.clone());
                        report.applied += 1;
                    }
                }
                SessionOp::Remove { key, owner } => match self.table.get(key) {
                    None => report.not_found += 1,
                    Some(entry) if entry.owner != *owner => report.skipped_not_owner += 1,
                    Some(_) => {
                        self.table.remove(key);
                        report.applied += 1;
                    }
                },
                SessionOp::RemoveAny { key } => match self.table.remove(key) {
                    Some(_) => report.applied += 1,
                    None => report.not_found += 1,
                },
            }
        }
        report
    }
}

/// Random histories of local commands, peer batches and polls, with and without a size limit:
/// after every step the table equals a simple model (and so do every command's result and every
/// batch's report); the change stream is exactly the model's, and replayed onto an empty table it
/// reproduces the locally owned entries.
pub fn random_histories_match_the_model<H: Harness>(make: impl FnMut() -> H) {
    let make = RefCell::new(make);
    let capacity = if H::CHEAP_CAPACITY {
        prop_oneof![Just(None), (0..=MODEL_KEYS as usize).prop_map(Some)].boxed()
    } else {
        Just(None).boxed()
    };
    let history = (capacity, proptest::collection::vec(step_strategy(), 1..40));
    let mut runner = TestRunner::new(Config {
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&history, |(capacity, steps)| {
        let mut make = make.borrow_mut();
        check_history(&mut (*make)(), capacity, &steps)
    });
    if let Err(error) = result {
        panic!("{error}");
    }
}

fn check_history<H: Harness>(
    h: &mut H,
    capacity: Option<usize>,
    steps: &[Step],
) -> Result<(), TestCaseError> {
    let local = h.backend().local_node();
    let peer = peer_of(local);
    if let Some(entries) = capacity {
        h.set_capacity(entries);
    }
    let mut model = Model {
        local,
        capacity,
        table: BTreeMap::new(),
    };
    let record = |h: &H, key: u32, version: u32, owner: NodeId| {
        let mut record = h.sample_record(key, owner);
        record.mark = version;
        record
    };
    let mut expected_events = Vec::new();
    let mut events = Vec::new();
    // Keys whose last effective change was local: the stream speaks for exactly these.
    let mut last_local = BTreeSet::new();

    for step in steps {
        match *step {
            Step::Create { key, version } => {
                let r = record(h, key, version, peer);
                let want = model.create(r.clone());
                prop_assert_eq!(
                    h.local_create(r.clone()),
                    want.as_ref().map(drop).map_err(|e| *e)
                );
                if let Ok(op) = want {
                    expected_events.push(op);
                    last_local.insert(r.key);
                }
            }
            Step::Update { key, version } => {
                let r = record(h, key, version, peer);
                let want = model.update(r.clone());
                prop_assert_eq!(
                    h.local_update(r.clone()),
                    want.as_ref().map(drop).map_err(|e| *e)
                );
                if let Ok(op) = want {
                    expected_events.push(op);
                    last_local.insert(r.key);
                }
            }
            Step::Delete { key } => {
                let k = record(h, key, 0, local).key;
                let want = model.delete(&k);
                prop_assert_eq!(h.local_delete(&k), want.as_ref().map(drop).map_err(|e| *e));
                if let Ok(op) = want {
                    expected_events.push(op);
                    last_local.insert(k);
                }
            }
            Step::Apply(ref peer_ops) => {
                let ops: Vec<_> = peer_ops
                    .iter()
                    .map(|op| match *op {
                        PeerOp::Upsert { key, version } => {
                            SessionOp::Upsert(record(h, key, version, peer))
                        }
                        PeerOp::Remove { key, by_peer } => SessionOp::Remove {
                            key: record(h, key, 0, peer).key,
                            owner: if by_peer { peer } else { local },
                        },
                    })
                    .collect();
                let before = model.table.clone();
                let want = model.apply(&ops);
                prop_assert_eq!(apply(h, &ops), want);
                for op in &ops {
                    if before.get(op.key()) != model.table.get(op.key()) {
                        last_local.remove(op.key());
                    }
                }
            }
            Step::Poll { max } => {
                h.settle();
                let before = events.len();
                let n = h
                    .backend()
                    .poll_changes(&mut events, max)
                    .map_err(|e| TestCaseError::fail(format!("poll_changes: {e}")))?;
                prop_assert!(n <= max && events.len() == before + n);
            }
        }
        prop_assert_eq!(dump(h), expect(h, model.table.values().cloned()));
    }

    let mut events: Vec<_> = events.into_iter().map(|op| normalize_op(h, op)).collect();
    events.extend(drain(h));
    let expected_events: Vec<_> = expected_events
        .into_iter()
        .map(|op| normalize_op(h, op))
        .collect();
    prop_assert_eq!(&events, &expected_events);

    let mut replayed = Model {
        local: peer,
        capacity: None,
        table: BTreeMap::new(),
    };
    // Replayed as an active node's stream: its deletes speak for every copy, whoever owned it.
    let authoritative: Vec<_> = events
        .iter()
        .map(|op| match op {
            SessionOp::Remove { key, .. } => SessionOp::Remove {
                key: *key,
                owner: local,
            },
            upsert => upsert.clone(),
        })
        .collect();
    replayed.apply(&authoritative);
    let replayed = replayed
        .table
        .into_values()
        .filter(|r| last_local.contains(&r.key));
    let owned_locally = h.backend().dump().expect("dump");
    let owned_locally = owned_locally.into_iter().filter(|r| r.owner == local);
    prop_assert_eq!(expect(h, replayed), expect(h, owned_locally));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_compare_on_the_listed_fields_only() {
        let a = sample_record(1, NodeId(1));
        let mut local_only = a.clone();
        local_only.timeout_secs += 100;
        local_only.owner = NodeId(2);
        local_only.status ^= 1 << 3; // CONFIRMED
        local_only.tcp.flags_orig ^= 0x08; // a kernel's own window flag
        assert!(table_differences([&a], [&local_only]).is_empty());
        let changes: [fn(&mut SessionRecord); 6] = [
            |r| r.mark ^= 1,
            |r| r.labels[0] ^= 1,
            |r| r.status ^= 1 << 2, // ASSURED
            |r| r.tcp.state = TcpState(r.tcp.state.0 ^ 1),
            |r| r.reply.dst_port ^= 1,
            |r| r.key.zone ^= 1,
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut b = a.clone();
            change(&mut b);
            let differences = table_differences([&a], [&b]);
            assert!(!differences.is_empty(), "change {i} went unseen");
        }
        let other = sample_record(2, NodeId(1));
        let mut b = a.clone();
        b.mark ^= 1;
        assert_eq!(
            table_differences([&a, &other], [&b]),
            TableDifferences {
                only_in_a: vec![other.key],
                only_in_b: vec![],
                different: vec![a.key],
            }
        );
    }
}
