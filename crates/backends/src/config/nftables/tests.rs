//! `delete_elements` against a stand-in `nft` (a shell script that lists a set and records
//! every run), so no kernel is needed: what it deletes, what it refuses.

use super::*;

/// A backend whose `nft` lists `inet t s` holding 192.0.2.1 and 192.0.2.2 and appends each
/// run's arguments and script to `log`.
fn backend(log: &std::path::Path) -> NftablesBackend {
    let script = format!(
        "printf '%s\\n' \"$*\" >> '{log}'; \
         if [ \"$1\" = list ]; then \
           printf 'table inet t {{\\n\\tset s {{\\n\\t\\ttype ipv4_addr\\n\\t\\tflags timeout\\n\\t\\telements = {{ 192.0.2.1 expires 9m, 192.0.2.2 }}\\n\\t}}\\n}}\\n'; \
         else cat >> '{log}'; fi",
        log = log.display()
    );
    NftablesBackend::new(NftablesConfig {
        tables: vec!["inet t".into()],
        dynamic_sets: vec!["inet t s".into()],
        command: vec!["sh".into(), "-c".into(), script, "nft".into()],
        ..NftablesConfig::default()
    })
    .unwrap()
}

#[test]
fn delete_elements_deletes_only_what_the_set_holds() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("nft.log");
    let mut nft = backend(&log);
    nft.delete_elements("inet t s", &["192.0.2.1".into(), "192.0.2.9".into()])
        .unwrap();
    let runs = std::fs::read_to_string(&log).unwrap();
    assert!(
        runs.contains("delete element inet t s { 192.0.2.1 }"),
        "{runs}"
    );
    assert!(!runs.contains("192.0.2.9"), "a key the set lacks: {runs}");
    // Control: a key it lacks alone commits nothing (only the listing ran).
    std::fs::remove_file(&log).unwrap();
    nft.delete_elements("inet t s", &["192.0.2.9".into()])
        .unwrap();
    let runs = std::fs::read_to_string(&log).unwrap();
    assert_eq!(runs.lines().count(), 1, "{runs}");
    assert!(runs.starts_with("list set inet t s"), "{runs}");
}

#[test]
fn delete_elements_refuses_a_key_that_is_not_one_and_a_set_not_configured() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("nft.log");
    let mut nft = backend(&log);
    let smuggled = "192.0.2.1 }; flush ruleset; delete element inet t s { 192.0.2.2".to_string();
    assert!(matches!(
        nft.delete_elements("inet t s", &["192.0.2.1".into(), smuggled]),
        Err(ConfigError::Refused { .. })
    ));
    assert!(!log.exists(), "nothing ran");
    assert!(
        nft.delete_elements("inet t other", &["192.0.2.1".into()])
            .is_err()
    );
    // Control: the same call without the smuggled key runs.
    nft.delete_elements("inet t s", &["192.0.2.1".into()])
        .unwrap();
    assert!(log.exists());
}
