//! The bounded queue of records for the host.
//!
//! It holds every record the host has not acknowledged, sent or not, in
//! `seq` order, up to a number of records and of bytes. When a new record
//! does not fit, the oldest go, and one `dropped` record stands in for all
//! of them: it takes the last dropped record's `seq` and remembers the
//! first, so the stream stays in `seq` order and the host can count exactly
//! what it missed (see [`cvm_protocol::logstream`]). Every operation is a few
//! pointer moves under the caller's lock: no I/O, no waiting.

use std::collections::VecDeque;
use std::sync::Arc;

use cvm_protocol::logstream::{Level, Record, RecordKind};

/// Bytes a record counts for besides its strings.
const RECORD_OVERHEAD: usize = 96;

/// Counters for the status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct QueueStats {
    pub(crate) queued: u64,
    pub(crate) capacity: u64,
    pub(crate) dropped_total: u64,
    pub(crate) last_seq: u64,
}

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct Queue {
    records: VecDeque<Arc<Record>>,
    capacity: usize,
    bytes: usize,
    max_bytes: usize,
    last_seq: u64,
    /// Every record up to this one was acknowledged.
    acked: u64,
    /// Every record up to this one was written on the current connection.
    sent: u64,
    /// Records `first ..= last` were dropped and not yet acknowledged.
    dropped: Option<(u64, u64)>,
    dropped_total: u64,
}

fn size(r: &Record) -> usize {
    RECORD_OVERHEAD + r.message.len() + r.source.len() + r.computation.as_ref().map_or(0, String::len)
}

impl Queue {
    /// A queue of at most `capacity` records and about `max_bytes` bytes.
    pub(crate) fn new(capacity: usize, max_bytes: usize) -> Queue {
        Queue {
            records: VecDeque::with_capacity(capacity.min(1024)),
            capacity: capacity.max(1),
            bytes: 0,
            max_bytes,
            last_seq: 0,
            acked: 0,
            sent: 0,
            dropped: None,
            dropped_total: 0,
        }
    }

    /// Adds the record `make` builds with the next sequence number, dropping
    /// the oldest records if it does not fit.
    pub(crate) fn push(&mut self, make: impl FnOnce(u64) -> Record) {
        self.last_seq += 1;
        let record = make(self.last_seq);
        self.bytes += size(&record);
        self.records.push_back(Arc::new(record));
        while self.records.len() > self.capacity || (self.bytes > self.max_bytes && self.records.len() > 1) {
            let Some(old) = self.records.pop_front() else { break };
            self.bytes -= size(&old);
            self.dropped_total += 1;
            self.dropped = Some(match self.dropped {
                Some((first, _)) => (first, old.seq),
                None => (old.seq, old.seq),
            });
        }
    }

    /// The host has every record up to `seq`.
    pub(crate) fn ack(&mut self, seq: u64) {
        // A host cannot acknowledge what was never made.
        let seq = seq.min(self.last_seq);
        if seq <= self.acked {
            return;
        }
        self.acked = seq;
        self.sent = self.sent.max(seq);
        while self.records.front().is_some_and(|r| r.seq <= seq) {
            if let Some(r) = self.records.pop_front() {
                self.bytes -= size(&r);
            }
        }
        self.dropped = match self.dropped {
            Some((_, last)) if last <= seq => None,
            Some((first, last)) => Some((first.max(seq + 1), last)),
            None => None,
        };
    }

    /// A new connection: everything not acknowledged is to be sent again.
    pub(crate) fn rewind(&mut self) {
        self.sent = self.acked;
    }

    /// Moves up to `max` records not yet written on this connection into
    /// `out`, in order, counting them as written: first the `dropped` record
    /// if it is news, then the rest.
    pub(crate) fn take(
        &mut self,
        max: usize,
        now_ms: u64,
        computation: Option<&str>,
        out: &mut Vec<Arc<Record>>,
    ) {
        let before = out.len();
        if let Some((first, last)) = self.dropped {
            if last > self.sent && max > 0 {
                out.push(Arc::new(Record {
                    seq: last,
                    time_ms: now_ms,
                    level: Level::Warn,
                    kind: RecordKind::Dropped { first_seq: first },
                    source: "cvm_agent::logs".into(),
                    computation: computation.map(str::to_owned),
                    message: format!(
                        "records {first} to {last} were dropped: the queue was full while the host was slow or away"
                    ),
                }));
                self.sent = last;
            }
        }
        let Some(front) = self.records.front().map(|r| r.seq) else { return };
        let start = (self.sent + 1).saturating_sub(front) as usize;
        let room = max.saturating_sub(out.len() - before);
        for r in self.records.range(start.min(self.records.len())..).take(room) {
            out.push(Arc::clone(r));
            self.sent = r.seq;
        }
    }

    /// Whether the host acknowledged everything.
    pub(crate) fn all_acked(&self) -> bool {
        self.acked == self.last_seq
    }

    /// Counters for the status.
    pub(crate) fn stats(&self) -> QueueStats {
        QueueStats {
            queued: self.records.len() as u64 + u64::from(self.dropped.is_some()),
            capacity: self.capacity as u64,
            dropped_total: self.dropped_total,
            last_seq: self.last_seq,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(seq: u64) -> Record {
        Record {
            seq,
            time_ms: 0,
            level: Level::Info,
            kind: RecordKind::Log,
            source: "t".into(),
            computation: None,
            message: format!("record {seq}"),
        }
    }

    fn take(q: &mut Queue, max: usize) -> Vec<(u64, Option<u64>)> {
        let mut out = Vec::new();
        q.take(max, 0, None, &mut out);
        out.iter().map(|r| (r.seq, r.dropped_count())).collect()
    }

    fn push(q: &mut Queue, n: usize) {
        for _ in 0..n {
            q.push(log);
        }
    }

    /// What a host that acknowledges everything up to `last_seen` and drops
    /// duplicates makes of a stream: delivered seqs and the lost count.
    fn host(received: &[(u64, Option<u64>)], last_seen: &mut u64) -> (Vec<u64>, u64) {
        let (mut got, mut lost) = (Vec::new(), 0);
        for (seq, dropped) in received {
            if *seq <= *last_seen {
                continue;
            }
            match dropped {
                Some(count) => {
                    let first = seq + 1 - count;
                    lost += seq - (*last_seen).max(first - 1);
                }
                None => got.push(*seq),
            }
            *last_seen = *seq;
        }
        (got, lost)
    }

    #[test]
    fn records_go_in_order_and_acked_ones_leave() {
        let mut q = Queue::new(8, 1 << 20);
        push(&mut q, 5);
        assert_eq!(take(&mut q, 3), [(1, None), (2, None), (3, None)]);
        assert_eq!(take(&mut q, 10), [(4, None), (5, None)]);
        assert_eq!(take(&mut q, 10), []);
        q.ack(3);
        assert_eq!(q.stats().queued, 2);
        q.ack(5);
        assert!(q.all_acked());
        assert_eq!(q.stats(), QueueStats { queued: 0, capacity: 8, dropped_total: 0, last_seq: 5 });
    }

    #[test]
    fn a_reconnect_sends_again_what_was_not_acknowledged() {
        let mut q = Queue::new(8, 1 << 20);
        push(&mut q, 4);
        assert_eq!(take(&mut q, 10).len(), 4);
        q.ack(2);
        q.rewind();
        assert_eq!(take(&mut q, 10), [(3, None), (4, None)]);
        // The host may acknowledge, in its hello, more than it had acknowledged.
        q.rewind();
        q.ack(4);
        assert_eq!(take(&mut q, 10), []);
        // Acknowledging the future is clamped to what exists.
        q.ack(99);
        push(&mut q, 1);
        assert_eq!(take(&mut q, 10), [(5, None)]);
    }

    #[test]
    fn a_full_queue_drops_the_oldest_and_one_record_counts_them() {
        let mut q = Queue::new(4, 1 << 20);
        push(&mut q, 10);
        assert_eq!(q.stats().dropped_total, 6);
        assert_eq!(take(&mut q, 100), [(6, Some(6)), (7, None), (8, None), (9, None), (10, None)]);
        q.ack(10);
        assert_eq!(q.stats().queued, 0);
        push(&mut q, 1);
        assert_eq!(take(&mut q, 100), [(11, None)]);
    }

    #[test]
    fn the_byte_budget_also_bounds_the_queue() {
        let mut q = Queue::new(1000, 3 * (RECORD_OVERHEAD + 20));
        push(&mut q, 10);
        assert!(q.stats().queued <= 4, "{:?}", q.stats());
        let got = take(&mut q, 100);
        assert_eq!(got[0].1, Some(got[0].0));
    }

    #[test]
    fn drops_of_sent_records_are_counted_only_for_what_the_host_missed() {
        // Records 1-4 are written, the link breaks after the host read 1-2
        // (unacknowledged); the queue then overflows while the host is away.
        let mut q = Queue::new(4, 1 << 20);
        push(&mut q, 4);
        let first = take(&mut q, 100);
        let mut last_seen = 0;
        let (got, lost) = host(&first[..2], &mut last_seen);
        assert_eq!((got.as_slice(), lost), ([1, 2].as_slice(), 0));
        push(&mut q, 6); // records 5-10: 1-6 are dropped
        q.rewind();
        q.ack(last_seen); // the host's hello
        let again = take(&mut q, 100);
        assert_eq!(again[0], (6, Some(4)), "records 3-6 are the dropped ones not acknowledged");
        let (got, lost) = host(&again, &mut last_seen);
        assert_eq!(got, [7, 8, 9, 10]);
        assert_eq!(lost, 4);
    }

    #[test]
    fn any_interleaving_delivers_each_record_once_or_counts_it() {
        // A deterministic walk through pushes, takes, acks, partial reads and
        // reconnects; a dedup host must end with every seq accounted for once.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        for _ in 0..200 {
            let mut q = Queue::new(1 + next(16) as usize, 1 << 20);
            let mut last_seen = 0u64;
            let (mut delivered, mut lost) = (Vec::new(), 0u64);
            let mut in_flight: Vec<(u64, Option<u64>)> = Vec::new();
            for _ in 0..300 {
                match next(6) {
                    0 | 1 => push(&mut q, 1 + next(5) as usize),
                    2 => in_flight.extend(take(&mut q, 1 + next(8) as usize)),
                    3 => {
                        // The host reads part of what is in flight and acks it.
                        let n = next(in_flight.len() as u64 + 1) as usize;
                        let (g, l) = host(&in_flight[..n], &mut last_seen);
                        delivered.extend(g);
                        lost += l;
                        in_flight.drain(..n);
                        q.ack(last_seen);
                    }
                    4 => {
                        // The link breaks: what was in flight is gone.
                        in_flight.clear();
                        q.rewind();
                        q.ack(last_seen);
                    }
                    _ => {}
                }
            }
            // The host comes back for good and reads everything.
            in_flight.clear();
            q.rewind();
            q.ack(last_seen);
            loop {
                let batch = take(&mut q, 7);
                if batch.is_empty() {
                    break;
                }
                let (g, l) = host(&batch, &mut last_seen);
                delivered.extend(g);
                lost += l;
                q.ack(last_seen);
            }
            let total = q.stats().last_seq;
            assert!(delivered.windows(2).all(|w| w[0] < w[1]), "out of order or twice: {delivered:?}");
            assert_eq!(delivered.len() as u64 + lost, total, "delivered {delivered:?} lost {lost}");
            assert!(lost <= q.stats().dropped_total);
            assert!(q.all_acked());
        }
    }
}
