//! The initial snapshot: every existing row of the captured tables as an `op=r` event, handed
//! over to streaming with no gap and no overlap.
//!
//! ```text
//!  replication connection:  BEGIN READ ONLY ISOLATION LEVEL REPEATABLE READ;
//!                           CREATE_REPLICATION_SLOT s LOGICAL pgoutput USE_SNAPSHOT  ─▶ consistent point
//!                           SELECT pg_export_snapshot()                              ─▶ snapshot name
//!  snapshot.max.threads SQL connections, each:
//!      BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '<name>'
//!      COPY (SELECT cols FROM ONLY t WHERE ctid >= '(a,0)' AND ctid < '(b,0)') TO STDOUT (FORMAT binary)
//!        └─ tuples ─▶ binary decoders (text: lines ─▶ unescape ─▶ pgoutput's) ─▶ rows ─┐ bounded channel
//!  this task: rows ─▶ op=r events ─▶ Kafka transactions (offset: consistent point,           │
//!             snapshot_completed=false) ◀──────────────────────────────────────────────────────┘
//!             last transaction: snapshot_completed=true
//!  replication connection: COMMIT; START_REPLICATION at the consistent point
//! ```
//!
//! The slot's snapshot holds exactly the transactions committed before its consistent point;
//! streaming from that point delivers exactly the ones after it. Large tables are split into
//! ctid block ranges (PostgreSQL 14+ scans those with a TID Range Scan) so that one table keeps
//! every thread busy; the first range is open below and the last open above, because the page
//! count is only a starting estimate.
//!
//! A table is copied in binary when every column's type has a binary decoding that yields
//! exactly what its text would (`types::decodes_binary`) and its SELECT is not an override:
//! the server spends less CPU writing binary integers, numerics and timestamps than printing
//! them, and reading them takes no parsing. Other tables are copied as text.
//!
//! Memory stays bounded whatever the table size: rows travel in batches of at most
//! `snapshot.fetch.size` rows through a channel of a few batches, and the producer's queue is
//! bounded as for streaming.
//!
//! A crash during the snapshot leaves offsets with `snapshot_completed: false` (or none). The next
//! start cannot resume the old exported snapshot (it ended with its transaction), so it takes a
//! fresh snapshot at a new consistent point: from a temporary slot while the existing slot is
//! kept and first read up to that point for the deletes the new snapshot cannot show (see
//! `StreamTask::catch_up`), or, without a usable slot, from a new slot. Readers may see some
//! `op=r` events twice; the newest event per key still equals the table.

use std::{
    collections::VecDeque,
    fmt::Write as _,
    ops::Range,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use tokio::{sync::mpsc, task::JoinSet};
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info};

use super::{
    Error,
    copy_format::{BinaryCopyReader, BinaryStep, CopyFormatError, split_copy_line},
    database::{self, SlotInfo, quote_identifier},
    encode::RecordEncoder,
    pgoutput::{Relation, RelationColumn, Tuple, TupleValue},
    relations::{CachedRelation, RelationCache},
    replication::{ReplicationConnection, SlotSnapshot},
    stream::StreamTask,
    types::{self, DecodeOptions},
};
use crate::{
    config::{PostgresSourceConfig, SnapshotMode},
    event::{Lsn, Op, ReplicaIdentity, Row, RowChange, SnapshotMarker, SourceInfo, TableId},
    kafka::{OwnedRecord, SourceOffset},
};

/// At most this many ctid ranges per table, however small `snapshot.chunk.rows` is.
pub const MAX_CHUNKS_PER_TABLE: u64 = 1024;

/// Rows per page assumed for a table the server has no statistics for yet (~160-byte rows).
const ASSUMED_ROWS_PER_PAGE: f64 = 50.0;

/// A batch is handed on when it holds this many bytes (encoded records, or COPY text for rows),
/// even if it has fewer than `snapshot.fetch.size` rows: wide rows must not make batches large.
/// Small enough that its records are still in the CPU's caches when librdkafka copies them
/// (at 4 MiB its copies waited on memory: 6 % more rows/s at 1 MiB, 256 KiB was slower again).
const BATCH_BYTES: usize = 1 << 20;

/// What the source does on start, from the mode and what is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPlan {
    /// Stream from the stored offset (or from a new slot's point).
    Stream,
    /// Take a fresh snapshot on a new slot point, then stream (or stop, for `initial_only`).
    Snapshot { reason: &'static str },
    /// `initial_only` with its snapshot done: nothing left to do.
    Nothing,
}

/// Decides between snapshot and streaming. `slot` is None when the slot does not exist, else
/// whether streaming can resume on it (the error says why not).
pub fn plan_start(
    mode: SnapshotMode,
    stored: Option<&SourceOffset>,
    slot: Option<Result<Lsn, Error>>,
) -> StartPlan {
    let completed = stored.is_some_and(|offset| offset.snapshot_completed);
    let missing = StartPlan::Snapshot {
        reason: if stored.is_none() {
            "no offsets are stored"
        } else {
            "the previous snapshot did not complete"
        },
    };
    match mode {
        SnapshotMode::NoData => StartPlan::Stream,
        SnapshotMode::Always => StartPlan::Snapshot {
            reason: "snapshot.mode=always",
        },
        SnapshotMode::Initial if completed => StartPlan::Stream,
        SnapshotMode::InitialOnly if completed => StartPlan::Nothing,
        SnapshotMode::Initial | SnapshotMode::InitialOnly => missing,
        SnapshotMode::WhenNeeded if !completed => missing,
        SnapshotMode::WhenNeeded => match slot {
            None => StartPlan::Snapshot {
                reason: "the replication slot is missing",
            },
            Some(Err(Error::SlotInvalidated { .. })) => StartPlan::Snapshot {
                reason: "the replication slot was invalidated",
            },
            Some(Err(Error::SlotOvertaken { .. })) => StartPlan::Snapshot {
                reason: "the replication slot is past the stored offset",
            },
            Some(_) => StartPlan::Stream,
        },
    }
}

/// Drops the connector's existing slot so a new one can export a snapshot at a new point.
/// Only a slot that is ours (pgoutput, this database) and idle is dropped.
pub async fn drop_slot_for_snapshot(
    sql: &Client,
    config: &PostgresSourceConfig,
    slot: &SlotInfo,
) -> Result<(), Error> {
    let name = &config.slot_name;
    if slot.plugin.as_deref() != Some("pgoutput")
        || slot.database.as_deref() != Some(config.dbname.as_str())
    {
        return Err(Error::SlotMismatch {
            slot: name.clone(),
            what: format!(
                "output plugin {:?} in database {:?}",
                slot.plugin.as_deref().unwrap_or("none"),
                slot.database.as_deref().unwrap_or("none")
            ),
        });
    }
    if let Some(pid) = slot.active_pid {
        return Err(Error::SlotInUse {
            slot: name.clone(),
            pid,
        });
    }
    sql.execute("SELECT pg_drop_replication_slot($1)", &[name])
        .await?;
    info!(slot = %name, confirmed_flush_lsn = ?slot.confirmed_flush_lsn.map(|l| l.to_string()), "dropped the replication slot to take a new snapshot");
    Ok(())
}

/// A slot's snapshot, exported from the open transaction of the replication connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedSnapshot {
    pub consistent_point: Lsn,
    /// For `SET TRANSACTION SNAPSHOT`; valid until the replication connection commits.
    pub name: String,
}

/// Creates the slot inside a REPEATABLE READ transaction of the replication connection and
/// exports that transaction's snapshot (pattern B: importers may attach at any time until
/// the transaction ends). The caller commits it once every copy is done.
pub async fn export(
    replication: &mut ReplicationConnection,
    slot_name: &str,
    temporary: bool,
) -> Result<ExportedSnapshot, Error> {
    replication
        .simple_query("BEGIN READ ONLY ISOLATION LEVEL REPEATABLE READ")
        .await?;
    let created = replication
        .create_slot(slot_name, temporary, SlotSnapshot::Use)
        .await?;
    let results = replication
        .simple_query("SELECT pg_export_snapshot()")
        .await?;
    let name = results
        .first()
        .and_then(|result| result.first("pg_export_snapshot"))
        .ok_or_else(|| Error::SnapshotWorker {
            reason: "pg_export_snapshot() returned no name".to_owned(),
        })?
        .to_owned();
    Ok(ExportedSnapshot {
        consistent_point: created.consistent_point,
        name,
    })
}

/// How a snapshot run ended (errors aside).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotOutcome {
    /// Every row is produced and the last transaction (with `snapshot_completed`) is committing.
    Completed,
    /// Shutdown was requested first.
    Stopped,
}

/// Progress of one table, updated as rows are produced.
#[derive(Debug)]
pub struct TableProgress {
    pub table: TableId,
    /// From `pg_class.reltuples`, scaled to the table's current size; None without statistics.
    pub estimated_rows: Option<u64>,
    pub chunks_total: usize,
    /// Copied in COPY's binary format (else text): every column has a binary decoding
    /// ([`types::decodes_binary`]) and the SELECT is not an override.
    pub copied_in_binary: bool,
    rows: AtomicU64,
    chunks_done: AtomicUsize,
    started: OnceLock<Instant>,
    finished: OnceLock<Duration>,
}

impl TableProgress {
    fn new(
        table: TableId,
        estimated_rows: Option<u64>,
        chunks_total: usize,
        copied_in_binary: bool,
    ) -> Self {
        Self {
            table,
            estimated_rows,
            chunks_total,
            copied_in_binary,
            rows: AtomicU64::new(0),
            chunks_done: AtomicUsize::new(0),
            started: OnceLock::new(),
            finished: OnceLock::new(),
        }
    }

    /// A copy of the numbers now.
    pub fn view(&self) -> TableProgressView {
        let rows_done = self.rows.load(Ordering::Relaxed);
        let elapsed = match (self.finished.get(), self.started.get()) {
            (Some(took), _) => *took,
            (None, Some(started)) => started.elapsed(),
            (None, None) => Duration::ZERO,
        };
        let rows_per_second = if elapsed.is_zero() {
            0.0
        } else {
            rows_done as f64 / elapsed.as_secs_f64()
        };
        let finished = self.finished.get().is_some();
        let eta = match self.estimated_rows {
            _ if finished => Some(Duration::ZERO),
            Some(total) if rows_per_second > 0.0 => Some(Duration::from_secs_f64(
                total.saturating_sub(rows_done) as f64 / rows_per_second,
            )),
            _ => None,
        };
        TableProgressView {
            table: self.table.clone(),
            rows_done,
            estimated_rows: self.estimated_rows,
            chunks_done: self.chunks_done.load(Ordering::Relaxed),
            chunks_total: self.chunks_total,
            copied_in_binary: self.copied_in_binary,
            rows_per_second,
            eta,
            finished,
        }
    }
}

/// One table's progress at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct TableProgressView {
    pub table: TableId,
    /// Rows handed to the producer so far.
    pub rows_done: u64,
    pub estimated_rows: Option<u64>,
    pub chunks_done: usize,
    pub chunks_total: usize,
    pub copied_in_binary: bool,
    pub rows_per_second: f64,
    /// Time left at the current rate; None while unknown.
    pub eta: Option<Duration>,
    pub finished: bool,
}

/// Snapshot progress for metrics: written by the source, read by whoever holds the `Arc`.
#[derive(Debug, Default)]
pub struct SnapshotProgress {
    tables: Mutex<Vec<Arc<TableProgress>>>,
    running: AtomicBool,
    completed: AtomicBool,
}

impl SnapshotProgress {
    /// Whether a snapshot is being read now.
    pub fn running(&self) -> bool {
        self.running.load(Ordering::Relaxed)
    }

    /// Whether the last snapshot this source took read every row.
    pub fn completed(&self) -> bool {
        self.completed.load(Ordering::Relaxed)
    }

    /// Every table of the current (or last) snapshot.
    pub fn tables(&self) -> Vec<TableProgressView> {
        self.lock().iter().map(|table| table.view()).collect()
    }

    fn begin(&self, tables: Vec<Arc<TableProgress>>) {
        *self.lock() = tables;
        self.completed.store(false, Ordering::Relaxed);
        self.running.store(true, Ordering::Relaxed);
    }

    fn end(&self, completed: bool) {
        self.running.store(false, Ordering::Relaxed);
        self.completed.store(completed, Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<TableProgress>>> {
        // The list is only ever replaced whole: a panic elsewhere cannot leave it half-written.
        self.tables
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A block range `[from, to)` of a table; None is open on that side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TidRange {
    pub from: Option<u64>,
    pub to: Option<u64>,
}

impl TidRange {
    pub const WHOLE: TidRange = TidRange {
        from: None,
        to: None,
    };

    /// The WHERE clause selecting this range (empty for the whole table).
    pub fn condition(&self) -> String {
        let mut parts = Vec::new();
        if let Some(from) = self.from {
            parts.push(format!("ctid >= '({from},0)'::tid"));
        }
        if let Some(to) = self.to {
            parts.push(format!("ctid < '({to},0)'::tid"));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", parts.join(" AND "))
        }
    }
}

/// Pages per chunk for about `chunk_rows` rows, from the table's statistics (or an assumed
/// row density when it has none).
pub fn pages_per_chunk(chunk_rows: u64, reltuples: f64, relpages: i64) -> u64 {
    let rows_per_page = if reltuples > 0.0 && relpages > 0 {
        reltuples / relpages as f64
    } else {
        ASSUMED_ROWS_PER_PAGE
    };
    ((chunk_rows as f64 / rows_per_page.max(1.0)).ceil() as u64).max(1)
}

/// Splits `pages` pages into ranges of `pages_per_chunk` (at most [`MAX_CHUNKS_PER_TABLE`]);
/// the first is open below and the last open above, so rows on pages added since the size was
/// read are still covered.
pub fn plan_chunks(pages: u64, pages_per_chunk: u64) -> Vec<TidRange> {
    let mut per_chunk = pages_per_chunk.max(1);
    if pages.div_ceil(per_chunk) > MAX_CHUNKS_PER_TABLE {
        per_chunk = pages.div_ceil(MAX_CHUNKS_PER_TABLE);
    }
    let count = pages.div_ceil(per_chunk);
    if count <= 1 {
        return vec![TidRange::WHOLE];
    }
    (0..count)
        .map(|i| TidRange {
            from: (i > 0).then_some(i * per_chunk),
            to: (i + 1 < count).then_some((i + 1) * per_chunk),
        })
        .collect()
}

/// One table to read.
#[derive(Debug)]
struct SnapshotTable {
    relation: CachedRelation,
    /// Columns the COPY returns, in table order (as pgoutput sends them).
    column_count: usize,
    /// `SELECT <columns> FROM [ONLY] <table>` or the configured override.
    select: String,
    /// The block ranges to copy, one COPY each (the whole table when it is not split).
    ranges: Vec<TidRange>,
    /// Where its events go.
    topic: String,
    progress: Arc<TableProgress>,
}

/// One COPY.
#[derive(Debug, Clone)]
struct ChunkJob {
    table: usize,
    index: usize,
    sql: String,
}

/// From a copying connection to the producing task.
#[derive(Debug)]
enum Message {
    Rows {
        table: usize,
        rows: Vec<SnapshotRecord>,
        read_at_micros: i64,
    },
    ChunkDone {
        table: usize,
        index: usize,
        rows: u64,
        worker: usize,
        took: Duration,
    },
}

/// Reads every captured table at the exported snapshot and produces its rows through `task`.
/// On `Completed` the last snapshot transaction (with `snapshot_completed: true`) has been
/// handed to the producer's commit; the caller then ends the exported snapshot and streams.
pub(super) async fn run(
    task: &mut StreamTask<'_>,
    config: &PostgresSourceConfig,
    exported: &ExportedSnapshot,
    progress: &SnapshotProgress,
    shutdown: &CancellationToken,
) -> Result<SnapshotOutcome, Error> {
    let started = Instant::now();
    let planner = import_snapshot(config, &exported.name).await?;
    let options = DecodeOptions {
        money_fraction_digits: config.money_fraction_digits,
    };
    let tables = plan_tables(&planner, config).await?;
    progress.begin(tables.iter().map(|t| Arc::clone(&t.progress)).collect());
    let jobs: VecDeque<ChunkJob> = tables
        .iter()
        .enumerate()
        .flat_map(|(table, t)| chunk_jobs(table, t))
        .collect();
    let chunks_total = jobs.len();
    let threads = config.snapshot.max_threads.min(chunks_total).max(1);
    info!(
        lsn = %exported.consistent_point,
        tables = tables.len(),
        chunks = chunks_total,
        threads,
        "snapshot started"
    );
    let tables: Arc<[SnapshotTable]> = tables.into();
    let shared = Arc::new(WorkerShared {
        config: config.clone(),
        tables: Arc::clone(&tables),
        queue: Mutex::new(jobs),
        fetch_size: config.snapshot.fetch_size,
        consistent_point: exported.consistent_point,
        options,
    });
    // A few batches in flight per thread: enough to keep the producer busy, bounded memory.
    let (sender, mut receiver) = mpsc::channel(threads * 2);
    let mut workers = JoinSet::new();
    let span = tracing::Span::current();
    workers.spawn(
        copy_chunks(0, planner, Arc::clone(&shared), sender.clone()).instrument(span.clone()),
    );
    for worker in 1..threads {
        let client = import_snapshot(config, &exported.name).await?;
        workers.spawn(
            copy_chunks(worker, client, Arc::clone(&shared), sender.clone())
                .instrument(span.clone()),
        );
    }
    drop(sender);

    let mut producer = SnapshotProducer {
        task,
        tables: &tables,
        offset: SourceOffset {
            lsn: exported.consistent_point.0,
            lsn_commit: None,
            tx_id: None,
            ts_usec: now_micros(),
            snapshot_completed: false,
        },
        held: (0..tables.len()).map(|_| None).collect(),
        started_tables: vec![false; tables.len()],
        chunks_done: vec![0; tables.len()],
        last_pending: None,
        produced: 0,
    };
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => {
                workers.abort_all();
                progress.end(false);
                info!("snapshot interrupted by shutdown; the next start takes a new one");
                return Ok(SnapshotOutcome::Stopped);
            }
            Some(joined) = workers.join_next() => {
                if let Err(error) = worker_result(joined) {
                    workers.abort_all();
                    progress.end(false);
                    return Err(error);
                }
            }
            message = receiver.recv() => match message {
                Some(message) => {
                    if let Err(error) = producer.handle(message).await {
                        workers.abort_all();
                        progress.end(false);
                        return Err(error);
                    }
                }
                None => break,
            }
        }
    }
    while let Some(joined) = workers.join_next().await {
        if let Err(error) = worker_result(joined) {
            progress.end(false);
            return Err(error);
        }
    }
    if let Some(table) =
        (0..tables.len()).find(|&t| producer.chunks_done[t] != tables[t].progress.chunks_total)
    {
        progress.end(false);
        return Err(Error::SnapshotWorker {
            reason: format!(
                "the copy of {} ended before all of its chunks were read",
                tables[table].relation.schema.id
            ),
        });
    }
    let rows = producer.finish().await?;
    progress.end(true);
    let took = started.elapsed();
    info!(
        rows,
        tables = tables.len(),
        took = ?took,
        rows_per_second = rate(rows, took),
        lsn = %exported.consistent_point,
        "snapshot read; committing its last transaction"
    );
    Ok(SnapshotOutcome::Completed)
}

fn worker_result(joined: Result<Result<(), Error>, tokio::task::JoinError>) -> Result<(), Error> {
    joined.map_err(|join| Error::SnapshotWorker {
        reason: join.to_string(),
    })?
}

/// Opens a SQL connection that reads at the exported snapshot, with the output settings the
/// text decoders expect (those pgoutput values are printed with).
async fn import_snapshot(config: &PostgresSourceConfig, name: &str) -> Result<Client, Error> {
    let client = database::connect(config).await?;
    client
        .batch_execute(&format!(
            "SET DateStyle = ISO; SET IntervalStyle = postgres; SET bytea_output = hex;
             SET statement_timeout = 0;
             BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;
             SET TRANSACTION SNAPSHOT '{}'",
            name.replace('\'', "''")
        ))
        .await?;
    Ok(client)
}

/// The captured tables in the snapshot, their schemas (built as from a Relation message, so
/// snapshot and stream events share them) and how to read them. Runs at the snapshot, so the
/// catalog matches the rows.
async fn plan_tables(
    client: &Client,
    config: &PostgresSourceConfig,
) -> Result<Vec<SnapshotTable>, Error> {
    let version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await?
        .get(0);
    let mut cache = RelationCache::default();
    let mut tables = Vec::new();
    for id in database::captured_tables(client, config).await? {
        if !config.snapshot.includes(&id) {
            continue;
        }
        let row = client
            .query_one(
                "SELECT c.oid, c.relkind::text, c.relreplident::text, c.reltuples::float8,
                        c.relpages::int8,
                        pg_relation_size(c.oid) / current_setting('block_size')::int8
                   FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE n.nspname = $1 AND c.relname = $2",
                &[&id.schema, &id.table],
            )
            .await?;
        let oid: u32 = row.get(0);
        let relkind: String = row.get(1);
        let replident: String = row.get(2);
        let reltuples: f64 = row.get(3);
        let relpages: i64 = row.get(4);
        let pages = u64::try_from(row.get::<_, i64>(5)).unwrap_or(0);
        let replica_identity = replident
            .bytes()
            .next()
            .and_then(ReplicaIdentity::from_code)
            .unwrap_or(ReplicaIdentity::Default);
        let relation = Relation {
            relation_id: oid,
            namespace: id.schema.clone(),
            name: id.table.clone(),
            replica_identity,
            columns: relation_columns(client, oid, replica_identity, version).await?,
        };
        let cached = cache
            .apply(client, &relation, &config.patterns)
            .await?
            .clone();
        let columns = relation
            .columns
            .iter()
            .map(|c| quote_identifier(&c.name))
            .collect::<Vec<_>>()
            .join(", ");
        let quoted = format!(
            "{}.{}",
            quote_identifier(&id.schema),
            quote_identifier(&id.table)
        );
        let override_select = config.snapshot.select_override(&id).map(str::to_owned);
        // ONLY: inheritance children are tables of their own. A partitioned table is read
        // through its root, which has no pages of its own to split.
        let only = if relkind == "r" { "ONLY " } else { "" };
        let own_select = override_select.is_none();
        let splittable = own_select && relkind == "r" && version >= 140_000;
        let select =
            override_select.unwrap_or_else(|| format!("SELECT {columns} FROM {only}{quoted}"));
        let ranges = if splittable {
            plan_chunks(
                pages,
                pages_per_chunk(config.snapshot.chunk_rows, reltuples, relpages),
            )
        } else {
            vec![TidRange::WHOLE]
        };
        let estimated_rows = (reltuples >= 0.0 && relpages > 0)
            .then(|| (reltuples / relpages as f64 * pages as f64).round() as u64)
            .or_else(|| (reltuples > 0.0).then_some(reltuples as u64));
        // The server writes binary for less CPU than text, and it needs no parsing here. An
        // override's columns are the user's, so its rows are read as text.
        let binary = own_select
            && cached
                .schema
                .columns
                .iter()
                .all(|column| types::decodes_binary(&column.pg_type));
        let progress = Arc::new(TableProgress::new(
            id.clone(),
            estimated_rows,
            ranges.len(),
            binary,
        ));
        tables.push(SnapshotTable {
            relation: cached,
            column_count: relation.columns.len(),
            select,
            ranges,
            topic: config.table_topic(&id),
            progress,
        });
    }
    Ok(tables)
}

/// The COPY statements of one table, one per chunk.
fn chunk_jobs(table: usize, t: &SnapshotTable) -> Vec<ChunkJob> {
    t.ranges
        .iter()
        .enumerate()
        .map(|(index, range)| ChunkJob {
            table,
            index,
            sql: format!(
                "COPY ({}{}) TO STDOUT{}",
                t.select,
                range.condition(),
                if t.progress.copied_in_binary {
                    " (FORMAT binary)"
                } else {
                    ""
                }
            ),
        })
        .collect()
}

/// The columns pgoutput would send for the table, in its order, flagged as its Relation
/// message flags them (the replica identity's columns).
async fn relation_columns(
    client: &Client,
    oid: u32,
    replica_identity: ReplicaIdentity,
    version: i32,
) -> Result<Vec<RelationColumn>, Error> {
    // pgoutput leaves generated columns out (PostgreSQL 12 added them).
    let generated = if version >= 120_000 {
        "AND a.attgenerated = ''"
    } else {
        ""
    };
    let rows = client
        .query(
            &format!(
                "SELECT a.attname::text, a.atttypid, a.atttypmod,
                        EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = a.attrelid
                                   AND i.indisprimary AND a.attnum = ANY(i.indkey)),
                        EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = a.attrelid
                                   AND i.indisreplident AND a.attnum = ANY(i.indkey))
                   FROM pg_attribute a
                  WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped {generated}
                  ORDER BY a.attnum"
            ),
            &[&oid],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| {
            let (in_primary_key, in_identity_index): (bool, bool) = (row.get(3), row.get(4));
            RelationColumn {
                part_of_key: match replica_identity {
                    ReplicaIdentity::Default => in_primary_key,
                    ReplicaIdentity::Index => in_identity_index,
                    ReplicaIdentity::Full => true,
                    ReplicaIdentity::Nothing => false,
                },
                name: row.get(0),
                type_oid: row.get(1),
                type_modifier: row.get(2),
            }
        })
        .collect())
}

/// What the copying connections share.
#[derive(Debug)]
struct WorkerShared {
    /// For each worker's encoders.
    config: PostgresSourceConfig,
    tables: Arc<[SnapshotTable]>,
    queue: Mutex<VecDeque<ChunkJob>>,
    fetch_size: usize,
    consistent_point: Lsn,
    options: DecodeOptions,
}

impl WorkerShared {
    fn next_job(&self) -> Option<ChunkJob> {
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop_front()
    }
}

/// One copying connection: takes chunks off the queue until none is left, sending rows in
/// batches. Ends quietly when the producing side has gone (it reports its own error).
async fn copy_chunks(
    worker: usize,
    client: Client,
    shared: Arc<WorkerShared>,
    sender: mpsc::Sender<Message>,
) -> Result<(), Error> {
    let mut records = RecordEncoder::new(&shared.config);
    while let Some(job) = shared.next_job() {
        let table = &shared.tables[job.table];
        if table.progress.started.set(Instant::now()).is_ok() {
            info!(
                table = %table.relation.schema.id,
                chunks = table.progress.chunks_total,
                estimated_rows = ?table.progress.estimated_rows,
                copy_format = if table.progress.copied_in_binary { "binary" } else { "text" },
                "snapshot of table started"
            );
        }
        debug!(table = %table.relation.schema.id, chunk = job.index, worker, "copying chunk");
        let started = Instant::now();
        // Avro: the table's schemas are registered (or found) before its rows are encoded.
        records
            .prepare(&table.relation.schema, &table.topic)
            .await?;
        let mut reader = ChunkReader {
            table,
            table_index: job.table,
            shared: &shared,
            records: &mut records,
            out: Vec::new(),
            fields: Vec::new(),
            batch: Vec::new(),
            batch_bytes: 0,
            read_at_micros: 0,
            pending: None,
            rows: 0,
            tuple_buffer: Vec::new(),
            binary: BinaryCopyReader::default(),
        };
        let stream = client.copy_out(job.sql.as_str()).await?;
        let mut stream = std::pin::pin!(stream);
        // The end of a piece that holds part of a row: the rest comes with the next piece.
        let mut carry: Vec<u8> = Vec::new();
        while let Some(data) = stream.next().await {
            let data = data?;
            if table.progress.copied_in_binary {
                reader.binary_piece(&data, &mut carry)?;
            } else {
                reader.text_piece(&data, &mut carry)?;
            }
            if reader.batch_full() && !reader.send(&sender).await {
                return Ok(());
            }
        }
        reader.end_of_copy(&carry)?;
        if !reader.batch.is_empty() && !reader.send(&sender).await {
            return Ok(());
        }
        let done = Message::ChunkDone {
            table: job.table,
            index: job.index,
            rows: reader.rows,
            worker,
            took: started.elapsed(),
        };
        if sender.send(done).await.is_err() {
            return Ok(());
        }
    }
    client.batch_execute("COMMIT").await?;
    Ok(())
}

/// Turns COPY lines of one chunk into records, batch by batch.
struct ChunkReader<'a> {
    table: &'a SnapshotTable,
    table_index: usize,
    shared: &'a WorkerShared,
    records: &'a mut RecordEncoder,
    out: Vec<u8>,
    fields: Vec<Option<Range<usize>>>,
    batch: Vec<SnapshotRecord>,
    batch_bytes: usize,
    /// When the batch's first row was read: `source.ts_ms` of its events.
    read_at_micros: i64,
    /// The newest row: whether it is the chunk's last is known only at the next line.
    pending: Option<Row>,
    rows: u64,
    /// The allocation of the last line's tuple, kept for the next (see [`recycle`]).
    tuple_buffer: Vec<TupleValue<'static>>,
    /// Where a binary COPY stands (header, tuples, end).
    binary: BinaryCopyReader,
}

/// An emptied vector of borrowed values with its allocation kept, free to borrow anew: a row's
/// tuple lives for one line, and allocating it each time showed in snapshot profiles. (Mapping
/// an empty vector's iterator to a same-sized type collects in place.)
fn recycle<'b>(mut values: Vec<TupleValue<'_>>) -> Vec<TupleValue<'b>> {
    values.clear();
    values.into_iter().map(|_| TupleValue::Null).collect()
}

impl ChunkReader<'_> {
    /// Reads the whole lines of a piece of COPY text; a line's start left in `carry` by the
    /// piece before is completed first, and this piece's unfinished line is left there.
    fn text_piece(&mut self, data: &[u8], carry: &mut Vec<u8>) -> Result<(), Error> {
        let mut rest = data;
        if !carry.is_empty() {
            let Some(end) = memchr::memchr(b'\n', rest) else {
                carry.extend_from_slice(rest);
                return Ok(());
            };
            carry.extend_from_slice(&rest[..end]);
            self.line(carry)?;
            carry.clear();
            rest = &rest[end + 1..];
        }
        while let Some(end) = memchr::memchr(b'\n', rest) {
            self.line(&rest[..end])?;
            rest = &rest[end + 1..];
        }
        carry.extend_from_slice(rest);
        Ok(())
    }

    /// [`Self::text_piece`] for binary COPY. The server sends a row per piece, so `carry` is
    /// rarely used.
    fn binary_piece(&mut self, data: &[u8], carry: &mut Vec<u8>) -> Result<(), Error> {
        if carry.is_empty() {
            let read = self.binary_tuples(data)?;
            carry.extend_from_slice(&data[read..]);
        } else {
            carry.extend_from_slice(data);
            let read = self.binary_tuples(carry)?;
            carry.drain(..read);
        }
        Ok(())
    }

    /// Reads the tuples at the start of `input`; returns how many bytes they took.
    fn binary_tuples(&mut self, input: &[u8]) -> Result<usize, Error> {
        let mut at = 0;
        loop {
            let step = self
                .binary
                .next(&input[at..], &mut self.fields)
                .map_err(|e| self.malformed(e))?;
            match step {
                BinaryStep::Tuple(length) => {
                    self.tuple(&input[at..at + length], TupleValue::Binary)?;
                    at += length;
                }
                BinaryStep::Header(length) => at += length,
                BinaryStep::End(length) => return Ok(at + length),
                BinaryStep::NeedMore => return Ok(at),
            }
        }
    }

    /// After the last piece: nothing may be left half read; the last row is handed on.
    fn end_of_copy(&mut self, carry: &[u8]) -> Result<(), Error> {
        if !carry.is_empty() || (self.table.progress.copied_in_binary && !self.binary.ended()) {
            return Err(Error::SnapshotRow {
                table: self.table.relation.schema.id.to_string(),
                reason: "COPY ended in the middle of a row".to_owned(),
            });
        }
        self.end_of_chunk();
        Ok(())
    }

    fn line(&mut self, line: &[u8]) -> Result<(), Error> {
        // Taken out for the call: the fields may be slices of it.
        let mut unescaped = std::mem::take(&mut self.out);
        let result = match split_copy_line(line, &mut unescaped, &mut self.fields) {
            Ok(bytes) => self.tuple(bytes, TupleValue::Text),
            Err(e) => Err(self.malformed(e)),
        };
        self.out = unescaped;
        result
    }

    fn malformed(&self, error: CopyFormatError) -> Error {
        Error::SnapshotRow {
            table: self.table.relation.schema.id.to_string(),
            reason: format!("malformed COPY data: {error}"),
        }
    }

    /// One row, its fields in `self.fields` as ranges of `bytes`, each in the form `form`.
    fn tuple<'b>(
        &mut self,
        bytes: &'b [u8],
        form: fn(&'b [u8]) -> TupleValue<'b>,
    ) -> Result<(), Error> {
        if self.fields.len() != self.table.column_count {
            return Err(Error::SnapshotRow {
                table: self.table.relation.schema.id.to_string(),
                reason: format!(
                    "a row has {} columns where the table has {} (a snapshot.select.statement.overrides SELECT must return the table's columns in table order)",
                    self.fields.len(),
                    self.table.column_count
                ),
            });
        }
        let mut values = recycle(std::mem::take(&mut self.tuple_buffer));
        values.extend(self.fields.iter().map(|field| match field {
            None => TupleValue::Null,
            Some(range) => form(&bytes[range.clone()]),
        }));
        let tuple = Tuple(values);
        let row =
            self.table
                .relation
                .row(&tuple, self.shared.consistent_point, &self.shared.options)?;
        self.tuple_buffer = recycle(tuple.0);
        if self.batch.is_empty() {
            self.read_at_micros = now_micros();
        }
        if let Some(previous) = self.pending.replace(row) {
            let record = if self.rows == 1 {
                // The chunk's first row: the producer decides its marker.
                SnapshotRecord::Row(previous)
            } else {
                self.encode(previous)?
            };
            // Encoded records are what the batch holds: count their bytes (a few times the
            // COPY data), so the memory bound holds whatever the converter.
            self.batch_bytes += match &record {
                SnapshotRecord::Row(_) => bytes.len(),
                SnapshotRecord::Encoded(record) => record.len(),
            };
            self.batch.push(record);
        }
        self.rows += 1;
        Ok(())
    }

    /// The chunk's last row goes to the producer as a row: its marker depends on what follows.
    fn end_of_chunk(&mut self) {
        if let Some(last) = self.pending.take() {
            if self.batch.is_empty() {
                self.read_at_micros = now_micros();
            }
            self.batch.push(SnapshotRecord::Row(last));
        }
    }

    /// A row between the chunk's first and last: `snapshot: true`, encoded here.
    fn encode(&mut self, row: Row) -> Result<SnapshotRecord, Error> {
        let lsn = self.shared.consistent_point;
        let change = RowChange {
            table: Arc::clone(&self.table.relation.schema),
            op: Op::Read,
            before: None,
            after: Some(row),
            source: SourceInfo {
                lsn,
                sequence: (None, Some(lsn)),
                tx_id: None,
                ts_micros: self.read_at_micros,
                snapshot: SnapshotMarker::Yes,
            },
        };
        // Processed when its batch was read: one clock reading per batch, not per row.
        let record = self.records.record(&change, self.read_at_micros, None)?;
        Ok(SnapshotRecord::Encoded(record))
    }

    fn batch_full(&self) -> bool {
        self.batch.len() >= self.shared.fetch_size || self.batch_bytes >= BATCH_BYTES
    }

    /// Hands the batch on; false when nobody receives any more.
    async fn send(&mut self, sender: &mpsc::Sender<Message>) -> bool {
        self.batch_bytes = 0;
        // Sized as the batch it follows: grown from empty, it was copied a dozen times.
        let next = Vec::with_capacity(self.batch.len());
        let rows = std::mem::replace(&mut self.batch, next);
        sender
            .send(Message::Rows {
                table: self.table_index,
                rows,
                read_at_micros: self.read_at_micros,
            })
            .await
            .is_ok()
    }
}

/// A row of a chunk as the copying worker hands it on. Only the first and the last row of a
/// chunk can be a table's (or the snapshot's) first or last, so only they wait for the producer
/// to choose their marker; the rows between are `snapshot: true` and encoded by the worker, so
/// the encoding runs on every thread.
#[derive(Debug)]
enum SnapshotRecord {
    Row(Row),
    Encoded(OwnedRecord),
}

/// A row whose `source.snapshot` marker waits on what comes after it.
#[derive(Debug)]
struct HeldRow {
    table: usize,
    row: Row,
    read_at_micros: i64,
    first_in_table: bool,
}

/// The producing side: rows become `op=r` events with Debezium's markers. Each table's newest
/// row is held back until the next row of that table (it was not the last) or the end of the
/// table (it was); the end of the last table to finish is held until everything is read, so the
/// very last event can say `last`.
struct SnapshotProducer<'t, 'a> {
    task: &'t mut StreamTask<'a>,
    tables: &'t [SnapshotTable],
    offset: SourceOffset,
    /// Per table index: every record passes here, so no hashing.
    held: Vec<Option<HeldRow>>,
    started_tables: Vec<bool>,
    chunks_done: Vec<usize>,
    last_pending: Option<HeldRow>,
    produced: u64,
}

impl SnapshotProducer<'_, '_> {
    async fn handle(&mut self, message: Message) -> Result<(), Error> {
        match message {
            Message::Rows {
                table,
                rows,
                read_at_micros,
            } => {
                self.tables[table]
                    .progress
                    .rows
                    .fetch_add(rows.len() as u64, Ordering::Relaxed);
                // The encoded records between two rows go to the producer as one run.
                let mut run = Vec::with_capacity(rows.len());
                for record in rows {
                    let row = match record {
                        SnapshotRecord::Encoded(record) => {
                            // Never a table's first row: that is a chunk's first, sent as a row.
                            if run.is_empty()
                                && let Some(previous) = self.held[table].take()
                            {
                                self.emit(previous, false, false).await?;
                            }
                            run.push(record);
                            continue;
                        }
                        SnapshotRecord::Row(row) => row,
                    };
                    self.send_run(table, &mut run).await?;
                    let first_in_table = !std::mem::replace(&mut self.started_tables[table], true);
                    let next = HeldRow {
                        table,
                        row,
                        read_at_micros,
                        first_in_table,
                    };
                    if let Some(previous) = self.held[table].replace(next) {
                        self.emit(previous, false, false).await?;
                    }
                }
                self.send_run(table, &mut run).await?;
            }
            Message::ChunkDone {
                table,
                index,
                rows,
                worker,
                took,
            } => {
                self.chunks_done[table] += 1;
                let progress = &self.tables[table].progress;
                progress.chunks_done.fetch_add(1, Ordering::Relaxed);
                let table_done = self.chunks_done[table] == progress.chunks_total;
                if table_done {
                    let _ = progress.finished.set(
                        progress
                            .started
                            .get()
                            .map_or(Duration::ZERO, Instant::elapsed),
                    );
                }
                let view = progress.view();
                self.task.metrics().snapshot_progress(
                    &view.table.to_string(),
                    view.rows_done,
                    view.estimated_rows,
                    view.chunks_done,
                    view.chunks_total,
                );
                info!(
                    table = %view.table,
                    chunk = %format_args!("{}/{}", index + 1, view.chunks_total),
                    chunks_done = view.chunks_done,
                    worker,
                    chunk_rows = rows,
                    chunk_rows_per_second = rate(rows, took),
                    rows_done = view.rows_done,
                    estimated_rows = ?view.estimated_rows,
                    rows_per_second = view.rows_per_second.round() as u64,
                    eta = %format_eta(view.eta),
                    "snapshot chunk done"
                );
                if table_done {
                    info!(
                        table = %view.table,
                        rows = view.rows_done,
                        rows_per_second = view.rows_per_second.round() as u64,
                        "snapshot of table done"
                    );
                    if let Some(last) = self.held[table].take()
                        && let Some(previous) = self.last_pending.replace(last)
                    {
                        self.emit(previous, true, false).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Produces a run of encoded records of `table`, leaving `run` empty.
    async fn send_run(&mut self, table: usize, run: &mut Vec<OwnedRecord>) -> Result<(), Error> {
        if run.is_empty() {
            return Ok(());
        }
        let records = std::mem::take(run);
        self.produced += records.len() as u64;
        self.task
            .send_snapshot_records(&self.tables[table].topic, records, &self.offset)
            .await
    }

    /// Produces the held-back last row and commits the last snapshot transaction, which
    /// records the snapshot as complete. Returns how many rows were produced.
    async fn finish(mut self) -> Result<u64, Error> {
        // Every table is done, so nothing else is held; table order, for determinism.
        let rest: Vec<HeldRow> = self.held.iter_mut().filter_map(Option::take).collect();
        for row in rest {
            self.emit(row, true, false).await?;
        }
        if let Some(last) = self.last_pending.take() {
            self.emit(last, true, true).await?;
        }
        let offset = SourceOffset {
            snapshot_completed: true,
            ts_usec: now_micros(),
            ..self.offset.clone()
        };
        self.task.finish_snapshot(offset).await?;
        Ok(self.produced)
    }

    async fn emit(&mut self, held: HeldRow, last_in_table: bool, last: bool) -> Result<(), Error> {
        // Debezium's precedence: first, last, first_in_data_collection, last_in_data_collection.
        let marker = if self.produced == 0 {
            SnapshotMarker::First
        } else if last {
            SnapshotMarker::Last
        } else if held.first_in_table {
            SnapshotMarker::FirstInDataCollection
        } else if last_in_table {
            SnapshotMarker::LastInDataCollection
        } else {
            SnapshotMarker::Yes
        };
        let lsn = Lsn(self.offset.lsn);
        let change = RowChange {
            table: Arc::clone(&self.tables[held.table].relation.schema),
            op: Op::Read,
            before: None,
            after: Some(held.row),
            source: SourceInfo {
                lsn,
                sequence: (None, Some(lsn)),
                tx_id: None,
                ts_micros: held.read_at_micros,
                snapshot: marker,
            },
        };
        self.task.send_snapshot_row(&change, &self.offset).await?;
        self.produced += 1;
        Ok(())
    }
}

fn rate(rows: u64, took: Duration) -> u64 {
    if took.is_zero() {
        return 0;
    }
    (rows as f64 / took.as_secs_f64()).round() as u64
}

fn format_eta(eta: Option<Duration>) -> String {
    match eta {
        None => "unknown".to_owned(),
        Some(eta) => {
            let secs = eta.as_secs();
            let mut text = String::new();
            if secs >= 3600 {
                let _ = write!(text, "{}h", secs / 3600);
            }
            if secs >= 60 {
                let _ = write!(text, "{}m", secs % 3600 / 60);
            }
            let _ = write!(text, "{}s", secs % 60);
            text
        }
    }
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recycled_tuple_keeps_its_allocation() {
        let line = b"1\tabc".to_vec();
        let mut values: Vec<TupleValue<'_>> = Vec::with_capacity(16);
        values.extend([TupleValue::Text(&line[..1]), TupleValue::Null]);
        let pointer = values.as_ptr().cast::<u8>();
        let recycled: Vec<TupleValue<'static>> = recycle(values);
        assert!(recycled.is_empty());
        assert!(recycled.capacity() >= 16, "{}", recycled.capacity());
        assert_eq!(recycled.as_ptr().cast::<u8>(), pointer);
    }

    #[test]
    fn chunk_ranges_cover_every_page_open_at_both_ends() {
        assert_eq!(plan_chunks(0, 10), [TidRange::WHOLE]);
        assert_eq!(plan_chunks(10, 10), [TidRange::WHOLE]);
        assert_eq!(plan_chunks(5, 1000), [TidRange::WHOLE]);
        assert_eq!(
            plan_chunks(25, 10),
            [
                TidRange {
                    from: None,
                    to: Some(10)
                },
                TidRange {
                    from: Some(10),
                    to: Some(20)
                },
                TidRange {
                    from: Some(20),
                    to: None
                },
            ]
        );
        // Adjacent: each range starts where the previous ended.
        let ranges = plan_chunks(1_000, 7);
        assert_eq!(ranges.len(), 143);
        for pair in ranges.windows(2) {
            assert_eq!(pair[0].to, pair[1].from);
        }
        // Capped: a tiny chunk size on a huge table still gives at most 1024 ranges.
        let ranges = plan_chunks(10_000_000, 1);
        assert_eq!(ranges.len() as u64, MAX_CHUNKS_PER_TABLE);
        assert_eq!(ranges[0].from, None);
        assert_eq!(ranges.last().expect("ranges").to, None);
    }

    #[test]
    fn range_conditions() {
        assert_eq!(TidRange::WHOLE.condition(), "");
        assert_eq!(
            TidRange {
                from: None,
                to: Some(8)
            }
            .condition(),
            " WHERE ctid < '(8,0)'::tid"
        );
        assert_eq!(
            TidRange {
                from: Some(8),
                to: Some(16)
            }
            .condition(),
            " WHERE ctid >= '(8,0)'::tid AND ctid < '(16,0)'::tid"
        );
        assert_eq!(
            TidRange {
                from: Some(16),
                to: None
            }
            .condition(),
            " WHERE ctid >= '(16,0)'::tid"
        );
    }

    #[test]
    fn chunk_size_from_statistics() {
        // 100 rows per page: 250k rows are 2,500 pages.
        assert_eq!(pages_per_chunk(250_000, 1_000_000.0, 10_000), 2_500);
        // No statistics (never analyzed: reltuples -1, relpages 0): 50 rows per page assumed.
        assert_eq!(pages_per_chunk(1_000, -1.0, 0), 20);
        // Huge rows (less than one per page) still give at least a page per chunk per row.
        assert_eq!(pages_per_chunk(10, 10.0, 100), 10);
        assert_eq!(pages_per_chunk(1, 1_000.0, 1), 1);
    }

    fn offset(snapshot_completed: bool) -> SourceOffset {
        SourceOffset {
            lsn: 100,
            lsn_commit: None,
            tx_id: None,
            ts_usec: 0,
            snapshot_completed,
        }
    }

    #[test]
    fn start_plan_per_mode() {
        use SnapshotMode::*;
        let done = offset(true);
        let partial = offset(false);
        let ok = || Some(Ok(Lsn(100)));
        let snapshot = |plan| matches!(plan, StartPlan::Snapshot { .. });

        assert_eq!(plan_start(NoData, None, None), StartPlan::Stream);
        assert_eq!(plan_start(NoData, Some(&partial), ok()), StartPlan::Stream);

        assert!(snapshot(plan_start(Initial, None, None)));
        assert!(snapshot(plan_start(Initial, None, ok())));
        assert!(snapshot(plan_start(Initial, Some(&partial), ok())));
        assert_eq!(plan_start(Initial, Some(&done), ok()), StartPlan::Stream);
        // A missing slot with a finished snapshot is an error for the stream to report.
        assert_eq!(plan_start(Initial, Some(&done), None), StartPlan::Stream);

        assert!(snapshot(plan_start(Always, Some(&done), ok())));
        assert!(snapshot(plan_start(Always, None, None)));

        assert!(snapshot(plan_start(InitialOnly, None, None)));
        assert!(snapshot(plan_start(InitialOnly, Some(&partial), None)));
        assert_eq!(
            plan_start(InitialOnly, Some(&done), None),
            StartPlan::Nothing
        );

        assert!(snapshot(plan_start(WhenNeeded, None, None)));
        assert!(snapshot(plan_start(WhenNeeded, Some(&partial), ok())));
        assert_eq!(plan_start(WhenNeeded, Some(&done), ok()), StartPlan::Stream);
        assert!(snapshot(plan_start(WhenNeeded, Some(&done), None)));
        let lost = Some(Err(Error::SlotInvalidated { slot: "s".into() }));
        assert!(snapshot(plan_start(WhenNeeded, Some(&done), lost)));
        let overtaken = Some(Err(Error::SlotOvertaken {
            slot: "s".into(),
            slot_lsn: Lsn(200),
            stored: Lsn(100),
        }));
        assert!(snapshot(plan_start(WhenNeeded, Some(&done), overtaken)));
        // Someone else's slot or one in use is not a reason to re-snapshot.
        let in_use = Some(Err(Error::SlotInUse {
            slot: "s".into(),
            pid: 7,
        }));
        assert_eq!(
            plan_start(WhenNeeded, Some(&done), in_use),
            StartPlan::Stream
        );
    }

    #[test]
    fn progress_rates_and_eta() {
        let progress = TableProgress::new(TableId::new("public", "t"), Some(1_000), 4, true);
        let view = progress.view();
        assert_eq!((view.rows_done, view.eta, view.finished), (0, None, false));
        let _ = progress
            .started
            .set(Instant::now() - Duration::from_secs(2));
        progress.rows.store(500, Ordering::Relaxed);
        progress.chunks_done.store(2, Ordering::Relaxed);
        let view = progress.view();
        assert_eq!((view.chunks_done, view.chunks_total), (2, 4));
        assert!((200.0..=260.0).contains(&view.rows_per_second), "{view:?}");
        let eta = view.eta.expect("eta").as_secs_f64();
        assert!((1.5..=2.6).contains(&eta), "{view:?}");
        let _ = progress.finished.set(Duration::from_secs(4));
        let view = progress.view();
        assert!(view.finished);
        assert_eq!(view.eta, Some(Duration::ZERO));
        assert_eq!(view.rows_per_second, 125.0);
        assert_eq!(format_eta(Some(Duration::from_secs(3_725))), "1h2m5s");
        assert_eq!(format_eta(Some(Duration::from_secs(42))), "42s");
    }
}
