//! The window stage's side of the target database: the result table, the stage's state, and
//! the one transaction per commit that writes results, state, partition clocks, the watermark
//! and the consumed offsets together (after checking the generation, so a stale instance
//! cannot commit).
//!
//! State tables (created when missing, keyed by connector):
//! - `tributary_window_state`: the state log. Each commit appends what changed (cells stored
//!   or removed, row images stored or removed) as binary chunks; on start they are replayed
//!   in order. When the log holds several times more entries than the live state, a commit
//!   writes the whole state instead and deletes the older chunks (compaction). One appended
//!   value per commit rather than an upsert per cell and row: the upserts were most of the
//!   database's work.
//! - `tributary_window_partitions`: each partition's largest event time and snapshot flag.
//! - `tributary_window_watermarks`: the watermark.
//!
//! Offsets live in the sink's `tributary_offsets`, the generation in `tributary_sink_generations`.

use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tokio::time::Instant;
use tokio_postgres::{Client, Transaction, types::ToSql};
use tracing::warn;

use super::{
    Error,
    aggregate::{AggregateFn, Value},
    config::WindowAggregateConfig,
    engine::{CommitDelta, Engine, ResultRow},
    state_codec::StateLog,
    time::Micros,
    watermark::{PartitionId, WatermarkTracker},
};
use crate::{
    sink::postgres::{
        connection::connect_to,
        writer::{check_generation, load_offsets, store_offsets},
    },
    source::postgres::database::quote_identifier,
};

/// Creates the state tables when missing.
pub async fn ensure_state_tables(client: &Client) -> Result<(), Error> {
    crate::sink::postgres::writer::ensure_state_tables(client).await?;
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS public.tributary_window_state (
                 connector text NOT NULL,
                 seq bigint NOT NULL,
                 entries bigint NOT NULL,
                 chunk bytea NOT NULL,
                 PRIMARY KEY (connector, seq));
             CREATE TABLE IF NOT EXISTS public.tributary_window_partitions (
                 connector text NOT NULL,
                 topic text NOT NULL,
                 partition integer NOT NULL,
                 max_event_time bigint,
                 in_snapshot boolean NOT NULL,
                 PRIMARY KEY (connector, topic, partition));
             CREATE TABLE IF NOT EXISTS public.tributary_window_watermarks (
                 connector text PRIMARY KEY,
                 watermark bigint);",
        )
        .await
        .map_err(Error::database("creating the window state tables"))?;
    // Chunks are binary and written once: compressing them costs CPU for little.
    let compressed: bool = client
        .query_one(
            "SELECT attstorage <> 'e' FROM pg_attribute
              WHERE attrelid = 'public.tributary_window_state'::regclass AND attname = 'chunk'",
            &[],
        )
        .await
        .map_err(Error::database("reading tributary_window_state's storage"))?
        .get(0);
    if compressed {
        client
            .batch_execute(
                "ALTER TABLE public.tributary_window_state ALTER COLUMN chunk SET STORAGE EXTERNAL",
            )
            .await
            .map_err(Error::database("setting tributary_window_state's storage"))?;
    }
    Ok(())
}

/// How much a restart would replay of the state log, to decide when to compact it.
#[derive(Debug, Default, Clone, Copy)]
pub struct StateLogSize {
    /// Entries in the stored log.
    pub entries: u64,
    /// The sequence number of the last chunk.
    pub last_seq: i64,
}

impl StateLogSize {
    /// Whether the next commit should write the whole state instead of its changes: when the
    /// log holds more than three entries per live cell or row image (and is not small),
    /// replaying it costs more than rewriting it, and the rewrite is paid for by the three
    /// times as many entries appended before it.
    pub fn wants_compaction(&self, live: u64) -> bool {
        self.entries > 100_000 && self.entries > 3 * live
    }
}

/// Restores the engine and the watermark from the stored state; returns the stored offsets and
/// the size of the state log.
pub async fn load(
    client: &Client,
    connector: &str,
    engine: &mut Engine,
    tracker: &mut WatermarkTracker,
) -> Result<(HashMap<PartitionId, i64>, StateLogSize), Error> {
    let state_error = |message: String| Error::State {
        connector: connector.to_owned(),
        message,
    };
    let watermark: Option<Micros> = client
        .query_opt(
            "SELECT watermark FROM public.tributary_window_watermarks WHERE connector = $1",
            &[&connector],
        )
        .await
        .map_err(Error::database("reading tributary_window_watermarks"))?
        .and_then(|row| row.get(0));
    let partitions = client
        .query(
            "SELECT topic, partition, max_event_time, in_snapshot
               FROM public.tributary_window_partitions WHERE connector = $1",
            &[&connector],
        )
        .await
        .map_err(Error::database("reading tributary_window_partitions"))?;
    tracker.restore(
        watermark,
        partitions
            .iter()
            .map(|row| ((row.get(0), row.get(1)), row.get(2), row.get(3))),
        Instant::now(),
    );
    engine.set_watermark(watermark);
    let chunks = client
        .query(
            "SELECT seq, chunk FROM public.tributary_window_state WHERE connector = $1 ORDER BY seq",
            &[&connector],
        )
        .await
        .map_err(Error::database("reading tributary_window_state"))?;
    let mut log = StateLogSize::default();
    for row in &chunks {
        let seq: i64 = row.get(0);
        let chunk: &[u8] = row.get(1);
        log.entries += engine
            .replay(chunk)
            .map_err(|m| state_error(format!("state chunk {seq}: {m}")))?;
        log.last_seq = seq;
    }
    let offsets = load_offsets(client, connector).await?;
    Ok((offsets, log))
}

/// The result table and the statements that write it.
#[derive(Debug)]
pub struct ResultTable {
    /// Quoted and qualified.
    table: String,
    schema: String,
    name: String,
    group_columns: Vec<String>,
    aggregates: Vec<(String, AggregateFn, Option<String>)>,
    /// Column types (group columns, then aggregates), once the table is known.
    types: Option<Vec<String>>,
    /// Rows no commit wrote yet are plainly inserted; off once one of them was there after
    /// all (a result table written by someone else too).
    plain_inserts: bool,
    /// A plain insert of new rows met an existing one in the current attempt.
    new_rows_conflicted: bool,
}

const EPOCH_PLUS: &str = "timestamptz 'epoch' + interval '1 microsecond' *";

impl ResultTable {
    pub fn new(config: &WindowAggregateConfig) -> Self {
        Self {
            table: format!(
                "{}.{}",
                quote_identifier(&config.table_schema),
                quote_identifier(&config.table_name)
            ),
            schema: config.table_schema.clone(),
            name: config.table_name.clone(),
            group_columns: config.group_by.clone(),
            aggregates: config
                .aggregates
                .iter()
                .map(|a| (a.name.clone(), a.function, a.column.clone()))
                .collect(),
            types: None,
            plain_inserts: true,
            new_rows_conflicted: false,
        }
    }

    fn display(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// Reads the table's column types, creating the table first when it is missing (with
    /// types from the source schema, `known`, or the first row's values).
    async fn ensure(
        &mut self,
        transaction: &Transaction<'_>,
        known: &HashMap<String, String>,
        sample: Option<&ResultRow>,
    ) -> Result<Vec<String>, Error> {
        if let Some(types) = &self.types {
            return Ok(types.clone());
        }
        let columns = read_columns(transaction, &self.schema, &self.name).await?;
        let columns = if columns.is_empty() {
            let Some(sample) = sample else {
                // Nothing to write yet, nothing to create.
                return Ok(Vec::new());
            };
            self.create(transaction, known, sample).await?;
            read_columns(transaction, &self.schema, &self.name).await?
        } else {
            columns
        };
        let mut types = Vec::new();
        for name in self
            .group_columns
            .iter()
            .chain(self.aggregates.iter().map(|(name, _, _)| name))
        {
            let found = columns
                .iter()
                .find(|(column, _)| column == name)
                .map(|(_, t)| t.clone())
                .ok_or_else(|| Error::Table {
                    table: self.display(),
                    message: format!(
                        "has no column {name:?}; drop the table to have it created, or add the column"
                    ),
                })?;
            types.push(found);
        }
        self.types = Some(types.clone());
        Ok(types)
    }

    async fn create(
        &self,
        transaction: &Transaction<'_>,
        known: &HashMap<String, String>,
        sample: &super::engine::ResultRow,
    ) -> Result<(), Error> {
        let by_value = |value: Option<&Value>| match value {
            Some(Value::Int(_)) => "bigint",
            Some(Value::Num(_)) => "numeric",
            Some(Value::Bool(_)) => "boolean",
            _ => "text",
        };
        let mut definitions = Vec::new();
        for (index, column) in self.group_columns.iter().enumerate() {
            let kind = known
                .get(column)
                .cloned()
                .unwrap_or_else(|| by_value(sample.group.get(index)).to_owned());
            definitions.push(format!("{} {kind} NOT NULL", quote_identifier(column)));
        }
        definitions.push("window_start timestamptz NOT NULL".to_owned());
        definitions.push("window_end timestamptz NOT NULL".to_owned());
        for (index, (name, function, column)) in self.aggregates.iter().enumerate() {
            let kind = match function {
                AggregateFn::CountRows | AggregateFn::Count | AggregateFn::CountDistinct => {
                    "bigint".to_owned()
                }
                AggregateFn::Sum | AggregateFn::Avg => "numeric".to_owned(),
                AggregateFn::Min | AggregateFn::Max => column
                    .as_ref()
                    .and_then(|c| known.get(c).cloned())
                    .unwrap_or_else(|| by_value(sample.values.get(index)).to_owned()),
            };
            definitions.push(format!("{} {kind}", quote_identifier(name)));
        }
        definitions.push("_final boolean NOT NULL".to_owned());
        definitions.push("_updated_at timestamptz NOT NULL".to_owned());
        let key: Vec<String> = self
            .group_columns
            .iter()
            .map(|c| quote_identifier(c))
            .chain(["window_start".to_owned(), "window_end".to_owned()])
            .collect();
        let sql = format!(
            "CREATE SCHEMA IF NOT EXISTS {schema};
             CREATE TABLE IF NOT EXISTS {table} ({columns}, PRIMARY KEY ({key}))",
            schema = quote_identifier(&self.schema),
            table = self.table,
            columns = definitions.join(", "),
            key = key.join(", "),
        );
        transaction
            .batch_execute(&sql)
            .await
            .map_err(Error::database(format!(
                "creating result table {}",
                self.display()
            )))
    }

    /// Forgets the column types (after a rolled-back transaction that may have created it).
    pub fn forget(&mut self) {
        self.types = None;
    }

    async fn write(
        &mut self,
        transaction: &Transaction<'_>,
        delta: &CommitDelta,
        known: &HashMap<String, String>,
    ) -> Result<(), Error> {
        if delta.upserts.is_empty() && delta.deletes.is_empty() {
            return Ok(());
        }
        let types = self
            .ensure(transaction, known, delta.upserts.first())
            .await?;
        if types.is_empty() {
            return Ok(());
        }
        let groups = self.group_columns.len();
        let quoted_groups: Vec<String> = self
            .group_columns
            .iter()
            .map(|c| quote_identifier(c))
            .collect();
        if !delta.deletes.is_empty() {
            let mut columns: Vec<Vec<Option<String>>> = vec![Vec::new(); groups];
            let (mut starts, mut ends) = (Vec::new(), Vec::new());
            for (group, window) in &delta.deletes {
                for (column, value) in columns.iter_mut().zip(group.iter()) {
                    column.push(value.to_pg_text());
                }
                starts.push(window.start);
                ends.push(window.end);
            }
            let mut conditions: Vec<String> = quoted_groups
                .iter()
                .enumerate()
                .map(|(i, c)| format!("t.{c} = d.c{i}::{}", types[i]))
                .collect();
            conditions.push(format!("t.window_start = {EPOCH_PLUS} d.ws"));
            conditions.push(format!("t.window_end = {EPOCH_PLUS} d.we"));
            let mut params: Vec<&(dyn ToSql + Sync)> =
                columns.iter().map(|c| c as &(dyn ToSql + Sync)).collect();
            params.push(&starts);
            params.push(&ends);
            let sql = format!(
                "DELETE FROM {table} t USING {rows} WHERE {conditions}",
                table = self.table,
                rows = unnested(
                    (0..groups).map(|i| format!("${}::text[]", i + 1)).chain([
                        format!("${}::int8[]", groups + 1),
                        format!("${}::int8[]", groups + 2)
                    ]),
                    (0..groups)
                        .map(|i| format!("c{i}"))
                        .chain(["ws".to_owned(), "we".to_owned()]),
                    "d"
                ),
                conditions = conditions.join(" AND "),
            );
            transaction
                .execute(&sql, &params)
                .await
                .map_err(Error::database(format!(
                    "deleting emptied windows from {}",
                    self.display()
                )))?;
        }
        // Rows no commit wrote yet go in with a plain INSERT: ON CONFLICT inserts each one
        // speculatively and confirms it, which costs PostgreSQL far more per new row.
        let mut upserts: Vec<&ResultRow> = delta.upserts.iter().collect();
        // Near the primary key's order: each row then goes into the index next to the row
        // before, on a page just touched (a third less of PostgreSQL's time than in the
        // engine's hash order, measured). Keyed once: comparing the rows themselves chases
        // two pointers per comparison.
        upserts.sort_by_cached_key(|row| {
            let first = row.group.first().map_or(0, Value::order_prefix);
            (first, row.window.start, row.window.end)
        });
        let (new, known): (Vec<&ResultRow>, Vec<&ResultRow>) = upserts
            .into_iter()
            .partition(|row| row.is_new && self.plain_inserts);
        for (rows, on_conflict) in [(new, false), (known, true)] {
            if rows.is_empty() {
                continue;
            }
            let result = self
                .write_rows(transaction, &types, &rows, on_conflict)
                .await;
            if !on_conflict
                && let Err(Error::Sink(error)) = &result
                && error.is_unique_violation()
            {
                self.new_rows_conflicted = true;
            }
            result?;
        }
        Ok(())
    }

    /// Writes `rows` with one INSERT (`on_conflict`: updating the rows already there).
    async fn write_rows(
        &self,
        transaction: &Transaction<'_>,
        types: &[String],
        rows: &[&ResultRow],
        on_conflict: bool,
    ) -> Result<(), Error> {
        let groups = self.group_columns.len();
        let aggregates = self.aggregates.len();
        let n = groups + aggregates;
        // bigint columns whose values are all integers are bound as int8[] (no text to
        // print here and parse there); the others as text, cast to the column's type.
        let mut columns: Vec<ColumnArray> = types
            .iter()
            .map(|t| {
                if t == "bigint" {
                    ColumnArray::Int8(Vec::with_capacity(rows.len()))
                } else {
                    ColumnArray::Text(Vec::with_capacity(rows.len()))
                }
            })
            .collect();
        let (mut starts, mut ends, mut finals) = (
            Vec::with_capacity(rows.len()),
            Vec::with_capacity(rows.len()),
            Vec::with_capacity(rows.len()),
        );
        for row in rows {
            let values = row.group.iter().chain(row.values.iter());
            for (column, value) in columns.iter_mut().zip(values) {
                column.push(value);
            }
            starts.push(system_time(row.window.start));
            ends.push(system_time(row.window.end));
            finals.push(row.is_final);
        }
        let quoted_groups = self.group_columns.iter().map(|c| quote_identifier(c));
        let quoted_aggregates: Vec<String> = self
            .aggregates
            .iter()
            .map(|(n, _, _)| quote_identifier(n))
            .collect();
        let mut params: Vec<&(dyn ToSql + Sync)> = columns.iter().map(ColumnArray::param).collect();
        params.push(&starts);
        params.push(&ends);
        params.push(&finals);
        let cell = |i: usize| match &columns[i] {
            ColumnArray::Int8(_) => format!("u.c{i}"),
            ColumnArray::Text(_) => format!("u.c{i}::{}", types[i]),
        };
        let selected: Vec<String> = (0..groups)
            .map(cell)
            .chain(["u.ws".to_owned(), "u.we".to_owned()])
            .chain((groups..n).map(cell))
            .chain(["u.f".to_owned(), "now()".to_owned()])
            .collect();
        let key: Vec<String> = quoted_groups
            .chain(["window_start".to_owned(), "window_end".to_owned()])
            .collect();
        let target: Vec<String> = key
            .iter()
            .cloned()
            .chain(quoted_aggregates.iter().cloned())
            .chain(["_final".to_owned(), "_updated_at".to_owned()])
            .collect();
        let on_conflict = if on_conflict {
            let updates: Vec<String> = quoted_aggregates
                .iter()
                .chain(&["_final".to_owned(), "_updated_at".to_owned()])
                .map(|c| format!("{c} = EXCLUDED.{c}"))
                .collect();
            format!(
                " ON CONFLICT ({}) DO UPDATE SET {}",
                key.join(", "),
                updates.join(", ")
            )
        } else {
            String::new()
        };
        let sql = format!(
            "INSERT INTO {table} ({target}) SELECT {selected} FROM {rows}{on_conflict}",
            table = self.table,
            target = target.join(", "),
            selected = selected.join(", "),
            rows = unnested(
                columns
                    .iter()
                    .enumerate()
                    .map(|(i, c)| format!("${}::{}", i + 1, c.array_type()))
                    .chain([
                        format!("${}::timestamptz[]", n + 1),
                        format!("${}::timestamptz[]", n + 2),
                        format!("${}::bool[]", n + 3),
                    ]),
                (0..n).map(|i| format!("c{i}")).chain([
                    "ws".to_owned(),
                    "we".to_owned(),
                    "f".to_owned()
                ]),
                "u"
            ),
        );
        transaction
            .execute(&sql, &params)
            .await
            .map_err(Error::database(format!(
                "writing results into {}",
                self.display()
            )))?;
        Ok(())
    }
}

/// One column of an upsert, as it is bound.
enum ColumnArray {
    Int8(Vec<Option<i64>>),
    Text(Vec<Option<String>>),
}

impl ColumnArray {
    fn push(&mut self, value: &Value) {
        match (&mut *self, value) {
            (Self::Int8(column), Value::Int(i)) => column.push(Some(*i)),
            (Self::Int8(column), Value::Null) => column.push(None),
            // Not an integer after all: the column goes as text.
            (Self::Int8(column), _) => {
                let texts = column.iter().map(|i| i.map(|i| i.to_string())).collect();
                *self = Self::Text(texts);
                self.push(value);
            }
            (Self::Text(column), value) => column.push(value.to_pg_text()),
        }
    }

    fn param(&self) -> &(dyn ToSql + Sync) {
        match self {
            Self::Int8(column) => column,
            Self::Text(column) => column,
        }
    }

    fn array_type(&self) -> &'static str {
        match self {
            Self::Int8(_) => "int8[]",
            Self::Text(_) => "text[]",
        }
    }
}

/// Microseconds since the epoch as a time PostgreSQL takes as timestamptz.
fn system_time(micros: Micros) -> SystemTime {
    let offset = Duration::from_micros(micros.unsigned_abs());
    if micros >= 0 {
        UNIX_EPOCH + offset
    } else {
        UNIX_EPOCH - offset
    }
}

async fn read_columns(
    transaction: &Transaction<'_>,
    schema: &str,
    table: &str,
) -> Result<Vec<(String, String)>, Error> {
    let rows = transaction
        .query(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod)
               FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped
              ORDER BY a.attnum",
            &[&schema, &table],
        )
        .await
        .map_err(Error::database("reading the result table's columns"))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// What one commit writes besides the engine's delta.
#[derive(Debug)]
pub struct Progress<'a> {
    pub connector: &'a str,
    pub generation: i64,
    pub tracker: &'a WatermarkTracker,
    pub offsets: &'a BTreeMap<PartitionId, i64>,
    /// Source column types seen so far (for creating the result table).
    pub column_types: &'a HashMap<String, String>,
    /// What to do to the state log.
    pub state: StateWrite<'a>,
}

/// What a commit does to the state log.
#[derive(Debug, Clone, Copy)]
pub enum StateWrite<'a> {
    /// Appends the changes after chunk `last_seq`.
    Append { log: &'a StateLog, last_seq: i64 },
    /// Replaces the log with the whole state.
    Replace { log: &'a StateLog },
}

impl StateWrite<'_> {
    /// The log's size once this is committed, from its size before.
    pub fn size_after(&self, before: StateLogSize) -> StateLogSize {
        match self {
            Self::Append { log, .. } => StateLogSize {
                entries: before.entries + log.entries(),
                last_seq: before.last_seq + log.chunks().len() as i64,
            },
            Self::Replace { log } => StateLogSize {
                entries: log.entries(),
                last_seq: log.chunks().len() as i64,
            },
        }
    }
}

async fn write_state(
    transaction: &Transaction<'_>,
    connector: &str,
    state: &StateWrite<'_>,
) -> Result<(), Error> {
    let (log, first_seq) = match state {
        StateWrite::Append { log, last_seq } => (*log, last_seq + 1),
        StateWrite::Replace { log } => {
            transaction
                .execute(
                    "DELETE FROM public.tributary_window_state WHERE connector = $1",
                    &[&connector],
                )
                .await
                .map_err(Error::database("compacting tributary_window_state"))?;
            (*log, 1)
        }
    };
    let entries = i64::try_from(log.entries()).unwrap_or(i64::MAX);
    for (seq, chunk) in (first_seq..).zip(log.chunks()) {
        // The entries are counted on the first chunk; the column's sum is the log's.
        let counted = if seq == first_seq { entries } else { 0 };
        transaction
            .execute(
                "INSERT INTO public.tributary_window_state (connector, seq, entries, chunk)
                 VALUES ($1, $2, $3, $4)",
                &[&connector, &seq, &counted, chunk],
            )
            .await
            .map_err(Error::database("appending to tributary_window_state"))?;
    }
    Ok(())
}

/// Writes one commit in one transaction; nothing of it is visible unless all of it commits.
pub async fn commit(
    client: &mut Client,
    table: &mut ResultTable,
    delta: &CommitDelta,
    progress: &Progress<'_>,
) -> Result<(), Error> {
    let mut result = commit_transaction(client, table, delta, progress).await;
    if result.is_err() && std::mem::take(&mut table.new_rows_conflicted) {
        // Nothing of the attempt is committed: the same commit again, every row upserted.
        warn!(
            connector = progress.connector, table = %table.display(),
            "a result row thought new was already in the table; results are upserted from now on"
        );
        table.plain_inserts = false;
        table.forget();
        result = commit_transaction(client, table, delta, progress).await;
    }
    if result.is_err() {
        table.forget();
    }
    result
}

async fn commit_transaction(
    client: &mut Client,
    table: &mut ResultTable,
    delta: &CommitDelta,
    progress: &Progress<'_>,
) -> Result<(), Error> {
    let connector = progress.connector;
    let transaction = client
        .transaction()
        .await
        .map_err(Error::database("beginning a transaction"))?;
    check_generation(&transaction, connector, progress.generation).await?;
    table
        .write(&transaction, delta, progress.column_types)
        .await?;

    write_state(&transaction, connector, &progress.state).await?;

    let (mut topics, mut partitions, mut maxima, mut snapshots) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for ((topic, partition), clock) in progress.tracker.partitions() {
        topics.push(topic.as_str());
        partitions.push(*partition);
        maxima.push(clock.max_event_time);
        snapshots.push(clock.in_snapshot);
    }
    transaction
        .execute(
            "INSERT INTO public.tributary_window_partitions (connector, topic, partition, max_event_time, in_snapshot)
             SELECT $1, t, p, m, s FROM unnest($2::text[], $3::int4[], $4::int8[], $5::bool[]) AS u(t, p, m, s)
             ON CONFLICT (connector, topic, partition)
             DO UPDATE SET max_event_time = EXCLUDED.max_event_time, in_snapshot = EXCLUDED.in_snapshot",
            &[&connector, &topics, &partitions, &maxima, &snapshots],
        )
        .await
        .map_err(Error::database("storing partition clocks in tributary_window_partitions"))?;
    transaction
        .execute(
            "INSERT INTO public.tributary_window_watermarks (connector, watermark) VALUES ($1, $2)
             ON CONFLICT (connector) DO UPDATE SET watermark = EXCLUDED.watermark",
            &[&connector, &progress.tracker.current()],
        )
        .await
        .map_err(Error::database(
            "storing the watermark in tributary_window_watermarks",
        ))?;
    store_offsets(&transaction, connector, progress.offsets).await?;
    transaction
        .commit()
        .await
        .map_err(Error::database("committing window results"))
}

/// Forgets everything `config`'s stage has read and written: its offsets, its state and the rows
/// of its result table, in one transaction, so that the next start recomputes every window from
/// the beginning of the topics (`DELETE /connectors/{name}/offsets`; the connector is stopped).
pub async fn reset(config: &WindowAggregateConfig) -> Result<(), Error> {
    let application_name = format!("tributary window {} (reset)", config.name);
    let mut client = connect_to(&config.target(), &application_name).await?;
    ensure_state_tables(&client).await?;
    let transaction = client
        .transaction()
        .await
        .map_err(Error::database("resetting the window stage"))?;
    for table in [
        "tributary_offsets",
        "tributary_window_state",
        "tributary_window_partitions",
        "tributary_window_watermarks",
    ] {
        transaction
            .execute(
                &format!("DELETE FROM public.{table} WHERE connector = $1"),
                &[&config.name],
            )
            .await
            .map_err(Error::database(format!("resetting {table}")))?;
    }
    let result_table = format!(
        "{}.{}",
        quote_identifier(&config.table_schema),
        quote_identifier(&config.table_name)
    );
    let exists: bool = transaction
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&result_table])
        .await
        .map_err(Error::database("looking up the result table"))?
        .get(0);
    if exists {
        transaction
            .execute(&format!("DELETE FROM {result_table}"), &[])
            .await
            .map_err(Error::database(format!("emptying {result_table}")))?;
    }
    transaction
        .commit()
        .await
        .map_err(Error::database("resetting the window stage"))
}

/// `(SELECT unnest(<array>) AS <name>, …) AS <alias>`: parameter arrays as rows, unnested
/// in the select list (row by row) rather than in `FROM`, which copies them into a
/// tuplestore first.
fn unnested(
    arrays: impl Iterator<Item = String>,
    names: impl Iterator<Item = String>,
    alias: &str,
) -> String {
    let columns: Vec<String> = arrays
        .zip(names)
        .map(|(array, name)| format!("unnest({array}) AS {name}"))
        .collect();
    format!("(SELECT {}) AS {alias}", columns.join(", "))
}
