//! Config-sync messages within the limits, for the property tests.

use proptest::prelude::*;

use crate::message::config_sync::{
    Chunk, ConfigOffer, ConfigSyncMessage, ConfigVersions, ElementEntry, MAX_CONFIG_UNITS,
    MAX_UNIT_LEN, SetElements, SyncOutcome, SyncResult, TransferHeader, TransferPurpose,
    TransferUnit, UnitHash, UnitId, UnitKind, UnitState,
};

fn name() -> impl Strategy<Value = String> {
    "\\P{Cc}{1,24}"
}

fn text() -> impl Strategy<Value = String> {
    "\\P{Cc}{0,24}"
}

/// An element text: 1..=24 characters of at most 4 bytes, within the limit.
fn element_text() -> impl Strategy<Value = String> {
    "\\P{Cc}{1,24}"
}

fn element() -> impl Strategy<Value = ElementEntry> {
    (
        element_text(),
        proptest::option::of(element_text()),
        proptest::option::of(element_text()),
        proptest::option::of(any::<u64>()),
        proptest::option::of(any::<u64>()),
    )
        .prop_map(
            |(key, value, comment, timeout_ms, expires_ms)| ElementEntry {
                key,
                value,
                comment,
                timeout_ms,
                expires_ms,
            },
        )
}

/// Changes to a set, within the limits.
pub(crate) fn set_elements() -> impl Strategy<Value = SetElements> {
    (
        name(),
        proptest::collection::vec(element(), 0..8),
        proptest::collection::vec(element_text(), 0..8),
    )
        .prop_map(|(set, adds, removes)| SetElements { set, adds, removes })
}

fn kind() -> impl Strategy<Value = UnitKind> {
    prop_oneof![Just(UnitKind::Nftables), Just(UnitKind::Files)]
}

fn unit_id() -> impl Strategy<Value = UnitId> {
    (kind(), name()).prop_map(|(kind, name)| UnitId { kind, name })
}

fn state() -> impl Strategy<Value = UnitState> {
    prop_oneof![
        Just(UnitState::Absent),
        any::<[u8; 32]>().prop_map(|hash| UnitState::Present(UnitHash(hash))),
        Just(UnitState::Unreadable),
    ]
}

fn units() -> impl Strategy<Value = Vec<(UnitId, UnitState)>> {
    proptest::collection::vec((unit_id(), state()), 0..6)
}

fn transfer_unit() -> impl Strategy<Value = TransferUnit> {
    (unit_id(), state(), 0..=MAX_UNIT_LEN).prop_map(|(id, state, len)| TransferUnit {
        id,
        state,
        len: if matches!(state, UnitState::Present(_)) {
            len
        } else {
            0
        },
    })
}

/// Any message within the limits.
pub(crate) fn message() -> impl Strategy<Value = ConfigSyncMessage> {
    let purpose = prop_oneof![
        Just(TransferPurpose::FullSync),
        Just(TransferPurpose::Incremental),
        Just(TransferPurpose::Readback),
    ];
    let outcome = prop_oneof![
        Just(SyncOutcome::Applied),
        Just(SyncOutcome::Failed),
        Just(SyncOutcome::RolledBack),
        Just(SyncOutcome::Refused),
    ];
    let backends = proptest::collection::vec((kind(), text()), 0..3);
    prop_oneof![
        (text(), any::<(u16, bool, bool, u64)>(), backends, units()).prop_map(
            |(failoverd, (schema, source, auto, revision), backends, units)| {
                ConfigSyncMessage::Offer(ConfigOffer {
                    versions: ConfigVersions {
                        failoverd,
                        schema,
                        backends,
                    },
                    source,
                    auto,
                    revision,
                    units,
                })
            }
        ),
        (
            any::<(u64, u64)>(),
            purpose,
            proptest::collection::vec(transfer_unit(), 0..6)
        )
            .prop_map(|((transfer, request), purpose, units)| {
                ConfigSyncMessage::Transfer(TransferHeader {
                    transfer,
                    purpose,
                    request,
                    units,
                })
            }),
        (
            any::<u64>(),
            0..MAX_CONFIG_UNITS as u16,
            proptest::collection::vec(any::<u8>(), 0..64),
            any::<u32>()
        )
            .prop_map(|(transfer, unit, data, offset)| {
                let offset = offset % (MAX_UNIT_LEN - data.len() as u32 + 1);
                ConfigSyncMessage::Chunk(Chunk {
                    transfer,
                    unit,
                    offset,
                    data,
                })
            }),
        (
            any::<u64>(),
            outcome,
            proptest::option::of(0..MAX_CONFIG_UNITS as u16),
            text(),
            units()
        )
            .prop_map(|(transfer, outcome, failed_unit, reason, readback)| {
                ConfigSyncMessage::Result(SyncResult {
                    transfer,
                    outcome,
                    failed_unit,
                    reason,
                    readback,
                })
            }),
        (any::<u64>(), proptest::collection::vec(unit_id(), 0..6))
            .prop_map(|(request, units)| ConfigSyncMessage::ReadbackRequest { request, units }),
        set_elements().prop_map(ConfigSyncMessage::Elements),
    ]
}
