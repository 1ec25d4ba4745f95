//! Every limit and code the parser checks: the violation is an error, the same message one
//! under the limit (the control) parses.

use super::layout;
use crate::WireError;
use crate::message::config_sync::{
    ConfigSyncMessage, MAX_CHUNK_LEN, MAX_CONFIG_TEXT, MAX_CONFIG_UNITS, MAX_UNIT_LEN,
    MAX_UNIT_NAME, UnitState,
};

fn parse(body: &[u8]) -> Result<ConfigSyncMessage, WireError> {
    ConfigSyncMessage::parse(body)
}

fn malformed(body: &[u8], what: &str) {
    match parse(body) {
        Err(WireError::Malformed(got)) => assert_eq!(got, what),
        other => panic!("{what}: {other:?}"),
    }
}

/// `n` readback-request ids, `n` result/offer units, `n` transfer units, `n` backends.
fn lists(n: usize) -> [Vec<u8>; 4] {
    let id = layout::entry(&[&[1, 0], &layout::text("inet t")]);
    let unit = layout::unit(1, 1, [0; 32], "inet t", &[]);
    let tunit = layout::transfer_unit(1, 1, 0, "inet t");
    let backend = layout::entry(&[&[1, 0], &layout::text("v")]);
    [
        layout::request(&vec![id; n]),
        layout::offer("0.1.0", &[], &vec![unit; n]),
        layout::transfer(1, &vec![tunit; n]),
        layout::offer("0.1.0", &vec![backend; n], &[]),
    ]
}

#[test]
fn lists_hold_at_most_max_config_units() {
    for body in lists(MAX_CONFIG_UNITS) {
        assert!(parse(&body).is_ok());
    }
    for body in lists(MAX_CONFIG_UNITS + 1) {
        malformed(&body, "config-sync list too long");
    }
}

#[test]
fn names_hold_1_to_max_unit_name_bytes_without_control_characters() {
    let request = |name: &str| layout::request(&[layout::entry(&[&[2, 0], &layout::text(name)])]);
    assert!(parse(&request(&"n".repeat(MAX_UNIT_NAME))).is_ok());
    assert!(parse(&request("n")).is_ok());
    assert!(parse(&request("/srv/ünïcode")).is_ok());
    for bad in [
        "n".repeat(MAX_UNIT_NAME + 1),
        String::new(),
        "/etc/a\nb".into(),
        "/etc/\u{9b}".into(),
    ] {
        malformed(&request(&bad), "config-sync unit name");
    }
    let unit = |name: &str| layout::offer("v", &[], &[layout::unit(1, 1, [0; 32], name, &[])]);
    assert!(parse(&unit("inet t")).is_ok());
    malformed(&unit(""), "config-sync unit name");
    let tunit = |name: &str| layout::transfer(1, &[layout::transfer_unit(1, 1, 0, name)]);
    assert!(parse(&tunit("inet t")).is_ok());
    malformed(&tunit("inet\tt"), "config-sync unit name");
}

#[test]
fn texts_hold_at_most_max_config_text_bytes_of_utf8_without_control_characters() {
    let result = |reason: &str| layout::result(2, None, reason);
    assert!(parse(&result(&"r".repeat(MAX_CONFIG_TEXT))).is_ok());
    assert!(parse(&result("")).is_ok());
    malformed(
        &result(&"r".repeat(MAX_CONFIG_TEXT + 1)),
        "config-sync text",
    );
    malformed(&result("line\nline"), "config-sync text");
    let version = |text: &str| layout::offer(text, &[], &[]);
    assert!(parse(&version("0.1.0")).is_ok());
    malformed(&version("0.1.0\0"), "config-sync text");
    let backend =
        |text: &str| layout::offer("v", &[layout::entry(&[&[1, 0], &layout::text(text)])], &[]);
    assert!(parse(&backend("nftables v1.0.9")).is_ok());
    malformed(&backend("nftables\r"), "config-sync text");
    // Invalid UTF-8: a lone continuation byte where the control has the lead of a 2-byte char
    // (the body ends with the char and the empty list's count).
    let mut bad = result("é");
    assert!(parse(&bad).is_ok());
    let at = bad.len() - 4;
    bad[at] = 0x80;
    malformed(&bad, "config-sync text is not UTF-8");
}

#[test]
fn a_transfer_unit_declares_at_most_max_unit_len_and_only_when_present() {
    let transfer = |state: u8, len: u32| {
        layout::transfer(1, &[layout::transfer_unit(1, state, len, "inet t")])
    };
    let Ok(ConfigSyncMessage::Transfer(header)) = parse(&transfer(2, MAX_UNIT_LEN)) else {
        panic!("the largest unit is refused")
    };
    assert_eq!(
        header.units[0].state,
        UnitState::Present(crate::UnitHash([7; 32]))
    );
    assert!(parse(&transfer(2, 0)).is_ok(), "an empty file");
    assert!(parse(&transfer(1, 0)).is_ok(), "absent, no content");
    assert!(parse(&transfer(3, 0)).is_ok(), "unreadable, no content");
    malformed(
        &transfer(2, MAX_UNIT_LEN + 1),
        "config-sync unit longer than the limit",
    );
    malformed(&transfer(1, 1), "config-sync content of a unit not present");
    malformed(&transfer(3, 1), "config-sync content of a unit not present");
}

#[test]
fn a_chunk_keeps_to_its_limits() {
    let data = vec![0x5a; MAX_CHUNK_LEN + 1];
    let top = MAX_UNIT_LEN - 10;
    assert!(
        parse(&layout::chunk(
            0,
            0,
            MAX_CHUNK_LEN as u32,
            &data[..MAX_CHUNK_LEN]
        ))
        .is_ok()
    );
    malformed(
        &layout::chunk(0, 0, MAX_CHUNK_LEN as u32 + 1, &data),
        "config-sync chunk length",
    );
    assert!(parse(&layout::chunk(MAX_CONFIG_UNITS as u16 - 1, 0, 1, b"x")).is_ok());
    malformed(
        &layout::chunk(MAX_CONFIG_UNITS as u16, 0, 1, b"x"),
        "config-sync chunk unit",
    );
    assert!(parse(&layout::chunk(0, top, 10, &data[..10])).is_ok());
    malformed(
        &layout::chunk(0, top + 1, 10, &data[..10]),
        "config-sync chunk beyond the unit length limit",
    );
    malformed(
        &layout::chunk(0, u32::MAX, u32::MAX, b""),
        "config-sync chunk length",
    );
    assert_eq!(
        parse(&layout::chunk(0, 0, 10, &data[..9])),
        Err(WireError::Truncated),
        "data shorter than its length"
    );
}

#[test]
fn a_failed_unit_is_below_max_config_units() {
    assert!(parse(&layout::result(2, Some(MAX_CONFIG_UNITS as u16 - 1), "")).is_ok());
    malformed(
        &layout::result(2, Some(MAX_CONFIG_UNITS as u16), ""),
        "config-sync failed unit",
    );
    // Without its flag the field is not read.
    let mut unflagged = layout::result(2, Some(u16::MAX), "");
    unflagged[13] = 0;
    let Ok(ConfigSyncMessage::Result(result)) = parse(&unflagged) else {
        panic!("not a result")
    };
    assert_eq!(result.failed_unit, None);
}

#[test]
fn codes_this_version_does_not_know_are_malformed() {
    let unit = |kind: u8, state: u8| {
        layout::offer("v", &[], &[layout::unit(kind, state, [0; 32], "u", &[])])
    };
    for (kind, state) in [(1, 1), (1, 2), (1, 3), (2, 1)] {
        assert!(
            parse(&unit(kind, state)).is_ok(),
            "kind {kind} state {state}"
        );
    }
    malformed(&unit(0, 1), "config-sync unit kind");
    malformed(&unit(3, 1), "config-sync unit kind");
    malformed(&unit(1, 0), "config-sync unit state");
    malformed(&unit(1, 4), "config-sync unit state");
    for purpose in 1..=3 {
        assert!(parse(&layout::transfer(purpose, &[])).is_ok());
    }
    malformed(&layout::transfer(0, &[]), "config-sync transfer purpose");
    malformed(&layout::transfer(4, &[]), "config-sync transfer purpose");
    for outcome in 1..=4 {
        assert!(parse(&layout::result(outcome, None, "")).is_ok());
    }
    malformed(&layout::result(0, None, ""), "config-sync outcome");
    malformed(&layout::result(5, None, ""), "config-sync outcome");
    let backend = |kind: u8| {
        layout::offer(
            "v",
            &[layout::entry(&[&[kind, 0], &layout::text("v")])],
            &[],
        )
    };
    assert!(parse(&backend(2)).is_ok());
    malformed(&backend(3), "config-sync unit kind");
}

/// An entry whose length is shorter than its fields is truncated, not read past.
#[test]
fn an_entry_shorter_than_its_fields_is_truncated() {
    let mut body = layout::offer("v", &[], &[layout::unit(1, 1, [0; 32], "inet t", &[])]);
    assert!(parse(&body).is_ok());
    let entry = body.len() - layout::unit(1, 1, [0; 32], "inet t", &[]).len();
    let short = u16::from_be_bytes([body[entry], body[entry + 1]]) - 1;
    body[entry..entry + 2].copy_from_slice(&short.to_be_bytes());
    assert_eq!(parse(&body), Err(WireError::Truncated));
}
