//! Byte offsets of the config-sync body (see the layout in the crate documentation), each
//! given once here. Reserved bytes (zero) fill the gaps. Offsets of a sub-kind's fields count
//! from the start of the body; its variable-length fields follow its fixed ones in order.

use crate::Field;

pub(crate) const KIND: usize = 0;

/// [`ConfigOffer`](crate::ConfigOffer): then the failoverd version (a text), the backends
/// and the units (lists).
pub(crate) mod offer {
    use crate::{Field, Rest};

    pub(crate) const REVISION: Field = 4..12;
    pub(crate) const FLAGS: usize = 12;
    pub(crate) const SCHEMA: Field = 14..16;
    pub(crate) const TAIL: Rest = 16..;

    /// The sender claims to be the source.
    pub(crate) const SOURCE: u8 = 0x01;
    /// The sender's mode is auto.
    pub(crate) const AUTO: u8 = 0x02;
}

/// [`TransferHeader`](crate::TransferHeader): then the units (a list).
pub(crate) mod transfer {
    use crate::{Field, Rest};

    pub(crate) const TRANSFER: Field = 4..12;
    pub(crate) const REQUEST: Field = 12..20;
    pub(crate) const PURPOSE: usize = 20;
    pub(crate) const TAIL: Rest = 22..;
}

/// [`Chunk`](crate::Chunk): `LEN` bytes of data at `DATA`.
pub(crate) mod chunk {
    use crate::{Field, Rest};

    pub(crate) const TRANSFER: Field = 4..12;
    pub(crate) const UNIT: Field = 12..14;
    pub(crate) const OFFSET: Field = 16..20;
    pub(crate) const LEN: Field = 20..24;
    pub(crate) const DATA: Rest = 24..;
}

/// [`SyncResult`](crate::SyncResult): then the reason (a text) and the read-back (a list).
pub(crate) mod result {
    use crate::{Field, Rest};

    pub(crate) const TRANSFER: Field = 4..12;
    pub(crate) const OUTCOME: usize = 12;
    pub(crate) const FLAGS: usize = 13;
    pub(crate) const FAILED_UNIT: Field = 14..16;
    pub(crate) const TAIL: Rest = 16..;

    /// `FAILED_UNIT` names the unit that failed.
    pub(crate) const UNIT_FAILED: u8 = 0x01;
}

/// [`ConfigSyncMessage::ReadbackRequest`](crate::ConfigSyncMessage::ReadbackRequest): then
/// the unit ids (a list).
pub(crate) mod request {
    use crate::{Field, Rest};

    pub(crate) const REQUEST: Field = 4..12;
    pub(crate) const TAIL: Rest = 12..;
}

/// [`SetElements`](crate::SetElements): then the set's name (a text), the adds (a list of
/// [`element`]) and the removes (a list of [`removed`]).
pub(crate) mod elements {
    use crate::Rest;

    pub(crate) const TAIL: Rest = 4..;
}

/// An element to add (a list entry: its length first): then its key, value and comment
/// (texts; an empty value or comment is none).
pub(crate) mod element {
    use crate::{Field, Rest};

    pub(crate) const FLAGS: usize = 2;
    pub(crate) const TIMEOUT: Field = 4..12;
    pub(crate) const EXPIRES: Field = 12..20;
    pub(crate) const KEY: Rest = 20..;

    /// `TIMEOUT` holds the element's own timeout.
    pub(crate) const HAS_TIMEOUT: u8 = 0x01;
    /// `EXPIRES` holds its remaining lifetime.
    pub(crate) const HAS_EXPIRES: u8 = 0x02;
}

/// A key to delete (a list entry: its length first).
pub(crate) mod removed {
    use crate::Rest;

    pub(crate) const KEY: Rest = 2..;
}

/// A text: its length, then that many bytes of UTF-8.
pub(crate) mod text {
    use crate::{Field, Rest};

    pub(crate) const LEN: Field = 0..2;
    pub(crate) const BYTES: Rest = 2..;
}

/// A list: its count, then that many entries.
pub(crate) const COUNT: Field = 0..2;

/// The start of every list entry: the length of the rest of the entry, then the unit kind
/// and (in entries that have one) the unit state.
pub(crate) mod entry {
    use crate::Field;

    pub(crate) const LEN: Field = 0..2;
    pub(crate) const KIND: usize = 2;
    pub(crate) const STATE: usize = 3;
}

/// An offer's backend entry: then its version (a text).
pub(crate) mod backend {
    use crate::Rest;

    pub(crate) const VERSION: Rest = 4..;
}

/// A unit and what a node holds of it (offer, result): then its name (a text).
pub(crate) mod unit {
    use crate::{Field, Rest};

    pub(crate) const HASH: Field = 4..36;
    pub(crate) const NAME: Rest = 36..;
}

/// A transfer's unit: then its name (a text).
pub(crate) mod transfer_unit {
    use crate::{Field, Rest};

    pub(crate) const LEN: Field = 4..8;
    pub(crate) const HASH: Field = 8..40;
    pub(crate) const NAME: Rest = 40..;
}

/// A unit id (readback request): then its name (a text).
pub(crate) mod id {
    use crate::Rest;

    pub(crate) const NAME: Rest = 4..;
}
