//! Writing a config-sync frame.

use super::elements::check_key;
use super::field::transfer_unit as tunit;
use super::field::{
    self, backend, chunk, element, elements, entry, id, offer, removed, request, result, transfer,
    unit,
};
use super::{
    ChunkRef, ConfigSyncKind, ConfigSyncMessage, ElementEntry, MAX_CHUNK_LEN, MAX_CONFIG_UNITS,
    MAX_ELEMENTS, MAX_UNIT_LEN, UnitId, UnitKind, UnitState, check_name, config_text,
};
use crate::append_zeroed;
use crate::message::{MessageKind, emit_frame};

impl ConfigSyncMessage {
    /// Appends the whole frame to `buf`. Texts are sent as [`config_text`] makes them.
    ///
    /// Panics if a list holds more than [`MAX_CONFIG_UNITS`] entries, a unit name is not one
    /// [`UnitId::new`] accepts, a transfer unit breaks a limit the parser checks, or a chunk
    /// does (see [`ChunkRef`]), or an elements message holds more than [`MAX_ELEMENTS`]
    /// entries, a set name a unit name could not be or an element
    /// [`ElementEntry::check`] refuses: the sender's configuration and its own reads keep to
    /// them.
    pub fn emit(&self, buf: &mut Vec<u8>) {
        let mut body = Vec::new();
        match self {
            Self::Chunk(chunk) => {
                chunk.as_chunk_ref().emit(buf);
                return;
            }
            Self::Offer(o) => {
                let head = start(&mut body, ConfigSyncKind::Offer, offer::TAIL.start);
                head[offer::REVISION].copy_from_slice(&o.revision.to_be_bytes());
                head[offer::FLAGS] = flag(o.source, offer::SOURCE) | flag(o.auto, offer::AUTO);
                head[offer::SCHEMA].copy_from_slice(&o.versions.schema.to_be_bytes());
                text(&mut body, &o.versions.failoverd);
                list(&mut body, &o.versions.backends, |body, (kind, version)| {
                    entry_head(body, *kind, backend::VERSION.start);
                    text(body, version);
                });
                list(&mut body, &o.units, unit_state);
            }
            Self::Transfer(t) => {
                let head = start(&mut body, ConfigSyncKind::Transfer, transfer::TAIL.start);
                head[transfer::TRANSFER].copy_from_slice(&t.transfer.to_be_bytes());
                head[transfer::REQUEST].copy_from_slice(&t.request.to_be_bytes());
                head[transfer::PURPOSE] = t.purpose.code();
                list(&mut body, &t.units, |body, u| {
                    assert!(
                        u.len <= MAX_UNIT_LEN
                            && (u.len == 0 || matches!(u.state, UnitState::Present(_))),
                        "config-sync transfer unit of {} bytes in state {:?}",
                        u.len,
                        u.state
                    );
                    let (state, hash) = u.state.code();
                    let head = entry_head(body, u.id.kind, tunit::NAME.start);
                    head[entry::STATE] = state;
                    head[tunit::LEN].copy_from_slice(&u.len.to_be_bytes());
                    head[tunit::HASH].copy_from_slice(&hash);
                    name(body, &u.id.name);
                });
            }
            Self::Result(r) => {
                let head = start(&mut body, ConfigSyncKind::Result, result::TAIL.start);
                head[result::TRANSFER].copy_from_slice(&r.transfer.to_be_bytes());
                head[result::OUTCOME] = r.outcome.code();
                if let Some(unit) = r.failed_unit {
                    assert!(
                        usize::from(unit) < MAX_CONFIG_UNITS,
                        "config-sync failed unit {unit}"
                    );
                    head[result::FLAGS] = result::UNIT_FAILED;
                    head[result::FAILED_UNIT].copy_from_slice(&unit.to_be_bytes());
                }
                text(&mut body, &r.reason);
                list(&mut body, &r.readback, unit_state);
            }
            Self::ReadbackRequest { request, units } => {
                let head = start(
                    &mut body,
                    ConfigSyncKind::ReadbackRequest,
                    request::TAIL.start,
                );
                head[request::REQUEST].copy_from_slice(&request.to_be_bytes());
                list(&mut body, units, |body, unit| {
                    entry_head(body, unit.kind, id::NAME.start);
                    name(body, &unit.name);
                });
            }
            Self::Elements(e) => {
                assert!(
                    e.adds.len() + e.removes.len() <= MAX_ELEMENTS,
                    "config-sync elements message of {} entries",
                    e.adds.len() + e.removes.len()
                );
                start(&mut body, ConfigSyncKind::Elements, elements::TAIL.start);
                name(&mut body, &e.set);
                list_of(&mut body, MAX_ELEMENTS, &e.adds, self::element);
                list_of(&mut body, MAX_ELEMENTS, &e.removes, |body, key| {
                    append_zeroed(body, removed::KEY.start);
                    element_text(body, key);
                });
            }
        }
        emit_frame(buf, MessageKind::ConfigSync, body.len()).copy_from_slice(&body);
    }
}

impl ChunkRef<'_> {
    /// Appends the whole frame to `buf`, its data copied once, into the frame.
    ///
    /// Panics if `unit` is not below [`MAX_CONFIG_UNITS`], `data` is longer than
    /// [`MAX_CHUNK_LEN`] or ends beyond [`MAX_UNIT_LEN`].
    pub fn emit(&self, buf: &mut Vec<u8>) {
        assert!(
            usize::from(self.unit) < MAX_CONFIG_UNITS
                && self.data.len() <= MAX_CHUNK_LEN
                && u64::from(self.offset) + self.data.len() as u64 <= u64::from(MAX_UNIT_LEN),
            "config-sync chunk of unit {} at {} with {} bytes",
            self.unit,
            self.offset,
            self.data.len()
        );
        let body = emit_frame(
            buf,
            MessageKind::ConfigSync,
            chunk::DATA.start + self.data.len(),
        );
        body[field::KIND] = ConfigSyncKind::Chunk.code();
        body[chunk::TRANSFER].copy_from_slice(&self.transfer.to_be_bytes());
        body[chunk::UNIT].copy_from_slice(&self.unit.to_be_bytes());
        body[chunk::OFFSET].copy_from_slice(&self.offset.to_be_bytes());
        body[chunk::LEN].copy_from_slice(&(self.data.len() as u32).to_be_bytes());
        body[chunk::DATA].copy_from_slice(self.data);
    }
}

/// Appends the fixed fields of a body (`len` bytes, zeroed) with its sub-kind set, for the
/// caller to fill.
fn start(body: &mut Vec<u8>, kind: ConfigSyncKind, len: usize) -> &mut [u8] {
    let head = append_zeroed(body, len);
    head[field::KIND] = kind.code();
    head
}

fn flag(set: bool, bit: u8) -> u8 {
    if set { bit } else { 0 }
}

/// Appends a list: its count, then each entry as `write` appends it, with its length.
fn list<T>(body: &mut Vec<u8>, items: &[T], write: impl Fn(&mut Vec<u8>, &T)) {
    list_of(body, MAX_CONFIG_UNITS, items, write);
}

/// Appends a list of at most `max` entries, as [`list`] does.
fn list_of<T>(body: &mut Vec<u8>, max: usize, items: &[T], write: impl Fn(&mut Vec<u8>, &T)) {
    assert!(
        items.len() <= max,
        "config-sync list of {} entries",
        items.len()
    );
    append_zeroed(body, field::COUNT.end)[field::COUNT]
        .copy_from_slice(&(items.len() as u16).to_be_bytes());
    for item in items {
        let at = body.len();
        write(body, item);
        // Fits: an entry's fixed fields and at most three strings of at most a text's length.
        let len = (body.len() - at - entry::LEN.end) as u16;
        body[at..][entry::LEN].copy_from_slice(&len.to_be_bytes());
    }
}

/// Appends the fixed fields of a list entry (`len` bytes, zeroed; its length is written by
/// [`list`]) with its unit kind set, for the caller to fill.
fn entry_head(body: &mut Vec<u8>, kind: UnitKind, len: usize) -> &mut [u8] {
    let head = append_zeroed(body, len);
    head[entry::KIND] = kind.code();
    head
}

/// An offer's or a result's unit entry.
fn unit_state(body: &mut Vec<u8>, (id, state): &(UnitId, UnitState)) {
    let (code, hash) = state.code();
    let head = entry_head(body, id.kind, unit::NAME.start);
    head[entry::STATE] = code;
    head[unit::HASH].copy_from_slice(&hash);
    name(body, &id.name);
}

/// An element to add: an absent value or comment is sent empty.
fn element(body: &mut Vec<u8>, e: &ElementEntry) {
    let head = append_zeroed(body, element::KEY.start);
    head[element::FLAGS] = flag(e.timeout_ms.is_some(), element::HAS_TIMEOUT)
        | flag(e.expires_ms.is_some(), element::HAS_EXPIRES);
    head[element::TIMEOUT].copy_from_slice(&e.timeout_ms.unwrap_or(0).to_be_bytes());
    head[element::EXPIRES].copy_from_slice(&e.expires_ms.unwrap_or(0).to_be_bytes());
    element_text(body, &e.key);
    for text in [&e.value, &e.comment] {
        match text {
            Some(text) => element_text(body, text),
            None => string(body, ""),
        }
    }
}

fn element_text(body: &mut Vec<u8>, text: &str) {
    assert!(check_key(text).is_ok(), "config-sync element text {text:?}");
    string(body, text);
}

fn text(body: &mut Vec<u8>, text: &str) {
    string(body, &config_text(text));
}

fn name(body: &mut Vec<u8>, name: &str) {
    assert!(check_name(name).is_ok(), "config-sync unit name {name:?}");
    string(body, name);
}

fn string(body: &mut Vec<u8>, string: &str) {
    let raw = append_zeroed(body, field::text::BYTES.start + string.len());
    raw[field::text::LEN].copy_from_slice(&(string.len() as u16).to_be_bytes());
    raw[field::text::BYTES].copy_from_slice(string.as_bytes());
}
