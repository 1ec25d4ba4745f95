//! The elements sub-kind: its documented layout, its limits (each beside the same message one
//! under it), the largest message in one frame, and its 1.4 golden frame.

use super::{emitted, layout, view};
use crate::WireError;
use crate::message::config_sync::{
    ConfigSyncKind, ConfigSyncMessage, ElementEntry, MAX_ELEMENT_TEXT, MAX_ELEMENTS, MAX_UNIT_NAME,
    SetElements,
};
use crate::message::{HEADER_LEN, MAX_FRAME_LEN};

fn parse(body: &[u8]) -> Result<ConfigSyncMessage, WireError> {
    ConfigSyncMessage::parse(body)
}

fn malformed(body: &[u8], what: &str) {
    match parse(body) {
        Err(WireError::Malformed(got)) => assert_eq!(got, what),
        other => panic!("{what}: {other:?}"),
    }
}

fn blocklist() -> SetElements {
    SetElements {
        set: "inet filter blocklist".into(),
        adds: vec![
            ElementEntry {
                key: "192.0.2.7".into(),
                value: None,
                comment: None,
                timeout_ms: None,
                expires_ms: Some(599_250),
            },
            ElementEntry {
                key: "198.51.100.1 . 22".into(),
                value: Some("drop".into()),
                comment: Some("ssh scan".into()),
                timeout_ms: Some(3_600_000),
                expires_ms: None,
            },
        ],
        removes: vec!["203.0.113.9".into()],
    }
}

#[test]
fn the_encoder_writes_the_documented_layout() {
    let want = layout::elements(
        "inet filter blocklist",
        &[
            layout::element(2, 0, 599_250, ["192.0.2.7", "", ""]),
            layout::element(1, 3_600_000, 0, ["198.51.100.1 . 22", "drop", "ssh scan"]),
        ],
        &[layout::key("203.0.113.9")],
    );
    let message = ConfigSyncMessage::Elements(blocklist());
    let frame = emitted(&message);
    assert_eq!(frame[HEADER_LEN..], want[..]);
    assert_eq!(view(&frame).kind(), ConfigSyncKind::Elements);
    assert_eq!(view(&frame).message(), message);
    // Control: a flag off hides its field, whatever it holds.
    let hidden = layout::elements(
        "inet filter blocklist",
        &[layout::element(0, 7, 9, ["192.0.2.7", "", ""])],
        &[],
    );
    let Ok(ConfigSyncMessage::Elements(parsed)) = parse(&hidden) else {
        panic!("not elements")
    };
    assert_eq!(
        (parsed.adds[0].timeout_ms, parsed.adds[0].expires_ms),
        (None, None)
    );
}

#[test]
fn at_most_max_elements_entries_in_all() {
    let add = layout::element(0, 0, 0, ["192.0.2.7", "", ""]);
    let key = layout::key("192.0.2.8");
    let half = MAX_ELEMENTS / 2;
    for (adds, removes) in [(MAX_ELEMENTS, 0), (0, MAX_ELEMENTS), (half, half)] {
        let body = layout::elements(
            "ip t s",
            &vec![add.clone(); adds],
            &vec![key.clone(); removes],
        );
        assert!(parse(&body).is_ok(), "{adds} + {removes}");
    }
    for (adds, removes) in [
        (MAX_ELEMENTS + 1, 0),
        (0, MAX_ELEMENTS + 1),
        (half + 1, half),
    ] {
        let body = layout::elements(
            "ip t s",
            &vec![add.clone(); adds],
            &vec![key.clone(); removes],
        );
        malformed(&body, "config-sync list too long");
    }
}

#[test]
fn element_texts_hold_at_most_max_element_text_bytes_without_control_characters() {
    let long = "k".repeat(MAX_ELEMENT_TEXT);
    let longer = "k".repeat(MAX_ELEMENT_TEXT + 1);
    let add =
        |texts: [&str; 3]| layout::elements("ip t s", &[layout::element(0, 0, 0, texts)], &[]);
    let remove = |key: &str| layout::elements("ip t s", &[], &[layout::key(key)]);
    for ok in [
        add([&long, &long, &long]),
        add(["k", "", ""]),
        remove(&long),
        remove("fe80::1 . \"eth0\""),
    ] {
        assert!(parse(&ok).is_ok());
    }
    for bad in [
        add([&longer, "", ""]),
        add(["k", &longer, ""]),
        add(["k", "", &longer]),
        add(["", "v", ""]),
        add(["k\n", "", ""]),
        add(["k", "drop\u{0}", ""]),
        add(["k", "", "a\u{85}b"]),
        remove(""),
        remove(&longer),
        remove("1.1.1.1\r"),
    ] {
        malformed(&bad, "config-sync element text");
    }
    assert!(parse(&layout::elements(&"s".repeat(MAX_UNIT_NAME), &[], &[])).is_ok());
    malformed(
        &layout::elements(&"s".repeat(MAX_UNIT_NAME + 1), &[], &[]),
        "config-sync unit name",
    );
    malformed(&layout::elements("", &[], &[]), "config-sync unit name");
}

/// Each truncation of a valid body is an error (control: the whole body parses).
#[test]
fn every_truncation_is_an_error() {
    let frame = emitted(&ConfigSyncMessage::Elements(blocklist()));
    let body = &frame[HEADER_LEN..];
    assert!(parse(body).is_ok());
    for cut in 0..body.len() {
        assert!(parse(&body[..cut]).is_err(), "cut at {cut}");
    }
}

#[test]
fn the_largest_elements_message_fits_a_frame() {
    let text = "t".repeat(MAX_ELEMENT_TEXT);
    let element = ElementEntry {
        key: text.clone(),
        value: Some(text.clone()),
        comment: Some(text.clone()),
        timeout_ms: Some(u64::MAX),
        expires_ms: Some(u64::MAX),
    };
    let message = ConfigSyncMessage::Elements(SetElements {
        set: "s".repeat(MAX_UNIT_NAME),
        adds: vec![element; MAX_ELEMENTS],
        removes: Vec::new(),
    });
    let frame = emitted(&message);
    assert!(frame.len() <= MAX_FRAME_LEN, "{} bytes", frame.len());
    assert_eq!(view(&frame).message(), message);
}

#[test]
#[should_panic(expected = "config-sync elements message of 1025 entries")]
fn emitting_too_many_elements_is_a_bug() {
    let mut message = blocklist();
    message.removes = vec!["192.0.2.1".into(); MAX_ELEMENTS + 1 - message.adds.len()];
    emitted(&ConfigSyncMessage::Elements(message));
}

#[test]
#[should_panic(expected = "config-sync element text")]
fn emitting_an_element_that_cannot_travel_is_a_bug() {
    let mut message = blocklist();
    message.adds[0].value = Some(String::new());
    emitted(&ConfigSyncMessage::Elements(message));
}

#[test]
fn check_accepts_what_can_travel() {
    let ok = &blocklist().adds[1];
    assert_eq!(ok.check(), Ok(()));
    for bad in [
        ElementEntry {
            key: String::new(),
            ..ok.clone()
        },
        ElementEntry {
            key: "k".repeat(MAX_ELEMENT_TEXT + 1),
            ..ok.clone()
        },
        ElementEntry {
            value: Some(String::new()),
            ..ok.clone()
        },
        ElementEntry {
            comment: Some("a\nb".into()),
            ..ok.clone()
        },
    ] {
        assert!(bad.check().is_err(), "{bad:?}");
    }
}

/// The 1.4 golden frame (`tests/golden/v1.4/config_elements.hex`) decodes to this message and
/// this version emits it byte for byte.
#[test]
fn the_1_4_golden_frame() {
    let text = include_str!("../../../../tests/golden/v1.4/config_elements.hex");
    let hex: String = text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .flat_map(|line| line.chars().filter(|c| !c.is_whitespace()))
        .collect();
    let golden: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&hex[at..at + 2], 16).expect("hex"))
        .collect();
    let message = ConfigSyncMessage::Elements(blocklist());
    assert_eq!(view(&golden).message(), message);
    assert_eq!(emitted(&message), golden);
}
