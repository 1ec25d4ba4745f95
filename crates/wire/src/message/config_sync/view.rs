//! The checked view of a config-sync body, and the checks of names and texts.

use std::borrow::Cow;

use super::{ChunkRef, ConfigSyncKind, ConfigSyncMessage, MAX_CONFIG_TEXT, MAX_UNIT_NAME, decode};
use crate::WireError;

/// A checked view of a config-sync body. `new_checked` decodes the whole body, so every
/// accessor is infallible afterwards; a chunk's data stays borrowed from the frame.
#[derive(Debug, Clone, Copy)]
pub struct ConfigSyncView<'a> {
    body: &'a [u8],
    kind: ConfigSyncKind,
}

impl<'a> ConfigSyncView<'a> {
    /// Checks a config-sync body: every length, every limit ([`MAX_CONFIG_UNITS`](crate::MAX_CONFIG_UNITS),
    /// [`MAX_UNIT_NAME`], [`MAX_CONFIG_TEXT`], [`MAX_CHUNK_LEN`](crate::MAX_CHUNK_LEN),
    /// [`MAX_UNIT_LEN`](crate::MAX_UNIT_LEN)), every text
    /// (UTF-8, no control characters) and every code.
    pub fn new_checked(body: &'a [u8]) -> Result<Self, WireError> {
        // The checks are the decoder's own, so what is checked is what is read.
        let kind = decode::body(body)?.kind();
        Ok(Self { body, kind })
    }

    /// Which message it is.
    pub fn kind(&self) -> ConfigSyncKind {
        self.kind
    }

    /// Bytes of the body: what the peer made this node receive.
    pub fn body_len(&self) -> usize {
        self.body.len()
    }

    /// For a chunk, its fields with the data borrowed from the frame.
    pub fn chunk(&self) -> Option<ChunkRef<'a>> {
        // Invariant: `new_checked` decoded these same bytes without an error.
        (self.kind == ConfigSyncKind::Chunk)
            .then(|| decode::chunk(self.body).expect("a checked config-sync chunk decodes"))
    }

    /// The owned message (for a chunk, with a copy of its data: see [`chunk`](Self::chunk)).
    pub fn message(&self) -> ConfigSyncMessage {
        // Invariant: `new_checked` decoded these same bytes without an error.
        decode::body(self.body)
            .expect("a checked config-sync body decodes")
            .into_message()
    }
}

/// `text` as a text field carries it: control characters (a multi-line kernel message's
/// line breaks) become spaces, and it is cut at a character boundary to at most
/// [`MAX_CONFIG_TEXT`] bytes. Emitting a message does this to its texts.
pub fn config_text(text: &str) -> Cow<'_, str> {
    if text.len() <= MAX_CONFIG_TEXT && !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len().min(MAX_CONFIG_TEXT));
    for c in text.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if out.len() + c.len_utf8() > MAX_CONFIG_TEXT {
            break;
        }
        out.push(c);
    }
    Cow::Owned(out)
}

/// A unit name that can travel, or why not.
pub(super) fn check_name(name: &str) -> Result<(), WireError> {
    if name.is_empty() || name.len() > MAX_UNIT_NAME || name.chars().any(char::is_control) {
        return Err(WireError::Malformed("config-sync unit name"));
    }
    Ok(())
}
