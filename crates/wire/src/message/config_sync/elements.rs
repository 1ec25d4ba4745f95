//! Dynamic set elements: runtime state the source replicates to the replica (like sessions),
//! apart from the units and their hashes.

use crate::WireError;

/// The most element entries (adds and removes together) one message carries, so that the
/// largest message is one frame.
pub const MAX_ELEMENTS: usize = 1024;
/// The longest element text (a key, a map value, a comment), in bytes.
pub const MAX_ELEMENT_TEXT: usize = 255;

/// One element of a dynamic set as the source read it, with what was left of its lifetime.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ElementEntry {
    /// The key as nft prints it (`10.0.0.1`, `10.0.0.1 . 80`): 1..=[`MAX_ELEMENT_TEXT`]
    /// bytes, no control characters.
    pub key: String,
    /// A map element's value (`accept`); `None` in a set. Never empty.
    pub value: Option<String>,
    /// Its comment, without the quotes. Never empty.
    pub comment: Option<String>,
    /// The element's own timeout in milliseconds; `None`: the set's default, or none.
    pub timeout_ms: Option<u64>,
    /// Milliseconds until it expires, when the source read it; `None`: never.
    pub expires_ms: Option<u64>,
}

impl ElementEntry {
    /// Whether it can travel: a key of 1..=[`MAX_ELEMENT_TEXT`] bytes, a value and a
    /// comment non-empty when present and as short, no control characters.
    pub fn check(&self) -> Result<(), WireError> {
        check_key(&self.key)?;
        for text in [&self.value, &self.comment].into_iter().flatten() {
            check_key(text)?;
        }
        Ok(())
    }
}

/// Changes to one dynamic set: elements to add (or whose expiry to refresh: an add replaces an
/// element of the same key) and keys to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetElements {
    /// The set, `family table set` (e.g. `inet filter blocklist`): 1..=
    /// [`MAX_UNIT_NAME`](crate::MAX_UNIT_NAME) bytes, no control characters.
    pub set: String,
    /// Elements to add or replace.
    pub adds: Vec<ElementEntry>,
    /// Keys to delete. With `adds`, at most [`MAX_ELEMENTS`] in all.
    pub removes: Vec<String>,
}

/// An element text (a key, a present value or comment) that can travel, or why not.
pub(super) fn check_key(text: &str) -> Result<(), WireError> {
    if text.is_empty() || text.len() > MAX_ELEMENT_TEXT || text.chars().any(char::is_control) {
        return Err(WireError::Malformed("config-sync element text"));
    }
    Ok(())
}
