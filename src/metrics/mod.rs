//! What running tasks report about themselves: Prometheus metrics (served at `GET /metrics`)
//! and the topics each connector writes to (Kafka Connect's "active topics").
//!
//! Tasks hold a [`TaskMetrics`] whose counters are cheap atomics; nothing here does I/O. The
//! worker subscribes to newly seen topics to persist them on the status topic.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::{Family, MetricConstructor},
        gauge::Gauge,
        histogram::Histogram,
    },
    registry::Registry,
};
use tokio::sync::mpsc;

use crate::event::Op;

/// The media type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    connector: String,
    task: u32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    connector: String,
    task: u32,
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TableLabels {
    connector: String,
    task: u32,
    table: String,
}

/// Buckets for Kafka transaction commits: 1 ms to ~16 s.
#[derive(Clone, Copy)]
struct CommitBuckets;

impl MetricConstructor<Histogram> for CommitBuckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
            0.001, 2.0, 15,
        ))
    }
}

const OPS: [Op; 6] = [
    Op::Create,
    Op::Update,
    Op::Delete,
    Op::Read,
    Op::Truncate,
    Op::Message,
];

fn op_label(op: Op) -> &'static str {
    match op {
        Op::Create => "create",
        Op::Update => "update",
        Op::Delete => "delete",
        Op::Read => "read",
        Op::Truncate => "truncate",
        Op::Message => "message",
    }
}

struct Families {
    events: Family<EventLabels, Counter>,
    lag_ms: Family<TaskLabels, Gauge>,
    lag_bytes: Family<TaskLabels, Gauge>,
    commit_seconds: Family<TaskLabels, Histogram, CommitBuckets>,
    errors: Family<TaskLabels, Counter>,
    snapshot_rows: Family<TableLabels, Gauge>,
    snapshot_rows_estimated: Family<TableLabels, Gauge>,
    snapshot_chunks: Family<TableLabels, Gauge>,
    snapshot_chunks_total: Family<TableLabels, Gauge>,
    consumed: Family<TaskLabels, Counter>,
    target_commit_seconds: Family<TaskLabels, Histogram, CommitBuckets>,
    late_events: Family<TaskLabels, Counter>,
    watermark_ms: Family<TaskLabels, Gauge>,
}

#[derive(Default)]
struct Topics {
    by_connector: BTreeMap<String, BTreeSet<String>>,
    listener: Option<mpsc::UnboundedSender<(String, String)>>,
}

struct Inner {
    registry: Registry,
    families: Families,
    topics: Mutex<Topics>,
    /// Per connector, the tables with snapshot series (to remove them with the connector).
    snapshot_tables: Mutex<BTreeMap<String, BTreeSet<String>>>,
}

/// The metrics of one worker process. Cloning shares them.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let families = Families {
            events: Family::default(),
            lag_ms: Family::default(),
            lag_bytes: Family::default(),
            commit_seconds: Family::new_with_constructor(CommitBuckets),
            errors: Family::default(),
            snapshot_rows: Family::default(),
            snapshot_rows_estimated: Family::default(),
            snapshot_chunks: Family::default(),
            snapshot_chunks_total: Family::default(),
            consumed: Family::default(),
            target_commit_seconds: Family::new_with_constructor(CommitBuckets),
            late_events: Family::default(),
            watermark_ms: Family::default(),
        };
        let mut registry = Registry::with_prefix("tributary");
        registry.register(
            "source_events",
            "Change events produced, by operation (create, update, delete, read, truncate, message)",
            families.events.clone(),
        );
        registry.register(
            "source_lag_milliseconds",
            "Time between the commit in PostgreSQL and the Kafka commit of the newest delivered transaction",
            families.lag_ms.clone(),
        );
        registry.register(
            "source_lag_bytes",
            "WAL bytes between the server's current end and the position confirmed to the slot",
            families.lag_bytes.clone(),
        );
        registry.register(
            "kafka_commit_seconds",
            "Duration of Kafka transaction commits",
            families.commit_seconds.clone(),
        );
        registry.register(
            "task_errors",
            "Task failures, transient (retried) and permanent",
            families.errors.clone(),
        );
        registry.register(
            "snapshot_rows",
            "Rows the running or last snapshot has copied, per table",
            families.snapshot_rows.clone(),
        );
        registry.register(
            "snapshot_rows_estimated",
            "Rows the snapshot expects per table (from the planner's statistics; -1 without)",
            families.snapshot_rows_estimated.clone(),
        );
        registry.register(
            "snapshot_chunks",
            "ctid-range chunks of the table the snapshot has copied",
            families.snapshot_chunks.clone(),
        );
        registry.register(
            "snapshot_chunks_total",
            "ctid-range chunks the table is split into for the snapshot",
            families.snapshot_chunks_total.clone(),
        );
        registry.register(
            "consumed_records",
            "Kafka records a sink or window stage has committed to its target database",
            families.consumed.clone(),
        );
        registry.register(
            "target_commit_seconds",
            "Duration of the target database transactions of sinks and window stages",
            families.target_commit_seconds.clone(),
        );
        registry.register(
            "window_late_events",
            "Changes a window stage did not apply to a closed window (sent to late.events.topic)",
            families.late_events.clone(),
        );
        registry.register(
            "window_watermark_milliseconds",
            "A window stage's event-time watermark, milliseconds since the Unix epoch",
            families.watermark_ms.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry,
                families,
                topics: Mutex::new(Topics::default()),
                snapshot_tables: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// The handles task `task` of `connector` records with.
    pub fn task(&self, connector: &str, task: u32) -> TaskMetrics {
        let labels = TaskLabels {
            connector: connector.to_owned(),
            task,
        };
        let families = &self.inner.families;
        let events = OPS.map(|op| {
            families
                .events
                .get_or_create_owned(&EventLabels {
                    connector: connector.to_owned(),
                    task,
                    op: op_label(op),
                })
                .clone()
        });
        TaskMetrics {
            metrics: self.clone(),
            connector: connector.to_owned(),
            task,
            events,
            lag_ms: families.lag_ms.get_or_create_owned(&labels),
            lag_bytes: families.lag_bytes.get_or_create_owned(&labels),
            commit_seconds: families.commit_seconds.get_or_create_owned(&labels),
        }
    }

    /// The handles a sink or window task of `connector` records with.
    pub fn consumer(&self, connector: &str, task: u32) -> ConsumerMetrics {
        let labels = TaskLabels {
            connector: connector.to_owned(),
            task,
        };
        let families = &self.inner.families;
        ConsumerMetrics {
            consumed: families.consumed.get_or_create_owned(&labels),
            commit_seconds: families.target_commit_seconds.get_or_create_owned(&labels),
            late_events: families.late_events.get_or_create_owned(&labels),
            watermark_ms: families.watermark_ms.get_or_create_owned(&labels),
        }
    }

    /// Counts a failure of the task.
    pub fn task_error(&self, connector: &str, task: u32) {
        self.inner
            .families
            .errors
            .get_or_create(&TaskLabels {
                connector: connector.to_owned(),
                task,
            })
            .inc();
    }

    /// Forgets a deleted connector: its series and its topics.
    pub fn remove_connector(&self, connector: &str) {
        let families = &self.inner.families;
        let labels = TaskLabels {
            connector: connector.to_owned(),
            task: 0,
        };
        for op in OPS {
            families.events.remove(&EventLabels {
                connector: connector.to_owned(),
                task: 0,
                op: op_label(op),
            });
        }
        families.lag_ms.remove(&labels);
        families.lag_bytes.remove(&labels);
        families.commit_seconds.remove(&labels);
        families.errors.remove(&labels);
        families.consumed.remove(&labels);
        families.target_commit_seconds.remove(&labels);
        families.late_events.remove(&labels);
        families.watermark_ms.remove(&labels);
        let tables = self
            .lock_snapshot_tables()
            .remove(connector)
            .unwrap_or_default();
        for table in tables {
            let labels = TableLabels {
                connector: connector.to_owned(),
                task: 0,
                table,
            };
            for family in [
                &families.snapshot_rows,
                &families.snapshot_rows_estimated,
                &families.snapshot_chunks,
                &families.snapshot_chunks_total,
            ] {
                family.remove(&labels);
            }
        }
        self.topics().by_connector.remove(connector);
    }

    /// All metrics in the OpenMetrics text format (which Prometheus reads).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.inner.registry);
        text
    }

    fn lock_snapshot_tables(
        &self,
    ) -> std::sync::MutexGuard<'_, BTreeMap<String, BTreeSet<String>>> {
        self.inner
            .snapshot_tables
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn topics(&self) -> std::sync::MutexGuard<'_, Topics> {
        self.inner.topics.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The topics `connector` has written to since they were last reset, sorted.
    pub fn active_topics(&self, connector: &str) -> Vec<String> {
        self.topics()
            .by_connector
            .get(connector)
            .map(|topics| topics.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Takes topics known from before (the status topic) without announcing them again.
    pub fn restore_active_topics(&self, connector: &str, topics: impl IntoIterator<Item = String>) {
        self.topics()
            .by_connector
            .entry(connector.to_owned())
            .or_default()
            .extend(topics);
    }

    /// Forgets `connector`'s topics; returns what it had.
    pub fn reset_active_topics(&self, connector: &str) -> Vec<String> {
        self.topics()
            .by_connector
            .remove(connector)
            .map(|topics| topics.into_iter().collect())
            .unwrap_or_default()
    }

    /// From now on, every topic a connector writes to for the first time arrives here as
    /// `(connector, topic)`. One subscriber; a new one replaces the old.
    pub fn subscribe_active_topics(&self) -> mpsc::UnboundedReceiver<(String, String)> {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.topics().listener = Some(sender);
        receiver
    }

    fn topic_written(&self, connector: &str, topic: &str) {
        let mut topics = self.topics();
        let new = topics
            .by_connector
            .entry(connector.to_owned())
            .or_default()
            .insert(topic.to_owned());
        if new && let Some(listener) = &topics.listener {
            let _ = listener.send((connector.to_owned(), topic.to_owned()));
        }
    }
}

/// What a sink or window task reports: records committed to the target, commit durations, and
/// for window stages late changes and the watermark.
#[derive(Clone)]
pub struct ConsumerMetrics {
    consumed: Counter,
    commit_seconds: Histogram,
    late_events: Counter,
    watermark_ms: Gauge,
}

impl std::fmt::Debug for ConsumerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConsumerMetrics")
    }
}

impl ConsumerMetrics {
    /// Handles that record into a registry of their own (for a task run outside a worker).
    pub fn detached() -> Self {
        Metrics::new().consumer("detached", 0)
    }

    /// A target transaction with `records` Kafka records committed, taking `took`.
    pub fn committed(&self, records: u64, took: Duration) {
        self.consumed.inc_by(records);
        self.commit_seconds.observe(took.as_secs_f64());
    }

    pub fn late(&self, events: u64) {
        self.late_events.inc_by(events);
    }

    pub fn watermark(&self, micros: i64) {
        self.watermark_ms.set(micros / 1000);
    }
}

/// One task's metrics handles.
#[derive(Clone)]
pub struct TaskMetrics {
    metrics: Metrics,
    connector: String,
    task: u32,
    events: [Counter; 6],
    lag_ms: Gauge,
    lag_bytes: Gauge,
    commit_seconds: Histogram,
}

impl std::fmt::Debug for TaskMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskMetrics")
            .field("connector", &self.connector)
            .field("task", &self.task)
            .finish_non_exhaustive()
    }
}

impl TaskMetrics {
    pub fn event(&self, op: Op) {
        self.events(op, 1);
    }

    /// `count` events of `op` at once.
    pub fn events(&self, op: Op, count: u64) {
        let index = OPS.iter().position(|o| *o == op).unwrap_or(0);
        self.events[index].inc_by(count);
    }

    /// A Kafka transaction committed after `took`; its newest change was committed in
    /// PostgreSQL at `source_ts_micros` (Unix epoch).
    pub fn committed(&self, took: Duration, source_ts_micros: i64) {
        self.commit_seconds.observe(took.as_secs_f64());
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        self.lag_ms.set((now_ms - source_ts_micros / 1000).max(0));
    }

    /// How far the confirmed position trails the server's end of WAL.
    pub fn wal_behind(&self, bytes: u64) {
        self.lag_bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// The task produced to `topic` (the first time per topic is what counts).
    pub fn topic_written(&self, topic: &str) {
        self.metrics.topic_written(&self.connector, topic);
    }

    /// Where the snapshot of `table` stands.
    pub fn snapshot_progress(
        &self,
        table: &str,
        rows_done: u64,
        estimated_rows: Option<u64>,
        chunks_done: usize,
        chunks_total: usize,
    ) {
        let labels = self.table_labels(table);
        self.metrics
            .lock_snapshot_tables()
            .entry(self.connector.clone())
            .or_default()
            .insert(table.to_owned());
        let families = &self.metrics.inner.families;
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        families
            .snapshot_rows
            .get_or_create(&labels)
            .set(count(rows_done));
        families
            .snapshot_rows_estimated
            .get_or_create(&labels)
            .set(estimated_rows.map_or(-1, count));
        families
            .snapshot_chunks
            .get_or_create(&labels)
            .set(count(chunks_done as u64));
        families
            .snapshot_chunks_total
            .get_or_create(&labels)
            .set(count(chunks_total as u64));
    }

    fn table_labels(&self, table: &str) -> TableLabels {
        TableLabels {
            connector: self.connector.clone(),
            task: self.task,
            table: table.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_series_appear_with_connector_and_task_labels() {
        let metrics = Metrics::new();
        let task = metrics.task("inventory", 0);
        task.event(Op::Create);
        task.event(Op::Create);
        task.event(Op::Delete);
        task.committed(Duration::from_millis(3), 0);
        task.wal_behind(4096);
        metrics.task_error("inventory", 0);
        task.snapshot_progress("public.orders", 500, Some(1000), 1, 4);
        let text = metrics.encode();
        assert!(
            text.contains(
                r#"tributary_source_events_total{connector="inventory",task="0",op="create"} 2"#
            ),
            "{text}"
        );
        assert!(text.contains(
            r#"tributary_source_events_total{connector="inventory",task="0",op="delete"} 1"#
        ));
        assert!(
            text.contains(r#"tributary_source_lag_bytes{connector="inventory",task="0"} 4096"#)
        );
        assert!(
            text.contains(
                r#"tributary_kafka_commit_seconds_count{connector="inventory",task="0"} 1"#
            )
        );
        assert!(text.contains(r#"tributary_task_errors_total{connector="inventory",task="0"} 1"#));
        assert!(text.contains(
            r#"tributary_snapshot_rows{connector="inventory",task="0",table="public.orders"} 500"#
        ));
        assert!(text.contains(
            r#"tributary_snapshot_chunks_total{connector="inventory",task="0",table="public.orders"} 4"#
        ));
        assert!(text.ends_with("# EOF\n"));

        metrics.remove_connector("inventory");
        assert!(!metrics.encode().contains("inventory"));
    }

    #[test]
    fn each_new_topic_is_announced_once() {
        let metrics = Metrics::new();
        metrics.restore_active_topics("c", ["old".to_owned()]);
        let mut announced = metrics.subscribe_active_topics();
        let task = metrics.task("c", 0);
        task.topic_written("old");
        task.topic_written("new");
        task.topic_written("new");
        assert_eq!(announced.try_recv().ok(), Some(("c".into(), "new".into())));
        assert!(announced.try_recv().is_err());
        assert_eq!(metrics.active_topics("c"), ["new", "old"]);
        assert_eq!(metrics.reset_active_topics("c"), ["new", "old"]);
        assert!(metrics.active_topics("c").is_empty());
    }
}
