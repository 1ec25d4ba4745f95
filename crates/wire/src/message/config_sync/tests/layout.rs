//! A body as the crate documentation lays it out, built byte by byte apart from the encoder
//! (so the encoder is checked against the documented layout, not against itself).

/// The sub-kind and its 3 reserved bytes.
pub(crate) fn head(kind: u8) -> Vec<u8> {
    vec![kind, 0, 0, 0]
}

pub(crate) fn text(text: &str) -> Vec<u8> {
    [&(text.len() as u16).to_be_bytes()[..], text.as_bytes()].concat()
}

/// An entry: its length, then `parts`.
pub(crate) fn entry(parts: &[&[u8]]) -> Vec<u8> {
    let rest = parts.concat();
    [&(rest.len() as u16).to_be_bytes()[..], &rest].concat()
}

pub(crate) fn list(entries: &[Vec<u8>]) -> Vec<u8> {
    [&(entries.len() as u16).to_be_bytes()[..], &entries.concat()].concat()
}

/// An offer's or a result's unit entry, with `extra` bytes a later minor appends.
pub(crate) fn unit(kind: u8, state: u8, hash: [u8; 32], name: &str, extra: &[u8]) -> Vec<u8> {
    entry(&[&[kind, state], &hash, &text(name), extra])
}

/// A transfer's unit entry.
pub(crate) fn transfer_unit(kind: u8, state: u8, len: u32, name: &str) -> Vec<u8> {
    entry(&[&[kind, state], &len.to_be_bytes(), &[7; 32], &text(name)])
}

/// A chunk body.
pub(crate) fn chunk(unit: u16, offset: u32, len: u32, data: &[u8]) -> Vec<u8> {
    let fixed = [&3u64.to_be_bytes()[..], &unit.to_be_bytes(), &[0, 0]].concat();
    [
        &head(3)[..],
        &fixed,
        &offset.to_be_bytes(),
        &len.to_be_bytes(),
        data,
    ]
    .concat()
}

/// A transfer body of `units` entries.
pub(crate) fn transfer(purpose: u8, units: &[Vec<u8>]) -> Vec<u8> {
    let fixed = [&9u64.to_be_bytes()[..], &0u64.to_be_bytes(), &[purpose, 0]].concat();
    [&head(2)[..], &fixed, &list(units)].concat()
}

/// A result body.
pub(crate) fn result(outcome: u8, failed: Option<u16>, reason: &str) -> Vec<u8> {
    let flags = u8::from(failed.is_some());
    let failed = failed.unwrap_or(0).to_be_bytes();
    let fixed = [&5u64.to_be_bytes()[..], &[outcome, flags], &failed].concat();
    [&head(4)[..], &fixed, &text(reason), &list(&[])].concat()
}

/// An offer body: failoverd's version, the backends and the units.
pub(crate) fn offer(failoverd: &str, backends: &[Vec<u8>], units: &[Vec<u8>]) -> Vec<u8> {
    let fixed = [&2u64.to_be_bytes()[..], &[0x03, 0], &1u16.to_be_bytes()].concat();
    [
        &head(1)[..],
        &fixed,
        &text(failoverd),
        &list(backends),
        &list(units),
    ]
    .concat()
}

/// A readback request body of `ids` entries.
pub(crate) fn request(ids: &[Vec<u8>]) -> Vec<u8> {
    [&head(5)[..], &4u64.to_be_bytes(), &list(ids)].concat()
}

/// An elements body of `adds` element entries and `removes` key entries.
pub(crate) fn elements(set: &str, adds: &[Vec<u8>], removes: &[Vec<u8>]) -> Vec<u8> {
    [&head(6)[..], &text(set), &list(adds), &list(removes)].concat()
}

/// An element entry: flags, timeout, expires, then key, value and comment ("": none).
pub(crate) fn element(flags: u8, timeout: u64, expires: u64, texts: [&str; 3]) -> Vec<u8> {
    entry(&[
        &[flags, 0],
        &timeout.to_be_bytes(),
        &expires.to_be_bytes(),
        &text(texts[0]),
        &text(texts[1]),
        &text(texts[2]),
    ])
}

/// A key entry (a remove).
pub(crate) fn key(key: &str) -> Vec<u8> {
    entry(&[&text(key)])
}
