//! The event-time watermark: `W = max(W_prev, min over active partitions of (max event time −
//! max out-of-orderness))`.
//!
//! A partition is undefined until it yields a record, and holds `W` back while it is (so a
//! partition that has not been read yet cannot have its data declared late). A partition without
//! records for `idle.timeout` stops counting. When every partition is idle, nothing more is
//! arriving: `W` moves to the largest partition watermark so the last windows can close. Snapshot
//! rows (`op=r`) come in key order, not time order: a partition inside a snapshot holds `W`.
//! `W` never goes backwards; it and every partition's maximum are stored with the offsets.

use std::{collections::BTreeMap, time::Duration};

use tokio::time::Instant;

use super::time::Micros;

/// A topic-partition.
pub type PartitionId = (String, i32);

/// What the watermark knows of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionClock {
    /// The largest event time read from it.
    pub max_event_time: Option<Micros>,
    /// Inside a snapshot (an `op=r` record that was not the snapshot's last).
    pub in_snapshot: bool,
    /// When its last record (or its assignment) came; not stored.
    last_seen: Instant,
}

#[derive(Debug, Clone)]
pub struct WatermarkTracker {
    max_out_of_orderness: Micros,
    idle_timeout: Duration,
    partitions: BTreeMap<PartitionId, PartitionClock>,
    current: Option<Micros>,
}

impl WatermarkTracker {
    pub fn new(max_out_of_orderness: Micros, idle_timeout: Duration) -> Self {
        Self {
            max_out_of_orderness,
            idle_timeout,
            partitions: BTreeMap::new(),
            current: None,
        }
    }

    /// Restores what was stored: `W` and each partition's maximum and snapshot flag.
    pub fn restore(
        &mut self,
        watermark: Option<Micros>,
        partitions: impl IntoIterator<Item = (PartitionId, Option<Micros>, bool)>,
        now: Instant,
    ) {
        self.current = watermark;
        for (id, max_event_time, in_snapshot) in partitions {
            self.partitions.insert(
                id,
                PartitionClock {
                    max_event_time,
                    in_snapshot,
                    last_seen: now,
                },
            );
        }
    }

    /// Starts watching a partition (kept as it is when known already).
    pub fn assign(&mut self, id: PartitionId, now: Instant) {
        self.partitions.entry(id).or_insert(PartitionClock {
            max_event_time: None,
            in_snapshot: false,
            last_seen: now,
        });
    }

    /// A record arrived on `id` (any record: it shows the partition is alive).
    pub fn touch(&mut self, id: &PartitionId, in_snapshot: bool, now: Instant) {
        if let Some(clock) = self.partitions.get_mut(id) {
            clock.last_seen = now;
            clock.in_snapshot = in_snapshot;
        }
    }

    /// An event time read from `id`.
    pub fn observe(&mut self, id: &PartitionId, time: Micros) {
        if let Some(clock) = self.partitions.get_mut(id) {
            clock.max_event_time = Some(clock.max_event_time.map_or(time, |m| m.max(time)));
        }
    }

    /// `W` now; `None` while undefined.
    pub fn current(&self) -> Option<Micros> {
        self.current
    }

    /// Recomputes `W` at `now` and returns it.
    pub fn advance(&mut self, now: Instant) -> Option<Micros> {
        let delay = self.max_out_of_orderness;
        let partition_watermark =
            |clock: &PartitionClock| clock.max_event_time.map(|m| m.saturating_sub(delay));
        let mut active = self
            .partitions
            .values()
            .filter(|c| now.saturating_duration_since(c.last_seen) < self.idle_timeout)
            .peekable();
        let candidate = if active.peek().is_none() {
            // Everything idle: what has arrived is all there is for now.
            self.partitions
                .values()
                .filter(|c| !c.in_snapshot)
                .filter_map(partition_watermark)
                .max()
        } else {
            // Undefined or snapshotting active partitions hold W.
            active
                .map(|c| {
                    if c.in_snapshot {
                        None
                    } else {
                        partition_watermark(c)
                    }
                })
                .collect::<Option<Vec<_>>>()
                .and_then(|w| w.into_iter().min())
        };
        if let Some(candidate) = candidate {
            self.current = Some(self.current.map_or(candidate, |w| w.max(candidate)));
        }
        self.current
    }

    /// Every partition's stored part.
    pub fn partitions(&self) -> impl Iterator<Item = (&PartitionId, &PartitionClock)> {
        self.partitions.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(p: i32) -> PartitionId {
        ("t".to_owned(), p)
    }

    #[test]
    fn minimum_over_active_partitions_then_idle_drops_out() {
        let start = Instant::now();
        let mut tracker = WatermarkTracker::new(5, Duration::from_secs(60));
        tracker.assign(id(0), start);
        tracker.assign(id(1), start);
        tracker.touch(&id(0), false, start);
        tracker.observe(&id(0), 100);
        assert_eq!(tracker.advance(start), None, "p1 has yielded nothing yet");
        tracker.touch(&id(1), false, start);
        tracker.observe(&id(1), 10);
        assert_eq!(tracker.advance(start), Some(5));
        // p0 keeps sending; p1 goes quiet for longer than the idle timeout.
        let later = start + Duration::from_secs(61);
        tracker.touch(&id(0), false, later);
        tracker.observe(&id(0), 101);
        assert_eq!(tracker.advance(later), Some(96));
        // p1 comes back with an old time: W does not go backwards.
        tracker.touch(&id(1), false, later);
        tracker.observe(&id(1), 11);
        assert_eq!(tracker.advance(later), Some(96));
    }

    #[test]
    fn snapshots_hold_and_all_idle_releases() {
        let start = Instant::now();
        let mut tracker = WatermarkTracker::new(0, Duration::from_secs(1));
        tracker.assign(id(0), start);
        tracker.touch(&id(0), true, start);
        tracker.observe(&id(0), 50);
        assert_eq!(tracker.advance(start), None, "held inside the snapshot");
        tracker.touch(&id(0), false, start);
        tracker.observe(&id(0), 20);
        assert_eq!(tracker.advance(start), Some(50));
        tracker.assign(id(1), start);
        tracker.touch(&id(1), false, start);
        tracker.observe(&id(1), 70);
        assert_eq!(tracker.advance(start), Some(50));
        let idle = start + Duration::from_secs(2);
        assert_eq!(tracker.advance(idle), Some(70), "all idle: the largest");
    }

    #[test]
    fn restored_state_is_used() {
        let now = Instant::now();
        let mut tracker = WatermarkTracker::new(0, Duration::from_secs(60));
        tracker.restore(Some(40), [(id(0), Some(45), false)], now);
        tracker.assign(id(0), now);
        assert_eq!(tracker.current(), Some(40));
        assert_eq!(tracker.advance(now), Some(45));
    }
}
