//! Reading a config-sync body: every check is made here, as the owned values are built.

use super::elements::check_key;
use super::field::transfer_unit as tunit;
use super::field::{
    self, backend, chunk, element, elements, entry, id, offer, removed, request, result, transfer,
    unit,
};
use super::{
    ChunkRef, ConfigOffer, ConfigSyncKind, ConfigSyncMessage, ConfigVersions, ElementEntry,
    MAX_CHUNK_LEN, MAX_CONFIG_TEXT, MAX_CONFIG_UNITS, MAX_ELEMENTS, MAX_UNIT_LEN, SetElements,
    SyncOutcome, SyncResult, TransferHeader, TransferPurpose, TransferUnit, UnitId, UnitKind,
    UnitState, check_name,
};
use crate::{Field, WireError, read_u16, read_u32, read_u64};

/// A decoded body: a chunk keeps borrowing its data.
pub(super) enum Decoded<'a> {
    Chunk(ChunkRef<'a>),
    Owned(ConfigSyncMessage),
}

impl Decoded<'_> {
    pub(super) fn kind(&self) -> ConfigSyncKind {
        match self {
            Self::Chunk(_) => ConfigSyncKind::Chunk,
            Self::Owned(message) => message.kind(),
        }
    }

    pub(super) fn into_message(self) -> ConfigSyncMessage {
        match self {
            Self::Chunk(chunk) => ConfigSyncMessage::Chunk(chunk.to_chunk()),
            Self::Owned(message) => message,
        }
    }
}

/// Decodes a whole body; bytes after the fields this version knows are ignored.
pub(super) fn body(body: &[u8]) -> Result<Decoded<'_>, WireError> {
    let kind = ConfigSyncKind::from_code(*body.get(field::KIND).ok_or(WireError::Truncated)?)?;
    Ok(match kind {
        ConfigSyncKind::Offer => Decoded::Owned(ConfigSyncMessage::Offer(self::offer(body)?)),
        ConfigSyncKind::Transfer => {
            Decoded::Owned(ConfigSyncMessage::Transfer(self::transfer(body)?))
        }
        ConfigSyncKind::Chunk => Decoded::Chunk(self::chunk(body)?),
        ConfigSyncKind::Result => Decoded::Owned(ConfigSyncMessage::Result(self::result(body)?)),
        ConfigSyncKind::ReadbackRequest => {
            let head = fixed(body, request::TAIL.start)?;
            let units = Cursor::new(&body[request::TAIL]).list(self::id)?;
            Decoded::Owned(ConfigSyncMessage::ReadbackRequest {
                request: read_u64(head, request::REQUEST),
                units,
            })
        }
        ConfigSyncKind::Elements => {
            Decoded::Owned(ConfigSyncMessage::Elements(self::elements(body)?))
        }
    })
}

fn elements(body: &[u8]) -> Result<SetElements, WireError> {
    fixed(body, elements::TAIL.start)?;
    let mut tail = Cursor::new(&body[elements::TAIL]);
    let set = tail.string(check_name)?.to_owned();
    let adds = tail.list_of(MAX_ELEMENTS, self::element)?;
    let removes = tail.list_of(MAX_ELEMENTS - adds.len(), |raw| {
        fixed(raw, removed::KEY.start)?;
        Ok(Cursor::new(&raw[removed::KEY])
            .string(check_key)?
            .to_owned())
    })?;
    Ok(SetElements { set, adds, removes })
}

/// An element to add.
fn element(raw: &[u8]) -> Result<ElementEntry, WireError> {
    let head = fixed(raw, element::KEY.start)?;
    let flags = head[element::FLAGS];
    let mut texts = Cursor::new(&raw[element::KEY]);
    let key = texts.string(check_key)?.to_owned();
    // Empty: none.
    let mut optional = || -> Result<Option<String>, WireError> {
        let text = texts.string(|t| if t.is_empty() { Ok(()) } else { check_key(t) })?;
        Ok((!text.is_empty()).then(|| text.to_owned()))
    };
    let value = optional()?;
    let comment = optional()?;
    Ok(ElementEntry {
        key,
        value,
        comment,
        timeout_ms: (flags & element::HAS_TIMEOUT != 0).then(|| read_u64(head, element::TIMEOUT)),
        expires_ms: (flags & element::HAS_EXPIRES != 0).then(|| read_u64(head, element::EXPIRES)),
    })
}

fn offer(body: &[u8]) -> Result<ConfigOffer, WireError> {
    let head = fixed(body, offer::TAIL.start)?;
    let flags = head[offer::FLAGS];
    let mut tail = Cursor::new(&body[offer::TAIL]);
    let failoverd = tail.text()?.to_owned();
    let backends = tail.list(self::backend)?;
    let units = tail.list(unit_state)?;
    Ok(ConfigOffer {
        versions: ConfigVersions {
            failoverd,
            schema: read_u16(head, offer::SCHEMA),
            backends,
        },
        source: flags & offer::SOURCE != 0,
        auto: flags & offer::AUTO != 0,
        revision: read_u64(head, offer::REVISION),
        units,
    })
}

fn transfer(body: &[u8]) -> Result<TransferHeader, WireError> {
    let head = fixed(body, transfer::TAIL.start)?;
    Ok(TransferHeader {
        transfer: read_u64(head, transfer::TRANSFER),
        purpose: TransferPurpose::from_code(head[transfer::PURPOSE])?,
        request: read_u64(head, transfer::REQUEST),
        units: Cursor::new(&body[transfer::TAIL]).list(transfer_unit)?,
    })
}

/// A chunk's fields, its data borrowed from `body`.
pub(super) fn chunk(body: &[u8]) -> Result<ChunkRef<'_>, WireError> {
    let head = fixed(body, chunk::DATA.start)?;
    let unit = read_u16(head, chunk::UNIT);
    let offset = read_u32(head, chunk::OFFSET);
    let len = read_u32(head, chunk::LEN);
    if usize::from(unit) >= MAX_CONFIG_UNITS {
        return Err(WireError::Malformed("config-sync chunk unit"));
    }
    if len as usize > MAX_CHUNK_LEN {
        return Err(WireError::Malformed("config-sync chunk length"));
    }
    if u64::from(offset) + u64::from(len) > u64::from(MAX_UNIT_LEN) {
        return Err(WireError::Malformed(
            "config-sync chunk beyond the unit length limit",
        ));
    }
    let data = Cursor::new(&body[chunk::DATA]).take(len as usize)?;
    Ok(ChunkRef {
        transfer: read_u64(head, chunk::TRANSFER),
        unit,
        offset,
        data,
    })
}

fn result(body: &[u8]) -> Result<SyncResult, WireError> {
    let head = fixed(body, result::TAIL.start)?;
    let failed_unit = (head[result::FLAGS] & result::UNIT_FAILED != 0)
        .then(|| read_u16(head, result::FAILED_UNIT));
    if failed_unit.is_some_and(|unit| usize::from(unit) >= MAX_CONFIG_UNITS) {
        return Err(WireError::Malformed("config-sync failed unit"));
    }
    let mut tail = Cursor::new(&body[result::TAIL]);
    let reason = tail.text()?.to_owned();
    Ok(SyncResult {
        transfer: read_u64(head, result::TRANSFER),
        outcome: SyncOutcome::from_code(head[result::OUTCOME])?,
        failed_unit,
        reason,
        readback: tail.list(unit_state)?,
    })
}

/// An offer's backend entry.
fn backend(raw: &[u8]) -> Result<(UnitKind, String), WireError> {
    let head = fixed(raw, backend::VERSION.start)?;
    let kind = UnitKind::from_code(head[entry::KIND])?;
    Ok((kind, Cursor::new(&raw[backend::VERSION]).text()?.to_owned()))
}

/// An offer's or a result's unit entry.
fn unit_state(raw: &[u8]) -> Result<(UnitId, UnitState), WireError> {
    let head = fixed(raw, unit::NAME.start)?;
    let state = UnitState::from_code(head[entry::STATE], hash(head, unit::HASH))?;
    let id = unit_id(head[entry::KIND], &raw[unit::NAME])?;
    Ok((id, state))
}

/// A transfer's unit entry: content only for a unit present, and within the limit.
fn transfer_unit(raw: &[u8]) -> Result<TransferUnit, WireError> {
    let head = fixed(raw, tunit::NAME.start)?;
    let state = UnitState::from_code(head[entry::STATE], hash(head, tunit::HASH))?;
    let len = read_u32(head, tunit::LEN);
    if len > MAX_UNIT_LEN {
        return Err(WireError::Malformed(
            "config-sync unit longer than the limit",
        ));
    }
    if len > 0 && !matches!(state, UnitState::Present(_)) {
        return Err(WireError::Malformed(
            "config-sync content of a unit not present",
        ));
    }
    let id = unit_id(head[entry::KIND], &raw[tunit::NAME])?;
    Ok(TransferUnit { id, state, len })
}

/// A readback request's entry.
fn id(raw: &[u8]) -> Result<UnitId, WireError> {
    let head = fixed(raw, id::NAME.start)?;
    unit_id(head[entry::KIND], &raw[id::NAME])
}

/// A unit id from its kind's code and the bytes that start with its name.
fn unit_id(kind: u8, name: &[u8]) -> Result<UnitId, WireError> {
    let kind = UnitKind::from_code(kind)?;
    let name = Cursor::new(name).string(check_name)?;
    Ok(UnitId {
        kind,
        name: name.to_owned(),
    })
}

fn hash(head: &[u8], field: Field) -> [u8; 32] {
    let mut hash = [0; 32];
    hash.copy_from_slice(&head[field]);
    hash
}

/// The first `len` bytes of `bytes`: a structure's fixed fields.
fn fixed(bytes: &[u8], len: usize) -> Result<&[u8], WireError> {
    bytes.get(..len).ok_or(WireError::Truncated)
}

/// Reads the variable-length fields of a structure in order.
struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn new(rest: &'a [u8]) -> Self {
        Self { rest }
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], WireError> {
        if self.rest.len() < len {
            return Err(WireError::Truncated);
        }
        let (taken, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(taken)
    }

    fn u16(&mut self, field: Field) -> Result<u16, WireError> {
        let bytes = self.rest.get(..field.end).ok_or(WireError::Truncated)?;
        Ok(read_u16(bytes, field))
    }

    /// A text: at most [`MAX_CONFIG_TEXT`] bytes of UTF-8 without control characters.
    fn text(&mut self) -> Result<&'a str, WireError> {
        self.string(|text| {
            if text.len() > MAX_CONFIG_TEXT || text.chars().any(char::is_control) {
                return Err(WireError::Malformed("config-sync text"));
            }
            Ok(())
        })
    }

    /// A length-prefixed string that passes `check`.
    fn string(
        &mut self,
        check: impl FnOnce(&str) -> Result<(), WireError>,
    ) -> Result<&'a str, WireError> {
        let len = usize::from(self.u16(field::text::LEN)?);
        let raw = self.take(field::text::BYTES.start + len)?;
        let text = std::str::from_utf8(&raw[field::text::BYTES])
            .map_err(|_| WireError::Malformed("config-sync text is not UTF-8"))?;
        check(text)?;
        Ok(text)
    }

    /// A list of at most [`MAX_CONFIG_UNITS`] entries, each read by `read` from its bytes
    /// (its length field included); bytes after what `read` reads are a later minor's.
    fn list<T>(
        &mut self,
        read: impl Fn(&'a [u8]) -> Result<T, WireError>,
    ) -> Result<Vec<T>, WireError> {
        self.list_of(MAX_CONFIG_UNITS, read)
    }

    /// A list of at most `max` entries, read as [`list`](Self::list) reads them.
    fn list_of<T>(
        &mut self,
        max: usize,
        read: impl Fn(&'a [u8]) -> Result<T, WireError>,
    ) -> Result<Vec<T>, WireError> {
        let count = usize::from(self.u16(field::COUNT)?);
        if count > max {
            return Err(WireError::Malformed("config-sync list too long"));
        }
        self.take(field::COUNT.end)?;
        (0..count)
            .map(|_| {
                let len = usize::from(self.u16(entry::LEN)?);
                read(self.take(entry::LEN.end + len)?)
            })
            .collect()
    }
}
