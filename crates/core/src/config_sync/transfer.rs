//! Units on the wire: a transfer is a header and its units' content in chunks, unit by unit,
//! in order; the receiver assembles them and checks each unit against its announced hash.

use failoverd_wire::{
    Chunk, ConfigSyncMessage, MAX_CHUNK_LEN, TransferHeader, TransferPurpose, TransferUnit,
    UnitHash, UnitId, UnitState,
};
use sha2::{Digest, Sha256};

use super::types::Readback;

/// SHA-256 of a unit's canonical content.
pub fn unit_hash(content: &[u8]) -> UnitHash {
    UnitHash(Sha256::digest(content).into())
}

/// What a read-back says of a unit, as offers and results carry it.
pub fn state_of(content: &Readback) -> UnitState {
    match content {
        Ok(None) => UnitState::Absent,
        Ok(Some(bytes)) => UnitState::Present(unit_hash(bytes)),
        Err(_) => UnitState::Unreadable,
    }
}

/// The messages of one transfer: its header, then each present unit's content in chunks.
pub(super) fn messages(
    transfer: u64,
    purpose: TransferPurpose,
    request: u64,
    units: &[(UnitId, Option<&[u8]>)],
) -> Vec<ConfigSyncMessage> {
    let header = TransferHeader {
        transfer,
        purpose,
        request,
        units: units
            .iter()
            .map(|(id, content)| TransferUnit {
                id: id.clone(),
                state: content.map_or(UnitState::Absent, |c| UnitState::Present(unit_hash(c))),
                len: content.map_or(0, |c| c.len() as u32),
            })
            .collect(),
    };
    let mut out = vec![ConfigSyncMessage::Transfer(header)];
    for (index, (_, content)) in units.iter().enumerate() {
        let Some(content) = content else { continue };
        for (n, data) in content.chunks(MAX_CHUNK_LEN).enumerate() {
            out.push(ConfigSyncMessage::Chunk(Chunk {
                transfer,
                unit: index as u16,
                offset: (n * MAX_CHUNK_LEN) as u32,
                data: data.to_vec(),
            }));
        }
    }
    out
}

/// Why a chunk was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ChunkError {
    /// Of another transfer, or already received (a duplicate): dropped, the transfer goes on.
    Stray,
    /// Past a gap, or beyond its unit: the transfer cannot complete.
    Gap,
}

/// A transfer being received.
#[derive(Debug)]
pub(super) struct Assembly {
    pub(super) header: TransferHeader,
    /// Per unit, the content so far.
    content: Vec<Vec<u8>>,
    /// The unit being filled (units before it are complete).
    unit: usize,
}

impl Assembly {
    pub(super) fn new(header: TransferHeader) -> Self {
        let content = header
            .units
            .iter()
            .map(|u| Vec::with_capacity(u.len as usize))
            .collect();
        let mut assembly = Self {
            header,
            content,
            unit: 0,
        };
        assembly.skip_complete();
        assembly
    }

    fn skip_complete(&mut self) {
        while self.unit < self.content.len()
            && self.content[self.unit].len() == self.header.units[self.unit].len as usize
        {
            self.unit += 1;
        }
    }

    pub(super) fn is_complete(&self) -> bool {
        self.unit == self.content.len()
    }

    pub(super) fn take(&mut self, chunk: &Chunk) -> Result<(), ChunkError> {
        if chunk.transfer != self.header.transfer {
            return Err(ChunkError::Stray);
        }
        let index = usize::from(chunk.unit);
        let offset = chunk.offset as usize;
        if index < self.unit || (index == self.unit && offset < self.content[index].len()) {
            return Err(ChunkError::Stray);
        }
        let Some(unit) = self.header.units.get(index) else {
            return Err(ChunkError::Gap);
        };
        if index != self.unit
            || offset != self.content[index].len()
            || offset + chunk.data.len() > unit.len as usize
        {
            return Err(ChunkError::Gap);
        }
        self.content[index].extend_from_slice(&chunk.data);
        self.skip_complete();
        Ok(())
    }

    /// The units with their content as the sender read it, once complete; `Err` names a unit
    /// whose content does not hash to what the header announced.
    pub(super) fn finish(self) -> Result<Vec<(UnitId, Readback)>, UnitId> {
        let mut out = Vec::with_capacity(self.content.len());
        for (unit, content) in self.header.units.into_iter().zip(self.content) {
            let content = match unit.state {
                UnitState::Present(hash) if unit_hash(&content) == hash => Ok(Some(content)),
                UnitState::Absent if content.is_empty() => Ok(None),
                UnitState::Unreadable if content.is_empty() => {
                    Err("the sender could not read it".to_owned())
                }
                _ => return Err(unit.id),
            };
            out.push((unit.id, content));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use failoverd_wire::UnitKind;

    use super::*;

    fn id(name: &str) -> UnitId {
        UnitId {
            kind: UnitKind::Files,
            name: name.into(),
        }
    }

    fn assemble(messages: &[ConfigSyncMessage]) -> Assembly {
        let ConfigSyncMessage::Transfer(header) = &messages[0] else {
            panic!("no header first")
        };
        Assembly::new(header.clone())
    }

    #[test]
    fn units_round_trip_through_chunks() {
        let big = vec![7u8; 2 * MAX_CHUNK_LEN + 5];
        let units = [
            (id("/a"), Some(&b""[..])),
            (id("/b"), None),
            (id("/c"), Some(&big[..])),
        ];
        let messages = messages(9, TransferPurpose::FullSync, 0, &units);
        assert_eq!(messages.len(), 1 + 3, "a header and three chunks of /c");
        let mut assembly = assemble(&messages);
        for message in &messages[1..] {
            let ConfigSyncMessage::Chunk(chunk) = message else {
                panic!()
            };
            assert!(!assembly.is_complete());
            assembly.take(chunk).unwrap();
            // A duplicate is dropped and harms nothing.
            assert_eq!(assembly.take(chunk), Err(ChunkError::Stray));
        }
        assert!(assembly.is_complete());
        let units = assembly.finish().unwrap();
        assert_eq!(units[0], (id("/a"), Ok(Some(vec![]))));
        assert_eq!(units[1], (id("/b"), Ok(None)));
        assert_eq!(units[2].1, Ok(Some(big)));
    }

    #[test]
    fn a_gap_or_a_wrong_hash_is_caught() {
        let big = vec![1u8; MAX_CHUNK_LEN + 1];
        let messages = messages(
            3,
            TransferPurpose::Incremental,
            0,
            &[(id("/a"), Some(&big))],
        );
        let mut assembly = assemble(&messages);
        let ConfigSyncMessage::Chunk(second) = &messages[2] else {
            panic!()
        };
        assert_eq!(assembly.take(second), Err(ChunkError::Gap));
        let ConfigSyncMessage::Chunk(first) = &messages[1] else {
            panic!()
        };
        let mut other = first.clone();
        other.transfer = 4;
        assert_eq!(assembly.take(&other), Err(ChunkError::Stray));
        let mut corrupt = first.clone();
        corrupt.data[0] = 2;
        assembly.take(&corrupt).unwrap();
        assembly.take(second).unwrap();
        assert_eq!(assembly.finish(), Err(id("/a")));
    }
}
