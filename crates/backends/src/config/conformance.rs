//! The [`ConfigBackend`] contract as tests: every configuration backend runs every rule.
//!
//! A backend's tests implement [`ConfigHarness`] (fresh nodes, sample units, content the
//! backend refuses, what lies outside its units) and instantiate one `#[test]` per rule with
//! [`config_backend_conformance!`]:
//!
//! ```ignore
//! failoverd_backends::config_backend_conformance!(MyHarness::new);
//! ```
//!
//! Outside this crate the module needs the `conformance` feature.
//!
//! [`config_backend_conformance!`]: crate::config_backend_conformance

use super::{ConfigBackend, ConfigError};

/// How the rules make nodes and units for one backend.
pub trait ConfigHarness {
    /// The backend under test.
    type Backend: ConfigBackend;

    /// A backend on a fresh environment of its own (a node: a network namespace, a temporary
    /// directory): two calls are two nodes, which share nothing.
    fn node(&mut self) -> Self::Backend;

    /// Two units every node's backend serves; they do not exist on a fresh node.
    fn units(&self) -> [String; 2];

    /// Valid content of unit `unit` (0 or 1) as a user would write it; variants 0 and 1 differ,
    /// and variant 0 holds something variant 1 lacks.
    fn sample(&self, unit: usize, variant: usize) -> Vec<u8>;

    /// Content of unit `unit` that the backend accepts to try and fails to apply (the kernel
    /// or the OS refuses it, not a syntax check).
    fn broken(&self, unit: usize) -> Vec<u8>;

    /// A unit name the backend does not serve.
    fn foreign(&self) -> String;

    /// What the backend must never touch on `node`'s environment (another table, a file beside
    /// the units), as bytes to compare before and after.
    fn outside(&mut self, node: &Self::Backend) -> Vec<u8>;
}

fn unit(content: Vec<u8>, name: &str) -> (String, Option<Vec<u8>>) {
    (name.to_owned(), Some(content))
}

fn read<B: ConfigBackend>(backend: &mut B, name: &str) -> Option<Vec<u8>> {
    backend
        .read(name)
        .unwrap_or_else(|err| panic!("reading {name}: {err}"))
}

/// A unit that was never created reads as absent, and removing it is no error.
pub fn absent_reads_none<H: ConfigHarness>(mut harness: H) {
    let [name, _] = harness.units();
    let mut node = harness.node();
    assert_eq!(read(&mut node, &name), None);
    node.apply(&[(name.clone(), None)])
        .expect("removing an absent unit");
    assert_eq!(read(&mut node, &name), None);
}

/// The canonical form is a fixpoint, and what another node reads after applying it: the
/// sync path (read on the source, apply on the standby, the standby's own read-back).
pub fn canonical_form_is_the_same_on_both_nodes<H: ConfigHarness>(mut harness: H) {
    let [name, _] = harness.units();
    let (mut source, mut standby) = (harness.node(), harness.node());
    source
        .apply(&[unit(harness.sample(0, 0), &name)])
        .expect("applying the sample");
    let canonical = read(&mut source, &name).expect("the applied unit exists");
    assert_eq!(
        read(&mut source, &name).as_ref(),
        Some(&canonical),
        "two reads differ"
    );
    standby
        .apply(&[unit(canonical.clone(), &name)])
        .expect("applying the canonical form");
    assert_eq!(
        read(&mut standby, &name),
        Some(canonical.clone()),
        "the standby's read-back differs from the source's"
    );
    source
        .apply(&[unit(canonical.clone(), &name)])
        .expect("re-applying the canonical form");
    assert_eq!(read(&mut source, &name), Some(canonical));
}

/// Applying a unit replaces all of it: what only the old content held is gone.
pub fn apply_replaces_the_whole_unit<H: ConfigHarness>(mut harness: H) {
    let [name, _] = harness.units();
    let (mut node, mut reference) = (harness.node(), harness.node());
    reference
        .apply(&[unit(harness.sample(0, 1), &name)])
        .expect("applying variant 1 on the reference node");
    let expected = read(&mut reference, &name);
    node.apply(&[unit(harness.sample(0, 0), &name)])
        .expect("applying variant 0");
    node.apply(&[unit(harness.sample(0, 1), &name)])
        .expect("applying variant 1 over it");
    assert_eq!(
        read(&mut node, &name),
        expected,
        "left-overs of variant 0 survived"
    );
}

/// Applying `None` removes the unit.
pub fn apply_none_removes<H: ConfigHarness>(mut harness: H) {
    let [name, _] = harness.units();
    let mut node = harness.node();
    node.apply(&[unit(harness.sample(0, 0), &name)])
        .expect("applying the sample");
    assert!(read(&mut node, &name).is_some());
    node.apply(&[(name.clone(), None)]).expect("removing it");
    assert_eq!(read(&mut node, &name), None);
}

/// A failed apply changes nothing, in any unit given: all or nothing, and says which unit.
pub fn a_failed_apply_changes_nothing<H: ConfigHarness>(mut harness: H) {
    let [first, second] = harness.units();
    let mut node = harness.node();
    node.apply(&[
        unit(harness.sample(0, 0), &first),
        unit(harness.sample(1, 0), &second),
    ])
    .expect("applying both samples");
    let before = (read(&mut node, &first), read(&mut node, &second));
    let outside = harness.outside(&node);
    let err = node
        .apply(&[
            unit(harness.sample(0, 1), &first),
            unit(harness.broken(1), &second),
        ])
        .expect_err("the broken unit must fail");
    assert!(
        matches!(&err, ConfigError::Apply { message, .. } if !message.is_empty()),
        "not an apply error with the underlying message: {err:?}"
    );
    assert_eq!(
        (read(&mut node, &first), read(&mut node, &second)),
        before,
        "a failed apply changed a unit"
    );
    assert_eq!(
        harness.outside(&node),
        outside,
        "a failed apply changed the rest"
    );
}

/// Units not given, and everything outside the backend's units, are never touched.
pub fn only_the_units_given_change<H: ConfigHarness>(mut harness: H) {
    let [first, second] = harness.units();
    let mut node = harness.node();
    let outside = harness.outside(&node);
    node.apply(&[
        unit(harness.sample(0, 0), &first),
        unit(harness.sample(1, 0), &second),
    ])
    .expect("applying both samples");
    let kept = read(&mut node, &second);
    node.apply(&[unit(harness.sample(0, 1), &first)])
        .expect("applying the first unit alone");
    assert_eq!(read(&mut node, &second), kept, "a unit not given changed");
    node.apply(&[(first.clone(), None), (second.clone(), None)])
        .expect("removing both");
    assert_eq!(harness.outside(&node), outside, "the rest changed");
}

/// A unit the backend does not serve is refused, for reading and applying.
pub fn a_foreign_unit_is_refused<H: ConfigHarness>(mut harness: H) {
    let foreign = harness.foreign();
    let mut node = harness.node();
    assert!(
        matches!(node.read(&foreign), Err(ConfigError::Refused { .. })),
        "reading {foreign} was not refused"
    );
    let content = harness.sample(0, 0);
    assert!(
        matches!(
            node.apply(&[unit(content, &foreign)]),
            Err(ConfigError::Refused { .. })
        ),
        "applying {foreign} was not refused"
    );
}

/// One `#[test]` per [`ConfigBackend`] rule, each with a fresh harness from `$harness` (an
/// expression of type `fn() -> impl ConfigHarness`, e.g. a constructor path; a block that
/// returns early skips the rule, as `session_backend_conformance!`'s callers do without root).
#[macro_export]
macro_rules! config_backend_conformance {
    ($harness:expr) => {
        $crate::config_backend_conformance!(@rules $harness;
            absent_reads_none,
            canonical_form_is_the_same_on_both_nodes,
            apply_replaces_the_whole_unit,
            apply_none_removes,
            a_failed_apply_changes_nothing,
            only_the_units_given_change,
            a_foreign_unit_is_refused,
        );
    };
    (@rules $harness:expr; $($rule:ident),+ $(,)?) => {
        $(
            #[test]
            fn $rule() {
                $crate::config::conformance::$rule(($harness)());
            }
        )+
    };
}
