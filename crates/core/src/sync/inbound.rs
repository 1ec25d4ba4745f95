//! Receiving the peer's sessions: batches accepted strictly in order, applied in bounded slices,
//! acknowledged once applied; a bulk sync ends with a sweep of what it did not mention.

use std::collections::{HashSet, VecDeque};

use failoverd_wire::{Ack, BatchFlags, BatchView, NodeId, SessionKey, SessionOp, WireError};

use crate::stats::Stats;

/// A batch received in order and not yet applied.
#[derive(Debug)]
struct Received {
    seq: u64,
    ops: Vec<SessionOp>,
    bulk_end: bool,
}

/// Work for the backend, in the order it must happen.
#[derive(Debug)]
pub(crate) enum InboundWork {
    /// Apply these ops; on completion everything up to `last_seq` is applied.
    Apply {
        ops: Vec<SessionOp>,
        last_seq: u64,
        bulk_end: bool,
    },
    /// Delete the peer's entries the bulk did not mention, then `last_seq` is applied.
    Sweep {
        keep: HashSet<SessionKey>,
        last_seq: u64,
    },
}

/// What receiving a batch did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Receipt {
    /// Accepted in order.
    Accepted,
    /// Already received: the ack was lost, send it again.
    Duplicate,
    /// A gap before it: dropped, the sender resends.
    OutOfOrder,
    /// Belongs to an epoch that is not current.
    StaleEpoch,
}

/// The peer's side of the replication stream, as we receive it.
#[derive(Debug)]
pub(crate) struct Inbound {
    peer: NodeId,
    epoch: Option<u32>,
    received: u64,
    applied: u64,
    queue: VecDeque<Received>,
    /// Keys the current bulk mentioned: what survives its sweep.
    keep: Option<HashSet<SessionKey>>,
    bulk_records: u64,
    complete: bool,
    ack_due: bool,
    /// Changes whenever the stream restarts, so results of older work are recognised.
    generation: u64,
}

impl Inbound {
    pub(crate) fn new() -> Self {
        Self {
            peer: NodeId(0),
            epoch: None,
            received: 0,
            applied: 0,
            queue: VecDeque::new(),
            keep: None,
            bulk_records: 0,
            complete: false,
            ack_due: false,
            generation: 0,
        }
    }

    /// Forgets the stream (link lost, or a new one begins). Applied entries stay in the table.
    pub(crate) fn reset(&mut self, peer: NodeId) {
        self.peer = peer;
        self.epoch = None;
        self.received = 0;
        self.applied = 0;
        self.queue.clear();
        self.keep = None;
        self.bulk_records = 0;
        self.complete = false;
        self.ack_due = false;
        self.generation += 1;
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// The peer's bulk sync is applied and swept: we hold its sessions.
    pub(crate) fn complete(&self) -> bool {
        self.complete
    }

    pub(crate) fn epoch(&self) -> Option<u32> {
        self.epoch
    }

    pub(crate) fn queued_batches(&self) -> usize {
        self.queue.len()
    }

    /// Takes in one batch. Errors (a record that does not parse) reject the whole batch.
    pub(crate) fn handle_batch(
        &mut self,
        batch: BatchView<'_>,
        ack_before_apply: bool,
        stats: &mut Stats,
    ) -> Result<Receipt, WireError> {
        let flags = batch.flags();
        let seq = batch.seq();
        if flags.has(BatchFlags::BULK_BEGIN) && seq == 1 && self.epoch != Some(batch.epoch()) {
            let peer = self.peer;
            self.reset(peer);
            self.epoch = Some(batch.epoch());
            self.keep = Some(HashSet::new());
        }
        if self.epoch != Some(batch.epoch()) {
            stats.stale_epoch_batches += 1;
            return Ok(Receipt::StaleEpoch);
        }
        if seq <= self.received {
            stats.duplicate_batches += 1;
            self.ack_due = true;
            return Ok(Receipt::Duplicate);
        }
        if seq != self.received + 1 {
            stats.out_of_order_batches += 1;
            self.ack_due = true;
            return Ok(Receipt::OutOfOrder);
        }
        let mut ops = Vec::new();
        for section in batch.sections() {
            match section.kind {
                failoverd_wire::SectionKind::Upsert => {
                    for record in section.upserts() {
                        let record = record?;
                        if record.owner == self.peer {
                            ops.push(SessionOp::Upsert(record));
                        } else {
                            // The peer replicates only what it owns; anything else is not its to give.
                            stats.foreign_records += 1;
                        }
                    }
                }
                failoverd_wire::SectionKind::Remove => {
                    for key in section.removes() {
                        ops.push(SessionOp::Remove {
                            key: key?,
                            owner: self.peer,
                        });
                    }
                }
                failoverd_wire::SectionKind::Unknown(_) => stats.unknown_sections += 1,
            }
        }
        if let Some(keep) = &mut self.keep {
            for op in &ops {
                match op {
                    SessionOp::Upsert(record) => keep.insert(record.key),
                    SessionOp::Remove { key, .. } => keep.remove(key),
                };
            }
        }
        let bulk_end = flags.has(BatchFlags::BULK_END);
        if self.keep.is_some() {
            self.bulk_records += ops.len() as u64;
        }
        stats.batches_received += 1;
        stats.records_received += ops.len() as u64;
        self.received = seq;
        self.ack_due = true;
        if ack_before_apply {
            self.applied = seq;
        }
        self.queue.push_back(Received { seq, ops, bulk_end });
        Ok(Receipt::Accepted)
    }

    /// The next slice of backend work: consecutive batches merged up to `max_ops`, never past
    /// the end of a bulk (its sweep must come before anything later).
    pub(crate) fn next_work(&mut self, max_ops: usize) -> Option<InboundWork> {
        let first = self.queue.pop_front()?;
        let mut ops = first.ops;
        let mut last_seq = first.seq;
        let mut bulk_end = first.bulk_end;
        while !bulk_end
            && let Some(next) = self.queue.front()
            && ops.len() + next.ops.len() <= max_ops
        {
            // Invariant: `front()` just returned Some.
            let Some(next) = self.queue.pop_front() else {
                break;
            };
            ops.extend(next.ops);
            last_seq = next.seq;
            bulk_end = next.bulk_end;
        }
        Some(InboundWork::Apply {
            ops,
            last_seq,
            bulk_end,
        })
    }

    /// The apply of batches up to `last_seq` finished. Returns the sweep that ends a bulk.
    pub(crate) fn applied(
        &mut self,
        last_seq: u64,
        bulk_end: bool,
        skip_sweep: bool,
    ) -> Option<InboundWork> {
        if bulk_end && let Some(keep) = self.keep.take() {
            if skip_sweep {
                self.swept(last_seq);
                return None;
            }
            return Some(InboundWork::Sweep { keep, last_seq });
        }
        self.applied = self.applied.max(last_seq);
        self.ack_due = true;
        None
    }

    /// The sweep that ends the bulk finished: we hold the peer's sessions.
    pub(crate) fn swept(&mut self, last_seq: u64) {
        self.applied = self.applied.max(last_seq);
        self.complete = true;
        self.ack_due = true;
    }

    pub(crate) fn bulk_records(&self) -> u64 {
        self.bulk_records
    }

    /// The acknowledgement to send, if one is due.
    pub(crate) fn take_ack(&mut self) -> Option<Ack> {
        if !std::mem::take(&mut self.ack_due) {
            return None;
        }
        Some(Ack {
            epoch: self.epoch?,
            received: self.received,
            applied: self.applied,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use failoverd_wire::{BatchWriter, HelperName, Message, SessionRecord, TcpInfo, Tuple};

    fn record(i: u16, owner: NodeId) -> SessionRecord {
        let orig = Tuple {
            src: "10.0.0.1".parse().unwrap(),
            dst: "192.0.2.1".parse().unwrap(),
            src_port: i,
            dst_port: 53,
        };
        SessionRecord {
            key: SessionKey {
                zone: 0,
                l4proto: 17,
                orig,
            },
            reply: Tuple {
                src: orig.dst,
                dst: orig.src,
                src_port: 53,
                dst_port: i,
            },
            owner,
            mark: 0,
            status: 0,
            timeout_secs: 30,
            tcp: TcpInfo::default(),
            seq_adj: Default::default(),
            labels: [0; 16],
            helper: HelperName::NONE,
        }
    }

    fn frame(epoch: u32, seq: u64, flags: u8, records: &[SessionRecord]) -> Vec<u8> {
        let mut writer = BatchWriter::new();
        for r in records {
            writer.push_upsert(r);
        }
        let mut buf = Vec::new();
        writer.finish(epoch, seq, BatchFlags(flags), &mut buf);
        buf
    }

    fn receive(inbound: &mut Inbound, bytes: &[u8], stats: &mut Stats) -> Receipt {
        let Message::SessionBatch(batch) = Message::parse(bytes).unwrap() else {
            panic!()
        };
        inbound.handle_batch(batch, false, stats).unwrap()
    }

    #[test]
    fn batches_are_taken_in_order_and_acked_only_when_applied() {
        let peer = NodeId(2);
        let mut stats = Stats::default();
        let mut inbound = Inbound::new();
        inbound.reset(peer);
        let b1 = frame(9, 1, BatchFlags::BULK_BEGIN, &[record(1, peer)]);
        let b2 = frame(9, 2, 0, &[record(2, peer)]);
        let b3 = frame(
            9,
            3,
            BatchFlags::BULK_END,
            &[record(3, peer), record(4, NodeId(7))],
        );
        assert_eq!(
            receive(&mut inbound, &b2, &mut stats),
            Receipt::StaleEpoch,
            "no epoch before its first batch"
        );
        assert_eq!(receive(&mut inbound, &b1, &mut stats), Receipt::Accepted);
        assert_eq!(receive(&mut inbound, &b3, &mut stats), Receipt::OutOfOrder);
        assert_eq!(receive(&mut inbound, &b2, &mut stats), Receipt::Accepted);
        assert_eq!(receive(&mut inbound, &b2, &mut stats), Receipt::Duplicate);
        assert_eq!(receive(&mut inbound, &b3, &mut stats), Receipt::Accepted);
        assert_eq!(stats.foreign_records, 1);
        assert_eq!(
            inbound.take_ack(),
            Some(Ack {
                epoch: 9,
                received: 3,
                applied: 0
            })
        );
        let Some(InboundWork::Apply {
            ops,
            last_seq,
            bulk_end,
        }) = inbound.next_work(100)
        else {
            panic!()
        };
        assert_eq!(
            (ops.len(), last_seq, bulk_end),
            (3, 3, true),
            "merged up to the bulk end"
        );
        let Some(InboundWork::Sweep { keep, last_seq }) = inbound.applied(3, true, false) else {
            panic!()
        };
        assert_eq!(keep.len(), 3);
        assert!(!inbound.complete());
        assert_eq!(
            inbound.take_ack(),
            None,
            "nothing new is applied before the sweep"
        );
        inbound.swept(last_seq);
        assert!(inbound.complete());
        assert_eq!(
            inbound.take_ack(),
            Some(Ack {
                epoch: 9,
                received: 3,
                applied: 3
            })
        );
    }

    #[test]
    fn a_new_bulk_restarts_the_stream() {
        let peer = NodeId(2);
        let mut stats = Stats::default();
        let mut inbound = Inbound::new();
        inbound.reset(peer);
        receive(
            &mut inbound,
            &frame(1, 1, BatchFlags::BULK_BEGIN | BatchFlags::BULK_END, &[]),
            &mut stats,
        );
        let generation = inbound.generation();
        assert_eq!(
            receive(
                &mut inbound,
                &frame(2, 1, BatchFlags::BULK_BEGIN, &[record(1, peer)]),
                &mut stats
            ),
            Receipt::Accepted
        );
        assert_ne!(inbound.generation(), generation);
        assert_eq!(inbound.epoch(), Some(2));
        assert_eq!(
            inbound.queued_batches(),
            1,
            "the old epoch's unapplied batch is dropped"
        );
    }
}
