//! The streaming task: replication slot → change events → Kafka, exactly once.
//!
//! ```text
//!  slot ──frames──▶ decode ──▶ relation cache ──▶ rows ──▶ JSON ──▶ producer (open Kafka txn)
//!                                                                        │
//!   Commit of a PG transaction, and the transaction interval has passed: │
//!     offset record {lsn: commit end} ──▶ same Kafka txn ──▶ commit ─────┘
//!     then, and only then: confirm(commit end) to the slot
//! ```
//!
//! Progress tracking. A Kafka transaction holds whole PostgreSQL transactions and, last, the
//! offset record with the commit end LSN of the newest one. The slot is confirmed to that LSN only
//! after `commit_transaction` succeeded. On restart the stored offset is read back (read_committed)
//! and every PostgreSQL transaction whose commit LSN lies before it is dropped, so a transaction
//! is never delivered twice; the slot cannot have moved past the stored offset, so none is lost
//! (a slot that did is refused with an error). Records of a PostgreSQL transaction are produced as
//! they are decoded, so memory stays bounded by the producer's queue, whatever its size.
//!
//! When nothing is in flight, a keepalive's position is safe to confirm (no transaction can
//! commit before it unseen); it is stored as an offset first, so the slot never runs ahead of the
//! stored offset.

use std::{
    collections::{BTreeMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use rdkafka::{
    error::{KafkaError, RDKafkaErrorCode},
    message::{Header, OwnedHeaders},
    producer::{BaseRecord, Producer},
};
use tokio::task::JoinHandle;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{
    Error,
    database::{self, SlotInfo},
    encode::{RecordEncoder, TransactionMarker},
    frames::{self, ServerFrame},
    pgoutput::{self, Message, OldTuple},
    relations::{CachedRelation, RelationCache},
    replication::{
        ConnectConfig, ReplicationConnection, ReplicationStream, SlotSnapshot, SystemIdentity,
    },
    snapshot::{self, SnapshotOutcome, SnapshotProgress, StartPlan},
    types::DecodeOptions,
};
use crate::{
    config::{PostgresSourceConfig, SnapshotMode},
    event::{Datum, Lsn, Op, Row, RowChange, SnapshotMarker, SourceInfo, TableSchema},
    format::json::TransactionBlock,
    kafka::{
        BulkProducer, ClientSettings, OffsetStore, OwnedRecord, Refused, SourceOffset, TopicAdmin,
        TopicHandle, TopicSpec,
    },
    metrics::{Metrics, TaskMetrics},
};

/// Prefix of the logical decoding messages this source emits as heartbeats.
pub const HEARTBEAT_PREFIX: &str = "__tributary_heartbeat";

/// Prefix of the logical decoding message that marks where a catch-up read ends; never produced.
const CATCH_UP_PREFIX: &str = "__tributary_catch_up";

/// Reading the kept slot before a new snapshot: only what the snapshot cannot show (deletes,
/// truncates, messages) of the transactions committed before its point `until`.
#[derive(Debug)]
struct CatchUp {
    until: Lsn,
    /// The LSN of the marker message emitted after the snapshot's point: every transaction
    /// committed before `until` is decoded before it.
    marker: Lsn,
    /// Offsets stored meanwhile: the snapshot's, not complete.
    offset: SourceOffset,
    done: bool,
}

/// Where the source delivers: the Kafka cluster and the offsets topic; and where it reports.
#[derive(Debug, Clone)]
pub struct Destination {
    pub kafka: ClientSettings,
    pub offsets_topic: String,
    /// Where tasks report events, lag, commit times and the topics they write.
    pub metrics: Metrics,
}

/// Runs the source until `shutdown` is cancelled or an error stops it. The caller decides from
/// `Error::is_transient` whether to run it again.
pub async fn run(
    config: &PostgresSourceConfig,
    destination: &Destination,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    run_with_progress(config, destination, shutdown, Arc::default()).await
}

/// As [`run`], reporting the progress of a snapshot (when one is taken) into `progress`.
pub async fn run_with_progress(
    config: &PostgresSourceConfig,
    destination: &Destination,
    shutdown: CancellationToken,
    progress: Arc<SnapshotProgress>,
) -> Result<(), Error> {
    use tracing::Instrument;
    let span = tracing::info_span!("source", connector = %config.name);
    run_in_span(config, destination, shutdown, progress)
        .instrument(span)
        .await
}

async fn run_in_span(
    config: &PostgresSourceConfig,
    destination: &Destination,
    shutdown: CancellationToken,
    progress: Arc<SnapshotProgress>,
) -> Result<(), Error> {
    for warning in &config.warnings {
        warn!(connector = %config.name, "{warning}");
    }
    // PostgreSQL and Kafka are set up side by side: each is a few round trips that wait on
    // the network (a third of a second in all, one after the other).
    let postgres = async {
        let sql = database::connect(config).await?;
        database::preflight(&sql, config).await?;
        database::ensure_publication(&sql, config).await?;
        let mut replication = ReplicationConnection::connect(&replication_config(config)).await?;
        let identity = replication.identify_system().await?;
        Ok::<_, Error>((sql, replication, identity))
    };
    let offsets = OffsetStore::new(&destination.kafka, &destination.offsets_topic);
    let kafka = async {
        // The producer comes before reading the offsets: initialising its transactions fences
        // any earlier instance and aborts what it left open, so the offsets read are final.
        let (producer, ()) = tokio::try_join!(producer(config, destination), async {
            Ok(offsets.ensure_topic().await?)
        })?;
        let stored = offsets
            .load(&config.name, &config.topic_prefix, Duration::from_secs(60))
            .await?;
        Ok::<_, Error>((producer, stored))
    };
    let ((sql, mut replication, identity), (producer, stored)) = tokio::try_join!(postgres, kafka)?;
    // Read after the fencing: an earlier instance can no longer move the slot.
    let slot = database::slot_info(&sql, &config.slot_name).await?;
    let plan = snapshot::plan_start(
        config.snapshot_mode,
        stored.as_ref(),
        slot.as_ref()
            .map(|slot| resume_point(config, slot, stored.as_ref())),
    );
    let mut task = match plan {
        StartPlan::Nothing => {
            info!(connector = %config.name, "snapshot.mode=initial_only and the snapshot is complete: nothing to do");
            return Ok(());
        }
        StartPlan::Stream => {
            let start = match &slot {
                Some(slot) => resume_point(config, slot, stored.as_ref())?,
                None => {
                    if let Some(stored) = &stored {
                        return Err(Error::SlotMissing {
                            slot: config.slot_name.clone(),
                            stored: Lsn(stored.lsn),
                        });
                    }
                    let created = replication
                        .create_slot(&config.slot_name, false, SlotSnapshot::Nothing)
                        .await?;
                    info!(connector = %config.name, slot = %config.slot_name, lsn = %created.consistent_point, "created replication slot");
                    created.consistent_point
                }
            };
            let stream = start_streaming(config, replication, &identity, start).await?;
            StreamTask::new(
                config,
                destination,
                sql,
                producer,
                offsets,
                Some(stream),
                stored,
                start,
            )
        }
        StartPlan::Snapshot { reason } => {
            info!(connector = %config.name, mode = ?config.snapshot_mode, reason, "taking a snapshot");
            // Kafka may hold rows of an earlier (possibly unfinished) snapshot. Rows deleted
            // since then are in no new snapshot, so their deletes must come from the slot that
            // has seen them: it stays, and is read up to the new snapshot's point first.
            let catch_up_from = match (&slot, &stored) {
                (Some(slot), Some(_))
                    if config.snapshot_mode != SnapshotMode::InitialOnly
                        && replication.server_major_version().unwrap_or(0) >= 14 =>
                {
                    resume_point(config, slot, stored.as_ref()).ok()
                }
                _ => None,
            };
            if let (Some(slot), None) = (&slot, catch_up_from) {
                snapshot::drop_slot_for_snapshot(&sql, config, slot).await?;
            }
            // initial_only never streams: a temporary slot gives the snapshot its point and
            // leaves nothing behind that would hold WAL. A catch-up keeps the existing slot and
            // takes the snapshot's point from a temporary one.
            let temporary =
                config.snapshot_mode == SnapshotMode::InitialOnly || catch_up_from.is_some();
            let snapshot_slot = match catch_up_from {
                Some(_) => snapshot_slot_name(&config.slot_name),
                None => config.slot_name.clone(),
            };
            let exported = snapshot::export(&mut replication, &snapshot_slot, temporary).await?;
            info!(connector = %config.name, slot = %snapshot_slot, lsn = %exported.consistent_point, temporary, "created replication slot with an exported snapshot");
            // After the new point, so reading up to it means every earlier commit was read.
            let marker = match catch_up_from {
                Some(_) => Some(database::emit_catch_up_marker(&sql, CATCH_UP_PREFIX).await?),
                None => None,
            };
            let mut task = StreamTask::new(
                config,
                destination,
                sql,
                producer,
                offsets,
                None,
                None,
                exported.consistent_point,
            );
            if let (Some(from), Some(marker)) = (catch_up_from, marker) {
                let old = ReplicationConnection::connect(&replication_config(config)).await?;
                let old_stream = start_streaming(config, old, &identity, from).await?;
                info!(connector = %config.name, slot = %config.slot_name, from = %from, until = %exported.consistent_point, "reading the deletes since the earlier snapshot");
                let caught_up = task
                    .catch_up(
                        old_stream,
                        from,
                        exported.consistent_point,
                        marker,
                        &shutdown,
                    )
                    .await;
                match caught_up {
                    Ok(true) => {}
                    Ok(false) => {
                        task.close(false).await;
                        return Ok(());
                    }
                    Err(error) => {
                        task.close(false).await;
                        return Err(error);
                    }
                }
            }
            match snapshot::run(&mut task, config, &exported, &progress, &shutdown).await {
                Ok(SnapshotOutcome::Completed) => {}
                Ok(SnapshotOutcome::Stopped) => {
                    task.close(false).await;
                    return Ok(());
                }
                Err(error) => {
                    task.close(false).await;
                    return Err(error);
                }
            }
            // The exported snapshot ends here; every copying connection is done with it.
            replication.simple_query("COMMIT").await?;
            if config.snapshot_mode == SnapshotMode::InitialOnly {
                let result = task.wait_for_commit().await;
                task.close(result.is_ok()).await;
                info!(connector = %config.name, "snapshot.mode=initial_only: snapshot complete, stopping");
                return result;
            }
            let replication = if catch_up_from.is_some() {
                // Closing the session drops the temporary slot; the kept slot streams on.
                drop(replication);
                ReplicationConnection::connect(&replication_config(config)).await?
            } else {
                replication
            };
            let stream =
                start_streaming(config, replication, &identity, exported.consistent_point).await?;
            task.attach_stream(stream);
            task
        }
    };
    let result = task.run(shutdown).await;
    task.close(result.is_ok()).await;
    let StreamTask { sql, stream, .. } = task;
    if result.is_ok() && config.slot_drop_on_stop {
        // The walsender must let go of the slot before it can be dropped.
        drop(stream);
        drop_slot_when_released(&sql, &config.slot_name).await;
    }
    result
}

/// The temporary slot that gives a catch-up snapshot its point (slot names have at most 63
/// characters).
fn snapshot_slot_name(slot: &str) -> String {
    let mut base: String = slot.chars().take(63 - "_snapshot".len()).collect();
    base.push_str("_snapshot");
    base
}

/// START_REPLICATION at `start` with the pgoutput options this source uses.
async fn start_streaming(
    config: &PostgresSourceConfig,
    replication: ReplicationConnection,
    identity: &SystemIdentity,
    start: Lsn,
) -> Result<ReplicationStream, Error> {
    info!(
        connector = %config.name,
        slot = %config.slot_name,
        start = %start,
        system_id = %identity.system_id,
        timeline = identity.timeline,
        "streaming"
    );
    let mut options = vec![
        ("proto_version", "1".to_owned()),
        (
            "publication_names",
            format!("\"{}\"", config.publication_name.replace('"', "\"\"")),
        ),
    ];
    if replication.server_major_version().unwrap_or(0) >= 14 {
        options.push(("messages", "true".to_owned()));
    }
    let options: Vec<(&str, &str)> = options.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Ok(replication
        .start_replication(
            &config.slot_name,
            start,
            &options,
            config.status_update_interval.min(Duration::from_secs(1)),
        )
        .await?)
}

/// Waits (up to 10 s) until no walsender holds `slot`: the server ends one on its own time
/// after its connection closed.
async fn wait_until_slot_released(sql: &Client, slot: &str) -> Result<(), Error> {
    for _ in 0..100 {
        let row = sql
            .query_opt(
                "SELECT active FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await?;
        if !row.is_some_and(|row| row.get::<_, bool>(0)) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

async fn drop_slot_when_released(sql: &Client, slot: &str) {
    for _ in 0..50 {
        match sql
            .execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
                  WHERE slot_name = $1 AND NOT active",
                &[&slot],
            )
            .await
        {
            Ok(1) => {
                info!(slot = %slot, "dropped the replication slot (slot.drop.on.stop)");
                return;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(error) => {
                warn!(slot = %slot, error = %error, "could not drop the replication slot");
                return;
            }
        }
    }
    warn!(slot = %slot, "the replication slot is still in use; not dropped");
}

fn replication_config(config: &PostgresSourceConfig) -> ConnectConfig {
    ConnectConfig {
        host: config.hostname.clone(),
        port: config.port,
        user: config.user.clone(),
        password: config.password.clone(),
        dbname: config.dbname.clone(),
        ssl: config.ssl.clone(),
        application_name: format!("tributary {}", config.name),
        connect_timeout: Duration::from_secs(30),
    }
}

/// Where to resume on an existing slot, refusing when WAL may have been lost.
fn resume_point(
    config: &PostgresSourceConfig,
    slot: &SlotInfo,
    stored: Option<&SourceOffset>,
) -> Result<Lsn, Error> {
    let name = config.slot_name.clone();
    if slot.plugin.as_deref() != Some("pgoutput") {
        return Err(Error::SlotMismatch {
            slot: name,
            what: format!(
                "output plugin {:?}",
                slot.plugin.as_deref().unwrap_or("none")
            ),
        });
    }
    if slot.database.as_deref() != Some(config.dbname.as_str()) {
        return Err(Error::SlotMismatch {
            slot: name,
            what: format!("database {:?}", slot.database.as_deref().unwrap_or("none")),
        });
    }
    if slot.wal_status.as_deref() == Some("lost") {
        return Err(Error::SlotInvalidated { slot: name });
    }
    if let Some(pid) = slot.active_pid {
        return Err(Error::SlotInUse { slot: name, pid });
    }
    let confirmed = slot.confirmed_flush_lsn.unwrap_or(Lsn::ZERO);
    match stored {
        Some(stored) if confirmed > Lsn(stored.lsn) => Err(Error::SlotOvertaken {
            slot: name,
            slot_lsn: confirmed,
            stored: Lsn(stored.lsn),
        }),
        Some(stored) => Ok(Lsn(stored.lsn)),
        None => Ok(confirmed),
    }
}

/// The producer's handle for `topic`: `last` when it is that topic's (runs of records go to one
/// topic), else a new one, kept in `last`.
fn topic_handle<'h>(
    producer: &Arc<BulkProducer>,
    last: &'h mut Option<TopicHandle>,
    topic: &str,
) -> Result<&'h TopicHandle, KafkaError> {
    let handle = match last.take() {
        Some(handle) if handle.name() == topic => handle,
        _ => producer.topic(topic)?,
    };
    Ok(last.insert(handle))
}

async fn producer(
    config: &PostgresSourceConfig,
    destination: &Destination,
) -> Result<Arc<BulkProducer>, Error> {
    let mut settings = destination.kafka.clone();
    let tuning = [
        // Java clients' partitioner, so keys land where Kafka Connect would put them.
        ("partitioner", "murmur2_random"),
        // A transaction spans whole PostgreSQL transactions, which may be long.
        ("transaction.timeout.ms", "900000"),
        // Bounds memory: sends wait when this much is queued. A commit waits for the queue to
        // drain while new records are held (HELD_BYTES_LIMIT): at 64 MB a snapshot's commit
        // took 0.2-0.5 s and the held records ran out long before; at 16 MB it takes ~0.1 s.
        ("queue.buffering.max.kbytes", "16384"),
    ];
    for (key, value) in tuning {
        if !settings.overrides.iter().any(|(k, _)| k == key) {
            settings
                .overrides
                .insert(0, (key.to_owned(), value.to_owned()));
        }
    }
    let transactional_id = format!("tributary-{}-0", config.name);
    Ok(crate::kafka::bulk_transactional_producer(
        &settings,
        &transactional_id,
        Duration::from_secs(60),
    )
    .await?)
}

/// The PostgreSQL transaction being decoded.
#[derive(Debug)]
struct PgTransaction {
    xid: u32,
    commit_lsn: Lsn,
    commit_ts_micros: i64,
    /// Already delivered before a restart: decoded, not produced.
    skip: bool,
    event_count: i64,
    per_table: BTreeMap<String, i64>,
}

pub(super) struct StreamTask<'a> {
    config: &'a PostgresSourceConfig,
    sql: Client,
    producer: Arc<BulkProducer>,
    offsets: OffsetStore,
    /// None while a snapshot is produced: streaming starts once it is read.
    stream: Option<ReplicationStream>,
    relations: RelationCache,
    /// Keys and values in the connector's converters.
    records: RecordEncoder,
    decode_options: DecodeOptions,
    admin: TopicAdmin,
    topics: HashSet<String>,
    /// The topic of the newest record produced, as the producer takes it; one of `topics` or
    /// the offsets topic, so also the quick answer of `ensure_topic`.
    last_topic: Option<TopicHandle>,
    metrics: TaskMetrics,
    catch_up: Option<CatchUp>,
    /// The server's end of WAL, from the newest frame: how far `delivered` trails is the lag.
    server_wal_end: Lsn,
    /// Commit end LSN of the last transaction stored in Kafka (or confirmed from a keepalive).
    delivered: Lsn,
    /// Commit LSN of the last transaction seen, for `source.sequence`.
    last_commit_lsn: Option<Lsn>,
    transaction: Option<PgTransaction>,
    /// The open Kafka transaction: when it began, and the newest complete PG transaction in it.
    kafka_txn: Option<(Instant, Option<SourceOffset>)>,
    /// Whether the producer has begun the transaction `kafka_txn` describes (it begins lazily,
    /// once the previous commit is done).
    producer_txn_open: bool,
    /// A commit running on a blocking thread, and the offset it stores. Decoding goes on
    /// meanwhile; records wait in `held` until the producer can begin the next transaction.
    in_flight: Option<(JoinHandle<CommitOutcome>, SourceOffset)>,
    held: Vec<HeldRecord>,
    held_bytes: usize,
    last_commit: Instant,
    /// Snapshot records sent, to read the clock for every [`SNAPSHOT_CLOCK_EVERY`]th only.
    snapshot_records: u32,
}

/// A finished commit and how long it took.
type CommitOutcome = (Result<(), KafkaError>, Duration);

/// A record produced while a commit was in flight.
struct HeldRecord {
    topic: Arc<str>,
    record: OwnedRecord,
    headers: Option<OwnedHeaders>,
}

/// How much may wait in `held` before decoding waits for the commit in flight.
const HELD_BYTES_LIMIT: usize = 32 << 20;

/// A snapshot checks whether its transaction is due once per this many records: reading the
/// clock for every record was a visible share of its CPU.
const SNAPSHOT_CLOCK_EVERY: u32 = 256;

/// A snapshot's Kafka transactions last at least this long (`transaction.boundary.interval.ms`
/// when longer). Each commit costs the broker a fixed amount of work (markers, coordinator
/// writes) and the producer a flush; a snapshot's rows gain nothing from committing sooner, as
/// a crash takes the snapshot again anyway. At 100 ms the commits were half the broker's CPU.
const SNAPSHOT_TRANSACTION_MIN: Duration = Duration::from_secs(1);

impl std::fmt::Debug for StreamTask<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamTask")
            .field("connector", &self.config.name)
            .field("delivered", &self.delivered)
            .finish_non_exhaustive()
    }
}

impl<'a> StreamTask<'a> {
    #[allow(clippy::too_many_arguments)]
    fn new(
        config: &'a PostgresSourceConfig,
        destination: &Destination,
        sql: Client,
        producer: Arc<BulkProducer>,
        offsets: OffsetStore,
        stream: Option<ReplicationStream>,
        stored: Option<SourceOffset>,
        start: Lsn,
    ) -> Self {
        let records = RecordEncoder::new(config);
        Self {
            config,
            sql,
            producer,
            offsets,
            stream,
            relations: RelationCache::default(),
            records,
            decode_options: DecodeOptions {
                money_fraction_digits: config.money_fraction_digits,
            },
            admin: TopicAdmin::new(&destination.kafka, Duration::from_secs(30))
                .expect("admin client settings were already used by the producer"),
            topics: HashSet::new(),
            last_topic: None,
            metrics: destination.metrics.task(&config.name, 0),
            catch_up: None,
            server_wal_end: Lsn::ZERO,
            delivered: stored.as_ref().map(|s| Lsn(s.lsn)).unwrap_or(start),
            // `source.sequence` goes on from the last delivered transaction after a restart, so
            // consumers that order changes by it (or drop repeats) see no step back.
            last_commit_lsn: stored.as_ref().and_then(|s| s.lsn_commit).map(Lsn),
            transaction: None,
            kafka_txn: None,
            producer_txn_open: false,
            in_flight: None,
            held: Vec::new(),
            held_bytes: 0,
            last_commit: Instant::now(),
            snapshot_records: 0,
        }
    }

    async fn run(&mut self, shutdown: CancellationToken) -> Result<(), Error> {
        let mut heartbeat = self.config.heartbeat_interval.map(|every| {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick
        });
        loop {
            if self.catch_up.as_ref().is_some_and(|c| c.done) {
                return Ok(());
            }
            let commit_due = self.commit_due();
            let can_commit = self.can_commit();
            let committing = self.in_flight.is_some();
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(()),
                result = async { (&mut self.in_flight.as_mut().expect("guarded").0).await }, if committing => {
                    self.finish_commit(result).await?;
                }
                _ = tokio::time::sleep_until(commit_due.into()), if can_commit => {
                    self.commit().await?;
                }
                _ = async { heartbeat.as_mut().expect("guarded").tick().await }, if heartbeat.is_some() => {
                    database::emit_heartbeat(&self.sql, HEARTBEAT_PREFIX).await?;
                }
                frame = next_frame(self.stream.as_mut()) => {
                    let frame = frame.map_err(|error| self.explain_stream_error(error))?;
                    let Some(frame) = frame else {
                        return Err(Error::Replication(super::replication::Error::StreamEnded));
                    };
                    self.handle_frame(&frame).await?;
                }
            }
        }
    }

    /// Turns the server's "publication does not exist" into what happened and what to do.
    fn explain_stream_error(&self, error: super::replication::Error) -> Error {
        if let super::replication::Error::Server { code, message, .. } = &error
            && code == "42704"
            && message.contains("publication")
        {
            return Error::PublicationDropped {
                publication: self.config.publication_name.clone(),
            };
        }
        Error::Replication(error)
    }

    /// When the open Kafka transaction should commit (far away when none can).
    fn commit_due(&self) -> Instant {
        self.commit_due_after(self.config.transaction_interval)
    }

    fn commit_due_after(&self, interval: Duration) -> Instant {
        match &self.kafka_txn {
            Some((began, _)) => *began + interval,
            None => Instant::now() + Duration::from_secs(3600),
        }
    }

    /// A Kafka transaction can commit only between PostgreSQL transactions, and one at a time.
    fn can_commit(&self) -> bool {
        self.transaction.is_none()
            && self.in_flight.is_none()
            && matches!(self.kafka_txn, Some((_, Some(_))))
    }

    async fn handle_frame(&mut self, frame: &[u8]) -> Result<(), Error> {
        let parsed = frames::parse_server_frame(frame)
            .map_err(|e| Error::Replication(super::replication::Error::Protocol(e.to_string())))?;
        match parsed {
            ServerFrame::Keepalive { wal_end, .. } => {
                self.observe_wal_end(wal_end);
                self.on_keepalive(wal_end).await
            }
            ServerFrame::XLogData {
                wal_start,
                wal_end,
                data,
                ..
            } => {
                self.observe_wal_end(wal_end);
                let message = pgoutput::decode(data).map_err(|source| Error::Decode {
                    lsn: wal_start,
                    source,
                })?;
                self.handle_message(message, wal_start).await
            }
        }
    }

    fn observe_wal_end(&mut self, wal_end: Lsn) {
        if wal_end > self.server_wal_end {
            self.server_wal_end = wal_end;
            self.metrics
                .wal_behind(wal_end.0.saturating_sub(self.delivered.0));
        }
    }

    async fn on_keepalive(&mut self, wal_end: Lsn) -> Result<(), Error> {
        tracing::trace!(wal_end = %wal_end, delivered = %self.delivered, "keepalive");
        let idle = self.transaction.is_none()
            && self.kafka_txn.is_none()
            && self.in_flight.is_none()
            && self.catch_up.is_none();
        // Store and confirm the idle position now and then, so the slot releases WAL while the
        // captured tables are quiet; never more than once a second.
        if idle && wal_end > self.delivered && self.last_commit.elapsed() >= Duration::from_secs(1)
        {
            let offset = SourceOffset {
                lsn: wal_end.0,
                lsn_commit: None,
                tx_id: None,
                ts_usec: now_micros(),
                snapshot_completed: true,
            };
            self.kafka_txn = Some((Instant::now(), Some(offset)));
            self.commit().await?;
        }
        Ok(())
    }

    async fn handle_message(&mut self, message: Message<'_>, lsn: Lsn) -> Result<(), Error> {
        match message {
            Message::Begin(begin) => {
                // In a catch-up, what commits at or after the snapshot's point is streamed later.
                let skip = begin.final_lsn < self.delivered
                    || self
                        .catch_up
                        .as_ref()
                        .is_some_and(|c| begin.final_lsn >= c.until);
                tracing::trace!(xid = begin.xid, commit_lsn = %begin.final_lsn, skip, "begin");
                if skip {
                    debug!(xid = begin.xid, commit_lsn = %begin.final_lsn, "dropping a transaction delivered before the restart");
                } else if self.kafka_txn.is_none() {
                    self.kafka_txn = Some((Instant::now(), None));
                }
                self.transaction = Some(PgTransaction {
                    xid: begin.xid,
                    commit_lsn: begin.final_lsn,
                    commit_ts_micros: frames::pg_epoch_micros_to_unix_micros(begin.commit_ts),
                    skip,
                    event_count: 0,
                    per_table: BTreeMap::new(),
                });
                if !skip && self.config.provide_transaction_metadata && self.catch_up.is_none() {
                    self.send_transaction_marker(true).await?;
                }
            }
            Message::Commit(commit) => {
                let Some(transaction) = self.transaction.take() else {
                    return Err(protocol("Commit without Begin"));
                };
                self.last_commit_lsn = Some(commit.commit_lsn);
                if transaction.skip {
                    return Ok(());
                }
                let xid = transaction.xid;
                if self.config.provide_transaction_metadata && self.catch_up.is_none() {
                    self.transaction = Some(transaction);
                    self.send_transaction_marker(false).await?;
                    self.transaction = None;
                }
                let offset = match &self.catch_up {
                    Some(catch_up) => catch_up.offset.clone(),
                    None => SourceOffset {
                        lsn: commit.end_lsn.0,
                        lsn_commit: Some(commit.commit_lsn.0),
                        tx_id: Some(xid),
                        ts_usec: frames::pg_epoch_micros_to_unix_micros(commit.commit_ts),
                        snapshot_completed: true,
                    },
                };
                if let Some((_, newest)) = &mut self.kafka_txn {
                    *newest = Some(offset);
                }
                if Instant::now() >= self.commit_due() && self.in_flight.is_none() {
                    self.commit().await?;
                }
            }
            Message::Relation(relation) => {
                tracing::trace!(relation_id = relation.relation_id, table = %relation.name, "relation");
                self.relations
                    .apply(&self.sql, &relation, &self.config.patterns)
                    .await?;
            }
            Message::Type { .. } | Message::Origin { .. } => {}
            Message::Insert { relation_id, new } => {
                let Some(relation) = self.captured(relation_id, lsn)? else {
                    return Ok(());
                };
                if self.catch_up.is_some() {
                    // The snapshot shows the row as it is now.
                    return Ok(());
                }
                let after = relation.row(&new, lsn, &self.decode_options)?;
                let change = self.change(&relation.schema, Op::Create, None, Some(after), lsn);
                self.send_change(&change, None).await?;
            }
            Message::Update {
                relation_id,
                old,
                new,
            } => {
                let Some(relation) = self.captured(relation_id, lsn)? else {
                    return Ok(());
                };
                let mut after = relation.row(&new, lsn, &self.decode_options)?;
                let before = match &old {
                    Some(old) => Some(relation.row(old.tuple(), lsn, &self.decode_options)?),
                    None => None,
                };
                // Under REPLICA IDENTITY FULL the old tuple holds unchanged TOAST values.
                if let (Some(OldTuple::Full(_)), Some(before)) = (&old, &before) {
                    for (new_datum, old_datum) in after.0.iter_mut().zip(&before.0) {
                        if *new_datum == Datum::Unchanged {
                            *new_datum = old_datum.clone();
                        }
                    }
                }
                let schema = Arc::clone(&relation.schema);
                let key_changed = before
                    .as_ref()
                    .is_some_and(|before| key_differs(&schema, before, &after));
                if self.catch_up.is_some() {
                    // The snapshot shows the row under its new key; only the old key's end is news.
                    if key_changed {
                        let delete = self.change(&schema, Op::Delete, before, None, lsn);
                        self.send_change(&delete, None).await?;
                        if self.config.tombstones_on_delete {
                            self.send_tombstone(&delete).await?;
                        }
                    }
                } else if key_changed {
                    self.send_key_change(&schema, before.expect("key changed"), after, lsn)
                        .await?;
                } else {
                    let before = before.filter(|_| matches!(old, Some(OldTuple::Full(_))));
                    let change = self.change(&schema, Op::Update, before, Some(after), lsn);
                    self.send_change(&change, None).await?;
                }
            }
            Message::Delete { relation_id, old } => {
                let Some(relation) = self.captured(relation_id, lsn)? else {
                    return Ok(());
                };
                let before = relation.row(old.tuple(), lsn, &self.decode_options)?;
                let schema = Arc::clone(&relation.schema);
                let change = self.change(&schema, Op::Delete, Some(before), None, lsn);
                self.send_change(&change, None).await?;
                if self.config.tombstones_on_delete {
                    self.send_tombstone(&change).await?;
                }
            }
            Message::Truncate { relation_ids, .. } => {
                for relation_id in relation_ids {
                    let Some(relation) = self.captured(relation_id, lsn)? else {
                        continue;
                    };
                    let schema = Arc::clone(&relation.schema);
                    if self.skipping() {
                        continue;
                    }
                    let source = self.source_info(lsn);
                    let block = self.count_event(Some(&schema));
                    let topic = self.config.table_topic(&schema.id);
                    self.records.prepare(&schema, &topic).await?;
                    let value = self.records.truncate_value(
                        &schema,
                        &source,
                        now_micros(),
                        block.as_ref(),
                    )?;
                    self.send(&topic, OwnedRecord::new(None, Some(value)), None)
                        .await?;
                    self.metrics.event(Op::Truncate);
                }
            }
            Message::Message {
                transactional,
                lsn: message_lsn,
                prefix,
                content,
            } => {
                if self.skipping() {
                    return Ok(());
                }
                if prefix == CATCH_UP_PREFIX {
                    if let Some(catch_up) = &mut self.catch_up
                        && message_lsn >= catch_up.marker
                    {
                        catch_up.done = true;
                    }
                    return Ok(());
                }
                if self
                    .catch_up
                    .as_ref()
                    .is_some_and(|c| !transactional && message_lsn >= c.until)
                {
                    // Streamed after the snapshot.
                    return Ok(());
                }
                if prefix == HEARTBEAT_PREFIX {
                    self.send_heartbeat().await?;
                    return Ok(());
                }
                if !transactional && self.kafka_txn.is_none() {
                    self.kafka_txn = Some((Instant::now(), None));
                }
                let mut source = self.source_info(message_lsn);
                if !transactional {
                    source.tx_id = None;
                }
                let block = if transactional {
                    self.count_event(None)
                } else {
                    None
                };
                let topic = self.config.message_topic.clone();
                self.records.prepare_messages(&topic).await?;
                let key = self.records.message_key(prefix)?;
                let value = self.records.message_value(
                    prefix,
                    content,
                    &source,
                    now_micros(),
                    block.as_ref(),
                )?;
                self.send(&topic, OwnedRecord::new(Some(&key), Some(value)), None)
                    .await?;
                self.metrics.event(Op::Message);
            }
        }
        Ok(())
    }

    fn skipping(&self) -> bool {
        self.transaction.as_ref().is_some_and(|t| t.skip)
    }

    /// The relation of a change when its table is captured and the change is to be produced.
    fn captured(&self, relation_id: u32, lsn: Lsn) -> Result<Option<CachedRelation>, Error> {
        if self.skipping() {
            return Ok(None);
        }
        let relation = self
            .relations
            .get(relation_id)
            .ok_or(Error::UnknownRelation { relation_id, lsn })?;
        Ok(relation.captured.then(|| relation.clone()))
    }

    fn source_info(&self, lsn: Lsn) -> SourceInfo {
        let (tx_id, ts_micros) = match &self.transaction {
            Some(t) => (Some(t.xid), t.commit_ts_micros),
            None => (None, now_micros()),
        };
        SourceInfo {
            lsn,
            sequence: (self.last_commit_lsn, Some(lsn)),
            tx_id,
            ts_micros,
            snapshot: SnapshotMarker::No,
        }
    }

    fn change(
        &self,
        schema: &Arc<TableSchema>,
        op: Op,
        before: Option<Row>,
        after: Option<Row>,
        lsn: Lsn,
    ) -> RowChange {
        RowChange {
            table: Arc::clone(schema),
            op,
            before,
            after,
            source: self.source_info(lsn),
        }
    }

    /// Counts an event in the current transaction (per table too, for row events); the block
    /// for its value when transaction metadata is on. Messages have no table.
    fn count_event(&mut self, table: Option<&TableSchema>) -> Option<TransactionBlock> {
        let transaction = self.transaction.as_mut()?;
        transaction.event_count += 1;
        if !self.config.provide_transaction_metadata {
            return None;
        }
        let data_collection_order = match table {
            Some(table) => {
                let per_table = transaction
                    .per_table
                    .entry(table.id.to_string())
                    .or_default();
                *per_table += 1;
                *per_table
            }
            None => transaction.event_count,
        };
        Some(TransactionBlock {
            id: format!("{}:{}", transaction.xid, transaction.commit_lsn.0),
            total_order: transaction.event_count,
            data_collection_order,
        })
    }

    async fn send_change(
        &mut self,
        change: &RowChange,
        headers: Option<OwnedHeaders>,
    ) -> Result<(), Error> {
        let block = self.count_event(Some(&change.table));
        let topic = self.config.table_topic(&change.table.id);
        self.records.prepare(&change.table, &topic).await?;
        let record = self.records.record(change, now_micros(), block.as_ref())?;
        self.send(&topic, record, headers).await?;
        self.metrics.event(change.op);
        Ok(())
    }

    async fn send_tombstone(&mut self, delete: &RowChange) -> Result<(), Error> {
        let topic = self.config.table_topic(&delete.table.id);
        self.records.prepare(&delete.table, &topic).await?;
        let Some(key) = self.records.key(delete)? else {
            return Ok(());
        };
        self.send(&topic, OwnedRecord::new(Some(&key), None), None)
            .await
    }

    /// A primary-key change: a delete of the old key (+ tombstone) and a create of the new one,
    /// each carrying the other key in a header, as Debezium does.
    async fn send_key_change(
        &mut self,
        schema: &Arc<TableSchema>,
        before: Row,
        after: Row,
        lsn: Lsn,
    ) -> Result<(), Error> {
        let delete = self.change(schema, Op::Delete, Some(before), None, lsn);
        let create = self.change(schema, Op::Create, None, Some(after), lsn);
        let topic = self.config.table_topic(&schema.id);
        self.records.prepare(schema, &topic).await?;
        let old_key = self.records.key(&delete)?;
        let new_key = self.records.key(&create)?;
        let header = |name: &str, key: &Option<Vec<u8>>| {
            OwnedHeaders::new().insert(Header {
                key: name,
                value: key.as_deref(),
            })
        };
        self.send_change(&delete, Some(header("__debezium.newkey", &new_key)))
            .await?;
        if self.config.tombstones_on_delete {
            self.send_tombstone(&delete).await?;
        }
        self.send_change(&create, Some(header("__debezium.oldkey", &old_key)))
            .await
    }

    async fn send_transaction_marker(&mut self, begin: bool) -> Result<(), Error> {
        let Some(transaction) = &self.transaction else {
            return Ok(());
        };
        let marker = TransactionMarker {
            status: if begin { "BEGIN" } else { "END" },
            id: format!("{}:{}", transaction.xid, transaction.commit_lsn.0),
            ts_ms: transaction.commit_ts_micros / 1000,
            event_count: (!begin).then_some(transaction.event_count),
            data_collections: (!begin).then(|| {
                transaction
                    .per_table
                    .iter()
                    .map(|(table, count)| (table.clone(), *count))
                    .collect()
            }),
        };
        let topic = self.config.transaction_topic.clone();
        let (key, value) = self.records.transaction_marker(&topic, &marker).await?;
        self.send(&topic, OwnedRecord::new(Some(&key), Some(value)), None)
            .await
    }

    async fn send_heartbeat(&mut self) -> Result<(), Error> {
        let topic = self.config.heartbeat_topic.clone();
        let (key, value) = self
            .records
            .heartbeat(&topic, &self.config.topic_prefix, now_micros() / 1000)
            .await?;
        self.send(&topic, OwnedRecord::new(Some(&key), Some(value)), None)
            .await
    }

    async fn ensure_topic(&mut self, topic: &str) -> Result<(), Error> {
        // Runs of records go to one topic: compared, not hashed, each time.
        if self.last_topic.as_ref().is_some_and(|t| t.name() == topic)
            || self.topics.contains(topic)
        {
            return Ok(());
        }
        let mut spec = TopicSpec::new(topic, self.config.topic_partitions);
        spec.replication_factor = self.config.topic_replication_factor;
        self.admin.ensure_topic(&spec).await?;
        self.topics.insert(topic.to_owned());
        self.metrics.topic_written(topic);
        Ok(())
    }

    /// Adds a record to the current Kafka transaction: produced now, or held while the previous
    /// transaction's commit is in flight (taken whole, so held it is kept, not copied).
    async fn send(
        &mut self,
        topic: &str,
        record: OwnedRecord,
        headers: Option<OwnedHeaders>,
    ) -> Result<(), Error> {
        self.ensure_topic(topic).await?;
        let size = record.len();
        if self.hold_or_wait(size).await? {
            self.hold(topic, [(record, headers)], size);
            return Ok(());
        }
        self.produce(topic, record, headers).await
    }

    /// As [`Self::send`] for records without headers, all to `topic`, produced in batches.
    async fn send_batch(&mut self, topic: &str, records: Vec<OwnedRecord>) -> Result<(), Error> {
        self.ensure_topic(topic).await?;
        let size = records.iter().map(OwnedRecord::len).sum();
        if self.hold_or_wait(size).await? {
            self.hold(
                topic,
                records.into_iter().map(|record| (record, None)),
                size,
            );
            return Ok(());
        }
        self.produce_batch(topic, records).await
    }

    /// Whether records of `size` bytes are to be held: while a commit is in flight, when they
    /// fit; when they do not, the commit is waited for first.
    async fn hold_or_wait(&mut self, size: usize) -> Result<bool, Error> {
        if self.in_flight.is_none() {
            return Ok(false);
        }
        if self.held_bytes + size <= HELD_BYTES_LIMIT {
            return Ok(true);
        }
        self.wait_for_commit().await?;
        Ok(false)
    }

    /// Keeps records of `size` bytes for the next transaction (taken whole: kept, not copied).
    fn hold(
        &mut self,
        topic: &str,
        records: impl IntoIterator<Item = (OwnedRecord, Option<OwnedHeaders>)>,
        size: usize,
    ) {
        // Held records mostly go to one topic: they share its name.
        let topic = match self.held.last() {
            Some(last) if &*last.topic == topic => Arc::clone(&last.topic),
            _ => Arc::from(topic),
        };
        self.held
            .extend(records.into_iter().map(|(record, headers)| HeldRecord {
                topic: Arc::clone(&topic),
                record,
                headers,
            }));
        self.held_bytes += size;
    }

    /// Begins the producer's transaction unless it is open.
    fn open_transaction(&mut self) -> Result<(), Error> {
        if !self.producer_txn_open {
            self.producer
                .begin_transaction()
                .map_err(Error::KafkaTransaction)?;
            self.producer_txn_open = true;
        }
        Ok(())
    }

    /// Produces into the producer's transaction, beginning it first if needed, waiting while
    /// the producer's queue is full. The value is handed to the producer, not copied.
    async fn produce(
        &mut self,
        topic: &str,
        mut record: OwnedRecord,
        headers: Option<OwnedHeaders>,
    ) -> Result<(), Error> {
        self.open_transaction()?;
        let produce_error = |source| Error::Produce {
            topic: topic.to_owned(),
            source,
        };
        if let Some(headers) = headers {
            return self
                .produce_with_headers(topic, record.key(), record.value(), headers)
                .await;
        }
        let handle =
            topic_handle(&self.producer, &mut self.last_topic, topic).map_err(produce_error)?;
        loop {
            // The timestamp is the producer's clock at send, as Kafka Connect's.
            match self.producer.send_owned(handle, record, 0) {
                // Delivery is checked as a whole by commit_transaction.
                Ok(()) => return Ok(()),
                Err(Refused {
                    error: KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
                    record: returned,
                }) => {
                    record = returned;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(Refused { error, .. }) => return Err(produce_error(error)),
            }
        }
    }

    /// As [`Self::produce`], for the few records with headers (copied).
    async fn produce_with_headers(
        &mut self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: OwnedHeaders,
    ) -> Result<(), Error> {
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).headers(headers);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(value) = value {
            record = record.payload(value);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((source, _)) => {
                    return Err(Error::Produce {
                        topic: topic.to_owned(),
                        source,
                    });
                }
            }
        }
    }

    pub(super) async fn wait_for_commit(&mut self) -> Result<(), Error> {
        if let Some((handle, _)) = self.in_flight.as_mut() {
            let result = handle.await;
            self.finish_commit(result).await?;
        }
        Ok(())
    }

    /// After a commit: the slot may release the WAL it covers; the records held meanwhile
    /// start the next transaction.
    async fn finish_commit(
        &mut self,
        result: Result<CommitOutcome, tokio::task::JoinError>,
    ) -> Result<(), Error> {
        let Some((_, offset)) = self.in_flight.take() else {
            return Ok(());
        };
        let (committed, took) =
            result.map_err(|e| protocol(&format!("commit task failed: {e}")))?;
        committed.map_err(Error::KafkaTransaction)?;
        self.metrics.committed(took, offset.ts_usec);
        self.metrics
            .wal_behind(self.server_wal_end.0.saturating_sub(offset.lsn));
        let lsn = Lsn(offset.lsn);
        self.last_commit = Instant::now();
        // A catch-up reads the kept slot from before its offset: nothing to confirm there yet.
        if self.catch_up.is_none() {
            self.delivered = lsn;
            // Only now is the WAL up to `lsn` safe to release.
            if let Some(stream) = &self.stream {
                stream.confirm(lsn);
            }
        }
        debug!(lsn = %lsn, "committed to Kafka and confirmed");
        self.held_bytes = 0;
        // In order; runs of one topic without headers (a snapshot's rows) go in batches.
        let mut held = std::mem::take(&mut self.held).into_iter().peekable();
        while let Some(first) = held.next() {
            if first.headers.is_some() {
                self.produce(&first.topic, first.record, first.headers)
                    .await?;
                continue;
            }
            let mut run = vec![first.record];
            while let Some(next) =
                held.next_if(|next| next.headers.is_none() && next.topic == first.topic)
            {
                run.push(next.record);
            }
            self.produce_batch(&first.topic, run).await?;
        }
        Ok(())
    }

    /// Adds the offset record and starts committing the Kafka transaction; `finish_commit`
    /// confirms the slot once it succeeded.
    async fn commit(&mut self) -> Result<(), Error> {
        self.wait_for_commit().await?;
        let Some((_, Some(offset))) = self.kafka_txn.take() else {
            return Ok(());
        };
        let record = self
            .offsets
            .record(&self.config.name, &self.config.topic_prefix, &offset);
        self.produce(
            &record.topic,
            OwnedRecord::new(Some(&record.key), Some(record.value)),
            None,
        )
        .await?;
        let producer = self.producer.clone();
        let handle = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let result = producer.commit_transaction(Duration::from_secs(60));
            (result, started.elapsed())
        });
        self.producer_txn_open = false;
        self.in_flight = Some((handle, offset));
        Ok(())
    }

    /// On the way out: a clean stop commits what is complete; otherwise the open Kafka
    /// transaction is aborted (its PostgreSQL transactions come again after the restart).
    pub(super) async fn close(&mut self, clean: bool) {
        if clean {
            let mut result = self.wait_for_commit().await;
            if result.is_ok() && self.transaction.is_none() {
                result = self.commit().await;
            }
            if result.is_ok() {
                result = self.wait_for_commit().await;
            }
            if let Err(error) = result {
                warn!(error = %error, "final commit failed; the changes will be delivered again");
            }
        } else if let Some((handle, _)) = self.in_flight.take() {
            // Its outcome no longer matters: the slot stays where it was confirmed last.
            let _ = handle.await;
        }
        self.kafka_txn = None;
        self.held.clear();
        if std::mem::take(&mut self.producer_txn_open) {
            let producer = self.producer.clone();
            let _ = tokio::task::spawn_blocking(move || {
                producer.abort_transaction(Duration::from_secs(30))
            })
            .await;
        }
    }
}

/// What the snapshot needs from the task: the same producer, transactions and offsets.
impl StreamTask<'_> {
    /// Adds a snapshot read to the open Kafka transaction, whose offset becomes `offset`;
    /// commits when the transaction interval has passed, as streaming does.
    pub(super) async fn send_snapshot_row(
        &mut self,
        change: &RowChange,
        offset: &SourceOffset,
    ) -> Result<(), Error> {
        self.before_snapshot_record().await?;
        self.send_change(change, None).await?;
        self.after_snapshot_record(offset).await
    }

    /// As [`Self::send_snapshot_row`], for a run of snapshot reads of one table encoded
    /// elsewhere, sent through the producer's batch call.
    pub(super) async fn send_snapshot_records(
        &mut self,
        topic: &str,
        records: Vec<OwnedRecord>,
        offset: &SourceOffset,
    ) -> Result<(), Error> {
        if records.is_empty() {
            return Ok(());
        }
        self.before_snapshot_record().await?;
        let count = records.len() as u64;
        self.send_batch(topic, records).await?;
        self.metrics.events(Op::Read, count);
        // A run is hundreds of records: the clock is read after each.
        self.after_snapshot_records(offset, true).await
    }

    /// As [`Self::produce`] for records without headers, all to `topic`, in batches.
    async fn produce_batch(
        &mut self,
        topic: &str,
        mut records: Vec<OwnedRecord>,
    ) -> Result<(), Error> {
        self.open_transaction()?;
        let produce_error = |source| Error::Produce {
            topic: topic.to_owned(),
            source,
        };
        let handle =
            topic_handle(&self.producer, &mut self.last_topic, topic).map_err(produce_error)?;
        loop {
            self.producer
                .send_owned_batch(handle, &mut records)
                .map_err(produce_error)?;
            if records.is_empty() {
                return Ok(());
            }
            // The queue is full: librdkafka drains it within milliseconds.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn before_snapshot_record(&mut self) -> Result<(), Error> {
        if self
            .in_flight
            .as_ref()
            .is_some_and(|(handle, _)| handle.is_finished())
        {
            self.wait_for_commit().await?;
        }
        if self.kafka_txn.is_none() {
            self.kafka_txn = Some((Instant::now(), None));
        }
        Ok(())
    }

    async fn after_snapshot_record(&mut self, offset: &SourceOffset) -> Result<(), Error> {
        // The clock is read every so many records, not for each (a few ms apart at most).
        self.snapshot_records = self.snapshot_records.wrapping_add(1);
        let read_clock = self.snapshot_records.is_multiple_of(SNAPSHOT_CLOCK_EVERY);
        self.after_snapshot_records(offset, read_clock).await
    }

    /// After snapshot records: `offset` becomes the transaction's, which is committed when the
    /// transaction interval has passed (looked at only when `read_clock`).
    async fn after_snapshot_records(
        &mut self,
        offset: &SourceOffset,
        read_clock: bool,
    ) -> Result<(), Error> {
        if let Some((_, newest)) = &mut self.kafka_txn
            && newest.as_ref() != Some(offset)
        {
            *newest = Some(offset.clone());
        }
        if read_clock
            && Instant::now()
                >= self.commit_due_after(
                    self.config
                        .transaction_interval
                        .max(SNAPSHOT_TRANSACTION_MIN),
                )
        {
            self.commit().await?;
        }
        Ok(())
    }

    /// Starts committing the last snapshot transaction, whose offset is `offset` (it may hold
    /// no rows at all: an empty snapshot still records that it is complete).
    pub(super) async fn finish_snapshot(&mut self, offset: SourceOffset) -> Result<(), Error> {
        match &mut self.kafka_txn {
            Some((_, newest)) => *newest = Some(offset),
            None => self.kafka_txn = Some((Instant::now(), Some(offset))),
        }
        self.commit().await
    }

    /// Reads the kept slot from `from` until the marker message at `marker`, producing the
    /// deletes, truncates and messages of the transactions committed before the new snapshot's
    /// point `until`. False when shutdown came first.
    pub(super) async fn catch_up(
        &mut self,
        stream: ReplicationStream,
        from: Lsn,
        until: Lsn,
        marker: Lsn,
        shutdown: &CancellationToken,
    ) -> Result<bool, Error> {
        let snapshot_start = self.delivered;
        self.delivered = from;
        self.stream = Some(stream);
        self.catch_up = Some(CatchUp {
            until,
            marker,
            offset: SourceOffset {
                lsn: until.0,
                lsn_commit: None,
                tx_id: None,
                ts_usec: now_micros(),
                snapshot_completed: false,
            },
            done: false,
        });
        let result = self.run(shutdown.clone()).await;
        let done = self.catch_up.as_ref().is_some_and(|c| c.done);
        // Whatever the catch-up produced is committed with the snapshot's first transaction.
        self.catch_up = None;
        self.stream = None;
        self.delivered = snapshot_start;
        self.transaction = None;
        if done {
            // Streaming resumes on this slot after the snapshot, once its reader is gone.
            wait_until_slot_released(&self.sql, &self.config.slot_name).await?;
        }
        result.map(|()| done)
    }

    /// Where the snapshot reports its progress.
    pub(super) fn metrics(&self) -> &TaskMetrics {
        &self.metrics
    }

    /// Streaming begins: frames come from `stream`, commits confirm it.
    pub(super) fn attach_stream(&mut self, stream: ReplicationStream) {
        self.stream = Some(stream);
    }
}

async fn next_frame(
    stream: Option<&mut ReplicationStream>,
) -> Result<Option<bytes::Bytes>, super::replication::Error> {
    match stream {
        Some(stream) => stream.next_frame().await,
        // Only a task that streams runs its loop; without a stream there is nothing to read.
        None => std::future::pending().await,
    }
}

fn key_differs(schema: &TableSchema, before: &Row, after: &Row) -> bool {
    schema
        .key_columns()
        .any(|(index, _)| before.0.get(index) != after.0.get(index))
}

fn protocol(message: &str) -> Error {
    Error::Replication(super::replication::Error::Protocol(message.to_owned()))
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}
