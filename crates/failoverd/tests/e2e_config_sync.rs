//! End to end, in network namespaces: configuration sync of nftables tables (issue 13) between
//! two real daemons (A active and the configuration source, B the standby and replica), checked
//! with `nft` itself in each firewall's namespace and with `failoverctl config status|diff|sync
//! --json` and `failoverctl events --json` (the same requests on the control sockets).
//!
//! The tables a test syncs are its own (`inet cfg_*`); the lab's ruleset (`inet failoverd_lab`)
//! and the tables a test leaves out of `config_sync.nftables.tables` must never change.
//!
//! Needs root and the programs of the tool table (`crates/lab/tools.txt`); without them each test
//! prints "skipped: ..." and passes, except under `CI=true`, where it fails.
//!
//! The measurement (`measure_config_sync`, ignored by default) runs with
//! `cargo test -p failoverd --test e2e_config_sync -- --ignored --nocapture` (add `--release`
//! to measure a release daemon: the tests start the daemon of their own build).

use failoverd_lab as support;

use std::time::{Duration, Instant};

use failoverd_control::protocol::{
    ConfigSyncOutcome, ConfigSyncPart, ConfigSyncState, ConfigSyncStatus, ConfigUnitState,
    EventKind, FailoverState, Status,
};
use support::config_sync::{ConfigSyncOptions, unit, units_in_sync};
use support::daemon::{Daemon, DaemonOptions};
use support::nftables::sorted_elements;
use support::{Firewall, Lab, require_root_and_tools, wait_until};

use Firewall::{A, B};

/// The synced table every test uses.
const FILTER: &str = "inet cfg_filter";
/// A second synced table.
const EXTRA: &str = "ip cfg_extra";
/// How often the tests poll `nft`.
const POLL: Duration = Duration::from_millis(50);
/// Starting a pair and reaching Synchronization.
const START: Duration = Duration::from_secs(20);
/// A sync, an apply, a status update.
const SYNC: Duration = Duration::from_secs(10);

/// `table`'s body on the source: a set, a counter and two rules in a base chain that accepts
/// everything anyway (the lab's own table decides what passes).
const FILTER_BODY: &str = "\
	set allowed {
		type ipv4_addr
		elements = { 192.0.2.1, 192.0.2.2 }
	}

	chain input {
		type filter hook input priority filter + 10; policy accept;
		ip saddr @allowed counter accept
		tcp dport 8080 accept
	}";

/// What the standby holds only: one more set element, one more rule, one more chain.
const FILTER_BODY_B: &str = "\
	set allowed {
		type ipv4_addr
		elements = { 192.0.2.1, 192.0.2.2, 192.0.2.99 }
	}

	chain input {
		type filter hook input priority filter + 10; policy accept;
		ip saddr @allowed counter accept
		tcp dport 8080 accept
		tcp dport 9999 drop
	}

	chain b_only {
		tcp dport 9998 drop
	}";

/// A script that makes `table` (`"family name"`) exactly `body`, in one transaction.
fn recreate(table: &str, body: &str) -> String {
    format!("table {table}\ndelete table {table}\ntable {table} {{\n{body}\n}}\n")
}

/// `table` on `fw` as `nft -s` lists it, elements sorted; `None` when absent.
fn listing(lab: &Lab, fw: Firewall, table: &str) -> Option<String> {
    lab.nft_table(fw, table).map(|t| sorted_elements(&t))
}

/// Waits until B lists each of `tables` as A does (both absent counts); returns how long it
/// took.
fn wait_b_equals_a(lab: &Lab, tables: &[&str], within: Duration) -> Duration {
    let ((), took) = wait_until(&format!("B's {tables:?} equal A's"), within, POLL, || {
        for table in tables {
            let (a, b) = (listing(lab, A, table), listing(lab, B, table));
            if a != b {
                return Err(format!("{table}: A {a:?}, B {b:?}"));
            }
        }
        Ok(())
    });
    took
}

fn in_synchronization(status: &Status) -> bool {
    status.state == FailoverState::Synchronization
}

/// Both daemons started with `[config_sync]` as `a_sync` and `b_sync` say, and in
/// Synchronization.
fn pair(lab: &Lab, a_sync: &ConfigSyncOptions, b_sync: &ConfigSyncOptions) -> (Daemon, Daemon) {
    let mut a = lab.spawn_daemon(A, &DaemonOptions::default().config_sync(a_sync));
    let mut b = lab.spawn_daemon(B, &DaemonOptions::default().config_sync(b_sync));
    a.wait_for("A in synchronization", START, in_synchronization);
    b.wait_for("B in synchronization", START, in_synchronization);
    (a, b)
}

/// Config sync has compared the nodes: this node plays `part`, the versions match and the
/// peer's state of every unit is known.
fn settled(part: ConfigSyncPart) -> impl Fn(&ConfigSyncStatus) -> Result<(), String> {
    move |s| {
        if s.part != part {
            return Err(format!("part {:?}", s.part));
        }
        if s.versions_match != Some(true) {
            return Err(format!("versions match: {:?}", s.versions_match));
        }
        if !matches!(s.status, ConfigSyncState::Auto | ConfigSyncState::NotAuto) {
            return Err(format!("status {:?}: {}", s.status, s.reason));
        }
        match s.units.iter().find(|u| u.peer_state.is_none()) {
            Some(u) => Err(format!("the peer's {} is not known", u.name)),
            None => Ok(()),
        }
    }
}

/// The last result of `name` is `outcome` and its message holds `message`.
fn last_result(
    name: &'static str,
    outcome: ConfigSyncOutcome,
    message: &'static str,
) -> impl Fn(&ConfigSyncStatus) -> Result<(), String> {
    move |s| {
        let u = unit(s, name)?;
        if u.last_result == Some(outcome) && u.last_message.contains(message) {
            Ok(())
        } else {
            Err(format!(
                "{name}: last result {:?}, message {:?}",
                u.last_result, u.last_message
            ))
        }
    }
}

fn counter(status: &ConfigSyncStatus, name: &str) -> u64 {
    status.counters.get(name).copied().unwrap_or(0)
}

/// `table`'s hash on this node, from its status.
fn local_hash(status: &ConfigSyncStatus, table: &str) -> Option<String> {
    unit(status, table).unwrap().local_hash.clone()
}

/// The events of `kinds` whose message holds `text` (case aside).
fn events_saying(daemon: &Daemon, kinds: &[EventKind], text: &str) -> Vec<String> {
    daemon
        .events_of(kinds)
        .into_iter()
        .map(|e| e.message)
        .filter(|m| m.to_lowercase().contains(&text.to_lowercase()))
        .collect()
}

/// A full sync in auto mode when the pair forms makes each named table on the standby exactly
/// the source's: the rule, the chain and the set element only the standby had disappear, and a
/// named table only the standby had is deleted. Tables not named are never touched, on either
/// node, and a rejoin with equal tables sends nothing.
#[test]
fn auto_sync_at_join_removes_what_only_the_standby_has_and_leaves_other_tables() {
    if !require_root_and_tools() {
        return;
    }
    let lab = Lab::up();
    lab.nft(A, &recreate(FILTER, FILTER_BODY));
    lab.nft(B, &recreate(FILTER, FILTER_BODY_B));
    lab.nft(
        B,
        &recreate(EXTRA, "\tchain output {\n\t\tmeta mark 0x7 drop\n\t}"),
    );
    // Not named: one table on each node, and one name on both with different contents.
    lab.nft(
        A,
        &recreate("inet a_local", "\tchain c {\n\t\ttcp dport 1001 drop\n\t}"),
    );
    lab.nft(
        B,
        &recreate(
            "inet b_local",
            "\tset s {\n\t\ttype inet_service\n\t\telements = { 22, 443 }\n\t}",
        ),
    );
    lab.nft(
        A,
        &recreate("ip both_local", "\tchain c {\n\t\ttcp dport 1002 drop\n\t}"),
    );
    lab.nft(
        B,
        &recreate("ip both_local", "\tchain c {\n\t\ttcp dport 1003 drop\n\t}"),
    );
    let unnamed = ["inet failoverd_lab", "inet b_local", "ip both_local"];
    let b_unnamed: Vec<_> = unnamed.iter().map(|t| lab.nft_table(B, t)).collect();
    let a_filter = listing(&lab, A, FILTER);
    let a_unnamed = [
        lab.nft_table(A, "inet a_local"),
        lab.nft_table(A, "ip both_local"),
    ];
    // The control: the standby starts different.
    assert_ne!(listing(&lab, B, FILTER), a_filter);
    assert!(lab.nft_table(B, EXTRA).is_some());

    let sync = ConfigSyncOptions::new("auto", &[FILTER, EXTRA]).compare_interval_ms(1000);
    let (mut a, mut b) = pair(&lab, &sync, &sync);
    let took = wait_b_equals_a(&lab, &[FILTER, EXTRA], SYNC);
    println!("B holds A's tables {took:?} after synchronization");
    let b_filter = lab.nft_table(B, FILTER).expect("B's filter table");
    for only_b in ["9999", "9998", "b_only", "192.0.2.99"] {
        assert!(
            !b_filter.contains(only_b),
            "{only_b} left on B:\n{b_filter}"
        );
    }
    assert_eq!(lab.nft_table(B, EXTRA), None, "the named table only B had");

    let a_status = a.wait_config("A: every unit in sync", SYNC, units_in_sync);
    let b_status = b.wait_config("B: every unit in sync", SYNC, units_in_sync);
    assert_eq!(a_status.part, ConfigSyncPart::Source);
    assert_eq!(b_status.part, ConfigSyncPart::Replica);
    assert_eq!(
        a_status.status,
        ConfigSyncState::Auto,
        "{}",
        a_status.reason
    );
    for table in [FILTER, EXTRA] {
        assert_eq!(local_hash(&a_status, table), local_hash(&b_status, table));
    }
    assert_eq!(
        unit(&a_status, EXTRA).unwrap().local_state,
        ConfigUnitState::Absent
    );
    assert!(
        counter(&a_status, "full_syncs") >= 1,
        "{:?}",
        a_status.counters
    );
    assert_eq!(
        counter(&b_status, "units_sent"),
        0,
        "the replica sends nothing"
    );
    assert!(!a.events_of(&[EventKind::ConfigSent]).is_empty());
    assert!(!b.events_of(&[EventKind::ConfigApplied]).is_empty());

    for (table, before) in unnamed.iter().zip(&b_unnamed) {
        assert_eq!(&lab.nft_table(B, table), before, "B's {table} was touched");
    }
    assert_eq!(
        lab.nft_table(B, "inet a_local"),
        None,
        "A's unnamed table reached B"
    );
    assert_eq!(
        listing(&lab, A, FILTER),
        a_filter,
        "the source's table changed"
    );
    assert_eq!(
        [
            lab.nft_table(A, "inet a_local"),
            lab.nft_table(A, "ip both_local")
        ],
        a_unnamed
    );

    // A rejoin with equal tables sends nothing.
    let sent = counter(&a_status, "units_sent");
    drop(b);
    let options = DaemonOptions::default().config_sync(&sync);
    let mut b = lab.spawn_daemon(B, &options);
    b.wait_for("B back in synchronization", START, in_synchronization);
    b.wait_config("B: in sync again", SYNC, units_in_sync);
    let a_status = a.wait_config("A: in sync again", SYNC, |s| {
        units_in_sync(s)?;
        settled(ConfigSyncPart::Source)(s)
    });
    assert_eq!(
        counter(&a_status, "units_sent"),
        sent,
        "{:?}",
        a_status.counters
    );
    assert_eq!(counter(&b.config_status().unwrap(), "units_received"), 0);
}

/// Manual mode sends nothing by itself; `config diff` shows how the standby differs, `config
/// sync` is refused on the replica and makes the standby the source's on the source, after
/// which the diff is empty. Drift made on the standby is then reported, and never repaired.
#[test]
fn manual_sync_on_command_with_diff_and_drift_reported_only() {
    if !require_root_and_tools() {
        return;
    }
    let lab = Lab::up();
    lab.nft(A, &recreate(FILTER, FILTER_BODY));
    lab.nft(B, &recreate(FILTER, FILTER_BODY_B));
    lab.nft(
        B,
        &recreate(EXTRA, "\tchain output {\n\t\tmeta mark 0x7 drop\n\t}"),
    );
    let sync = ConfigSyncOptions::new("manual", &[FILTER, EXTRA])
        .compare_interval_ms(1000)
        .repair_after(2);
    let (mut a, mut b) = pair(&lab, &sync, &sync);
    let a_status = a.wait_config("A settled", SYNC, settled(ConfigSyncPart::Source));
    assert_eq!(
        a_status.status,
        ConfigSyncState::NotAuto,
        "{}",
        a_status.reason
    );
    b.wait_config("B settled", SYNC, settled(ConfigSyncPart::Replica));
    let b_before = listing(&lab, B, FILTER);

    // Nothing moves by itself (two comparisons and more).
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(listing(&lab, B, FILTER), b_before);
    assert!(lab.nft_table(B, EXTRA).is_some());
    let a_status = a.config_status().unwrap();
    assert_eq!(
        counter(&a_status, "units_sent"),
        0,
        "{:?}",
        a_status.counters
    );
    assert!(!unit(&a_status, FILTER).unwrap().in_sync);

    // The diff, from A's read-back to B's.
    let diff = a.config_diff().expect("config diff on A");
    assert!(!diff.is_empty());
    let filter = diff.units.iter().find(|u| u.name == FILTER).unwrap();
    assert!(filter.diff.starts_with("--- "), "{}", filter.diff);
    for only_b in ["tcp dport 9999 drop", "192.0.2.99", "chain b_only"] {
        assert!(
            filter
                .diff
                .lines()
                .any(|l| l.starts_with('+') && l.contains(only_b)),
            "no added line with {only_b}:\n{}",
            filter.diff
        );
    }
    assert!(
        !filter
            .diff
            .lines()
            .any(|l| l.starts_with('-') && l.contains("dport")),
        "B lacks none of A's rules:\n{}",
        filter.diff
    );
    let extra = diff.units.iter().find(|u| u.name == EXTRA).unwrap();
    assert_eq!(extra.local_state, ConfigUnitState::Absent);
    assert_eq!(extra.peer_state, ConfigUnitState::Present);
    assert!(extra.diff.contains("(absent)"), "{}", extra.diff);

    // Only the source syncs.
    let refused = b.config_sync().expect("config sync on B");
    assert!(
        !refused.accepted,
        "the replica accepted: {}",
        refused.message
    );
    assert!(!refused.message.is_empty());
    let accepted = a.config_sync().expect("config sync on A");
    assert!(accepted.accepted, "refused: {}", accepted.message);
    let took = wait_b_equals_a(&lab, &[FILTER, EXTRA], SYNC);
    println!("manual full sync applied {took:?} after the command");
    assert_eq!(lab.nft_table(B, EXTRA), None);
    a.wait_config("A: in sync after the sync", SYNC, units_in_sync);
    let diff = a.config_diff().expect("config diff on A");
    assert!(diff.is_empty(), "{diff:#?}");
    for u in &diff.units {
        assert_eq!(u.local_hash, u.peer_hash, "{}", u.name);
    }

    // Drift on the standby: reported after `repair_after` comparisons, never repaired.
    lab.nft(B, "add rule inet cfg_filter input tcp dport 7777 drop\n");
    let drifted = listing(&lab, B, FILTER);
    let a_status = a.wait_config("A reports the drift", SYNC, |s| {
        let u = unit(s, FILTER)?;
        if counter(s, "drift_detected") >= 1 && !u.in_sync {
            Ok(())
        } else {
            Err("no drift yet".into())
        }
    });
    assert!(a_status.reason.contains(FILTER), "{}", a_status.reason);
    wait_until("A's drift event", SYNC, POLL, || {
        let drift = a.events_of(&[EventKind::ConfigDrift]);
        drift
            .iter()
            .any(|e| e.message.contains(FILTER))
            .then_some(())
            .ok_or_else(|| format!("{drift:?}"))
    });
    std::thread::sleep(Duration::from_millis(3000));
    assert_eq!(
        listing(&lab, B, FILTER),
        drifted,
        "manual mode repaired the drift"
    );
    assert!(
        !listing(&lab, A, FILTER).unwrap().contains("7777"),
        "sent back"
    );
    let a_status = a.config_status().unwrap();
    assert_eq!(counter(&a_status, "drift_repaired"), 0);
    let diff = a.config_diff().expect("config diff on A");
    let filter = diff.units.iter().find(|u| u.name == FILTER).unwrap();
    assert!(
        filter
            .diff
            .lines()
            .any(|l| l.starts_with('+') && l.contains("tcp dport 7777 drop")),
        "{}",
        filter.diff
    );
}

/// Auto mode: a rule added on the source reaches the standby, both nodes' statuses show the
/// same hash; drift made on the standby is repaired after `repair_after` comparisons, and never
/// sent back.
#[test]
fn auto_mode_sends_each_change_and_repairs_drift() {
    if !require_root_and_tools() {
        return;
    }
    let lab = Lab::up();
    lab.nft(A, &recreate(FILTER, FILTER_BODY));
    let sync = ConfigSyncOptions::new("auto", &[FILTER])
        .compare_interval_ms(1000)
        .repair_after(2);
    let (mut a, mut b) = pair(&lab, &sync, &sync);
    wait_b_equals_a(&lab, &[FILTER], SYNC);
    let first = a.wait_config("A: in sync", SYNC, units_in_sync);
    let first_hash = local_hash(&first, FILTER);

    lab.nft(A, "add rule inet cfg_filter input tcp dport 8443 accept\n");
    let ((), took) = wait_until(
        "B holds the new rule",
        SYNC,
        Duration::from_millis(10),
        || {
            let b = lab.nft_table(B, FILTER).unwrap_or_default();
            if b.contains("tcp dport 8443 accept") {
                Ok(())
            } else {
                Err(b)
            }
        },
    );
    println!("a rule added on A reached B's kernel within {took:?}");
    wait_b_equals_a(&lab, &[FILTER], SYNC);
    let a_status = a.wait_config("A: in sync after the change", SYNC, |s| {
        units_in_sync(s)?;
        if local_hash(s, FILTER) == first_hash {
            return Err("A's hash is the old one".into());
        }
        Ok(())
    });
    let b_status = b.wait_config("B: in sync after the change", SYNC, |s| {
        units_in_sync(s)?;
        if local_hash(s, FILTER) == local_hash(&a_status, FILTER) {
            Ok(())
        } else {
            Err("B's hash is not A's".into())
        }
    });
    assert_eq!(
        a_status.status,
        ConfigSyncState::Auto,
        "{}",
        a_status.reason
    );
    assert_eq!(
        b_status.status,
        ConfigSyncState::Auto,
        "{}",
        b_status.reason
    );
    assert!(
        counter(&a_status, "incremental_syncs") >= 1,
        "{:?}",
        a_status.counters
    );
    assert_eq!(
        unit(&b_status, FILTER).unwrap().last_result,
        Some(ConfigSyncOutcome::Applied)
    );

    // Drift on the standby.
    lab.nft(B, "add rule inet cfg_filter input tcp dport 7777 drop\n");
    let ((), repaired) = wait_until("B's drift repaired", SYNC, POLL, || {
        let b = listing(&lab, B, FILTER);
        if b == listing(&lab, A, FILTER) {
            Ok(())
        } else {
            Err(format!("{b:?}"))
        }
    });
    println!("drift on B repaired after {repaired:?}");
    let a_status = a.wait_config("A counts the repair", SYNC, |s| {
        if counter(s, "drift_detected") >= 1 && counter(s, "drift_repaired") >= 1 {
            units_in_sync(s)
        } else {
            Err("not counted".into())
        }
    });
    assert!(
        !listing(&lab, A, FILTER).unwrap().contains("7777"),
        "sent back"
    );
    assert!(
        !a.events_of(&[EventKind::ConfigDrift]).is_empty(),
        "{a_status:#?}"
    );
}

/// Content the standby rejects leaves its ruleset byte-identical and is reported with nft's
/// message: a rule on an interface only the source has (nft refuses it), then a per-node value
/// naming an object the standby's kernel does not hold (the kernel refuses the rule, inside the
/// transaction that deletes the old table first and also changes another table). The next
/// change retries, and applies.
#[test]
fn a_broken_apply_changes_nothing_on_the_standby_and_is_reported() {
    if !require_root_and_tools() {
        return;
    }
    const GOOD: &str = "inet cfg_accept";
    let lab = Lab::up();
    lab.exec(A, &["ip", "link", "add", "cfg_only_a", "type", "bridge"]);
    lab.nft(A, &recreate(FILTER, FILTER_BODY));
    lab.nft(
        A,
        &recreate(GOOD, "\tchain c {\n\t\ttcp dport 5001 accept\n\t}"),
    );
    lab.nft(
        B,
        &recreate("inet b_local", "\tchain c {\n\t\ttcp dport 5002 drop\n\t}"),
    );
    let b_local = lab.nft_table(B, "inet b_local");
    // `cnt`: the counter object a rule names; A's exists, B's value names none. Written with
    // the quotes nft lists the name with (the object's own line lists it bare, and keeps it).
    let tables = [GOOD, FILTER];
    let a_sync = ConfigSyncOptions::new("auto", &tables)
        .compare_interval_ms(1000)
        .define("cnt", "\"cnt_a\"");
    let b_sync = ConfigSyncOptions::new("auto", &tables)
        .compare_interval_ms(1000)
        .define("cnt", "\"cnt_b\"");
    let (mut a, mut b) = pair(&lab, &a_sync, &b_sync);
    wait_b_equals_a(&lab, &tables, SYNC);
    a.wait_config("A: in sync", SYNC, units_in_sync);
    let before = lab.nft_ruleset(B);

    // An interface B does not have.
    lab.nft(
        A,
        "add rule inet cfg_filter input iif \"cfg_only_a\" accept\n",
    );
    const NO_INTERFACE: &str = "Interface does not exist";
    let a_status = a.wait_config(
        "A: the sync failed",
        SYNC,
        last_result(FILTER, ConfigSyncOutcome::Failed, NO_INTERFACE),
    );
    let b_status = b.wait_config(
        "B: the apply failed",
        SYNC,
        last_result(FILTER, ConfigSyncOutcome::Failed, NO_INTERFACE),
    );
    assert_eq!(
        lab.nft_ruleset(B),
        before,
        "a failed apply changed B's ruleset"
    );
    for status in [&a_status, &b_status] {
        let u = unit(status, FILTER).unwrap();
        assert!(
            u.failed_unit.as_deref().is_some_and(|f| f.contains(FILTER)),
            "{u:?}"
        );
        assert!(!u.in_sync, "{u:?}");
    }
    assert!(
        a_status.reason.contains(NO_INTERFACE),
        "{}",
        a_status.reason
    );
    assert!(
        !events_saying(&a, &[EventKind::ConfigFailed], NO_INTERFACE).is_empty(),
        "{:#?}",
        a.events()
    );
    assert!(!events_saying(&b, &[EventKind::ConfigFailed], NO_INTERFACE).is_empty());

    // B's kernel refuses B's value; the other table's change in the same transaction is not
    // applied either.
    let script = format!(
        "{}add rule inet cfg_accept c tcp dport 5003 accept\n",
        recreate(
            FILTER,
            &FILTER_BODY
                .replace("\tchain input", "\tcounter cnt_a {\n\t}\n\n\tchain input")
                .replace(
                    "tcp dport 8080 accept",
                    "tcp dport 8080 accept\n\t\tcounter name \"cnt_a\""
                )
        )
    );
    lab.nft(A, &script);
    const NO_OBJECT: &str = "Could not process rule: No such file or directory";
    a.wait_config(
        "A: the second sync failed",
        SYNC,
        last_result(FILTER, ConfigSyncOutcome::Failed, NO_OBJECT),
    );
    b.wait_config(
        "B: the second apply failed",
        SYNC,
        last_result(FILTER, ConfigSyncOutcome::Failed, NO_OBJECT),
    );
    assert_eq!(
        lab.nft_ruleset(B),
        before,
        "a failed apply changed B's ruleset"
    );

    // The next change of both tables retries, and applies.
    let fixed = FILTER_BODY.replace(
        "tcp dport 8080 accept",
        "tcp dport 8080 accept\n\t\ttcp dport 8081 accept",
    );
    lab.nft(
        A,
        &format!(
            "{}add rule inet cfg_accept c tcp dport 5004 accept\n",
            recreate(FILTER, &fixed)
        ),
    );
    wait_b_equals_a(&lab, &tables, SYNC);
    a.wait_config("A: in sync after the fix", SYNC, units_in_sync);
    for daemon in [&mut a, &mut b] {
        daemon.wait_for("still in synchronization", SYNC, in_synchronization);
    }
    assert_eq!(lab.nft_table(B, "inet b_local"), b_local, "B's own table");
    // The control: the byte comparison sees an apply.
    assert_ne!(lab.nft_ruleset(B), before);
}

/// The lockout: a change that drops the failover link's traffic on the standby's input is
/// applied there, cuts the link, and is rolled back; the pair ends in Synchronization with the
/// standby's previous table, and the content is not applied again.
#[test]
fn a_change_that_cuts_the_failover_link_is_rolled_back() {
    if !require_root_and_tools() {
        return;
    }
    let lab = Lab::up();
    lab.nft(A, &recreate(FILTER, FILTER_BODY));
    let sync = ConfigSyncOptions::new("auto", &[FILTER]).compare_interval_ms(1000);
    let (mut a, mut b) = pair(&lab, &sync, &sync);
    wait_b_equals_a(&lab, &[FILTER], SYNC);
    a.wait_config("A: in sync", SYNC, units_in_sync);
    let b_before = lab.nft_table(B, FILTER);
    let left = |daemon: &Daemon| {
        daemon
            .events_of(&[EventKind::State])
            .iter()
            .filter(|e| e.from.as_deref() == Some("synchronization"))
            .count()
    };
    assert_eq!(left(&b), 0);

    // On A nothing comes in on `fo` from A's own address: the rules cut B only.
    let port = A.link_addr().port();
    lab.nft(
        A,
        &format!(
            "add rule inet cfg_filter input iifname \"fo\" ip saddr 10.0.254.1 tcp sport {port} drop\n\
             add rule inet cfg_filter input iifname \"fo\" ip saddr 10.0.254.1 tcp dport {port} drop\n"
        ),
    );
    let changed = Instant::now();
    let within = Duration::from_secs(20);
    b.wait_config("B rolled back", within, |s| {
        let u = unit(s, FILTER)?;
        if u.last_result == Some(ConfigSyncOutcome::RolledBack) {
            Ok(())
        } else {
            Err(format!("{:?} {:?}", u.last_result, u.last_message))
        }
    });
    wait_until("B's previous table", within, POLL, || {
        let now = lab.nft_table(B, FILTER);
        (now == b_before)
            .then_some(())
            .ok_or_else(|| format!("{now:?}"))
    });
    let rolled_back = changed.elapsed();
    a.wait_for("A back in synchronization", within, in_synchronization);
    b.wait_for("B back in synchronization", within, in_synchronization);
    println!(
        "B rolled back {rolled_back:?} after the change on A; the pair was in synchronization \
         again after {:?}",
        changed.elapsed()
    );
    // The control: the change did cut the link.
    assert!(
        left(&b) >= 1,
        "B never left synchronization: {:#?}",
        b.events()
    );
    assert!(
        !events_saying(&b, &[EventKind::ConfigFailed], "roll").is_empty(),
        "{:#?}",
        b.events()
    );
    let a_status = a.wait_config("A: the sync was rolled back", within, |s| {
        let u = unit(s, FILTER)?;
        if u.last_result == Some(ConfigSyncOutcome::RolledBack) {
            Ok(())
        } else {
            Err(format!("{:?} {:?}", u.last_result, u.last_message))
        }
    });
    assert!(
        a_status.reason.contains("rolled back"),
        "{}",
        a_status.reason
    );

    // It stays so: not applied again, the link holds.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(lab.nft_table(B, FILTER), b_before);
    for daemon in [&a, &b] {
        let status = daemon.status().expect("a status");
        assert!(in_synchronization(&status), "{status:?}");
    }
    let b_status = b.config_status().unwrap();
    assert_eq!(
        counter(&b_status, "rollbacks"),
        1,
        "{:?}",
        b_status.counters
    );
}

/// `count` rules, one per port from 10000, in a chain of `table`.
fn rules_table(table: &str, count: u32) -> String {
    let rules: String = (0..count)
        .map(|i| format!("\t\ttcp dport {} accept\n", 10_000 + i))
        .collect();
    recreate(table, &format!("\tchain c {{\n{rules}\t}}"))
}

/// A set of `count` IPv4 addresses in `table`.
fn set_table(table: &str, count: u32) -> String {
    let elements: Vec<String> = (0..count)
        .map(|i| format!("10.{}.{}.{}", i >> 16, (i >> 8) & 0xff, i & 0xff))
        .collect();
    recreate(
        table,
        &format!(
            "\tset big {{\n\t\ttype ipv4_addr\n\t\telements = {{ {} }}\n\t}}",
            elements.join(", ")
        ),
    )
}

/// User and system CPU of `pid` and of its children it waited for (its `nft` runs), in
/// USER_HZ ticks (100 per second on Linux, whatever the kernel's HZ).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // "PID (comm) S ...": after the last ')' come field 3 (the state), 4, ...; fields 14 to
    // 17 are utime, stime, cutime and cstime.
    stat.rsplit_once(')')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .skip(11)
                .take(4)
                .filter_map(|f| f.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0)
}

/// USER_HZ: the unit of the times in `/proc/PID/stat`.
const TICKS_PER_SEC: f64 = 100.0;

/// Prints how fast config sync is: a rule change on the source to the standby's kernel (median
/// and max of 20, polled with `nft` every few milliseconds), a full sync of a 10,000-rule table
/// and of a table holding a 100,000-element set (`config sync` to both nodes' statuses agreeing
/// on the hash), and the CPU of an idle pair comparing those tables.
#[test]
#[ignore = "a measurement: cargo test -p failoverd --test e2e_config_sync -- --ignored --nocapture"]
fn measure_config_sync() {
    if !require_root_and_tools() {
        return;
    }
    const BIG: &str = "inet cfg_big";
    let lab = Lab::up();
    lab.nft(A, &recreate(FILTER, FILTER_BODY));
    let auto = ConfigSyncOptions::new("auto", &[FILTER, BIG]);
    let (a, b) = pair(&lab, &auto, &auto);
    wait_b_equals_a(&lab, &[FILTER], SYNC);
    let mut latencies = Vec::new();
    for i in 0..20 {
        let port = 20_000 + i;
        lab.nft(
            A,
            &format!("add rule inet cfg_filter input tcp dport {port} accept\n"),
        );
        let rule = format!("tcp dport {port} accept");
        let ((), took) = wait_until("B applies the rule", SYNC, Duration::from_millis(1), || {
            let chain = lab.exec(
                B,
                &["nft", "-s", "list", "chain", "inet", "cfg_filter", "input"],
            );
            chain
                .contains(&rule)
                .then_some(())
                .ok_or_else(|| "not yet".to_string())
        });
        latencies.push(took);
    }
    latencies.sort();
    println!(
        "rule change on A to B's kernel: median {:?}, max {:?} (20 changes, polled with nft)",
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
    drop((a, b));

    let manual = ConfigSyncOptions::new("manual", &[FILTER, BIG]);
    let (mut a, mut b) = pair(&lab, &manual, &manual);
    a.wait_config("A settled", SYNC, settled(ConfigSyncPart::Source));
    for (what, script) in [
        ("a 10,000-rule table", rules_table(BIG, 10_000)),
        ("a 100,000-element set", set_table(BIG, 100_000)),
    ] {
        lab.nft(A, &script);
        a.wait_config("A read its new table", Duration::from_secs(60), |s| {
            settled(ConfigSyncPart::Source)(s)?;
            match unit(s, BIG)?.local_state {
                ConfigUnitState::Present if !unit(s, BIG)?.in_sync => Ok(()),
                _ => Err("not read yet".into()),
            }
        });
        let started = Instant::now();
        let reply = a.config_sync().expect("config sync");
        assert!(reply.accepted, "{}", reply.message);
        a.wait_config("in sync", Duration::from_secs(120), units_in_sync);
        let took = started.elapsed();
        b.wait_config("B in sync", SYNC, units_in_sync);
        println!("full sync of {what}: {took:?} from `config sync` to A's status in sync");
    }

    let idle = Duration::from_secs(20);
    let pids = [a.pid().unwrap(), b.pid().unwrap()];
    let before: Vec<u64> = pids.iter().map(|&p| cpu_ticks(p)).collect();
    std::thread::sleep(idle);
    for ((name, &pid), before) in ["A", "B"].iter().zip(&pids).zip(before) {
        let used = (cpu_ticks(pid) - before) as f64 / TICKS_PER_SEC;
        println!(
            "idle pair, comparisons every 10 s (the default) of the 100,000-element table: {name} used {:.2} % of a CPU over {idle:?}",
            100.0 * used / idle.as_secs_f64()
        );
    }
}
