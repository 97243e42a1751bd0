//! The window task: read the change topics (read_committed, every partition assigned at the
//! offsets stored in the target database), feed the engine, and every `commit.interval.ms`
//! write results, state, the watermark and the offsets in one transaction.
//!
//! Late changes are sent to `late.events.topic` before the transaction that moves past them
//! commits, so none is lost; after a crash between the two they are sent again (the late topic
//! is at-least-once, the result table exactly-once).
//!
//! Three things overlap: the reading thread (`read.rs`) consumes and decodes the next batch,
//! this task applies the current one to the engine, and a commit runs in a task of its own
//! (one at a time, in order: the next waits for it before it starts).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{CommitMode, Consumer, StreamConsumer},
    message::{Header, OwnedHeaders, OwnedMessage},
    producer::{FutureProducer, FutureRecord},
};
use tokio::{task::JoinHandle, time::Instant};
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{
    Error,
    config::WindowAggregateConfig,
    decode::Decoded,
    engine::{Applied, CommitDelta, Engine, EngineSpec, LateNotice},
    read::{Outcome, Reader},
    state_codec::StateLog,
    store::{self, Progress, ResultTable, StateLogSize, StateWrite},
    time::Micros,
    watermark::{PartitionId, WatermarkTracker},
};
use crate::{
    kafka::{ClientSettings, TopicAdmin, TopicSpec, idempotent_producer, read_committed_consumer},
    metrics::ConsumerMetrics,
    sink::postgres::{
        self as sink,
        batch::{Batch, Record},
        config::TopicSelection,
        connection::connect_to,
        task::{topic_partitions, with_prefetch_bounds},
        writer::claim_generation,
    },
};

/// How often the task looks for new partitions of its topics.
const TOPIC_REFRESH: Duration = Duration::from_secs(2);
/// Transient commit failures are retried this often, with doubling backoff.
const MAX_COMMIT_RETRIES: u32 = 6;
const RETRY_BACKOFF: Duration = Duration::from_millis(200);
const LATE_DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the stage until `shutdown` is cancelled (then what was read is committed and `Ok`
/// returned) or an error stops it.
///
/// Contract: result rows, the stage's state, the watermark and the next offsets are committed in
/// one target transaction, and reading resumes from the stored offsets with the stored state,
/// so every change is aggregated exactly once across restarts and crashes.
pub async fn run(
    config: WindowAggregateConfig,
    kafka: &ClientSettings,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    run_with_metrics(config, kafka, ConsumerMetrics::detached(), shutdown).await
}

/// [`run`], reporting records committed, commit times, late changes and the watermark to
/// `metrics`.
pub async fn run_with_metrics(
    config: WindowAggregateConfig,
    kafka: &ClientSettings,
    metrics: ConsumerMetrics,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let config = Arc::new(config);
    let application_name = format!("tributary window {}", config.name);
    let client = connect_to(&config.target(), &application_name).await?;
    store::ensure_state_tables(&client).await?;
    let generation = claim_generation(&client, &config.name).await?;

    let inputs = config.input_columns();
    let mut engine = Engine::new(EngineSpec {
        kind: config.window,
        allowed_lateness: config.allowed_lateness,
        aggregates: config
            .aggregates
            .iter()
            .map(|a| {
                let input = a
                    .column
                    .as_deref()
                    .and_then(|c| inputs.iter().position(|i| *i == c));
                (a.function, input)
            })
            .collect(),
        emit: config.emit_mode,
        changelog: config.changelog_mode,
    });
    let mut tracker = WatermarkTracker::new(config.max_out_of_orderness, config.idle_timeout);
    let (stored_offsets, state_log) =
        store::load(&client, &config.name, &mut engine, &mut tracker).await?;
    let (cells, rows) = engine.sizes();

    let consumer = Arc::new(
        read_committed_consumer(
            &with_prefetch_bounds(kafka),
            &format!("tributary-window-{}", config.name),
        )
        .map_err(sink::Error::from)?,
    );
    let topics = TopicSelection::Names(config.topics.clone());
    let mut assigned = HashSet::new();
    assign_new_partitions(
        &consumer,
        &topics,
        &stored_offsets,
        &mut assigned,
        &mut tracker,
    )
    .await?;
    let late_events = match &config.late_events_topic {
        Some(topic) => Some({
            // Created when missing, as the dead-letter topic: a broker that does not create
            // topics on its own would time every late record out.
            TopicAdmin::new(kafka, Duration::from_secs(30))
                .map_err(sink::Error::from)?
                .ensure_topic(&TopicSpec::new(topic, 1))
                .await
                .map_err(sink::Error::from)?;
            LateEvents {
                producer: idempotent_producer(kafka, LATE_DELIVERY_TIMEOUT)
                    .map_err(sink::Error::from)?,
                topic: topic.clone(),
            }
        }),
        None => None,
    };
    info!(
        connector = %config.name, generation, partitions = assigned.len(), cells, rows,
        watermark = ?tracker.current(), "window stage started"
    );

    let mut reader = Reader::start(Arc::clone(&config), Arc::clone(&consumer), &shutdown)?;
    let mut task = Task {
        config: &config,
        application_name,
        connection: Some((client, ResultTable::new(&config))),
        pending: None,
        state_log,
        consumer: &consumer,
        column_types: HashMap::new(),
        engine,
        tracker,
        late_events,
        offsets: BTreeMap::new(),
        late: Vec::new(),
        committed_watermark: None,
        generation,
        metrics,
        read_since_commit: 0,
    };
    task.committed_watermark = task.tracker.current();
    let mut last_commit = Instant::now();
    let mut last_refresh = Instant::now();
    loop {
        if last_refresh.elapsed() >= TOPIC_REFRESH {
            assign_new_partitions(
                &consumer,
                &topics,
                &stored_offsets,
                &mut assigned,
                &mut task.tracker,
            )
            .await?;
            last_refresh = Instant::now();
        }
        // With changes read and not committed, waiting for more ends when the next commit is
        // due: the results of a burst are committed one interval after it, not once the
        // reader gives up waiting (`TOPIC_REFRESH`).
        let due = task
            .has_uncommitted()
            .then(|| last_commit + config.commit_interval);
        let next = match due {
            Some(due) => tokio::time::timeout_at(due, reader.next()).await.ok(),
            None => Some(reader.next().await),
        };
        match next.transpose()? {
            None => {}
            Some(None) => {
                task.commit().await?;
                task.finish_pending().await?;
                info!(connector = %config.name, "window stage stopped");
                return Ok(());
            }
            Some(Some(decoded)) => {
                if let Some(types) = decoded.column_types {
                    task.column_types = types;
                }
                task.apply_batch(&decoded.batch, decoded.outcomes)?;
                reader.recycle(decoded.batch);
            }
        }
        let watermark = task.tracker.advance(Instant::now());
        task.engine.set_watermark(watermark);
        if last_commit.elapsed() >= config.commit_interval {
            task.commit().await?;
            last_commit = Instant::now();
        }
    }
}

struct LateEvents {
    producer: FutureProducer,
    topic: String,
}

/// The task's working state between commits.
struct Task<'a> {
    config: &'a Arc<WindowAggregateConfig>,
    application_name: String,
    /// The target connection and the result table, here unless a commit holds them.
    connection: Option<(Client, ResultTable)>,
    /// The commit in flight.
    pending: Option<JoinHandle<Result<Committed, Error>>>,
    /// The stored state log's size once the commits so far are done.
    state_log: StateLogSize,
    consumer: &'a Arc<StreamConsumer>,
    /// PostgreSQL types of the group and input columns, as the decoder last saw them.
    column_types: HashMap<String, String>,
    engine: Engine,
    tracker: WatermarkTracker,
    late_events: Option<LateEvents>,
    /// Next offsets read since the last commit.
    offsets: BTreeMap<PartitionId, i64>,
    /// Records not (fully) applied since the last commit, and why.
    late: Vec<(OwnedMessage, LateNotice)>,
    committed_watermark: Option<i64>,
    generation: i64,
    metrics: ConsumerMetrics,
    /// Records read since the last commit.
    read_since_commit: u64,
}

impl Task<'_> {
    /// Feeds a decoded batch to the watermark and the engine, in order; the first record that
    /// cannot be applied stops it (and the stage) with its position.
    fn apply_batch(&mut self, batch: &Batch, outcomes: Vec<Outcome>) -> Result<(), Error> {
        // What the batch tells of one partition, noted when the batch moves to another: the
        // watermark is advanced after the batch, so a batch's records can be noted at once.
        let mut run: Option<PartitionRun> = None;
        let now = Instant::now();
        for (message, outcome) in batch.iter().zip(outcomes) {
            if let Some(done) = run.take_if(|r| !r.holds(&message)) {
                self.note_partition(done, now);
            }
            let current = run.get_or_insert_with(|| PartitionRun::new(&message));
            current.next_offset = message.offset() + 1;
            current.in_snapshot = false;
            self.read_since_commit += 1;
            let position = || {
                format!(
                    "{}/{}@{}",
                    message.topic(),
                    message.partition(),
                    message.offset()
                )
            };
            let decoded = outcome.map_err(|message| Error::Record {
                position: position(),
                message,
            })?;
            match decoded {
                Ok(Decoded::Ignored) => {}
                Ok(Decoded::Change {
                    change,
                    time,
                    in_snapshot,
                }) => {
                    current.in_snapshot = in_snapshot;
                    if let Some(time) = time {
                        current.max_time = Some(current.max_time.map_or(time, |m| m.max(time)));
                    }
                    match self.engine.apply(change) {
                        Applied::Done => {}
                        Applied::Duplicate => {
                            debug!(connector = %self.config.name, record = %position(), "duplicate change dropped");
                        }
                        Applied::Late(notice) => self.late.push((message.to_message(), notice)),
                    }
                }
                Err(error) => {
                    return Err(Error::Record {
                        position: position(),
                        message: error.to_string(),
                    });
                }
            }
        }
        if let Some(done) = run {
            self.note_partition(done, now);
        }
        Ok(())
    }

    /// Notes a partition's records of a batch: its next offset and its watermark clock.
    fn note_partition(&mut self, run: PartitionRun, now: Instant) {
        self.tracker.touch(&run.id, run.in_snapshot, now);
        if let Some(time) = run.max_time {
            self.tracker.observe(&run.id, time);
        }
        self.offsets.insert(run.id, run.next_offset);
    }

    /// Whether anything was read or changed since the last commit.
    fn has_uncommitted(&self) -> bool {
        !self.offsets.is_empty()
            || !self.late.is_empty()
            || self.tracker.current() != self.committed_watermark
    }

    /// Starts committing what was read since the last commit (nothing when nothing changed),
    /// once the commit before has finished.
    async fn commit(&mut self) -> Result<(), Error> {
        if !self.has_uncommitted() {
            return Ok(());
        }
        self.finish_pending().await?;
        let (client, table) = self
            .connection
            .take()
            .expect("the connection is back once no commit is in flight");
        let delta = self.engine.take_commit();
        self.metrics.late(self.late.len() as u64);
        self.send_late().await?;
        let (cells, rows) = self.engine.sizes();
        let compacted = self
            .state_log
            .wants_compaction((cells + rows) as u64)
            .then(|| self.engine.encode_all());
        let job = CommitJob {
            config: Arc::clone(self.config),
            application_name: self.application_name.clone(),
            client,
            table,
            delta,
            compacted,
            log_before: self.state_log,
            generation: self.generation,
            tracker: self.tracker.clone(),
            offsets: std::mem::take(&mut self.offsets),
            column_types: self.column_types.clone(),
            read: std::mem::take(&mut self.read_since_commit),
        };
        self.state_log =
            state_write(&job.compacted, &job.delta, job.log_before).size_after(self.state_log);
        self.committed_watermark = self.tracker.current();
        self.pending = Some(tokio::spawn(job.run()));
        Ok(())
    }

    /// Waits for the commit in flight, then takes back the connection and reports it.
    async fn finish_pending(&mut self) -> Result<(), Error> {
        let Some(pending) = self.pending.take() else {
            return Ok(());
        };
        let done = match pending.await {
            Ok(done) => done?,
            Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
            Err(join) => {
                return Err(Error::State {
                    connector: self.config.name.clone(),
                    message: format!("the commit task ended: {join}"),
                });
            }
        };
        // Group offsets are for lag monitoring only: the stored offsets are the truth.
        let mut committed = TopicPartitionList::new();
        for ((topic, partition), next) in &done.offsets {
            let _ = committed.add_partition_offset(topic, *partition, Offset::Offset(*next));
        }
        if let Err(error) = self.consumer.commit(&committed, CommitMode::Async) {
            debug!(connector = %self.config.name, error = %error, "group offsets not committed");
        }
        self.metrics.committed(done.read, done.took);
        if let Some(watermark) = done.watermark {
            self.metrics.watermark(watermark);
        }
        self.connection = Some((done.client, done.table));
        Ok(())
    }

    /// Sends the late records (awaiting delivery) or, without a late topic, reports them.
    async fn send_late(&mut self) -> Result<(), Error> {
        if self.late.is_empty() {
            return Ok(());
        }
        let count = self.late.len();
        let watermark = self
            .engine
            .watermark()
            .map_or_else(|| "none".to_owned(), |w| w.to_string());
        let Some(late_events) = &self.late_events else {
            warn!(
                connector = %self.config.name, late = count, watermark = %watermark,
                "changes not applied (late or without usable event time); set late.events.topic to keep them"
            );
            self.late.clear();
            return Ok(());
        };
        for (message, notice) in self.late.drain(..) {
            let reasons: Vec<&str> = notice.reasons.iter().map(|r| r.as_str()).collect();
            let reasons = reasons.join(",");
            let windows: Vec<String> = notice.windows.iter().map(ToString::to_string).collect();
            let windows = windows.join(",");
            let partition = message.partition().to_string();
            let offset = message.offset().to_string();
            let headers = OwnedHeaders::new()
                .insert(header("tributary.late.reason", &reasons))
                .insert(header("tributary.late.windows", &windows))
                .insert(header("tributary.late.watermark", &watermark))
                .insert(header("tributary.source.topic", message.topic()))
                .insert(header("tributary.source.partition", &partition))
                .insert(header("tributary.source.offset", &offset));
            let mut record: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(&late_events.topic).headers(headers);
            if let Some(key) = message.key() {
                record = record.key(key);
            }
            if let Some(payload) = message.payload() {
                record = record.payload(payload);
            }
            late_events
                .producer
                .send(record, LATE_DELIVERY_TIMEOUT)
                .await
                .map_err(|(source, _)| Error::LateEvents {
                    topic: late_events.topic.clone(),
                    source,
                })?;
        }
        info!(
            connector = %self.config.name, late = count, topic = %late_events.topic, watermark = %watermark,
            "changes not applied sent to the late-events topic"
        );
        Ok(())
    }
}

fn header<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
    }
}

/// Assigns the partitions of `topics` not assigned yet, each at its stored offset (the
/// beginning when none is stored), and starts their watermark clocks.
async fn assign_new_partitions(
    consumer: &Arc<StreamConsumer>,
    topics: &TopicSelection,
    stored: &HashMap<PartitionId, i64>,
    assigned: &mut HashSet<PartitionId>,
    tracker: &mut WatermarkTracker,
) -> Result<(), Error> {
    let fresh: Vec<PartitionId> = topic_partitions(consumer, topics)
        .await?
        .into_iter()
        .filter(|p| !assigned.contains(p))
        .collect();
    if fresh.is_empty() {
        return Ok(());
    }
    let mut assignment = TopicPartitionList::new();
    for id in &fresh {
        let offset = stored
            .get(id)
            .map_or(Offset::Beginning, |next| Offset::Offset(*next));
        assignment
            .add_partition_offset(&id.0, id.1, offset)
            .map_err(|source| sink::Error::Consumer {
                context: format!("assigning {}/{}", id.0, id.1),
                source,
            })?;
    }
    consumer
        .incremental_assign(&assignment)
        .map_err(|source| sink::Error::Consumer {
            context: "assigning partitions".to_owned(),
            source,
        })?;
    let now = Instant::now();
    for id in fresh {
        tracker.assign(id.clone(), now);
        assigned.insert(id);
    }
    Ok(())
}

/// Consecutive records of one partition in a batch, as the watermark and the offsets see them.
struct PartitionRun {
    id: PartitionId,
    next_offset: i64,
    /// The last record's snapshot flag (a record without a change is not in a snapshot).
    in_snapshot: bool,
    max_time: Option<Micros>,
}

impl PartitionRun {
    fn holds(&self, record: &Record<'_>) -> bool {
        self.id.1 == record.partition() && self.id.0 == record.topic()
    }

    fn new(first: &Record<'_>) -> Self {
        Self {
            id: (first.topic().to_owned(), first.partition()),
            next_offset: first.offset() + 1,
            in_snapshot: false,
            max_time: None,
        }
    }
}

/// One commit, owned, so that it runs while the stage goes on.
struct CommitJob {
    config: Arc<WindowAggregateConfig>,
    application_name: String,
    client: Client,
    table: ResultTable,
    delta: CommitDelta,
    /// The whole state, when this commit compacts the log.
    compacted: Option<StateLog>,
    log_before: StateLogSize,
    generation: i64,
    tracker: WatermarkTracker,
    offsets: BTreeMap<PartitionId, i64>,
    column_types: HashMap<String, String>,
    /// Records read since the commit before.
    read: u64,
}

/// A finished commit: the connection back, and what it committed.
struct Committed {
    client: Client,
    table: ResultTable,
    offsets: BTreeMap<PartitionId, i64>,
    watermark: Option<i64>,
    read: u64,
    took: Duration,
}

impl CommitJob {
    /// Commits, retrying transient failures (reconnecting when the connection was lost).
    async fn run(mut self) -> Result<Committed, Error> {
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            let progress = Progress {
                connector: &self.config.name,
                generation: self.generation,
                tracker: &self.tracker,
                offsets: &self.offsets,
                column_types: &self.column_types,
                state: state_write(&self.compacted, &self.delta, self.log_before),
            };
            match store::commit(&mut self.client, &mut self.table, &self.delta, &progress).await {
                Ok(()) => break,
                Err(err) if err.is_transient() && attempt < MAX_COMMIT_RETRIES => {
                    attempt += 1;
                    warn!(connector = %self.config.name, attempt, error = %err, "commit failed; retrying");
                    tokio::time::sleep(RETRY_BACKOFF.saturating_mul(1 << attempt)).await;
                    if self.client.is_closed() {
                        self.client =
                            connect_to(&self.config.target(), &self.application_name).await?;
                    }
                }
                Err(err) => return Err(err),
            }
        }
        debug!(
            connector = %self.config.name, upserts = self.delta.upserts.len(),
            deletes = self.delta.deletes.len(), state_entries = self.delta.state.entries(),
            compacted = self.compacted.is_some(), watermark = ?self.tracker.current(),
            "window results committed"
        );
        Ok(Committed {
            watermark: self.tracker.current(),
            client: self.client,
            table: self.table,
            offsets: self.offsets,
            read: self.read,
            took: started.elapsed(),
        })
    }
}

fn state_write<'a>(
    compacted: &'a Option<StateLog>,
    delta: &'a CommitDelta,
    log_before: StateLogSize,
) -> StateWrite<'a> {
    match compacted {
        Some(log) => StateWrite::Replace { log },
        None => StateWrite::Append {
            log: &delta.state,
            last_seq: log_before.last_seq,
        },
    }
}
